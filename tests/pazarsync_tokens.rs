//! PazarSync tokens that expire while one call retries or waits for a
//! permit: every attempt carries a token taken for it, never one inside its
//! refresh margin. In virtual time (tokio's paused clock, the fake called
//! in-process, the calendar following that clock), so real 45 s tokens and
//! real 60 s windows cost no wall time.

use std::sync::Arc;
use std::time::Duration;
use stoksync::config::{PazarsyncConfig, Secret, SyncSettings};
use stoksync::domain::{PushOutcome, StockPush};
use stoksync::http::{Net, RetryPolicy, client_builder};
use stoksync::ledger::Ledger;
use stoksync::providers::Provider;
use stoksync::providers::pazarsync::Pazarsync;
use stoksync::sandbox::pazarsync::{FakePazarsync, Options};
use stoksync::sandbox::{Counters, Fake, Fault, InProcess};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// 45 s tokens, as in the report: refreshed 4.5 s (a tenth of their life)
/// before they expire.
const TOKEN_LIFE: Duration = Duration::from_secs(45);
const TIMEOUT: Duration = Duration::from_secs(10);
/// 2026-11-24T10:00:00Z: the calendar the fake and the limiter read.
const START_MS: i64 = 1_795_514_400_000;
const STOCK_ENDPOINT: &str = "products/{id}/stock";

/// The runtime every ledger call of the test's thread runs on (see
/// `stoksync::ledger::run_on_own_runtime`): virtual time then moves only
/// when the test's own tasks are idle, never while SQLite answers.
struct DbRuntime(Option<tokio::runtime::Runtime>);

