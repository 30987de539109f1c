//! Alerts end to end: the real binary against the BaZaaRDan fake, with a
//! receiver on loopback recording every webhook call and a command writing
//! every payload it is given to a file.
//!
//! - an oversold SKU and a refused push each fire once; the oversold SKU
//!   resolves once; a restart fires neither again; a receiver answering
//!   500 gets them later (retried) while the listings still converge;
//!   `/readyz` and `status` say degraded, `/metrics` counts them by kind;
//! - refused credentials and a stall fire (the command gets them), a dead
//!   webhook is retried then logged with the payload, and a restart with
//!   good credentials resolves both;
//! - a small daily quota warns at 80 % and again when spent;
//! - a push failing past `backlog_after` fires the backlog alert once, and
//!   it resolves once when the backlog drains;
//! - a listing left waiting by a provider answering 500 to everything (no
//!   poll succeeds, so no push round runs) fires the backlog alert
//!   `backlog_after` after the sale that made it differ, within one
//!   evaluation period, during the outage; a restart neither fires it again
//!   nor resolves it; it resolves within one period of the provider
//!   confirming the new value;
//! - no payload carries a secret.

mod common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{Daemon, Env, Knobs, SECRET, free_port, wait_for};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stoksync::domain::ListingRef;
use stoksync::sandbox::Fake;

/// Every payload a webhook received (with when, Unix ms), and how many
/// calls to refuse first.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(Value, i64)>>>,
    calls: Arc<AtomicUsize>,
    refuse_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(addr: std::net::SocketAddr, refuse_first: usize) -> Receiver {
        let r = Receiver::default();
        r.refuse_first.store(refuse_first, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn payloads(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|g| g.0.clone())
            .collect()
    }

    /// The `event` payload of `key` and when it arrived, if it did.
    fn received(&self, event: &str, key: &str) -> Option<(Value, i64)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| p["event"] == event && p["key"] == key)
            .cloned()
    }
}

async fn hook(State(r): State<Receiver>, body: String) -> StatusCode {
    let n = r.calls.fetch_add(1, Ordering::SeqCst);
    if n < r.refuse_first.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let at = chrono::Utc::now().timestamp_millis();
    r.got
        .lock()
        .unwrap()
        .push((serde_json::from_str(&body).expect("a JSON body"), at));
    StatusCode::OK
}

/// How many `event` payloads for `key` are in `payloads`.
fn count(payloads: &[Value], event: &str, key: &str) -> usize {
    payloads
        .iter()
        .filter(|p| p["event"] == event && p["key"] == key)
        .count()
}

