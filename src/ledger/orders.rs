//! Order items: each line is applied to the ledger exactly once per state
//! change (hold, release), in the same transaction as the poll cursor that
//! covers it. Lines whose SKU cannot be resolved are kept unlinked and
//! applied when a link appears.

use super::bundles::parts_of;
use super::catalog::observe_count;
use super::db;
use super::journal::{
    Journaled, MovementKind, StockChange, balances, journal, json_list, next_quantity, taken_keys,
};
use super::relink::{
    Resolution, StoredItem, learn, move_key, next_moves, parse_parts, read_links, relink_in,
    resolve,
};
use super::sql;
use super::{Ledger, Result, ensure_state_row};
use crate::domain::{ItemEffect, OrderChanges, OrderItem, ProviderName, now_ms};
use sqlx::{AnyConnection, Row};
use std::collections::{HashMap, HashSet};

/// What applying one poll's changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub items_seen: usize,
    pub new_items: usize,
    pub movements: usize,
    pub unlinked: usize,
}

/// What the ledger remembers of an item, for adapters deciding whether a
/// line changed and whether a detail call is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownItem {
    pub provider_updated_at: String,
    pub status: String,
    pub quantity: i64,
    pub variant_id: String,
    pub listing_id: String,
}

impl KnownItem {
    /// Whether a line with these fields is the one already applied.
    /// Timestamps alone are not enough: providers stamp to the second, and
    /// an order placed and cancelled within one second keeps its `updated_at`.
    pub fn unchanged(&self, updated_at: &str, status: &str, quantity: i64) -> bool {
        self.provider_updated_at == updated_at && self.status == status && self.quantity == quantity
    }
}

