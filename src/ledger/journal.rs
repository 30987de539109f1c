//! Movements: the one place a balance changes. Every change is a journal row
//! with a unique idempotency key, written in the same transaction as the
//! balance it moves.

use super::{LedgerError, Result};
use crate::domain::now_ms;
use sqlx::SqliteConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovementKind {
    OrderHold,
    OrderRelease,
    ErpSet,
    ErpAdjust,
    /// Made by hand in a provider's own panel (stokdurumu).
    External,
}

impl MovementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::OrderHold => "order_hold",
            MovementKind::OrderRelease => "order_release",
            MovementKind::ErpSet => "erp_set",
            MovementKind::ErpAdjust => "erp_adjust",
            MovementKind::External => "external",
        }
    }
}

/// How a movement changes the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    By(i64),
    To(i64),
}

pub(crate) struct NewMovement<'a> {
    pub key: &'a str,
    pub sku: &'a str,
    pub change: StockChange,
    pub kind: MovementKind,
    pub source: &'a str,
    pub reason: &'a str,
}

/// Applies `m` inside the caller's transaction. Returns the quantity after,
/// or `None` when the key was already applied (nothing changes).
pub(crate) async fn apply_movement(
    conn: &mut SqliteConnection,
    m: NewMovement<'_>,
) -> Result<Option<i64>> {
    let seen: Option<i64> =
        sqlx::query_scalar("SELECT id FROM movements WHERE idempotency_key = ?")
            .bind(m.key)
            .fetch_optional(&mut *conn)
            .await?;
    if seen.is_some() {
        return Ok(None);
    }
    let before: i64 = sqlx::query_scalar("SELECT quantity FROM stock WHERE sku = ?")
        .bind(m.sku)
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or(0);
    let after = match m.change {
        StockChange::By(d) => before.checked_add(d),
        StockChange::To(q) => Some(q),
    }
    .ok_or_else(|| LedgerError::Invalid(format!("quantity of {} would overflow", m.sku)))?;
    let delta = after.checked_sub(before).ok_or_else(|| {
        LedgerError::Invalid(format!(
            "setting {} from {before} to {after} is a change too large to journal",
            m.sku
        ))
    })?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO stock (sku, quantity, updated_at_ms) VALUES (?, ?, ?)
         ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity,
                                         updated_at_ms = excluded.updated_at_ms",
    )
    .bind(m.sku)
    .bind(after)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO movements (idempotency_key, sku, delta, kind, source, reason,
                                quantity_before, quantity_after, created_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(m.key)
    .bind(m.sku)
    .bind(delta)
    .bind(m.kind.as_str())
    .bind(m.source)
    .bind(m.reason)
    .bind(before)
    .bind(after)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Some(after))
}
