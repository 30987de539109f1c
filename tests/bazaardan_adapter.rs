//! The BaZaaRDan adapter and the shared HTTP path, in process, against the
//! fake: auth and clock, retries and their limits, paging, status mapping,
//! and the server's rate-limit headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use stoksync::config::{BazaardanConfig, Secret, SyncSettings};
use stoksync::domain::{ItemEffect, ListingRef, ProviderName, PushOutcome, StockPush};
use stoksync::http::{Net, ProviderHttp, RetryPolicy, Verdict};
use stoksync::ledger::Ledger;
use stoksync::limit::Limiter;
use stoksync::providers::bazaardan::{Bazaardan, auth};
use stoksync::providers::{PollRequest, Provider, ProviderError};
use stoksync::sandbox::Fault;
use stoksync::sandbox::bazaardan::{FakeBazaardan, Options};
use tokio_util::sync::CancellationToken;

struct Rig {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    fake: FakeBazaardan,
    adapter: Bazaardan,
}

async fn rig(restock_returns: bool, clock_offset_s: i64) -> Rig {
    let fake = FakeBazaardan::start(Options {
        requests_per_minute: None,
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.db")).await.unwrap();
    let cfg = BazaardanConfig {
        base_url: fake.base_url(),
        client_id: fake.options().client_id.clone(),
        client_secret: Secret::new(fake.options().client_secret.clone()),
        requests_per_minute: 10_000,
    };
    let sync = SyncSettings {
        restock_returns,
        request_timeout: Duration::from_secs(2),
        ..SyncSettings::default()
    };
    let policy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let clock: auth::Clock = Arc::new(move || chrono::Utc::now().timestamp() + clock_offset_s);
    let net = Net::new(sync.request_timeout, policy, CancellationToken::new()).unwrap();
    let adapter = Bazaardan::with_clock(&cfg, &sync, ledger.clone(), &net, clock).unwrap();
    Rig {
        _dir: dir,
        ledger,
        fake,
        adapter,
    }
}

fn first_poll() -> PollRequest {
    PollRequest {
        cursor: None,
        lookback: Duration::from_secs(300),
    }
}

fn push(product: u64, qty: i64) -> StockPush {
    StockPush {
        listing: ListingRef {
            provider: ProviderName::Bazaardan,
            listing_id: product.to_string(),
            variant_id: String::new(),
        },
        quantity: qty,
        tag: String::new(),
    }
}

#[tokio::test]
async fn a_clock_more_than_300s_off_is_reported_as_timestamp_expired() {
    let r = rig(false, 400).await;
    let err = r.adapter.check_credentials().await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unauthenticated(m) if m.contains("TIMESTAMP_EXPIRED") && m.contains("clock")),
        "{err}"
    );
    assert_eq!(r.fake.counters().requests, 1, "auth errors are not retried");
    let near = rig(false, 250).await;
    near.adapter.check_credentials().await.unwrap();
}

#[tokio::test]
async fn retry_after_is_obeyed_and_every_attempt_is_signed_afresh() {
    let r = rig(false, 0).await;
    r.fake.inject(
        Fault::RateLimited { retry_after_s: 1 },
        1,
        Some("orders.php"),
    );
    r.fake.inject(Fault::ServerError, 1, Some("orders.php"));
    let started = Instant::now();
    r.adapter
        .poll_orders(&first_poll(), &r.ledger)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let c = r.fake.counters();
    assert_eq!((c.requests, c.bad_signatures), (3, 0), "{c:?}");
    assert_eq!(r.adapter.limiter().stats().rate_limited_answers, 1);
    assert_eq!(
        r.adapter.limiter().stats().permits,
        3,
        "every attempt took a permit"
    );
}

#[tokio::test]
async fn transient_failures_stop_after_max_attempts_and_4xx_is_never_retried() {
    let r = rig(false, 0).await;
    r.fake.inject(Fault::ServerError, 10, Some("orders.php"));
    let err = r
        .adapter
        .poll_orders(&first_poll(), &r.ledger)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Transient(ref m) if m.contains("4 attempts")),
        "{err}"
    );
    assert_eq!(r.fake.counters().requests, 4);
    r.fake.clear_faults();

    r.fake.add_listing(1, None, "A", 0);
    r.fake.add_foreign_listing(2, None, "B");
    let res = r
        .adapter
        .push_stock(&[push(1, 5), push(2, 5), push(3, 5)])
        .await;
    assert!(res.stopped.is_none());
    assert_eq!(res.outcomes[0], PushOutcome::Confirmed(5));
    assert!(
        matches!(&res.outcomes[1], PushOutcome::Rejected(m) if m.starts_with("FORBIDDEN_SCOPE"))
    );
    assert!(matches!(&res.outcomes[2], PushOutcome::Rejected(m) if m.starts_with("NOT_FOUND")));
    assert_eq!(
        r.fake.counters().by_endpoint["stock_update.php"],
        3,
        "one request per listing, none repeated"
    );

    r.fake
        .inject(Fault::Malformed, 10, Some("stock_update.php"));
    let res = r.adapter.push_stock(&[push(1, 6)]).await;
    assert!(
        matches!(&res.outcomes[0], PushOutcome::Failed(m) if m.contains("not the documented JSON")),
        "{res:?}"
    );
}

