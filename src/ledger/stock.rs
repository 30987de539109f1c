//! ERP counts and adjustments: the movements the seller's own system makes,
//! each once per idempotency key. A new SKU may let waiting order lines
//! apply, in the same transaction.

use super::bundles::refuse_bundle;
use super::db;
use super::journal::{MovementKind, NewMovement, StockChange, apply_movement};
use super::relink::relink_in;
use super::{Ledger, LedgerError, Result};

/// Outcome of an ERP movement: the quantity after, and whether this call
/// applied it (false: the idempotency key had been applied before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErpOutcome {
    pub quantity: i64,
    pub applied: bool,
    /// What the movement under this key changed (also when an earlier
    /// call applied it): a count tells the ERP what it moved.
    pub delta: i64,
}

impl Ledger {
    /// Sets each SKU to an ERP count, all rows in one transaction.
    /// `batch` makes the idempotency keys unique to this import.
    pub async fn import_stock(
        &self,
        rows: &[(String, i64)],
        batch: &str,
        reason: &str,
    ) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            for (sku, qty) in rows {
                check_sku(sku)?;
                check_count(*qty)?;
                refuse_bundle(&mut tx, sku).await?;
                let key = format!("erp/import/{batch}/{sku}");
                apply_movement(
                    &mut tx,
                    NewMovement {
                        key: &key,
                        sku,
                        change: StockChange::To(*qty),
                        kind: MovementKind::ErpSet,
                        source: "erp",
                        reason,
                    },
                )
                .await?;
            }
            relink_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Sets `sku` to an ERP count (`To`) or moves it (`By`), once per `key`.
    pub async fn erp_movement(
        &self,
        sku: &str,
        change: StockChange,
        reason: &str,
        key: &str,
    ) -> Result<ErpOutcome> {
        db(async move {
            check_sku(sku)?;
            check_reason(reason)?;
            let kind = match change {
                StockChange::To(q) => {
                    check_count(q)?;
                    MovementKind::ErpSet
                }
                StockChange::By(_) => MovementKind::ErpAdjust,
            };
            let mut tx = self.begin().await?;
            refuse_bundle(&mut tx, sku).await?;
            let applied = apply_movement(
                &mut tx,
                NewMovement {
                    key,
                    sku,
                    change,
                    kind,
                    source: "erp",
                    reason,
                },
            )
            .await?;
            let quantity: i64 = sqlx::query_scalar("SELECT quantity FROM stock WHERE sku = $1")
                .bind(sku)
                .fetch_one(&mut *tx)
                .await?;
            let delta: i64 = sqlx::query_scalar(
                "SELECT delta FROM movements WHERE idempotency_key = $1 AND sku = $2",
            )
            .bind(key)
            .bind(sku)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(0);
            relink_in(&mut tx).await?;
            tx.commit().await?;
            Ok(ErpOutcome {
                quantity,
                applied: applied.is_some(),
                delta,
            })
        })
        .await
    }
}

pub(crate) fn check_sku(sku: &str) -> Result<()> {
    if sku.trim().is_empty() || sku.trim() != sku || sku.chars().any(char::is_control) {
        return Err(LedgerError::Invalid(format!(
            "SKU `{sku}` is empty or has surrounding spaces or control characters"
        )));
    }
    Ok(())
}

/// The one rule for the reason of an ERP movement, for the CLI and the ERP
/// API alike: it must say something (white space alone says nothing).
pub fn check_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(LedgerError::Invalid(
            "`reason` must say why the stock changes (it is empty)".to_string(),
        ));
    }
    Ok(())
}

fn check_count(q: i64) -> Result<()> {
    if q < 0 {
        return Err(LedgerError::Invalid(format!(
            "a stock count cannot be negative ({q}); use `stock adjust` to move stock down"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::temp_ledger;

    #[tokio::test]
    async fn a_movement_applies_once_per_key_and_journals_old_and_new() {
        let (_dir, ledger) = temp_ledger().await;
        let set = ledger
            .erp_movement("SKU-1", StockChange::To(10), "count", "k1")
            .await
            .unwrap();
        assert_eq!(
            set,
            ErpOutcome {
                quantity: 10,
                applied: true,
                delta: 10,
            }
        );
        let again = ledger
            .erp_movement("SKU-1", StockChange::To(10), "count", "k1")
            .await
            .unwrap();
        assert!(!again.applied);
        assert_eq!(again.delta, 10, "a replay says what the first call moved");
        ledger
            .erp_movement("SKU-1", StockChange::By(-3), "broken", "k2")
            .await
            .unwrap();
        ledger
            .erp_movement("SKU-1", StockChange::By(-3), "broken", "k2")
            .await
            .unwrap();
        assert_eq!(ledger.stock_of("SKU-1").await.unwrap(), Some(7));
        let set2 = ledger
            .erp_movement("SKU-1", StockChange::To(4), "recount", "k3")
            .await
            .unwrap();
        assert_eq!((set2.quantity, set2.delta), (4, -3));
        let h = ledger.history("SKU-1").await.unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(
            (h[2].quantity_before, h[2].quantity_after, h[2].delta),
            (7, 4, -3)
        );
        assert_eq!(h[2].kind, "erp_set");
        assert_eq!(h[1].kind, "erp_adjust");
    }

    #[tokio::test]
    async fn the_database_refuses_to_change_or_remove_a_movement() {
        let (_dir, ledger) = temp_ledger().await;
        ledger
            .erp_movement("SKU-1", StockChange::To(10), "count", "k1")
            .await
            .unwrap();
        for sql in ["UPDATE movements SET delta = 99", "DELETE FROM movements"] {
            let err = sqlx::query(sql).execute(&ledger.write).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(ledger.history("SKU-1").await.unwrap()[0].delta, 10);
    }

    #[tokio::test]
    async fn bad_rows_change_nothing() {
        let (_dir, ledger) = temp_ledger().await;
        let rows = vec![("A".to_string(), 5), ("B".to_string(), -1)];
        let err = ledger
            .import_stock(&rows, "b1", "import")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        assert!(ledger.list_stock().await.unwrap().is_empty());
        assert!(
            ledger
                .erp_movement(" A", StockChange::To(1), "x", "k")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_movement_needs_a_reason() {
        let (_dir, ledger) = temp_ledger().await;
        for reason in ["", "   ", "\t\n"] {
            let err = ledger
                .erp_movement("A", StockChange::To(1), reason, "k")
                .await
                .unwrap_err();
            assert!(
                matches!(&err, LedgerError::Invalid(m) if m.contains("`reason`")),
                "{reason:?}: {err}"
            );
        }
        assert_eq!(ledger.stock_of("A").await.unwrap(), None, "nothing moved");
    }
}
