//! The simulator: many seeded worlds, each the real engine, limiter and
//! ledger (a real SQLite file) against the in-process fakes of all four
//! providers, with customers, hand edits, the ERP, token revocations,
//! "another tool" on the v2 site, faults before and after a provider
//! applies a request, and the daemon killed (kill -9: every task dropped
//! where it stands) at random moments and at named points of the code, or
//! stopped (SIGTERM), and restarted on the same file, often within the same
//! second. Each world ends quiet, and must converge; then the invariants
//! (`sim/model.rs`) are checked against a model computed from what the
//! fakes recorded.
//!
//! - `cargo test --test sim`: 500 seeds (0..500).
//! - `STOKSYNC_SIM_SEEDS=20000 cargo test --release --test sim`: a soak;
//!   `STOKSYNC_SIM_FIRST=N` starts elsewhere.
//! - `STOKSYNC_SIM_SEED=N cargo test --test sim -- --nocapture`: one seed,
//!   with every log line of every life of the daemon.
//! - With `STOKSYNC_TEST_PG_URL` set (`eval "$(.ci/pg-start)"`),
//!   `sim_on_postgres` runs 5 seeds (`STOKSYNC_SIM_PG_SEEDS=N` for more)
//!   with the ledger in a fresh PostgreSQL database each.
//!
//! A seed fixes the world (catalog, config, limits, the schedule of events
//! and faults, how each life ends); the interleaving of the daemon with the
//! schedule depends on the machine, so a seed that failed once may need a
//! few replays to fail again.

#[path = "sim/daemon.rs"]
mod daemon;
#[path = "sim/model.rs"]
mod model;
#[path = "common/pg.rs"]
mod pg;
#[path = "sim/world.rs"]
mod world;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Panics anywhere in the process (a fake, a daemon task): each is a bug.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    // Once per process: both tests of this file call it.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(record_panics_now);
}

fn record_panics_now() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("thread {thread}: {info}"));
        default(info);
    }));
}

/// Runs one world on this thread; its calendar is shifted when the seed
/// puts the run across midnight.
fn run_seed(seed: u64, verbose: bool) -> Result<world::Stats, String> {
    run_seed_on(seed, verbose, None)
}

/// [`run_seed`] with the ledger in the PostgreSQL database `postgres`
/// names (an empty one), or in a SQLite file when `None`.
fn run_seed_on(seed: u64, verbose: bool, postgres: Option<String>) -> Result<world::Stats, String> {
    let setup = world::Setup::draw(seed);
    let shift = Arc::new(AtomicI64::new(0));
    if setup.near_midnight {
        // A little before 00:00 Turkey time.
        let now = chrono::Utc::now();
        let to_midnight = (stoksync::domain::next_turkey_midnight(now) - now).num_milliseconds();
        let before = 60 + (seed % 200) as i64;
        shift.store(to_midnight - before, Ordering::SeqCst);
    }
    stoksync::clock::shift_this_thread(shift.clone());
    if verbose {
        eprintln!("{setup:#?}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let out = rt.block_on(async {
        match tokio::time::timeout(
            Duration::from_secs(120),
            world::run(&setup, shift, verbose, postgres),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err("the world did not finish within 120 s".to_string()),
        }
    });
    drop(rt);
    out
}

