//! What the seller defines beside stock: per-SKU rules (`rules import`) and
//! bundles (`bundle import`). A bundle has no stock of its own: it is made
//! of SKUs with stock, and [`flatten`] multiplies nested bundles out to
//! them (`bundle_parts`), so a sale moves those SKUs and the planner reads
//! what they make.

use super::db;
use super::journal::json_list;
use super::sql;
use super::{Ledger, LedgerError, Result};
use crate::domain::{ProviderName, now_ms};
use crate::rules::{Field, RuleSet};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A bundle's parts: SKU with stock -> units per bundle.
pub type Parts = BTreeMap<String, i64>;

/// One row of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub line: usize,
    pub sku: String,
    pub provider: ProviderName,
    /// All fields empty: the SKU's row for the provider is removed.
    pub set: RuleSet,
}

/// One row of a bundles file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRow {
    pub line: usize,
    pub bundle: String,
    pub component: String,
    pub quantity: i64,
}

/// A stored SKU rule, for `rules list` and `explain`.
#[derive(Debug, Clone, Serialize)]
pub struct SkuRule {
    pub sku: String,
    pub provider: ProviderName,
    pub safety_stock: Option<i64>,
    pub zero_below: Option<i64>,
    pub percent: Option<i64>,
    pub max_quantity: Option<i64>,
    pub frozen: Option<bool>,
    pub source: String,
}

impl SkuRule {
    pub fn set(&self) -> RuleSet {
        let mut s = RuleSet::default();
        s.set(Field::SafetyStock, self.safety_stock);
        s.set(Field::ZeroBelow, self.zero_below);
        s.set(Field::Percent, self.percent);
        s.set(Field::MaxQuantity, self.max_quantity);
        s.set(Field::Frozen, self.frozen.map(i64::from));
        s
    }
}

/// A bundle as imported, with its parts.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    pub sku: String,
    /// As imported: component -> (units, the row it came from).
    pub components: Vec<BundleComponent>,
    /// Multiplied out to SKUs with stock.
    pub parts: Parts,
}

