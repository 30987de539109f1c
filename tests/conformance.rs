//! One suite of checks every adapter passes against its fake: auth,
//! pagination, batching caps, partial failures, rate-limit feedback,
//! malformed bodies, timeouts, orders read once. The adapters are built
//! from a real config, exactly as the daemon builds them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use stoksync::config::Config;
use stoksync::domain::{ListingRef, ProviderName, PushOutcome, StockPush};
use stoksync::ledger::Ledger;
use stoksync::providers::{PollRequest, Provider, ProviderError, build_all};
use stoksync::sandbox::{Fake, Fault, bazaardan, eticaret, pazarsync, stokdurumu};
use tokio_util::sync::CancellationToken;

struct Rig {
    fake: Box<dyn Fake>,
    adapter: Arc<dyn Provider>,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

/// The providers' per-minute windows, shrunk for the test (as in the
/// simulator): a rate-limit pause lasts one window.
const WINDOW: Duration = Duration::from_secs(2);

async fn fake(kind: ProviderName) -> Box<dyn Fake> {
    match kind {
        ProviderName::Bazaardan => Box::new(
            bazaardan::FakeBazaardan::start(bazaardan::Options {
                requests_per_minute: None,
                ..Default::default()
            })
            .await
            .unwrap(),
        ),
        ProviderName::Stokdurumu => Box::new(
            stokdurumu::FakeStokdurumu::start(Default::default())
                .await
                .unwrap(),
        ),
        ProviderName::Eticaret => Box::new(
            eticaret::FakeEticaret::start(eticaret::Options {
                window: WINDOW,
                ..Default::default()
            })
            .await
            .unwrap(),
        ),
        ProviderName::Pazarsync => Box::new(
            pazarsync::FakePazarsync::start(pazarsync::Options {
                requests_per_minute: Some(300),
                window: WINDOW,
                ..Default::default()
            })
            .await
            .unwrap(),
        ),
    }
}

async fn rig_with(fake: Box<dyn Fake>, good: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[ledger]\ndatabase = \"ledger.db\"\n[sync]\nrequest_timeout = \"1s\"\nmax_attempts = 4\norder_lookback = \"5m\"\n{}",
        fake.config_table(good)
    );
    let path = dir.path().join("stoksync.toml");
    let mut config = Config::parse(&text, &path, &|_| None).unwrap();
    config.sync.timing.rate_window = WINDOW;
    let ledger = Ledger::open(&config.database).await.unwrap();
    let mut all = build_all(&config, &ledger, &CancellationToken::new()).unwrap();
    Rig {
        fake,
        adapter: all.remove(0),
        ledger,
        _dir: dir,
    }
}

async fn rig(kind: ProviderName) -> Rig {
    rig_with(fake(kind).await, true).await
}

/// Pushes like the engine: split as the adapter says, then each batch.
async fn push(r: &Rig, pushes: &[StockPush]) -> Vec<(ListingRef, PushOutcome)> {
    let mut out = Vec::new();
    for batch in r.adapter.batches(pushes) {
        let res = r.adapter.push_stock(&batch).await;
        assert!(res.stopped.is_none(), "stopped: {:?}", res.stopped);
        assert_eq!(res.outcomes.len(), batch.len());
        out.extend(batch.into_iter().map(|p| p.listing).zip(res.outcomes));
    }
    out
}

fn to(l: &ListingRef, q: i64) -> StockPush {
    StockPush::new(l.clone(), q)
}

async fn auth(kind: ProviderName) {
    let bad = rig_with(fake(kind).await, false).await;
    match bad.adapter.check_credentials().await {
        Err(ProviderError::Unauthenticated(_)) => {}
        other => panic!("{kind}: wrong credentials gave {other:?}"),
    }
    let c = bad.fake.counters();
    assert_eq!(c.requests, 1, "{kind}: an auth error is not retried");
    assert_eq!(c.auth_failures, 1);
    let good = rig(kind).await;
    good.adapter.check_credentials().await.unwrap();
    assert_eq!(good.fake.counters().requests, 1, "{kind}: one cheap call");
    assert_eq!(good.fake.counters().auth_failures, 0);
}

