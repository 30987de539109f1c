//! Rules particular to one provider, against its fake.

use std::sync::Arc;
use std::time::Duration;
use stoksync::config::Config;
use stoksync::domain::{ListingRef, PushOutcome, StockPush};
use stoksync::ledger::Ledger;
use stoksync::providers::{PollRequest, Provider, ProviderError, build_all};
use stoksync::sandbox::{Fake, eticaret, pazarsync, stokdurumu};
use tokio_util::sync::CancellationToken;

async fn adapter(fake: &dyn Fake, table: String) -> (tempfile::TempDir, Ledger, Arc<dyn Provider>) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[ledger]\ndatabase = \"ledger.db\"\n[sync]\nrequest_timeout = \"2s\"\nmax_attempts = 3\n{}",
        table
    );
    let _ = fake;
    let config = Config::parse(&text, &dir.path().join("s.toml"), &|_| None).unwrap();
    let ledger = Ledger::open(&config.database).await.unwrap();
    let p = build_all(&config, &ledger, &CancellationToken::new())
        .unwrap()
        .remove(0);
    (dir, ledger, p)
}

fn to(l: &ListingRef, q: i64) -> StockPush {
    StockPush::new(l.clone(), q)
}

#[tokio::test]
async fn pazarsync_refreshes_a_refused_token_once_and_retries() {
    let fake = pazarsync::FakePazarsync::start(Default::default())
        .await
        .unwrap();
    let (_d, _l, p) = adapter(&fake, fake.config_table(true)).await;
    let l = fake.add_product("A", 0);
    let r = p.push_stock(&[to(&l, 3)]).await;
    assert_eq!(r.outcomes, [PushOutcome::Confirmed(3)]);
    assert_eq!(fake.counters().token_fetches, 1);
    // The server drops the token before expires_in: one 401, one new token.
    fake.revoke_tokens();
    let r = p.push_stock(&[to(&l, 4)]).await;
    assert_eq!(r.outcomes, [PushOutcome::Confirmed(4)]);
    let c = fake.counters();
    assert_eq!((c.token_fetches, c.auth_failures), (2, 1), "{c:?}");
    // Concurrent callers after another revocation share one refresh.
    fake.revoke_tokens();
    let calls = (0..10).map(|_| {
        let (p, l) = (p.clone(), l.clone());
        tokio::spawn(async move { p.push_stock(&[to(&l, 5)]).await.outcomes })
    });
    for c in calls {
        assert_eq!(c.await.unwrap(), [PushOutcome::Confirmed(5)]);
    }
    assert!(fake.counters().token_fetches <= 4, "{:?}", fake.counters());
}

#[tokio::test]
async fn pazarsync_wrong_secret_is_an_auth_error_without_retries() {
    let fake = pazarsync::FakePazarsync::start(Default::default())
        .await
        .unwrap();
    let (_d, ledger, p) = adapter(&fake, fake.config_table(false)).await;
    let req = PollRequest {
        cursor: None,
        lookback: Duration::from_secs(60),
    };
    match p.poll_orders(&req, &ledger).await {
        Err(ProviderError::Unauthenticated(msg)) => assert!(!msg.contains("sandbox-secret")),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.counters().requests, 1);
}