/// The payloads the command wrote, one JSON a line.
fn command_payloads(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(env.path("command.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn alerts_table(env: &Env, webhook: &str, extra: &str) -> String {
    let out = env.path("command.jsonl");
    format!(
        "\n[alerts]\nwebhook = \"{webhook}\"\ncommand = [\"sh\", \"-c\", \"cat >> '{}' && echo >> '{}'\"]\ntimeout = \"2s\"\n{extra}",
        out.display(),
        out.display()
    )
}

fn append(env: &Env, text: &str) {
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(text);
    std::fs::write(&env.config, config).unwrap();
}

/// `run`, its logs in `log` (a file: a pipe nobody reads would fill up).
fn start(env: &Env, log: &str) -> Daemon {
    Daemon::spawn_logging_to(
        env.command(&["run"]),
        &format!("stoksync run ({log})"),
        &env.path(&format!("{log}.out")),
        &env.path(log),
    )
}

async fn stop(mut daemon: Daemon) {
    let pid = daemon.id().unwrap().to_string();
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

async fn get(url: String) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

fn no_secret_in(payloads: &[Value]) {
    for p in payloads {
        let text = p.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains(SECRET),
            "a payload carries the secret: {text}"
        );
    }
}

#[tokio::test]
async fn oversold_and_refused_push_fire_once_resolve_once_and_a_failing_receiver_stops_nothing() {
    let env = Env::new(Knobs::default()).await;
    let hook_addr = free_port();
    // The receiver refuses its first three calls: they are retried.
    let receiver = Receiver::start(hook_addr, 3).await;
    append(
        &env,
        &alerts_table(&env, &format!("http://{hook_addr}/hook"), "retries = 8\n"),
    );
    let kalem = env.fake.add_product("KALEM", 1);
    let defter = env.fake.add_product("DEFTER", 1);
    env.ok(&[
        "stock",
        "import",
        env.write("stock.csv", "sku,quantity\nKALEM,5\nDEFTER,10\nSILGI,4\n")
            .to_str()
            .unwrap(),
    ])
    .await;
    // DEFTER's second listing does not exist on BaZaaRDan: NOT_FOUND.
    let map = format!(
        "sku,provider,listing_id,variant_id\nKALEM,bazaardan,{},\nDEFTER,bazaardan,{},\n",
        kalem.listing_id, defter.listing_id
    );
    env.ok(&[
        "mapping",
        "import",
        env.write("map.csv", &map).to_str().unwrap(),
    ])
    .await;
    let bad = "sku,provider,listing_id,variant_id\nDEFTER,bazaardan,999999,\n";
    env.ok(&[
        "mapping",
        "import",
        env.write("bad.csv", bad).to_str().unwrap(),
    ])
    .await;
    let daemon = start(&env, "run1.log");
    env.ok(&["stock", "adjust", "KALEM", "-8", "--reason", "miscount"])
        .await;

    let refused = "push_refused/bazaardan/999999";
    let oversold = "oversold//KALEM";
    wait_for(
        Duration::from_secs(60),
        "the oversold SKU and the refused push at the receiver",
        || async {
            let p = receiver.payloads();
            count(&p, "fired", oversold) == 1 && count(&p, "fired", refused) == 1
        },
    )
    .await;
    assert!(
        receiver.calls.load(Ordering::SeqCst) >= 5,
        "the refused calls were retried"
    );
    // Syncing went on meanwhile: the listings show the ledger.
    let shows = |l: &ListingRef| env.fake.stock(l);
    wait_for(Duration::from_secs(30), "the listings converge", || async {
        shows(&kalem) == Some(0) && shows(&defter) == Some(10)
    })
    .await;
    let p = receiver.payloads();
    let fired = p.iter().find(|p| p["key"] == refused).unwrap();
    assert_eq!(fired["kind"], "push_refused");
    assert_eq!(fired["provider"], "bazaardan");
    assert_eq!(fired["sku"], "DEFTER");
    assert_eq!(fired["listing"], "999999");
    assert!(
        fired["message"].as_str().unwrap().contains("NOT_FOUND"),
        "{fired}"
    );
    assert!(fired["since"].as_str().is_some() && fired["at"].as_str().is_some());

    // Degraded, with the reasons; the process itself is ready.
    let base = format!("http://{}", env.http);
    let (code, body) = get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "degraded", "{v:#}");
    let kinds: Vec<&str> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["oversold", "push_refused"], "{v:#}");
    let (_, page) = get(format!("{base}/")).await.unwrap();
    assert!(
        page.contains("Degraded: 2 alert(s) open") && page.contains("NOT_FOUND"),
        "the status page names the open alerts: {page}"
    );
    let (_, metrics) = get(format!("{base}/metrics")).await.unwrap();
    for line in [
        "stoksync_alerts_open{kind=\"oversold\"} 1",
        "stoksync_alerts_open{kind=\"push_refused\"} 1",
        "stoksync_alerts_open{kind=\"credentials_refused\"} 0",
        "stoksync_alerts_open{kind=\"backlog\"} 0",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}");
    }
    let status = env.ok(&["status"]).await;
    assert!(
        status.contains("degraded: 2 alert(s) open") && status.contains("SKU KALEM is oversold"),
        "{status}"
    );
    let json: Value = serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(json["state"], "degraded");

    // Back above zero: resolved, once.
    env.ok(&["stock", "adjust", "KALEM", "10", "--reason", "found them"])
        .await;
    wait_for(
        Duration::from_secs(30),
        "the oversold SKU resolves",
        || async { count(&receiver.payloads(), "resolved", oversold) == 1 },
    )
    .await;
    let resolved = receiver
        .payloads()
        .into_iter()
        .find(|p| p["event"] == "resolved")
        .unwrap();
    assert_eq!(resolved["sku"], "KALEM");
    assert_eq!(
        resolved["message"], "SKU KALEM is no longer oversold.",
        "{resolved}"
    );

    // A restart fires nothing open again and forgets nothing: a new
    // episode (SILGI) arrives after anything the restart could have sent.
    stop(daemon).await;
    let daemon = start(&env, "run2.log");
    env.ok(&["stock", "adjust", "SILGI", "-5", "--reason", "miscount"])
        .await;
    wait_for(
        Duration::from_secs(60),
        "SILGI's alert after the restart",
        || async { count(&receiver.payloads(), "fired", "oversold//SILGI") == 1 },
    )
    .await;
    let p = receiver.payloads();
    assert_eq!(count(&p, "fired", refused), 1, "not fired again: {p:#?}");
    assert_eq!(count(&p, "fired", oversold), 1, "{p:#?}");
    assert_eq!(count(&p, "resolved", oversold), 1, "{p:#?}");
    assert_eq!(count(&p, "resolved", refused), 0, "still refused: {p:#?}");
    // The command got the same events, in the same order.
    wait_for(Duration::from_secs(30), "the command's copy", || async {
        command_payloads(&env).len() == p.len()
    })
    .await;
    let by_command: Vec<(Value, Value)> = command_payloads(&env)
        .iter()
        .map(|c| (c["event"].clone(), c["key"].clone()))
        .collect();
    let by_hook: Vec<(Value, Value)> = p
        .iter()
        .map(|c| (c["event"].clone(), c["key"].clone()))
        .collect();
    assert_eq!(by_command, by_hook);
    no_secret_in(&p);
    no_secret_in(&command_payloads(&env));
    stop(daemon).await;
    let log = std::fs::read_to_string(env.path("run1.log")).unwrap();
    assert!(
        log.contains("alert delivery failed; will retry"),
        "the refused calls are logged"
    );
    assert!(!log.contains("/hook"), "the webhook's URL is never logged");
}

