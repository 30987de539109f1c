//! `stoksync demo`: the sandbox and the daemon in one process, on a fresh
//! machine with no setup. A temporary folder gets a generated config, a
//! ledger and a catalog that every provider shows with stale numbers; the
//! daemon links, pushes, then customers order on three marketplaces (one
//! order is cancelled, one stokdurumu count is edited by hand) while the
//! terminal shows each provider's progress. It ends with a table proving
//! every listing shows the ledger, and the ledger what the orders left.

use crate::config::Config;
use crate::daemon::Daemon;
use crate::domain::{ListingRef, ProviderName};
use crate::engine::{Engine, plan};
use crate::ledger::Ledger;
use crate::notify::Notifier;
use crate::sandbox::control::Sandbox;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct DemoOptions {
    /// How long customers keep ordering.
    pub duration: Duration,
    /// How many SKUs the catalog has.
    pub skus: usize,
    /// Keep the temporary folder (config, ledger) for a look afterwards.
    pub keep: bool,
}

/// The bound on the final convergence after orders stop.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);
/// Each SKU's ERP count at the start.
const START_QTY: i64 = 40;
/// What the hand edit in stokdurumu's panel adds (a delivery counted in).
const HAND_EDIT: i64 = 5;

/// One row of the final table.
pub struct Row {
    pub sku: String,
    pub ledger: i64,
    pub expected: i64,
    pub shown: BTreeMap<ProviderName, Option<i64>>,
}

impl Row {
    /// Providers whose listing shows what the ledger wants.
    pub fn matching(&self) -> usize {
        let want = plan::wanted(self.ledger, 0);
        self.shown.values().filter(|s| **s == Some(want)).count()
    }

    pub fn ok(&self) -> bool {
        self.ledger == self.expected && self.matching() == self.shown.len()
    }
}

