//! The real-binary harness fails a test whose stoksync logs a ledger
//! database error (tests/common/log.rs), for a daemon and for a command,
//! without the test asking: issue 19's discovery failed on every round,
//! in the log only, while every check of the tests passed.

mod common;

use common::log::{Allowed, ledger_errors};
use common::{Env, Knobs, wait_for};
use std::sync::Arc;
use std::time::Duration;
use stoksync::error::ProviderError;
use stoksync::ledger::LedgerError;

/// The words the harness looks for are the ones the program prints.
#[test]
fn ledger_errors_are_what_the_ledger_says_they_are() {
    let db = LedgerError::Db(sqlx::Error::PoolTimedOut).to_string();
    let wrapped = ProviderError::from(LedgerError::Db(sqlx::Error::PoolClosed)).to_string();
    let log = format!(
        "INFO stoksync: polled\n\
         WARN stoksync::engine: discovery failed provider=stokdurumu error={db}\n\
         WARN stoksync::engine: push failed error={wrapped}\n\
         ERROR stoksync: {}\n\
         WARN stoksync: {}\n",
        LedgerError::Open {
            path: "/nowhere/ledger.db".into(),
            source: sqlx::Error::PoolClosed
        },
        LedgerError::Fenced {
            held: 3,
            current: 4
        },
    );
    let found = ledger_errors(&log);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("discovery failed"), "{found:#?}");
    assert!(found[1].contains("push failed"), "{found:#?}");
    let mut allowed = Allowed::default();
    allowed.allow("push failed", "this test provokes it");
    assert_eq!(allowed.unexpected(&log).len(), 1);
}

