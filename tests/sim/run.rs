//! Runs one world: the real daemon (`stoksync::daemon::Daemon`, as `run`
//! starts it) against the in-process fakes of all four providers, in
//! virtual time, on this thread alone.
//!
//! The run is a sequence of segments, each on a fresh current-thread tokio
//! runtime with a paused clock: the first sync, each life of the daemon
//! during the world's activity, the pauses between lives, and the last
//! life, which must converge once the world goes quiet. A life ends the
//! three ways a process does: stopped (SIGTERM: the stop token; it must
//! end `Ok`), or killed, which drops the runtime and with it every task
//! where it stands, as kill -9 would — at a moment, at a named point of the
//! code, or right after a provider carried out a write of ours and before
//! its answer came back. The calendar (`stoksync::clock`) follows the
//! paused clock from segment to segment; ledger calls run to completion on
//! a database runtime of their own (`stoksync::ledger::run_on_own_runtime`),
//! so nothing but the seed decides what runs when.

use crate::model::{self, Catalog, Fakes};
use crate::world::{Event, How, REQUEST_TIMEOUT, SECRETS, Setup};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stoksync::config::Config;
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::engine::Engine;
use stoksync::http::{Net, client_builder};
use stoksync::ledger::{Database, Ledger, StockChange};
use stoksync::notify::Notifier;
use stoksync::providers::{build_all_on, retry_policy};
use stoksync::sandbox::{Fake, InProcess, bazaardan, eticaret, pazarsync, stokdurumu};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A sale: a customer's order placed on one listing.
#[derive(Debug, Clone)]
pub struct Sale {
    pub at_ms: i64,
    pub listing: ListingRef,
    pub sku: String,
    /// The journal key prefix of its order line (`provider/item/KEY/`).
    pub line: String,
    /// What every other listing of the SKUs it moved showed at that moment
    /// (those with a change the daemon could not see yet left out).
    pub shown: Vec<(ListingRef, Option<i64>)>,
}

/// What happened, with when, for the liveness checks.
#[derive(Debug, Default)]
pub struct Record {
    /// (from, to): when a daemon was running (Unix ms).
    pub up: Vec<(i64, i64)>,
    /// When the first sync ended (every listing right), from when it began.
    pub first_sync: Option<(i64, i64)>,
    /// When the world's activity began and ended.
    pub activity: (i64, i64),
    /// The model's stock after each change: (ms, SKU, quantity).
    pub expected: Vec<(i64, String, i64)>,
    pub sales: Vec<Sale>,
    /// (ms, alert key, open): alert transitions as the ledger showed them.
    pub alerts: Vec<(i64, String, bool)>,
    /// The alerts the sampler last saw open.
    pub open_now: BTreeSet<String>,
    /// (ms, provider, listings waiting to be pushed) sampled: the value
    /// the ledger's quantity makes them (by the model's own formula) is not
    /// what the provider confirmed, or a push is in doubt; leaving out
    /// listings whose change the daemon has not had a chance to see yet (a
    /// hand edit not read since, an order not polled since, an older
    /// PazarSync order changed after its lookback, seen at the next hourly
    /// sweep).
    pub wrong: Vec<(i64, ProviderName, usize)>,
    /// (ms, provider, listings left out of `wrong` then: the daemon could
    /// not know yet what they show).
    pub unknown: Vec<(i64, ProviderName, usize)>,
    /// Every exchange of the daemon with a fake, in order.
    pub trace: Vec<String>,
    /// The journal at the end: (created ms, SKU, key, kind, quantity after),
    /// read for when the daemon applied what (never for what stock is).
    pub journal: Vec<(i64, String, String, String, i64)>,
}

/// What one world did, for the report.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub lives: usize,
    pub kills: usize,
    pub stops: usize,
    pub events: usize,
    pub orders: usize,
    pub requests: usize,
    pub lost_answers: usize,
    pub hand_edits: usize,
    pub listings: usize,
    /// Virtual time the world lasted.
    pub simulated: Duration,
}

/// The outcome of one world.
#[derive(Debug, Default)]
pub struct Report {
    pub stats: Stats,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    /// A digest of everything observable: the trace of every exchange, how
    /// each life ended, the ledger at the end.
    pub digest: u64,
    /// Fault kinds by endpoint, crash points and ends this world exercised.
    pub covered: BTreeSet<String>,
    pub record: Record,
    pub logs: Vec<String>,
    /// Every write of ours each fake carried out, for a verbose replay.
    pub writes: Vec<String>,
}

/// How a life ended.
#[derive(Debug)]
pub enum End {
    Stopped(Result<(), String>),
    Killed(String),
    Failed(String),
}

/// What lets the daemon see a change a marketplace made to its own count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Its next order poll (an order, a cancellation, a return).
    Poll,
    /// PazarSync's next hourly sweep of older orders.
    Sweep,
    /// stokdurumu's next product list read, or a write to it.
    Read,
}

/// Placed orders of one provider, so events pick a sensible order to move.
#[derive(Default)]
struct Orders {
    placed: Vec<String>,
    shipped: Vec<String>,
}