#[tokio::test]
async fn refused_credentials_and_a_stall_fire_a_dead_webhook_is_logged_and_a_fix_resolves_them() {
    let env = Env::new(Knobs {
        secret: "wrong-secret".into(),
        ..Knobs::default()
    })
    .await;
    // Nothing listens there: every call fails at once.
    let dead = free_port();
    append(
        &env,
        &alerts_table(
            &env,
            &format!("http://{dead}/hook?token={SECRET}x"),
            "retries = 1\nstall_after = \"1s\"\n",
        ),
    );
    // The webhook's URL is a secret: `${...}` keeps the quote in it legal.
    let config = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(&format!("token={SECRET}x"), "token=${BZ_SECRET}");
    std::fs::write(&env.config, config).unwrap();
    let daemon = start(&env, "bad.log");
    let creds = "credentials_refused/bazaardan/";
    let stalled = "stalled/bazaardan/";
    wait_for(
        Duration::from_secs(60),
        "refused credentials and a stall, by the command",
        || async {
            let p = command_payloads(&env);
            count(&p, "fired", creds) == 1 && count(&p, "fired", stalled) == 1
        },
    )
    .await;
    let p = command_payloads(&env);
    let c = p.iter().find(|p| p["key"] == creds).unwrap();
    assert_eq!(c["kind"], "credentials_refused");
    assert!(
        c["message"].as_str().unwrap().contains("credentials"),
        "{c}"
    );
    // The dead webhook: tried twice, then logged with its payload.
    wait_for(
        Duration::from_secs(30),
        "the undelivered alert logged",
        || async {
            std::fs::read_to_string(env.path("bad.log"))
                .unwrap_or_default()
                .contains("alert not delivered, retries spent; dropped")
        },
    )
    .await;
    let log = std::fs::read_to_string(env.path("bad.log")).unwrap();
    assert!(log.contains("credentials_refused"), "the payload is logged");
    assert!(!log.contains("wrong-secret"), "no secret in the log");
    stop(daemon).await;

    // Fixed: the new process resolves what the old one opened.
    std::fs::write(env.path("secret"), SECRET).unwrap();
    let daemon = start(&env, "good.log");
    wait_for(Duration::from_secs(60), "both resolve", || async {
        let p = command_payloads(&env);
        count(&p, "resolved", creds) == 1 && count(&p, "resolved", stalled) == 1
    })
    .await;
    let p = command_payloads(&env);
    assert_eq!(count(&p, "fired", creds), 1, "{p:#?}");
    assert_eq!(count(&p, "fired", stalled), 1, "{p:#?}");
    no_secret_in(&p);
    let status = env.ok(&["status"]).await;
    assert!(!status.contains("degraded"), "{status}");
    stop(daemon).await;
}

