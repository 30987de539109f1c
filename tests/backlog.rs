//! The push backlog as `status`, `/metrics` and the status page show it,
//! with the real binary against the BaZaaRDan fake: how many listings wait,
//! how fast they are pushed (from the ledger, so `status` beside or without
//! the daemon reads the same), and when they will be through.

mod common;

use common::{Env, Knobs, wait_for};
use std::time::Duration;
use stoksync::engine::status::human_seconds;

async fn get(url: &str) -> Option<(u16, String)> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = c.get(url).send().await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn status_json(env: &Env) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "bazaardan")
        .expect("bazaardan in status")
        .clone()
}

fn metric(text: &str, name: &str) -> String {
    let prefix = format!("{name}{{provider=\"bazaardan\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("/metrics lacks {prefix}:\n{text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_show_backlog_pace_and_drain_time() {
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

    // Before any push: a backlog of two, no pace, no known end.
    let p = status_json(&env).await;
    assert_eq!(p["pending_pushes"], 2, "{p}");
    assert_eq!(p["push_pace_per_minute"], 0.0, "{p}");
    assert!(p["drain_eta_seconds"].is_null(), "{p}");

    // One run pushes both; then the stock changes with no daemon running.
    env.ok(&["sync", "--once"]).await;
    assert_eq!(env.fake.listing_stock(401, None), Some(12));
    assert_eq!(env.fake.listing_stock(402, None), Some(4));
    let s2 = env.write("stock2.csv", "sku,quantity\nKALEM-1,5\nDEFTER-1,6\n");
    env.ok(&["stock", "import", s2.to_str().unwrap()]).await;

    let p = status_json(&env).await;
    assert_eq!(p["pending_pushes"], 2, "{p}");
    let pace = p["push_pace_per_minute"].as_f64().unwrap();
    // Two pushes in the last 5 minutes, read over at least a minute.
    assert!(pace > 0.0 && pace <= 2.0, "{p}");
    let eta = p["drain_eta_seconds"].as_u64().expect("an ETA with a pace");
    let expected = 2.0 * 60.0 / pace;
    assert!(
        (eta as f64 - expected).abs() <= 2.0,
        "2 listings at {pace}/min: {eta} s, not ~{expected}"
    );
    let text = env.ok(&["status"]).await;
    let line = text
        .lines()
        .find(|l| l.contains("push pace:"))
        .unwrap_or_else(|| panic!("no pace line:\n{text}"));
    assert!(
        line.contains(&format!("push pace: {pace:.2} listings/min (last 5 min)")),
        "text and JSON agree: {line}\n{p}"
    );
    assert!(
        line.contains(&format!(
            "backlog of 2 drains in: about {}",
            human_seconds(eta)
        )),
        "{line}\n{p}"
    );
    assert!(!text.contains(common::SECRET), "no secret in status");

    // The same pushes 10 minutes old: out of the window, so the backlog's
    // end is unknown.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.database().display()))
        .await
        .unwrap();
    let aged = sqlx::query("UPDATE push_log SET sent_at_ms = sent_at_ms - 600000")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(aged.rows_affected(), 2, "one log row per push");
    pool.close().await;
    let p = status_json(&env).await;
    assert_eq!(p["push_pace_per_minute"], 0.0, "{p}");
    assert!(p["drain_eta_seconds"].is_null(), "{p}");
    let text = env.ok(&["status"]).await;
    assert!(
        text.contains(
            "push pace: 0.00 listings/min (last 5 min)   backlog of 2 drains in: unknown"
        ),
        "{text}"
    );

    // The daemon drains it: metrics, the page and `status` beside it agree.
    let mut daemon = env.spawn(&["run"]);
    wait_for(
        Duration::from_secs(30),
        "the new stock to be pushed",
        || async {
            env.fake.listing_stock(401, None) == Some(5)
                && env.fake.listing_stock(402, None) == Some(6)
        },
    )
    .await;
    let base = format!("http://{}", env.http);
    wait_for(
        Duration::from_secs(30),
        "/metrics to show no backlog",
        || {
            let url = format!("{base}/metrics");
            async move {
                get(&url).await.is_some_and(|(c, t)| {
                    c == 200 && t.contains("stoksync_pending_pushes{provider=\"bazaardan\"} 0\n")
                })
            }
        },
    )
    .await;
    let (code, text) = get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(code, 200, "{text}");
    for needle in [
        "# TYPE stoksync_push_pace_per_minute gauge",
        "# HELP stoksync_push_pace_per_minute ",
        "# TYPE stoksync_backlog_drain_eta_seconds gauge",
        "# HELP stoksync_backlog_drain_eta_seconds ",
    ] {
        assert!(text.contains(needle), "/metrics lacks `{needle}`:\n{text}");
    }
    let live: f64 = metric(&text, "stoksync_push_pace_per_minute")
        .parse()
        .unwrap();
    assert!(
        live > 0.0 && live <= 2.0,
        "two pushes lately: {live}\n{text}"
    );
    assert_eq!(metric(&text, "stoksync_backlog_drain_eta_seconds"), "0");
    assert!(!text.contains(common::SECRET), "no secret in metrics");

    let p = status_json(&env).await;
    assert_eq!(p["pending_pushes"], 0, "{p}");
    assert_eq!(p["drain_eta_seconds"], 0, "{p}");
    assert_eq!(
        p["push_pace_per_minute"].as_f64().unwrap(),
        live,
        "status reads the pace /metrics shows"
    );
    let (code, page) = get(&format!("{base}/")).await.unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<th>backlog drains in</th>"), "{page}");
    assert!(page.contains("<td>no backlog</td>"), "{page}");
    assert!(
        page.contains(&format!("<td class=\"n\">{live:.2}</td>")),
        "{page}"
    );
    assert!(!page.contains(common::SECRET), "no secret on the page");

    let pid = daemon.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
        .await
        .expect("the daemon stops after SIGTERM")
        .unwrap();
    assert!(out.success(), "{out:?}");
}
