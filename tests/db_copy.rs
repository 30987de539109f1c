//! `stoksync db copy` with the real binary: a SQLite ledger with content
//! copied into a fresh PostgreSQL database is the same ledger there (stock,
//! history, links, link moves, request log, cursors), a second copy into
//! it is refused and changes nothing, and the PostgreSQL ledger copied back
//! into a new SQLite file is the same again. A URL carrying a password is
//! refused before anything is opened.

#[path = "common/log.rs"]
mod log;
#[path = "common/pg.rs"]
mod pg;

use std::path::Path;
use std::process::Output;
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::ledger::{Database, Ledger, LinkRow, StockChange};

/// Runs `stoksync ARGS`; fails the test if it logged a ledger database
/// error (tests/common/log.rs).
async fn stoksync(args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoksync"))
        .args(args)
        .env_remove("STOKSYNC_CONFIG")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    log::assert_no_ledger_errors(
        &format!("stoksync {args:?}"),
        &text,
        &log::Allowed::default(),
    );
    out
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn link(line: usize, sku: &str, provider: ProviderName, listing: &str) -> LinkRow {
    LinkRow {
        line,
        sku: sku.into(),
        listing: ListingRef {
            provider,
            listing_id: listing.into(),
            variant_id: String::new(),
        },
    }
}

/// A ledger with something in most tables, made through the library.
async fn fill(l: &Ledger) {
    for (sku, qty, key) in [
        ("ÇANTA,büyük", 7, "k1"),
        ("KALEM", 3, "k2"),
        ("ŞİŞE", 0, "k3"),
    ] {
        l.erp_movement(sku, StockChange::To(qty), "count", key)
            .await
            .unwrap();
    }
    l.erp_movement("ÇANTA,büyük", StockChange::By(-2), "sold", "k4")
        .await
        .unwrap();
    l.import_links(
        &[
            link(2, "ÇANTA,büyük", ProviderName::Bazaardan, "501"),
            link(3, "KALEM", ProviderName::Eticaret, "KOD,1"),
        ],
        false,
        "test",
    )
    .await
    .unwrap();
    // A link moved: journaled in link_changes.
    l.import_links(
        &[link(2, "ŞİŞE", ProviderName::Eticaret, "KOD,1")],
        true,
        "test",
    )
    .await
    .unwrap();
    for at in [1_000, 2_000, 3_000] {
        l.log_request(ProviderName::Bazaardan, at).await.unwrap();
    }
    l.log_request(ProviderName::Eticaret, 2_500).await.unwrap();
    l.epoch(ProviderName::Bazaardan, 123_456).await.unwrap();
    l.record_push_ok(ProviderName::Bazaardan).await.unwrap();
    l.record_provider_error(ProviderName::Eticaret, "boom")
        .await
        .unwrap();
    l.save_pause(ProviderName::Eticaret, i64::MAX / 2, "Retry-After")
        .await
        .unwrap();
}

/// Everything the tests compare, as JSON.
async fn snapshot(l: &Ledger) -> serde_json::Value {
    let stock = l.list_stock().await.unwrap();
    let mut history = Vec::new();
    for s in &stock {
        history.push(serde_json::to_value(l.history(&s.sku).await.unwrap()).unwrap());
    }
    let mut states = Vec::new();
    for p in [ProviderName::Bazaardan, ProviderName::Eticaret] {
        states.push(serde_json::to_value(l.provider_state(p).await.unwrap()).unwrap());
        states.push(serde_json::json!(l.pause_of(p).await.unwrap()));
    }
    serde_json::json!({
        "stock": stock,
        "history": history,
        "links": l.list_mappings().await.unwrap(),
        "link_changes": l.link_changes(100).await.unwrap(),
        "requests": l.request_epochs().await.unwrap(),
        "states": states,
        "movements": l.movement_count().await.unwrap(),
    })
}

fn sqlite_url(p: &Path) -> String {
    format!("sqlite://{}", p.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    stoksync_no_pg,
    ignore = "needs PostgreSQL: eval \"$(.ci/pg-start)\" first (CI runs it)"
)]
async fn a_sqlite_ledger_goes_to_postgres_and_back() {
    let pg_url = pg::fresh_database("db_copy").await;
    let dir = tempfile::tempdir().unwrap();
    let src_path = dir.path().join("source.db");
    let source = Ledger::open(&src_path).await.unwrap();
    fill(&source).await;
    let want = snapshot(&source).await;
    assert_eq!(want["movements"], 4);
    source.close().await;

    // SQLite -> PostgreSQL.
    let out = stoksync(&[
        "db",
        "copy",
        "--from",
        &sqlite_url(&src_path),
        "--to",
        &pg_url,
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("copied 24 tables") && stdout.contains("movements 4, SKUs 3"),
        "{}",
        text(&out)
    );
    let pg_db = Database::Postgres {
        url: pg_url.clone(),
        password: None,
    };
    let target = Ledger::connect(&pg_db).await.unwrap();
    assert_eq!(snapshot(&target).await, want);
    // New movements take the next id.
    target
        .erp_movement("KALEM", StockChange::By(1), "found", "k5")
        .await
        .unwrap();
    let ids: Vec<i64> = target
        .history("KALEM")
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, [2, 5]);
    let want_pg = snapshot(&target).await;

    // Again into the same target: refused, non-zero, nothing changed.
    let again = stoksync(&[
        "db",
        "copy",
        "--from",
        &sqlite_url(&src_path),
        "--to",
        &pg_url,
    ])
    .await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("not empty") && err.contains("movements (5 rows)"),
        "{}",
        text(&again)
    );
    assert_eq!(snapshot(&target).await, want_pg);
    target.close().await;

    // PostgreSQL -> a new SQLite file: the same ledger again.
    let back_path = dir.path().join("back.db");
    let back = stoksync(&[
        "db",
        "copy",
        "--from",
        &pg_url,
        "--to",
        &format!("sqlite:{}", back_path.display()),
    ])
    .await;
    assert!(back.status.success(), "{}", text(&back));
    let back_ledger = Ledger::open(&back_path).await.unwrap();
    assert_eq!(snapshot(&back_ledger).await, want_pg);
    assert!(back_ledger.journal_mismatches().await.unwrap().is_empty());
    back_ledger.close().await;
}