#[test]
fn simulated_worlds_lose_no_unit_and_break_no_limit() {
    record_panics();
    if let Some(seed) = env_u64("STOKSYNC_SIM_SEED") {
        match run_seed(seed, true) {
            Ok(s) => eprintln!("seed {seed}: ok: {s:?}"),
            Err(e) => panic!("seed {seed} failed:\n  {e}"),
        }
        let panics = PANICS.lock().unwrap().clone();
        assert!(panics.is_empty(), "panics: {panics:#?}");
        return;
    }
    let count = env_u64("STOKSYNC_SIM_SEEDS").unwrap_or(500);
    let first = env_u64("STOKSYNC_SIM_FIRST").unwrap_or(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8)
        * 2;
    let next = Arc::new(AtomicU64::new(first));
    let results = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (next, results) = (next.clone(), results.clone());
            std::thread::Builder::new()
                .name(format!("sim-worker-{w}"))
                .spawn(move || {
                    loop {
                        let seed = next.fetch_add(1, Ordering::SeqCst);
                        if seed >= first + count {
                            return;
                        }
                        let t = Instant::now();
                        let r = run_seed(seed, false);
                        results.lock().unwrap_or_else(|e| e.into_inner()).push((
                            seed,
                            t.elapsed(),
                            r,
                        ));
                    }
                })
                .expect("a worker thread")
        })
        .collect();
    for h in handles {
        h.join().expect("a sim worker panicked");
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by_key(|r| r.0);
    let mut total = world::Stats::default();
    let mut failures = Vec::new();
    let mut slowest = (0, Duration::ZERO);
    for (seed, took, r) in &results {
        if *took > slowest.1 {
            slowest = (*seed, *took);
        }
        match r {
            Ok(s) => {
                total.incarnations += s.incarnations;
                total.kills += s.kills;
                total.stops += s.stops;
                total.events += s.events;
                total.orders += s.orders;
                total.requests += s.requests;
                total.lost_answers += s.lost_answers;
                total.hand_edits += s.hand_edits;
            }
            Err(e) => failures.push((*seed, e.clone())),
        }
    }
    println!(
        "simulator: {} seeds ({first}..{}) in {:.1} s on {workers} threads; {} lives ({} killed, {} stopped), {} events, {} orders, {} hand edits, {} requests, {} answers lost after applying; slowest seed {} ({:.2} s)",
        results.len(),
        first + count,
        started.elapsed().as_secs_f64(),
        total.incarnations,
        total.kills,
        total.stops,
        total.events,
        total.orders,
        total.hand_edits,
        total.requests,
        total.lost_answers,
        slowest.0,
        slowest.1.as_secs_f64()
    );
    let panics = PANICS.lock().unwrap().clone();
    if !failures.is_empty() || !panics.is_empty() {
        let mut msg = String::new();
        for (seed, e) in &failures {
            msg.push_str(&format!(
                "\nseed {seed}:\n  {e}\n  replay: STOKSYNC_SIM_SEED={seed} cargo test --test sim -- --nocapture\n"
            ));
        }
        for p in &panics {
            msg.push_str(&format!("\npanic: {p}\n"));
        }
        panic!(
            "{} of {} seeds failed, {} panic(s):{msg}",
            failures.len(),
            results.len(),
            panics.len()
        );
    }
}

/// The same worlds with the ledger in PostgreSQL: a fresh database per
/// seed, reopened by every life of the daemon. Skipped without
/// `STOKSYNC_TEST_PG_URL`.
#[test]
fn sim_on_postgres() {
    record_panics();
    let count = env_u64("STOKSYNC_SIM_PG_SEEDS").unwrap_or(5);
    let first = env_u64("STOKSYNC_SIM_FIRST").unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let started = Instant::now();
    for seed in first..first + count {
        let Some(url) = rt.block_on(pg::fresh_database(&format!("sim_{seed}"))) else {
            return;
        };
        if let Err(e) = run_seed_on(seed, false, Some(url)) {
            failures.push(format!(
                "\nseed {seed} on PostgreSQL:\n  {e}\n  replay: STOKSYNC_SIM_FIRST={seed} STOKSYNC_SIM_PG_SEEDS=1 cargo test --test sim sim_on_postgres\n"
            ));
        }
    }
    println!(
        "simulator on PostgreSQL: {count} seeds ({first}..{}) in {:.1} s",
        first + count,
        started.elapsed().as_secs_f64()
    );
    let panics = PANICS.lock().unwrap().clone();
    assert!(
        failures.is_empty() && panics.is_empty(),
        "{} of {count} seeds failed on PostgreSQL, panics: {panics:#?}{}",
        failures.len(),
        failures.concat()
    );
}