/// The world's state shared with its tasks (one thread: the locks are
/// never contended; tasks need `Send`).
struct State {
    cursor: usize,
    orders: [Orders; 3],
    /// SKU -> units the ERP's answers say its calls moved.
    erp: BTreeMap<String, i64>,
    /// Where the model stood after the last event.
    expected: BTreeMap<String, i64>,
    failures: Vec<String>,
    covered: BTreeSet<String>,
    events: usize,
    /// Listings changed where the daemon only sees it later (see
    /// `Record::wrong`), since when.
    unobserved: BTreeMap<ListingRef, (i64, Seen)>,
    /// When each order was placed, and on which listing.
    placed_at: BTreeMap<(ProviderName, String), (i64, ListingRef)>,
    /// Some PazarSync order changed after its lookback (seen at a sweep).
    swept_late: bool,
    /// What the daemon's exchanges let it see, by when.
    seen: SeenIndex,
}

/// When the daemon's order polls, PazarSync sweeps and stokdurumu product
/// reads went out (from the trace, indexed as it grows).
#[derive(Default)]
struct SeenIndex {
    cursor: usize,
    polls: BTreeMap<ProviderName, Vec<i64>>,
    sweeps: Vec<i64>,
    reads: Vec<i64>,
}

struct World {
    setup: Setup,
    fakes: Fakes,
    catalog: Catalog,
    config: Arc<Config>,
    transport: Arc<InProcess>,
    trace: Arc<Mutex<Vec<String>>>,
    admin: Ledger,
    state: Mutex<State>,
    record: Mutex<Record>,
    /// Log lines of the life running now.
    log: Arc<Mutex<Vec<u8>>>,
}

const ORDERING: [ProviderName; 3] = [
    ProviderName::Bazaardan,
    ProviderName::Eticaret,
    ProviderName::Pazarsync,
];

fn slot(p: ProviderName) -> usize {
    ORDERING.iter().position(|x| *x == p).unwrap_or(0)
}

/// The one HTTP client every life builds its requests with (building one
/// loads root certificates; nothing is sent through it here).
fn request_builder() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            client_builder(REQUEST_TIMEOUT)
                .build()
                .expect("an HTTP client")
        })
        .clone()
}

/// The runtime ledger calls run on, shared by every world of the process.
pub fn database_runtime() -> tokio::runtime::Handle {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sim-database")
            .enable_all()
            .build()
            .expect("the database runtime")
    })
    .handle()
    .clone()
}

/// Log lines of one life, kept in memory.
#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines carry the simulated calendar (Unix ms).
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", stoksync::clock::now_ms())
    }
}

/// A fresh runtime for one segment, its clock paused.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

/// Runs `f` on a fresh runtime whose calendar starts at `*clock` (Unix
/// ms); moves `*clock` to where the segment ended. The runtime, and every
/// task left on it, is dropped at the end.
fn segment<T>(clock: &mut i64, f: impl AsyncFnOnce(Instant) -> T) -> T {
    let rt = runtime();
    let start = *clock;
    let (out, end) = rt.block_on(async move {
        stoksync::clock::simulate(Some(start));
        let t0 = Instant::now();
        let out = f(t0).await;
        (out, stoksync::clock::now_ms())
    });
    stoksync::clock::simulate(Some(end));
    drop(rt);
    stoksync::clock::simulate(None);
    *clock = end;
    out
}

/// The tokio instant of the calendar's `ms`, in a segment that began at
/// `t0` with the calendar at `start`.
fn instant_of(t0: Instant, start: i64, ms: i64) -> Instant {
    t0 + Duration::from_millis(ms.saturating_sub(start).max(0) as u64)
}

pub fn run(setup: &Setup, database: Option<String>, verbose: bool) -> Report {
    match run_inner(setup, database, verbose) {
        Ok(r) => r,
        Err(e) => Report {
            failures: vec![e],
            ..Report::default()
        },
    }
}

