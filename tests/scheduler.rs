//! The push scheduler against the BaZaaRDan fake on loopback (real HTTP,
//! real SQLite file, the real engine): several batches in flight never
//! break a window; a sale during a long round goes out next, with its new
//! value; the provider is polled during a long round; no push goes to a
//! provider whose last poll failed.

mod common;

use common::wait_for;
use std::sync::Arc;
use std::time::Duration;
use stoksync::config::Config;
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::engine::Engine;
use stoksync::ledger::Ledger;
use stoksync::providers::{Provider, build_all};
use stoksync::sandbox::{Fake, Fault, bazaardan::FakeBazaardan, bazaardan::Options};
use tokio_util::sync::CancellationToken;

/// The provider's window, shrunk for the test.
const WINDOW: Duration = Duration::from_secs(2);

struct Rig {
    fake: Arc<FakeBazaardan>,
    engine: Arc<Engine>,
    ledger: Ledger,
    listings: Vec<ListingRef>,
    _dir: tempfile::TempDir,
}

/// `n` listings, each SKU at `stock` in the ledger and `shown` on the
/// fake, linked; the engine polls every `poll_interval`.
async fn rig(opts: Options, n: usize, stock: i64, shown: i64, poll_interval: &str) -> Rig {
    let window = match opts.requests_per_minute {
        Some(_) => opts.window,
        None => WINDOW,
    };
    let fake = Arc::new(FakeBazaardan::start(opts).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[ledger]\ndatabase = \"ledger.db\"\n[sync]\npoll_interval = \"{poll_interval}\"\nrequest_timeout = \"2s\"\nmax_attempts = 4\norder_lookback = \"5m\"\n{}",
        fake.config_table(true)
    );
    let path = dir.path().join("stoksync.toml");
    let mut config = Config::parse(&text, &path, &|_| None).unwrap();
    // The limiter counts in the fake's window (shrunk for the test).
    config.sync.timing.rate_window = window;
    let ledger = Ledger::open(&config.database).await.unwrap();
    let mut stocks = Vec::new();
    let mut maps = Vec::new();
    let mut listings = Vec::new();
    for i in 0..n {
        let sku = format!("SKU-{i:05}");
        let l = fake.add_product(&sku, shown);
        stocks.push((sku.clone(), stock));
        maps.push((sku, l.clone()));
        listings.push(l);
    }
    ledger.import_stock(&stocks, "seed", "seed").await.unwrap();
    ledger.import_mappings(&maps).await.unwrap();
    let providers: Vec<Arc<dyn Provider>> = build_all(&config, &ledger, &CancellationToken::new())
        .unwrap()
        .into_iter()
        .collect();
    let engine = Arc::new(Engine::new(ledger.clone(), providers, config.sync.clone()));
    Rig {
        fake,
        engine,
        ledger,
        listings,
        _dir: dir,
    }
}

fn shown(fake: &FakeBazaardan, l: &ListingRef) -> Option<i64> {
    fake.listing_stock(l.listing_id.parse().unwrap(), None)
}

/// At a limit that lets many batches go at once, several are in flight
/// together, and still no window holds more than the limit (the fake
/// counts; a violation is a 429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_batches_in_flight_never_break_the_window() {
    let r = rig(
        Options {
            requests_per_minute: Some(60),
            window: WINDOW,
            latency: Duration::from_millis(30),
            ..Options::default()
        },
        150,
        7,
        0,
        "1h",
    )
    .await;
    let s = r.engine.sync_once(&CancellationToken::new()).await.unwrap();
    assert!(s.converged(), "{s:?}");
    for l in &r.listings {
        assert_eq!(shown(&r.fake, l), Some(7), "{l}");
    }
    let c = r.fake.counters();
    assert!(
        c.max_busy > 1,
        "never more than one request in flight: {c:?}"
    );
    assert_eq!(c.limit_violations, 0, "{c:?}");
    assert!(c.max_per_minute <= 60, "{c:?}");
}