/// The panic message of a failed check.
fn message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A ledger whose `table` is gone: every statement on it fails.
async fn drop_table(env: &Env, table: &str) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", env.database().display()))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_logs_a_ledger_database_error_fails_its_test() {
    let env = Env::new(Knobs::default()).await;
    env.ok(&["stock", "list"]).await;
    // First a daemon with a sound ledger: stopped and checked, it passes.
    let daemon = env.spawn(&["run"]);
    wait_for(Duration::from_secs(30), "the daemon to poll", || async {
        env.fake.counters().requests > 0
    })
    .await;
    drop(daemon);

    // Then the request log goes: every request the daemon grants fails
    // to be logged ("cannot record the request ...: ledger database error").
    let mut daemon = env.spawn(&["run"]);
    let before = env.fake.counters().requests;
    wait_for(Duration::from_secs(30), "the daemon to poll", || async {
        env.fake.counters().requests > before
    })
    .await;
    drop_table(&env, "request_log").await;
    wait_for(Duration::from_secs(30), "the error in its log", || async {
        daemon.log().contains("no such table: request_log")
    })
    .await;

    // Allowed, with a reason, it passes...
    daemon.allow("no such table: request_log", "this test drops the table");
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    drop(daemon);
    // ... and not allowed, it fails, naming the line.
    let daemon = env.spawn(&["run"]);
    wait_for(Duration::from_secs(30), "the error in its log", || async {
        !ledger_errors(&daemon.log()).is_empty()
    })
    .await;
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(daemon)))
        .expect_err("the check fails the test");
    let text = message(failed);
    assert!(
        text.contains("stoksync [\"run\"] logged") && text.contains("no such table: request_log"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_logs_a_ledger_database_error_fails_its_test() {
    let env = Arc::new(Env::new(Knobs::default()).await);
    env.ok(&["stock", "list"]).await;
    drop_table(&env, "stock").await;
    let run = {
        let env = env.clone();
        tokio::spawn(async move { env.run(&["stock", "list"]).await })
    };
    let failed = run.await.expect_err("the check fails the test");
    let text = message(failed.into_panic());
    assert!(
        text.contains("stoksync [\"stock\", \"list\"] logged")
            && text.contains("ledger database error")
            && text.contains("no such table: stock"),
        "{text}"
    );
}

/// No test starts a process past the check: outside the harness, a
/// `.output()` or `.spawn()` is one of these, each reviewed (file, how
/// many, why). The simulator (tests/sim*) runs the engine in-process and
/// checks its own log.
#[test]
fn no_test_starts_stoksync_past_the_check() {
    const REVIEWED: &[(&str, usize, &str)] = &[
        (
            "tests/common/mod.rs",
            2,
            "`output` and `Daemon`: the check itself",
        ),
        (
            "tests/db_copy.rs",
            1,
            "its `stoksync` checks the output with log.rs",
        ),
        ("tests/demo.rs", 1, "the sandbox: fakes only, no ledger"),
        (
            "tests/deploy.rs",
            1,
            "`--help` of the systemd unit's command line",
        ),
        ("tests/browser.rs", 1, "chromium"),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["tests", "tests/common"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut problems = Vec::new();
    for p in files {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("tests/sim") || rel == "tests/harness.rs" {
            continue;
        }
        let src = std::fs::read_to_string(&p).unwrap();
        let n = src.matches(".output()").count() + src.matches(".spawn()").count();
        let want = REVIEWED.iter().find(|r| r.0 == rel).map_or(0, |r| r.1);
        if n != want {
            problems.push(format!(
                "{rel}: {n} `.output()`/`.spawn()` (reviewed: {want}); run stoksync through \
                 common::output / Daemon / Env::run, which fail a test whose stoksync logs a \
                 ledger database error"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

mod needs {
    #![allow(dead_code)]
    include!("../build/needs.rs");
}

/// What `build.rs` marks missing: nothing under CI, where every test runs;
/// elsewhere chromium and PostgreSQL each when absent.
#[test]
fn what_a_machine_lacks_is_ignored_except_under_ci() {
    use needs::missing;
    assert!(missing(Some("true"), None, false).is_empty());
    assert_eq!(
        missing(None, None, false),
        ["stoksync_no_chromium", "stoksync_no_pg"]
    );
    assert_eq!(missing(Some("false"), Some(" "), true), ["stoksync_no_pg"]);
    assert!(missing(None, Some("postgres://x@127.0.0.1/y"), true).is_empty());
}

/// Defect (issue 20): on a machine without chromium `cargo test` failed
/// (and cargo stopped there, so most test binaries never ran), and with
/// `STOKSYNC_SKIP_BROWSER=1` the browser and PostgreSQL tests printed `ok`
/// having run nothing. Every test that needs chromium or PostgreSQL now
/// carries the `ignore` its cfg sets when that is missing (reported as
/// ignored, with the reason), and fails when run without it.
#[test]
fn tests_that_need_chromium_or_postgres_are_ignored_without_them() {
    // What a test calls that needs one, and the cfg that must ignore it.
    const NEEDS: &[(&str, &str)] = &[
        ("fresh_database(", "stoksync_no_pg"),
        ("AtWork::start(", "stoksync_no_pg"),
        ("chromium()", "stoksync_no_chromium"),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    let mut seen = 0;
    for e in std::fs::read_dir(root.join("tests")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rs") || p.ends_with("harness.rs") {
            continue;
        }
        let src = std::fs::read_to_string(&p).unwrap();
        // Each test: its attributes (from `#[test]` or `#[tokio::test` to
        // its `fn`) and its body (to the next test or the file's end).
        let starts: Vec<usize> = src
            .match_indices("#[test]")
            .chain(src.match_indices("#[tokio::test"))
            .map(|(i, _)| i)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for (k, &at) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(src.len());
            let text = &src[at..end];
            let Some(f) = text.find("fn ") else { continue };
            let (attrs, body) = text.split_at(f);
            let name: String = body[3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            for (call, cfg) in NEEDS {
                if body.contains(call) {
                    seen += 1;
                    let ignore = format!("cfg_attr(\n    {cfg},\n    ignore = \"needs");
                    if !attrs.contains(&ignore) {
                        problems.push(format!(
                            "{}: `{name}` calls {call} without #[cfg_attr({cfg}, ignore = \"needs …\")]",
                            p.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        seen >= 6,
        "the scan found only {seen} tests needing chromium or PostgreSQL"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
