//! The SQLite stock ledger: journal, balances, listings, order items, poll
//! cursors, request log.
//!
//! Rules that keep it a ledger:
//! - one writer connection; every write transaction starts with
//!   `BEGIN IMMEDIATE` (a deferred transaction that reads then writes fails
//!   with "database is locked" whatever `busy_timeout` says);
//! - WAL and `synchronous=FULL`: a confirmed commit survives power loss;
//! - every movement has an idempotency key; journal and balance change in the
//!   same transaction, so applying an event twice changes nothing.

// Each file uses only those above it in this order (tests/architecture.rs
// checks there is no cycle): journal <- bundles <- relink <- stock,
// catalog <- orders; links, changes, maintenance and alerts stand alone;
// backlog and shadow use only journal's `json_list`; copy uses maintenance
// (the journal check) only through `Ledger`.
mod alerts;
mod backend;
mod backlog;
mod bundles;
mod catalog;
mod changes;
mod copy;
mod exec;
mod journal;
mod lease;
mod links;
mod maintenance;
mod orders;
mod relink;
mod shadow;
mod stock;

pub use alerts::{OpenAlertRow, OutboxRow};
pub(crate) use backend::sql;
pub use backend::{Backend, Database, Role};
use backend::{Fence, encode_path};
pub use backlog::{ListingPast, PendingCheck, PendingHistory, PendingRecord, PendingWrite, Step};
pub use bundles::{
    Bundle, BundleComponent, BundleRow, DefinitionReport, Parts, RuleRow, SkuRule, bundle_quantity,
    flatten,
};
pub use catalog::{CatalogProblem, DiscoverReport, DuplicateLink, Sighting, hand_made};
pub use changes::PlanVersion;
pub use copy::{CopyReport, copy_database, copy_ledger, parse_database_url};
use exec::db;
pub use exec::{Via, run_on_own_runtime};
pub use journal::{MovementKind, StockChange};
pub use lease::{Claim, LeaseRow, StandbyRow};
pub use links::{LinkChange, LinkReport, LinkRow};
pub use maintenance::{BackupReport, JournalMismatch};
pub use orders::{ApplyReport, KnownItem};
pub use stock::check_reason;

use crate::domain::{ListingRef, ProviderName, now_ms};
use serde::Serialize;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Row, Transaction};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the ledger database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate the ledger database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
    /// This process held the active lease (epoch `held`) and another has
    /// taken it since: it must not write.
    #[error(
        "this daemon lost the active lease (held epoch {held}, now {current}): it writes nothing"
    )]
    Fenced { held: i64, current: i64 },
    /// Rows of an import refused, each with its line; nothing was imported.
    #[error("{} row(s) refused, nothing imported:{}", .0.len(), .0.iter().map(|(l, m)| format!("\n  line {l}: {m}")).collect::<String>())]
    Refused(Vec<(usize, String)>),
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// How long a writer waits for another process's write lock (e.g. a CLI
/// `stock set` while the daemon runs) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// Request log rows older than this are pruned (status shows minute and day).
const REQUEST_LOG_KEEP_MS: i64 = 2 * 24 * 3600 * 1000;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

fn migrator(backend: Backend) -> &'static sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATOR,
        Backend::Postgres => &POSTGRES_MIGRATOR,
    }
}

/// The key of the PostgreSQL transaction lock every write transaction takes
/// (`pg_advisory_xact_lock`): "stoksync" in ASCII.
const WRITER_LOCK: i64 = 0x73746f6b73796e63;