/// 1 000 listings queued to go up; a sale elsewhere then brings one of
/// them (the last in the catalog) below what the provider shows. Its
/// decrease goes out ahead of the increases still queued, with the value
/// the ledger has after the sale, and the old value is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_during_a_long_round_goes_out_next_with_its_new_value() {
    let r = rig(
        Options {
            requests_per_minute: None,
            latency: Duration::from_millis(5),
            ..Options::default()
        },
        1000,
        10,
        0,
        "1h",
    )
    .await;
    // Every listing confirmed at 10, then the ERP raises every SKU to 20:
    // 1 000 increases.
    let s = r.engine.sync_once(&CancellationToken::new()).await.unwrap();
    assert!(s.converged(), "{s:?}");
    let before = r.fake.writes().len();
    let changes: Vec<(String, i64)> = (0..1000).map(|i| (format!("SKU-{i:05}"), 20)).collect();
    r.ledger
        .import_stock(&changes, "raise", "erp")
        .await
        .unwrap();

    let engine = r.engine.clone();
    let round = tokio::spawn(async move { engine.sync_once(&CancellationToken::new()).await });
    wait_for(
        Duration::from_secs(60),
        "the round to be under way",
        || async { r.fake.writes().len() >= before + 50 },
    )
    .await;
    // The sale: the last listing's SKU drops to 4 (below the 10 shown).
    let last = r.listings.last().unwrap().clone();
    r.ledger
        .import_stock(&[("SKU-00999".into(), 4)], "sale", "erp")
        .await
        .unwrap();
    let at_sale = r.fake.writes().len() - before;
    let s = round.await.unwrap().unwrap();
    assert!(s.converged(), "{s:?}");

    let writes: Vec<(String, i64)> = r.fake.writes().split_off(before);
    let to_last: Vec<(usize, i64)> = writes
        .iter()
        .enumerate()
        .filter(|(_, (l, _))| *l == last.listing_id)
        .map(|(i, (_, v))| (i, *v))
        .collect();
    assert_eq!(
        to_last.iter().map(|x| x.1).collect::<Vec<_>>(),
        [4],
        "the sold listing got only its new value: {to_last:?}"
    );
    // Ahead of the backlog: at most the batches already in flight (a
    // handful) went between the sale and the decrease.
    let pos = to_last[0].0;
    assert!(
        pos < at_sale + 20,
        "the decrease went out {} writes after the sale, behind the backlog ({} writes in all)",
        pos - at_sale.min(pos),
        writes.len()
    );
    assert!(writes.len() >= 999, "{} writes", writes.len());
    assert_eq!(shown(&r.fake, &last), Some(4));
}

/// Increases take every permit of the window but the reserve, and wait
/// for the window to roll; a sale then must not wait with them. Before
/// the scheduler took its permit ahead of forming a batch, the batches in
/// flight sat waiting for the window (the whole of it, 30 s here) with the
/// sale's decrease queued behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_does_not_wait_for_increases_that_wait_for_the_window() {
    const LONG_WINDOW: Duration = Duration::from_secs(30);
    let r = rig(
        Options {
            requests_per_minute: Some(60),
            window: LONG_WINDOW,
            latency: Duration::from_millis(5),
            ..Options::default()
        },
        100,
        10,
        10,
        "1h",
    )
    .await;
    // Every listing confirmed at 10 (as a finished first sync leaves
    // them), then the ERP raises every SKU to 20: 100 increases, more than
    // one window holds.
    for l in &r.listings {
        r.ledger
            .record_push(l, stoksync::ledger::PushRecord::Confirmed(10))
            .await
            .unwrap();
    }
    let raise: Vec<(String, i64)> = (0..100).map(|i| (format!("SKU-{i:05}"), 20)).collect();
    r.ledger.import_stock(&raise, "raise", "erp").await.unwrap();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(r.engine.clone().run(cancel.clone()));
    // The bulk share of the window (60 less the reserve of 3; the poll and
    // discovery count in it) is spent in a burst; then increases wait.
    wait_for(
        Duration::from_secs(20),
        "the window's bulk share spent",
        || async { r.fake.counters().requests >= 57 },
    )
    .await;
    let last = r.listings.last().unwrap().clone();
    r.ledger
        .import_stock(&[("SKU-00099".into(), 4)], "sale", "erp")
        .await
        .unwrap();
    // Well inside the window: the decrease takes a reserved permit.
    wait_for(
        LONG_WINDOW / 3,
        "the sale's decrease, ahead of the window rolling",
        || async { shown(&r.fake, &last) == Some(4) },
    )
    .await;
    let writes = r.fake.writes();
    let to_last: Vec<i64> = writes
        .iter()
        .filter(|(l, _)| *l == last.listing_id)
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(to_last, [4], "the sold listing got only its new value");
    assert!(
        writes.len() < 100,
        "the decrease waited for the backlog: {} writes",
        writes.len()
    );
    cancel.cancel();
    run.await.unwrap();
    let c = r.fake.counters();
    assert_eq!(c.limit_violations, 0, "{c:?}");
}