fn run_inner(setup: &Setup, database: Option<String>, verbose: bool) -> Result<Report, String> {
    fastrand::seed(setup.seed);
    // A courier thread for PostgreSQL (see `stoksync::ledger::Via`).
    let via = if database.is_some() {
        stoksync::ledger::Via::Courier
    } else {
        stoksync::ledger::Via::Inline
    };
    stoksync::ledger::run_on_own_runtime(Some((database_runtime(), via)));
    let dir = tempfile::Builder::new()
        .prefix("stoksync-sim-")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .map_err(|e| e.to_string())?;
    let mut dir = dir;
    if verbose {
        dir.disable_cleanup(true);
        eprintln!("sim: the world's files are in {}", dir.path().display());
    }
    let l = &setup.limits;
    let per_minute = |p: crate::world::Plan| p.per_minute.map(|m| m.0);
    let fakes = Fakes {
        bz: Arc::new(bazaardan::FakeBazaardan::in_process(bazaardan::Options {
            client_id: "sim-client".into(),
            client_secret: SECRETS[0].into(),
            requests_per_minute: per_minute(l.bz),
            window: crate::world::WINDOW,
            latency: Duration::ZERO,
        })),
        sd: Arc::new(stokdurumu::FakeStokdurumu::in_process(
            stokdurumu::Options {
                api_key: SECRETS[1].into(),
                requests_per_day: l.sd.per_day,
            },
        )),
        v2: Arc::new(eticaret::FakeEticaret::in_process(eticaret::Options {
            api_key: SECRETS[2].into(),
            api_secret: SECRETS[3].into(),
            requests_per_minute: per_minute(l.v2),
            window: crate::world::WINDOW,
        })),
        ps: Arc::new(pazarsync::FakePazarsync::in_process(pazarsync::Options {
            client_id: "sim-client".into(),
            client_secret: SECRETS[4].into(),
            requests_per_minute: per_minute(l.ps),
            requests_per_day: l.ps.per_day,
            token_lifetime: setup.token_life,
            window: crate::world::WINDOW,
        })),
    };
    let mut clock = setup.start_ms;
    // The catalog: every SKU on every provider, each showing a stale count.
    let mut rng = fastrand::Rng::with_seed(setup.seed ^ 0x5eed);
    let mut catalog = Catalog::default();
    if let Some(parts) = &setup.bundle {
        catalog.bundle(crate::world::KIT, parts);
    }
    stoksync::clock::simulate(Some(clock));
    for (sku, qty) in &setup.skus {
        for f in fakes.all() {
            let shows = (qty + rng.i64(-3..=3)).max(0);
            catalog.add(f.add_product(sku, shows), sku);
        }
    }
    if setup.bundle.is_some() {
        for f in fakes.all() {
            catalog.add(
                f.add_product(crate::world::KIT, rng.i64(0..=6)),
                crate::world::KIT,
            );
        }
    }
    stoksync::clock::simulate(None);
    let trace = Arc::new(Mutex::new(Vec::new()));
    let transport =
        Arc::new(InProcess::new(&fakes.all(), REQUEST_TIMEOUT).with_trace(trace.clone()));
    let db = dir.path().join("ledger.db");
    let database = match database {
        Some(url) => Database::Postgres {
            url,
            password: None,
        },
        None => Database::Sqlite(db.clone()),
    };
    let base = |p: ProviderName| fakes.get(p).base_url();
    let text = setup.config_text(&db, &base);
    let mut config =
        Config::parse(&text, &dir.path().join("sim.toml"), &|_| None).map_err(|e| e.to_string())?;
    config.database = database.clone();
    let config = Arc::new(config);

    // The seller's setup, before stoksync first runs: the ERP's counts,
    // bundles, BaZaaRDan's listings by mapping (it has no product list).
    let admin = segment(&mut clock, async |_| -> Result<Ledger, String> {
        let admin = Ledger::connect(&database)
            .await
            .map_err(|e| e.to_string())?;
        admin
            .import_stock(&setup.skus, "sim", "initial count")
            .await
            .map_err(|e| e.to_string())?;
        if let Some(parts) = &setup.bundle {
            let rows: Vec<stoksync::ledger::BundleRow> = parts
                .iter()
                .enumerate()
                .map(|(i, (sku, n))| stoksync::ledger::BundleRow {
                    line: i + 2,
                    bundle: crate::world::KIT.to_string(),
                    component: sku.clone(),
                    quantity: *n,
                })
                .collect();
            admin
                .import_bundles(&rows, "sim-bundles.csv")
                .await
                .map_err(|e| e.to_string())?;
        }
        let maps: Vec<(String, ListingRef)> = catalog
            .of(ProviderName::Bazaardan)
            .map(|(l, sku)| (sku.to_string(), l.clone()))
            .collect();
        admin
            .import_mappings(&maps)
            .await
            .map_err(|e| e.to_string())?;
        // stoksync starts now: orders from before are in the counts above.
        for p in ProviderName::ALL {
            admin
                .epoch(p, stoksync::domain::now_ms() - 2_000)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(admin)
    })?;

    let expected: BTreeMap<String, i64> = setup.skus.iter().cloned().collect();
    let world = Arc::new(World {
        setup: setup.clone(),
        fakes,
        catalog,
        config,
        transport,
        trace,
        admin,
        state: Mutex::new(State {
            cursor: 0,
            orders: Default::default(),
            erp: BTreeMap::new(),
            expected: expected.clone(),
            failures: Vec::new(),
            covered: BTreeSet::new(),
            events: 0,
            unobserved: BTreeMap::new(),
            placed_at: BTreeMap::new(),
            swept_late: false,
            seen: SeenIndex::default(),
        }),
        record: Mutex::new(Record::default()),
        log: Arc::new(Mutex::new(Vec::new())),
    });
    {
        let mut r = world.record.lock().unwrap();
        for (sku, q) in &expected {
            r.expected.push((clock, sku.clone(), *q));
        }
    }
    let sub = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(if verbose {
            "stoksync=debug,warn"
        } else {
            "stoksync=info,warn"
        }))
        .with_writer({
            let log = world.log.clone();
            move || Buf(log.clone())
        })
        .with_ansi(false)
        .with_timer(SimTime)
        .finish();
    let _log = tracing::subscriber::set_default(sub);

    let mut report = Report::default();
    let mut logs = Vec::new();

    // The first sync: stoksync links every listing and sets it to the
    // ledger before the world starts moving.
    let began = clock;
    let end = segment(&mut clock, async |t0| {
        life(
            &world,
            t0,
            began,
            None,
            Goal::Converge(first_sync_limit(&world)),
        )
        .await
    });
    let converged_at = world.record.lock().unwrap().first_sync.map(|f| f.1);
    logs.push(world.take_log());
    world.life_ended(&mut report, 0, &end, began, clock);
    if converged_at.is_none() {
        report
            .failures
            .push("the first sync did not converge".to_string());
    }

    // The world's activity, with the daemon's lives.
    let activity_start = clock;
    let activity_end = activity_start + setup.activity.as_millis() as i64;
    world.record.lock().unwrap().activity = (activity_start, activity_end);
    for (i, plan) in setup.lives.iter().enumerate() {
        let began = clock;
        let until = activity_start + plan.until_ms;
        let end = segment(&mut clock, async |t0| {
            let events = tokio::spawn(events_task(world.clone(), t0, began));
            let sampler = tokio::spawn(sampler_task(world.clone(), t0, began));
            let end = life(&world, t0, began, Some(plan), Goal::Until(until)).await;
            events.abort();
            sampler.abort();
            end
        });
        logs.push(world.take_log());
        world.life_ended(&mut report, i + 1, &end, began, clock);
        if matches!(end, End::Killed(_)) {
            world.after_kill(&mut clock);
        }
        if plan.restart_after_ms > 0 {
            let from = clock;
            segment(&mut clock, async |t0| {
                let events = tokio::spawn(events_task(world.clone(), t0, from));
                tokio::time::sleep_until(instant_of(t0, from, from + plan.restart_after_ms)).await;
                events.abort();
            });
        }
    }
    // The last life: the rest of the activity, then quiet (no more faults,
    // no more customers) until every listing is right.
    let began = clock;
    let last = setup.lives.len() + 1;
    let end = segment(&mut clock, async |t0| {
        let events = tokio::spawn(events_task(world.clone(), t0, began));
        let sampler = tokio::spawn(sampler_task(world.clone(), t0, began));
        let end = life(
            &world,
            t0,
            began,
            None,
            Goal::QuietThenConverge(activity_end),
        )
        .await;
        events.abort();
        sampler.abort();
        end
    });
    logs.push(world.take_log());
    world.life_ended(&mut report, last, &end, began, clock);
    let converged = world.record.lock().unwrap().first_sync.is_some()
        && world.state.lock().unwrap().failures.is_empty();
    let _ = converged;

    // At rest: the invariants.
    segment(&mut clock, async |_| {
        let journal = world
            .admin
            .movements_with_prefix("")
            .await
            .unwrap_or_default();
        world.record.lock().unwrap().journal = journal
            .into_iter()
            .map(|m| {
                (
                    m.created_at_ms,
                    m.sku,
                    m.idempotency_key,
                    m.kind,
                    m.quantity_after,
                )
            })
            .collect();
        let erp = world.state.lock().unwrap().erp.clone();
        crate::checks::at_rest(
            &world.setup,
            &world.fakes,
            &world.catalog,
            &world.admin,
            &erp,
            &mut report,
        )
        .await;
    });
    {
        let mut st = world.state.lock().unwrap();
        report.failures.append(&mut st.failures);
        report.covered.append(&mut st.covered);
        report.stats.events = st.events;
    }
    for (i, l) in logs.iter().enumerate() {
        crate::checks::log(i, l, &mut report);
    }
    let mut record = std::mem::take(&mut *world.record.lock().unwrap());
    record.trace = std::mem::take(&mut *world.trace.lock().unwrap());
    crate::checks::liveness(
        &world.setup,
        &world.fakes,
        &world.catalog,
        &record,
        &mut report,
    );
    for f in world.fakes.all() {
        let c = f.counters();
        report.stats.requests += c.requests;
        report.stats.lost_answers += c.lost_answers;
        for k in c.faults_fired.keys() {
            report.covered.insert(format!("{} {k}", f.provider()));
        }
    }
    report.stats.orders = world.fakes.bz.items().len()
        + world.fakes.v2.orders().len()
        + world.fakes.ps.orders().len();
    report.stats.hand_edits = world.fakes.sd.hand_edits().len();
    report.stats.listings = world.catalog.len();
    report.stats.simulated = Duration::from_millis((clock - setup.start_ms).max(0) as u64);
    report.digest = digest(&record, &report);
    if verbose {
        for f in world.fakes.all() {
            for (t, l, old, new) in f.timed_writes() {
                report
                    .writes
                    .push(format!("write {t} {}/{l} {old} -> {new}", f.provider()));
            }
        }
    }
    report.record = record;
    report.logs = logs;
    if verbose {
        segment(&mut clock, async |_| {
            for m in world
                .admin
                .movements_with_prefix("")
                .await
                .unwrap_or_default()
            {
                report.writes.push(format!(
                    "journal {} {} {} {:+} {}",
                    m.created_at_ms, m.sku, m.idempotency_key, m.delta, m.kind
                ));
            }
        });
    }
    segment(&mut clock, async |_| world.admin.close().await);
    stoksync::ledger::run_on_own_runtime(None);
    Ok(report)
}