/// Handle to the ledger. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    write: AnyPool,
    read: AnyPool,
    backend: Backend,
    fence: Fence,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct StockRow {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Movement {
    pub id: i64,
    pub idempotency_key: String,
    pub sku: String,
    pub delta: i64,
    pub kind: String,
    pub source: String,
    pub reason: String,
    pub quantity_before: i64,
    pub quantity_after: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingRow {
    pub sku: String,
    pub provider: ProviderName,
    pub listing_id: String,
    pub variant_id: String,
    pub origin: String,
    pub confirmed_qty: Option<i64>,
    pub last_error: Option<String>,
}

/// A listing as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingState {
    pub listing: ListingRef,
    pub sku: String,
    /// `None` when the SKU has no row in the ledger.
    pub ledger_qty: Option<i64>,
    pub confirmed_qty: Option<i64>,
    pub rejected_qty: Option<i64>,
    /// Pushes of ours to it are unsettled (an answer was lost): it may show
    /// any of their values, so `confirmed_qty` alone cannot be trusted.
    pub unsettled: bool,
    /// The SKU's rule row for this provider (`rules import`), if any.
    pub rule: Option<crate::rules::RuleSet>,
}

/// A listing of one SKU as `explain` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ListingDetail {
    pub listing: ListingRef,
    pub origin: String,
    pub confirmed_qty: Option<i64>,
    pub confirmed_at_ms: Option<i64>,
    pub rejected_qty: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderState {
    pub cursor: Option<String>,
    pub epoch_ms: Option<i64>,
    pub last_poll_ok_ms: Option<i64>,
    pub last_push_ok_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct UnlinkedItem {
    pub provider: String,
    pub item_key: String,
    pub order_ref: String,
    pub listing_id: String,
    pub variant_id: String,
    pub sku_hint: Option<String>,
    pub quantity: i64,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AnomalyRow {
    pub provider: String,
    pub item_key: String,
    pub message: String,
}

/// What the push of one listing ended as, to record.
pub enum PushRecord<'a> {
    Confirmed(i64),
    /// Confirmed, and the provider said what the listing showed before (a
    /// difference not made by our writes was made by hand).
    ConfirmedSeen {
        qty: i64,
        sighting: &'a Sighting,
    },
    Rejected {
        wanted: i64,
        reason: &'a str,
    },
    /// The provider confirmed `qty`, but which of our earlier writes it
    /// carried out (and so what, if anything, was changed by hand) cannot
    /// be told yet: the attempt `tag` stays for a later read or answer to
    /// settle, and the listing counts as showing `qty` meanwhile (it is not
    /// pushed again for this).
    Answered {
        qty: i64,
        tag: &'a str,
    },
    Failed(&'a str),
}

impl Ledger {
    /// Opens (creating if missing) the SQLite database at `path` and applies
    /// migrations.
    pub async fn open(database: impl Into<Database>) -> Result<Ledger> {
        Ledger::connect(&database.into()).await
    }

    /// Opens the ledger `database` names (a SQLite file, created if
    /// missing, or a PostgreSQL database) and applies its migrations.
    pub async fn connect(database: &Database) -> Result<Ledger> {
        db(async move { Ledger::connect_shared(database, crate::config::DEFAULT_LEASE_TTL).await })
            .await
    }

    /// [`Ledger::connect`] for daemons sharing a PostgreSQL ledger under
    /// leases of `lease_ttl`: the server ends any transaction left idle for
    /// half a lease (a paused or cut-off daemon's), so its writer lock
    /// never blocks the standby's takeover, and the transaction can never
    /// commit after it.
    pub async fn connect_shared(database: &Database, lease_ttl: Duration) -> Result<Ledger> {
        db(async move {
            static DRIVERS: std::sync::Once = std::sync::Once::new();
            DRIVERS.call_once(sqlx::any::install_default_drivers);
            let open_err = |source| LedgerError::Open {
                path: database.to_string(),
                source,
            };
            match database {
                Database::Sqlite(path) => {
                    if let Some(dir) = path.parent()
                        && !dir.as_os_str().is_empty()
                        && !dir.exists()
                    {
                        return Err(LedgerError::Invalid(format!(
                            "cannot open the ledger database {}: folder {} does not exist",
                            path.display(),
                            dir.display()
                        )));
                    }
                    let url = |mode: &str| -> Result<AnyConnectOptions> {
                        let abs = std::path::absolute(path).map_err(|e| {
                            LedgerError::Invalid(format!(
                                "cannot open the ledger database {}: {e}",
                                path.display()
                            ))
                        })?;
                        let encoded = encode_path(&abs.to_string_lossy());
                        Ok(format!("sqlite://{encoded}?mode={mode}").parse()?)
                    };
                    // WAL and `synchronous=FULL`: a confirmed commit survives
                    // power loss; the busy timeout lets a CLI command wait for
                    // the daemon's write lock.
                    let pragmas = format!(
                        "PRAGMA busy_timeout = {}; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                        BUSY_TIMEOUT.as_millis()
                    );
                    let write_pragmas = pragmas.clone();
                    // No ping before each use: a file does not go away like a
                    // server connection, and the ping is a round trip to the
                    // connection's thread on every statement.
                    let write = AnyPoolOptions::new()
                        .test_before_acquire(false)
                        .max_connections(1)
                        .min_connections(1)
                        .acquire_timeout(Duration::from_secs(60))
                        .after_connect(move |conn, _| {
                            let sql = write_pragmas.clone();
                            Box::pin(async move {
                                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                                    .execute(&mut *conn)
                                    .await?;
                                sqlx::raw_sql("PRAGMA journal_mode = WAL")
                                    .execute(conn)
                                    .await?;
                                Ok(())
                            })
                        })
                        .connect_with(url("rwc")?)
                        .await
                        .map_err(open_err)?;
                    SQLITE_MIGRATOR.run(&write).await?;
                    let read = AnyPoolOptions::new()
                        .test_before_acquire(false)
                        .max_connections(2)
                        .acquire_timeout(Duration::from_secs(60))
                        .after_connect(move |conn, _| {
                            let sql = pragmas.clone();
                            Box::pin(async move {
                                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                                    .execute(conn)
                                    .await?;
                                Ok(())
                            })
                        })
                        .connect_with(url("ro")?)
                        .await
                        .map_err(open_err)?;
                    Ok(Ledger {
                        write,
                        read,
                        backend: Backend::Sqlite,
                        fence: Fence::default(),
                    })
                }
                Database::Postgres { url, password } => {
                    let mut url: url::Url = url.parse().map_err(|e| {
                        LedgerError::Invalid(format!("the database url is not a URL: {e}"))
                    })?;
                    if let Some(pw) = password {
                        url.set_password(Some(pw.expose())).map_err(|()| {
                            LedgerError::Invalid("the database url cannot carry a password".into())
                        })?;
                    }
                    let opts: AnyConnectOptions = url.as_str().parse()?;
                    // One pool: PostgreSQL serves many connections; writers
                    // queue on a transaction lock (see `begin`).
                    let idle = format!(
                        "SET idle_in_transaction_session_timeout = {}",
                        (lease_ttl / 2).as_millis().max(500)
                    );
                    let pool = AnyPoolOptions::new()
                        .max_connections(8)
                        .after_connect(move |conn, _| {
                            let sql = idle.clone();
                            Box::pin(async move {
                                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                                    .execute(conn)
                                    .await?;
                                Ok(())
                            })
                        })
                        .acquire_timeout(Duration::from_secs(60))
                        .connect_with(opts)
                        .await
                        .map_err(open_err)?;
                    POSTGRES_MIGRATOR.run(&pool).await?;
                    Ok(Ledger {
                        write: pool.clone(),
                        read: pool,
                        backend: Backend::Postgres,
                        fence: Fence::default(),
                    })
                }
            }
        })
        .await
    }

    /// Which database this ledger is in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction that holds the write lock from its first
    /// statement: SQLite's `BEGIN IMMEDIATE`; on PostgreSQL a transaction
    /// advisory lock every writer takes, so writers run one at a time as
    /// they do on SQLite. A ledger that holds the active lease
    /// ([`Ledger::fenced`]) refuses, inside the transaction, to write once
    /// another process has taken the lease.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>> {
        db(async move {
            let mut tx = self.begin_unfenced().await?;
            self.fence.check(&mut tx).await?;
            Ok(tx)
        })
        .await
    }

    /// A write transaction without the lease check: for taking, renewing
    /// and giving up the lease itself.
    async fn begin_unfenced(&self) -> Result<Transaction<'static, Any>> {
        db(async move {
            Ok(match self.backend {
                Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
                Backend::Postgres => {
                    let mut tx = self.write.begin().await?;
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(WRITER_LOCK)
                        .execute(&mut *tx)
                        .await?;
                    tx
                }
            })
        })
        .await
    }

    /// The same database with a lease state of its own: another daemon of
    /// a pair, in tests.
    pub fn with_own_fence(&self) -> Ledger {
        Ledger {
            fence: Fence::default(),
            ..self.clone()
        }
    }

    pub async fn close(&self) {
        db(async move {
            self.read.close().await;
            self.write.close().await;
        })
        .await
    }

    // ---- stock ----------------------------------------------------------

    pub async fn list_stock(&self) -> Result<Vec<StockRow>> {
        db(async move {
            Ok(
                sqlx::query_as("SELECT sku, quantity FROM stock ORDER BY sku")
                    .fetch_all(&self.read)
                    .await?,
            )
        })
        .await
    }

    pub async fn stock_of(&self, sku: &str) -> Result<Option<i64>> {
        db(async move {
            Ok(
                sqlx::query_scalar("SELECT quantity FROM stock WHERE sku = $1")
                    .bind(sku)
                    .fetch_optional(&self.read)
                    .await?,
            )
        })
        .await
    }

    pub async fn history(&self, sku: &str) -> Result<Vec<Movement>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT id, idempotency_key, sku, delta, kind, source, reason, quantity_before,
                    quantity_after, created_at_ms
             FROM movements WHERE sku = $1 ORDER BY id",
            )
            .bind(sku)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// The last `limit` movements of `sku`, newest first.
    pub async fn recent_history(&self, sku: &str, limit: i64) -> Result<Vec<Movement>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT id, idempotency_key, sku, delta, kind, source, reason, quantity_before,
                    quantity_after, created_at_ms
             FROM movements WHERE sku = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(sku)
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// The listings linked to `sku`, with what each provider last said.
    pub async fn listing_details(&self, sku: &str) -> Result<Vec<ListingDetail>> {
        db(async move {
            let rows = sqlx::query(
                "SELECT provider, listing_id, variant_id, origin, confirmed_qty, confirmed_at_ms,
                    rejected_qty, last_error
             FROM listings WHERE sku = $1 ORDER BY provider, listing_id, variant_id",
            )
            .bind(sku)
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|r| {
                    let p: String = r.get(0);
                    Ok(ListingDetail {
                        listing: ListingRef {
                            provider: parse_provider(&p)?,
                            listing_id: r.get(1),
                            variant_id: r.get(2),
                        },
                        origin: r.get(3),
                        confirmed_qty: r.get(4),
                        confirmed_at_ms: r.get(5),
                        rejected_qty: r.get(6),
                        last_error: r.get(7),
                    })
                })
                .collect()
        })
        .await
    }

    pub async fn movement_count(&self) -> Result<i64> {
        db(async move {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM movements")
                .fetch_one(&self.read)
                .await?)
        })
        .await
    }

    /// Movements whose idempotency key starts with `prefix` (e.g. `bazaardan/item/`).
    pub async fn movements_with_prefix(&self, prefix: &str) -> Result<Vec<Movement>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT id, idempotency_key, sku, delta, kind, source, reason, quantity_before,
                    quantity_after, created_at_ms
             FROM movements WHERE substr(idempotency_key, 1, length($1)) = $1 ORDER BY id",
            )
            .bind(prefix)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    // ---- listings -------------------------------------------------------

    pub async fn list_mappings(&self) -> Result<Vec<MappingRow>> {
        db(async move {
            let rows = sqlx::query(
                "SELECT sku, provider, listing_id, variant_id, origin, confirmed_qty, last_error
             FROM listings ORDER BY sku, provider, listing_id, variant_id",
            )
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|r| {
                    let p: String = r.get(1);
                    Ok(MappingRow {
                        sku: r.get(0),
                        provider: parse_provider(&p)?,
                        listing_id: r.get(2),
                        variant_id: r.get(3),
                        origin: r.get(4),
                        confirmed_qty: r.get(5),
                        last_error: r.get(6),
                    })
                })
                .collect()
        })
        .await
    }

    /// Every listing of `provider` with its SKU's ledger quantity.
    pub async fn listing_states(&self, provider: ProviderName) -> Result<Vec<ListingState>> {
        db(async move {
            let rows = sqlx::query(
                "SELECT l.listing_id, l.variant_id, l.sku,
                        COALESCE(s.quantity,
                            -- a bundle: what its parts make, if each has stock
                            (SELECT CASE WHEN COUNT(cs.sku) = COUNT(*)
                                         THEN MIN(CASE WHEN cs.quantity > 0 THEN cs.quantity ELSE 0 END
                                                  / bp.quantity) END
                             FROM bundle_parts bp LEFT JOIN stock cs ON cs.sku = bp.sku
                             WHERE bp.bundle_sku = l.sku)),
                        -- what the newest answered push said it shows, else
                        -- the last confirmed value
                        COALESCE((SELECT a.answered_qty FROM push_attempts a
                                  WHERE a.provider = l.provider AND a.listing_id = l.listing_id
                                    AND a.variant_id = l.variant_id
                                  ORDER BY a.id DESC LIMIT 1),
                                 l.confirmed_qty),
                        l.rejected_qty,
                        -- the newest push has no answer yet: it may show
                        -- anything (an answer to a later push than an
                        -- unanswered one says what it shows since)
                        CASE WHEN EXISTS (SELECT 1 FROM push_attempts a WHERE a.provider = l.provider
                                AND a.listing_id = l.listing_id AND a.variant_id = l.variant_id
                                AND a.answered_qty IS NULL
                                AND a.id = (SELECT MAX(b.id) FROM push_attempts b
                                            WHERE b.provider = l.provider AND b.listing_id = l.listing_id
                                              AND b.variant_id = l.variant_id))
                             THEN 1 ELSE 0 END,
                        CASE WHEN r.sku IS NOT NULL THEN 1 ELSE 0 END, r.safety_stock, r.zero_below, r.percent, r.max_quantity,
                        r.frozen
                 FROM listings l LEFT JOIN stock s ON s.sku = l.sku
                 LEFT JOIN sku_rules r ON r.sku = l.sku AND r.provider = l.provider
                 WHERE l.provider = $1 ORDER BY l.listing_id, l.variant_id",
            )
            .bind(provider.as_str())
            .fetch_all(&self.read)
            .await?;
            Ok(rows
                .iter()
                .map(|r| ListingState {
                    listing: ListingRef {
                        provider,
                        listing_id: r.get(0),
                        variant_id: r.get(1),
                    },
                    sku: r.get(2),
                    ledger_qty: r.get(3),
                    confirmed_qty: r.get(4),
                    rejected_qty: r.get(5),
                    unsettled: r.get::<i64, _>(6) != 0,
                    rule: (r.get::<i64, _>(7) != 0).then(|| rule_set(r, 8)),
                })
                .collect())
        })
        .await
    }

    /// Records how a push ended; returns the movements it wrote (a change
    /// made by hand that the provider's answer revealed). A confirmed push
    /// settles every unsettled push of the listing; a refused or failed one
    /// leaves them (a refusal says nothing of earlier lost answers).
    pub async fn record_push(&self, listing: &ListingRef, record: PushRecord<'_>) -> Result<usize> {
        db(async move { self.record_pushes(&[(listing, record)]).await }).await
    }

    /// Records how each push of one batch ended, in one transaction: a
    /// batch's answer is recorded whole or not at all, and a batch of 100
    /// costs one commit, not 100. Returns the movements written.
    pub async fn record_pushes(&self, records: &[(&ListingRef, PushRecord<'_>)]) -> Result<usize> {
        db(async move {
            let now = now_ms();
            let mut tx = self.begin().await?;
            let mut movements = 0;
            for (listing, record) in records {
                let q = match record {
                    PushRecord::Confirmed(qty) | PushRecord::ConfirmedSeen { qty, .. } => {
                        if let PushRecord::ConfirmedSeen { sighting, .. } = record {
                            movements += catalog::observe(&mut tx, listing, sighting).await?;
                        }
                        catalog::settle(&mut tx, listing).await?;
                        sqlx::query(
                            "UPDATE listings SET confirmed_qty = $1, confirmed_at_ms = $2, rejected_qty = NULL,
                                    last_error = NULL
                             WHERE provider = $3 AND listing_id = $4 AND variant_id = $5",
                        )
                        .bind(*qty)
                        .bind(now)
                    }
                    PushRecord::Rejected { wanted, reason } => sqlx::query(
                        "UPDATE listings SET rejected_qty = $1, last_error = $2
                         WHERE provider = $3 AND listing_id = $4 AND variant_id = $5",
                    )
                    .bind(*wanted)
                    .bind(reason.to_string()),
                    PushRecord::Answered { qty, tag } => {
                        sqlx::query("UPDATE push_attempts SET answered_qty = $1 WHERE tag = $2")
                            .bind(*qty)
                            .bind(*tag)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query(
                            "UPDATE listings SET last_error = $1
                             WHERE provider = $2 AND listing_id = $3 AND variant_id = $4",
                        )
                        .bind(
                            "confirmed, but not yet told apart from hand edits; settled by the next answer or read",
                        )
                    }
                    PushRecord::Failed(reason) => sqlx::query(
                        "UPDATE listings SET last_error = $1
                         WHERE provider = $2 AND listing_id = $3 AND variant_id = $4",
                    )
                    .bind(reason.to_string()),
                };
                q.bind(listing.provider.as_str())
                    .bind(&listing.listing_id)
                    .bind(&listing.variant_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(movements)
        })
        .await
    }

    // ---- provider state -------------------------------------------------

    /// Every provider's state at once (the alerts evaluator's read).
    pub async fn provider_states(&self) -> Result<HashMap<ProviderName, ProviderState>> {
        db(async move {
            let rows = sqlx::query(
                "SELECT provider, cursor, epoch_ms, last_poll_ok_ms, last_push_ok_ms, last_error,
                        last_error_ms
                 FROM provider_state",
            )
            .fetch_all(&self.read)
            .await?;
            let mut out = HashMap::new();
            for r in rows {
                let p: String = r.get(0);
                out.insert(
                    parse_provider(&p)?,
                    ProviderState {
                        cursor: r.get(1),
                        epoch_ms: r.get(2),
                        last_poll_ok_ms: r.get(3),
                        last_push_ok_ms: r.get(4),
                        last_error: r.get(5),
                        last_error_ms: r.get(6),
                    },
                );
            }
            Ok(out)
        })
        .await
    }

    pub async fn provider_state(&self, provider: ProviderName) -> Result<ProviderState> {
        db(async move {
            let row = sqlx::query(
            "SELECT cursor, epoch_ms, last_poll_ok_ms, last_push_ok_ms, last_error, last_error_ms
             FROM provider_state WHERE provider = $1",
        )
        .bind(provider.as_str())
        .fetch_optional(&self.read)
        .await?;
            Ok(row
                .map(|r| ProviderState {
                    cursor: r.get(0),
                    epoch_ms: r.get(1),
                    last_poll_ok_ms: r.get(2),
                    last_push_ok_ms: r.get(3),
                    last_error: r.get(4),
                    last_error_ms: r.get(5),
                })
                .unwrap_or_default())
        })
        .await
    }

    /// The moment before which orders count as already reflected in the
    /// imported stock. Set once, at the first poll of a provider.
    pub async fn epoch(&self, provider: ProviderName, candidate_ms: i64) -> Result<i64> {
        db(async move {
            let mut tx = self.begin().await?;
            ensure_state_row(&mut tx, provider).await?;
            sqlx::query(
                "UPDATE provider_state SET epoch_ms = $1 WHERE provider = $2 AND epoch_ms IS NULL",
            )
            .bind(candidate_ms)
            .bind(provider.as_str())
            .execute(&mut *tx)
            .await?;
            let epoch: i64 =
                sqlx::query_scalar("SELECT epoch_ms FROM provider_state WHERE provider = $1")
                    .bind(provider.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(epoch)
        })
        .await
    }

    pub async fn record_provider_error(&self, provider: ProviderName, error: &str) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            ensure_state_row(&mut tx, provider).await?;
            sqlx::query(
                "UPDATE provider_state SET last_error = $1, last_error_ms = $2 WHERE provider = $3",
            )
            .bind(error.to_string())
            .bind(now_ms())
            .bind(provider.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    pub async fn record_push_ok(&self, provider: ProviderName) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            ensure_state_row(&mut tx, provider).await?;
            sqlx::query("UPDATE provider_state SET last_push_ok_ms = $1 WHERE provider = $2")
                .bind(now_ms())
                .bind(provider.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    // ---- request log ----------------------------------------------------

    /// Records one HTTP attempt to `provider`.
    pub async fn log_request(&self, provider: ProviderName, at_ms: i64) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            let epoch = self.fence.epoch();
            sqlx::query("INSERT INTO request_log (provider, at_ms, epoch) VALUES ($1, $2, $3)")
                .bind(provider.as_str())
                .bind(at_ms)
                .bind((epoch != 0).then_some(epoch))
                .execute(&mut *tx)
                .await?;
            // Prune now and then: cheap with the index, and keeps the table small.
            if at_ms % 64 == 0 {
                sqlx::query("DELETE FROM request_log WHERE at_ms < $1")
                    .bind(at_ms - REQUEST_LOG_KEEP_MS)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Every request row as (time, epoch), oldest first.
    pub async fn request_epochs(&self) -> Result<Vec<(i64, Option<i64>)>> {
        db(async move {
            Ok(
                sqlx::query_as("SELECT at_ms, epoch FROM request_log ORDER BY at_ms")
                    .fetch_all(&self.read)
                    .await?,
            )
        })
        .await
    }

    /// When each request to `provider` since `since_ms` was granted, oldest
    /// first (the limiter reloads its window from these after a restart).
    pub async fn request_times_since(
        &self,
        provider: ProviderName,
        since_ms: i64,
    ) -> Result<Vec<i64>> {
        db(async move {
            Ok(sqlx::query_scalar(
                "SELECT at_ms FROM request_log WHERE provider = $1 AND at_ms > $2 ORDER BY at_ms",
            )
            .bind(provider.as_str())
            .bind(since_ms)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// Writes down a pause `provider` asked for; a later, longer pause wins.
    pub async fn save_pause(
        &self,
        provider: ProviderName,
        until_ms: i64,
        reason: &str,
    ) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO provider_pauses (provider, until_ms, reason, set_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (provider) DO UPDATE SET until_ms = excluded.until_ms,
                     reason = excluded.reason, set_at_ms = excluded.set_at_ms
                 WHERE excluded.until_ms > provider_pauses.until_ms
                    OR provider_pauses.until_ms < excluded.set_at_ms",
            )
            .bind(provider.as_str())
            .bind(until_ms)
            .bind(reason)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The end of the last pause `provider` asked for, if any was saved.
    pub async fn pause_of(&self, provider: ProviderName) -> Result<Option<i64>> {
        db(async move {
            Ok(
                sqlx::query_scalar("SELECT until_ms FROM provider_pauses WHERE provider = $1")
                    .bind(provider.as_str())
                    .fetch_optional(&self.read)
                    .await?,
            )
        })
        .await
    }

    /// When the first request of `provider` since `since_ms` was granted.
    pub async fn first_request_since(
        &self,
        provider: ProviderName,
        since_ms: i64,
    ) -> Result<Option<i64>> {
        db(async move {
            Ok(sqlx::query_scalar(
                "SELECT MIN(at_ms) FROM request_log WHERE provider = $1 AND at_ms >= $2",
            )
            .bind(provider.as_str())
            .bind(since_ms)
            .fetch_one(&self.read)
            .await?)
        })
        .await
    }

    pub async fn requests_since(&self, provider: ProviderName, since_ms: i64) -> Result<i64> {
        db(async move {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM request_log WHERE provider = $1 AND at_ms >= $2",
            )
            .bind(provider.as_str())
            .bind(since_ms)
            .fetch_one(&self.read)
            .await?)
        })
        .await
    }

    // ---- reports --------------------------------------------------------

    pub async fn unlinked_items(&self) -> Result<Vec<UnlinkedItem>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT provider, item_key, order_ref, listing_id, variant_id, sku_hint, quantity, status
                 FROM order_items WHERE sku IS NULL AND baseline = 0 ORDER BY provider, first_seen_ms",
            )
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// One trivial query: whether the database answers (`/readyz`).
    pub async fn ping(&self) -> Result<()> {
        db(async move {
            sqlx::query("SELECT 1").execute(&self.read).await?;
            Ok(())
        })
        .await
    }

    /// The newest `limit` movements, newest first (the status page).
    pub async fn recent_movements(&self, limit: i64) -> Result<Vec<Movement>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT id, idempotency_key, sku, delta, kind, source, reason, quantity_before,
                    quantity_after, created_at_ms
             FROM movements ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// Movements in the journal by (source, kind), for `/metrics`.
    pub async fn movement_counts(&self) -> Result<Vec<(String, String, i64)>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT source, kind, COUNT(*) FROM movements GROUP BY source, kind ORDER BY source, kind",
            )
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    pub async fn oversold(&self) -> Result<Vec<StockRow>> {
        db(async move {
            Ok(
                sqlx::query_as("SELECT sku, quantity FROM stock WHERE quantity < 0 ORDER BY sku")
                    .fetch_all(&self.read)
                    .await?,
            )
        })
        .await
    }

    pub async fn anomalies(&self) -> Result<Vec<AnomalyRow>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT provider, item_key, message FROM anomalies ORDER BY provider, seen_at_ms",
            )
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }
}

pub(crate) async fn ensure_state_row(
    tx: &mut Transaction<'static, Any>,
    provider: ProviderName,
) -> Result<()> {
    sqlx::query("INSERT INTO provider_state (provider) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(provider.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The rule fields of a row from column `at` on, in the order of
/// [`crate::rules::Field::ALL`].
pub(crate) fn rule_set(r: &sqlx::any::AnyRow, at: usize) -> crate::rules::RuleSet {
    let mut set = crate::rules::RuleSet::default();
    for (i, f) in crate::rules::Field::ALL.into_iter().enumerate() {
        set.set(f, r.get(at + i));
    }
    set
}

fn parse_provider(s: &str) -> Result<ProviderName> {
    ProviderName::parse(s)
        .ok_or_else(|| LedgerError::Invalid(format!("unknown provider `{s}` in the database")))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::{Database, Ledger};

    /// A ledger for one test: a real temporary SQLite file (not
    /// `:memory:`: pools of in-memory databases do not share data), or,
    /// with `STOKSYNC_TEST_BACKEND=postgres`, a fresh database in the
    /// cluster `STOKSYNC_TEST_PG_URL` names (`.ci/run` runs the ledger's
    /// tests that way too).
    pub async fn temp_ledger() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = if std::env::var("STOKSYNC_TEST_BACKEND").as_deref() == Ok("postgres") {
            Ledger::connect(&fresh_postgres().await).await.unwrap()
        } else {
            Ledger::open(&dir.path().join("ledger.db")).await.unwrap()
        };
        (dir, ledger)
    }

    /// A new, empty database in the test cluster.
    pub async fn fresh_postgres() -> Database {
        use sqlx::Connection;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::var("STOKSYNC_TEST_PG_URL")
            .expect("STOKSYNC_TEST_BACKEND=postgres needs STOKSYNC_TEST_PG_URL");
        let name = format!(
            "stoksync_unit_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            fastrand::u32(..)
        );
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url: url::Url = base.parse().unwrap();
        url.set_path(&name);
        Database::Postgres {
            url: url.to_string(),
            password: None,
        }
    }
}
