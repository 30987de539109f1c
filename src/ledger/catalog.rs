//! Discovery (linking listings by the SKU a provider prints on them), stock
//! a provider shows that changed by hand, and pushes in flight.

use super::orders::relink_in;
use super::stock::{MovementKind, NewMovement, StockChange, apply_movement};
use super::{Ledger, Result};
use crate::domain::{ExternalCount, ListingRef, ProviderName, RemoteListing, StockPush, now_ms};
use serde::Serialize;
use sqlx::{Row, SqliteConnection};
use std::collections::{HashMap, HashSet};

/// What one discovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiscoverReport {
    pub seen: usize,
    pub newly_linked: usize,
    pub already_linked: usize,
    /// Listings not linked, with the reason (see `catalog_problems`).
    pub problems: usize,
    /// Waiting order lines that the new links let apply.
    pub order_lines_applied: usize,
}

/// A listing discovery saw but did not link, and why.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CatalogProblem {
    pub provider: String,
    pub listing_id: String,
    pub variant_id: String,
    pub sku: Option<String>,
    pub problem: String,
}

/// A SKU linked to more than one listing of one provider.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateLink {
    pub provider: String,
    pub sku: String,
    pub listings: Vec<String>,
}

impl Ledger {
    /// Links every listing of `provider` whose SKU the ledger knows and that
    /// no other listing of the provider claims; keeps the rest, with the
    /// reason, for `status` and `mapping list`. Never guesses: a SKU on two
    /// listings, or one already linked elsewhere on the provider, is not
    /// linked. A new link starts with the quantity the provider shows as
    /// confirmed, so an equal value is never pushed.
    pub async fn discover(
        &self,
        provider: ProviderName,
        remote: &[RemoteListing],
    ) -> Result<DiscoverReport> {
        let mut tx = self.begin().await?;
        let p = provider.as_str();
        let mut linked: HashMap<(String, String), String> = HashMap::new();
        let mut sku_owner: HashMap<String, String> = HashMap::new();
        for r in sqlx::query("SELECT listing_id, variant_id, sku FROM listings WHERE provider = ?")
            .bind(p)
            .fetch_all(&mut *tx)
            .await?
        {
            let (l, v, sku): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            sku_owner.insert(sku.clone(), describe(&l, &v));
            linked.insert((l, v), sku);
        }
        let mut on_listings: HashMap<&str, usize> = HashMap::new();
        for r in remote {
            if let Some(s) = clean(&r.sku) {
                *on_listings.entry(s).or_default() += 1;
            }
        }
        let known: HashSet<String> = sqlx::query_scalar("SELECT sku FROM stock")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();

        sqlx::query("DELETE FROM catalog WHERE provider = ?")
            .bind(p)
            .execute(&mut *tx)
            .await?;
        let now = now_ms();
        let mut report = DiscoverReport {
            seen: remote.len(),
            ..DiscoverReport::default()
        };
        for r in remote {
            let key = (r.listing.listing_id.clone(), r.listing.variant_id.clone());
            let sku = clean(&r.sku);
            let problem = if linked.contains_key(&key) {
                report.already_linked += 1;
                // A link made by mapping before the provider ever confirmed
                // anything starts from what the provider shows.
                sqlx::query(
                    "UPDATE listings SET confirmed_qty = ?, confirmed_at_ms = ?
                     WHERE provider = ? AND listing_id = ? AND variant_id = ?
                       AND confirmed_qty IS NULL AND attempted_qty IS NULL",
                )
                .bind(r.quantity)
                .bind(now)
                .bind(p)
                .bind(&key.0)
                .bind(&key.1)
                .execute(&mut *tx)
                .await?;
                None
            } else {
                match sku {
                    None => Some("the provider shows no SKU on this listing".to_string()),
                    Some(s) if on_listings.get(s).copied().unwrap_or(0) > 1 => Some(format!(
                        "SKU {s} is on {} listings of {provider}; link the right one with `mapping import`",
                        on_listings[s]
                    )),
                    Some(s) if sku_owner.contains_key(s) => Some(format!(
                        "SKU {s} is already linked to {provider} listing {}; not linked twice",
                        sku_owner[s]
                    )),
                    Some(s) if !known.contains(s) => Some(format!(
                        "SKU {s} is not in the ledger; import its stock (it links at the next discovery)"
                    )),
                    Some(s) => {
                        sqlx::query(
                            "INSERT INTO listings (provider, listing_id, variant_id, sku, origin,
                                                   confirmed_qty, confirmed_at_ms)
                             VALUES (?, ?, ?, ?, 'discovered', ?, ?)",
                        )
                        .bind(p)
                        .bind(&key.0)
                        .bind(&key.1)
                        .bind(s)
                        .bind(r.quantity)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        report.newly_linked += 1;
                        None
                    }
                }
            };
            report.problems += usize::from(problem.is_some());
            sqlx::query(
                "INSERT OR REPLACE INTO catalog (provider, listing_id, variant_id, sku, quantity,
                                                 problem, seen_at_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(p)
            .bind(&key.0)
            .bind(&key.1)
            .bind(sku)
            .bind(r.quantity)
            .bind(problem)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        report.order_lines_applied = relink_in(&mut tx).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Listings the last discovery of each provider did not link.
    pub async fn catalog_problems(&self) -> Result<Vec<CatalogProblem>> {
        Ok(sqlx::query_as(
            "SELECT provider, listing_id, variant_id, sku, problem FROM catalog
             WHERE problem IS NOT NULL ORDER BY provider, listing_id, variant_id",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// SKUs linked to several listings of one provider (by mapping or learned
    /// from orders). Each listing is kept in step; the operator should know.
    pub async fn duplicate_links(&self) -> Result<Vec<DuplicateLink>> {
        let rows = sqlx::query(
            "SELECT provider, sku, listing_id, variant_id FROM listings
             WHERE (provider, sku) IN (SELECT provider, sku FROM listings
                                       GROUP BY provider, sku HAVING COUNT(*) > 1)
             ORDER BY provider, sku, listing_id, variant_id",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out: Vec<DuplicateLink> = Vec::new();
        for r in rows {
            let (p, sku): (String, String) = (r.get(0), r.get(1));
            let l = describe(&r.get::<String, _>(2), &r.get::<String, _>(3));
            match out.last_mut() {
                Some(d) if d.provider == p && d.sku == sku => d.listings.push(l),
                _ => out.push(DuplicateLink {
                    provider: p,
                    sku,
                    listings: vec![l],
                }),
            }
        }
        Ok(out)
    }

    /// Notes the values about to be sent, before sending them.
    pub async fn mark_attempted(&self, pushes: &[StockPush]) -> Result<()> {
        let mut tx = self.begin().await?;
        for push in pushes {
            sqlx::query(
                "UPDATE listings SET attempted_qty = ?
                 WHERE provider = ? AND listing_id = ? AND variant_id = ?",
            )
            .bind(push.quantity)
            .bind(push.listing.provider.as_str())
            .bind(&push.listing.listing_id)
            .bind(&push.listing.variant_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn clean(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn describe(listing: &str, variant: &str) -> String {
    if variant.is_empty() {
        listing.to_string()
    } else {
        format!("{listing}/{variant}")
    }
}

/// Takes what a provider shows for a linked listing. When it differs from
/// what stoksync last confirmed, and is not the value of a push of ours whose
/// answer was lost (`attempted_qty`), the difference was made by hand in the
/// provider's panel: it becomes a movement (once: its key names the
/// observation) and the shown value becomes the confirmed one.
///
/// `before_push` is set when the value came from the answer to our own push
/// (the stock just before it was set): then the push in flight is this one
/// and only the confirmed value is the base. Returns movements written.
pub(crate) async fn observe(
    conn: &mut SqliteConnection,
    c: &ExternalCount,
    before_push: bool,
) -> Result<usize> {
    let l = &c.listing;
    let Some(row) = sqlx::query(
        "SELECT sku, confirmed_qty, attempted_qty FROM listings
         WHERE provider = ? AND listing_id = ? AND variant_id = ?",
    )
    .bind(l.provider.as_str())
    .bind(&l.listing_id)
    .bind(&l.variant_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(0);
    };
    let (sku, confirmed, attempted): (String, Option<i64>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2));
    // Never confirmed: there is no base to measure a hand-made change from.
    let Some(confirmed) = confirmed else {
        return Ok(0);
    };
    if c.observed == confirmed {
        return Ok(0);
    }
    let mut written = 0;
    if before_push || attempted != Some(c.observed) {
        let key = format!(
            "{}/manual/{}/{}/{}",
            l.provider,
            listing_key(l),
            c.stamp,
            c.observed
        );
        let reason = format!(
            "changed by hand in {}: {} -> {} on listing {}",
            l.provider, confirmed, c.observed, l
        );
        let applied = apply_movement(
            conn,
            NewMovement {
                key: &key,
                sku: &sku,
                change: StockChange::By(c.observed - confirmed),
                kind: MovementKind::External,
                source: l.provider.as_str(),
                reason: &reason,
            },
        )
        .await?;
        written = usize::from(applied.is_some());
    }
    sqlx::query(
        "UPDATE listings SET confirmed_qty = ?, confirmed_at_ms = ?, attempted_qty = NULL
         WHERE provider = ? AND listing_id = ? AND variant_id = ?",
    )
    .bind(c.observed)
    .bind(now_ms())
    .bind(l.provider.as_str())
    .bind(&l.listing_id)
    .bind(&l.variant_id)
    .execute(&mut *conn)
    .await?;
    Ok(written)
}

fn listing_key(l: &ListingRef) -> String {
    describe(&l.listing_id, &l.variant_id)
}