#[derive(Debug, Clone, Serialize)]
pub struct BundleComponent {
    pub sku: String,
    pub quantity: i64,
    pub source: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DefinitionReport {
    pub written: usize,
    pub removed: usize,
}

/// Whether `sku` is a bundle.
pub(super) async fn is_bundle(conn: &mut AnyConnection, sku: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT 1 FROM bundles WHERE bundle_sku = $1 LIMIT 1")
            .bind(sku)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// The parts of the bundles among `skus` (other SKUs are left out).
pub(super) async fn parts_of<'a>(
    conn: &mut AnyConnection,
    skus: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, Parts>> {
    let skus: Vec<&str> = skus.into_iter().collect();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(sql(
        conn,
        "SELECT bundle_sku, sku, quantity FROM bundle_parts
         WHERE bundle_sku IN (SELECT value FROM json_each($1))",
    ))
    .bind(json_list(&skus))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<String, Parts> = HashMap::new();
    for (b, sku, q) in rows {
        out.entry(b).or_default().insert(sku, q);
    }
    Ok(out)
}

/// Refuses a stock movement on a bundle: its stock is its parts'.
pub(super) async fn refuse_bundle(conn: &mut AnyConnection, sku: &str) -> Result<()> {
    if is_bundle(conn, sku).await? {
        return Err(LedgerError::Invalid(format!(
            "`{sku}` is a bundle: it has no stock of its own, its components' stock makes it (`bundle list`)"
        )));
    }
    Ok(())
}

/// SKUs a link or a rule may name: those with stock, and bundles.
pub(super) async fn known_skus(conn: &mut AnyConnection) -> Result<HashSet<String>> {
    Ok(
        sqlx::query_scalar("SELECT sku FROM stock UNION SELECT DISTINCT bundle_sku FROM bundles")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect(),
    )
}

/// Multiplies every bundle of `defs` (bundle -> component -> units) out to
/// SKUs that are not bundles. `Err` names a cycle, as the path that closes
/// it (`A`, `B`, `A`).
pub fn flatten(
    defs: &BTreeMap<String, BTreeMap<String, i64>>,
) -> std::result::Result<BTreeMap<String, Parts>, Vec<String>> {
    fn visit(
        b: &str,
        defs: &BTreeMap<String, BTreeMap<String, i64>>,
        done: &mut BTreeMap<String, Parts>,
        path: &mut Vec<String>,
    ) -> std::result::Result<(), Vec<String>> {
        if done.contains_key(b) {
            return Ok(());
        }
        if let Some(at) = path.iter().position(|p| p == b) {
            let mut cycle = path[at..].to_vec();
            cycle.push(b.to_string());
            return Err(cycle);
        }
        path.push(b.to_string());
        let mut parts = Parts::new();
        for (c, q) in &defs[b] {
            if defs.contains_key(c) {
                visit(c, defs, done, path)?;
                for (s, n) in &done[c] {
                    *parts.entry(s.clone()).or_default() += n.saturating_mul(*q);
                }
            } else {
                *parts.entry(c.clone()).or_default() += q;
            }
        }
        path.pop();
        done.insert(b.to_string(), parts);
        Ok(())
    }
    let mut done = BTreeMap::new();
    for b in defs.keys() {
        visit(b, defs, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

/// What a bundle of `parts` makes from `stock` (SKU -> quantity): the
/// fewest whole bundles any part allows, never below 0; `None` when a part
/// has no stock row.
pub fn bundle_quantity(parts: &Parts, stock: &HashMap<String, i64>) -> Option<i64> {
    parts
        .iter()
        .map(|(sku, per)| stock.get(sku).map(|q| q.max(&0) / per))
        .try_fold(i64::MAX, |m, q| q.map(|q| m.min(q)))
        .filter(|_| !parts.is_empty())
}

impl Ledger {
    /// Writes a rules file's rows in one transaction: a row replaces the
    /// SKU's rule for its provider, a row with every field empty removes
    /// it. Rows naming a SKU the ledger does not know are refused, and
    /// then nothing is written.
    pub async fn import_rules(&self, rows: &[RuleRow], file: &str) -> Result<DefinitionReport> {
        db(async move {
            let mut tx = self.begin().await?;
            let known = known_skus(&mut tx).await?;
            let refused: Vec<(usize, String)> = rows
                .iter()
                .filter(|r| !known.contains(&r.sku))
                .map(|r| {
                    (
                        r.line,
                        format!(
                            "SKU `{}` is not in the ledger: import its stock (or its bundle) first",
                            r.sku
                        ),
                    )
                })
                .collect();
            if !refused.is_empty() {
                return Err(LedgerError::Refused(refused));
            }
            let now = now_ms();
            let mut report = DefinitionReport::default();
            for r in rows {
                if r.set.is_empty() {
                    let gone =
                        sqlx::query("DELETE FROM sku_rules WHERE sku = $1 AND provider = $2")
                            .bind(&r.sku)
                            .bind(r.provider.as_str())
                            .execute(&mut *tx)
                            .await?;
                    report.removed += gone.rows_affected() as usize;
                    continue;
                }
                sqlx::query(
                    "INSERT INTO sku_rules (sku, provider, safety_stock, zero_below, percent,
                                        max_quantity, frozen, source, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (sku, provider) DO UPDATE SET
                     safety_stock = excluded.safety_stock, zero_below = excluded.zero_below,
                     percent = excluded.percent, max_quantity = excluded.max_quantity,
                     frozen = excluded.frozen, source = excluded.source,
                     updated_at_ms = excluded.updated_at_ms",
                )
                .bind(&r.sku)
                .bind(r.provider.as_str())
                .bind(r.set.get(Field::SafetyStock))
                .bind(r.set.get(Field::ZeroBelow))
                .bind(r.set.get(Field::Percent))
                .bind(r.set.get(Field::MaxQuantity))
                .bind(r.set.get(Field::Frozen))
                .bind(format!("{file} line {}", r.line))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                report.written += 1;
            }
            changed(&mut tx, "rules", file, rows.len()).await?;
            tx.commit().await?;
            Ok(report)
        })
        .await
    }

    /// Every SKU rule, or those of one SKU.
    pub async fn sku_rules(&self, sku: Option<&str>) -> Result<Vec<SkuRule>> {
        db(async move {
            let rows = sqlx::query(
            "SELECT sku, provider, safety_stock, zero_below, percent, max_quantity, frozen, source
             FROM sku_rules WHERE CAST($1 AS TEXT) IS NULL OR sku = $1 ORDER BY sku, provider",
        )
        .bind(sku)
        .fetch_all(&self.read)
        .await?;
            rows.iter()
                .map(|r| {
                    let p: String = r.get(1);
                    Ok(SkuRule {
                        sku: r.get(0),
                        provider: super::parse_provider(&p)?,
                        safety_stock: r.get(2),
                        zero_below: r.get(3),
                        percent: r.get(4),
                        max_quantity: r.get(5),
                        frozen: r.get::<Option<i64>, _>(6).map(|f| f != 0),
                        source: r.get(7),
                    })
                })
                .collect()
        })
        .await
    }

    /// Defines the bundles of a file, in one transaction: each bundle named
    /// is replaced by its rows (others stay). Refused, with the row's line,
    /// and then nothing is written: a bundle that has stock of its own, a
    /// component that is neither a SKU with stock nor a bundle, a cycle (a
    /// bundle containing itself through others).
    pub async fn import_bundles(&self, rows: &[BundleRow], file: &str) -> Result<DefinitionReport> {
        db(async move {
            let mut tx = self.begin().await?;
            let stock: HashSet<String> = sqlx::query_scalar("SELECT sku FROM stock")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            let stored: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT bundle_sku, component_sku, quantity FROM bundles")
                    .fetch_all(&mut *tx)
                    .await?;
            let named: HashSet<&str> = rows.iter().map(|r| r.bundle.as_str()).collect();
            let mut defs: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            for (b, c, q) in stored
                .iter()
                .filter(|(b, _, _)| !named.contains(b.as_str()))
            {
                defs.entry(b.clone()).or_default().insert(c.clone(), *q);
            }
            let mut line_of: HashMap<(&str, &str), usize> = HashMap::new();
            for r in rows {
                defs.entry(r.bundle.clone())
                    .or_default()
                    .insert(r.component.clone(), r.quantity);
                line_of.insert((&r.bundle, &r.component), r.line);
            }
            let mut refused = Vec::new();
            for r in rows {
                if stock.contains(&r.bundle) {
                    refused.push((
                        r.line,
                        format!(
                            "`{}` has stock of its own in the ledger: a bundle's stock comes from its components; give the bundle another SKU",
                            r.bundle
                        ),
                    ));
                } else if !stock.contains(&r.component) && !defs.contains_key(&r.component) {
                    refused.push((
                        r.line,
                        format!(
                            "component `{}` of `{}` is not in the ledger: import its stock first (or define it as a bundle)",
                            r.component, r.bundle
                        ),
                    ));
                }
            }
            if refused.is_empty() {
                match flatten(&defs) {
                    Ok(parts) => {
                        write_bundles(&mut tx, rows, &named, &parts, file).await?;
                        changed(&mut tx, "bundles", file, rows.len()).await?;
                        tx.commit().await?;
                        return Ok(DefinitionReport {
                            written: rows.len(),
                            removed: 0,
                        });
                    }
                    Err(cycle) => {
                        // Report it on the file's first row along the cycle.
                        let line = cycle
                            .windows(2)
                            .filter_map(|w| line_of.get(&(w[0].as_str(), w[1].as_str())))
                            .min()
                            .copied()
                            .unwrap_or(0);
                        refused.push((
                            line,
                            format!(
                                "bundle `{}` would contain itself: {}",
                                cycle[0],
                                cycle.join(" -> ")
                            ),
                        ));
                    }
                }
            }
            refused.sort();
            Err(LedgerError::Refused(refused))
        })
        .await
    }

    /// Every bundle, or one.
    pub async fn bundles(&self, sku: Option<&str>) -> Result<Vec<Bundle>> {
        db(async move {
            let comps: Vec<(String, String, i64, String)> = sqlx::query_as(
                "SELECT bundle_sku, component_sku, quantity, source FROM bundles
             WHERE CAST($1 AS TEXT) IS NULL OR bundle_sku = $1 ORDER BY bundle_sku, component_sku",
            )
            .bind(sku)
            .fetch_all(&self.read)
            .await?;
            let parts: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT bundle_sku, sku, quantity FROM bundle_parts
             WHERE CAST($1 AS TEXT) IS NULL OR bundle_sku = $1 ORDER BY bundle_sku, sku",
            )
            .bind(sku)
            .fetch_all(&self.read)
            .await?;
            let mut out: BTreeMap<String, Bundle> = BTreeMap::new();
            for (b, c, q, source) in comps {
                out.entry(b.clone())
                    .or_insert_with(|| Bundle {
                        sku: b,
                        components: vec![],
                        parts: Parts::new(),
                    })
                    .components
                    .push(BundleComponent {
                        sku: c,
                        quantity: q,
                        source,
                    });
            }
            for (b, s, q) in parts {
                if let Some(bundle) = out.get_mut(&b) {
                    bundle.parts.insert(s, q);
                }
            }
            Ok(out.into_values().collect())
        })
        .await
    }

    /// The bundles `sku` is a part of (directly or through another bundle),
    /// with the units of it each takes.
    pub async fn bundles_using(&self, sku: &str) -> Result<Vec<(String, i64)>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT bundle_sku, quantity FROM bundle_parts WHERE sku = $1 ORDER BY bundle_sku",
            )
            .bind(sku)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }
}

async fn write_bundles(
    conn: &mut AnyConnection,
    rows: &[BundleRow],
    named: &HashSet<&str>,
    parts: &BTreeMap<String, Parts>,
    file: &str,
) -> Result<()> {
    let named: Vec<&str> = named.iter().copied().collect();
    sqlx::query(sql(
        conn,
        "DELETE FROM bundles WHERE bundle_sku IN (SELECT value FROM json_each($1))",
    ))
    .bind(json_list(&named))
    .execute(&mut *conn)
    .await?;
    for r in rows {
        sqlx::query(
            "INSERT INTO bundles (bundle_sku, component_sku, quantity, source) VALUES ($1, $2, $3, $4)",
        )
        .bind(&r.bundle)
        .bind(&r.component)
        .bind(r.quantity)
        .bind(format!("{file} line {}", r.line))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM bundle_parts")
        .execute(&mut *conn)
        .await?;
    for (b, ps) in parts {
        for (s, q) in ps {
            sqlx::query("INSERT INTO bundle_parts (bundle_sku, sku, quantity) VALUES ($1, $2, $3)")
                .bind(b)
                .bind(s)
                .bind(q)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Notes an import, so every planner re-plans.
async fn changed(conn: &mut AnyConnection, what: &str, file: &str, rows: usize) -> Result<()> {
    sqlx::query("INSERT INTO definition_changes (what, file, rows, at_ms) VALUES ($1, $2, $3, $4)")
        .bind(what)
        .bind(file)
        .bind(rows as i64)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs(rows: &[(&str, &str, i64)]) -> BTreeMap<String, BTreeMap<String, i64>> {
        let mut d: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for (b, c, q) in rows {
            d.entry(b.to_string())
                .or_default()
                .insert(c.to_string(), *q);
        }
        d
    }

    #[test]
    fn nested_bundles_multiply_out_to_skus_with_stock() {
        let d = defs(&[
            ("GIFT", "PAIR", 2),
            ("GIFT", "CARD", 1),
            ("PAIR", "SOCK", 2),
        ]);
        let p = flatten(&d).unwrap();
        assert_eq!(
            p["GIFT"],
            Parts::from([("CARD".to_string(), 1), ("SOCK".to_string(), 4)])
        );
        // floor(floor(S / 2) / 2) == floor(S / 4): flattening keeps the count.
        for socks in 0..40 {
            let stock = HashMap::from([("SOCK".to_string(), socks), ("CARD".to_string(), 100)]);
            let pairs = bundle_quantity(&p["PAIR"], &stock).unwrap();
            assert_eq!(bundle_quantity(&p["GIFT"], &stock), Some(pairs / 2));
        }
    }

    #[test]
    fn a_cycle_is_named_as_its_path() {
        let d = defs(&[("A", "B", 1), ("B", "C", 1), ("C", "A", 2), ("C", "X", 1)]);
        let cycle = flatten(&d).unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4, "{cycle:?}");
        assert!(flatten(&defs(&[("A", "A", 1)])).is_err());
    }

    #[test]
    fn a_bundle_makes_the_fewest_its_parts_allow_never_below_zero() {
        let parts = Parts::from([("A".to_string(), 2), ("B".to_string(), 3)]);
        let stock = |a, b| HashMap::from([("A".to_string(), a), ("B".to_string(), b)]);
        assert_eq!(bundle_quantity(&parts, &stock(10, 10)), Some(3));
        assert_eq!(bundle_quantity(&parts, &stock(3, 100)), Some(1));
        assert_eq!(bundle_quantity(&parts, &stock(-5, 100)), Some(0));
        assert_eq!(
            bundle_quantity(&parts, &HashMap::from([("A".to_string(), 9)])),
            None
        );
        assert_eq!(bundle_quantity(&Parts::new(), &stock(1, 1)), None);
    }

    use crate::domain::{ItemEffect, ListingRef, OrderChanges, OrderItem};
    use crate::ledger::test_support::temp_ledger;

    const P: ProviderName = ProviderName::Bazaardan;

    fn line(key: &str, listing: &str, hint: Option<&str>, qty: i64, hold: bool) -> OrderChanges {
        OrderChanges {
            items: vec![OrderItem {
                key: key.to_string(),
                order_ref: format!("BD-{key}"),
                listing_id: listing.to_string(),
                variant_id: String::new(),
                sku_hint: hint.map(str::to_string),
                quantity: qty,
                status: if hold { "accepted" } else { "cancelled" }.to_string(),
                effect: if hold {
                    ItemEffect::Hold
                } else {
                    ItemEffect::Release
                },
                updated_at: format!("2026-12-02 10:00:0{}", u8::from(!hold)),
                created_at: None,
            }],
            cursor: Some("c".to_string()),
            ..OrderChanges::default()
        }
    }

    fn row(line: usize, b: &str, c: &str, q: i64) -> BundleRow {
        BundleRow {
            line,
            bundle: b.to_string(),
            component: c.to_string(),
            quantity: q,
        }
    }

    fn listing(id: &str) -> ListingRef {
        ListingRef {
            provider: P,
            listing_id: id.to_string(),
            variant_id: String::new(),
        }
    }

    async fn seeded() -> (tempfile::TempDir, Ledger) {
        let (dir, ledger) = temp_ledger().await;
        ledger
            .import_stock(&[("A".into(), 10), ("B".into(), 5)], "seed", "seed")
            .await
            .unwrap();
        ledger
            .import_bundles(&[row(2, "K", "A", 2), row(3, "K", "B", 1)], "b.csv")
            .await
            .unwrap();
        (dir, ledger)
    }

    async fn qty(ledger: &Ledger, sku: &str) -> Option<i64> {
        ledger.stock_of(sku).await.unwrap()
    }

    #[tokio::test]
    async fn a_bundle_line_moves_its_parts_once_and_its_cancellation_gives_back_what_it_took() {
        let (_d, ledger) = seeded().await;
        ledger
            .import_mappings(&[("K".into(), listing("77"))])
            .await
            .unwrap();
        let hold = line("1", "77", None, 2, true);
        let r = ledger.apply_orders(P, &hold, 0).await.unwrap();
        assert_eq!(r.movements, 2, "one movement per part");
        ledger.apply_orders(P, &hold, 0).await.unwrap();
        assert_eq!(
            (qty(&ledger, "A").await, qty(&ledger, "B").await),
            (Some(6), Some(3))
        );
        assert_eq!(qty(&ledger, "K").await, None, "a bundle has no stock row");
        let a = ledger.history("A").await.unwrap();
        let last = a.last().unwrap();
        assert_eq!(last.idempotency_key, "bazaardan/item/1/hold/A");
        assert!(
            last.reason.contains("BD-1") && last.reason.contains("bundle K"),
            "{}",
            last.reason
        );
        // Redefined between the sale and its cancellation: the cancellation
        // still gives back what the sale took.
        ledger
            .import_bundles(&[row(2, "K", "A", 1)], "b2.csv")
            .await
            .unwrap();
        let cancel = line("1", "77", None, 2, false);
        ledger.apply_orders(P, &cancel, 0).await.unwrap();
        ledger.apply_orders(P, &cancel, 0).await.unwrap();
        assert_eq!(
            (qty(&ledger, "A").await, qty(&ledger, "B").await),
            (Some(10), Some(5))
        );
        // The planner reads what the parts make: now K = A x1 only.
        let states = ledger.listing_states(P).await.unwrap();
        assert_eq!(states[0].ledger_qty, Some(10));
    }

    #[tokio::test]
    async fn a_line_waiting_for_a_bundle_applies_when_the_bundle_is_defined() {
        let (_d, ledger) = seeded().await;
        // A line printing SKU `G`, unknown yet: kept, unlinked.
        let r = ledger
            .apply_orders(P, &line("9", "88", Some("G"), 1, true), 0)
            .await
            .unwrap();
        assert_eq!(r.unlinked, 1);
        ledger
            .import_bundles(&[row(2, "G", "K", 2), row(3, "G", "B", 1)], "g.csv")
            .await
            .unwrap();
        // As `bundle import` and every poll do.
        assert_eq!(ledger.relink_pending().await.unwrap(), 1);
        // G = 2 K + B = 4 A + 3 B: the waiting line took them.
        assert_eq!(
            (qty(&ledger, "A").await, qty(&ledger, "B").await),
            (Some(6), Some(2))
        );
        let states = ledger.listing_states(P).await.unwrap();
        // G now makes min(6 / 4, 2 / 3) = 0.
        assert_eq!(states[0].sku, "G");
        assert_eq!(states[0].ledger_qty, Some(0));
    }

    #[tokio::test]
    async fn a_bundle_has_no_stock_of_its_own() {
        let (_d, ledger) = seeded().await;
        let e = ledger
            .erp_movement("K", crate::ledger::StockChange::To(3), "count", "k1")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is a bundle"), "{e}");
        assert!(
            ledger
                .import_stock(&[("K".into(), 1)], "x", "x")
                .await
                .is_err()
        );
        assert_eq!(qty(&ledger, "K").await, None);
        // But it can be linked.
        ledger
            .import_mappings(&[("K".into(), listing("5"))])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn imports_refuse_what_cannot_be_a_bundle_and_write_nothing() {
        let (_d, ledger) = seeded().await;
        let refused = |e: LedgerError| match e {
            LedgerError::Refused(r) => r,
            e => panic!("{e}"),
        };
        // A SKU with stock of its own.
        let r = refused(
            ledger
                .import_bundles(&[row(2, "A", "B", 1)], "x.csv")
                .await
                .unwrap_err(),
        );
        assert_eq!(r[0].0, 2);
        assert!(r[0].1.contains("stock of its own"), "{r:?}");
        // An unknown component.
        let r = refused(
            ledger
                .import_bundles(&[row(2, "N", "A", 1), row(3, "N", "ZZ", 1)], "x.csv")
                .await
                .unwrap_err(),
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, 3);
        assert!(r[0].1.contains("`ZZ`"), "{r:?}");
        // A cycle through a stored bundle: K (stored) would contain L,
        // which contains K.
        let r = refused(
            ledger
                .import_bundles(&[row(2, "L", "K", 1), row(4, "K", "L", 1)], "x.csv")
                .await
                .unwrap_err(),
        );
        assert!(r[0].1.contains("would contain itself"), "{r:?}");
        assert_eq!(r[0].0, 2, "{r:?}");
        // Nothing of the refused files was written.
        let all: Vec<String> = ledger
            .bundles(None)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.sku)
            .collect();
        assert_eq!(all, ["K"]);
        assert_eq!(
            ledger.bundles(Some("K")).await.unwrap()[0].parts,
            Parts::from([("A".to_string(), 2), ("B".to_string(), 1)])
        );
    }

    #[tokio::test]
    async fn sku_rules_are_set_replaced_and_removed_and_move_the_plan_version() {
        let (_d, ledger) = seeded().await;
        ledger
            .import_mappings(&[("A".into(), listing("1"))])
            .await
            .unwrap();
        let v0 = ledger.plan_version(P).await.unwrap();
        let rule = |line, sku: &str, set| RuleRow {
            line,
            sku: sku.to_string(),
            provider: P,
            set,
        };
        let cap = RuleSet::default().with(Field::MaxQuantity, 3);
        let r = ledger
            .import_rules(&[rule(2, "A", cap), rule(3, "NOPE", cap)], "r.csv")
            .await
            .unwrap_err();
        assert!(
            matches!(&r, LedgerError::Refused(v) if v.len() == 1 && v[0].0 == 3),
            "{r}"
        );
        assert_eq!(ledger.plan_version(P).await.unwrap(), v0, "nothing written");
        ledger
            .import_rules(&[rule(2, "A", cap), rule(3, "K", cap)], "r.csv")
            .await
            .unwrap();
        let v1 = ledger.plan_version(P).await.unwrap();
        assert_ne!(v0, v1, "an import re-plans");
        assert_eq!(ledger.listing_states(P).await.unwrap()[0].rule, Some(cap));
        let rows = ledger.sku_rules(Some("A")).await.unwrap();
        assert_eq!(rows[0].source, "r.csv line 2");
        // An all-empty row removes it.
        let r = ledger
            .import_rules(&[rule(5, "A", RuleSet::default())], "r2.csv")
            .await
            .unwrap();
        assert_eq!((r.written, r.removed), (0, 1));
        assert_eq!(ledger.listing_states(P).await.unwrap()[0].rule, None);
        assert_eq!(ledger.sku_rules(None).await.unwrap().len(), 1, "K's stays");
    }
}