/// Runs the demo; `Ok(true)` when everything converged.
pub async fn run(opts: DemoOptions) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("stoksync-demo-")
        .disable_cleanup(opts.keep)
        .tempdir()
        .map_err(|e| anyhow::anyhow!("cannot create a temporary folder: {e}"))?;
    let out = &mut std::io::stdout();
    let sandbox = Arc::new(Sandbox::start("127.0.0.1:0".parse()?).await?);
    let control_stop = CancellationToken::new();
    let control = sandbox
        .clone()
        .serve_control("127.0.0.1:0".parse()?, control_stop.clone())
        .await?;
    let _stop_control = control_stop.drop_guard();

    // The catalog: every SKU on every provider, showing yesterday's numbers.
    let skus: Vec<String> = (1..=opts.skus).map(|i| format!("DEMO-{i:03}")).collect();
    let mut listings: BTreeMap<ProviderName, Vec<ListingRef>> = BTreeMap::new();
    let mut bz_links = Vec::new();
    for (i, sku) in skus.iter().enumerate() {
        for f in sandbox.fakes() {
            let stale = match i % 3 {
                0 => START_QTY,
                1 => 0,
                _ => START_QTY + 7,
            };
            let l = f.add_product(sku, stale);
            if f.provider() == ProviderName::Bazaardan {
                bz_links.push((sku.clone(), l.clone()));
            }
            listings.entry(f.provider()).or_default().push(l);
        }
    }
    let config_path = dir.path().join("stoksync.toml");
    std::fs::write(
        &config_path,
        sandbox.config("stoksync.db", "127.0.0.1:0", "5s"),
    )?;
    let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ledger = Ledger::open(&config.database).await?;
    let _lock = config
        .database
        .sqlite_path()
        .map(crate::lock::InstanceLock::acquire)
        .transpose()?;
    let counts: Vec<(String, i64)> = skus.iter().map(|s| (s.clone(), START_QTY)).collect();
    ledger
        .import_stock(&counts, "demo", "demo: the ERP's count")
        .await?;
    ledger.import_mappings(&bz_links).await?;

    let cancel = CancellationToken::new();
    let providers = crate::providers::build_all(&config, &ledger, &cancel)?;
    let engine = Arc::new(Engine::new(ledger.clone(), providers, config.sync.clone()));
    let listener =
        crate::server::bind(config.http.listen.expect("the demo config listens")).await?;
    let http = listener.local_addr()?;
    let _ = writeln!(
        out,
        "stoksync demo: {} SKUs on 4 sandbox providers (control API http://{control}/)\n  folder {}\n  status page http://{http}/   metrics http://{http}/metrics\n",
        skus.len(),
        dir.path().display()
    );
    let daemon = Daemon {
        config: Arc::new(config.clone()),
        ledger: ledger.clone(),
        engine: engine.clone(),
        listener: Some(listener),
        lease: None,
    };
    let daemon_cancel = cancel.clone();
    let running = tokio::spawn(daemon.run(daemon_cancel, Arc::new(Notifier::disabled())));
    let mut screen = Screen::new();

    // 1. The first full sync: every listing linked and showing the ledger.
    let total: usize = listings.values().map(Vec::len).sum();
    let first_sync = Instant::now();
    let mut expected: BTreeMap<String, i64> = counts.iter().cloned().collect();
    loop {
        let rows = table(&sandbox, &ledger, &listings, &expected).await?;
        let done: usize = rows.iter().map(Row::matching).sum();
        screen.draw(
            out,
            &format!("first full sync {}", bar(done, total)),
            &progress(&engine, &ledger).await,
        );
        if done == total {
            break;
        }
        if first_sync.elapsed() > SETTLE_LIMIT {
            anyhow::bail!("the first sync did not finish in {SETTLE_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = writeln!(
        out,
        "first full sync done in {:.1} s\n",
        first_sync.elapsed().as_secs_f64()
    );
    screen.release();

    // 2. A day in fast motion.
    let sd_edit = &listings[&ProviderName::Stokdurumu][0];
    sandbox.stokdurumu.set_by_hand(
        sd_edit.listing_id.parse().unwrap_or_default(),
        START_QTY + HAND_EDIT,
    );
    *expected.get_mut(&skus[0]).expect("sku") += HAND_EDIT;
    let marketplaces = [
        ProviderName::Bazaardan,
        ProviderName::Eticaret,
        ProviderName::Pazarsync,
    ];
    let mut placed: Vec<(ProviderName, String, String, i64)> = Vec::new();
    let mut cancelled = 0;
    let orders_start = Instant::now();
    let mut next_order = Instant::now();
    while orders_start.elapsed() < opts.duration {
        if Instant::now() >= next_order {
            let p = marketplaces[placed.len() % marketplaces.len()];
            // The first order is for the SKU edited by hand, so a push to
            // stokdurumu reveals the edit at once (drift reads are rationed).
            let i = if placed.is_empty() {
                0
            } else {
                fastrand::usize(..skus.len())
            };
            let qty = fastrand::i64(1..=3);
            let l = &listings[&p][i];
            if let Some(order) = sandbox.fake(p).place_order(l, qty) {
                *expected.get_mut(&skus[i]).expect("sku") -= qty;
                placed.push((p, order, skus[i].clone(), qty));
            }
            // Every fifth order the customer changes their mind.
            if placed.len().is_multiple_of(5)
                && let Some((p, order, sku, qty)) = placed.get(placed.len() - 3).cloned()
            {
                sandbox.fake(p).cancel_order(&order);
                *expected.get_mut(&sku).expect("sku") += qty;
                cancelled += 1;
            }
            next_order = Instant::now() + Duration::from_millis(fastrand::u64(400..900));
        }
        let left = opts.duration.saturating_sub(orders_start.elapsed());
        screen.draw(
            out,
            &format!(
                "customers ordering: {} orders placed, {cancelled} cancelled, {} s left",
                placed.len(),
                left.as_secs()
            ),
            &progress(&engine, &ledger).await,
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 3. Orders stop; everything settles.
    let settle = Instant::now();
    let rows = loop {
        let rows = table(&sandbox, &ledger, &listings, &expected).await?;
        let ok = rows.iter().filter(|r| r.ok()).count();
        let waits = settle_waits(&engine, &ledger, &rows).await;
        screen.draw(
            out,
            &format!(
                "settling {}{}",
                bar(ok, rows.len()),
                if waits.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", waits.join("; "))
                }
            ),
            &progress(&engine, &ledger).await,
        );
        if ok == rows.len() || settle.elapsed() > SETTLE_LIMIT {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let converged = rows.iter().all(Row::ok);
    cancel.cancel();
    let _ = running.await;

    screen.release();
    let _ = writeln!(out, "\n{}", render_table(&rows));
    let _ = writeln!(out, "requests each sandbox provider received:");
    let mut violations = 0;
    for f in sandbox.fakes() {
        let c = f.counters();
        violations += c.limit_violations;
        let _ = writeln!(
            out,
            "  {:<11} {:>4} requests, busiest minute {:>3}, limit violations {}, auth failures {}",
            f.provider().as_str(),
            c.requests,
            c.max_per_minute,
            c.limit_violations,
            c.auth_failures
        );
    }
    let ok = converged && violations == 0;
    let _ = writeln!(
        out,
        "\n{} orders placed, {cancelled} cancelled, 1 hand edit in stokdurumu: {}",
        placed.len(),
        if ok {
            format!(
                "all {} listings on 4 providers show the ledger, and the ledger is what the orders left.",
                total
            )
        } else if !converged {
            format!("NOT converged within {SETTLE_LIMIT:?} (rows marked ✗ above).")
        } else {
            "converged, but a provider's limit was broken.".to_string()
        }
    );
    if opts.keep {
        let _ = writeln!(
            out,
            "kept {}: try `stoksync --config {} status`",
            dir.path().display(),
            dir.path().join("stoksync.toml").display()
        );
    }
    ledger.close().await;
    Ok(ok)
}

async fn table(
    sandbox: &Sandbox,
    ledger: &Ledger,
    listings: &BTreeMap<ProviderName, Vec<ListingRef>>,
    expected: &BTreeMap<String, i64>,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, (sku, exp)) in expected.iter().enumerate() {
        let ledger_qty = ledger.stock_of(sku).await?.unwrap_or(i64::MIN);
        let shown = listings
            .iter()
            .map(|(p, ls)| (*p, sandbox.fake(*p).stock(&ls[i])))
            .collect();
        rows.push(Row {
            sku: sku.clone(),
            ledger: ledger_qty,
            expected: *exp,
            shown,
        });
    }
    Ok(rows)
}

/// The final table, one SKU a row.
pub fn render_table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<9} {:>6} {:>8} │ {:>9} {:>10} {:>8} {:>9} │\n",
        "SKU", "ledger", "expected", "bazaardan", "stokdurumu", "eticaret", "pazarsync"
    );
    s.push_str(&format!("{}\n", "─".repeat(72)));
    for r in rows {
        let cell = |p| {
            r.shown
                .get(&p)
                .copied()
                .flatten()
                .map_or("-".to_string(), |q: i64| q.to_string())
        };
        s.push_str(&format!(
            "{:<9} {:>6} {:>8} │ {:>9} {:>10} {:>8} {:>9} │ {}\n",
            r.sku,
            r.ledger,
            r.expected,
            cell(ProviderName::Bazaardan),
            cell(ProviderName::Stokdurumu),
            cell(ProviderName::Eticaret),
            cell(ProviderName::Pazarsync),
            if r.ok() { "✓" } else { "✗" }
        ));
    }
    s
}