/// What a replay must repeat: every exchange, how each life ended.
fn digest(record: &Record, report: &Report) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    record.trace.hash(&mut h);
    record.up.hash(&mut h);
    record.alerts.hash(&mut h);
    report.failures.hash(&mut h);
    h.finish()
}

/// How long the first sync may take: 1.1 times the bound its limits imply
/// (see `checks::first_sync_bound`), and a minute more, before the world
/// gives up on it (the check itself is exact).
fn first_sync_limit(w: &World) -> Duration {
    let b = crate::checks::first_sync_bound(&w.setup, &w.catalog, w.setup.poll);
    b.mul_f64(1.5) + Duration::from_secs(120)
}

/// How long the world waits, once quiet, for every listing to be right:
/// as long as a first sync, ten minutes more, and the hour PazarSync's
/// sweep of older orders may take when one changed late.
fn quiet_limit(w: &World) -> Duration {
    let sweep = if w.state.lock().unwrap().swept_late {
        stoksync::providers::pazarsync::SWEEP_EVERY
    } else {
        Duration::ZERO
    };
    first_sync_limit(w) + Duration::from_secs(600) + sweep
}

/// What a life is run for.
enum Goal {
    /// Until every listing is right (or the limit passes): then stop.
    Converge(Duration),
    /// Until `ms` (its plan says how it ends).
    Until(i64),
    /// Until the activity ends at `ms`, then quiet until converged.
    QuietThenConverge(i64),
}

