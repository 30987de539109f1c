//! Keeping the ledger file safe: an online backup, and the deep check that
//! the database is sound and every balance equals the sum of its journal.
//! Both only read, so they run beside a syncing daemon without stopping it.

use super::db;
use super::{Ledger, LedgerError, Result};
use serde::Serialize;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};

/// A SKU whose balance is not the sum of its journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct JournalMismatch {
    pub sku: String,
    /// `None`: movements exist but the SKU has no balance row.
    pub balance: Option<i64>,
    pub journal_sum: i64,
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub movements: i64,
    pub skus: i64,
}

impl Ledger {
    /// Writes a consistent copy of the ledger to `dest` with `VACUUM INTO`:
    /// one read transaction, so it is a snapshot as of its start, and in WAL
    /// mode the daemon's writes go on meanwhile. The copy is written beside
    /// `dest` under a temporary name and checked, then put in place: without
    /// `overwrite` an existing `dest` is refused (and never half-written).
    pub async fn backup_to(&self, dest: &Path, overwrite: bool) -> Result<BackupReport> {
        db(async move {
            let invalid = |m: String| LedgerError::Invalid(m);
            if self.backend == super::Backend::Postgres {
                return Err(invalid(
                    "`backup` copies a SQLite ledger; back up a PostgreSQL ledger with pg_dump \
                 (or `stoksync db copy` it into a SQLite file)"
                        .into(),
                ));
            }
            if !overwrite && dest.exists() {
                return Err(invalid(format!(
                    "{} already exists: choose another name, or give --force to replace it",
                    dest.display()
                )));
            }
            let dir = match dest.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dir.is_dir() {
                return Err(invalid(format!(
                    "cannot write the backup {}: folder {} does not exist",
                    dest.display(),
                    dir.display()
                )));
            }
            // A name in the same folder (so the final rename stays on one file
            // system) that does not exist yet: `VACUUM INTO` wants a new file.
            let tmp = tempfile::Builder::new()
                .prefix(".stoksync-backup-")
                .tempfile_in(&dir)
                .map_err(|e| invalid(format!("cannot write in {}: {e}", dir.display())))?
                .into_temp_path();
            let tmp_path = tmp.to_path_buf();
            std::fs::remove_file(&tmp_path)
                .map_err(|e| invalid(format!("cannot prepare {}: {e}", tmp_path.display())))?;
            let target = tmp_path
                .to_str()
                .ok_or_else(|| invalid(format!("{} is not a UTF-8 path", tmp_path.display())))?
                .to_string();
            let written = async {
                sqlx::query("VACUUM INTO $1")
                    .bind(&target)
                    .execute(&self.read)
                    .await?;
                check_copy(&tmp_path).await
            }
            .await;
            let (movements, skus) = match written {
                Ok(counts) => counts,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp_path);
                    return Err(e);
                }
            };
            let placed = if overwrite {
                std::fs::rename(&tmp_path, dest)
            } else {
                // A hard link fails when `dest` appeared meanwhile: never replaced.
                std::fs::hard_link(&tmp_path, dest)
            };
            let _ = std::fs::remove_file(&tmp_path);
            drop(tmp);
            placed
                .map_err(|e| invalid(format!("cannot write the backup {}: {e}", dest.display())))?;
            let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
            Ok(BackupReport {
                path: dest.to_path_buf(),
                bytes,
                movements,
                skus,
            })
        })
        .await
    }

    /// `PRAGMA integrity_check`: empty when the database is sound, else the
    /// problems SQLite found.
    pub async fn integrity_problems(&self) -> Result<Vec<String>> {
        db(async move {
            if self.backend == super::Backend::Postgres {
                // PostgreSQL checks its pages itself (checksums, WAL); there is
                // no integrity_check to run from a client.
                return Ok(Vec::new());
            }
            let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_all(&self.read)
                .await?;
            Ok(rows.into_iter().filter(|r| r != "ok").collect())
        })
        .await
    }

    /// Every SKU whose balance differs from the sum of its movements (an
    /// ERP set is journaled with its delta, so the sum holds for every kind).
    pub async fn journal_mismatches(&self) -> Result<Vec<JournalMismatch>> {
        db(async move {
            Ok(sqlx::query_as(
            "WITH j AS (SELECT sku, CAST(SUM(delta) AS BIGINT) AS total FROM movements GROUP BY sku)
             SELECT s.sku AS sku, s.quantity AS balance, COALESCE(j.total, 0) AS journal_sum
             FROM stock s LEFT JOIN j ON j.sku = s.sku
             WHERE s.quantity IS DISTINCT FROM COALESCE(j.total, 0)
             UNION ALL
             SELECT j.sku, NULL, j.total FROM j
             WHERE NOT EXISTS (SELECT 1 FROM stock s WHERE s.sku = j.sku)
             ORDER BY 1",
        )
        .fetch_all(&self.read)
        .await?)
        })
        .await
    }

    /// How many SKUs have a balance.
    pub async fn sku_count(&self) -> Result<i64> {
        db(async move {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM stock")
                .fetch_one(&self.read)
                .await?)
        })
        .await
    }
}

