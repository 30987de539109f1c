//! The daemon as a service, with the real binary: the HTTP endpoint
//! (health, readiness, metrics, ERP API, status page), one instance per
//! database, systemd's notify protocol, and the token rule beyond loopback.

mod common;

use common::{Daemon, Env, Knobs, describe, wait_for};
use std::time::Duration;

async fn seeded() -> Env {
    let env = Env::new(Knobs::default()).await;
    env.fake.add_listing(401, None, "KALEM-1", 0);
    env.fake.add_listing(402, None, "DEFTER-1", 0);
    let s = env.write("stock.csv", "sku,quantity\nKALEM-1,12\nDEFTER-1,4\n");
    let m = env.write(
        "map.csv",
        "sku,provider,listing_id,variant_id\nKALEM-1,bazaardan,401,\nDEFTER-1,bazaardan,402,\n",
    );
    env.ok(&["stock", "import", s.to_str().unwrap()]).await;
    env.ok(&["mapping", "import", m.to_str().unwrap()]).await;
    env
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = client().get(url).send().await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn ready(env: &Env) {
    let url = format!("http://{}/readyz", env.http);
    wait_for(Duration::from_secs(30), "/readyz to answer 200", || {
        let url = url.clone();
        async move { get(&url).await.is_some_and(|(c, _)| c == 200) }
    })
    .await;
}

async fn stop(mut daemon: Daemon) {
    let pid = daemon.id().unwrap().to_string();
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
        .await
        .expect("the daemon stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_the_erp_api() {
    let env = seeded().await;
    let daemon = env.spawn(&["run"]);
    ready(&env).await;
    let base = format!("http://{}", env.http);

    let (code, body) = get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["alive"], true);
    let (_, body) = get(&format!("{base}/readyz")).await.unwrap();
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["database"], "ok");
    assert_eq!(r["providers"][0]["provider"], "bazaardan");
    assert_eq!(r["providers"][0]["polled"], true);

    // The ERP sets a count; a retried adjust with the same key applies once.
    let c = client();
    let r = c
        .put(format!("{base}/v1/stock/KALEM-1"))
        .json(&serde_json::json!({"quantity": 20, "reason": "sayım"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["quantity"], 20);
    assert_eq!(v["applied"], true);
    for attempt in 0..2 {
        let r = c
            .post(format!("{base}/v1/stock/KALEM-1/adjust"))
            .header("Idempotency-Key", "erp-fis-991")
            .json(&serde_json::json!({"delta": -3, "reason": "fire"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["quantity"], 17, "attempt {attempt}");
        assert_eq!(v["applied"], attempt == 0, "attempt {attempt}");
        assert_eq!(v["delta"], -3, "attempt {attempt}: what the key moved");
    }
    let (code, body) = get(&format!("{base}/v1/stock/KALEM-1")).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["quantity"],
        17
    );
    let (code, body) = get(&format!("{base}/v1/stock")).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Bad input: named, refused, nothing lost.
    let (code, body) = get(&format!("{base}/v1/stock/YOK-1")).await.unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("YOK-1"), "{body}");
    let r = c
        .put(format!("{base}/v1/stock/KALEM-1"))
        .json(&serde_json::json!({"quantity": -1, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("negative"));
    let r = c
        .put(format!("{base}/v1/stock/KALEM-1"))
        .body("{\"quantity\": \"many\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(format!("{base}/v1/stock/KALEM-1/adjust"))
        .json(&serde_json::json!({"delta": 1, "reason": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(env.quantity("KALEM-1").await, Some(17));

    // The change reaches the marketplace without another command.
    wait_for(
        Duration::from_secs(30),
        "the ERP change to be pushed",
        || async { env.fake.listing_stock(401, None) == Some(17) },
    )
    .await;

    let (code, text) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(code, 200);
    for needle in [
        "# TYPE stoksync_requests_total counter",
        "stoksync_requests_total{provider=\"bazaardan\",outcome=\"ok\"}",
        "stoksync_pending_pushes{provider=\"bazaardan\"}",
        "stoksync_pending_push_age_seconds{provider=\"bazaardan\"}",
        "stoksync_limiter_waits_total{provider=\"bazaardan\"}",
        "stoksync_rate_limited_answers_total{provider=\"bazaardan\"} 0",
        "stoksync_token_refreshes_total{provider=\"bazaardan\"} 0",
        "stoksync_ledger_movements{source=\"erp\",kind=\"erp_adjust\"} 1",
        "stoksync_unlinked_order_items 0",
        "stoksync_oversold_skus 0",
        "stoksync_loop_polled{provider=\"bazaardan\"} 1",
    ] {
        assert!(text.contains(needle), "/metrics lacks `{needle}`:\n{text}");
    }
    let ok: u64 = text
        .lines()
        .find(|l| l.starts_with("stoksync_requests_total{provider=\"bazaardan\",outcome=\"ok\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(ok >= 3, "polls and pushes counted: {ok}");

    let (code, page) = get(&format!("{base}/")).await.unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<table id=\"providers\">"), "{page}");
    assert!(page.contains("bazaardan"));
    assert!(page.contains("fire"), "recent movements show the reason");
    assert!(!page.contains(common::SECRET), "no secret on the page");
    assert!(!text.contains(common::SECRET), "no secret in metrics");

    // A second daemon on the same database refuses, naming the first.
    let second = env.run(&["run"]).await;
    assert_eq!(second.status.code(), Some(1), "{}", describe(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already syncing"), "{err}");
    assert!(err.contains("pid "), "{err}");
    // So does a `sync --once` beside it; `status` works.
    let once = env.run(&["sync", "--once"]).await;
    assert_eq!(once.status.code(), Some(1), "{}", describe(&once));
    env.ok(&["status"]).await;

    stop(daemon).await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_and_watchdog_pings() {
    use std::os::unix::net::UnixDatagram;
    let env = seeded().await;
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = env.command(&["run"]);
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000");
    let daemon = Daemon::spawn(cmd, "stoksync run");
    let got = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while !(seen.iter().any(|m: &String| m.contains("READY=1"))
            && seen.iter().filter(|m| m.as_str() == "WATCHDOG=1").count() >= 2)
        {
            match sock.recv(&mut buf) {
                Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).to_string()),
                Err(e) => panic!("no notification within 30 s ({e}); got {seen:?}"),
            }
        }
        (sock, seen)
    })
    .await
    .unwrap();
    let (sock, seen) = got;
    let ready = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    let first_ping = seen.iter().position(|m| m == "WATCHDOG=1").unwrap();
    assert!(ready < first_ping, "READY comes first: {seen:?}");
    stop(daemon).await;
    let mut buf = [0u8; 512];
    let mut rest = Vec::new();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(
        rest.iter().any(|m| m.contains("STOPPING=1")),
        "STOPPING on SIGTERM: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_api_needs_the_token() {
    let env = seeded().await;
    let port = common::free_port().port();
    let base_config = std::fs::read_to_string(&env.config).unwrap();
    let open = base_config.replace(
        &format!("listen = \"{}\"", env.http),
        &format!("listen = \"0.0.0.0:{port}\""),
    );
    assert_ne!(open, base_config);
    std::fs::write(&env.config, &open).unwrap();
    let out = env.run(&["run"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.token"), "{err}");

    // With the token from a systemd credential, the API answers only to it.
    let creds = env.path("creds");
    std::fs::create_dir_all(&creds).unwrap();
    let token = "tok-0123456789-abcdef";
    std::fs::write(creds.join("http_token"), format!("{token}\n")).unwrap();
    let with_token = open.replace(
        &format!("listen = \"0.0.0.0:{port}\""),
        &format!("listen = \"0.0.0.0:{port}\"\ntoken = \"${{cred:http_token}}\""),
    );
    std::fs::write(&env.config, &with_token).unwrap();
    let mut cmd = env.command(&["run"]);
    cmd.env("CREDENTIALS_DIRECTORY", &creds);
    let daemon = Daemon::spawn(cmd, "stoksync run");
    let url = format!("http://127.0.0.1:{port}/v1/stock");
    wait_for(Duration::from_secs(30), "the API to answer", || {
        let url = url.clone();
        async move { get(&url).await.is_some() }
    })
    .await;
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = client()
        .get(&url)
        .bearer_auth("tok-0123456789-abcdeX")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client().get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (code, _) = get(&format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(code, 200, "health stays open for probes");
    stop(daemon).await;
}

/// A stop is not a failure: SIGTERM at any moment of the daemon's work
/// (mid-poll, mid-push, idle) ends in exit 0, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_in_exit_0_every_time() {
    let env = seeded().await;
    let mut rng = fastrand::Rng::with_seed(3);
    for cycle in 0..12 {
        let before = env.fake.counters().requests;
        let daemon = env.spawn(&["run"]);
        wait_for(Duration::from_secs(30), "the daemon to poll", || async {
            env.fake.counters().requests > before
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        let pid = daemon.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(60), daemon.wait_with_output())
            .await
            .expect("the daemon stops after SIGTERM")
            .unwrap();
        assert!(
            out.status.success(),
            "cycle {cycle}: SIGTERM must end in exit 0: {}",
            describe(&out)
        );
    }
}