fn bar(done: usize, total: usize) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    format!(
        "[{}{}] {done}/{total}",
        "#".repeat(filled),
        "·".repeat(WIDTH - filled)
    )
}

/// What the settling waits on, for each provider with a listing still off:
/// its per-minute limit when the last minute used it up (the v2 site's
/// 22/min is the usual one), with when the next permit comes; else that it
/// is pushing.
async fn settle_waits(engine: &Engine, ledger: &Ledger, rows: &[Row]) -> Vec<String> {
    let now = crate::domain::now_ms();
    let mut out = Vec::new();
    for p in engine.providers() {
        let name = p.name();
        let behind = rows
            .iter()
            .filter(|r| {
                r.shown
                    .get(&name)
                    .is_some_and(|s| *s != Some(plan::wanted(r.ledger, 0)))
            })
            .count();
        if behind == 0 {
            continue;
        }
        let window_ms = i64::try_from(crate::limit::WINDOW.as_millis()).unwrap_or(60_000);
        let times = ledger
            .request_times_since(name, now - window_ms)
            .await
            .unwrap_or_default();
        out.push(match p.limiter().per_minute() {
            Some(limit) => describe_wait(name, limit, behind, &times, now),
            None => format!("{name}: {behind} listing(s) to push"),
        });
    }
    out
}

