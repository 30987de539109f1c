//! The five performance figures of issue 11, one line each:
//!
//! ```text
//! cargo bench --bench stoksync                 # every figure, full size
//! cargo bench --bench stoksync -- plan         # one figure (several: plan apply)
//! STOKSYNC_BENCH_QUICK=1 cargo bench --bench stoksync   # small sizes, a smoke run
//! cargo test --benches                         # smoke sizes, no timing verdicts
//! ```
//!
//! - `apply`: order lines applied to a file ledger per second;
//! - `plan`: planning 100 000 listings (median of several runs);
//! - `first_sync`: 10 000 SKUs on three fakes, time to converge over the
//!   bound the rate limits imply;
//! - `sale_latency`: a sale elsewhere reaching every other channel while
//!   BaZaaRDan drains a 5-minute backlog;
//! - `rss`: peak RSS of the real `stoksync run` at 10 000 SKUs × 4 providers.
//!
//! Without `--bench` on the command line (which `cargo bench` passes) the
//! figures run at smoke size and no verdict is printed: `cargo test
//! --benches` runs this file so the harness cannot rot, and it asserts
//! nothing about time.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stoksync::config::Config;
use stoksync::domain::{ItemEffect, ListingRef, OrderChanges, OrderItem, ProviderName, now_ms};
use stoksync::engine::{Engine, plan};
use stoksync::http::Net;
use stoksync::ledger::{Ledger, ListingState};
use stoksync::providers::{build_all_on, retry_policy};
use stoksync::rules::{Field, RuleSet, Rules};
use stoksync::sandbox::{Fake, bazaardan, eticaret, pazarsync, stokdurumu};
use tokio_util::sync::CancellationToken;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How big a run is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Size {
    /// `cargo bench` without STOKSYNC_BENCH_QUICK: the sizes of issue 11.
    Full,
    /// STOKSYNC_BENCH_QUICK=1: small, minutes become seconds.
    Quick,
    /// Not under `cargo bench` (`cargo test --benches`): smallest, no verdicts.
    Smoke,
}

impl Size {
    fn pick<T>(self, full: T, quick: T, smoke: T) -> T {
        match self {
            Size::Full => full,
            Size::Quick => quick,
            Size::Smoke => smoke,
        }
    }
}

/// One printed line.
struct Line {
    name: String,
    value: String,
    target: String,
    /// `None`: no target for this line (raw numbers), or a smoke run.
    pass: Option<bool>,
    params: String,
}

impl Line {
    fn print(&self, size: Size) {
        let verdict = match (size, self.pass) {
            (Size::Smoke, _) | (_, None) => "",
            (_, Some(true)) => "ok",
            (_, Some(false)) => "MISSED",
        };
        println!(
            "{:<24} {:<30} target {:<28} {:<6} | {}",
            self.name, self.value, self.target, verdict, self.params
        );
    }
}

type Figure = fn(Size) -> Res<Vec<Line>>;

