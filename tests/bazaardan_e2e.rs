//! End to end with the real binary against the BaZaaRDan fake: stock and
//! mapping import, orders and cancellations, faults, `sync --once`, status,
//! the daemon and its signals, and the exit codes.

mod common;

use common::{Env, Knobs, SECRET, describe, wait_for};
use std::time::Duration;
use stoksync::sandbox::Fault;

const STOCK_CSV: &str = "sku,quantity\nSKU-001,10\nSKU-002,5\nSKU-003,7\n";
const MAPPING_CSV: &str =
    "sku,provider,listing_id,variant_id\nSKU-001,bazaardan,356,778\nSKU-002,bazaardan,357,\n";

async fn seeded(knobs: Knobs) -> Env {
    let env = Env::new(knobs).await;
    env.fake.add_listing(356, Some(778), "SKU-001", 0);
    env.fake.add_listing(357, None, "SKU-002", 5);
    env.fake.add_listing(358, None, "SKU-003", 7);
    let stock = env.write("stock.csv", STOCK_CSV);
    let map = env.write("listings.csv", MAPPING_CSV);
    env.ok(&["stock", "import", stock.to_str().unwrap()]).await;
    env.ok(&["mapping", "import", map.to_str().unwrap()]).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_cancellations_reach_the_ledger_once_and_listings_follow() {
    let env = seeded(Knobs {
        safety_stock: 1,
        ..Knobs::default()
    })
    .await;
    let a = env.fake.place_order(356, Some(778), 2);
    let _b = env.fake.place_order(357, None, 1);
    let c = env.fake.place_order(357, None, 1);
    env.fake.set_status(c, "cancelled");
    let _d = env.fake.place_order(358, None, 3); // SKU-003: not mapped, learned from the row
    let e = env.fake.place_unlisted_order(400, "UNKNOWN-SKU", 1);
    // Every fault the retry loop must ride out.
    env.fake.inject(Fault::ServerError, 1, Some("orders.php"));
    env.fake
        .inject(Fault::Malformed, 1, Some("order_detail.php"));
    env.fake.inject(
        Fault::Hang(Duration::from_secs(4)),
        1,
        Some("order_detail.php"),
    );
    env.fake.inject(
        Fault::RateLimited { retry_after_s: 1 },
        1,
        Some("stock_update.php"),
    );

    let out = env.run(&["sync", "--once"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 order line(s) not linked"));

    assert_eq!(env.quantity("SKU-001").await, Some(8));
    assert_eq!(
        env.quantity("SKU-002").await,
        Some(4),
        "the cancelled line gave its unit back"
    );
    assert_eq!(env.quantity("SKU-003").await, Some(4));
    // Each listing shows ledger - safety stock.
    assert_eq!(env.fake.listing_stock(356, Some(778)), Some(7));
    assert_eq!(env.fake.listing_stock(357, None), Some(3));
    assert_eq!(env.fake.listing_stock(358, None), Some(3));

    let history: serde_json::Value =
        serde_json::from_str(&env.ok(&["stock", "history", "SKU-001", "--json"]).await).unwrap();
    let keys: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[1], format!("bazaardan/item/{a}/hold"));
    assert_eq!(history[0]["kind"], "erp_set");
    assert_eq!(
        (
            history[0]["quantity_before"].as_i64(),
            history[0]["quantity_after"].as_i64()
        ),
        (Some(0), Some(10))
    );

    // A second cycle finds nothing to push.
    let pushes_before = env
        .fake
        .counters()
        .by_endpoint
        .get("stock_update.php")
        .copied();
    env.ok(&["sync", "--once"]).await;
    assert_eq!(
        env.fake
            .counters()
            .by_endpoint
            .get("stock_update.php")
            .copied(),
        pushes_before
    );
    assert_eq!(
        env.quantity("SKU-001").await,
        Some(8),
        "polling again changes nothing"
    );

    let counters = env.fake.counters();
    assert_eq!(
        (
            counters.bad_signatures,
            counters.expired_timestamps,
            counters.limit_violations
        ),
        (0, 0, 0)
    );

    let maps: serde_json::Value =
        serde_json::from_str(&env.ok(&["mapping", "list", "--json"]).await).unwrap();
    let learned = maps["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["sku"] == "SKU-003")
        .unwrap();
    assert_eq!(
        (learned["listing_id"].as_str(), learned["origin"].as_str()),
        (Some("358"), Some("learned"))
    );

    // The unknown SKU's line is kept and shown ...
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    let unlinked = status["unlinked_order_items"].as_array().unwrap();
    assert_eq!(unlinked.len(), 1);
    assert_eq!(unlinked[0]["item_key"], e.to_string());
    assert_eq!(unlinked[0]["sku_hint"], "UNKNOWN-SKU");
    assert!(status["providers"][0]["last_successful_poll"].is_string());
    assert_eq!(status["providers"][0]["pending_pushes"], 0);
    assert!(status["providers"][0]["requests_today"].as_i64().unwrap() >= 8);
    // ... and applied when the ERP brings that SKU.
    let more = env.write("more.csv", "sku,quantity\nUNKNOWN-SKU,5\n");
    env.ok(&["stock", "import", more.to_str().unwrap()]).await;
    assert_eq!(env.quantity("UNKNOWN-SKU").await, Some(4));
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    assert!(
        status["unlinked_order_items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_in_the_same_second_as_the_order_is_not_missed() {
    // Provider timestamps have one-second resolution: a line placed and
    // cancelled within one second keeps its `updated_at`.
    let env = seeded(Knobs::default()).await;
    let item = env.fake.place_order(357, None, 2);
    env.ok(&["sync", "--once"]).await;
    assert_eq!(env.quantity("SKU-002").await, Some(3));
    env.fake.set_status_same_second(item, "cancelled");
    env.ok(&["sync", "--once"]).await;
    assert_eq!(env.quantity("SKU-002").await, Some(5));
    assert_eq!(env.fake.listing_stock(357, None), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_set_and_adjust_are_pushed_and_oversold_is_reported() {
    let env = seeded(Knobs::default()).await;
    env.ok(&["sync", "--once"]).await;
    env.ok(&["stock", "set", "SKU-002", "2", "--reason", "recount"])
        .await;
    env.ok(&[
        "stock",
        "adjust",
        "SKU-001",
        "-12",
        "--reason",
        "water damage",
    ])
    .await;
    env.ok(&["sync", "--once"]).await;
    assert_eq!(env.fake.listing_stock(357, None), Some(2));
    assert_eq!(
        env.fake.listing_stock(356, Some(778)),
        Some(0),
        "an oversold SKU shows 0"
    );
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["oversold"][0]["sku"], "SKU-001");
    assert_eq!(status["oversold"][0]["quantity"], -2);
    let bad = env
        .run(&["stock", "set", "SKU-002", "-1", "--reason", "x"])
        .await;
    assert_eq!(bad.status.code(), Some(1), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("negative"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_listing_is_reported_and_not_hammered() {
    let env = seeded(Knobs::default()).await;
    env.fake.add_foreign_listing(999, None, "SKU-003");
    let map = env.write(
        "foreign.csv",
        "sku,provider,listing_id,variant_id\nSKU-003,bazaardan,999,\n",
    );
    env.ok(&["mapping", "import", map.to_str().unwrap()]).await;
    let out = env.run(&["sync", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 refused in total"),
        "{}",
        describe(&out)
    );
    let pushes = env.fake.counters().by_endpoint["stock_update.php"];
    env.run(&["sync", "--once"]).await;
    assert_eq!(
        env.fake.counters().by_endpoint["stock_update.php"],
        pushes,
        "the same refused value is not re-sent"
    );
    let maps = env.ok(&["mapping", "list"]).await;
    assert!(maps.contains("FORBIDDEN_SCOPE"), "{maps}");
    // The other listings converged all the same.
    assert_eq!(env.fake.listing_stock(356, Some(778)), Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_clearly_without_leaking_the_secret() {
    let env = seeded(Knobs::default()).await;
    env.write_config(&Knobs {
        secret: "wrong-secret-value".into(),
        ..Knobs::default()
    });
    let out = env.run(&["sync", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = describe(&out);
    assert!(
        all.contains("credentials refused") && all.contains("INVALID_SIGNATURE"),
        "{all}"
    );
    assert!(!all.contains("wrong-secret-value"), "secret leaked: {all}");
    let check = env.run(&["check", "--online"]).await;
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    let status = env.ok(&["status"]).await;
    assert!(
        status.contains("INVALID_SIGNATURE") && !status.contains("wrong-secret-value"),
        "{status}"
    );

    env.write_config(&Knobs::default());
    let check = env.ok(&["check", "--online"]).await;
    assert!(check.contains("bazaardan: credentials ok"), "{check}");
    assert!(!check.contains(SECRET));
}

/// A cycle needing half again the requests the limit allows spreads them
/// over the window instead of bursting, and the provider sees no
/// violation. The window is shrunk to 2 s here (the engine and the fake
/// both), so the test does not wait out minutes; `tests/crash.rs` checks
/// the real 60 s window with the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_never_exceeds_its_per_minute_limit() {
    use stoksync::sandbox::bazaardan::{FakeBazaardan, Options};
    const WINDOW: Duration = Duration::from_secs(2);
    let fake = FakeBazaardan::start(Options {
        requests_per_minute: Some(20),
        window: WINDOW,
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[ledger]\ndatabase = \"l.db\"\n[http]\nlisten = \"off\"\n[providers.bazaardan]\nbase_url = \"{}\"\nclient_id = \"sandbox-client\"\nclient_secret = \"sandbox-secret\"\nrequests_per_minute = 20\n",
        fake.base_url()
    );
    let mut config =
        stoksync::config::Config::parse(&text, &dir.path().join("s.toml"), &|_| None).unwrap();
    config.sync.timing.rate_window = WINDOW;
    let ledger = stoksync::ledger::Ledger::open(&config.database)
        .await
        .unwrap();
    let mut rows = Vec::new();
    let mut maps = Vec::new();
    for i in 0..30u64 {
        fake.add_listing(1000 + i, None, &format!("S{i}"), 0);
        rows.push((format!("S{i}"), 10 + i as i64));
        maps.push((
            format!("S{i}"),
            stoksync::domain::ListingRef {
                provider: stoksync::domain::ProviderName::Bazaardan,
                listing_id: (1000 + i).to_string(),
                variant_id: String::new(),
            },
        ));
    }
    ledger.import_stock(&rows, "b", "seed").await.unwrap();
    ledger.import_mappings(&maps).await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let providers = stoksync::providers::build_all(&config, &ledger, &cancel).unwrap();
    let engine = stoksync::engine::Engine::new(ledger.clone(), providers, config.sync.clone());
    let s = engine.sync_once(&cancel).await.unwrap();
    assert!(s.converged(), "{s:?}");
    let c = fake.counters();
    assert!(c.requests >= 31, "{c:?}");
    assert!(c.max_per_minute <= 20, "{c:?}");
    assert_eq!(c.limit_violations, 0, "{c:?}");
    assert_eq!(fake.listing_stock(1029, None), Some(39));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_orders_and_stops_cleanly_on_sigterm() {
    let env = seeded(Knobs::default()).await;
    let mut daemon = env.spawn(&["run"]);
    wait_for(Duration::from_secs(30), "the first push", || async {
        env.fake.listing_stock(356, Some(778)) == Some(10)
    })
    .await;
    let item = env.fake.place_order(357, None, 2);
    wait_for(
        Duration::from_secs(30),
        "the order to be applied and pushed",
        || async {
            // The fake lowered its own stock to 3; the ledger too, then the
            // push confirms 3 (a push of the pre-order value would show 5).
            env.fake.listing_stock(357, None) == Some(3)
        },
    )
    .await;
    env.fake.set_status(item, "cancelled");
    wait_for(
        Duration::from_secs(30),
        "the cancellation to come back",
        || async { env.fake.listing_stock(357, None) == Some(5) },
    )
    .await;
    let pid = daemon.id().unwrap().to_string();
    // The shell's builtin kill: no dependency on a kill binary being installed.
    let kill = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(60), daemon.wait())
        .await
        .expect("daemon exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(env.quantity("SKU-002").await, Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_exit_2_naming_key_and_line() {
    let env = Env::new(Knobs::default()).await;
    let cases = [
        (
            "[ledger]\ndatabase = \"x.db\"\n[sync]\npoll_interval = \"soon\"\n",
            "sync.poll_interval",
            ":4:",
        ),
        ("[ledger]\ndatabase = \"x.db\"\nextra = 1\n", "extra", ":3:"),
        (
            "[ledger]\ndatabase = \"x.db\"\n[providers.bazaardan]\nbase_url = \"https://x\"\nclient_id = \"a\"\nclient_secret = \"${STOKSYNC_TEST_UNSET}\"\n",
            "STOKSYNC_TEST_UNSET",
            ":6:",
        ),
    ];
    for (text, key, line) in cases {
        std::fs::write(&env.config, text).unwrap();
        let out = env.run(&["check"]).await;
        assert_eq!(out.status.code(), Some(2), "{text}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key) && err.contains(line), "{text}: {err}");
    }
    std::fs::remove_file(&env.config).unwrap();
    let out = env.run(&["status"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_csv_rows_are_reported_by_line_and_change_nothing() {
    let env = Env::new(Knobs::default()).await;
    let bad = env.write("bad.csv", "sku,quantity\nA,1\nB,-4\nC,x\n");
    let out = env.run(&["stock", "import", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("line 4"), "{err}");
    assert_eq!(env.stock().await, serde_json::json!([]));

    let bad_map = env.write(
        "bad-map.csv",
        "sku,provider,listing_id,variant_id\nA,bazaardan,1,\nB,ebay,2,\n",
    );
    let out = env
        .run(&["mapping", "import", bad_map.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 3"),
        "{}",
        describe(&out)
    );
    let maps: serde_json::Value =
        serde_json::from_str(&env.ok(&["mapping", "list", "--json"]).await).unwrap();
    assert_eq!(maps["links"], serde_json::json!([]));
}
