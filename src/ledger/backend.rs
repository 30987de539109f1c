//! The two databases a ledger can live in, and the little SQL that differs
//! between them. Every statement is written once, in the subset both speak
//! (`$1` placeholders, `ON CONFLICT`, `CAST(... AS BIGINT)`, no booleans in
//! results); the one construct without a common spelling, a JSON array
//! read as rows (`json_each` in SQLite), is rewritten for PostgreSQL by
//! [`sql`].

use super::{LedgerError, Result};
use crate::config::Secret;
use sqlx::{Any, AnyConnection, Transaction};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the ledger lives (`[database] url`).
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file: the zero-setup default.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by an active daemon and its standbys.
    /// `url` never carries a password; `password` comes from
    /// `password_file` (else libpq's `PGPASSWORD` / `PGPASSFILE` /
    /// `~/.pgpass`, which the driver reads itself).
    Postgres {
        url: String,
        password: Option<Secret>,
    },
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres { url, .. } => f.write_str(url),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Database::Postgres { url, password } => f
                .debug_struct("Postgres")
                .field("url", url)
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

impl Database {
    /// How messages name it (never with a password).
    pub fn display(&self) -> &Self {
        self
    }

    /// The SQLite file, if the ledger is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Database::Sqlite(p) => Some(p),
            Database::Postgres { .. } => None,
        }
    }
}

impl From<&std::path::Path> for Database {
    fn from(p: &std::path::Path) -> Database {
        Database::Sqlite(p.to_path_buf())
    }
}

impl From<&PathBuf> for Database {
    fn from(p: &PathBuf) -> Database {
        Database::Sqlite(p.clone())
    }
}

impl From<PathBuf> for Database {
    fn from(p: PathBuf) -> Database {
        Database::Sqlite(p)
    }
}

impl From<&Database> for Database {
    fn from(d: &Database) -> Database {
        d.clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    pub(crate) fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// `s` as this backend runs it: what [`sql`] gives on a connection to
    /// it (the SQL scan of tests/sql_statements.rs prepares the statements
    /// it finds this way).
    pub fn statement(self, s: &str) -> String {
        match self {
            Backend::Sqlite => s.to_string(),
            Backend::Postgres => to_postgres(s),
        }
    }

    /// The database server's clock, in ms since the epoch: the one clock
    /// every host of a pair reads the lease by.
    pub(crate) fn now_ms_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS BIGINT)",
            Backend::Postgres => {
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
            }
        }
    }
}

/// `s` as the backend of `conn` wants it: unchanged for SQLite; for
/// PostgreSQL, `json_each($N) AS j` (rows `j.value`, `j.key`) becomes
/// `jsonb_array_elements` with ordinality, and `SELECT value FROM
/// json_each($N)` becomes `jsonb_array_elements_text`. Translations are
/// made once per statement and kept (the statements are a fixed set).
pub(crate) fn sql(conn: &AnyConnection, s: &'static str) -> &'static str {
    match Backend::of(conn) {
        Backend::Sqlite => s,
        Backend::Postgres => {
            static CACHE: Mutex<Option<HashMap<usize, &'static str>>> = Mutex::new(None);
            let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
            let map = cache.get_or_insert_with(HashMap::new);
            map.entry(s.as_ptr() as usize)
                .or_insert_with(|| Box::leak(Backend::Postgres.statement(s).into_boxed_str()))
        }
    }
}

fn to_postgres(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 64);
    let mut rest = s;
    while let Some(at) = rest.find("json_each(") {
        let (head, tail) = rest.split_at(at);
        let close = tail.find(')').expect("json_each(...) is closed");
        let arg = &tail["json_each(".len()..close];
        let after = &tail[close + 1..];
        if head.trim_end().ends_with("SELECT value FROM") {
            out.push_str(head);
            out.push_str(&format!("jsonb_array_elements_text(CAST({arg} AS jsonb))"));
            rest = after;
        } else {
            let alias = after
                .trim_start()
                .strip_prefix("AS ")
                .map(|a| {
                    let a = a.trim_start();
                    let end = a
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(a.len());
                    &a[..end]
                })
                .filter(|a| !a.is_empty())
                .expect("json_each(...) AS alias");
            let skip = after.find(alias).expect("alias present") + alias.len();
            out.push_str(head);
            out.push_str(&format!(
                "jsonb_array_elements(CAST({arg} AS jsonb)) WITH ORDINALITY AS {alias}(value, key)"
            ));
            rest = &after[skip..];
        }
    }
    out.push_str(rest);
    out
}

/// A path as the `sqlite://` URL of the driver wants it: the bytes that
/// would end or bend the URL percent-encoded (the driver decodes them).
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | ' ' | '"' | '#' | '<' | '>' | '?' | '`' | '{' | '}' => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c if c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The lease this process holds, shared by every clone of its ledger.
/// Epoch 0: it holds none (a command run by hand, a standby) and nothing is
/// checked.
#[derive(Clone, Default)]
pub(crate) struct Fence(Arc<FenceState>);