/// Where the process dies, shared with the failpoint hook and the
/// tripwire.
#[derive(Default)]
struct Die {
    now: AtomicBool,
    notify: Notify,
    at: Mutex<Option<String>>,
}

impl Die {
    fn die(&self, why: String) {
        if !self.now.swap(true, Ordering::SeqCst) {
            *self.at.lock().unwrap() = Some(why);
        }
        self.notify.notify_one();
    }
}

async fn life(
    w: &Arc<World>,
    t0: Instant,
    began: i64,
    plan: Option<&crate::world::Life>,
    goal: Goal,
) -> End {
    let die = Arc::new(Die::default());
    let stop = CancellationToken::new();
    // The failpoints and the tripwire of this life.
    {
        let (die, how) = (die.clone(), plan.map(|p| p.how.clone()));
        let seen = Arc::new(AtomicU32::new(0));
        stoksync::failpoint::install(Arc::new(move |name| {
            if die.now.load(Ordering::SeqCst) {
                return true;
            }
            if let Some(How::Failpoint { point, nth }) = &how
                && name == *point
                && seen.fetch_add(1, Ordering::SeqCst) + 1 == *nth
            {
                die.die(format!("failpoint {point}"));
                return true;
            }
            false
        }));
    }
    for f in w.fakes.all() {
        f.set_tripwire(None);
    }
    if let Some(How::AfterWrite { provider, nth }) = plan.map(|p| p.how.clone()) {
        let (die, seen) = (die.clone(), Arc::new(AtomicU32::new(0)));
        w.fakes.get(provider).set_tripwire(Some(Arc::new(move || {
            if seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                die.die(format!("after write {nth} of {provider}"));
                true
            } else {
                false
            }
        })));
    }
    let config = w.config.clone();
    let ledger = match Ledger::open(&config.database).await {
        Ok(l) => l,
        Err(e) => return End::Failed(e.to_string()),
    };
    let net = Net {
        client: request_builder(),
        transport: w.transport.clone(),
        policy: retry_policy(&config),
        cancel: stop.clone(),
    };
    let providers = match build_all_on(&config, &ledger, &net) {
        Ok(p) => p,
        Err(e) => return End::Failed(e.to_string()),
    };
    let engine = Arc::new(Engine::new(ledger.clone(), providers, config.sync.clone()));
    let d = stoksync::daemon::Daemon {
        config: config.clone(),
        ledger: ledger.clone(),
        engine,
        listener: None,
        lease: None,
    };
    let run = d.run(stop.clone(), Arc::new(Notifier::disabled()));
    tokio::pin!(run);
    let sample = if w.setup.big {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(1)
    };
    let deadline = match goal {
        Goal::Converge(limit) => Some(Instant::now() + limit),
        Goal::Until(ms) => Some(instant_of(t0, began, ms)),
        Goal::QuietThenConverge(..) => None,
    };
    let mut quiet_since: Option<(Instant, Duration)> = None;
    let end = loop {
        let tick = tokio::time::sleep(sample);
        tokio::select! {
            biased;
            _ = die.notify.notified() => {
                break End::Killed(die.at.lock().unwrap().clone().unwrap_or_default());
            }
            r = &mut run => {
                break End::Failed(format!("the daemon ended on its own: {r:?}"));
            }
            _ = tick => {}
        }
        let now_ms = stoksync::clock::now_ms();
        match goal {
            Goal::Until(ms) if now_ms >= ms => match plan.map(|p| &p.how) {
                Some(How::Stop) | None => break stop_daemon(&stop, run.as_mut()).await,
                Some(how) => break End::Killed(format!("{how:?} at its time")),
            },
            Goal::Converge(_) => {
                if w.converged().await {
                    w.record.lock().unwrap().first_sync = Some((began, now_ms));
                    break stop_daemon(&stop, run.as_mut()).await;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break stop_daemon(&stop, run.as_mut()).await;
                }
            }
            Goal::QuietThenConverge(activity_end) if now_ms >= activity_end => {
                let (since, limit) = *quiet_since.get_or_insert_with(|| {
                    for f in w.fakes.all() {
                        f.clear_faults();
                    }
                    (Instant::now(), quiet_limit(w))
                });
                if w.converged().await {
                    break stop_daemon(&stop, run.as_mut()).await;
                }
                if since.elapsed() >= limit {
                    let why = w.differences().await.join("; ");
                    w.state
                        .lock()
                        .unwrap()
                        .failures
                        .push(format!("did not converge once quiet: {why}"));
                    break stop_daemon(&stop, run.as_mut()).await;
                }
            }
            _ => {}
        }
    };
    if matches!(end, End::Stopped(_)) {
        ledger.close().await;
    }
    end
}

async fn stop_daemon(
    stop: &CancellationToken,
    run: std::pin::Pin<&mut impl std::future::Future<Output = anyhow::Result<()>>>,
) -> End {
    stop.cancel();
    match tokio::time::timeout(
        stoksync::daemon::SHUTDOWN_GRACE + Duration::from_secs(5),
        run,
    )
    .await
    {
        Ok(r) => End::Stopped(r.map_err(|e| format!("{e:#}"))),
        Err(_) => End::Failed("a stop did not end within the shutdown grace".into()),
    }
}

