//! The simulator: many seeded worlds, each the real daemon, limiter and
//! ledger (a real SQLite file, or PostgreSQL) against the in-process fakes
//! of all four providers, in virtual time with the providers' real
//! windows (60 s) and daily quotas (00:00 Turkey time, crossed in some
//! worlds): customers, hand edits, the ERP, token revocations, "another
//! tool" on the v2 site, faults aimed at every endpoint before and after a
//! provider applies a request, and the daemon killed (kill -9: every task
//! dropped where it stands) at moments, at named points of the code and
//! right after a provider carried out a write, or stopped (SIGTERM), and
//! restarted on the same ledger. Each world ends quiet and must converge;
//! safety is checked at rest and liveness along the run (`sim/checks.rs`),
//! against a model computed from what the world did (`sim/model.rs`).
//!
//! A seed is a world, and the same seed is the same run, byte for byte, on
//! any machine and under any load: one thread, tokio's paused clock, the
//! calendar following it, HTTP in-process, ledger calls run to completion
//! (see `sim/run.rs`). `a_seed_replays_byte_for_byte` holds it to that.
//!
//! - `cargo test --test sim`: 500 seeds (0..500), two of them 10 000-SKU
//!   worlds, and the replay test.
//! - `STOKSYNC_SIM_SEEDS=20000 cargo test --release --test sim simulated`:
//!   a soak; `STOKSYNC_SIM_FIRST=N` starts elsewhere.
//! - `STOKSYNC_SIM_SEED=N cargo test --test sim simulated -- --nocapture`:
//!   one seed, with every log line of every life of the daemon.
//! - With `STOKSYNC_TEST_PG_URL` set (`eval "$(.ci/pg-start)"`),
//!   `sim_on_postgres` runs 50 seeds (`STOKSYNC_SIM_PG_SEEDS=N`) with the
//!   ledger in a fresh PostgreSQL database each.

#[path = "sim/checks.rs"]
mod checks;
#[path = "sim/model.rs"]
mod model;
#[path = "common/pg.rs"]
mod pg;
#[path = "sim/run.rs"]
mod run;
#[path = "sim/world.rs"]
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stoksync::domain::ProviderName;
use world::Setup;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Panics anywhere in the process (a fake, a daemon task): each is a bug.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            // A test's own thread panics to report its failures: that is
            // the harness's business, not a bug in a world (and another
            // test in this binary must not count it as one of its own).
            if thread.starts_with("sim-") || thread == "ledger-courier" {
                PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("thread {thread}: {info}"));
            }
            default(info);
        }));
    });
}

/// Seeds whose world lists 10 000 SKUs on every provider.
fn big(seed: u64) -> Option<usize> {
    let every = env_u64("STOKSYNC_SIM_BIG_EVERY").unwrap_or(0);
    (every > 0 && seed % every == 7).then_some(10_000)
}

/// Runs one seed on its own thread (every thread-local the world sets up
/// dies with it). A world that does not end within ten minutes of wall
/// time is a failure (a hang is a bug), not a stuck test run.
fn run_seed(seed: u64, postgres: Option<String>, verbose: bool) -> run::Report {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("sim-{seed}"))
        .stack_size(16 << 20)
        .spawn(move || {
            let setup = Setup::draw(seed, big(seed));
            if verbose {
                eprintln!("{setup:#?}");
            }
            let _ = tx.send(run::run(&setup, postgres, verbose));
        })
        .expect("a thread for the world");
    match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => run::Report {
            failures: vec!["the world did not end within 10 minutes of wall time".into()],
            ..run::Report::default()
        },
        Err(_) => run::Report {
            failures: vec!["the world's thread panicked".into()],
            ..run::Report::default()
        },
    }
}

