//! An order line's hold on stock: resolving its SKU, moving its held units,
//! and applying the lines that waited for a link. Polls apply lines here
//! (`orders`); new SKUs (`stock`) and new links (`catalog`) apply the
//! waiting ones.

use super::Result;
use super::bundles::{Parts, is_bundle, parts_of};
use super::journal::{MovementKind, NewMovement, StockChange, apply_movement, balances, json_list};
use super::sql;
use crate::domain::{ProviderName, now_ms};
use sqlx::{Any, AnyConnection, Row, Transaction};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
pub(super) struct StoredItem {
    pub sku: Option<String>,
    pub held: i64,
    pub transitions: i64,
    pub baseline: bool,
    pub first_seen_ms: i64,
    /// A bundle line's parts, fixed when it was linked: its moves move them.
    pub parts: Option<Parts>,
}

impl StoredItem {
    /// The parts as stored (`order_items.parts`, JSON).
    pub fn parts_json(&self) -> Option<String> {
        self.parts
            .as_ref()
            .map(|p| serde_json::to_string(p).expect("a map of numbers serializes"))
    }
}

/// `order_items.parts` read back; a value that does not parse is an error
/// naming the line, never a line that silently moves nothing.
pub(super) fn parse_parts(item_key: &str, json: Option<String>) -> Result<Option<Parts>> {
    json.map(|j| {
        serde_json::from_str(&j).map_err(|e| {
            super::LedgerError::Invalid(format!(
                "order line {item_key}: its bundle parts `{j}` are unreadable: {e}"
            ))
        })
    })
    .transpose()
}

/// The movement that takes an item's held units to what its status wants.
pub(super) struct ItemMove {
    pub key: String,
    pub sku: String,
    pub delta: i64,
    pub kind: MovementKind,
    pub reason: String,
}

/// The idempotency key of an item's `transitions`-th move, of `kind`.
/// The first hold (always the 1st move) and the release right after it
/// (the 2nd) are the common real-world events and get the plain keys
/// (`bazaardan/item/1024/hold`); any other move of the same line (a
/// quantity change, a re-hold) is numbered. A 2nd move that is a hold (the
/// quantity of a held line went up) is numbered too: with the plain key it
/// was taken for the first hold already applied, and the units were lost.
pub(super) fn move_key(
    provider: ProviderName,
    item_key: &str,
    kind: MovementKind,
    transitions: i64,
) -> String {
    let word = match kind {
        MovementKind::OrderHold => "hold",
        _ => "release",
    };
    let plain = match kind {
        MovementKind::OrderHold => transitions == 1,
        _ => transitions == 2,
    };
    if plain {
        format!("{provider}/item/{item_key}/{word}")
    } else {
        format!("{provider}/item/{item_key}/{word}/{transitions}")
    }
}

/// The moves settling an item at `wanted` held units, if it is linked, not
/// baseline and holds another number of units: one on its SKU, or for a
/// bundle line one on each part (`{key}/{part}`, units times the part's
/// count). `st` then counts one more transition and holds `wanted`, whether
/// or not the journal already has the moves' keys (then they apply nothing).
pub(super) fn next_moves(
    provider: ProviderName,
    item_key: &str,
    order_ref: &str,
    wanted: i64,
    st: &mut StoredItem,
) -> Vec<ItemMove> {
    let Some(sku) = st.sku.clone() else {
        return vec![];
    };
    if st.baseline || wanted == st.held {
        return vec![];
    }
    st.transitions += 1;
    let delta = st.held - wanted;
    let kind = if delta < 0 {
        MovementKind::OrderHold
    } else {
        MovementKind::OrderRelease
    };
    st.held = wanted;
    let key = move_key(provider, item_key, kind, st.transitions);
    match &st.parts {
        None => vec![ItemMove {
            key,
            sku,
            delta,
            kind,
            reason: format!("order {order_ref}"),
        }],
        Some(parts) => parts
            .iter()
            .map(|(part, per)| ItemMove {
                key: format!("{key}/{part}"),
                sku: part.clone(),
                delta: delta.saturating_mul(*per),
                kind,
                reason: format!("order {order_ref}: bundle {sku} x{}", delta.abs()),
            })
            .collect(),
    }
}

/// Moves the item's held units to `wanted` if it is linked and not baseline.
/// Returns the number of movements written.
pub(super) async fn settle(
    conn: &mut AnyConnection,
    provider: ProviderName,
    item_key: &str,
    order_ref: &str,
    wanted: i64,
    st: &mut StoredItem,
) -> Result<usize> {
    let mut written = 0;
    for m in next_moves(provider, item_key, order_ref, wanted, st) {
        let applied = apply_movement(
            conn,
            NewMovement {
                key: &m.key,
                sku: &m.sku,
                change: StockChange::By(m.delta),
                kind: m.kind,
                source: provider.as_str(),
                reason: &m.reason,
            },
        )
        .await?;
        written += usize::from(applied.is_some());
    }
    Ok(written)
}