async fn pagination(kind: ProviderName) {
    let r = rig(kind).await;
    let n = 230;
    let made: HashSet<ListingRef> = (0..n)
        .map(|i| r.fake.add_product(&format!("SKU-{i}"), i))
        .collect();
    match r.adapter.list_listings().await.unwrap() {
        Some(found) => {
            let found: HashSet<ListingRef> = found.into_iter().map(|l| l.listing).collect();
            assert_eq!(found, made, "{kind}: every product across pages");
        }
        None => {
            // No product list (BaZaaRDan): page through orders instead.
            for l in &made {
                r.fake.place_order(l, 1).unwrap();
            }
            let req = PollRequest {
                cursor: None,
                lookback: Duration::from_secs(300),
            };
            let changes = r.adapter.poll_orders(&req, &r.ledger).await.unwrap();
            assert_eq!(
                changes.items.len(),
                n as usize,
                "{kind}: every order line across pages"
            );
        }
    }
}

async fn batching_caps(kind: ProviderName, cap: usize, min_calls: usize) {
    let r = rig(kind).await;
    let listings: Vec<ListingRef> = (0..130)
        .map(|i| r.fake.add_product(&format!("SKU-{i}"), 0))
        .collect();
    let pushes: Vec<StockPush> = listings
        .iter()
        .enumerate()
        .map(|(i, l)| to(l, i as i64 + 1))
        .collect();
    let before = r.fake.counters().requests;
    for (l, o) in push(&r, &pushes).await {
        assert!(matches!(o, PushOutcome::Confirmed(_)), "{kind} {l}: {o:?}");
    }
    for (i, l) in listings.iter().enumerate() {
        assert_eq!(r.fake.stock(l), Some(i as i64 + 1), "{kind} {l}");
    }
    let c = r.fake.counters();
    assert!(
        c.max_batch <= cap,
        "{kind}: batch of {} over the cap {cap}",
        c.max_batch
    );
    let token = usize::from(kind == ProviderName::Pazarsync);
    assert_eq!(
        c.requests - before,
        min_calls + token,
        "{kind}: full batches, no extra calls"
    );
}

async fn partial_failure(kind: ProviderName, unknown: &str) {
    let r = rig(kind).await;
    let good: Vec<ListingRef> = (0..3)
        .map(|i| r.fake.add_product(&format!("SKU-{i}"), 0))
        .collect();
    let missing = ListingRef {
        provider: kind,
        listing_id: unknown.into(),
        variant_id: String::new(),
    };
    let mut pushes: Vec<StockPush> = good.iter().map(|l| to(l, 7)).collect();
    pushes.insert(1, to(&missing, 7));
    let out = push(&r, &pushes).await;
    for (l, o) in out {
        if l == missing {
            assert!(
                matches!(o, PushOutcome::Rejected(_)),
                "{kind}: unknown listing gave {o:?}"
            );
        } else {
            assert_eq!(
                o,
                PushOutcome::Confirmed(7),
                "{kind} {l}: the rest of the batch stands"
            );
            assert_eq!(r.fake.stock(&l), Some(7));
        }
    }
}

/// A fault on the next request; the push still lands. Returns the rig.
async fn survives(kind: ProviderName, fault: Fault) -> Rig {
    let r = rig(kind).await;
    let l = r.fake.add_product("SKU-1", 0);
    r.fake.inject(fault.clone(), 1, None);
    let out = push(&r, &[to(&l, 9)]).await;
    assert_eq!(
        out[0].1,
        PushOutcome::Confirmed(9),
        "{kind} after {fault:?}"
    );
    assert_eq!(r.fake.stock(&l), Some(9));
    r
}

