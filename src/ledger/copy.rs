//! `stoksync db copy --from URL --to URL`: the whole ledger from one
//! database into another, empty one (SQLite to PostgreSQL when a pair of
//! daemons is set up, PostgreSQL to SQLite to take it back home, or SQLite
//! to SQLite).
//!
//! - Both are opened as ledgers, so both schemas are migrated to the
//!   current version before anything is read.
//! - The source is read in one read transaction (a snapshot: a daemon may
//!   keep writing to it meanwhile); the target is written in one write
//!   transaction, so it holds the whole copy or nothing.
//! - A target holding any row in any ledger table is refused, and so is
//!   the source itself as the target.
//! - Ids are kept (movement ids, link change ids, ...); on PostgreSQL each
//!   identity sequence is moved past the largest id copied.
//! - Row counts and per-SKU journal sums are checked inside the write
//!   transaction (a mismatch rolls it back) and again after the commit.

use super::db;
use super::{Backend, Database, Ledger, LedgerError, Result};
use futures_util::TryStreamExt;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Every table of the ledger, in the order they are copied. No table
/// references another (no foreign keys), so the only order that matters is
/// `push_log` after `push_attempts`: inserting an attempt fires the trigger
/// that writes `push_log`, whose rows are then replaced by the source's.
/// A table in the schema but not here makes the copy refuse (and a test
/// fail), so a new migration cannot be forgotten silently.
pub const TABLES: &[&str] = &[
    "stock",
    "movements",
    "listings",
    "order_items",
    "anomalies",
    "provider_state",
    "request_log",
    "catalog",
    "seen_orders",
    "link_changes",
    "push_attempts",
    "push_log",
    "provider_pauses",
    "sku_rules",
    "bundles",
    "bundle_parts",
    "definition_changes",
    "shadow_state",
    "alerts_open",
    "alert_outbox",
    "leader_lease",
    "lease_standbys",
    "pending_since",
    "pending_checks",
];

/// Bound values per INSERT statement (SQLite's old limit is 999).
const PARAMS_PER_STATEMENT: usize = 900;

/// What a copy did, for the report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows copied, per table, in copy order.
    pub tables: Vec<(String, i64)>,
    pub movements: i64,
    /// SKUs with at least one movement.
    pub skus: i64,
}

impl CopyReport {
    pub fn rows(&self) -> i64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "copied {} tables, {} rows; movements {}, SKUs {}; per-SKU sums equal",
            self.tables.len(),
            self.rows(),
            self.movements,
            self.skus
        )
    }
}