/// What every world together must have exercised.
fn required_coverage() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in ProviderName::ALL {
        for e in world::endpoints(p) {
            for k in world::fault_kinds() {
                out.insert(format!("{p} {e} {}", k.label()));
            }
        }
    }
    for point in world::POINTS {
        out.insert(format!("end kill at failpoint {point}"));
    }
    for p in ProviderName::ALL {
        out.insert(format!("end kill after write to {p}"));
    }
    out.insert("end kill at a moment".into());
    out.insert("end stop".into());
    out
}

#[test]
fn simulated_worlds_lose_no_unit_break_no_limit_and_stay_live() {
    record_panics();
    if let Some(seed) = env_u64("STOKSYNC_SIM_SEED") {
        let r = run_seed(seed, None, true);
        for (i, l) in r.logs.iter().enumerate() {
            eprintln!("----- log of life {i} -----\n{l}");
        }
        for n in &r.notes {
            eprintln!("note: {n}");
        }
        for (t, k, open) in &r.record.alerts {
            eprintln!("alert {t} {k} {}", if *open { "fired" } else { "resolved" });
        }
        for (t, sku, q) in &r.record.expected {
            eprintln!("model {t} {sku} = {q}");
        }
        for s in &r.record.sales {
            eprintln!("sale {} {} ({})", s.at_ms, s.listing, s.sku);
        }
        let mut last = std::collections::BTreeMap::new();
        for (t, p, n) in &r.record.wrong {
            if last.insert(*p, *n) != Some(*n) {
                eprintln!("wrong {t} {p} {n}");
            }
        }
        for l in &r.writes {
            eprintln!("{l}");
        }
        for l in &r.record.trace {
            eprintln!("trace {l}");
        }
        eprintln!("seed {seed}: {:?}", r.stats);
        assert!(
            r.failures.is_empty(),
            "seed {seed} failed:\n  {}",
            r.failures.join("\n  ")
        );
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
        .map(|_| {
            let (next, results) = (next.clone(), results.clone());
            std::thread::spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= first + count {
                        return;
                    }
                    let t = Instant::now();
                    let r = run_seed(seed, None, false);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((seed, t.elapsed(), r));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a sim worker panicked");
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap());
    results.sort_by_key(|r| r.0);
    report(&results, first, count, started.elapsed(), workers);
}

fn report(
    results: &[(u64, Duration, run::Report)],
    first: u64,
    count: u64,
    took: Duration,
    workers: usize,
) {
    let mut total = run::Stats::default();
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    let mut slowest = (0, Duration::ZERO);
    let mut simulated = Duration::ZERO;
    for (seed, t, r) in results {
        if *t > slowest.1 {
            slowest = (*seed, *t);
        }
        let s = &r.stats;
        total.lives += s.lives;
        total.kills += s.kills;
        total.stops += s.stops;
        total.events += s.events;
        total.orders += s.orders;
        total.requests += s.requests;
        total.lost_answers += s.lost_answers;
        total.hand_edits += s.hand_edits;
        simulated += s.simulated;
        covered.extend(r.covered.iter().cloned());
        if !r.failures.is_empty() {
            failures.push((*seed, r.failures.clone()));
        }
    }
    println!(
        "simulator: {} seeds ({first}..{}) in {:.1} s on {workers} threads, {:.1} simulated hours; {} lives ({} killed, {} stopped), {} events, {} orders, {} hand edits, {} requests, {} answers lost after applying; slowest seed {} ({:.2} s)",
        results.len(),
        first + count,
        took.as_secs_f64(),
        simulated.as_secs_f64() / 3600.0,
        total.lives,
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
    // Every fault kind at every endpoint, before and after the provider
    // applied it, and every way to die, across the seeds (a full run).
    let missing: Vec<String> = if first == 0 && count >= 500 {
        required_coverage().difference(&covered).cloned().collect()
    } else {
        Vec::new()
    };
    if env_u64("STOKSYNC_SIM_SLOWEST").is_some() {
        let mut by_time: Vec<_> = results
            .iter()
            .map(|(s, t, r)| {
                (
                    *t,
                    *s,
                    r.stats.simulated,
                    r.stats.listings,
                    r.stats.requests,
                )
            })
            .collect();
        by_time.sort();
        for (t, s, sim, l, req) in by_time.iter().rev().take(15) {
            println!(
                "seed {s}: {:.2} s for {:.0} simulated s, {l} listings, {req} requests",
                t.as_secs_f64(),
                sim.as_secs_f64()
            );
        }
    }
    let panics = PANICS.lock().unwrap().clone();
    if !failures.is_empty() || !panics.is_empty() || !missing.is_empty() {
        let mut msg = String::new();
        for (seed, e) in failures.iter().take(20) {
            msg.push_str(&format!(
                "\nseed {seed}:\n  {}\n  replay: STOKSYNC_SIM_SEED={seed} cargo test --test sim simulated -- --nocapture\n",
                e.join("\n  ")
            ));
        }
        for p in &panics {
            msg.push_str(&format!("\npanic: {p}\n"));
        }
        if !missing.is_empty() {
            msg.push_str(&format!(
                "\nnever exercised across the seeds: {missing:#?}\n"
            ));
        }
        panic!(
            "{} of {} seeds failed, {} panic(s), {} kind(s) of fault or death never exercised:{msg}",
            failures.len(),
            results.len(),
            panics.len(),
            missing.len()
        );
    }
}

/// The same seed twice gives the same run: every exchange with every
/// provider, at the same simulated moment, and how each life ended.
#[test]
fn a_seed_replays_byte_for_byte() {
    record_panics();
    // `STOKSYNC_SIM_REPLAY=N` replays seeds 0..N, two at a time on
    // threads of their own: a seed must not depend on what else runs.
    let seeds: Vec<u64> = match env_u64("STOKSYNC_SIM_REPLAY") {
        Some(n) => (0..n).collect(),
        None => vec![3, 11, 42],
    };
    for seed in seeds {
        let twice = [0, 1].map(|_| std::thread::spawn(move || run_seed(seed, None, false)));
        let [a, b] = twice.map(|t| t.join().expect("a world's thread"));
        if a.digest != b.digest {
            let first = a
                .record
                .trace
                .iter()
                .zip(&b.record.trace)
                .position(|(x, y)| x != y);
            let at = first.unwrap_or(a.record.trace.len().min(b.record.trace.len()));
            panic!(
                "seed {seed} ran differently twice: {} and {} exchanges, first difference at {at}:\n  {:?}\n  {:?}\nlives {:?}\n  vs {:?}\nalerts {:?}\n  vs {:?}\nfailures {:?}\n  vs {:?}",
                a.record.trace.len(),
                b.record.trace.len(),
                a.record.trace.get(at),
                b.record.trace.get(at),
                a.record.up,
                b.record.up,
                a.record.alerts,
                b.record.alerts,
                a.failures,
                b.failures,
            );
        }
        assert!(
            a.record.trace.len() > 10,
            "seed {seed}: the world did almost nothing"
        );
    }
}

/// The same worlds with the ledger in PostgreSQL: a fresh database per
/// seed. Ignored when built without `STOKSYNC_TEST_PG_URL` (see
/// `build.rs`; never under CI).
#[test]
#[cfg_attr(
    stoksync_no_pg,
    ignore = "needs PostgreSQL: eval \"$(.ci/pg-start)\" first (CI runs it)"
)]
fn sim_on_postgres() {
    record_panics();
    let count = env_u64("STOKSYNC_SIM_PG_SEEDS").unwrap_or(50);
    let first = env_u64("STOKSYNC_SIM_FIRST").unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut results = Vec::new();
    for seed in first..first + count {
        if big(seed).is_some() {
            continue;
        }
        let url = rt.block_on(pg::fresh_database(&format!("sim_{seed}")));
        let t = Instant::now();
        let r = run_seed(seed, Some(url), false);
        results.push((seed, t.elapsed(), r));
    }
    report(&results, first, 0, started.elapsed(), 1);
    let _: BTreeMap<(), ()> = BTreeMap::new();
}