/// The links of some listings of a provider: listing id -> variant id -> SKU
/// (variant id `''`: the listing as a whole).
pub(super) type Links = HashMap<String, BTreeMap<String, String>>;

/// The links of `provider`'s listings among `listing_ids`.
pub(super) async fn read_links<'a>(
    conn: &mut AnyConnection,
    provider: ProviderName,
    listing_ids: impl IntoIterator<Item = &'a str>,
) -> Result<Links> {
    let ids: Vec<&str> = listing_ids.into_iter().collect();
    let rows: Vec<(String, String, String)> = sqlx::query_as(sql(
        conn,
        "SELECT listing_id, variant_id, sku FROM listings
         WHERE provider = $1 AND listing_id IN (SELECT value FROM json_each($2))",
    ))
    .bind(provider.as_str())
    .bind(json_list(&ids))
    .fetch_all(&mut *conn)
    .await?;
    let mut links = Links::new();
    for (listing, variant, sku) in rows {
        links.entry(listing).or_default().insert(variant, sku);
    }
    Ok(links)
}

/// What a line's listing resolves to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolution {
    /// A link gives the SKU.
    Linked(String),
    /// No link; the line's SKU, to learn as the link if the ledger knows it.
    Hint(String),
    Unlinked,
}

/// A listing's SKU from its links (`links`: the listing's, variant id ->
/// SKU): the operator's mapping first, else the SKU printed on the order
/// line (`hint`).
pub(super) fn resolve(
    links: Option<&BTreeMap<String, String>>,
    variant_id: &str,
    hint: Option<&str>,
) -> Resolution {
    if let Some(links) = links {
        if let Some(sku) = links.get(variant_id) {
            return Resolution::Linked(sku.clone());
        }
        // A line for a variant of a listing linked as a whole (no
        // variant-level link): the whole listing's SKU. v2 lines carry the
        // product's barcode even when the product has no variants.
        let whole_only = links.keys().all(|v| v.is_empty());
        if !variant_id.is_empty()
            && whole_only
            && let Some(sku) = links.get("")
        {
            return Resolution::Linked(sku.clone());
        }
    }
    match hint.filter(|h| !h.is_empty()) {
        Some(h) => Resolution::Hint(h.to_string()),
        None => Resolution::Unlinked,
    }
}

/// Writes links learned from order lines' SKUs, in order: (listing id,
/// variant id, SKU).
pub(super) async fn learn(
    conn: &mut AnyConnection,
    provider: ProviderName,
    learned: &[(&str, &str, &str)],
) -> Result<()> {
    if learned.is_empty() {
        return Ok(());
    }
    sqlx::query(sql(
        conn,
        "INSERT INTO listings (provider, listing_id, variant_id, sku, origin)
         SELECT $1, j.value ->> 0, j.value ->> 1, j.value ->> 2, 'learned'
         FROM json_each($2) AS j WHERE true ORDER BY j.key
         ON CONFLICT DO NOTHING",
    ))
    .bind(provider.as_str())
    .bind(json_list(learned))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A listing's SKU (see [`resolve`]); a SKU learned from the line's hint
/// when the ledger knows it is written as the listing's link.
pub(super) async fn resolve_sku(
    conn: &mut AnyConnection,
    provider: ProviderName,
    listing_id: &str,
    variant_id: &str,
    hint: Option<&str>,
) -> Result<Option<String>> {
    let links = read_links(conn, provider, [listing_id]).await?;
    match resolve(links.get(listing_id), variant_id, hint) {
        Resolution::Linked(sku) => Ok(Some(sku)),
        Resolution::Unlinked => Ok(None),
        Resolution::Hint(h) => {
            if balances(conn, [h.as_str()]).await?.is_empty() && !is_bundle(conn, &h).await? {
                return Ok(None);
            }
            learn(conn, provider, &[(listing_id, variant_id, &h)]).await?;
            Ok(Some(h))
        }
    }
}

/// Links and applies unlinked items inside the caller's transaction.
pub(crate) async fn relink_in(tx: &mut Transaction<'static, Any>) -> Result<usize> {
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
        let parts = parts_of(tx, [sku.as_str()]).await?.remove(&sku);
        let mut st = StoredItem {
            sku: Some(sku),
            held: r.get(7),
            transitions: r.get(8),
            baseline: false,
            first_seen_ms: r.get(9),
            parts,
        };
        settle(tx, provider, &item_key, &order_ref, r.get(6), &mut st).await?;
        sqlx::query(
            "UPDATE order_items SET sku = $1, parts = $2, held_qty = $3, transitions = $4,
                                    updated_at_ms = $5
             WHERE provider = $6 AND item_key = $7",
        )
        .bind(&st.sku)
        .bind(st.parts_json())
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