impl World {
    fn take_log(&self) -> String {
        let bytes = std::mem::take(&mut *self.log.lock().unwrap());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn life_ended(&self, report: &mut Report, i: usize, end: &End, from: i64, to: i64) {
        self.record.lock().unwrap().up.push((from, to));
        report.stats.lives += 1;
        match end {
            End::Stopped(Ok(())) => {
                report.stats.stops += 1;
                report.covered.insert("end stop".into());
            }
            End::Stopped(Err(e)) => report
                .failures
                .push(format!("life {i}: a stop ended in an error: {e}")),
            End::Killed(at) => {
                report.stats.kills += 1;
                let what = at.split(" at its time").next().unwrap_or(at);
                let what = if what.starts_with("after write") {
                    format!(
                        "end kill after write to {}",
                        what.rsplit(' ').next().unwrap_or("")
                    )
                } else if what.starts_with("Kill") {
                    "end kill at a moment".to_string()
                } else {
                    format!("end kill at {what}")
                };
                if !at.ends_with("at its time") {
                    report.covered.insert(what);
                } else {
                    report.covered.insert("end kill at a moment".into());
                }
            }
            End::Failed(e) => report.failures.push(format!("life {i}: {e}")),
        }
    }

    /// After a kill: a listing left with an unsettled write may show what
    /// that write set without the daemon knowing it; its next write of the
    /// same value is no wasted one.
    fn after_kill(&self, clock: &mut i64) {
        let me = self;
        segment(clock, async |_| {
            for p in ProviderName::ALL {
                if let Ok(u) = me.admin.unsettled(p).await {
                    for l in u.keys() {
                        me.fakes.get(p).excuse(l);
                    }
                }
            }
        });
    }

    /// Clears the marks of changes the daemon has since had a chance to
    /// see: a stokdurumu product list read, or a write to the listing (its
    /// answer says what it showed); a PazarSync sweep of older orders.
    fn observe(&self, now: i64) {
        let trace = self.trace.lock().unwrap();
        let mut st = self.state.lock().unwrap();
        // Index the exchanges since the last look, by what they let the
        // daemon see (each list ordered by time).
        let from = st.seen.cursor;
        for line in &trace[from..] {
            let mut it = line.split(' ');
            let at: i64 = it.next().and_then(|t| t.parse().ok()).unwrap_or(0);
            let _method = it.next();
            let url = it.next().unwrap_or("");
            let Some(p) = crate::checks::provider_of(url) else {
                continue;
            };
            if crate::checks::is_order_poll(p, url) {
                st.seen.polls.entry(p).or_default().push(at);
                if p == ProviderName::Pazarsync && is_sweep(url, at) {
                    st.seen.sweeps.push(at);
                }
            }
            if p == ProviderName::Stokdurumu && url.contains("/products?") {
                st.seen.reads.push(at);
            }
        }
        st.seen.cursor = trace.len();
        drop(trace);
        if st.unobserved.is_empty() {
            return;
        }
        let after =
            |times: &[i64], since: i64| times.len() - times.partition_point(|t| *t <= since);
        let st = &mut *st;
        let seen = &st.seen;
        let mut writes: BTreeMap<ProviderName, Vec<(i64, String, i64, i64)>> = BTreeMap::new();
        st.unobserved.retain(|l, (since, how)| {
            let since = *since;
            let known = match how {
                Seen::Read => {
                    let key = stoksync::sandbox::listing_key(l);
                    after(&seen.reads, since) > 0
                        || writes
                            .entry(l.provider)
                            .or_insert_with(|| self.fakes.get(l.provider).timed_writes())
                            .iter()
                            .any(|(t, k, _, _)| *t > since && *k == key)
                }
                Seen::Sweep => after(&seen.sweeps, since) > 0,
                // The poll after it, and the poll after that (one that
                // began before the change may end after it).
                Seen::Poll => after(seen.polls.get(&l.provider).map_or(&[][..], |v| v), since) >= 2,
            };
            !known
        });
        let _ = now;
    }

    /// Every SKU in the ledger as the model says, every listing showing
    /// what it must, no push unsettled.
    async fn converged(&self) -> bool {
        self.differences_upto(1).await.is_empty()
    }

    async fn differences(&self) -> Vec<String> {
        self.differences_upto(20).await
    }

    async fn differences_upto(&self, most: usize) -> Vec<String> {
        let want = {
            let st = self.state.lock().unwrap();
            model::expected(&self.setup, &self.fakes, &self.catalog, &st.erp)
        };
        let mut out = Vec::new();
        for (l, sku) in self.catalog.all() {
            let shows = self.fakes.get(l.provider).stock(l);
            let should = self.catalog.wanted(&self.setup, sku, &want);
            if shows != should {
                out.push(format!(
                    "{l} ({sku}) shows {shows:?}, should show {should:?}"
                ));
                if out.len() >= most {
                    return out;
                }
            }
        }
        let stock: BTreeMap<String, i64> = match self.admin.list_stock().await {
            Ok(rows) => rows.into_iter().map(|r| (r.sku, r.quantity)).collect(),
            Err(e) => return vec![format!("the ledger cannot be read: {e}")],
        };
        for (sku, q) in &want {
            if stock.get(sku) != Some(q) {
                out.push(format!(
                    "ledger {sku} = {:?}, the model says {q}",
                    stock.get(sku)
                ));
                if out.len() >= most {
                    return out;
                }
            }
        }
        for p in ProviderName::ALL {
            if let Ok(u) = self.admin.unsettled(p).await
                && !u.is_empty()
            {
                out.push(format!("{p}: {} listing(s) with unsettled pushes", u.len()));
            }
        }
        out
    }
}

/// Whether a PazarSync order list request looks back further than a day
/// before `at` (the hourly sweep of older orders).
fn is_sweep(url: &str, at: i64) -> bool {
    let Some(from) = url.split("from_date=").nth(1) else {
        return false;
    };
    let day = from.get(0..10).unwrap_or("");
    let Ok(d) = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
        return false;
    };
    let at = stoksync::domain::ms_to_utc(at).date_naive();
    (at - d).num_days() >= 2
}