/// A database named on the command line: `sqlite:///abs/path`,
/// `sqlite://relative/path`, `sqlite:relative.db`, or
/// `postgres://user@host:port/db` (`postgresql://` too). A PostgreSQL URL
/// carrying a password is refused: it would show in `ps` and the shell's
/// history; the password comes from `PGPASSWORD` or `~/.pgpass`. The error
/// never repeats the URL (it may hold that password).
pub fn parse_database_url(s: &str) -> std::result::Result<Database, String> {
    if let Some(rest) = s.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err("a sqlite URL needs a file: sqlite:///abs/path.db or sqlite:rel.db".into());
        }
        if path.contains('?') {
            return Err("a sqlite URL takes no options (`?...`): name the file only".into());
        }
        return Ok(Database::Sqlite(PathBuf::from(percent_decode(path)?)));
    }
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let url: url::Url = s
            .parse()
            .map_err(|e| format!("the PostgreSQL URL cannot be read: {e}"))?;
        if url.password().is_some() {
            return Err(format!(
                "the PostgreSQL URL for {} carries a password: leave it out (write \
                 postgres://{}@host:port/db) and give the password in PGPASSWORD or ~/.pgpass",
                url.host_str().unwrap_or("the server"),
                if url.username().is_empty() {
                    "user"
                } else {
                    url.username()
                }
            ));
        }
        return Ok(Database::Postgres {
            url: s.to_string(),
            password: None,
        });
    }
    Err("expected sqlite:///abs/path.db, sqlite:relative.db or postgres://user@host:port/db".into())
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in the sqlite path `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the sqlite path `{s}` is not UTF-8"))
}

fn invalid(m: impl Into<String>) -> LedgerError {
    LedgerError::Invalid(m.into())
}

/// Whether `a` and `b` surely name the same database.
fn same_database(a: &Database, b: &Database) -> bool {
    match (a, b) {
        (Database::Sqlite(a), Database::Sqlite(b)) => same_file(a, b),
        (Database::Postgres { url: a, .. }, Database::Postgres { url: b, .. }) => {
            let key = |u: &str| {
                u.parse::<url::Url>().ok().map(|u| {
                    (
                        u.host_str().unwrap_or("").to_ascii_lowercase(),
                        u.port().unwrap_or(5432),
                        u.path().trim_start_matches('/').to_string(),
                    )
                })
            };
            key(a).is_some() && key(a) == key(b)
        }
        _ => false,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    // A file that does not exist yet: its folder resolved, then its name.
    let resolve = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = std::fs::canonicalize(p) {
            return Some(c);
        }
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?))
    };
    match (resolve(a), resolve(b)) {
        (Some(a), Some(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// Copies the ledger in `from` into the empty ledger `to` and checks the
/// copy (see the module's notes).
pub async fn copy_database(from: &Database, to: &Database) -> Result<CopyReport> {
    if same_database(from, to) {
        return Err(invalid(format!(
            "the source and the target are the same database ({from}): nothing copied"
        )));
    }
    if let Database::Sqlite(p) = from
        && !p.is_file()
    {
        return Err(invalid(format!(
            "the source {} does not exist (a copy never creates its source)",
            p.display()
        )));
    }
    let source = Ledger::connect(from).await?;
    let target = match Ledger::connect(to).await {
        Ok(t) => t,
        Err(e) => {
            source.close().await;
            return Err(e);
        }
    };
    let copied = copy_ledger(&source, &target).await;
    source.close().await;
    target.close().await;
    copied
}

/// Copies `source` into `target`, which must hold no row. Both must be
/// migrated ledgers (as [`Ledger::connect`] leaves them).
pub async fn copy_ledger(source: &Ledger, target: &Ledger) -> Result<CopyReport> {
    // The source, as one snapshot.
    let mut rtx = match source.backend {
        Backend::Sqlite => source.read.begin().await?,
        Backend::Postgres => {
            source
                .read
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?
        }
    };
    check_tables(&mut rtx, source.backend, "source").await?;
    // The target, all or nothing; `begin` holds the writers' lock, so no
    // other writer can fill it between the emptiness check and the commit.
    let mut wtx = target.begin().await?;
    check_tables(&mut wtx, target.backend, "target").await?;
    let mut full = Vec::new();
    for table in TABLES {
        let n = count(&mut wtx, table).await?;
        if n > 0 {
            full.push(format!("{table} ({n} rows)"));
        }
    }
    if !full.is_empty() {
        return Err(invalid(format!(
            "the target is not empty: {}; `db copy` writes only into an empty ledger \
             (nothing copied)",
            full.join(", ")
        )));
    }

    let mut tables = Vec::new();
    for table in TABLES {
        let n = copy_table(&mut rtx, source.backend, &mut wtx, target.backend, table).await?;
        tables.push((table.to_string(), n));
    }
    if target.backend == Backend::Postgres {
        let identities: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT)
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
        )
        .fetch_all(&mut *wtx)
        .await?;
        for (table, column) in identities {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                               COALESCE(MAX(\"{column}\"), 1), MAX(\"{column}\") IS NOT NULL)
                 FROM \"{table}\""
            )))
            .execute(&mut *wtx)
            .await?;
        }
    }

    // Checked before the commit: a mismatch rolls everything back.
    let source_sums = journal_sums(&mut rtx).await?;
    compare(&tables, &source_sums, &mut wtx)
        .await
        .map_err(|e| invalid(format!("{e}; the copy was rolled back, nothing written")))?;
    wtx.commit().await?;
    rtx.rollback().await?;

    // And again after it, as any later reader sees the target.
    let mut conn = target.read.acquire().await?;
    compare(&tables, &source_sums, &mut conn)
        .await
        .map_err(|e| invalid(format!("{e} (after the commit: the target holds the copy)")))?;
    drop(conn);
    let mismatches = target.journal_mismatches().await?;
    if let Some(m) = mismatches.first() {
        return Err(invalid(format!(
            "after the copy, {} SKU(s) of the target have a balance off their journal \
             (first: {} balance {:?}, journal {})",
            mismatches.len(),
            m.sku,
            m.balance,
            m.journal_sum
        )));
    }
    Ok(CopyReport {
        movements: tables
            .iter()
            .find(|(t, _)| t == "movements")
            .map_or(0, |(_, n)| *n),
        skus: source_sums.len() as i64,
        tables,
    })
}

/// The tables of the schema `conn` is in, but sqlx's own.
pub(crate) async fn schema_tables(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<BTreeSet<String>> {
    let q = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> '_sqlx_migrations'"
        }
    };
    let names: Vec<String> = sqlx::query_scalar(q).fetch_all(conn).await?;
    Ok(names.into_iter().collect())
}

impl Ledger {
    /// `check`'s look at the schema: every migration of this backend
    /// applied (sqlx refused to open a ledger whose applied migrations
    /// differ from ours) and the tables exactly the ledger's. Returns the
    /// newest migration's version and the number of tables.
    pub async fn schema_check(&self) -> Result<(i64, usize)> {
        db(async move {
            let mut conn = self.read.acquire().await?;
            let (applied, newest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MAX(version) FROM _sqlx_migrations WHERE success = true",
            )
            .fetch_one(&mut *conn)
            .await?;
            let expected = super::migrator(self.backend).iter().count();
            if usize::try_from(applied).ok() != Some(expected) {
                return Err(invalid(format!(
                    "{applied} of the {expected} {} migrations applied",
                    self.backend.as_str()
                )));
            }
            let have = schema_tables(&mut conn, self.backend).await?;
            let known: BTreeSet<String> = TABLES.iter().map(|t| t.to_string()).collect();
            if have != known {
                return Err(invalid(format!(
                    "the ledger's tables differ from this version's: unexpected {:?}, missing {:?}",
                    have.difference(&known).collect::<Vec<_>>(),
                    known.difference(&have).collect::<Vec<_>>()
                )));
            }
            Ok((newest.unwrap_or(0), have.len()))
        })
        .await
    }
}

/// Refuses a schema whose tables are not exactly [`TABLES`].
async fn check_tables(conn: &mut AnyConnection, backend: Backend, which: &str) -> Result<()> {
    let have = schema_tables(conn, backend).await?;
    let known: BTreeSet<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let unknown: Vec<_> = have.difference(&known).cloned().collect();
    let missing: Vec<_> = known.difference(&have).cloned().collect();
    if unknown.is_empty() && missing.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "the {which} database's tables are not the ones `db copy` knows \
         (not copied: {unknown:?}; missing: {missing:?}): nothing copied"
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
}

/// Each column of `table` with the kind of value it holds, in order.
async fn columns(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
) -> Result<Vec<(String, Kind)>> {
    let rows: Vec<(String, String)> = match backend {
        Backend::Sqlite => {
            sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                .bind(table)
                .fetch_all(conn)
                .await?
        }
        Backend::Postgres => {
            sqlx::query_as(
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT)
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(conn)
            .await?
        }
    };
    rows.into_iter()
        .map(|(name, ty)| {
            let t = ty.to_ascii_uppercase();
            let kind = if t.contains("INT") {
                Kind::Int
            } else if t.contains("CHAR") || t.contains("TEXT") {
                Kind::Text
            } else if t.contains("REAL") || t.contains("DOUB") || t.contains("FLOA") {
                Kind::Real
            } else {
                return Err(invalid(format!(
                    "column {table}.{name} has type {ty}, which `db copy` cannot copy"
                )));
            };
            Ok((name, kind))
        })
        .collect()
}

enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

async fn count(conn: &mut AnyConnection, table: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\"")))
            .fetch_one(conn)
            .await?,
    )
}

/// Copies one table; returns the rows copied.
async fn copy_table(
    from: &mut Transaction<'static, Any>,
    from_backend: Backend,
    to: &mut Transaction<'static, Any>,
    to_backend: Backend,
    table: &str,
) -> Result<i64> {
    let cols = columns(from, from_backend, table).await?;
    let target_cols: BTreeMap<String, Kind> =
        columns(to, to_backend, table).await?.into_iter().collect();
    let source_cols: BTreeMap<String, Kind> = cols.iter().cloned().collect();
    if source_cols != target_cols {
        return Err(invalid(format!(
            "table {table} differs: source columns {source_cols:?}, target columns \
             {target_cols:?}: nothing copied"
        )));
    }
    if table == "push_log" {
        // What the push_attempts trigger wrote: the source's rows replace it.
        sqlx::query("DELETE FROM push_log")
            .execute(&mut **to)
            .await?;
    }
    let list = cols
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let per_statement = (PARAMS_PER_STATEMENT / cols.len().max(1)).max(1);
    let select = format!("SELECT {list} FROM \"{table}\"");
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **from);
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(per_statement);
    let mut copied = 0i64;
    while let Some(row) = rows.try_next().await? {
        let mut values = Vec::with_capacity(cols.len());
        for (i, (name, kind)) in cols.iter().enumerate() {
            let v = match kind {
                Kind::Int => row.try_get(i).map(Value::Int),
                Kind::Real => row.try_get(i).map(Value::Real),
                Kind::Text => row.try_get(i).map(Value::Text),
            }
            .map_err(|e| invalid(format!("reading {table}.{name}: {e}")))?;
            values.push(v);
        }
        batch.push(values);
        if batch.len() == per_statement {
            insert(to, table, &list, cols.len(), std::mem::take(&mut batch)).await?;
        }
        copied += 1;
    }
    drop(rows);
    if !batch.is_empty() {
        insert(to, table, &list, cols.len(), batch).await?;
    }
    Ok(copied)
}

async fn insert(
    to: &mut Transaction<'static, Any>,
    table: &str,
    list: &str,
    width: usize,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    let mut sql = format!("INSERT INTO \"{table}\" ({list}) VALUES ");
    let mut n = 0;
    for (r, _) in rows.iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push_str(&format!("${n}"));
        }
        sql.push(')');
    }
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for v in rows.into_iter().flatten() {
        q = match v {
            Value::Int(v) => q.bind(v),
            Value::Real(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
        };
    }
    q.execute(&mut **to)
        .await
        .map_err(|e| invalid(format!("writing {table} into the target: {e}")))?;
    Ok(())
}

/// `SUM(delta)` of the journal per SKU.
async fn journal_sums(conn: &mut AnyConnection) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT sku, CAST(SUM(delta) AS BIGINT) FROM movements GROUP BY sku ORDER BY sku",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Whether `conn` (the target) holds `tables`' row counts, the source's
/// per-SKU journal sums, and each SKU's balance equal to its sum.
async fn compare(
    tables: &[(String, i64)],
    source_sums: &BTreeMap<String, i64>,
    conn: &mut AnyConnection,
) -> Result<()> {
    for (table, n) in tables {
        let have = count(conn, table).await?;
        if have != *n {
            return Err(invalid(format!(
                "table {table}: {n} rows read from the source, {have} in the target"
            )));
        }
    }
    let target_sums = journal_sums(conn).await?;
    if &target_sums != source_sums {
        let off: Vec<String> = source_sums
            .keys()
            .chain(target_sums.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|s| source_sums.get(*s) != target_sums.get(*s))
            .take(5)
            .map(|s| {
                format!(
                    "{s}: source {:?}, target {:?}",
                    source_sums.get(s),
                    target_sums.get(s)
                )
            })
            .collect();
        return Err(invalid(format!(
            "per-SKU journal sums differ ({})",
            off.join("; ")
        )));
    }
    let balances: Vec<(String, i64)> = sqlx::query_as("SELECT sku, quantity FROM stock")
        .fetch_all(&mut *conn)
        .await?;
    let balances: BTreeMap<String, i64> = balances.into_iter().collect();
    for (sku, sum) in source_sums {
        if balances.get(sku) != Some(sum) {
            return Err(invalid(format!(
                "SKU {sku}: journal sum {sum}, target balance {:?}",
                balances.get(sku)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderName;
    use crate::ledger::StockChange;

    #[test]
    fn urls_name_files_and_servers_and_never_take_a_password() {
        assert_eq!(
            parse_database_url("sqlite:///var/lib/s%20k.db").unwrap(),
            Database::Sqlite("/var/lib/s k.db".into())
        );
        assert_eq!(
            parse_database_url("sqlite:rel.db").unwrap(),
            Database::Sqlite("rel.db".into())
        );
        assert_eq!(
            parse_database_url("sqlite://dir/rel.db").unwrap(),
            Database::Sqlite("dir/rel.db".into())
        );
        assert!(matches!(
            parse_database_url("postgres://u@h:5433/db").unwrap(),
            Database::Postgres { password: None, .. }
        ));
        let e = parse_database_url("postgres://u:hunter2@h:5433/db").unwrap_err();
        assert!(e.contains("password") && e.contains("PGPASSWORD"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(parse_database_url("mysql://h/db").is_err());
        assert!(parse_database_url("sqlite:").is_err());
    }

    #[test]
    fn the_same_database_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        std::fs::write(&a, "").unwrap();
        let via_dot = dir.path().join(".").join("a.db");
        assert!(same_database(&a.clone().into(), &via_dot.into()));
        assert!(!same_database(&a.into(), &dir.path().join("b.db").into()));
        let pg = |u: &str| parse_database_url(u).unwrap();
        assert!(same_database(
            &pg("postgres://a@Host/db"),
            &pg("postgres://b@host:5432/db")
        ));
        assert!(!same_database(
            &pg("postgres://a@host/db"),
            &pg("postgres://a@host/db2")
        ));
    }

    /// The copy list names every table the migrations make, on SQLite
    /// (and on PostgreSQL when the test cluster is there).
    #[tokio::test]
    async fn the_copy_list_is_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledgers = vec![Ledger::open(dir.path().join("l.db")).await.unwrap()];
        if std::env::var("STOKSYNC_TEST_PG_URL").is_ok_and(|u| !u.is_empty()) {
            let db = crate::ledger::test_support::fresh_postgres().await;
            ledgers.push(Ledger::connect(&db).await.unwrap());
        }
        let known: BTreeSet<String> = TABLES.iter().map(|t| t.to_string()).collect();
        assert_eq!(known.len(), TABLES.len(), "a table listed twice");
        for ledger in ledgers {
            let mut conn = ledger.read.acquire().await.unwrap();
            let have = schema_tables(&mut conn, ledger.backend).await.unwrap();
            assert_eq!(
                have, known,
                "copy.rs TABLES must name every table ({:?})",
                ledger.backend
            );
            for table in TABLES {
                let cols = columns(&mut conn, ledger.backend, table).await.unwrap();
                assert!(!cols.is_empty(), "{table}");
            }
        }
    }

    async fn filled(path: &Path) -> Ledger {
        let l = Ledger::open(path).await.unwrap();
        l.erp_movement("ÇANTA,1", StockChange::To(7), "count", "k1")
            .await
            .unwrap();
        l.erp_movement("ÇANTA,1", StockChange::By(-2), "sold", "k2")
            .await
            .unwrap();
        l.erp_movement("B", StockChange::To(3), "count", "k3")
            .await
            .unwrap();
        l.log_request(ProviderName::Bazaardan, 1_000).await.unwrap();
        l.log_request(ProviderName::Bazaardan, 1_001).await.unwrap();
        sqlx::query(
            "INSERT INTO push_attempts (provider, listing_id, variant_id, qty, tag, sent_at_ms)
             VALUES ('bazaardan', 'L1', '', 4, 'tag1', 5000)",
        )
        .execute(&l.write)
        .await
        .unwrap();
        // A push_log row with no attempt left (attempts go once settled).
        sqlx::query("INSERT INTO push_log (provider, sent_at_ms) VALUES ('bazaardan', 4000)")
            .execute(&l.write)
            .await
            .unwrap();
        l
    }

    async fn dump(l: &Ledger) -> Vec<(String, Vec<String>)> {
        let mut conn = l.read.acquire().await.unwrap();
        let mut out = Vec::new();
        for table in TABLES {
            let cols = columns(&mut conn, l.backend, table).await.unwrap();
            let list = cols
                .iter()
                .map(|(c, _)| format!("COALESCE(CAST(\"{c}\" AS TEXT), '<null>')"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let mut rows: Vec<String> =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT {list} FROM \"{table}\"")))
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
            rows.sort();
            out.push((table.to_string(), rows));
        }
        out
    }

    #[tokio::test]
    async fn a_copy_is_the_whole_ledger_and_only_into_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let source = filled(&dir.path().join("src.db")).await;
        let target = Ledger::open(dir.path().join("dst.db")).await.unwrap();

        let report = copy_ledger(&source, &target).await.unwrap();
        assert_eq!((report.movements, report.skus), (3, 2));
        assert_eq!(report.tables.len(), TABLES.len());
        assert!(report.to_string().contains("per-SKU sums equal"));
        assert_eq!(dump(&source).await, dump(&target).await);
        assert_eq!(target.stock_of("ÇANTA,1").await.unwrap(), Some(5));
        let push_log: Vec<i64> = sqlx::query_scalar("SELECT sent_at_ms FROM push_log ORDER BY 1")
            .fetch_all(&target.read)
            .await
            .unwrap();
        assert_eq!(
            push_log,
            [4000, 5000],
            "the source's rows, not the trigger's"
        );

        // New movements continue the ids.
        target
            .erp_movement("B", StockChange::By(1), "found", "k4")
            .await
            .unwrap();
        let ids: Vec<i64> = target
            .history("B")
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, [3, 4]);

        // A second copy into it is refused, naming what is there, and
        // changes nothing.
        let before = dump(&target).await;
        let e = copy_ledger(&source, &target).await.unwrap_err().to_string();
        assert!(
            e.contains("not empty") && e.contains("movements (4 rows)"),
            "{e}"
        );
        assert_eq!(dump(&target).await, before);

        // The same database, by two spellings, is refused before opening.
        let same = copy_database(
            &dir.path().join("src.db").into(),
            &dir.path().join(".").join("src.db").into(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(same.contains("same database"), "{same}");
        // A missing source is never created.
        let missing = dir.path().join("nope.db");
        let e = copy_database(&missing.clone().into(), &dir.path().join("x.db").into())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!missing.exists());
    }
}
