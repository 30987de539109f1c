//! Command line (clap). Exit codes: 0 success, 1 runtime failure (including
//! `sync --once` that did not converge), 2 configuration or usage error.

use crate::config::{Config, ConfigError};
use crate::daemon::Daemon;
use crate::domain::{ms_to_utc, now_ms};
use crate::engine::{Engine, status};
use crate::ledger::{Ledger, LedgerError, StockChange};
use crate::lock::InstanceLock;
use crate::notify::Notifier;
use crate::{csvin, providers};
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "stoksync",
    version,
    about = "One stock ledger for every place you sell."
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
        #[arg(long, required = true)]
        once: bool,
    },
    /// Check the config, the database and its migrations.
    Check {
        /// Also prove each provider's credentials with one cheap call.
        #[arg(long)]
        online: bool,
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
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum StockCommand {
    /// Set SKUs to ERP counts from a CSV file with header `sku,quantity`.
    Import { file: PathBuf },
    /// Set one SKU to a counted quantity.
    Set {
        sku: String,
        #[arg(allow_negative_numbers = true)]
        quantity: i64,
        #[arg(long)]
        reason: String,
    },
    /// Move one SKU by DELTA units (negative to take away).
    Adjust {
        sku: String,
        #[arg(allow_negative_numbers = true)]
        delta: i64,
        #[arg(long)]
        reason: String,
    },
    /// Every SKU and its quantity.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The journal of one SKU.
    History {
        sku: String,
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
    /// Every link, with what the provider last confirmed, the listings
    /// discovery could not link, and the latest links moved by --relink.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Reads each provider's product list and links listings by SKU now.
    Discover {
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (write e.g. 20s, 2m)"))
}

pub async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Demo {
            duration,
            skus,
            keep,
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
        } => return sandbox(listen_base, catalog, faults, write_config).await,
        _ => {}
    }
    // The daemon listens for its stop before anything else, so a SIGTERM
    // while it opens the database is a stop (exit 0), not a kill.
    let stop = CancellationToken::new();
    if matches!(cli.command, Command::Run { .. }) {
        cancel_on_signal(stop.clone());
    }
    let config = Config::load(&cli.config).map_err(Failure::Config)?;
    let ledger = Ledger::open(&config.database)
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
        Command::Demo { .. } | Command::Sandbox { .. } => Err(Failure::Runtime(anyhow::anyhow!(
            "internal: demo and sandbox run without a config"
        ))),
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
        Command::Sync { .. } => sync_once(config, ledger).await,
        Command::Check { online } => check(config, ledger, online).await,
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
    let _lock = InstanceLock::acquire(&config.database)?;
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
    };
    d.run(cancel, Arc::new(Notifier::from_env())).await?;
    Ok(ExitCode::SUCCESS)
}

async fn sync_once(config: &Config, ledger: &Ledger) -> Result<ExitCode, Failure> {
    let _lock = InstanceLock::acquire(&config.database)?;
    let cancel = CancellationToken::new();
    cancel_on_signal(cancel.clone());
    let engine = engine(config, ledger, &cancel)?;
    let summary = engine.sync_once(&cancel).await.context("sync")?;
    for p in &summary.providers {
        println!(
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
        );
    }
    let unlinked = ledger
        .unlinked_items()
        .await
        .context("reading unlinked items")?;
    if !unlinked.is_empty() {
        println!(
            "{} order line(s) not linked to a SKU (see `status`)",
            unlinked.len()
        );
    }
    if engine.shadow() {
        println!("shadow mode: nothing pushed; `stoksync shadow report` shows what would be");
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

async fn check(config: &Config, ledger: &Ledger, online: bool) -> Result<ExitCode, Failure> {
    println!("config: {} ok", config.file.display());
    println!(
        "database: {} ok, migrations applied",
        config.database.display()
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
    if !online {
        return Ok(ExitCode::SUCCESS);
    }
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
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).context("encoding")?
                );
            } else {
                for m in rows {
                    println!(
                        "{}\t{:+}\t{} -> {}\t{}\t{}\t{}\t{}",
                        ms_to_utc(m.created_at_ms).to_rfc3339(),
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
            let report = match ledger.import_links(&rows, relink, &source).await {
                Ok(r) => r,
                Err(LedgerError::Refused(errors)) => {
                    return Err(anyhow::Error::from(csvin::CsvErrors::new(&file, errors)).into());
                }
                Err(e) => return Err(anyhow::Error::from(e).context("importing mappings").into()),
            };
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
                            ms_to_utc(m.at_ms).to_rfc3339(),
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