#[tokio::test]
async fn a_hung_request_times_out_and_is_retried() {
    let r = rig(false, 0).await;
    r.fake.add_listing(1, None, "A", 0);
    r.fake.inject(
        Fault::Hang(Duration::from_secs(5)),
        1,
        Some("stock_update.php"),
    );
    let res = r.adapter.push_stock(&[push(1, 7)]).await;
    assert_eq!(res.outcomes, vec![PushOutcome::Confirmed(7)]);
    assert_eq!(r.fake.listing_stock(1, None), Some(7));
}

#[tokio::test]
async fn orders_are_paged_and_detail_is_fetched_once_per_new_line() {
    let r = rig(false, 0).await;
    r.fake.add_listing(5, Some(50), "V", 1000);
    for _ in 0..230 {
        r.fake.place_order(5, Some(50), 1);
    }
    let changes = r
        .adapter
        .poll_orders(&first_poll(), &r.ledger)
        .await
        .unwrap();
    assert_eq!(changes.items.len(), 230);
    assert!(
        changes
            .items
            .iter()
            .all(|i| i.variant_id == "50" && i.listing_id == "5")
    );
    let c = r.fake.counters();
    assert_eq!(c.by_endpoint["orders.php"], 3, "limit 100: three pages");
    assert_eq!(c.by_endpoint["order_detail.php"], 230);
    r.ledger
        .apply_orders(ProviderName::Bazaardan, &changes, 0)
        .await
        .unwrap();

    // Polling again from the stored cursor: nothing new, no detail calls.
    let cursor = r
        .ledger
        .provider_state(ProviderName::Bazaardan)
        .await
        .unwrap()
        .cursor;
    let again = r
        .adapter
        .poll_orders(
            &PollRequest {
                cursor,
                lookback: Duration::from_secs(300),
            },
            &r.ledger,
        )
        .await
        .unwrap();
    assert!(again.items.is_empty());
    assert_eq!(r.fake.counters().by_endpoint["order_detail.php"], 230);
}

#[tokio::test]
async fn statuses_map_as_the_protocol_says() {
    for restock in [false, true] {
        let r = rig(restock, 0).await;
        r.fake.add_listing(1, None, "A", 100);
        let cases = [
            ("pending", ItemEffect::Hold),
            ("accepted", ItemEffect::Hold),
            ("shipped", ItemEffect::Hold),
            ("delivered", ItemEffect::Hold),
            ("cancelled", ItemEffect::Release),
            (
                "returned",
                if restock {
                    ItemEffect::Release
                } else {
                    ItemEffect::Hold
                },
            ),
            ("lost_in_space", ItemEffect::Hold),
        ];
        let mut ids = Vec::new();
        for (status, _) in cases {
            let id = r.fake.place_order(1, None, 1);
            r.fake.set_status(id, status);
            ids.push(id);
        }
        let changes = r
            .adapter
            .poll_orders(&first_poll(), &r.ledger)
            .await
            .unwrap();
        for (id, (status, effect)) in ids.iter().zip(cases) {
            let item = changes
                .items
                .iter()
                .find(|i| i.key == id.to_string())
                .unwrap();
            assert_eq!(
                item.effect, effect,
                "{status} with restock_returns={restock}"
            );
        }
    }
}

#[tokio::test]
async fn x_ratelimit_remaining_zero_pauses_until_reset() {
    // A bare server that says "0 left, reset in 2 s" on its first answer.
    let served = Arc::new(AtomicUsize::new(0));
    let s2 = served.clone();
    let app = axum::Router::new().fallback(move || {
        let served = s2.clone();
        async move {
            let n = served.fetch_add(1, Ordering::SeqCst);
            let reset = chrono::Utc::now().timestamp() + 2;
            let remaining = if n == 0 { "0" } else { "5" };
            (
                [
                    ("X-RateLimit-Remaining", remaining.to_string()),
                    ("X-RateLimit-Reset", reset.to_string()),
                ],
                "{}",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.db")).await.unwrap();
    let limiter = Arc::new(Limiter::new(
        ProviderName::Pazarsync,
        Some(1000),
        None,
        ledger,
    ));
    let http = ProviderHttp::new(
        limiter,
        Duration::from_secs(2),
        RetryPolicy::default(),
        CancellationToken::new(),
    )
    .unwrap();
    let get = || {
        http.client()
            .get(&url)
            .build()
            .map_err(|e| ProviderError::Config(e.to_string()))
    };
    http.execute("x", get, |_| Verdict::Done(())).await.unwrap();
    let t = Instant::now();
    http.execute("x", get, |_| Verdict::Done(())).await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(served.load(Ordering::SeqCst), 2);
}