impl Ledger {
    /// The items of `provider` among `keys` that the ledger has seen.
    pub async fn known_items(
        &self,
        provider: ProviderName,
        keys: &[String],
    ) -> Result<HashMap<String, KnownItem>> {
        db(async move {
            let mut out = HashMap::new();
            // Bounded IN lists keep statements small whatever the page size.
            for chunk in keys.chunks(200) {
                let placeholders = numbered_from(2, chunk.len());
                let sql = format!(
                    "SELECT item_key, provider_updated_at, variant_id, listing_id, status, quantity
                 FROM order_items
                 WHERE provider = $1 AND item_key IN ({placeholders})"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(provider.as_str());
                for k in chunk {
                    q = q.bind(k);
                }
                for r in q.fetch_all(&self.read).await? {
                    out.insert(
                        r.get(0),
                        KnownItem {
                            provider_updated_at: r.get(1),
                            status: r.get(4),
                            quantity: r.get(5),
                            variant_id: r.get(2),
                            listing_id: r.get(3),
                        },
                    );
                }
            }
            Ok(out)
        })
        .await
    }

    /// The fingerprints of the orders of `provider` among `refs` whose
    /// detail was read before.
    pub async fn known_orders(
        &self,
        provider: ProviderName,
        refs: &[String],
    ) -> Result<HashMap<String, String>> {
        db(async move {
            let mut out = HashMap::new();
            for chunk in refs.chunks(200) {
                let placeholders = numbered_from(2, chunk.len());
                let sql = format!(
                    "SELECT order_ref, fingerprint FROM seen_orders
                 WHERE provider = $1 AND order_ref IN ({placeholders})"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(provider.as_str());
                for r in chunk {
                    q = q.bind(r);
                }
                for r in q.fetch_all(&self.read).await? {
                    out.insert(r.get(0), r.get(1));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Applies one poll's order changes and stores its cursor, atomically.
    /// Items created before `epoch_ms` (the provider's first poll) are
    /// recorded but never move stock: the imported count already reflects them.
    pub async fn apply_orders(
        &self,
        provider: ProviderName,
        changes: &OrderChanges,
        epoch_ms: i64,
    ) -> Result<ApplyReport> {
        db(async move {
            let mut tx = self.begin().await?;
            ensure_state_row(&mut tx, provider).await?;
            let mut report = ApplyReport::default();
            apply_items(&mut tx, provider, &changes.items, epoch_ms, &mut report).await?;
            let now = now_ms();
            for a in &changes.anomalies {
                sqlx::query(
                    "INSERT INTO anomalies (provider, item_key, message, seen_at_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (provider, item_key) DO UPDATE SET message = excluded.message,
                                                                    seen_at_ms = excluded.seen_at_ms",
                )
                .bind(provider.as_str())
                .bind(&a.key)
                .bind(&a.message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for o in &changes.orders {
                sqlx::query(
                    "INSERT INTO seen_orders (provider, order_ref, fingerprint, seen_at_ms)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (provider, order_ref) DO UPDATE SET
                         fingerprint = excluded.fingerprint, seen_at_ms = excluded.seen_at_ms",
                )
                .bind(provider.as_str())
                .bind(&o.order_ref)
                .bind(&o.fingerprint)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for c in &changes.external {
                report.movements += observe_count(&mut tx, c).await?;
            }
            if let Some(cursor) = &changes.cursor {
                sqlx::query("UPDATE provider_state SET cursor = $1 WHERE provider = $2")
                    .bind(cursor)
                    .bind(provider.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE provider_state SET last_poll_ok_ms = $1 WHERE provider = $2")
                .bind(now)
                .bind(provider.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(report)
        })
        .await
    }

    /// Applies every unlinked item whose SKU can now be resolved.
    pub async fn relink_pending(&self) -> Result<usize> {
        db(async move {
            let mut tx = self.begin().await?;
            let n = relink_in(&mut tx).await?;
            tx.commit().await?;
            Ok(n)
        })
        .await
    }
}

/// An item as the ledger holds it, with the units its status wanted.
struct Held {
    st: StoredItem,
    wanted: i64,
}

/// An item's row after the page: its last line, and what it holds.
struct ItemRow<'a> {
    line: &'a OrderItem,
    held: Held,
}

/// Applies a page of lines, in order, set-based: the rows they need are
/// read in a few statements, the rules (units wanted, the confirmation
/// forgotten, resolution, `next_move`, the balance after) run in memory
/// line after line, and what changed is written in a few statements.
/// Each line sees what the lines before it did (the same item's state, a
/// SKU's balance, a link learned, a key journaled), so the ledger ends as
/// if each line were applied alone in turn; only the clock's columns
/// differ (one `now` for the page).
async fn apply_items(
    conn: &mut AnyConnection,
    provider: ProviderName,
    items: &[OrderItem],
    epoch_ms: i64,
    report: &mut ApplyReport,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let now = now_ms();

    // ---- read: everything the page's lines may look at ----
    let mut lines_of: HashMap<&str, i64> = HashMap::new();
    for item in items {
        *lines_of.entry(&item.key).or_default() += 1;
    }
    let mut stored = read_items(conn, provider, lines_of.keys().copied()).await?;
    let mut links = read_links(conn, provider, items.iter().map(|i| i.listing_id.as_str())).await?;
    let skus: HashSet<&str> = items
        .iter()
        .filter_map(|i| i.sku_hint.as_deref())
        .chain(stored.values().filter_map(|h| h.st.sku.as_deref()))
        .chain(links.values().flat_map(|l| l.values().map(String::as_str)))
        .collect();
    // Bundles among them, and the parts of bundle lines already linked:
    // their moves move those SKUs.
    let bundles = parts_of(conn, skus.iter().copied()).await?;
    // The parts each item's moves may move: those fixed when it was linked,
    // or, not linked yet, those of any bundle its listing or SKU may name.
    let mut parts_of_item: HashMap<&str, HashSet<&str>> = HashMap::new();
    for item in items {
        let parts = parts_of_item.entry(item.key.as_str()).or_default();
        match stored.get(&item.key) {
            Some(h) if h.st.sku.is_some() => {
                parts.extend(h.st.parts.iter().flat_map(|p| p.keys().map(String::as_str)));
            }
            _ => {
                let named = links
                    .get(&item.listing_id)
                    .into_iter()
                    .flat_map(|l| l.values().map(String::as_str))
                    .chain(item.sku_hint.as_deref());
                for sku in named {
                    if let Some(p) = bundles.get(sku) {
                        parts.extend(p.keys().map(String::as_str));
                    }
                }
            }
        }
    }
    let mut stock = balances(
        conn,
        skus.iter()
            .copied()
            .chain(parts_of_item.values().flatten().copied()),
    )
    .await?;
    // A line moves its item at most once: the keys an item's lines may
    // ask for are its next transitions, one per line, of either kind (and
    // for a bundle line, each part's).
    let mut candidates = Vec::new();
    for (&key, &n) in &lines_of {
        let done = stored.get(key).map_or(0, |h| h.st.transitions);
        for t in done + 1..=done + n {
            for kind in [MovementKind::OrderHold, MovementKind::OrderRelease] {
                let k = move_key(provider, key, kind, t);
                for part in &parts_of_item[key] {
                    candidates.push(format!("{k}/{part}"));
                }
                candidates.push(k);
            }
        }
    }
    let mut taken = taken_keys(conn, candidates.iter().map(String::as_str)).await?;

    // ---- compute: the lines in order ----
    let mut rows: Vec<ItemRow> = Vec::new();
    let mut row_of: HashMap<&str, usize> = HashMap::new();
    let mut learned: Vec<(&str, &str, String)> = Vec::new();
    let mut forget: Vec<(&str, &str)> = Vec::new();
    let mut forget_seen: HashSet<(&str, &str)> = HashSet::new();
    let mut moves: Vec<Journaled> = Vec::new();
    for item in items {
        report.items_seen += 1;
        let prev = match row_of.get(item.key.as_str()) {
            Some(&i) => Some(Held {
                st: rows[i].held.st.clone(),
                wanted: rows[i].held.wanted,
            }),
            None => stored.remove(&item.key),
        };
        let wanted = match item.effect {
            ItemEffect::Hold => item.quantity,
            ItemEffect::Release => 0,
        };
        // The provider moves its own stock when the units a line holds
        // change: a new line (a sale lowers it; even one placed and
        // cancelled between two polls may leave it off, the marketplace
        // floors at 0), a cancellation, a quantity change. Then what it
        // shows is no longer the value we confirmed, even when the ledger
        // does not move: forget the confirmation so the listing is pushed
        // again. A status change that holds the same units (accepted ->
        // shipped) moves nothing, and pushing then would set the value the
        // listing already shows.
        let units_moved = prev.as_ref().is_none_or(|p| p.wanted != wanted);
        let pair = (item.listing_id.as_str(), item.variant_id.as_str());
        if units_moved && forget_seen.insert(pair) {
            forget.push(pair);
        }
        let mut st = match prev {
            Some(p) => p.st,
            None => {
                report.new_items += 1;
                StoredItem {
                    sku: None,
                    held: 0,
                    transitions: 0,
                    baseline: item
                        .created_at
                        .is_some_and(|c| c.timestamp_millis() < epoch_ms),
                    first_seen_ms: now,
                    parts: None,
                }
            }
        };
        if st.sku.is_none() {
            let listing = links.get(&item.listing_id);
            st.sku = match resolve(listing, &item.variant_id, item.sku_hint.as_deref()) {
                Resolution::Linked(sku) => Some(sku),
                Resolution::Hint(h) if stock.contains_key(&h) || bundles.contains_key(&h) => {
                    links
                        .entry(item.listing_id.clone())
                        .or_default()
                        .insert(item.variant_id.clone(), h.clone());
                    learned.push((&item.listing_id, &item.variant_id, h.clone()));
                    Some(h)
                }
                Resolution::Hint(_) | Resolution::Unlinked => None,
            };
            st.parts = st.sku.as_ref().and_then(|s| bundles.get(s)).cloned();
        }
        for m in next_moves(provider, &item.key, &item.order_ref, wanted, &mut st) {
            if !taken.insert(m.key.clone()) {
                continue;
            }
            let before = stock.get(&m.sku).copied().unwrap_or(0);
            let (after, delta) = next_quantity(&m.sku, before, StockChange::By(m.delta))?;
            stock.insert(m.sku.clone(), after);
            moves.push(Journaled {
                key: m.key,
                sku: m.sku,
                delta,
                kind: m.kind,
                source: provider.as_str().to_string(),
                reason: m.reason,
                before,
                after,
            });
            report.movements += 1;
        }
        if st.sku.is_none() && !st.baseline {
            report.unlinked += 1;
        }
        let held = Held { st, wanted };
        match row_of.get(item.key.as_str()) {
            Some(&i) => rows[i] = ItemRow { line: item, held },
            None => {
                row_of.insert(&item.key, rows.len());
                rows.push(ItemRow { line: item, held });
            }
        }
    }

    // ---- write: what changed, in the order the lines did it ----
    let learned: Vec<(&str, &str, &str)> = learned
        .iter()
        .map(|(l, v, s)| (*l, *v, s.as_str()))
        .collect();
    learn(conn, provider, &learned).await?;
    forget_confirmed(conn, provider, &forget).await?;
    journal(conn, &moves, now).await?;
    write_items(conn, provider, &rows, now).await?;
    Ok(())
}

/// The items of `provider` among `keys` that the ledger holds.
async fn read_items<'a>(
    conn: &mut AnyConnection,
    provider: ProviderName,
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, Held>> {
    let keys: Vec<&str> = keys.into_iter().collect();
    let rows = sqlx::query(sql(
        conn,
        "SELECT item_key, sku, held_qty, transitions, baseline, first_seen_ms, wanted_qty, parts
         FROM order_items
         WHERE provider = $1 AND item_key IN (SELECT value FROM json_each($2))",
    ))
    .bind(provider.as_str())
    .bind(json_list(&keys))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let key: String = r.get(0);
            let held = Held {
                st: StoredItem {
                    sku: r.get(1),
                    held: r.get(2),
                    transitions: r.get(3),
                    baseline: r.get::<i64, _>(4) != 0,
                    first_seen_ms: r.get(5),
                    parts: parse_parts(&key, r.get(7))?,
                },
                wanted: r.get(6),
            };
            Ok((key, held))
        })
        .collect()
}

/// Forgets the confirmed value of the listings (listing id, variant id)
/// lines moved units of: the listing itself, or the whole listing. Rows
/// with nothing to forget are left unwritten (no page of theirs to sync).
async fn forget_confirmed(
    conn: &mut AnyConnection,
    provider: ProviderName,
    listings: &[(&str, &str)],
) -> Result<()> {
    if listings.is_empty() {
        return Ok(());
    }
    sqlx::query(sql(
        conn,
        "UPDATE listings SET confirmed_qty = NULL
         WHERE provider = $1 AND confirmed_qty IS NOT NULL
           AND listing_id IN (SELECT j.value ->> 0 FROM json_each($2) AS j)
           AND (variant_id = '' OR EXISTS (
                SELECT 1 FROM json_each($2) AS v
                WHERE v.value ->> 0 = listings.listing_id AND v.value ->> 1 = listings.variant_id))",
    ))
    .bind(provider.as_str())
    .bind(json_list(listings))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes each item's row, in the order the page first saw them. A row
/// already there keeps its `baseline` and `first_seen_ms`.
async fn write_items(
    conn: &mut AnyConnection,
    provider: ProviderName,
    rows: &[ItemRow<'_>],
    now: i64,
) -> Result<()> {
    let values: Vec<_> = rows
        .iter()
        .map(|ItemRow { line, held }| {
            serde_json::json!([
                line.key,
                line.order_ref,
                line.listing_id,
                line.variant_id,
                line.sku_hint,
                held.st.sku,
                line.quantity,
                line.status,
                held.wanted,
                held.st.held,
                held.st.transitions,
                i64::from(held.st.baseline),
                line.updated_at,
                held.st.first_seen_ms,
                held.st.parts_json(),
            ])
        })
        .collect();
    sqlx::query(sql(
        conn,
        "INSERT INTO order_items (provider, item_key, order_ref, listing_id, variant_id, sku_hint,
                                  sku, quantity, status, wanted_qty, held_qty, transitions,
                                  baseline, provider_updated_at, first_seen_ms, updated_at_ms,
                                  parts)
         SELECT $1, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4,
                j.value ->> 5, CAST(j.value ->> 6 AS BIGINT), j.value ->> 7,
                CAST(j.value ->> 8 AS BIGINT), CAST(j.value ->> 9 AS BIGINT),
                CAST(j.value ->> 10 AS BIGINT), CAST(j.value ->> 11 AS BIGINT), j.value ->> 12,
                CAST(j.value ->> 13 AS BIGINT), $3, j.value ->> 14
         FROM json_each($2) AS j WHERE true ORDER BY j.key
         ON CONFLICT (provider, item_key) DO UPDATE SET
             order_ref = excluded.order_ref, listing_id = excluded.listing_id,
             variant_id = excluded.variant_id, sku_hint = excluded.sku_hint, sku = excluded.sku,
             quantity = excluded.quantity, status = excluded.status,
             wanted_qty = excluded.wanted_qty, held_qty = excluded.held_qty,
             transitions = excluded.transitions, parts = excluded.parts,
             provider_updated_at = excluded.provider_updated_at,
             updated_at_ms = excluded.updated_at_ms",
    ))
    .bind(provider.as_str())
    .bind(json_list(&values))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `$from, $from+1, ...`: `n` numbered placeholders, for an IN list.
fn numbered_from(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ListingRef;
    use crate::ledger::test_support::temp_ledger;

    const P: ProviderName = ProviderName::Bazaardan;

    fn item(
        key: &str,
        listing: &str,
        sku: Option<&str>,
        qty: i64,
        effect: ItemEffect,
    ) -> OrderItem {
        OrderItem {
            key: key.to_string(),
            order_ref: format!("BD-{key}"),
            listing_id: listing.to_string(),
            variant_id: String::new(),
            sku_hint: sku.map(str::to_string),
            quantity: qty,
            status: match effect {
                ItemEffect::Hold => "accepted".to_string(),
                ItemEffect::Release => "cancelled".to_string(),
            },
            effect,
            updated_at: "2026-05-08 18:45:00".to_string(),
            created_at: None,
        }
    }

    fn changes(items: Vec<OrderItem>, cursor: &str) -> OrderChanges {
        OrderChanges {
            items,
            anomalies: vec![],
            cursor: Some(cursor.to_string()),
            ..OrderChanges::default()
        }
    }

    /// The journal's keys under `prefix`, in order.
    async fn keys_of(ledger: &Ledger, prefix: &str) -> Vec<String> {
        ledger
            .movements_with_prefix(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.idempotency_key)
            .collect()
    }

    async fn seeded() -> (tempfile::TempDir, Ledger) {
        let (dir, ledger) = temp_ledger().await;
        ledger
            .import_stock(&[("SKU-1".into(), 10), ("SKU-2".into(), 5)], "seed", "seed")
            .await
            .unwrap();
        (dir, ledger)
    }

    #[tokio::test]
    async fn an_item_is_applied_once_and_a_cancellation_gives_stock_back() {
        let (_dir, ledger) = seeded().await;
        let hold = changes(
            vec![item("1024", "356", Some("SKU-1"), 2, ItemEffect::Hold)],
            "c1",
        );
        let r = ledger.apply_orders(P, &hold, 0).await.unwrap();
        assert_eq!((r.new_items, r.movements), (1, 1));
        // The same poll seen again (overlap, crash before cursor) changes nothing.
        let r = ledger.apply_orders(P, &hold, 0).await.unwrap();
        assert_eq!((r.new_items, r.movements), (0, 0));
        assert_eq!(ledger.stock_of("SKU-1").await.unwrap(), Some(8));

        let cancel = changes(
            vec![item("1024", "356", Some("SKU-1"), 2, ItemEffect::Release)],
            "c2",
        );
        ledger.apply_orders(P, &cancel, 0).await.unwrap();
        ledger.apply_orders(P, &cancel, 0).await.unwrap();
        assert_eq!(ledger.stock_of("SKU-1").await.unwrap(), Some(10));
        let keys: Vec<String> = ledger
            .history("SKU-1")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.idempotency_key)
            .collect();
        assert_eq!(
            keys[1..],
            [
                "bazaardan/item/1024/hold".to_string(),
                "bazaardan/item/1024/release".to_string()
            ]
        );
        assert_eq!(
            ledger.provider_state(P).await.unwrap().cursor.as_deref(),
            Some("c2")
        );
        // The link was learned from the line's SKU.
        let maps = ledger.list_mappings().await.unwrap();
        assert_eq!(maps.len(), 1);
        assert_eq!(
            (maps[0].listing_id.as_str(), maps[0].origin.as_str()),
            ("356", "learned")
        );
    }

    #[tokio::test]
    async fn an_unlinked_item_is_kept_and_applied_when_its_link_appears() {
        let (_dir, ledger) = seeded().await;
        let c = changes(
            vec![item("7", "999", Some("NEW-SKU"), 3, ItemEffect::Hold)],
            "c1",
        );
        let r = ledger.apply_orders(P, &c, 0).await.unwrap();
        assert_eq!((r.unlinked, r.movements), (1, 0));
        assert_eq!(ledger.unlinked_items().await.unwrap().len(), 1);

        // The operator maps the listing to an existing SKU.
        ledger
            .import_mappings(&[(
                "SKU-2".to_string(),
                ListingRef {
                    provider: P,
                    listing_id: "999".into(),
                    variant_id: String::new(),
                },
            )])
            .await
            .unwrap();
        assert_eq!(ledger.relink_pending().await.unwrap(), 1);
        assert_eq!(ledger.relink_pending().await.unwrap(), 0);
        assert_eq!(ledger.stock_of("SKU-2").await.unwrap(), Some(2));
        assert!(ledger.unlinked_items().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unknown_sku_links_once_the_erp_imports_it() {
        let (_dir, ledger) = seeded().await;
        let c = changes(
            vec![item("8", "500", Some("LATE"), 1, ItemEffect::Hold)],
            "c1",
        );
        ledger.apply_orders(P, &c, 0).await.unwrap();
        ledger
            .import_stock(&[("LATE".into(), 4)], "b2", "count")
            .await
            .unwrap();
        assert_eq!(ledger.stock_of("LATE").await.unwrap(), Some(3));
    }

    #[tokio::test]
    async fn orders_from_before_the_first_poll_never_move_stock() {
        let (_dir, ledger) = seeded().await;
        let mut old = item("1", "356", Some("SKU-1"), 2, ItemEffect::Hold);
        old.created_at = Some(crate::domain::ms_to_utc(1_000));
        let mut new = item("2", "356", Some("SKU-1"), 1, ItemEffect::Hold);
        new.created_at = Some(crate::domain::ms_to_utc(3_000));
        ledger
            .apply_orders(P, &changes(vec![old.clone(), new], "c"), 2_000)
            .await
            .unwrap();
        assert_eq!(ledger.stock_of("SKU-1").await.unwrap(), Some(9));
        old.effect = ItemEffect::Release;
        ledger
            .apply_orders(P, &changes(vec![old], "c"), 2_000)
            .await
            .unwrap();
        assert_eq!(ledger.stock_of("SKU-1").await.unwrap(), Some(9));
    }

    /// A line whose status moves without changing the units it holds
    /// (accepted -> shipped -> delivered) leaves the listing's confirmed
    /// value alone: pushing it again would set the value it already shows.
    /// A new line, a cancellation and a quantity change do forget it.
    #[tokio::test]
    async fn only_a_change_of_held_units_forgets_the_confirmed_value() {
        let (_dir, ledger) = seeded().await;
        let l = ListingRef {
            provider: P,
            listing_id: "356".into(),
            variant_id: String::new(),
        };
        ledger
            .import_mappings(&[("SKU-1".to_string(), l.clone())])
            .await
            .unwrap();
        let confirmed = |ledger: Ledger| async move {
            ledger.listing_states(P).await.unwrap()[0].confirmed_qty
        };
        let mut line = item("1", "356", Some("SKU-1"), 2, ItemEffect::Hold);
        let steps: &[(&str, ItemEffect, i64, bool)] = &[
            // (status, effect, quantity, forgets the confirmation)
            ("accepted", ItemEffect::Hold, 2, true),
            ("shipped", ItemEffect::Hold, 2, false),
            ("delivered", ItemEffect::Hold, 2, false),
            ("delivered", ItemEffect::Hold, 3, true),
            ("cancelled", ItemEffect::Release, 3, true),
            ("cancelled-by-seller", ItemEffect::Release, 3, false),
        ];
        for (i, (status, effect, qty, forgets)) in steps.iter().enumerate() {
            ledger
                .record_push(&l, crate::ledger::PushRecord::Confirmed(7))
                .await
                .unwrap();
            line.status = status.to_string();
            line.effect = *effect;
            line.quantity = *qty;
            line.updated_at = format!("2026-05-08 18:45:0{i}");
            ledger
                .apply_orders(P, &changes(vec![line.clone()], "c"), 0)
                .await
                .unwrap();
            let want = if *forgets { None } else { Some(7) };
            assert_eq!(confirmed(ledger.clone()).await, want, "step {i}: {status}");
        }
    }

    /// Found in review: a held line whose quantity went up (2 -> 3) made
    /// its 2nd move a hold under the plain key of the 1st, which the journal
    /// took for the hold already applied: the extra unit never left stock.
    #[tokio::test]
    async fn a_held_line_whose_quantity_goes_up_holds_the_extra_units() {
        let (_dir, ledger) = seeded().await;
        let seq = [
            (2, ItemEffect::Hold, 8),
            (3, ItemEffect::Hold, 7),
            (3, ItemEffect::Release, 10),
        ];
        for (i, (qty, effect, expect)) in seq.into_iter().enumerate() {
            let c = changes(vec![item("5", "356", Some("SKU-1"), qty, effect)], "c");
            ledger.apply_orders(P, &c, 0).await.unwrap();
            // Seen again (an overlapping poll): nothing more moves.
            ledger.apply_orders(P, &c, 0).await.unwrap();
            assert_eq!(
                ledger.stock_of("SKU-1").await.unwrap(),
                Some(expect),
                "step {i}"
            );
        }
        assert_eq!(
            keys_of(&ledger, "bazaardan/item/5/").await,
            [
                "bazaardan/item/5/hold",
                "bazaardan/item/5/hold/2",
                "bazaardan/item/5/release/3"
            ]
        );
    }

    #[tokio::test]
    async fn a_quantity_change_and_a_rehold_get_their_own_keys() {
        let (_dir, ledger) = seeded().await;
        let seq = [
            (2, ItemEffect::Hold, 8),
            (2, ItemEffect::Release, 10),
            (2, ItemEffect::Hold, 8),
            (3, ItemEffect::Hold, 7),
        ];
        for (qty, effect, expect) in seq {
            let c = changes(vec![item("9", "356", Some("SKU-1"), qty, effect)], "c");
            ledger.apply_orders(P, &c, 0).await.unwrap();
            assert_eq!(ledger.stock_of("SKU-1").await.unwrap(), Some(expect));
        }
        assert_eq!(
            keys_of(&ledger, "bazaardan/item/9/").await,
            [
                "bazaardan/item/9/hold",
                "bazaardan/item/9/release",
                "bazaardan/item/9/hold/3",
                "bazaardan/item/9/hold/4"
            ]
        );
    }
}

/// A page applied in one call leaves exactly the ledger that its lines
/// applied one call each leave: the batched path must not differ from the
/// line-by-line reading of the rules in any row.
#[cfg(test)]
mod page_equivalence {
    use super::*;
    use crate::domain::ListingRef;
    use crate::ledger::test_support::temp_ledger;
    use crate::ledger::{LedgerError, PushRecord};

    const P: ProviderName = ProviderName::Bazaardan;
    const EPOCH: i64 = 2_000;

    fn line(key: &str, listing: &str, variant: &str, hint: Option<&str>) -> OrderItem {
        OrderItem {
            key: key.to_string(),
            order_ref: format!("BD-{key}"),
            listing_id: listing.to_string(),
            variant_id: variant.to_string(),
            sku_hint: hint.map(str::to_string),
            quantity: 1,
            status: "accepted".to_string(),
            effect: ItemEffect::Hold,
            updated_at: "2026-05-08 18:45:00".to_string(),
            created_at: Some(crate::domain::ms_to_utc(3_000)),
        }
    }

    fn qty(mut l: OrderItem, q: i64) -> OrderItem {
        l.quantity = q;
        l
    }

    fn release(mut l: OrderItem) -> OrderItem {
        l.effect = ItemEffect::Release;
        l.status = "cancelled".to_string();
        l
    }

    fn status(mut l: OrderItem, s: &str) -> OrderItem {
        l.status = s.to_string();
        l
    }

    fn page(items: Vec<OrderItem>) -> OrderChanges {
        OrderChanges {
            items,
            cursor: Some("c".to_string()),
            ..OrderChanges::default()
        }
    }

    fn listing(id: &str, variant: &str) -> ListingRef {
        ListingRef {
            provider: P,
            listing_id: id.into(),
            variant_id: variant.into(),
        }
    }

    /// Stock, links (some confirmed), a link to a SKU with no stock row, a
    /// movement whose key a line of the page will ask for, and lines of an
    /// earlier poll (one of them baseline).
    async fn prepared() -> (tempfile::TempDir, Ledger) {
        let (dir, ledger) = temp_ledger().await;
        ledger
            .import_stock(
                &[
                    ("SKU-1".into(), 10),
                    ("SKU-2".into(), 5),
                    ("SKU-3".into(), 7),
                ],
                "seed",
                "seed",
            )
            .await
            .unwrap();
        let maps = [
            ("SKU-1", listing("L-MAP", "")),
            ("SKU-1", listing("L-S", "")),
            ("SKU-2", listing("L-WHOLE", "")),
        ];
        let maps: Vec<(String, ListingRef)> =
            maps.into_iter().map(|(s, l)| (s.to_string(), l)).collect();
        ledger.import_mappings(&maps).await.unwrap();
        // Written by hand: links refuse unknown SKUs, and a key is only
        // taken before its line when something outside the poll wrote it.
        sqlx::query(
            "INSERT INTO listings (provider, listing_id, variant_id, sku, origin, confirmed_qty)
             VALUES ('bazaardan', 'L-GHOST', '', 'GHOST', 'mapping', 4)",
        )
        .execute(&ledger.write)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO movements (idempotency_key, sku, delta, kind, source, reason,
                                    quantity_before, quantity_after, created_at_ms)
             VALUES ('bazaardan/item/dup/hold', 'SKU-1', 0, 'order_hold', 'bazaardan', 'x',
                     10, 10, 0)",
        )
        .execute(&ledger.write)
        .await
        .unwrap();
        let mut old = line("b0", "L-MAP", "", Some("SKU-1"));
        old.created_at = Some(crate::domain::ms_to_utc(1_000));
        let earlier = vec![qty(line("s1", "L-S", "", None), 2), old];
        ledger.apply_orders(P, &page(earlier), EPOCH).await.unwrap();
        for (_, l) in &maps {
            ledger
                .record_push(l, PushRecord::Confirmed(7))
                .await
                .unwrap();
        }
        (dir, ledger)
    }

    fn tricky_page() -> Vec<OrderItem> {
        let a = line("a", "L-MAP", "", Some("SKU-1"));
        let b = line("b", "L-MAP", "", None);
        let mut base = qty(line("base", "L-MAP", "", Some("SKU-1")), 4);
        base.created_at = Some(crate::domain::ms_to_utc(1_000));
        let mut b0 = line("b0", "L-MAP", "", Some("SKU-1"));
        b0.created_at = Some(crate::domain::ms_to_utc(1_000));
        vec![
            // The same key three times: hold, release, hold again.
            qty(a.clone(), 2),
            release(a.clone()),
            qty(a, 2),
            // Hold, then a quantity change (its own numbered hold).
            b.clone(),
            qty(b, 3),
            // The SKU learned from the hint, then the same listing bare.
            line("h1", "L-LEARN", "", Some("SKU-3")),
            qty(line("h2", "L-LEARN", "", None), 2),
            base,
            release(b0),
            line("u", "L-NONE", "", Some("NOPE")),
            // A variant of a listing linked as a whole.
            line("v", "L-WHOLE", "red", None),
            // Accepted -> shipped: moves nothing, forgets nothing.
            qty(status(line("s1", "L-S", "", None), "shipped"), 2),
            // A variant link learned, then the whole listing learned: a
            // bare variant of it is then not the whole listing's.
            line("x1", "L-X", "a", Some("SKU-1")),
            line("x2", "L-X", "", Some("SKU-2")),
            line("x3", "L-X", "b", None),
            // A whole listing learned, then one of its variants.
            line("w1", "L-W", "", Some("SKU-2")),
            line("w2", "L-W", "y", Some("SKU-1")),
            // A SKU that gets its stock row from a line of the page, then
            // is learned from another line's hint.
            line("g1", "L-GHOST", "", None),
            line("g2", "L-G2", "", Some("GHOST")),
            // Its key is already in the journal.
            line("dup", "L-MAP", "", None),
            // An empty hint is no hint.
            line("e", "L-EMPTY", "", Some("")),
        ]
    }

    type Snapshot = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

    /// Every row the apply path writes, without the clock's columns. On
    /// SQLite rows come in the order they were written (`rowid`), which
    /// the page path keeps too; PostgreSQL has no such order, so there
    /// rows come by key.
    async fn snapshot(ledger: &Ledger) -> Snapshot {
        let sqlite = ledger.backend() == crate::ledger::Backend::Sqlite;
        let rows = |sql: &str| {
            let pool = ledger.read.clone();
            let sql = sql.to_string();
            async move {
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap()
            }
        };
        let by = |keys: &str| {
            if sqlite {
                "rowid".to_string()
            } else {
                keys.to_string()
            }
        };
        (
            rows(&format!(
                "SELECT sku || '=' || quantity FROM stock ORDER BY {}",
                by("sku")
            ))
            .await,
            rows(
                "SELECT concat_ws(' ', id, idempotency_key, sku, delta, kind, source, reason,
                                  quantity_before, quantity_after)
                 FROM movements ORDER BY id",
            )
            .await,
            rows(&format!(
                "SELECT concat_ws(' ', provider, item_key, order_ref, listing_id, variant_id,
                                  COALESCE(sku_hint, '-'), COALESCE(sku, '-'), quantity, status,
                                  wanted_qty, held_qty, transitions, baseline,
                                  provider_updated_at)
                 FROM order_items ORDER BY {}",
                by("provider, item_key")
            ))
            .await,
            rows(&format!(
                "SELECT concat_ws(' ', provider, listing_id, variant_id, sku, origin,
                                  COALESCE(CAST(confirmed_qty AS TEXT), '-'),
                                  COALESCE(CAST(rejected_qty AS TEXT), '-'))
                 FROM listings ORDER BY {}",
                by("provider, listing_id, variant_id")
            ))
            .await,
        )
    }

    #[tokio::test]
    async fn a_page_in_one_call_leaves_the_ledger_its_lines_one_by_one_leave() {
        let (_d1, whole) = prepared().await;
        let (_d2, single) = prepared().await;
        let lines = tricky_page();
        let got = whole
            .apply_orders(P, &page(lines.clone()), EPOCH)
            .await
            .unwrap();
        let mut want = ApplyReport::default();
        for l in lines {
            let r = single.apply_orders(P, &page(vec![l]), EPOCH).await.unwrap();
            want.items_seen += r.items_seen;
            want.new_items += r.new_items;
            want.movements += r.movements;
            want.unlinked += r.unlinked;
        }
        assert_eq!(got, want);
        let (a, b) = (snapshot(&whole).await, snapshot(&single).await);
        assert_eq!(a.0, b.0, "stock");
        assert_eq!(a.1, b.1, "movements");
        assert_eq!(a.2, b.2, "order items");
        assert_eq!(a.3, b.3, "listings");
        // The page did exercise the rules it names.
        assert_eq!(
            (got.items_seen, got.new_items, got.movements, got.unlinked),
            (21, 16, 14, 3)
        );
    }

    #[tokio::test]
    async fn a_line_that_would_overflow_refuses_the_whole_page() {
        let (_dir, ledger) = prepared().await;
        sqlx::query("UPDATE stock SET quantity = $1 WHERE sku = 'SKU-2'")
            .bind(i64::MIN)
            .execute(&ledger.write)
            .await
            .unwrap();
        let before = snapshot(&ledger).await;
        let lines = vec![
            line("ok", "L-MAP", "", None),
            line("over", "L-WHOLE", "", None),
        ];
        let err = ledger.apply_orders(P, &page(lines), EPOCH).await;
        assert!(
            matches!(&err, Err(LedgerError::Invalid(m)) if m.contains("SKU-2")),
            "{err:?}"
        );
        assert_eq!(snapshot(&ledger).await, before);
    }
}
