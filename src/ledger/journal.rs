//! Movements: the one place a balance changes. Every change is a journal row
//! with a unique idempotency key, written in the same transaction as the
//! balance it moves.

use super::sql;
use super::{LedgerError, Result};
use crate::domain::now_ms;
use serde::Serialize;
use sqlx::AnyConnection;
use std::collections::{HashMap, HashSet};

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

/// A movement with the balances it takes its SKU between, ready to journal.
pub(crate) struct Journaled {
    pub key: String,
    pub sku: String,
    pub delta: i64,
    pub kind: MovementKind,
    pub source: String,
    pub reason: String,
    pub before: i64,
    pub after: i64,
}

/// Applies `m` inside the caller's transaction. Returns the quantity after,
/// or `None` when the key was already applied (nothing changes).
pub(crate) async fn apply_movement(
    conn: &mut AnyConnection,
    m: NewMovement<'_>,
) -> Result<Option<i64>> {
    if !taken_keys(conn, [m.key]).await?.is_empty() {
        return Ok(None);
    }
    let before = balances(conn, [m.sku]).await?.remove(m.sku).unwrap_or(0);
    let (after, delta) = next_quantity(m.sku, before, m.change)?;
    let row = Journaled {
        key: m.key.to_string(),
        sku: m.sku.to_string(),
        delta,
        kind: m.kind,
        source: m.source.to_string(),
        reason: m.reason.to_string(),
        before,
        after,
    };
    journal(conn, &[row], now_ms()).await?;
    Ok(Some(after))
}

/// The quantity of `sku` after `change` from `before`, and the delta to
/// journal; refused when either does not fit.
pub(crate) fn next_quantity(sku: &str, before: i64, change: StockChange) -> Result<(i64, i64)> {
    let after = match change {
        StockChange::By(d) => before.checked_add(d),
        StockChange::To(q) => Some(q),
    }
    .ok_or_else(|| LedgerError::Invalid(format!("quantity of {sku} would overflow")))?;
    let delta = after.checked_sub(before).ok_or_else(|| {
        LedgerError::Invalid(format!(
            "setting {sku} from {before} to {after} is a change too large to journal"
        ))
    })?;
    Ok((after, delta))
}

/// Which of `keys` the journal already has.
pub(crate) async fn taken_keys<'a>(
    conn: &mut AnyConnection,
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<HashSet<String>> {
    let keys: Vec<&str> = keys.into_iter().collect();
    Ok(sqlx::query_scalar(sql(
        conn,
        "SELECT idempotency_key FROM movements
         WHERE idempotency_key IN (SELECT value FROM json_each($1))",
    ))
    .bind(json_list(&keys))
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect())
}

/// The quantities of those of `skus` that have a stock row.
pub(crate) async fn balances<'a>(
    conn: &mut AnyConnection,
    skus: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, i64>> {
    let skus: Vec<&str> = skus.into_iter().collect();
    Ok(sqlx::query_as(sql(
        conn,
        "SELECT sku, quantity FROM stock WHERE sku IN (SELECT value FROM json_each($1))",
    ))
    .bind(json_list(&skus))
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect())
}

/// Writes `rows` in order (their ids follow it) and sets each SKU's
/// balance to its last row's `after`. The caller computed the balances
/// from the current ones and checked no key is taken.
pub(crate) async fn journal(conn: &mut AnyConnection, rows: &[Journaled], now: i64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    // Each SKU's last balance, in the order the SKUs first appear (a new
    // stock row gets the rowid it would get movement after movement).
    let mut last: HashMap<&str, i64> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in rows {
        if last.insert(&r.sku, r.after).is_none() {
            order.push(&r.sku);
        }
    }
    let balances: Vec<(&str, i64)> = order.iter().map(|s| (*s, last[s])).collect();
    sqlx::query(sql(
        conn,
        "INSERT INTO stock (sku, quantity, updated_at_ms)
         SELECT j.value ->> 0, CAST(j.value ->> 1 AS BIGINT), $2
         FROM json_each($1) AS j WHERE true ORDER BY j.key
         ON CONFLICT (sku) DO UPDATE SET quantity = excluded.quantity,
                                         updated_at_ms = excluded.updated_at_ms",
    ))
    .bind(json_list(&balances))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let movements: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                &r.key,
                &r.sku,
                r.delta,
                r.kind.as_str(),
                &r.source,
                &r.reason,
                r.before,
                r.after,
            )
        })
        .collect();
    sqlx::query(sql(
        conn,
        "INSERT INTO movements (idempotency_key, sku, delta, kind, source, reason,
                                quantity_before, quantity_after, created_at_ms)
         SELECT j.value ->> 0, j.value ->> 1, CAST(j.value ->> 2 AS BIGINT), j.value ->> 3,
                j.value ->> 4, j.value ->> 5, CAST(j.value ->> 6 AS BIGINT),
                CAST(j.value ->> 7 AS BIGINT), $2
         FROM json_each($1) AS j ORDER BY j.key",
    ))
    .bind(json_list(&movements))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `items` as one JSON array, to bind once and read with `json_each`:
/// a statement for a whole page, whatever its size (bound parameters are
/// limited, a JSON text is not).
pub(crate) fn json_list<T: Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("plain values serialize")
}