#[tokio::test]
async fn a_url_with_a_password_is_refused_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s.db");
    let l = Ledger::open(&src).await.unwrap();
    l.close().await;
    let out = stoksync(&[
        "db",
        "copy",
        "--from",
        &sqlite_url(&src),
        "--to",
        "postgres://u:hunter2@127.0.0.1:1/db",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("password") && err.contains("PGPASSWORD"),
        "{}",
        text(&out)
    );
    assert!(!err.contains("hunter2"), "{}", text(&out));

    // It reads no config: offered one, it says so (a usage error).
    let cfg = stoksync(&[
        "db",
        "copy",
        "--config",
        "stoksync.toml",
        "--from",
        &sqlite_url(&src),
        "--to",
        "sqlite:x.db",
    ])
    .await;
    assert_eq!(cfg.status.code(), Some(2), "{}", text(&cfg));
    assert!(
        String::from_utf8_lossy(&cfg.stderr).contains("no --config"),
        "{}",
        text(&cfg)
    );

    // The same file as source and target: refused, exit 1.
    let same = stoksync(&[
        "db",
        "copy",
        "--from",
        &sqlite_url(&src),
        "--to",
        &format!("sqlite:{}", src.display()),
    ])
    .await;
    assert_eq!(same.status.code(), Some(1), "{}", text(&same));
    assert!(
        String::from_utf8_lossy(&same.stderr).contains("same database"),
        "{}",
        text(&same)
    );
}