#[tokio::test]
async fn a_daily_quota_warns_at_80_percent_and_again_when_spent() {
    let env = Env::new(Knobs::default()).await;
    let sd = stoksync::sandbox::stokdurumu::FakeStokdurumu::start(
        stoksync::sandbox::stokdurumu::Options {
            requests_per_day: Some(6),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Six listings that must come down (urgent pushes may spend the whole
    // quota): a page of discovery and a push each spend it.
    let skus = ["A", "B", "C", "D", "E", "F"];
    for sku in skus {
        sd.add_product(sku, 10);
    }
    let out = env.path("command.jsonl");
    std::fs::write(
        &env.config,
        format!(
            "[ledger]\ndatabase = \"ledger.db\"\n[sync]\npoll_interval = \"200ms\"\n[http]\nlisten = \"off\"\n{}\n[alerts]\ncommand = [\"sh\", \"-c\", \"cat >> '{}' && echo >> '{}'\"]\n",
            sd.config_table(true),
            out.display(),
            out.display()
        ),
    )
    .unwrap();
    let stock: String = skus.iter().map(|s| format!("{s},1\n")).collect();
    let stock = env.write("stock.csv", &format!("sku,quantity\n{stock}"));
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    let daemon = start(&env, "quota.log");
    let seen = || {
        format!(
            "{:?}\n{}",
            command_payloads(&env),
            std::fs::read_to_string(env.path("quota.log")).unwrap_or_default()
        )
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let p = command_payloads(&env);
        if count(&p, "fired", "quota_low/stokdurumu/") == 1
            && count(&p, "fired", "quota_exhausted/stokdurumu/") == 1
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for both quota alerts:\n{}",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = command_payloads(&env);
    let low = p
        .iter()
        .find(|p| p["kind"] == "quota_low")
        .expect("quota_low");
    assert_eq!(low["provider"], "stokdurumu");
    assert!(
        low["message"]
            .as_str()
            .unwrap()
            .contains("of its 6 requests today"),
        "{low}"
    );
    no_secret_in(&p);
    assert!(!p.iter().any(|p| p.to_string().contains("sk_sandbox")));
    stop(daemon).await;
}

#[tokio::test]
async fn a_backlog_older_than_backlog_after_fires_once_and_resolves_once_when_it_drains() {
    let env = Env::new(Knobs::default()).await;
    let hook_addr = free_port();
    let receiver = Receiver::start(hook_addr, 0).await;
    append(
        &env,
        &alerts_table(
            &env,
            &format!("http://{hook_addr}/hook"),
            "backlog_after = \"1s\"\n",
        ),
    );
    let kalem = env.fake.add_product("KALEM", 0);
    env.ok(&[
        "stock",
        "import",
        env.write("stock.csv", "sku,quantity\nKALEM,5\n")
            .to_str()
            .unwrap(),
    ])
    .await;
    let map = format!(
        "sku,provider,listing_id,variant_id\nKALEM,bazaardan,{},\n",
        kalem.listing_id
    );
    env.ok(&[
        "mapping",
        "import",
        env.write("map.csv", &map).to_str().unwrap(),
    ])
    .await;
    // The push fails for a while (every attempt a 500): the listing waits
    // in the backlog past `backlog_after`, then goes out.
    env.fake.inject(
        stoksync::sandbox::Fault::ServerError,
        12,
        Some(env.fake.push_endpoint()),
    );
    let daemon = start(&env, "backlog.log");
    let key = "backlog/bazaardan/";
    wait_for(
        Duration::from_secs(90),
        "the backlog alert to fire and resolve",
        || async {
            let p = receiver.payloads();
            count(&p, "fired", key) == 1 && count(&p, "resolved", key) == 1
        },
    )
    .await;
    assert_eq!(env.fake.stock(&kalem), Some(5), "the backlog drained");
    let p = receiver.payloads();
    let fired = p
        .iter()
        .find(|p| p["event"] == "fired" && p["key"] == key)
        .unwrap();
    assert_eq!(fired["provider"], "bazaardan");
    assert!(
        p.iter()
            .position(|x| x["event"] == "fired" && x["key"] == key)
            < p.iter()
                .position(|x| x["event"] == "resolved" && x["key"] == key),
        "fired before resolved: {p:?}"
    );
    no_secret_in(&p);
    stop(daemon).await;
    // Once each, even after the stop.
    let p = receiver.payloads();
    assert_eq!(
        (count(&p, "fired", key), count(&p, "resolved", key)),
        (1, 1)
    );
}

/// An RFC 3339 stamp of a payload (`at`, `since`) in Unix ms.
fn stamp_ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a stamp"))
        .expect("RFC 3339")
        .timestamp_millis()
}

/// One number read from the ledger file (the daemon keeps writing it).
async fn ledger_i64(env: &Env, query: &str) -> Option<i64> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.database().display()))
        .await
        .unwrap();
    let v: Option<Option<i64>> = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_string()))
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    v.flatten()
}

