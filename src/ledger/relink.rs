//! An order line's hold on stock: resolving its SKU, moving its held units,
//! and applying the lines that waited for a link. Polls apply lines here
//! (`orders`); new SKUs (`stock`) and new links (`catalog`) apply the
//! waiting ones.

use super::Result;
use super::journal::{MovementKind, NewMovement, StockChange, apply_movement};
use crate::domain::{ProviderName, now_ms};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};

pub(super) struct StoredItem {
    pub sku: Option<String>,
    pub held: i64,
    pub transitions: i64,
    pub baseline: bool,
    pub first_seen_ms: i64,
}

/// Moves the item's held units to `wanted` if it is linked and not baseline.
/// Returns the number of movements written (0 or 1).
pub(super) async fn settle(
    conn: &mut SqliteConnection,
    provider: ProviderName,
    item_key: &str,
    order_ref: &str,
    wanted: i64,
    st: &mut StoredItem,
) -> Result<usize> {
    let Some(sku) = st.sku.clone() else {
        return Ok(0);
    };
    if st.baseline || wanted == st.held {
        return Ok(0);
    }
    st.transitions += 1;
    let delta = st.held - wanted;
    let (kind, word) = if delta < 0 {
        (MovementKind::OrderHold, "hold")
    } else {
        (MovementKind::OrderRelease, "release")
    };
    // The first hold and the first release are the common real-world events
    // and get the plain keys (`bazaardan/item/1024/hold`); any later change of
    // the same line (re-hold, quantity change) is numbered.
    let key = if st.transitions <= 2 {
        format!("{provider}/item/{item_key}/{word}")
    } else {
        format!("{provider}/item/{item_key}/{word}/{}", st.transitions)
    };
    let reason = format!("order {order_ref}");
    let applied = apply_movement(
        conn,
        NewMovement {
            key: &key,
            sku: &sku,
            change: StockChange::By(delta),
            kind,
            source: provider.as_str(),
            reason: &reason,
        },
    )
    .await?;
    st.held = wanted;
    Ok(usize::from(applied.is_some()))
}

/// A listing's SKU: the operator's mapping first, else the SKU printed on the
/// order line when the ledger knows it (and then the link is learned).
pub(super) async fn resolve_sku(
    conn: &mut SqliteConnection,
    provider: ProviderName,
    listing_id: &str,
    variant_id: &str,
    hint: Option<&str>,
) -> Result<Option<String>> {
    let mapped: Option<String> = sqlx::query_scalar(
        "SELECT sku FROM listings WHERE provider = ? AND listing_id = ? AND variant_id = ?",
    )
    .bind(provider.as_str())
    .bind(listing_id)
    .bind(variant_id)
    .fetch_optional(&mut *conn)
    .await?;
    if mapped.is_some() {
        return Ok(mapped);
    }
    // A line for a variant of a listing linked as a whole (no variant-level
    // link): the whole listing's SKU. v2 lines carry the product's barcode
    // even when the product has no variants.
    if !variant_id.is_empty() {
        let whole: Option<String> = sqlx::query_scalar(
            "SELECT sku FROM listings WHERE provider = ?1 AND listing_id = ?2 AND variant_id = ''
               AND NOT EXISTS (SELECT 1 FROM listings WHERE provider = ?1 AND listing_id = ?2
                                                          AND variant_id <> '')",
        )
        .bind(provider.as_str())
        .bind(listing_id)
        .fetch_optional(&mut *conn)
        .await?;
        if whole.is_some() {
            return Ok(whole);
        }
    }
    let Some(hint) = hint.filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM stock WHERE sku = ?")
        .bind(hint)
        .fetch_optional(&mut *conn)
        .await?;
    if known.is_none() {
        return Ok(None);
    }
    sqlx::query(
        "INSERT OR IGNORE INTO listings (provider, listing_id, variant_id, sku, origin)
         VALUES (?, ?, ?, ?, 'learned')",
    )
    .bind(provider.as_str())
    .bind(listing_id)
    .bind(variant_id)
    .bind(hint)
    .execute(&mut *conn)
    .await?;
    Ok(Some(hint.to_string()))
}

/// Links and applies unlinked items inside the caller's transaction.
pub(crate) async fn relink_in(tx: &mut Transaction<'static, Sqlite>) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT provider, item_key, order_ref, listing_id, variant_id, sku_hint, wanted_qty,
                held_qty, transitions, first_seen_ms
         FROM order_items WHERE sku IS NULL AND baseline = 0",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut linked = 0;
    for r in rows {
        let provider_s: String = r.get(0);
        let Some(provider) = ProviderName::parse(&provider_s) else {
            continue;
        };
        let item_key: String = r.get(1);
        let order_ref: String = r.get(2);
        let listing_id: String = r.get(3);
        let variant_id: String = r.get(4);
        let hint: Option<String> = r.get(5);
        let Some(sku) =
            resolve_sku(tx, provider, &listing_id, &variant_id, hint.as_deref()).await?
        else {
            continue;
        };
        let mut st = StoredItem {
            sku: Some(sku),
            held: r.get(7),
            transitions: r.get(8),
            baseline: false,
            first_seen_ms: r.get(9),
        };
        settle(tx, provider, &item_key, &order_ref, r.get(6), &mut st).await?;
        sqlx::query(
            "UPDATE order_items SET sku = ?, held_qty = ?, transitions = ?, updated_at_ms = ?
             WHERE provider = ? AND item_key = ?",
        )
        .bind(&st.sku)
        .bind(st.held)
        .bind(st.transitions)
        .bind(now_ms())
        .bind(provider.as_str())
        .bind(&item_key)
        .execute(&mut **tx)
        .await?;
        linked += 1;
    }
    Ok(linked)
}