/// Samples what the checks need that no fake records: the alerts open,
/// the listings behind the ledger per provider.
async fn sampler_task(w: Arc<World>, t0: Instant, start: i64) {
    let every = if w.setup.big { 30_000 } else { 5_000 };
    // What the last segment's sampler saw open: a resolution between two
    // segments is a transition too.
    let mut open: BTreeSet<String> = w.record.lock().unwrap().open_now.clone();
    let mut next = start;
    loop {
        tokio::time::sleep_until(instant_of(t0, start, next)).await;
        let now = stoksync::clock::now_ms();
        if let Ok(rows) = w.admin.open_alerts().await {
            let now_open: BTreeSet<String> = rows.into_iter().map(|r| r.key).collect();
            let mut rec = w.record.lock().unwrap();
            for k in now_open.difference(&open) {
                rec.alerts.push((now, k.clone(), true));
            }
            for k in open.difference(&now_open) {
                rec.alerts.push((now, k.clone(), false));
            }
            open = now_open;
            rec.open_now = open.clone();
        }
        let ledger: BTreeMap<String, i64> = match w.admin.list_stock().await {
            Ok(rows) => rows.into_iter().map(|r| (r.sku, r.quantity)).collect(),
            Err(e) => {
                w.state
                    .lock()
                    .unwrap()
                    .failures
                    .push(format!("the ledger cannot be read: {e}"));
                BTreeMap::new()
            }
        };
        w.observe(now);
        let unobserved = w.state.lock().unwrap().unobserved.clone();
        // What waits to be pushed, as the backlog alert defines it: the
        // value the ledger's quantity makes (by the model's own formula)
        // differs from what the provider confirmed, or a push to it is in
        // doubt (it may show anything).
        let mut wrong = [0usize; 4];
        let mut unknown = [0usize; 4];
        for (i, p) in ProviderName::ALL.iter().enumerate() {
            let Ok(states) = w.admin.listing_states(*p).await else {
                continue;
            };
            for st in states {
                if unobserved.contains_key(&st.listing) {
                    unknown[i] += 1;
                    continue;
                }
                let should = w.catalog.wanted(&w.setup, &st.sku, &ledger);
                if st.unsettled || (should.is_some() && st.confirmed_qty != should) {
                    wrong[i] += 1;
                }
            }
        }
        {
            let mut rec = w.record.lock().unwrap();
            for (i, p) in ProviderName::ALL.iter().enumerate() {
                rec.wrong.push((now, *p, wrong[i]));
                rec.unknown.push((now, *p, unknown[i]));
            }
        }
        next += every;
    }
}

/// Walks the world's schedule from where the last segment left it.
async fn events_task(w: Arc<World>, t0: Instant, start: i64) {
    let activity = w.record.lock().unwrap().activity.0;
    loop {
        let (at, e) = {
            let st = w.state.lock().unwrap();
            match w.setup.events.get(st.cursor) {
                Some((at, e)) => (activity + at, e.clone()),
                None => return,
            }
        };
        tokio::time::sleep_until(instant_of(t0, start, at)).await;
        apply(&w, &e).await;
        let mut st = w.state.lock().unwrap();
        st.cursor += 1;
        st.events += 1;
    }
}