/// `times`: the requests of the last window, oldest first. When they reach
/// the cap bulk pushes may use (the limit less its reserve), the next
/// permit comes when the oldest that counts leaves the window.
fn describe_wait(
    name: ProviderName,
    limit: usize,
    behind: usize,
    times: &[i64],
    now_ms: i64,
) -> String {
    let cap = limit - crate::limit::reserve(limit);
    let window_ms = i64::try_from((crate::limit::WINDOW + crate::limit::WINDOW_MARGIN).as_millis())
        .unwrap_or(60_500);
    if times.len() >= cap {
        let next_ms = times[times.len() - cap] + window_ms - now_ms;
        let secs = (next_ms.max(0) + 999) / 1000;
        format!(
            "waiting for {name}'s limit ({limit}/min), next permit in {secs} s ({behind} listing(s) to push)"
        )
    } else {
        format!("{name}: {behind} listing(s) to push")
    }
}

/// One line per provider: orders, pushes, requests against limits, waits.
async fn progress(engine: &Engine, ledger: &Ledger) -> Vec<String> {
    let health = engine.health().snapshot();
    let mut lines = Vec::new();
    for p in engine.providers() {
        let h = health.get(&p.name());
        let l = p.limiter();
        let st = l.stats();
        let minute = ledger
            .requests_since(p.name(), crate::domain::now_ms() - 60_000)
            .await
            .unwrap_or(0);
        let limit = match (l.per_minute(), l.daily_limit()) {
            (Some(m), Some(d)) => format!(
                "{minute:>3}/{m} this min, {}/{d} today",
                l.used_today().await
            ),
            (Some(m), None) => format!("{minute:>3}/{m} this min"),
            (None, Some(d)) => format!("{:>4}/{d} today", l.used_today().await),
            (None, None) => format!("{minute:>3} this min"),
        };
        lines.push(format!(
            "  {:<11} orders {:>3}  moves {:>3}  pushed {:>3}  pending {:>3}  requests {limit}  waits {}{}",
            p.name().as_str(),
            h.map_or(0, |h| h.order_lines_seen),
            h.map_or(0, |h| h.movements_applied),
            h.map_or(0, |h| h.pushes_confirmed),
            h.map_or(0, |h| h.pending),
            st.waits,
            h.and_then(|h| h.last_error.as_ref())
                .map(|e| format!("  ! {}", e.chars().take(60).collect::<String>()))
                .unwrap_or_default()
        ));
    }
    lines
}

/// Redraws a block in place on a terminal; prints it every few seconds
/// otherwise (a log, CI).
struct Screen {
    tty: bool,
    drawn: usize,
    last: Option<Instant>,
}

impl Screen {
    fn new() -> Screen {
        Screen {
            tty: std::io::stdout().is_terminal(),
            drawn: 0,
            last: None,
        }
    }

    /// Lines printed after this stay; the next block starts below them.
    fn release(&mut self) {
        self.drawn = 0;
        self.last = None;
    }

    fn draw(&mut self, out: &mut impl Write, head: &str, lines: &[String]) {
        if self.tty {
            if self.drawn > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn);
            }
            let _ = writeln!(out, "\x1b[2K{head}");
            for l in lines {
                let _ = writeln!(out, "\x1b[2K{l}");
            }
            self.drawn = lines.len() + 1;
        } else {
            if self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
            {
                return;
            }
            self.last = Some(Instant::now());
            let _ = writeln!(out, "{head}");
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_says_which_limit_it_waits_for_and_how_long() {
        let now = 1_000_000;
        // 20 of eticaret's 22 (two kept from bulk pushes) in the last
        // minute, the oldest 23 s ago: it leaves the window in 60.5 − 23 s.
        let times: Vec<i64> = (0..20).map(|i| now - 23_000 + i * 1000).collect();
        assert_eq!(
            describe_wait(ProviderName::Eticaret, 22, 9, &times, now),
            "waiting for eticaret's limit (22/min), next permit in 38 s (9 listing(s) to push)"
        );
        // Room left in the window: it is pushing, not waiting.
        assert_eq!(
            describe_wait(ProviderName::Eticaret, 22, 9, &times[..5], now),
            "eticaret: 9 listing(s) to push"
        );
        // A permit already due never reads as a negative wait.
        let old: Vec<i64> = (0..20).map(|i| now - 70_000 + i).collect();
        assert!(describe_wait(ProviderName::Eticaret, 22, 1, &old, now).contains("in 0 s"));
    }
}