impl Drop for DbRuntime {
    fn drop(&mut self) {
        stoksync::ledger::run_on_own_runtime(None);
        stoksync::clock::simulate(None);
        // Dropped inside the test's runtime: a blocking shutdown would panic.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Rig {
    adapter: Pazarsync,
    fake: FakePazarsync,
    // Dropped last (fields drop in order): the adapter's ledger first.
    _dir: tempfile::TempDir,
    _db: DbRuntime,
}

async fn rig(requests_per_minute: u32) -> Rig {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    stoksync::ledger::run_on_own_runtime(Some((
        rt.handle().clone(),
        stoksync::ledger::Via::Inline,
    )));
    stoksync::clock::simulate(Some(START_MS));
    let db = DbRuntime(Some(rt));
    let fake = FakePazarsync::in_process(Options {
        requests_per_minute: Some(requests_per_minute),
        token_lifetime: TOKEN_LIFE,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("l.db")).await.unwrap();
    let sync = SyncSettings {
        request_timeout: TIMEOUT,
        max_attempts: 8,
        ..SyncSettings::default()
    };
    // As `providers::retry_policy` builds it from a config.
    let policy = RetryPolicy {
        max_attempts: sync.max_attempts,
        base: sync.timing.retry_base,
        cap: sync.timing.retry_cap,
        ..RetryPolicy::default()
    };
    let net = Net {
        client: client_builder(TIMEOUT).build().unwrap(),
        transport: Arc::new(InProcess::new(&[&fake], TIMEOUT)),
        policy,
        cancel: CancellationToken::new(),
    };
    let cfg = PazarsyncConfig {
        base_url: fake.base_url(),
        client_id: "sandbox-client".into(),
        client_secret: Secret::new("sandbox-secret"),
        requests_per_minute,
        requests_per_day: None,
    };
    let adapter = Pazarsync::new(&cfg, &sync, ledger, &net).unwrap();
    Rig {
        adapter,
        fake,
        _dir: dir,
        _db: db,
    }
}

fn no_expired_token_sent(c: &Counters) {
    assert_eq!(
        c.expired_tokens, 0,
        "requests went out with an expired token: {:?} ({c:?})",
        c.expired_token_examples
    );
}

/// Two 500s, then the window is full (3 a minute, the token fetch
/// included) and the server said `X-RateLimit-Remaining: 0`: the third
/// attempt waits about 60 s for its permit, past the token's 45 s. It goes
/// out with a token fetched after that wait. (Before the fix it went out
/// with the first token, 15.5 s past its expiry, met a 401 and was retried.)
#[tokio::test(start_paused = true)]
async fn a_retry_after_a_permit_wait_carries_a_fresh_token() {
    let r = rig(3).await;
    let l = r.fake.add_product("A", 1);
    r.fake.inject(Fault::ServerError, 2, Some(STOCK_ENDPOINT));
    let started = Instant::now();
    let out = r.adapter.push_stock(&[StockPush::new(l.clone(), 7)]).await;
    assert_eq!(
        out.outcomes,
        [PushOutcome::Confirmed(7)],
        "{:?}",
        out.stopped
    );
    assert_eq!(r.fake.stock(&l), Some(7));
    assert!(
        started.elapsed() > TOKEN_LIFE,
        "the call must have outlived its first token: {:?}",
        started.elapsed()
    );
    let c = r.fake.counters();
    no_expired_token_sent(&c);
    assert_eq!(c.token_fetches, 2, "{c:?}");
    assert_eq!(c.limit_violations, 0, "{c:?}");
    assert!(c.max_per_minute <= 3, "{c:?}");
    // The permit the token outlived was not used: the token was refreshed
    // and the attempt took a permit of its own after it.
    assert_eq!(
        r.adapter.limiter().stats().permits,
        c.requests as u64 + 1,
        "{c:?}"
    );
}

/// Five attempts that hang past the 10 s timeout, with backoff between
/// them: the sixth leaves about 53 s after the token was fetched. No
/// permit waits here (a generous limit): the token is re-read per attempt
/// and refreshed once inside its margin. (Before the fix the sixth attempt
/// carried the first token, about 10 s past its expiry.)
#[tokio::test(start_paused = true)]
async fn a_retry_after_timeouts_and_backoff_carries_a_fresh_token() {
    let r = rig(1000).await;
    let l = r.fake.add_product("A", 1);
    r.fake.inject(
        Fault::Hang(Duration::from_secs(30)),
        5,
        Some(STOCK_ENDPOINT),
    );
    let started = Instant::now();
    let out = r.adapter.push_stock(&[StockPush::new(l.clone(), 7)]).await;
    assert_eq!(
        out.outcomes,
        [PushOutcome::Confirmed(7)],
        "{:?}",
        out.stopped
    );
    assert_eq!(r.fake.stock(&l), Some(7));
    assert!(
        started.elapsed() > TOKEN_LIFE,
        "the call must have outlived its first token: {:?}",
        started.elapsed()
    );
    let c = r.fake.counters();
    no_expired_token_sent(&c);
    assert_eq!(c.network_faults, 5, "{c:?}");
    assert_eq!(c.token_fetches, 2, "{c:?}");
}

/// One request a minute with 45 s tokens: every permit comes after the
/// token fetched for it reached its refresh point. No request goes out with
/// a dying token; the call gives up after three such waits, saying why,
/// instead of refreshing forever. (Before the fix: two requests with
/// expired tokens, then "a freshly fetched token was refused too".)
#[tokio::test(start_paused = true)]
async fn tokens_shorter_than_the_permit_wait_fail_the_call_without_sending_them() {
    let r = rig(1).await;
    let l = r.fake.add_product("A", 1);
    let out = r.adapter.push_stock(&[StockPush::new(l.clone(), 7)]).await;
    match &out.outcomes[..] {
        [PushOutcome::Failed(why)] => assert!(why.contains("refresh point"), "{why}"),
        other => panic!("{other:?} {:?}", out.stopped),
    }
    assert_eq!(r.fake.stock(&l), Some(1));
    let c = r.fake.counters();
    no_expired_token_sent(&c);
    assert_eq!(
        c.requests, c.token_fetches,
        "only token fetches went out: {c:?}"
    );
    assert_eq!(c.limit_violations, 0, "{c:?}");
}

/// The fake itself: a token works strictly before its expiry (no grace),
/// a later use is a 401 counted as an expired token, a revoked one is a 401
/// that is not.
#[tokio::test(start_paused = true)]
async fn the_fake_counts_expired_tokens_apart_from_revoked_ones() {
    use stoksync::http::Transport;
    // The fake times tokens by the calendar: make it follow the paused clock.
    stoksync::clock::simulate(Some(1_772_431_200_000));
    let fake = FakePazarsync::in_process(Options {
        token_lifetime: TOKEN_LIFE,
        ..Options::default()
    });
    let net = InProcess::new(&[&fake], TIMEOUT);
    let client = client_builder(TIMEOUT).build().unwrap();
    let base = fake.base_url();
    let token = || async {
        let req = client
            .post(format!("{base}/api/auth/token"))
            .json(&serde_json::json!({"client_id": "sandbox-client",
                "client_secret": "sandbox-secret", "grant_type": "client_credentials"}))
            .build()
            .unwrap();
        let reply = net.send(req).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        body["access_token"].as_str().unwrap().to_string()
    };
    let products = |token: String| async {
        let req = client
            .get(format!("{base}/api/v1/products?limit=10"))
            .bearer_auth(token)
            .build()
            .unwrap();
        net.send(req).await.unwrap().status.as_u16()
    };
    let first = token().await;
    tokio::time::advance(TOKEN_LIFE - Duration::from_millis(1)).await;
    assert_eq!(products(first.clone()).await, 200, "1 ms before expiry");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(products(first).await, 401, "at expiry");
    let c = fake.counters();
    assert_eq!((c.auth_failures, c.expired_tokens), (1, 1), "{c:?}");
    assert!(
        c.expired_token_examples[0].contains("0.000 s past its expiry"),
        "{c:?}"
    );
    let second = token().await;
    fake.revoke_tokens();
    assert_eq!(products(second).await, 401, "revoked");
    let c = fake.counters();
    assert_eq!((c.auth_failures, c.expired_tokens), (2, 1), "{c:?}");
}