async fn apply(w: &World, e: &Event) {
    let f = &w.fakes;
    let now = stoksync::clock::now_ms();
    match e {
        Event::Order {
            provider,
            listing,
            qty,
        } => {
            let ls: Vec<(&ListingRef, &str)> = w.catalog.of(*provider).collect();
            let (l, sku) = ls[listing % ls.len()];
            if let Some(id) = f.get(*provider).place_order(l, *qty) {
                let id_for_line = id.clone();
                let mut st = w.state.lock().unwrap();
                st.orders[slot(*provider)].placed.push(id.clone());
                st.placed_at.insert((*provider, id), (now, l.clone()));
                st.unobserved.insert(l.clone(), (now, Seen::Poll));
                drop(st);
                let mut shown = Vec::new();
                let unknown = w.state.lock().unwrap().unobserved.clone();
                for (part, _) in w.catalog.parts_of(sku) {
                    for (other, _) in w.catalog.depending_on(&part) {
                        // A listing changed where the daemon cannot see it
                        // yet (a hand edit) shows what it cannot know of.
                        if other != l
                            && !unknown.contains_key(other)
                            && !shown.iter().any(|(x, _)| x == other)
                        {
                            shown.push((other.clone(), f.get(other.provider).stock(other)));
                        }
                    }
                }
                // Each order has one line: BaZaaRDan's id is the line's, the
                // v2 site numbers lines from 1, PazarSync names them.
                let key = match provider {
                    ProviderName::Eticaret => format!("{id_for_line}/1"),
                    ProviderName::Pazarsync => format!("{id_for_line}/item_1"),
                    _ => id_for_line,
                };
                w.record.lock().unwrap().sales.push(Sale {
                    at_ms: now,
                    listing: l.clone(),
                    sku: sku.to_string(),
                    line: format!("{provider}/item/{key}/"),
                    shown,
                });
            }
        }
        Event::Requantity { pick, qty } => {
            let st = w.state.lock().unwrap();
            let o = &st.orders[slot(ProviderName::Bazaardan)];
            if let Some(id) =
                (!o.placed.is_empty()).then(|| o.placed[pick % o.placed.len()].clone())
            {
                let mut st = st;
                late_change(&mut st, ProviderName::Bazaardan, &id, now);
                drop(st);
                f.bz.change_quantity(id.parse().unwrap_or(0), *qty);
            }
        }
        Event::Ship { provider, pick } => {
            let mut st = w.state.lock().unwrap();
            let o = &mut st.orders[slot(*provider)];
            if o.placed.is_empty() {
                return;
            }
            let id = o.placed.remove(pick % o.placed.len());
            o.shipped.push(id.clone());
            drop(st);
            match provider {
                ProviderName::Bazaardan => f.bz.set_status(id.parse().unwrap_or(0), "shipped"),
                ProviderName::Eticaret => f.v2.set_status(id.parse().unwrap_or(0), 3),
                _ => f.ps.set_status(&id, "shipped"),
            }
        }
        Event::Cancel { provider, pick } => {
            let mut st = w.state.lock().unwrap();
            let o = &mut st.orders[slot(*provider)];
            let list = if o.placed.is_empty() {
                &mut o.shipped
            } else {
                &mut o.placed
            };
            if list.is_empty() {
                return;
            }
            let id = list.remove(pick % list.len());
            late_change(&mut st, *provider, &id, now);
            drop(st);
            f.get(*provider).cancel_order(&id);
        }
        Event::Return { provider, pick } => {
            let mut st = w.state.lock().unwrap();
            let o = &mut st.orders[slot(*provider)];
            if o.shipped.is_empty() {
                return;
            }
            let id = o.shipped.remove(pick % o.shipped.len());
            late_change(&mut st, *provider, &id, now);
            drop(st);
            match provider {
                ProviderName::Bazaardan => f.bz.set_status(id.parse().unwrap_or(0), "returned"),
                ProviderName::Eticaret => f.v2.set_status(id.parse().unwrap_or(0), 4),
                _ => f.ps.set_status(&id, "returned"),
            }
        }
        Event::HandEdit { listing, by } => {
            let ls: Vec<&ListingRef> = w
                .catalog
                .of(ProviderName::Stokdurumu)
                .map(|(l, _)| l)
                .collect();
            let l = ls[listing % ls.len()];
            let id: u64 = l.listing_id.parse().unwrap_or(0);
            if let Some(was) = f.sd.product_stock(id) {
                f.sd.set_by_hand(id, (was + by).max(0));
                w.state
                    .lock()
                    .unwrap()
                    .unobserved
                    .insert(l.clone(), (now, Seen::Read));
            }
        }
        Event::Erp { sku, change, twice } => {
            let skus = w.catalog.skus();
            let sku = skus[sku % skus.len()].clone();
            let key = format!("erp/sim/{}", w.state.lock().unwrap().cursor);
            let mut moved = None;
            for _ in 0..(1 + usize::from(*twice)) {
                match w.admin.erp_movement(&sku, *change, "sim", &key).await {
                    Ok(o) => moved = Some(o.delta),
                    Err(e) => w
                        .state
                        .lock()
                        .unwrap()
                        .failures
                        .push(format!("the ERP's {change:?} of {sku} failed: {e}")),
                }
            }
            if let Some(d) = moved {
                *w.state.lock().unwrap().erp.entry(sku).or_default() += d;
            }
            let _ = StockChange::By(0);
        }
        Event::Revoke => f.ps.revoke_tokens(),
        Event::OtherTool => other_tool(w).await,
        Event::Fault {
            provider,
            endpoint,
            fault,
            times,
        } => f
            .get(*provider)
            .inject(fault.clone(), *times, Some(endpoint)),
    }
    // Where the model stands now.
    let want = {
        let st = w.state.lock().unwrap();
        model::expected(&w.setup, &w.fakes, &w.catalog, &st.erp)
    };
    let mut st = w.state.lock().unwrap();
    let mut rec = w.record.lock().unwrap();
    for (sku, q) in &want {
        if st.expected.get(sku) != Some(q) {
            rec.expected.push((now, sku.clone(), *q));
        }
    }
    st.expected = want;
}

/// An order changed status: the marketplace moved its own count, which
/// the daemon sees at its next poll — or, for a PazarSync order changed
/// after the poll's lookback (`order_lookback`, 5 m here), at its next
/// hourly sweep of older orders (PazarSync lists orders by creation;
/// README, PazarSync).
fn late_change(st: &mut State, p: ProviderName, id: &str, now: i64) {
    if let Some((at, l)) = st.placed_at.get(&(p, id.to_string())).cloned() {
        let how = if p == ProviderName::Pazarsync && now - at > 5 * 60_000 {
            st.swept_late = true;
            Seen::Sweep
        } else {
            Seen::Poll
        };
        st.unobserved.insert(l, (now, how));
    }
}

/// Another tool of the seller reads the v2 site: a request the site counts
/// in its window like ours.
async fn other_tool(w: &World) {
    use stoksync::http::Transport;
    let url = format!(
        "{}/product/lists?pageStart=0&pageSize=1",
        w.fakes.v2.base_url()
    );
    let Ok(req) = request_builder()
        .get(url)
        .header("apikey", SECRETS[2])
        .header("apisecret", SECRETS[3])
        .build()
    else {
        return;
    };
    // Straight to the site, not through the daemon's trace.
    let direct = InProcess::new(&[&*w.fakes.v2 as &dyn Fake], REQUEST_TIMEOUT);
    let _ = direct.send(req).await;
}
