//! `/metrics` as a scraper reads it: the daemon against all four sandbox
//! providers, its page parsed by a strict Prometheus text-format parser
//! (a family split in two is an error there, as it is for Prometheus), and
//! every family it serves named in the README.

mod common;

use common::{describe, free_port, wait_for};
use std::collections::BTreeSet;
use std::time::Duration;
use stoksync::sandbox::control::Sandbox;
use tokio::process::Command;

fn stoksync(dir: &std::path::Path, args: &[&str]) -> Command {
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

async fn ok(dir: &std::path::Path, args: &[&str]) {
    let out = common::output(
        stoksync(dir, args),
        &format!("stoksync {args:?}"),
        Duration::from_secs(120),
    )
    .await;
    assert!(out.status.success(), "{args:?}: {}", describe(&out));
}

async fn get(url: &str) -> Option<String> {
    let r = reqwest::get(url).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// The family names a page declares, in order, each as often as declared.
fn declared(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_parser_refuses_a_family_split_in_two() {
    // What /metrics served before its families were grouped.
    let split = "# HELP a_total A.\n# TYPE a_total counter\n# HELP b B.\n# TYPE b gauge\n\
                 a_total{provider=\"x\"} 1\nb{provider=\"x\"} 1\na_total{provider=\"y\"} 2\n";
    assert!(openmetrics_parser::prometheus::parse_prometheus(split).is_err());
    let grouped = "# HELP a_total A.\n# TYPE a_total counter\na_total{provider=\"x\"} 1\n\
                   a_total{provider=\"y\"} 2\n# HELP b B.\n# TYPE b gauge\nb{provider=\"x\"} +Inf\n";
    let parsed = openmetrics_parser::prometheus::parse_prometheus(grouped).unwrap();
    assert_eq!(parsed.families.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_served_once_grouped_and_documented() {
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = (1..=3).map(|i| (format!("KALEM-{i}"), 5)).collect();
    let links = sandbox.add_catalog(&rows);
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    std::fs::write(
        dir.path().join("stoksync.toml"),
        sandbox.config("ledger.db", &http.to_string(), "300ms"),
    )
    .unwrap();
    let mut stock = String::from("sku,quantity\n");
    for (sku, q) in &rows {
        stock.push_str(&format!("{sku},{}\n", q + 2));
    }
    std::fs::write(dir.path().join("stock.csv"), stock).unwrap();
    let mut map = String::from("sku,provider,listing_id,variant_id\n");
    for (sku, l) in &links {
        map.push_str(&format!(
            "{sku},{},{},{}\n",
            l.provider, l.listing_id, l.variant_id
        ));
    }
    std::fs::write(dir.path().join("map.csv"), map).unwrap();
    let d = dir.path();
    ok(
        d,
        &["stock", "import", d.join("stock.csv").to_str().unwrap()],
    )
    .await;
    ok(
        d,
        &["mapping", "import", d.join("map.csv").to_str().unwrap()],
    )
    .await;

    let mut daemon = common::Daemon::spawn(stoksync(d, &["run"]), "stoksync run");
    let url = format!("http://{http}/metrics");
    // Every loop polled once and something pushed, so every family has
    // samples from every provider.
    wait_for(Duration::from_secs(90), "all four loops polled", || {
        let url = url.clone();
        async move {
            get(&url).await.is_some_and(|p| {
                p.lines()
                    .filter(|l| l.starts_with("stoksync_loop_polled{") && l.ends_with(" 1"))
                    .count()
                    == 4
            })
        }
    })
    .await;
    let page = get(&url).await.expect("the page once more");
    daemon.start_kill().unwrap();
    let _ = daemon.wait().await;

    let parsed = openmetrics_parser::prometheus::parse_prometheus(&page)
        .unwrap_or_else(|e| panic!("a scraper refuses the page: {e:?}\n{page}"));
    let names = declared(&page);
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(
        names.len(),
        unique.len(),
        "a family declared twice: {names:?}"
    );
    assert_eq!(
        parsed.families.keys().collect::<BTreeSet<_>>(),
        unique,
        "every sample belongs to a declared family"
    );
    // Grouped: once a family's lines end, its name never comes back.
    let mut done = BTreeSet::new();
    let mut current = String::new();
    for line in page.lines() {
        let name = match line.strip_prefix("# ") {
            Some(meta) => meta.split_whitespace().nth(1).unwrap_or_default(),
            None => line.split(['{', ' ']).next().unwrap_or_default(),
        };
        if name != current {
            assert!(done.insert(current.clone()), "{current} split in two");
            assert!(!done.contains(name), "{name} comes back later:\n{page}");
            current = name.to_string();
        }
    }
    for family in [
        "stoksync_requests_total",
        "stoksync_order_lines_seen_total",
        "stoksync_quota_used_today",
        "stoksync_pushes_total",
    ] {
        assert!(unique.contains(&family.to_string()), "{family} missing");
    }

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `GET /metrics`"))
        .expect("README has a /metrics row");
    for name in &unique {
        assert!(
            row.contains(&format!("`{name}")),
            "{name} is served but not in README's /metrics row"
        );
    }
}
