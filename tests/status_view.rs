//! What the seller reads in `status` and on the status page, with the real
//! binary against the four sandbox providers: times in Istanbul time with
//! the zone named, and an order by the number the marketplace shows.

mod common;

use common::{describe, free_port, wait_for};
use std::path::Path;
use std::time::Duration;
use stoksync::domain::ProviderName;
use stoksync::sandbox::Fake;
use stoksync::sandbox::control::Sandbox;
use tokio::process::Command;

fn stoksync(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stoksync"));
    c.args(args)
        .env("STOKSYNC_CONFIG", dir.join("stoksync.toml"))
        .env("RUST_LOG", "stoksync=info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    c
}

async fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    common::output(
        stoksync(dir, args),
        &format!("stoksync {args:?}"),
        Duration::from_secs(120),
    )
    .await
}

async fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args).await;
    assert!(out.status.success(), "{args:?}: {}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_read_in_istanbul_and_orders_by_their_own_number() {
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // KALEM-1 is in the ledger; KALEM-2 is sold on PazarSync only, so an
    // order for it stays unlinked and is listed by its order number.
    sandbox.add_catalog(&[("KALEM-1".to_string(), 5)]);
    let unknown = sandbox.pazarsync.add_product("KALEM-2", 4);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let http = free_port();
    std::fs::write(
        d.join("stoksync.toml"),
        sandbox.config("ledger.db", &http.to_string(), "300ms"),
    )
    .unwrap();
    std::fs::write(d.join("stock.csv"), "sku,quantity\nKALEM-1,5\n").unwrap();
    ok(
        d,
        &["stock", "import", d.join("stock.csv").to_str().unwrap()],
    )
    .await;
    // The first poll sets where orders start counting; the order comes after.
    run(d, &["sync", "--once"]).await;
    let order = sandbox
        .pazarsync
        .place_order(&unknown, 1)
        .expect("an order");
    run(d, &["sync", "--once"]).await;

    let json: serde_json::Value =
        serde_json::from_str(&ok(d, &["status", "--json"]).await).unwrap();
    let line = json["unlinked_order_items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["provider"] == ProviderName::Pazarsync.as_str())
        .unwrap_or_else(|| panic!("the PazarSync line is unlinked: {json:#}"));
    let number = line["order_ref"].as_str().unwrap();
    let digits: String = order.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(number, format!("ORD{digits}"), "order {order}");
    for p in json["providers"].as_array().unwrap() {
        let poll = p["last_successful_poll"].as_str().unwrap();
        let t = chrono::DateTime::parse_from_rfc3339(poll).unwrap();
        assert!(poll.ends_with("+03:00"), "{poll}");
        let age = chrono::Utc::now().signed_duration_since(t);
        assert!(age.num_seconds().abs() < 600, "{poll} is the poll's moment");
    }

    let text = ok(d, &["status"]).await;
    assert!(
        text.contains(&format!("(order {number})")) && !text.contains("ORDord_"),
        "{text}"
    );
    let polls: Vec<&str> = text.lines().filter(|l| l.contains("last poll:")).collect();
    assert_eq!(polls.len(), 4, "{text}");
    for l in polls {
        assert!(
            l.matches("+03:00 (Europe/Istanbul)").count() == 2 || l.contains("never"),
            "{l}"
        );
    }
    assert!(
        text.contains("resets ") && !text.contains("T21:00:00"),
        "{text}"
    );

    let mut daemon = common::Daemon::spawn(stoksync(d, &["run"]), "stoksync run");
    let url = format!("http://{http}/");
    let mut page = String::new();
    wait_for(Duration::from_secs(60), "the status page", || {
        let url = url.clone();
        async move {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    if let Ok(r) = reqwest::get(&url).await {
        page = r.text().await.unwrap_or_default();
    }
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;
    assert!(page.contains(&format!("<td>{number}</td>")), "{page}");
    assert!(!page.contains("ORDord_"), "{page}");
    assert!(page.contains("+03:00 (Europe/Istanbul)"), "{page}");
    assert!(!page.contains(" UTC<"), "no time left in UTC: {page}");
}