/// The server's `X-RateLimit-Remaining`/`Reset` win over the configured
/// budget: a plan of 5/min configured as 60 never meets a 429.
#[tokio::test]
async fn pazarsync_server_limit_headers_override_local_counts() {
    let fake = pazarsync::FakePazarsync::start(pazarsync::Options {
        requests_per_minute: Some(5),
        // Its minute shrunk to 2 s: the wait for X-RateLimit-Reset is one.
        window: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let table = fake
        .config_table(true)
        .replace("requests_per_minute = 5", "requests_per_minute = 60");
    let (_d, _l, p) = adapter(&fake, table).await;
    let l = fake.add_product("A", 0);
    for q in 1..=7 {
        assert_eq!(
            p.push_stock(&[to(&l, q)]).await.outcomes,
            [PushOutcome::Confirmed(q)]
        );
    }
    let c = fake.counters();
    assert_eq!(c.limit_violations, 0, "{c:?}");
    assert!(c.max_per_minute <= 5, "{c:?}");
}

#[tokio::test]
async fn eticaret_fractional_and_return_statuses() {
    let fake = eticaret::FakeEticaret::start(Default::default())
        .await
        .unwrap();
    let (_d, ledger, p) = adapter(&fake, fake.config_table(true)).await;
    let a = fake.add_product("P1", 10);
    let v = fake.add_variant_product("P2", &[("B-S", 5), ("B-M", 5)]);
    let frac = fake.place_lines(&[("P1", "", 1.5), ("P2", "B-S", 2.0)]);
    let ret = fake.place_lines(&[("P2", "B-M", 1.0)]);
    fake.set_status(ret, 4);
    let _ = (a, v, frac);
    let req = PollRequest {
        cursor: None,
        lookback: Duration::from_secs(300),
    };
    let c = p.poll_orders(&req, &ledger).await.unwrap();
    assert_eq!(c.anomalies.len(), 1, "{c:?}");
    assert!(c.anomalies[0].message.contains("1.5"), "{c:?}");
    let keys: Vec<(&str, &str, i64)> = c
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.status.as_str(), i.quantity))
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        c.items
            .iter()
            .all(|i| i.effect == stoksync::domain::ItemEffect::Hold),
        "status 4 holds without restocking"
    );
}

/// stokdurumu's 429 means the day's quota is spent: stoksync waits for the
/// reset instead of knocking again.
#[tokio::test]
async fn stokdurumu_quota_429_waits_for_the_reset() {
    let fake = stokdurumu::FakeStokdurumu::start(stokdurumu::Options {
        requests_per_day: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let table = fake
        .config_table(true)
        .replace("requests_per_day = 2", "requests_per_day = \"unlimited\"");
    let (_d, _l, p) = adapter(&fake, table).await;
    let l = fake.add_product("A", 0);
    for q in 1..=2 {
        assert_eq!(
            p.push_stock(&[to(&l, q)]).await.outcomes,
            [PushOutcome::Confirmed(q)]
        );
    }
    let r = p.push_stock(&[to(&l, 3)]).await;
    assert!(
        matches!(r.stopped, Some(ProviderError::RateLimited { wait }) if wait > Duration::from_secs(120)),
        "{r:?}"
    );
    let seen = fake.counters().requests;
    let r = tokio::time::timeout(Duration::from_secs(5), p.push_stock(&[to(&l, 3)]))
        .await
        .expect("a call during the pause returns at once");
    assert!(
        matches!(r.stopped, Some(ProviderError::RateLimited { .. })),
        "{r:?}"
    );
    assert_eq!(
        fake.counters().requests,
        seen,
        "nothing sent until the reset"
    );
}

/// `from_date` filters on `created_at`: the hourly sweep still sees a late
/// cancellation of an order created days ago.
#[tokio::test]
async fn pazarsync_sweep_sees_late_cancellations_of_old_orders() {
    let fake = pazarsync::FakePazarsync::start(Default::default())
        .await
        .unwrap();
    let (_d, ledger, p) = adapter(&fake, fake.config_table(true)).await;
    let l = fake.add_product("A", 10);
    let old = fake.place_order(&l, 2).unwrap();
    fake.backdate(&old, Duration::from_secs(3 * 24 * 3600));
    fake.place_order(&l, 1).unwrap();
    fake.cancel_order(&old);
    let lookback = Duration::from_secs(300);
    // A normal poll from a recent cursor misses the old order...
    let recent = format!(
        "created={};swept={}",
        chrono::Utc::now().to_rfc3339(),
        stoksync::domain::now_ms()
    );
    let req = PollRequest {
        cursor: Some(recent),
        lookback,
    };
    let c = p.poll_orders(&req, &ledger).await.unwrap();
    assert!(c.items.iter().all(|i| !i.key.starts_with(&old)), "{c:?}");
    // ...the sweep (last one over an hour ago) does not.
    let stale = format!("created={};swept=1", chrono::Utc::now().to_rfc3339());
    let req = PollRequest {
        cursor: Some(stale),
        lookback,
    };
    let c = p.poll_orders(&req, &ledger).await.unwrap();
    let line = c
        .items
        .iter()
        .find(|i| i.key.starts_with(&old))
        .expect("old order swept");
    assert_eq!(line.effect, stoksync::domain::ItemEffect::Release);
    assert!(c.cursor.unwrap().contains("swept="));
}