#[derive(Default)]
struct FenceState {
    epoch: AtomicI64,
    /// Set once the lease is known lost: nothing is written or sent after.
    lost: AtomicBool,
    /// Until when the lease is surely ours, by the local monotonic clock.
    valid_until: Mutex<Option<Instant>>,
    /// How much of the lease must be left for a request to be sent.
    margin: Mutex<Duration>,
    /// The active daemon, while this one waits as its standby.
    standby_of: Mutex<Option<String>>,
}

/// What this process is to a shared ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum Role {
    /// No lease in play: a SQLite ledger, or a command run by hand.
    Solo,
    /// Waiting for the lease `active` holds.
    Standby { active: String },
    /// Holding the lease under `epoch`.
    Active { epoch: i64 },
    /// Held the lease and lost it: writes and sends nothing more.
    Lost { epoch: i64 },
}

impl Fence {
    pub(crate) fn set(&self, epoch: i64, margin: Duration) {
        self.0.lost.store(false, Ordering::SeqCst);
        *self.0.margin.lock().unwrap_or_else(|p| p.into_inner()) = margin;
        self.0.epoch.store(epoch, Ordering::SeqCst);
    }

    pub(crate) fn valid_until(&self, until: Instant) {
        *self.0.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    pub(crate) fn lost(&self) {
        self.0.lost.store(true, Ordering::SeqCst);
    }

    pub(crate) fn standby_of(&self, active: &str) {
        *self.0.standby_of.lock().unwrap_or_else(|p| p.into_inner()) = Some(active.to_string());
    }

    pub(crate) fn role(&self) -> Role {
        let epoch = self.epoch();
        if epoch != 0 {
            if self.0.lost.load(Ordering::SeqCst) {
                Role::Lost { epoch }
            } else {
                Role::Active { epoch }
            }
        } else if let Some(active) = self
            .0
            .standby_of
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Role::Standby { active }
        } else {
            Role::Solo
        }
    }

    pub(crate) fn epoch(&self) -> i64 {
        self.0.epoch.load(Ordering::SeqCst)
    }

    /// Whether a request may be sent now: with no lease held, yes; with
    /// one, only while it has at least its margin left.
    pub(crate) fn allows(&self) -> std::result::Result<(), String> {
        let margin = *self.0.margin.lock().unwrap_or_else(|p| p.into_inner());
        if self.0.lost.load(Ordering::SeqCst) {
            return Err("this daemon lost the active lease".into());
        }
        if self.epoch() == 0 {
            return Ok(());
        }
        let until = *self.0.valid_until.lock().unwrap_or_else(|p| p.into_inner());
        match until {
            Some(u) if Instant::now() + margin < u => Ok(()),
            _ => Err(format!(
                "the active lease (epoch {}) was not renewed in time: sending nothing",
                self.epoch()
            )),
        }
    }

    /// Inside a write transaction (which holds the writers' lock, so a
    /// takeover cannot commit between this check and the commit): refuses
    /// when the lease this process held has passed to another, or is known
    /// lost.
    pub(crate) async fn check(&self, tx: &mut Transaction<'static, Any>) -> Result<()> {
        let held = self.epoch();
        if held == 0 {
            return Ok(());
        }
        let current: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM leader_lease WHERE id = 1")
                .fetch_optional(&mut **tx)
                .await?;
        if current != Some(held) || self.0.lost.load(Ordering::SeqCst) {
            self.lost();
            return Err(LedgerError::Fenced {
                held,
                current: current.unwrap_or(0),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_each_reads_as_jsonb_rows_on_postgres() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE k IN (SELECT value FROM json_each($1)) AND x = $2"),
            "SELECT a FROM t WHERE k IN (SELECT value FROM jsonb_array_elements_text(CAST($1 AS jsonb))) AND x = $2"
        );
        assert_eq!(
            to_postgres(
                "SELECT j.value ->> 0, $2 FROM json_each($1) AS j WHERE true ORDER BY j.key"
            ),
            "SELECT j.value ->> 0, $2 FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS j(value, key) WHERE true ORDER BY j.key"
        );
        assert_eq!(
            to_postgres("x IN (SELECT j.value ->> 0 FROM json_each($2) AS j) AND y"),
            "x IN (SELECT j.value ->> 0 FROM jsonb_array_elements(CAST($2 AS jsonb)) WITH ORDINALITY AS j(value, key)) AND y"
        );
        assert_eq!(to_postgres("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let names = |m: &sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        let sqlite = names(super::super::migrator(Backend::Sqlite));
        assert_eq!(sqlite, names(super::super::migrator(Backend::Postgres)));
        assert!(sqlite.len() >= 9, "{sqlite:?}");
    }

    #[test]
    fn a_path_with_url_characters_survives_the_url() {
        assert_eq!(
            encode_path("/var/lib/a b/ç?#%.db"),
            "/var/lib/a%20b/ç%3F%23%25.db"
        );
    }

    #[test]
    fn a_password_never_shows() {
        let d = Database::Postgres {
            url: "postgres://u@h/db".into(),
            password: Some(Secret::new("hunter2")),
        };
        assert!(!format!("{d:?} {d}").contains("hunter2"));
    }
}