async fn rate_limit_feedback(kind: ProviderName) {
    let r = survives(kind, Fault::RateLimited { retry_after_s: 1 }).await;
    assert_eq!(
        r.adapter.limiter().stats().rate_limited_answers,
        1,
        "{kind}"
    );
    assert_eq!(r.fake.counters().limit_violations, 0);
}

async fn malformed(kind: ProviderName) {
    survives(kind, Fault::Malformed).await;
}

async fn timeout(kind: ProviderName) {
    survives(kind, Fault::Hang(Duration::from_secs(3))).await;
}

async fn orders_read_once(kind: ProviderName) {
    let r = rig(kind).await;
    r.ledger
        .import_stock(&[("SKU-1".into(), 10)], "b", "seed")
        .await
        .unwrap();
    let l = r.fake.add_product("SKU-1", 10);
    let a = r.fake.place_order(&l, 2).unwrap();
    let b = r.fake.place_order(&l, 3).unwrap();
    r.fake.cancel_order(&b);
    let mut req = PollRequest {
        cursor: None,
        lookback: Duration::from_secs(300),
    };
    let changes = r.adapter.poll_orders(&req, &r.ledger).await.unwrap();
    assert_eq!(changes.items.len(), 2, "{kind}: {changes:?}");
    let released: Vec<i64> = changes
        .items
        .iter()
        .filter(|i| i.effect == stoksync::domain::ItemEffect::Release)
        .map(|i| i.quantity)
        .collect();
    assert_eq!(released, [3], "{kind}: the cancelled line releases");
    let epoch = 0;
    r.ledger.apply_orders(kind, &changes, epoch).await.unwrap();
    let before = r.fake.counters().requests;
    req.cursor = changes.cursor.clone();
    let again = r.adapter.poll_orders(&req, &r.ledger).await.unwrap();
    assert!(
        again.items.is_empty(),
        "{kind}: unchanged lines are not read again"
    );
    assert_eq!(
        r.fake.counters().requests - before,
        1,
        "{kind}: one list call, no detail calls"
    );
    r.fake.cancel_order(&a);
    let third = r.adapter.poll_orders(&req, &r.ledger).await.unwrap();
    assert_eq!(third.items.len(), 1, "{kind}: the changed order is read");
}

macro_rules! suite {
    ($m:ident, $kind:expr, cap = $cap:expr, calls = $calls:expr, unknown = $unknown:expr, orders = $orders:expr) => {
        mod $m {
            use super::*;
            const K: ProviderName = $kind;
            #[tokio::test]
            async fn auth() {
                super::auth(K).await
            }
            #[tokio::test]
            async fn pagination() {
                super::pagination(K).await
            }
            #[tokio::test]
            async fn batching_caps() {
                super::batching_caps(K, $cap, $calls).await
            }
            #[tokio::test]
            async fn partial_failure() {
                super::partial_failure(K, $unknown).await
            }
            #[tokio::test]
            async fn rate_limit_feedback() {
                super::rate_limit_feedback(K).await
            }
            #[tokio::test]
            async fn malformed_body() {
                super::malformed(K).await
            }
            #[tokio::test]
            async fn timeout() {
                super::timeout(K).await
            }
            #[tokio::test]
            async fn orders_read_once() {
                if $orders {
                    super::orders_read_once(K).await
                }
            }
        }
    };
}

suite!(
    bazaardan_suite,
    ProviderName::Bazaardan,
    cap = 1,
    calls = 130,
    unknown = "999999",
    orders = true
);
suite!(
    stokdurumu_suite,
    ProviderName::Stokdurumu,
    cap = 1,
    calls = 130,
    unknown = "999999",
    orders = false
);
suite!(
    eticaret_suite,
    ProviderName::Eticaret,
    cap = 30,
    calls = 5,
    unknown = "NO-SUCH-CODE",
    orders = true
);
suite!(
    pazarsync_suite,
    ProviderName::Pazarsync,
    cap = 100,
    calls = 2,
    unknown = "prod_missing",
    orders = true
);