/// A push round longer than the poll interval gives way to polls: the
/// provider is polled while the round runs, and its sales are seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_is_polled_during_a_long_push_round() {
    let r = rig(
        Options {
            requests_per_minute: None,
            latency: Duration::from_millis(10),
            ..Options::default()
        },
        600,
        9,
        0,
        "200ms",
    )
    .await;
    let cancel = CancellationToken::new();
    let run = tokio::spawn(r.engine.clone().run(cancel.clone()));
    wait_for(Duration::from_secs(60), "the first pushes", || async {
        r.fake.writes().len() >= 10
    })
    .await;
    let polls_then = r
        .fake
        .counters()
        .by_endpoint
        .get("orders.php")
        .copied()
        .unwrap_or(0);
    // A sale on BaZaaRDan itself, placed while the round runs.
    let first = &r.listings[0];
    let item = r
        .fake
        .place_order(first.listing_id.parse().unwrap(), None, 2);
    wait_for(
        Duration::from_secs(60),
        "the sale to reach the ledger",
        || async { r.ledger.stock_of("SKU-00000").await.unwrap() == Some(7) },
    )
    .await;
    let writes_at_sale = r.fake.writes().len();
    let polls_now = r
        .fake
        .counters()
        .by_endpoint
        .get("orders.php")
        .copied()
        .unwrap_or(0);
    assert!(
        writes_at_sale < 600,
        "the sale was only seen after the round ({writes_at_sale} writes)"
    );
    assert!(polls_now > polls_then, "no poll during the round");
    wait_for(Duration::from_secs(120), "the round to finish", || async {
        r.listings
            .iter()
            .all(|l| shown(&r.fake, l).is_some_and(|v| v >= 7))
            && shown(&r.fake, first) == Some(7)
    })
    .await;
    cancel.cancel();
    run.await.unwrap();
    let _ = item;
}

/// While the provider's polls fail, nothing is pushed to it (its unseen
/// sales would be overwritten); once a poll is applied, pushes resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_push_goes_to_a_provider_whose_last_poll_failed() {
    let r = rig(
        Options {
            requests_per_minute: None,
            ..Options::default()
        },
        20,
        5,
        0,
        "100ms",
    )
    .await;
    r.fake
        .inject(Fault::ServerError, usize::MAX, Some("orders.php"));
    let cancel = CancellationToken::new();
    let run = tokio::spawn(r.engine.clone().run(cancel.clone()));
    wait_for(Duration::from_secs(30), "several failed polls", || async {
        r.fake
            .counters()
            .by_endpoint
            .get("orders.php")
            .copied()
            .unwrap_or(0)
            >= 6
    })
    .await;
    assert!(r.fake.writes().is_empty(), "pushed after a failed poll");
    r.fake.clear_faults();
    wait_for(
        Duration::from_secs(30),
        "pushes after a good poll",
        || async { r.listings.iter().all(|l| shown(&r.fake, l) == Some(5)) },
    )
    .await;
    cancel.cancel();
    run.await.unwrap();
    let _ = ProviderName::Bazaardan;
}