const FIGURES: &[(&str, Figure)] = &[
    ("apply", fig_apply),
    ("plan", fig_plan),
    ("first_sync", fig_first_sync),
    ("sale_latency", fig_sale_latency),
    ("rss", fig_rss),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let under_bench = args.iter().any(|a| a == "--bench");
    let quick = std::env::var("STOKSYNC_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let size = match (under_bench, quick) {
        (false, _) => Size::Smoke,
        (true, true) => Size::Quick,
        (true, false) => Size::Full,
    };
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    for w in &wanted {
        if !FIGURES.iter().any(|(n, _)| n == w) {
            eprintln!(
                "unknown figure `{w}`; figures: {}",
                FIGURES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
            );
            std::process::exit(2);
        }
    }
    // RUST_LOG=stoksync=debug shows what the engine did (on stderr), to
    // find where a figure's time goes.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    println!("machine: {} ({size:?} size)", machine());
    let mut failed = false;
    for (name, fig) in FIGURES {
        if !wanted.is_empty() && !wanted.contains(name) {
            continue;
        }
        match fig(size) {
            Ok(lines) => lines.iter().for_each(|l| l.print(size)),
            Err(e) => {
                println!("{name:<24} ERROR: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}

/// `nproc` and the CPU model, for the README's machine line.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn bz_listing(id: usize) -> ListingRef {
    ListingRef {
        provider: ProviderName::Bazaardan,
        listing_id: (100_000 + id).to_string(),
        variant_id: String::new(),
    }
}

fn sku(i: usize) -> String {
    format!("SKU-{i:05}")
}

// ---- apply -------------------------------------------------------------

/// Order lines a second through `Ledger::apply_orders`, the call
/// `Engine::poll` makes with each poll's changes: a real file ledger opened
/// by `Ledger::open` (WAL, synchronous=FULL), pages of 100 new lines on
/// linked listings, each line one movement.
fn fig_apply(size: Size) -> Res<Vec<Line>> {
    const PAGE: usize = 100;
    let pages = size.pick(300, 60, 5);
    let skus = size.pick(5_000, 1_000, 200);
    runtime().block_on(async move {
        let dir = tempfile::tempdir()?;
        let ledger = Ledger::open(&dir.path().join("ledger.db")).await?;
        let stock: Vec<(String, i64)> = (0..skus).map(|i| (sku(i), 1_000_000)).collect();
        ledger.import_stock(&stock, "bench", "initial count").await?;
        let maps: Vec<(String, ListingRef)> = (0..skus).map(|i| (sku(i), bz_listing(i))).collect();
        ledger.import_mappings(&maps).await?;
        let provider = ProviderName::Bazaardan;
        let epoch = ledger.epoch(provider, now_ms() - 300_000).await?;
        let now = chrono::Utc::now();
        let page = |p: usize| OrderChanges {
            items: (0..PAGE)
                .map(|j| {
                    let n = p * PAGE + j;
                    // Spread over the SKUs, several lines per order.
                    let listing = (n * 7919) % skus;
                    OrderItem {
                        key: format!("item-{n}"),
                        order_ref: format!("ORD-{}", n / 3),
                        listing_id: bz_listing(listing).listing_id,
                        variant_id: String::new(),
                        sku_hint: Some(sku(listing)),
                        quantity: 1 + (n % 3) as i64,
                        status: "accepted".into(),
                        effect: ItemEffect::Hold,
                        updated_at: format!("2026-01-01 10:{:02}:{:02}", (n / 60) % 60, n % 60),
                        created_at: Some(now),
                    }
                })
                .collect(),
            cursor: Some(format!("cursor-{p}")),
            ..OrderChanges::default()
        };
        // One page to warm the statement cache, not timed.
        ledger.apply_orders(provider, &page(pages), epoch).await?;
        let changes: Vec<OrderChanges> = (0..pages).map(page).collect();
        let mut movements = 0;
        let mut per_page = Vec::with_capacity(pages);
        let start = Instant::now();
        for c in &changes {
            let t = Instant::now();
            movements += ledger.apply_orders(provider, c, epoch).await?.movements;
            per_page.push(t.elapsed());
        }
        let took = start.elapsed();
        let lines = pages * PAGE;
        if movements != lines {
            return Err(format!("{lines} lines applied but {movements} movements written").into());
        }
        per_page.sort();
        let rate = lines as f64 / took.as_secs_f64();
        ledger.close().await;
        Ok(vec![Line {
            name: "apply".into(),
            value: format!("{rate:.0} lines/s"),
            target: ">= 50000 lines/s".into(),
            pass: Some(rate >= 50_000.0),
            params: format!(
                "{lines} lines in {pages} pages of {PAGE}, {skus} linked SKUs, file db WAL sync=FULL; {:.1} ms total, page p50 {:.2} ms max {:.2} ms",
                took.as_secs_f64() * 1e3,
                ms(per_page[per_page.len() / 2]),
                ms(*per_page.last().unwrap())
            ),
        }])
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---- plan --------------------------------------------------------------

/// A planner the `plan` figure times: called with the listings and the
/// rules, returns how many pushes it would send (kept from the
/// optimizer). `FnMut` so a planner can keep state between runs (a queue
/// it refreshes).
type Planner = Box<dyn FnMut(&[ListingState], &Rules) -> usize>;

/// Every planner timed by the `plan` figure, each on its own line.
fn planners() -> Vec<(&'static str, Planner)> {
    vec![
        (
            "plan",
            Box::new(|states: &[ListingState], rules: &Rules| {
                plan::plan(states, rules).pushes.len()
            }),
        ),
        // The scheduler's re-plan: the plan, then the queue in lanes
        // (what a provider loop does when the ledger moved).
        ("plan/scheduler_replan", {
            let mut queue = stoksync::engine::scheduler::Queue::default();
            let skip = std::collections::HashSet::new();
            Box::new(move |states: &[ListingState], rules: &Rules| {
                let p = plan::plan(states, rules);
                queue.replan(&p, &skip, 0);
                queue.len()
            })
        }),
    ]
}

/// 100 000 listings as `Ledger::listing_states` returns them: a third
/// already showing the wanted value, a third differing, a third never
/// confirmed; a few refused, unsettled or missing from the ledger; one in
/// ten with a SKU rule (a cap), one in a hundred frozen.
fn listing_states(n: usize) -> Vec<ListingState> {
    (0..n)
        .map(|i| {
            let ledger_qty = (i % 97 != 0).then_some((i % 120) as i64);
            let want = plan::wanted(ledger_qty.unwrap_or(0), 2);
            ListingState {
                listing: ListingRef {
                    provider: ProviderName::Bazaardan,
                    listing_id: (1_000_000 + i).to_string(),
                    variant_id: String::new(),
                },
                sku: sku(i),
                ledger_qty,
                confirmed_qty: match i % 3 {
                    0 => Some(want),
                    1 => Some(want + 1),
                    _ => None,
                },
                rejected_qty: (i % 50 == 1).then_some(want),
                unsettled: i % 31 == 0,
                rule: match i % 100 {
                    7 => Some(RuleSet::default().with(Field::Frozen, 1)),
                    r if r % 10 == 3 => Some(RuleSet::default().with(Field::MaxQuantity, 50)),
                    _ => None,
                },
            }
        })
        .collect()
}

fn fig_plan(size: Size) -> Res<Vec<Line>> {
    let n = size.pick(100_000, 100_000, 10_000);
    let runs = size.pick(21, 11, 3);
    let safety = 2;
    let rules = Rules::with_safety_stock(safety);
    let states = listing_states(n);
    let mut out = Vec::new();
    for (name, mut planner) in planners() {
        // Two runs to warm caches and the allocator, not counted.
        for _ in 0..2 {
            black_box(planner(black_box(&states), &rules));
        }
        let mut times = Vec::with_capacity(runs);
        let mut pushes = 0;
        for _ in 0..runs {
            let t = Instant::now();
            pushes = black_box(planner(black_box(&states), &rules));
            times.push(t.elapsed());
        }
        times.sort();
        let median = times[runs / 2];
        out.push(Line {
            name: name.into(),
            value: format!("{:.2} ms median", ms(median)),
            target: "<= 20 ms".into(),
            pass: Some(median <= Duration::from_millis(20)),
            params: format!(
                "{n} listings, {pushes} pushes planned, safety {safety}, SKU rules on 1 in 10, {runs} runs: min {:.2} ms max {:.2} ms",
                ms(times[0]),
                ms(times[runs - 1])
            ),
        });
    }
    Ok(out)
}

// ---- the engine in-process against the fakes --------------------------

/// A daemon's engine on a temporary ledger, built as `stoksync run` builds
/// it (config parsed from text, `build_all_on`, `Engine::new`), running
/// its provider loops until `stop`.
struct Daemon {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Daemon {
    /// Imports `stock` and `maps`, then starts the engine's loops.
    async fn start(
        config_tail: &str,
        poll_interval: &str,
        stock: &[(String, i64)],
        maps: &[(String, ListingRef)],
    ) -> Res<Daemon> {
        let dir = tempfile::tempdir()?;
        let text = format!(
            "[ledger]\ndatabase = \"ledger.db\"\n[sync]\npoll_interval = \"{poll_interval}\"\norder_lookback = \"5m\"\nrequest_timeout = \"10s\"\n[http]\nlisten = \"off\"\n{config_tail}"
        );
        let file = dir.path().join("stoksync.toml");
        std::fs::write(&file, &text)?;
        let config = Config::parse(&text, &file, &|_| None).map_err(|e| e.to_string())?;
        let ledger = Ledger::open(&config.database).await?;
        ledger.import_stock(stock, "bench", "initial count").await?;
        if !maps.is_empty() {
            ledger.import_mappings(maps).await?;
        }
        let cancel = CancellationToken::new();
        let net = Net::new(
            config.sync.request_timeout,
            retry_policy(&config),
            cancel.clone(),
        )?;
        let providers = build_all_on(&config, &ledger, &net)?;
        let engine = Arc::new(Engine::new(ledger, providers, config.sync.clone()));
        let started = Instant::now();
        let task = tokio::spawn(engine.clone().run(cancel.clone()));
        Ok(Daemon {
            _dir: dir,
            engine,
            cancel,
            task: Some(task),
            started,
        })
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
        }
        self.engine.ledger().close().await;
    }
}

fn bz_table(f: &bazaardan::FakeBazaardan, rpm: u32) -> String {
    format!(
        "[providers.bazaardan]\nbase_url = \"{}\"\nclient_id = \"sandbox-client\"\nclient_secret = \"sandbox-secret\"\nrequests_per_minute = {rpm}\n",
        f.base_url()
    )
}

fn sd_table(f: &stokdurumu::FakeStokdurumu) -> String {
    format!(
        "[providers.stokdurumu]\nbase_url = \"{}\"\napi_key = \"sk_sandbox\"\nrequests_per_day = \"unlimited\"\n",
        f.base_url()
    )
}

fn pz_table(f: &pazarsync::FakePazarsync, rpm: u32) -> String {
    format!(
        "[providers.pazarsync]\nbase_url = \"{}\"\nclient_id = \"sandbox-client\"\nclient_secret = \"sandbox-secret\"\nrequests_per_minute = {rpm}\nrequests_per_day = \"unlimited\"\n",
        f.base_url()
    )
}

fn et_table(f: &eticaret::FakeEticaret, rpm: u32) -> String {
    format!(
        "[providers.eticaret]\nbase_url = \"{}\"\napi_key = \"sandbox-key\"\napi_secret = \"sandbox-secret\"\nrequests_per_minute = {rpm}\n",
        f.base_url()
    )
}

async fn start_bz(rpm: u32) -> Res<bazaardan::FakeBazaardan> {
    Ok(bazaardan::FakeBazaardan::start(bazaardan::Options {
        requests_per_minute: Some(rpm),
        ..Default::default()
    })
    .await?)
}

async fn start_sd() -> Res<stokdurumu::FakeStokdurumu> {
    Ok(stokdurumu::FakeStokdurumu::start(stokdurumu::Options {
        requests_per_day: None,
        ..Default::default()
    })
    .await?)
}

async fn start_pz(rpm: u32) -> Res<pazarsync::FakePazarsync> {
    Ok(pazarsync::FakePazarsync::start(pazarsync::Options {
        requests_per_minute: Some(rpm),
        requests_per_day: None,
        ..Default::default()
    })
    .await?)
}

/// A fake and its listings, each with the value it must come to show.
type Watch<'a> = (&'a dyn Fake, Vec<(ListingRef, i64)>);

/// Waits until every listing of every fake shows its wanted value, or
/// `limit` passes. Returns, per fake, when its last listing got there
/// (measured from `since`), `None` if it did not.
async fn wait_converged(
    fakes: &[Watch<'_>],
    since: Instant,
    limit: Duration,
) -> Vec<Option<Duration>> {
    let mut left: Vec<Vec<(ListingRef, i64)>> = fakes.iter().map(|f| f.1.clone()).collect();
    let mut done: Vec<Option<Duration>> = vec![None; fakes.len()];
    loop {
        for (i, (f, _)) in fakes.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            left[i].retain(|(l, want)| f.stock(l) != Some(*want));
            if left[i].is_empty() {
                done[i] = Some(since.elapsed());
            }
        }
        if done.iter().all(Option::is_some) || since.elapsed() > limit {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("not converged".into(), |d| {
        format!("{:.1} s", d.as_secs_f64())
    })
}

// ---- first_sync ----------------------------------------------------------

/// What one provider must send for a first sync, and how fast it may.
struct Need {
    provider: ProviderName,
    pushes: usize,
    batch: usize,
    /// Product list pages read to link by SKU (discovery).
    discovery: usize,
    /// Requests of the first poll.
    polls: usize,
    /// Requests per minute; `None` unlimited.
    rpm: Option<u32>,
}

impl Need {
    fn requests(&self) -> usize {
        self.pushes.div_ceil(self.batch) + self.discovery + self.polls
    }

    fn bound(&self) -> Duration {
        self.rpm.map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(self.requests() as f64 * 60.0 / f64::from(r))
        })
    }
}

fn fig_first_sync(size: Size) -> Res<Vec<Line>> {
    let n = size.pick(10_000, 1_000, 60);
    let rpm: u32 = size.pick(6_000, 6_000, 600);
    runtime().block_on(async move {
        let bz = start_bz(rpm).await?;
        let sd = start_sd().await?;
        let pz = start_pz(rpm).await?;
        let stock: Vec<(String, i64)> = (0..n).map(|i| (sku(i), 10 + (i % 50) as i64)).collect();
        // Every listing shows a stale 0: each one needs its push.
        let mut links: Vec<Watch<'_>> =
            vec![(&bz, vec![]), (&sd, vec![]), (&pz, vec![])];
        for (f, ls) in links.iter_mut() {
            for (s, q) in &stock {
                ls.push((f.add_product(s, 0), *q));
            }
        }
        // BaZaaRDan has no product list: linked by the operator's mapping;
        // the others by discovery.
        let maps: Vec<(String, ListingRef)> = stock
            .iter()
            .zip(&links[0].1)
            .map(|((s, _), (l, _))| (s.clone(), l.clone()))
            .collect();
        let tail = format!("{}{}{}", bz_table(&bz, rpm), sd_table(&sd), pz_table(&pz, rpm));
        let d = Daemon::start(&tail, "30s", &stock, &maps).await?;
        let done = wait_converged(&links, d.started, Duration::from_secs(1_800)).await;
        let total = d.started.elapsed();
        d.stop().await;

        let pages = n.div_ceil(100);
        let needs = [
            Need {
                provider: ProviderName::Bazaardan,
                pushes: n,
                batch: 1,
                discovery: 0,
                polls: 1,
                rpm: Some(rpm),
            },
            Need {
                provider: ProviderName::Stokdurumu,
                pushes: n,
                batch: 1,
                discovery: pages,
                // A poll reads every product's count, 100 a page.
                polls: pages,
                rpm: None,
            },
            Need {
                provider: ProviderName::Pazarsync,
                pushes: n,
                batch: 100,
                discovery: pages,
                // The token, then one page of orders.
                polls: 2,
                rpm: Some(rpm),
            },
        ];
        let bound = needs.iter().map(Need::bound).max().unwrap_or_default();
        let all = done.iter().copied().collect::<Option<Vec<_>>>();
        let elapsed = all
            .as_ref()
            .and_then(|v| v.iter().max().copied())
            .unwrap_or(total);
        let ratio = elapsed.as_secs_f64() / bound.as_secs_f64();
        let mut raw = Vec::new();
        for ((need, (f, _)), t) in needs.iter().zip(&links).zip(&done) {
            let c = f.counters();
            raw.push(format!(
                "{}: converged {} (needs {} requests{}, made {}, limit violations {})",
                need.provider,
                secs(*t),
                need.requests(),
                need.rpm.map_or(" unlimited".into(), |r| format!(
                    " at {r}/min = {:.1} s",
                    need.bound().as_secs_f64()
                )),
                c.requests,
                c.limit_violations
            ));
        }
        Ok(vec![Line {
            name: "first_sync".into(),
            value: if all.is_some() {
                format!("{ratio:.2}x bound")
            } else {
                format!("not converged in {:.0} s", total.as_secs_f64())
            },
            target: "<= 1.1x bound".into(),
            pass: Some(all.is_some() && ratio <= 1.1),
            params: format!(
                "{n} SKUs on bazaardan+stokdurumu+pazarsync, all stale; took {:.1} s, bound {:.1} s; {}",
                elapsed.as_secs_f64(),
                bound.as_secs_f64(),
                raw.join("; ")
            ),
        }])
    })
}

// ---- sale_latency --------------------------------------------------------

/// One sale placed while the backlog drains.
struct Sale {
    sku: usize,
    channel: ProviderName,
    at: Instant,
    /// The other channels' listings of the SKU, and the value they must show.
    watch: Vec<(usize, ListingRef)>,
    want: i64,
    seen: Option<Duration>,
    /// Whether BaZaaRDan's listing had already been pushed its initial
    /// value when the sale was placed.
    bz_pushed_before: bool,
}

fn fig_sale_latency(size: Size) -> Res<Vec<Line>> {
    let n = size.pick(3_000, 300, 60);
    let sales = size.pick(24, 8, 2);
    let poll_interval = size.pick(10, 5, 1);
    let bz_rpm: u32 = 600;
    const START: i64 = 100;
    runtime().block_on(async move {
        let bz = start_bz(bz_rpm).await?;
        let sd = start_sd().await?;
        let pz = start_pz(6_000).await?;
        let stock: Vec<(String, i64)> = (0..n).map(|i| (sku(i), START)).collect();
        // BaZaaRDan's listings are stale (the backlog); the others already
        // show the ledger, so their loops are idle but for polls.
        let fakes: [&dyn Fake; 3] = [&bz, &sd, &pz];
        let listings: Vec<Vec<ListingRef>> = fakes
            .iter()
            .enumerate()
            .map(|(k, f)| {
                stock
                    .iter()
                    .map(|(s, q)| f.add_product(s, if k == 0 { 0 } else { *q }))
                    .collect()
            })
            .collect();
        let maps: Vec<(String, ListingRef)> = stock
            .iter()
            .zip(&listings[0])
            .map(|((s, _), l)| (s.clone(), l.clone()))
            .collect();
        let tail = format!("{}{}{}", bz_table(&bz, bz_rpm), sd_table(&sd), pz_table(&pz, 6_000));
        let d = Daemon::start(&tail, &format!("{poll_interval}s"), &stock, &maps).await?;
        // Wait until discovery linked the other two channels.
        let ledger = d.engine.ledger().clone();
        let linked_by = Instant::now() + Duration::from_secs(600);
        loop {
            let sd_n = ledger.listing_states(ProviderName::Stokdurumu).await?.len();
            let pz_n = ledger.listing_states(ProviderName::Pazarsync).await?.len();
            // Linked, and their first push round (which confirms the values
            // they already show) done: from here on only sales move them.
            if sd_n == n
                && pz_n == n
                && d.engine.pending(ProviderName::Stokdurumu).await?.0 == 0
                && d.engine.pending(ProviderName::Pazarsync).await?.0 == 0
            {
                break;
            }
            if Instant::now() > linked_by {
                return Err(format!("discovery linked {sd_n} and {pz_n} of {n}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The backlog: n pushes at bz_rpm a minute.
        let backlog = Duration::from_secs_f64(n as f64 * 60.0 / f64::from(bz_rpm));
        let span = backlog.mul_f64(0.85);
        let first_at = d.started.elapsed();
        let mut placed: Vec<Sale> = Vec::new();
        let deadline = Instant::now() + span + backlog + Duration::from_secs(120);
        let mut next = 0;
        while Instant::now() < deadline {
            // Place the sales that are due, spread evenly over the span.
            while next < sales
                && d.started.elapsed() >= first_at + span.mul_f64(next as f64 / sales as f64)
            {
                let i = (next * n / sales + 7) % n;
                let (channel, k) = if next % 2 == 0 {
                    (ProviderName::Pazarsync, 2)
                } else {
                    (ProviderName::Stokdurumu, 1)
                };
                let bz_pushed_before = bz.stock(&listings[0][i]) == Some(START);
                if k == 2 {
                    pz.place_order(&listings[2][i], 1)
                        .ok_or("PazarSync refused the order")?;
                } else if !Fake::set_by_hand(&sd, &listings[1][i], START - 1) {
                    return Err("stokdurumu refused the hand edit".into());
                }
                placed.push(Sale {
                    sku: i,
                    channel,
                    at: Instant::now(),
                    watch: (0..3)
                        .filter(|&o| o != k)
                        .map(|o| (o, listings[o][i].clone()))
                        .collect(),
                    want: START - 1,
                    seen: None,
                    bz_pushed_before,
                });
                next += 1;
            }
            for s in placed.iter_mut().filter(|s| s.seen.is_none()) {
                if s.watch
                    .iter()
                    .all(|(o, l)| fakes[*o].stock(l) == Some(s.want))
                {
                    s.seen = Some(s.at.elapsed());
                }
            }
            if next == sales && placed.iter().all(|s| s.seen.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let run = d.started.elapsed();
        d.stop().await;

        let mut lat: Vec<Duration> = placed.iter().filter_map(|s| s.seen).collect();
        lat.sort();
        let missing = placed.len() - lat.len() + (sales - placed.len());
        let p50 = lat.get(lat.len() / 2).copied();
        let max = lat.last().copied();
        let target = Duration::from_secs(poll_interval + 5);
        let mut detail: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in &placed {
            detail
                .entry(format!(
                    "{} (bz already pushed: {})",
                    s.channel, s.bz_pushed_before
                ))
                .or_default()
                .push(format!("{}:{}", sku(s.sku), secs(s.seen)));
        }
        Ok(vec![Line {
            name: "sale_latency".into(),
            value: format!(
                "p50 {} max {}{}",
                secs(p50),
                secs(max),
                if missing > 0 {
                    format!(" ({missing} unseen)")
                } else {
                    String::new()
                }
            ),
            target: format!("max <= poll_interval+5 s = {} s", target.as_secs()),
            pass: Some(missing == 0 && max.is_some_and(|m| m <= target)),
            params: format!(
                "poll_interval {poll_interval} s; bazaardan {n} listings queued at {bz_rpm}/min (backlog {:.0} s), stokdurumu+pazarsync linked; {sales} sales (pazarsync orders, stokdurumu panel sales) over {:.0} s; run {:.0} s; per sale: {detail:?}",
                backlog.as_secs_f64(),
                span.as_secs_f64(),
                run.as_secs_f64()
            ),
        }])
    })
}

// ---- rss -----------------------------------------------------------------

/// The real binary: cargo builds it for benches and tests of this package.
const BIN: &str = env!("CARGO_BIN_EXE_stoksync");

fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn cli(config: &Path, args: &[&str]) -> Res<()> {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("STOKSYNC_CONFIG", config)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "stoksync {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn fig_rss(size: Size) -> Res<Vec<Line>> {
    let n = size.pick(10_000, 1_000, 40);
    // After the three fast providers converged, how long the daemon keeps
    // running (v2 is still reading its product list at 22/min then).
    let settle = Duration::from_secs(
        std::env::var("STOKSYNC_BENCH_RSS_SETTLE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(size.pick(60, 10, 2)),
    );
    let rpm: u32 = 6_000;
    runtime().block_on(async move {
        let bz = start_bz(rpm).await?;
        let sd = start_sd().await?;
        let et = eticaret::FakeEticaret::start(Default::default()).await?;
        let pz = start_pz(rpm).await?;
        let dir = tempfile::tempdir()?;
        let stock: Vec<(String, i64)> = (0..n).map(|i| (sku(i), 10 + (i % 50) as i64)).collect();
        // bazaardan, stokdurumu, pazarsync stale; v2 (22 requests a minute
        // at most, the site's limit) already shows the ledger.
        let mut links: Vec<Watch<'_>> =
            vec![(&bz, vec![]), (&sd, vec![]), (&pz, vec![])];
        for (f, ls) in links.iter_mut() {
            for (s, q) in &stock {
                ls.push((f.add_product(s, 0), *q));
            }
        }
        for (s, q) in &stock {
            et.add_product(s, *q);
        }
        let mut csv = String::from("sku,quantity\n");
        let mut map = String::from("sku,provider,listing_id,variant_id\n");
        for ((s, q), (l, _)) in stock.iter().zip(&links[0].1) {
            csv.push_str(&format!("{s},{q}\n"));
            map.push_str(&format!("{s},bazaardan,{},\n", l.listing_id));
        }
        std::fs::write(dir.path().join("stock.csv"), csv)?;
        std::fs::write(dir.path().join("map.csv"), map)?;
        let config = dir.path().join("stoksync.toml");
        let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        std::fs::write(
            &config,
            format!(
                "[ledger]\ndatabase = \"ledger.db\"\n[sync]\npoll_interval = \"30s\"\n[http]\nlisten = \"{http}\"\n{}{}{}{}",
                bz_table(&bz, rpm),
                sd_table(&sd),
                et_table(&et, 22),
                pz_table(&pz, rpm)
            ),
        )?;
        let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        cli(&config, &["stock", "import", &path("stock.csv")])?;
        cli(&config, &["mapping", "import", &path("map.csv")])?;

        let log = std::fs::File::create(dir.path().join("run.log"))?;
        let mut child = std::process::Command::new(BIN)
            .arg("run")
            .env("STOKSYNC_CONFIG", &config)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        let pid = child.id();
        let started = Instant::now();
        // Sample RSS while the pushes run.
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            std::thread::spawn(move || {
                let mut peak_at = (0u64, Duration::ZERO);
                while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(kb) = proc_kb(pid, "VmRSS:")
                        && kb > peak_at.0
                    {
                        peak_at = (kb, started.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                peak_at
            })
        };
        let done = wait_converged(&links, started, Duration::from_secs(1_800)).await;
        let converged = started.elapsed();
        tokio::time::sleep(settle).await;
        let hwm = proc_kb(pid, "VmHWM:");
        let rss_end = proc_kb(pid, "VmRSS:");
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        let (_, peak_at) = sampler.join().map_err(|_| "the sampler panicked")?;
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        let et_pages = et
            .counters()
            .by_endpoint
            .get("product/lists")
            .copied()
            .unwrap_or(0);
        let hwm = hwm.ok_or("no VmHWM in /proc (did the daemon exit early? see run.log)")?;
        let mb = hwm as f64 / 1024.0;
        Ok(vec![Line {
            name: "rss".into(),
            value: format!("{mb:.1} MB VmHWM"),
            target: "<= 40 MB".into(),
            pass: Some(mb <= 40.0 && done.iter().all(Option::is_some)),
            params: format!(
                "`stoksync run`, {n} SKUs x 4 providers (bz/sd/pz stale, v2 already right); converged bz {} sd {} pz {}, ran {:.0} s more (v2 had read {et_pages} of {} product pages); peak RSS sample at {:.0} s, RSS at stop {:.1} MB; exit after SIGTERM: {status}",
                secs(done[0]),
                secs(done[1]),
                secs(done[2]),
                (started.elapsed() - converged).as_secs_f64(),
                n.div_ceil(50),
                peak_at.as_secs_f64(),
                rss_end.unwrap_or(0) as f64 / 1024.0
            ),
        }])
    })
}
