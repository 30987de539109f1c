//! Command line (clap). Exit codes: 0 success, 1 runtime failure (including
//! `sync --once` that did not converge), 2 configuration or usage error.

use crate::config::{Config, ConfigError};
use crate::daemon::Daemon;
use crate::domain::{ListingRef, ms_to_utc, now_ms, shown_time};
use crate::engine::{Engine, status};
use crate::ledger::{Ledger, LedgerError, StockChange};
use crate::lock::InstanceLock;
use crate::notify::Notifier;
use crate::{csvin, providers};
use anyhow::Context;
#[cfg(test)]
use clap::CommandFactory;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What `--help` says of exit codes (README, Command reference, says the same).
pub const EXIT_CODES: &str = "Exit codes:
  0  success
  1  failure: input refused (a bad CSV, a negative count, an unknown SKU, an
     empty reason), `sync --once` not converged, `check` finding a problem,
     a provider or the database failing
  2  configuration error, or a command line that cannot be parsed";

#[derive(Parser, Debug)]
#[command(
    name = "stoksync",
    version,
    about = "One stock ledger for every place you sell.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The TOML configuration file.
    #[arg(
        long,
        short,
        env = "STOKSYNC_CONFIG",
        global = true,
        default_value = "stoksync.toml"
    )]
    pub config: PathBuf,
    /// Log line format (logs go to stderr; filter with RUST_LOG).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Try it: the sandbox providers and the daemon together, with live
    /// progress and a final table (needs no config and no setup).
    Demo {
        /// How long simulated customers keep ordering.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        /// SKUs in the generated catalog.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u16).range(1..=500))]
        skus: u16,
        /// Keep the temporary folder (config, ledger) afterwards.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        no_config: NoConfig,
    },
    /// Serve all four provider fakes on loopback with a JSON control API,
    /// until SIGTERM or SIGINT.
    Sandbox {
        /// The control API's address; the fakes take the next four ports
        /// (port 0: any free ports).
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen_base: std::net::SocketAddr,
        /// Products to put on every provider: CSV with header `sku,quantity`.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Faults to inject at start: PROVIDER:KIND[:TIMES[:ENDPOINT]], KIND
        /// one of server-error, malformed, rate-limited, hang.
        #[arg(long, value_delimiter = ',')]
        faults: Vec<crate::sandbox::control::FaultSpec>,
        /// Also write a ready config (and the BaZaaRDan mapping CSV beside it).
        #[arg(long)]
        write_config: Option<PathBuf>,
        #[command(flatten)]
        no_config: NoConfig,
    },
    /// Run the daemon until SIGTERM or SIGINT.
    Run {
        /// Shadow mode whatever the config says: poll, apply and plan, but
        /// never push (`shadow report` shows what it would push).
        #[arg(long)]
        shadow: bool,
    },
    /// One full cycle: poll everything, apply, push everything pending.
    Sync {
        /// Required: run one cycle and exit (0 converged, 1 something pending).
        #[arg(long)]
        once: bool,
        /// Push nothing: poll and apply orders, read product lists, then
        /// print what it would push, per provider, the largest oversell
        /// risk first (exit 0, or 1 when a provider could not be read).
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: print JSON instead of text.
        #[arg(long, requires = "dry_run")]
        json: bool,
    },
    /// Check the config, the database and its migrations.
    Check {
        /// Also prove each provider's credentials with one cheap call.
        #[arg(long)]
        online: bool,
        /// Also check the database file (`PRAGMA integrity_check`) and that
        /// every SKU's balance equals the sum of its journal; exit 1 naming
        /// each bad SKU.
        #[arg(long)]
        deep: bool,
    },
    /// Write a consistent copy of the ledger to FILE while the daemon runs
    /// (it keeps syncing). Restore: stop the daemon, copy FILE over the
    /// database, remove its -wal and -shm files, start it.
    Backup {
        /// The copy to write; an existing file is refused unless --force.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// The stock ledger.
    #[command(subcommand)]
    Stock(StockCommand),
    /// Links between listings and SKUs.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// Shadow mode: what stoksync would push, beside your current tool.
    #[command(subcommand)]
    Shadow(ShadowCommand),
    /// Per-SKU allocation rules (safety stock, caps, shares, frozen listings).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Bundles and kits: SKUs whose stock comes from their components.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Every number shown for a SKU and why: ledger quantity and last
    /// movements, bundle arithmetic, each rule with its source, and for each
    /// listing what it should show, what the provider confirmed, and why
    /// they differ.
    Explain {
        /// The SKU (or bundle SKU) to explain.
        sku: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Per provider: last poll, pending pushes, requests used, last error;
    /// unlinked order items; oversold SKUs.
    Status {
        /// Print JSON (times in RFC 3339, Turkey's +03:00 offset) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The ledger database itself (reads no config: databases are named by URL).
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Copy a whole ledger (journal, links, request log, cursors, ...) into
    /// an empty database, in one transaction, and check the copy: row counts
    /// and per-SKU journal sums. A non-empty target is refused. URLs:
    /// sqlite:///abs/path.db, sqlite:relative.db, postgres://user@host:port/db
    /// (the password from PGPASSWORD or ~/.pgpass, never in the URL).
    Copy {
        /// The ledger to copy from (only read; a SQLite file must exist).
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty ledger to copy into (created or migrated first).
        #[arg(long, value_name = "URL")]
        to: String,
        #[command(flatten)]
        no_config: NoConfig,
    },
}

/// `demo` and `sandbox` make their own config. The global `--config` is
/// not offered to them: an argument of the same id here takes its place
/// (clap does not propagate a global arg to a subcommand that has one),
/// hidden from `--help` and refusing a value with a clear word rather than
/// ignoring it. Its type is the global's: clap still hands the global's
/// default down to the subcommand's matches.
#[derive(clap::Args, Debug)]
pub struct NoConfig {
    #[arg(id = "config", long = "config", short = 'c', hide = true, value_parser = refuse_config)]
    _config: Option<PathBuf>,
}

fn refuse_config(_: &str) -> Result<PathBuf, String> {
    Err("this command makes its own config and takes no --config".to_string())
}

#[derive(Subcommand, Debug)]
pub enum StockCommand {
    /// Set SKUs to ERP counts from a CSV file with header `sku,quantity`
    /// (or `sku;quantity`).
    Import {
        /// The CSV file; any bad row and nothing is imported.
        file: PathBuf,
    },
    /// Write every SKU's quantity as CSV `sku,quantity` (what `stock
    /// import` reads).
    Export {
        /// Where to write; standard output without it.
        file: Option<PathBuf>,
    },
    /// Set one SKU to a counted quantity.
    Set {
        /// The SKU (created when the ledger does not know it yet).
        sku: String,
        /// The counted quantity, 0 or more.
        #[arg(allow_negative_numbers = true)]
        quantity: i64,
        /// Why the stock changes (journaled; must not be empty).
        #[arg(long)]
        reason: String,
    },
    /// Move one SKU by DELTA units (negative to take away).
    Adjust {
        /// The SKU.
        sku: String,
        /// Units to add, or to take away when negative.
        #[arg(allow_negative_numbers = true)]
        delta: i64,
        /// Why the stock changes (journaled; must not be empty).
        #[arg(long)]
        reason: String,
    },
    /// Every SKU and its quantity.
    List {
        /// Print JSON `[{"sku","quantity"}]` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The journal of one SKU (exit 1 when the ledger has no such SKU).
    History {
        /// The SKU.
        sku: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MappingCommand {
    /// Link listings from a CSV file with header `sku,provider,listing_id,variant_id`.
    ///
    /// All rows or none. A row is refused when its SKU has no stock in the
    /// ledger (import the stock first), or when its listing is linked to
    /// another SKU (unless --relink). A row that repeats a listing's current
    /// link is accepted and moves nothing.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Move listings linked to another SKU to the SKU of their row
        /// (each move is reported and journaled; `mapping list` shows it).
        #[arg(long)]
        relink: bool,
    },
    /// Write every link as CSV `sku,provider,listing_id,variant_id` (what
    /// `mapping import` reads).
    Export {
        /// Where to write; standard output without it.
        file: Option<PathBuf>,
    },
    /// Every link, with what the provider last confirmed, the listings
    /// discovery could not link, and the latest links moved by --relink.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Reads each provider's product list and links listings by SKU now.
    Discover {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ShadowCommand {
    /// Per provider: listings that agree, that stoksync would lower (the
    /// oversell risk your current tool leaves) or raise, with SKU, both
    /// values and since when.
    Report {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Set SKU rules from a CSV file with header
    /// `sku,provider,safety_stock,max_quantity,percent,zero_below,frozen`.
    ///
    /// All rows or none. A row replaces the SKU's rule on that provider; an
    /// empty cell inherits that field from `[rules.<provider>]`, then
    /// `[sync]`; a row with every field empty removes the SKU's rule.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Every SKU rule, with the file row it came from, and the config's
    /// provider rules.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Define bundles from a CSV file with header
    /// `bundle_sku,component_sku,quantity`.
    ///
    /// All rows or none. Each bundle named in the file is replaced by its
    /// rows. Refused: a bundle SKU with stock of its own, an unknown
    /// component, a zero quantity, a bundle containing itself.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Every bundle, its components and what they make now.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A failure, with the exit code it maps to.
pub enum Failure {
    Config(ConfigError),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl Failure {
    pub fn exit(self) -> ExitCode {
        match self {
            Failure::Config(e) => {
                eprintln!("stoksync: configuration error: {e}");
                ExitCode::from(2)
            }
            Failure::Runtime(e) => {
                eprintln!("stoksync: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

/// Whether text logs are coloured: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (no-color.org). Logs
/// to a file, a pipe or journald stay free of escape codes.
pub fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (write e.g. 20s, 2m)"))
}

pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Sync { once: false, .. } => {
            eprintln!(
                "stoksync: `sync` runs one cycle and exits, and wants that said: `stoksync sync --once` \
                 (`sync --once --dry-run` first to see what it would push; `stoksync run` for the \
                 daemon that keeps syncing)"
            );
            return Ok(ExitCode::from(2));
        }
        Command::Demo {
            duration,
            skus,
            keep,
            no_config: _,
        } => {
            let ok = crate::demo::run(crate::demo::DemoOptions {
                duration,
                skus: usize::from(skus),
                keep,
            })
            .await?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Sandbox {
            listen_base,
            catalog,
            faults,
            write_config,
            no_config: _,
        } => return sandbox(listen_base, catalog, faults, write_config).await,
        Command::Db {
            command: DbCommand::Copy { from, to, .. },
        } => {
            let parse = |which: &str, url: &str| {
                crate::ledger::parse_database_url(url).map_err(|e| format!("--{which}: {e}"))
            };
            let (from, to) = match (parse("from", &from), parse("to", &to)) {
                (Ok(f), Ok(t)) => (f, t),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("stoksync: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let report = crate::ledger::copy_database(&from, &to)
                .await
                .with_context(|| format!("copying {from} into {to}"))?;
            println!("{report}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    // The daemon listens for its stop before anything else, so a SIGTERM
    // while it opens the database is a stop (exit 0), not a kill.
    let stop = CancellationToken::new();
    if matches!(cli.command, Command::Run { .. }) {
        cancel_on_signal(stop.clone());
    }
    let config = Config::load(&cli.config).map_err(Failure::Config)?;
    let ledger = Ledger::connect_shared(&config.database, config.lease_ttl)
        .await
        .context("opening the ledger")?;
    if stop.is_cancelled() {
        tracing::info!("stopped before starting");
        ledger.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    let code = dispatch(cli.command, &config, &ledger, stop).await;
    ledger.close().await;
    code
}

async fn sandbox(
    listen_base: std::net::SocketAddr,
    catalog: Option<PathBuf>,
    faults: Vec<crate::sandbox::control::FaultSpec>,
    write_config: Option<PathBuf>,
) -> Result<ExitCode, Failure> {
    use crate::sandbox::control::Sandbox;
    let rows = match &catalog {
        Some(file) => csvin::read_stock(file).map_err(anyhow::Error::from)?,
        None => Vec::new(),
    };
    let sandbox = Arc::new(
        Sandbox::start(listen_base)
            .await
            .with_context(|| format!("starting the sandbox on the ports after {listen_base}"))?,
    );
    let links = sandbox.add_catalog(&rows);
    for f in &faults {
        sandbox.apply_fault(f);
    }
    let stop = CancellationToken::new();
    let control = sandbox
        .clone()
        .serve_control(listen_base, stop.clone())
        .await
        .with_context(|| format!("starting the control API on {listen_base}"))?;
    println!("stoksync sandbox: control API on http://{control}/");
    for f in sandbox.fakes() {
        println!("  {:<11} {}", f.provider().as_str(), f.base_url());
    }
    if !rows.is_empty() {
        println!("  {} product(s) on every provider", rows.len());
    }
    let mut mapping = String::from("sku,provider,listing_id,variant_id\n");
    for (sku, l) in &links {
        mapping.push_str(&format!(
            "{sku},bazaardan,{},{}\n",
            l.listing_id, l.variant_id
        ));
    }
    let config_text = sandbox.config("stoksync.db", "127.0.0.1:8787", "5s");
    match &write_config {
        Some(path) => {
            std::fs::write(path, &config_text)
                .with_context(|| format!("writing {}", path.display()))?;
            let map_path = path.with_file_name("sandbox-mapping.csv");
            std::fs::write(&map_path, &mapping)
                .with_context(|| format!("writing {}", map_path.display()))?;
            println!(
                "config written to {}; BaZaaRDan links (it has no product list) to {}",
                path.display(),
                map_path.display()
            );
        }
        None => println!("\n# a config for these fakes:\n{config_text}"),
    }
    println!("Ctrl-C stops the sandbox.");
    cancel_on_signal(stop.clone());
    stop.cancelled().await;
    Ok(ExitCode::SUCCESS)
}

async fn dispatch(
    command: Command,
    config: &Config,
    ledger: &Ledger,
    stop: CancellationToken,
) -> Result<ExitCode, Failure> {
    match command {
        Command::Demo { .. } | Command::Sandbox { .. } | Command::Db { .. } => {
            Err(Failure::Runtime(anyhow::anyhow!(
                "internal: demo and sandbox run without a config"
            )))
        }
        Command::Run { shadow: true } => {
            let mut config = config.clone();
            config.sync.mode = crate::config::Mode::Shadow;
            daemon(&config, ledger, stop).await
        }
        Command::Run { shadow: false } => daemon(config, ledger, stop).await,
        Command::Shadow(ShadowCommand::Report { json }) => {
            let r = crate::engine::shadow::report(config, ledger)
                .await
                .context("reading the ledger")?;
            if json {
                print_json(&r)?;
            } else {
                print!("{}", crate::engine::shadow::render(&r));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync { dry_run: false, .. } => sync_once(config, ledger, None).await,
        Command::Sync {
            dry_run: true,
            json,
            ..
        } => {
            let mut config = config.clone();
            config.sync.mode = crate::config::Mode::Shadow;
            sync_once(&config, ledger, Some(json)).await
        }
        Command::Check { online, deep } => check(config, ledger, online, deep).await,
        Command::Backup { file, force } => {
            let r = ledger
                .backup_to(&file, force)
                .await
                .context("backing up the ledger")?;
            println!(
                "backed up {} to {} ({} bytes, {} SKU(s), {} movement(s)); integrity ok",
                config.database.display(),
                r.path.display(),
                r.bytes,
                r.skus,
                r.movements
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Stock(cmd) => stock(cmd, ledger).await,
        Command::Mapping(cmd) => mapping(cmd, config, ledger).await,
        Command::Rules(cmd) => rules(cmd, config, ledger).await,
        Command::Bundle(cmd) => bundle(cmd, ledger).await,
        Command::Explain { sku, json } => explain(config, ledger, &sku, json).await,
        Command::Status { json } => {
            let s = status::collect(config, ledger)
                .await
                .context("reading status")?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).context("encoding status")?
                );
            } else {
                print!("{}", status::render(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn engine(config: &Config, ledger: &Ledger, cancel: &CancellationToken) -> anyhow::Result<Engine> {
    let providers = providers::build_all(config, ledger, cancel)?;
    Ok(Engine::new(ledger.clone(), providers, config.sync.clone()))
}

/// Cancels `cancel` on SIGTERM or SIGINT. The handlers are installed before
/// this returns, so a stop that arrives a moment later is never the default
/// "terminate" action (which systemd would count as a failure).
fn cancel_on_signal(cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (term, int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT");
                return;
            }
        };
        let (mut term, mut int) = (term, int);
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = term.recv() => tracing::info!("SIGTERM: finishing the work in flight"),
                _ = int.recv() => tracing::info!("SIGINT: finishing the work in flight"),
            }
            cancel.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        cancel.cancel();
    });
}

/// `cancel` is already wired to SIGTERM and SIGINT.
async fn daemon(
    config: &Config,
    ledger: &Ledger,
    cancel: CancellationToken,
) -> Result<ExitCode, Failure> {
    let _lock = config
        .database
        .sqlite_path()
        .map(InstanceLock::acquire)
        .transpose()?;
    let engine = Arc::new(engine(config, ledger, &cancel)?);
    if engine.providers().is_empty() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "no provider to sync: add a [providers.<name>] table to {}",
            config.file.display()
        )));
    }
    let listener = match config.http.listen {
        Some(addr) => Some(crate::server::bind(addr).await?),
        None => None,
    };
    tracing::info!(providers = engine.providers().len(), database = %config.database.display(), mode = ?config.sync.mode, "stoksync running");
    if engine.shadow() {
        tracing::warn!(
            "shadow mode: polling and applying orders, never pushing; `stoksync shadow report` shows what would be pushed"
        );
    }
    let d = Daemon {
        config: Arc::new(config.clone()),
        ledger: ledger.clone(),
        engine,
        listener,
        // On a shared ledger one daemon of several syncs: the one holding
        // the lease. A SQLite file has one daemon (the lock file says so).
        lease: (ledger.backend() == crate::ledger::Backend::Postgres).then(|| {
            crate::daemon::LeaseSettings {
                holder: crate::lease::holder_id(),
                ttl: config.lease_ttl,
            }
        }),
    };
    d.run(cancel, Arc::new(Notifier::from_env())).await?;
    Ok(ExitCode::SUCCESS)
}

/// One sync cycle; with `dry_run` (`Some(json)`) in shadow mode, then
/// what it would push.
async fn sync_once(
    config: &Config,
    ledger: &Ledger,
    dry_run: Option<bool>,
) -> Result<ExitCode, Failure> {
    let _lock = config
        .database
        .sqlite_path()
        .map(InstanceLock::acquire)
        .transpose()?;
    let cancel = CancellationToken::new();
    cancel_on_signal(cancel.clone());
    // On a shared ledger a one-off sync takes the lease like a daemon, so
    // it never syncs beside the active one.
    let lease = if ledger.backend() == crate::ledger::Backend::Postgres {
        let holder = crate::lease::holder_id();
        match ledger
            .claim_lease(&holder, config.lease_ttl, crate::lease::gone_from_this_host)
            .await
            .context("taking the active lease")?
        {
            crate::ledger::Claim::Taken { epoch, .. } => {
                tokio::spawn(crate::lease::keep_lease(
                    ledger.clone(),
                    holder.clone(),
                    epoch,
                    config.lease_ttl,
                    cancel.child_token(),
                    cancel.clone(),
                ));
                Some((holder, epoch))
            }
            crate::ledger::Claim::Held(row) => {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "{} is the active daemon on this database (lease epoch {}): `sync --once` would sync beside it; stop it first",
                    row.holder,
                    row.epoch
                )));
            }
        }
    } else {
        None
    };
    let engine = engine(config, ledger, &cancel)?;
    let summary = engine.sync_once(&cancel).await.context("sync");
    if let Some((holder, epoch)) = &lease {
        let _ = ledger.release_lease(holder, *epoch).await;
    }
    let summary = summary?;
    // With --dry-run --json, stdout is the JSON alone.
    let say = |line: String| {
        if dry_run == Some(true) {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    for p in &summary.providers {
        say(format!(
            "{}: {} order lines seen, {} movements, {} pushed ({} confirmed, {} refused, {} failed), {} pending, {} refused in total{}",
            p.provider,
            p.items_seen,
            p.movements,
            p.push.planned,
            p.push.confirmed,
            p.push.rejected,
            p.push.failed,
            p.pending,
            p.refused,
            p.poll_error
                .as_ref()
                .or(p.push.stopped.as_ref())
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        ));
    }
    let unlinked = ledger
        .unlinked_items()
        .await
        .context("reading unlinked items")?;
    if !unlinked.is_empty() {
        say(format!(
            "{} order line(s) not linked to a SKU (see `status`)",
            unlinked.len()
        ));
    }
    if let Some(json) = dry_run {
        let r = crate::engine::dryrun::collect(config, ledger)
            .await
            .context("reading the ledger")?;
        if json {
            print_json(&r)?;
        } else {
            print!("{}", crate::engine::dryrun::render(&r));
        }
    } else if engine.shadow() {
        println!("shadow mode: nothing pushed; `stoksync shadow report` shows what would be");
    }
    if engine.shadow() {
        return Ok(
            if summary.providers.iter().all(|p| p.poll_error.is_none()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            },
        );
    }
    if summary.converged() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "stoksync: not converged: some listings still differ or a provider failed (see above and `status`)"
        );
        Ok(ExitCode::from(1))
    }
}

async fn check(
    config: &Config,
    ledger: &Ledger,
    online: bool,
    deep: bool,
) -> Result<ExitCode, Failure> {
    println!("config: {} ok", config.file.display());
    let (version, tables) = ledger
        .schema_check()
        .await
        .context("checking the ledger's schema")?;
    println!(
        "database: {} ({}) ok, migrations applied up to {version}, {tables} tables as expected",
        config.database.display(),
        ledger.backend().as_str()
    );
    let enabled: Vec<String> = config
        .enabled_providers()
        .iter()
        .map(|p| p.to_string())
        .collect();
    println!(
        "providers: {}",
        if enabled.is_empty() {
            "none".to_string()
        } else {
            enabled.join(", ")
        }
    );
    let mut ok = true;
    if deep {
        ok &= deep_check(ledger).await?;
    }
    if online {
        ok &= check_online(config, ledger).await?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The database file and the journal: prints what it found, `false` when
/// anything is wrong.
async fn deep_check(ledger: &Ledger) -> Result<bool, Failure> {
    let mut ok = true;
    let problems = ledger
        .integrity_problems()
        .await
        .context("checking the database's integrity")?;
    if problems.is_empty() {
        println!("integrity: ok");
    } else {
        ok = false;
        println!("integrity: FAILED ({} problem(s))", problems.len());
        for p in &problems {
            println!("  {p}");
        }
    }
    let bad = ledger
        .journal_mismatches()
        .await
        .context("summing the journal")?;
    let skus = ledger.sku_count().await.context("counting SKUs")?;
    if bad.is_empty() {
        println!("journal: ok, every balance of {skus} SKU(s) equals the sum of its movements");
    } else {
        ok = false;
        println!(
            "journal: FAILED, {} SKU(s) off the sum of their movements:",
            bad.len()
        );
        for m in &bad {
            match m.balance {
                Some(b) => println!(
                    "  SKU {}: balance {b}, journal sums to {}",
                    m.sku, m.journal_sum
                ),
                None => println!(
                    "  SKU {}: no balance, journal sums to {}",
                    m.sku, m.journal_sum
                ),
            }
        }
    }
    if !ok {
        eprintln!("stoksync: the deep check failed (see above)");
    }
    Ok(ok)
}

/// Proves each provider's credentials; `false` when any is refused.
async fn check_online(config: &Config, ledger: &Ledger) -> Result<bool, Failure> {
    let cancel = CancellationToken::new();
    let engine = engine(config, ledger, &cancel)?;
    let mut ok = true;
    for p in engine.providers() {
        match p.check_credentials().await {
            Ok(()) => println!("{}: credentials ok", p.name()),
            Err(e) => {
                ok = false;
                println!("{}: FAILED: {e}", p.name());
            }
        }
    }
    Ok(ok)
}

/// Writes a CSV export to `file`, or to standard output without one.
fn export(
    file: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), Failure> {
    match file {
        Some(path) => {
            let mut buf = Vec::new();
            write(&mut buf).context("encoding CSV")?;
            std::fs::write(path, buf).with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            write(&mut lock).context("writing to standard output")?;
        }
    }
    Ok(())
}

/// How many link moves `mapping list` shows: enough to review a relink
/// import, short enough to keep the list readable.
const RECENT_LINK_CHANGES: i64 = 20;

fn cli_key(what: &str) -> String {
    format!("erp/cli/{what}/{}-{:08x}", now_ms(), fastrand::u32(..))
}

async fn stock(cmd: StockCommand, ledger: &Ledger) -> Result<ExitCode, Failure> {
    match cmd {
        StockCommand::Import { file } => {
            let rows = csvin::read_stock(&file).map_err(anyhow::Error::from)?;
            let batch = format!("{}-{:08x}", now_ms(), fastrand::u32(..));
            ledger
                .import_stock(&rows, &batch, &format!("import {}", file.display()))
                .await
                .context("importing stock")?;
            println!(
                "imported {} SKU count(s) from {}",
                rows.len(),
                file.display()
            );
        }
        StockCommand::Export { file } => {
            let rows = ledger.list_stock().await.context("reading stock")?;
            export(file.as_deref(), |out| {
                csvin::write_stock(out, rows.iter().map(|r| (r.sku.as_str(), r.quantity)))
            })?;
            let negative = rows.iter().filter(|r| r.quantity < 0).count();
            if negative > 0 {
                eprintln!(
                    "stoksync: {negative} oversold SKU(s) exported with a negative quantity; `stock import` refuses negative counts"
                );
            }
            if let Some(f) = file {
                println!("exported {} SKU count(s) to {}", rows.len(), f.display());
            }
        }
        StockCommand::Set {
            sku,
            quantity,
            reason,
        } => {
            let out = ledger
                .erp_movement(&sku, StockChange::To(quantity), &reason, &cli_key("set"))
                .await
                .context("setting stock")?;
            println!("{sku}: {}", out.quantity);
        }
        StockCommand::Adjust { sku, delta, reason } => {
            let out = ledger
                .erp_movement(&sku, StockChange::By(delta), &reason, &cli_key("adjust"))
                .await
                .context("adjusting stock")?;
            println!("{sku}: {}", out.quantity);
        }
        StockCommand::List { json } => {
            let rows = ledger.list_stock().await.context("reading stock")?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).context("encoding")?
                );
            } else {
                for r in rows {
                    println!("{}\t{}", r.sku, r.quantity);
                }
            }
        }
        StockCommand::History { sku, json } => {
            let rows = ledger.history(&sku).await.context("reading history")?;
            if rows.is_empty()
                && ledger
                    .stock_of(&sku)
                    .await
                    .context("reading stock")?
                    .is_none()
            {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "no SKU `{sku}` in the ledger (`stock list` shows every SKU)"
                )));
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).context("encoding")?
                );
            } else {
                for m in rows {
                    println!(
                        "{}\t{:+}\t{} -> {}\t{}\t{}\t{}\t{}",
                        shown_time(ms_to_utc(m.created_at_ms)),
                        m.delta,
                        m.quantity_before,
                        m.quantity_after,
                        m.kind,
                        m.source,
                        m.reason,
                        m.idempotency_key
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A ledger import's refusal as the file's errors (each with its line).
fn import_failure(file: &std::path::Path, e: LedgerError, what: &str) -> Failure {
    match e {
        LedgerError::Refused(errors) => {
            anyhow::Error::from(csvin::CsvErrors::new(file, errors)).into()
        }
        e => anyhow::Error::from(e).context(what.to_string()).into(),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("encoding")?
    );
    Ok(())
}

async fn rules(cmd: RulesCommand, config: &Config, ledger: &Ledger) -> Result<ExitCode, Failure> {
    match cmd {
        RulesCommand::Import { file } => {
            let rows = csvin::read_rules(&file).map_err(anyhow::Error::from)?;
            let name = file.display().to_string();
            let r = ledger
                .import_rules(&rows, &name)
                .await
                .map_err(|e| import_failure(&file, e, "importing rules"))?;
            println!(
                "{} SKU rule(s) set, {} removed, from {name}",
                r.written, r.removed
            );
        }
        RulesCommand::List { json } => {
            let rows = ledger.sku_rules(None).await.context("reading rules")?;
            let r = &config.sync.rules;
            let providers: std::collections::BTreeMap<String, serde_json::Value> = r
                .providers
                .iter()
                .map(|(p, level)| {
                    let fields: serde_json::Map<String, serde_json::Value> =
                        crate::rules::Field::ALL
                            .into_iter()
                            .filter_map(|f| level.set.get(f).map(|v| (f.to_string(), v.into())))
                            .collect();
                    (p.to_string(), fields.into())
                })
                .collect();
            if json {
                print_json(&serde_json::json!({
                    "safety_stock": r.safety_stock(),
                    "providers": providers,
                    "skus": rows,
                }))?;
            } else {
                println!("[sync] safety_stock = {}", r.safety_stock());
                for (p, fields) in &providers {
                    println!("[rules.{p}] {fields}");
                }
                if rows.is_empty() {
                    println!("no SKU rules");
                }
                for s in rows {
                    let set = s.set();
                    let fields: Vec<String> = crate::rules::Field::ALL
                        .into_iter()
                        .filter_map(|f| {
                            set.get(f).map(|v| match f {
                                crate::rules::Field::Frozen => format!("frozen={}", v == 1),
                                _ => format!("{f}={v}"),
                            })
                        })
                        .collect();
                    println!(
                        "{}\t{}\t{}\t({})",
                        s.sku,
                        s.provider,
                        fields.join(" "),
                        s.source
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn bundle(cmd: BundleCommand, ledger: &Ledger) -> Result<ExitCode, Failure> {
    match cmd {
        BundleCommand::Import { file } => {
            let rows = csvin::read_bundles(&file).map_err(anyhow::Error::from)?;
            let name = file.display().to_string();
            ledger
                .import_bundles(&rows, &name)
                .await
                .map_err(|e| import_failure(&file, e, "importing bundles"))?;
            let bundles: std::collections::BTreeSet<&str> =
                rows.iter().map(|r| r.bundle.as_str()).collect();
            println!(
                "{} bundle(s) defined ({} component row(s)) from {name}",
                bundles.len(),
                rows.len()
            );
            let linked = ledger
                .relink_pending()
                .await
                .context("linking waiting order lines")?;
            if linked > 0 {
                println!("{linked} waiting order line(s) linked and applied");
            }
        }
        BundleCommand::List { json } => {
            let bundles = ledger.bundles(None).await.context("reading bundles")?;
            let stock: std::collections::HashMap<String, i64> = ledger
                .list_stock()
                .await
                .context("reading stock")?
                .into_iter()
                .map(|r| (r.sku, r.quantity))
                .collect();
            let makes: Vec<Option<i64>> = bundles
                .iter()
                .map(|b| crate::ledger::bundle_quantity(&b.parts, &stock))
                .collect();
            if json {
                let rows: Vec<serde_json::Value> = bundles
                    .iter()
                    .zip(&makes)
                    .map(|(b, m)| {
                        serde_json::json!({
                            "sku": b.sku, "components": b.components, "parts": b.parts, "makes": m,
                        })
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                if bundles.is_empty() {
                    println!("no bundles");
                }
                for (b, m) in bundles.iter().zip(&makes) {
                    let comps: Vec<String> = b
                        .components
                        .iter()
                        .map(|c| format!("{} x{}", c.sku, c.quantity))
                        .collect();
                    println!(
                        "{}\t{}\tmakes {}",
                        b.sku,
                        comps.join(" + "),
                        m.map_or("unknown".to_string(), |m| m.to_string())
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn explain(
    config: &Config,
    ledger: &Ledger,
    sku: &str,
    json: bool,
) -> Result<ExitCode, Failure> {
    let Some(e) = crate::engine::explain::explain(config, ledger, sku)
        .await
        .context("reading the ledger")?
    else {
        eprintln!(
            "stoksync: no SKU `{sku}`: no stock, no bundle and no listing has it (`stock list`, `bundle list`)"
        );
        return Ok(ExitCode::from(1));
    };
    if json {
        print_json(&e)?;
    } else {
        print!("{}", crate::engine::explain::render(&e));
    }
    Ok(ExitCode::SUCCESS)
}

async fn mapping(
    cmd: MappingCommand,
    config: &Config,
    ledger: &Ledger,
) -> Result<ExitCode, Failure> {
    match cmd {
        MappingCommand::Discover { json } => {
            let cancel = CancellationToken::new();
            cancel_on_signal(cancel.clone());
            let engine = engine(config, ledger, &cancel)?;
            let mut ok = true;
            let mut reports = Vec::new();
            for p in engine.providers() {
                match engine.discover(p.as_ref()).await {
                    Ok(Some(r)) => {
                        if !json {
                            println!(
                                "{}: {} listings seen, {} newly linked, {} already linked, {} not linked (see `mapping list`){}",
                                p.name(),
                                r.seen,
                                r.newly_linked,
                                r.already_linked,
                                r.problems,
                                if r.order_lines_applied > 0 {
                                    format!(
                                        ", {} waiting order line(s) applied",
                                        r.order_lines_applied
                                    )
                                } else {
                                    String::new()
                                }
                            );
                        }
                        reports.push(serde_json::json!({"provider": p.name(), "report": r}));
                    }
                    Ok(None) => {
                        if !json {
                            println!(
                                "{}: no product list; links come from `mapping import` and order lines",
                                p.name()
                            );
                        }
                    }
                    Err(e) => {
                        ok = false;
                        if !json {
                            println!("{}: FAILED: {e}", p.name());
                        }
                        reports.push(
                            serde_json::json!({"provider": p.name(), "error": e.to_string()}),
                        );
                    }
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).context("encoding")?
                );
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        MappingCommand::Import { file, relink } => {
            let (rows, mut errors) = csvin::parse_mappings(&file).map_err(anyhow::Error::from)?;
            if !errors.is_empty() {
                // Nothing is imported; report the rows the ledger would
                // refuse too, so the file is mended in one go.
                let refused = ledger
                    .check_links(&rows, relink)
                    .await
                    .context("checking mappings")?;
                errors.extend(refused);
                return Err(anyhow::Error::from(csvin::CsvErrors::new(&file, errors)).into());
            }
            let source = format!("mapping import {}", file.display());
            let report = ledger
                .import_links(&rows, relink, &source)
                .await
                .map_err(|e| import_failure(&file, e, "importing mappings"))?;
            for m in &report.moved {
                println!("moved {} from {} to {}", m.listing(), m.old_sku, m.new_sku);
            }
            let linked = ledger
                .relink_pending()
                .await
                .context("linking waiting order lines")?;
            println!("imported {} link(s) from {}", rows.len(), file.display());
            if linked > 0 {
                println!("{linked} waiting order line(s) linked and applied");
            }
        }
        MappingCommand::Export { file } => {
            let rows = ledger.list_mappings().await.context("reading mappings")?;
            let links: Vec<(String, ListingRef)> = rows
                .into_iter()
                .map(|m| {
                    (
                        m.sku,
                        ListingRef {
                            provider: m.provider,
                            listing_id: m.listing_id,
                            variant_id: m.variant_id,
                        },
                    )
                })
                .collect();
            export(file.as_deref(), |out| {
                csvin::write_mappings(out, links.iter().map(|(s, l)| (s.as_str(), l)))
            })?;
            if let Some(f) = file {
                println!("exported {} link(s) to {}", links.len(), f.display());
            }
        }
        MappingCommand::List { json } => {
            let rows = ledger.list_mappings().await.context("reading mappings")?;
            let problems = ledger
                .catalog_problems()
                .await
                .context("reading the catalog")?;
            let duplicates = ledger.duplicate_links().await.context("reading mappings")?;
            let moves = ledger
                .link_changes(RECENT_LINK_CHANGES)
                .await
                .context("reading link changes")?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "links": rows,
                        "not_linked": problems,
                        "sku_linked_twice": duplicates,
                        "link_changes": moves,
                    }))
                    .context("encoding")?
                );
            } else {
                if !problems.is_empty() {
                    println!("# not linked ({}):", problems.len());
                    for p in &problems {
                        println!(
                            "#   {} {}{}: {}",
                            p.provider,
                            p.listing_id,
                            if p.variant_id.is_empty() {
                                String::new()
                            } else {
                                format!("/{}", p.variant_id)
                            },
                            p.problem
                        );
                    }
                }
                for d in &duplicates {
                    println!(
                        "# SKU {} is linked to {} listings of {}: {}",
                        d.sku,
                        d.listings.len(),
                        d.provider,
                        d.listings.join(", ")
                    );
                }
                if !moves.is_empty() {
                    println!("# latest links moved, newest first:");
                    for m in &moves {
                        println!(
                            "#   {} moved {} from {} to {} ({})",
                            shown_time(ms_to_utc(m.at_ms)),
                            m.listing(),
                            m.old_sku,
                            m.new_sku,
                            m.source
                        );
                    }
                }
                for m in rows {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\tconfirmed {}{}",
                        m.sku,
                        m.provider,
                        m.listing_id,
                        if m.variant_id.is_empty() {
                            "-"
                        } else {
                            &m.variant_id
                        },
                        m.origin,
                        m.confirmed_qty.map_or("-".to_string(), |q| q.to_string()),
                        m.last_error
                            .map(|e| format!("\tlast error: {e}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// Every argument and option says what it is, in every subcommand.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "stoksync", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn config_is_offered_where_it_is_used_only() {
        let mut cmd = Cli::command();
        cmd.build();
        let offers = |path: &[&str]| {
            let mut c = &cmd;
            for p in path {
                c = c.find_subcommand(p).unwrap();
            }
            c.get_arguments()
                .any(|a| a.get_id() == "config" && !a.is_hide_set())
        };
        for used in [&["status"][..], &["run"], &["backup"], &["stock", "set"]] {
            assert!(offers(used), "{used:?} should offer --config");
        }
        for unused in [&["demo"][..], &["sandbox"]] {
            assert!(!offers(unused), "{unused:?} should not offer --config");
        }
        // Without it they parse, with STOKSYNC_CONFIG set or not.
        for args in [&["stoksync", "demo"][..], &["stoksync", "sandbox"]] {
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        // Given to them anyway, it is refused, not ignored.
        let err = Cli::try_parse_from(["stoksync", "demo", "--config", "x.toml"]).unwrap_err();
        assert!(err.to_string().contains("takes no --config"), "{err}");
        assert_eq!(err.exit_code(), 2);
        // Before or after the command, where it is used.
        for args in [
            &["stoksync", "--config", "a.toml", "status"][..],
            &["stoksync", "status", "--config", "a.toml"],
            &["stoksync", "stock", "list", "-c", "a.toml"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.config, PathBuf::from("a.toml"), "{args:?}");
        }
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("Exit codes:") && help.contains("2  configuration error"),
            "{help}"
        );
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))), "empty means unset");
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new("1"))));
    }
}
