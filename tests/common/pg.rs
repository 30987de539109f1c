//! PostgreSQL for the ledger tests: one fresh, empty database per test in
//! the cluster named by `STOKSYNC_TEST_PG_URL` (`.ci/pg-start` starts a
//! throwaway one and prints that variable and `PGPASSWORD`, which sqlx
//! reads when the URL has no password).
//!
//! The databases are left behind: the cluster is thrown away whole.

use sqlx::Connection;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty PostgreSQL database for one test. The tests that call
/// it are ignored when built without `STOKSYNC_TEST_PG_URL` (see
/// `build.rs`); run anyway (`--ignored`, or the variable gone since the
/// build), a missing URL fails the test, saying what to do: a test that
/// needs PostgreSQL never passes without it.
///
/// The database is `stoksync_<tag>_<pid>_<counter>_<random>` (the tag
/// lowercased, anything but `[a-z0-9_]` made `_`, cut to fit PostgreSQL's
/// 63-byte names), so tests in parallel, in several test binaries, or in
/// runs against a cluster that outlived an earlier run never collide. The
/// URL returned is `STOKSYNC_TEST_PG_URL` with its path replaced by it.
pub async fn fresh_database(tag: &str) -> String {
    let url = match std::env::var("STOKSYNC_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "`{tag}` needs PostgreSQL and STOKSYNC_TEST_PG_URL is not set \
             (eval \"$(.ci/pg-start)\" first, then run the tests again)"
        ),
    };

    static NEXT: AtomicU32 = AtomicU32::new(0);
    let tag: String = tag
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    let name = format!(
        "stoksync_{tag}_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );

    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    // `name` is [a-z0-9_] only: safe to splice in, quoted or not.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating database {name} at {url}: {e}"));
    let _ = conn.close().await;

    // reqwest re-exports the `url` crate's Url (sqlx does not).
    let mut fresh = reqwest::Url::parse(&url)
        .unwrap_or_else(|e| panic!("STOKSYNC_TEST_PG_URL {url:?} is not a URL: {e}"));
    fresh.set_path(&name);
    fresh.to_string()
}