/// Opens the fresh copy on its own, read-only, and proves it is a sound
/// ledger: integrity check, journal sums. Returns its movement and SKU
/// counts.
async fn check_copy(path: &Path) -> Result<(i64, i64)> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await?;
    let bad: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stock s
         WHERE s.quantity IS NOT (SELECT COALESCE(SUM(delta), 0) FROM movements m WHERE m.sku = s.sku)",
    )
    .fetch_one(&mut conn)
    .await?;
    let movements: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM movements")
        .fetch_one(&mut conn)
        .await?;
    let skus: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM stock")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    if integrity != ["ok"] || bad != 0 {
        return Err(LedgerError::Invalid(format!(
            "the backup copy failed its check ({}; {bad} SKU(s) off their journal); nothing written",
            integrity.join("; ")
        )));
    }
    Ok((movements, skus))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::StockChange;
    use crate::ledger::test_support::temp_ledger;

    #[tokio::test]
    async fn a_backup_is_a_sound_copy_and_never_replaces_a_file_unasked() {
        let (dir, ledger) = temp_ledger().await;
        ledger
            .erp_movement("ÇANTA,1", StockChange::To(7), "count", "k1")
            .await
            .unwrap();
        ledger
            .erp_movement("ÇANTA,1", StockChange::By(-2), "sold", "k2")
            .await
            .unwrap();
        let dest = dir.path().join("copy.db");
        if ledger.backend() == crate::ledger::Backend::Postgres {
            let e = ledger
                .backup_to(&dest, false)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains("pg_dump"), "{e}");
            assert!(!dest.exists());
            return;
        }
        let report = ledger.backup_to(&dest, false).await.unwrap();
        assert_eq!((report.movements, report.skus), (2, 1));
        let copy = Ledger::open(&dest).await.unwrap();
        assert_eq!(copy.stock_of("ÇANTA,1").await.unwrap(), Some(5));
        assert!(copy.journal_mismatches().await.unwrap().is_empty());
        copy.close().await;

        let before = std::fs::read(&dest).unwrap();
        let err = ledger.backup_to(&dest, false).await.unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&dest).unwrap(), before, "left as it was");
        ledger.backup_to(&dest, true).await.unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".stoksync-backup-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn the_deep_check_finds_a_balance_off_its_journal() {
        let (_dir, ledger) = temp_ledger().await;
        for (sku, key) in [("A", "k1"), ("B", "k2")] {
            ledger
                .erp_movement(sku, StockChange::To(4), "count", key)
                .await
                .unwrap();
        }
        assert!(ledger.integrity_problems().await.unwrap().is_empty());
        assert!(ledger.journal_mismatches().await.unwrap().is_empty());
        sqlx::query("UPDATE stock SET quantity = 9 WHERE sku = 'B'")
            .execute(&ledger.write)
            .await
            .unwrap();
        assert_eq!(
            ledger.journal_mismatches().await.unwrap(),
            vec![JournalMismatch {
                sku: "B".into(),
                balance: Some(9),
                journal_sum: 4
            }]
        );
        sqlx::query("DELETE FROM stock WHERE sku = 'A'")
            .execute(&ledger.write)
            .await
            .unwrap();
        let bad = ledger.journal_mismatches().await.unwrap();
        assert_eq!(bad[0].sku, "A");
        assert_eq!(bad[0].balance, None);
    }
}