/// `name{provider="pazarsync"}` of /metrics, if the daemon answers.
async fn pazarsync_metric(env: &Env, name: &str) -> Option<f64> {
    let (_, text) = get(format!("http://{}/metrics", env.http)).await?;
    let prefix = format!("{name}{{provider=\"pazarsync\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Issue 19, defect 5: the backlog alert was timed from push rounds, and
/// no round runs while a provider's polls fail, so a listing waiting behind
/// an outage fired nothing until the outage ended (193 s late with a 20 s
/// threshold) and never resolved. Now its start is read from the ledger:
/// PazarSync answers 500 to everything while a BaZaaRDan sale lowers the
/// SKU both sell, and the alert fires `backlog_after` after the sale's
/// movement, within one evaluation period, while PazarSync still fails; a
/// restart neither fires it again nor resolves it; once PazarSync answers
/// and confirms the new value, it resolves within one period.
#[tokio::test]
async fn a_backlog_behind_a_provider_outage_fires_on_time_and_resolves_when_confirmed() {
    use stoksync::sandbox::pazarsync::FakePazarsync;
    const THRESHOLD_MS: i64 = 10_000;
    // `poll_interval = "1s"`: the alerts are evaluated every second.
    const PERIOD_MS: i64 = 1_000;
    // What a busy machine may add to an evaluation's tick (its own reads).
    const JITTER_MS: i64 = 400;
    // From an evaluation to the receiver.
    const DELIVERY_MS: i64 = 1_000;
    let env = Env::new(Knobs {
        poll_interval: "1s",
        ..Knobs::default()
    })
    .await;
    // Retries during the outage spend requests: a limit they cannot spend
    // in the outage's few seconds, so recovery waits for no window.
    let pz = FakePazarsync::start(stoksync::sandbox::pazarsync::Options {
        requests_per_minute: Some(1_000),
        ..Default::default()
    })
    .await
    .unwrap();
    let hook_addr = free_port();
    let receiver = Receiver::start(hook_addr, 0).await;
    append(&env, &format!("\n{}", pz.config_table(true)));
    append(
        &env,
        &alerts_table(
            &env,
            &format!("http://{hook_addr}/hook"),
            "backlog_after = \"10s\"\n",
        ),
    );
    let bz_listing = env.fake.add_product("KALEM", 5);
    let pz_listing = pz.add_product("KALEM", 5);
    env.ok(&[
        "stock",
        "import",
        env.write("stock.csv", "sku,quantity\nKALEM,5\n")
            .to_str()
            .unwrap(),
    ])
    .await;
    let map = format!(
        "sku,provider,listing_id,variant_id\nKALEM,bazaardan,{},\nKALEM,pazarsync,{},\n",
        bz_listing.listing_id, pz_listing.listing_id
    );
    env.ok(&[
        "mapping",
        "import",
        env.write("map.csv", &map).to_str().unwrap(),
    ])
    .await;
    let daemon = start(&env, "outage1.log");
    wait_for(
        Duration::from_secs(30),
        "both listings confirmed at 5",
        || async {
            ledger_i64(
                &env,
                "SELECT COUNT(*) FROM listings WHERE confirmed_qty = 5",
            )
            .await
                == Some(2)
        },
    )
    .await;

    // A PazarSync poll after that confirmation (its round found nothing
    // to push), then PazarSync answers 500 to everything, and its loop has
    // seen a poll fail (the report's case: no push round runs there from
    // then on); then a sale on BaZaaRDan.
    let polled_after = "SELECT p.last_poll_ok_ms FROM provider_state p JOIN listings l
        ON l.provider = p.provider WHERE p.provider = 'pazarsync'
        AND p.last_poll_ok_ms > l.confirmed_at_ms";
    wait_for(
        Duration::from_secs(30),
        "a PazarSync poll after the confirmation",
        || async { ledger_i64(&env, polled_after).await.is_some() },
    )
    .await;
    let outage_ms = chrono::Utc::now().timestamp_millis();
    pz.inject(stoksync::sandbox::Fault::ServerError, 1_000_000, None);
    let failed = format!(
        "SELECT last_error_ms FROM provider_state WHERE provider = 'pazarsync' AND last_error_ms > {outage_ms}"
    );
    wait_for(
        Duration::from_secs(30),
        "a failed PazarSync poll",
        || async { ledger_i64(&env, &failed).await.is_some() },
    )
    .await;
    Fake::place_order(&env.fake, &bz_listing, 1).expect("an order");
    let sale = "SELECT MAX(created_at_ms) FROM movements WHERE sku = 'KALEM' AND delta = -1";
    wait_for(
        Duration::from_secs(30),
        "the sale in the ledger",
        || async { ledger_i64(&env, sale).await.is_some() },
    )
    .await;
    let cause_ms = ledger_i64(&env, sale).await.unwrap();
    let key = "backlog/pazarsync/";
    wait_for(
        Duration::from_secs(20),
        "the PazarSync backlog alert during the outage",
        || async { receiver.received("fired", key).is_some() },
    )
    .await;
    let (fired, got_ms) = receiver.received("fired", key).unwrap();
    let at_ms = stamp_ms(&fired["at"]);
    let late = at_ms - cause_ms;
    assert!(
        late >= THRESHOLD_MS,
        "fired {late} ms after the sale, before backlog_after: {fired}"
    );
    assert!(
        late <= THRESHOLD_MS + PERIOD_MS + JITTER_MS,
        "fired {late} ms after the sale: more than backlog_after plus one period: {fired}"
    );
    assert!(
        got_ms - at_ms <= DELIVERY_MS,
        "delivered {} ms after it fired",
        got_ms - at_ms
    );
    assert_eq!(fired["provider"], "pazarsync");
    assert_eq!(stamp_ms(&fired["since"]), at_ms, "the episode opened then");
    assert_eq!(
        pz.stock(&pz_listing),
        Some(5),
        "PazarSync was still failing when it fired"
    );
    // `/metrics` and `status` tell the same backlog, from the same ledger.
    let pending = pazarsync_metric(&env, "stoksync_pending_pushes").await;
    assert_eq!(pending, Some(1.0));
    let age = pazarsync_metric(&env, "stoksync_pending_push_age_seconds")
        .await
        .expect("the age of the backlog");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (age * 1000.0 - (now - cause_ms) as f64).abs() <= 2_000.0,
        "/metrics counts the backlog's age from the sale: {age} s, the sale was {} ms ago",
        now - cause_ms
    );
    let status: Value = serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    let pz_status = status["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "pazarsync")
        .unwrap()
        .clone();
    assert_eq!(pz_status["pending_pushes"], 1, "{pz_status}");

    // A restart mid-outage: the ledger still says since when, so the
    // episode neither fires again nor resolves. (Nothing is to happen
    // here: three evaluation periods of the new process are watched.)
    stop(daemon).await;
    let daemon = start(&env, "outage2.log");
    wait_for(Duration::from_secs(30), "the new daemon", || async {
        pazarsync_metric(&env, "stoksync_pending_pushes")
            .await
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(3 * PERIOD_MS as u64)).await;
    let p = receiver.payloads();
    assert_eq!(
        (count(&p, "fired", key), count(&p, "resolved", key)),
        (1, 0),
        "{p:#?}"
    );

    // PazarSync answers again: the new value is confirmed, then resolved.
    pz.clear_faults();
    let confirmed = format!(
        "SELECT confirmed_at_ms FROM listings WHERE provider = 'pazarsync' AND listing_id = '{}' AND confirmed_qty = 4",
        pz_listing.listing_id
    );
    wait_for(Duration::from_secs(60), "PazarSync confirms 4", || async {
        ledger_i64(&env, &confirmed).await.is_some()
    })
    .await;
    let confirmed_ms = ledger_i64(&env, &confirmed).await.unwrap();
    assert_eq!(pz.stock(&pz_listing), Some(4));
    wait_for(
        Duration::from_secs(10),
        "the PazarSync backlog alert to resolve",
        || async { receiver.received("resolved", key).is_some() },
    )
    .await;
    let (resolved, got_ms) = receiver.received("resolved", key).unwrap();
    let at_ms = stamp_ms(&resolved["at"]);
    let after = at_ms - confirmed_ms;
    assert!(
        (0..=PERIOD_MS + JITTER_MS).contains(&after),
        "resolved {after} ms after PazarSync confirmed: {resolved}"
    );
    assert!(got_ms - at_ms <= DELIVERY_MS);
    eprintln!(
        "backlog alert: fired {late} ms after the sale (backlog_after {THRESHOLD_MS} ms), resolved {after} ms after the confirmation"
    );
    stop(daemon).await;
    let p = receiver.payloads();
    assert_eq!(
        (count(&p, "fired", key), count(&p, "resolved", key)),
        (1, 1),
        "{p:#?}"
    );
    assert_eq!(
        count(&p, "fired", "backlog/bazaardan/"),
        0,
        "BaZaaRDan took its push at once: {p:#?}"
    );
    no_secret_in(&p);
}
