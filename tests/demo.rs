//! The newcomer's first command and the sandbox, with the real binary.

mod common;

use common::describe;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_converges_and_proves_it() {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoksync"));
    c.args(["demo", "--duration", "4s", "--skus", "6"])
        .env_remove("STOKSYNC_CONFIG")
        .env_remove("RUST_LOG");
    let out = common::output(c, "stoksync demo", Duration::from_secs(300)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout.contains("first full sync done"), "{stdout}");
    assert!(
        stdout.contains("all 24 listings on 4 providers show the ledger"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("DEMO-")).collect();
    assert_eq!(rows.len(), 6, "{stdout}");
    assert!(rows.iter().all(|r| r.ends_with('✓')), "{stdout}");
    assert!(stdout.contains("limit violations 0"), "{stdout}");
    assert!(!stdout.contains("limit violations 1"), "{stdout}");
    // Not a terminal: no cursor movement in the output.
    assert!(!stdout.contains('\x1b'), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_serves_four_fakes_and_a_control_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("catalog.csv"),
        "sku,quantity\nA-1,5\nB-2,0\n",
    )
    .unwrap();
    let config = dir.path().join("sandbox.toml");
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoksync"));
    c.args(["sandbox", "--listen-base", "127.0.0.1:0", "--catalog"])
        .arg(dir.path().join("catalog.csv"))
        .args(["--faults", "eticaret:server-error:2"])
        .arg("--write-config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let control = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if let Some(rest) = l.strip_prefix("stoksync sandbox: control API on ") {
                return rest.trim_end_matches('/').to_string();
            }
        }
        panic!("the sandbox ended without printing its control API");
    })
    .await
    .expect("the sandbox starts");
    let http = reqwest::Client::new();
    let read_state = || async {
        http.get(format!("{control}/state"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let state = read_state().await;
    let providers = state["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 4);
    for p in providers {
        assert_eq!(p["listings"].as_array().unwrap().len(), 2, "{p}");
    }
    let pz = providers
        .iter()
        .find(|p| p["provider"] == "pazarsync")
        .unwrap();
    let listing = pz["listings"][0]["listing"]["listing_id"].as_str().unwrap();
    let r = http
        .post(format!("{control}/orders"))
        .json(&serde_json::json!({"provider": "pazarsync", "listing_id": listing, "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{control}/orders"))
        .json(&serde_json::json!({"provider": "nowhere", "listing_id": "1", "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an unknown provider is refused");
    assert!(r.text().await.unwrap().contains("nowhere"));
    let state = read_state().await;
    let pz = state["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "pazarsync")
        .unwrap();
    assert_eq!(pz["listings"][0]["stock"], 3, "the order took 2 of 5");

    // The written config works: `check --online` against the sandbox, with
    // the queued v2 faults retried through.
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("[providers.pazarsync]"), "{written}");
    assert!(dir.path().join("sandbox-mapping.csv").exists());
    let mut check = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoksync"));
    check
        .args(["--config"])
        .arg(&config)
        .args(["check", "--online"]);
    let out = common::output(check, "stoksync check --online", Duration::from_secs(120)).await;
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("credentials ok").count(), 4, "{stdout}");
    let _ = child.kill().await;
}
