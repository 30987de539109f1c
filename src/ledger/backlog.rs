//! The backlog as the ledger records it.
//!
//! - When pushes were sent, for the push pace (`status`, `/metrics`, the
//!   status page). Read from `push_log`, which the database fills on every
//!   push noted in `push_attempts` and keeps for an hour (see the migration
//!   `push_log`): `push_attempts` itself forgets a push once it is settled.
//! - Since when each listing has waited to be pushed (`pending_since`,
//!   `pending_checks`), and the history that says so: what a listing was
//!   confirmed at and when, its pushes in doubt, its link's last move, the
//!   last rules or bundles import, and the movements of the SKUs its wanted
//!   value is made of. Deciding what that history means is
//!   `crate::engine::pending`'s; here are rows.

use super::db;
use super::sql;
use super::{Ledger, Result};
use crate::domain::{ListingRef, ProviderName};
use sqlx::Row;
use std::collections::{BTreeSet, HashMap};

/// When `pending_since` was last brought up to date for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCheck {
    /// Unix ms, read after `movement_id`.
    pub at_ms: i64,
    /// The newest movement id then (0: none).
    pub movement_id: i64,
}

/// A provider's waiting listings as last recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingRecord {
    pub checked: Option<PendingCheck>,
    /// Each listing waiting then, and since when (Unix ms).
    pub since: HashMap<ListingRef, i64>,
}

/// One provider's waiting listings to record.
#[derive(Debug, Clone, Copy)]
pub struct PendingWrite<'a> {
    pub provider: ProviderName,
    pub checked: PendingCheck,
    /// Each listing waiting then, and since when (Unix ms).
    pub since: &'a [(ListingRef, i64)],
    /// `since` differs from the rows recorded.
    pub rows_changed: bool,
}

/// What the ledger knows of one listing's recent past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingPast {
    pub sku: String,
    pub confirmed_qty: Option<i64>,
    pub confirmed_at_ms: Option<i64>,
    /// When its oldest push still in doubt was sent.
    pub unsettled_since_ms: Option<i64>,
    /// When its link last moved to another SKU.
    pub moved_at_ms: Option<i64>,
}

/// One movement of the journal, as a step of a SKU's quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: i64,
    pub sku: String,
    pub before: i64,
    pub after: i64,
    pub at_ms: i64,
}

/// Everything `crate::engine::pending` replays for some listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingHistory {
    pub listings: HashMap<ListingRef, ListingPast>,
    /// When rules or bundles were last imported (they change wanted values
    /// with no movement).
    pub definitions_at_ms: Option<i64>,
    /// The quantity of every SKU the listings are made of that has stock.
    pub stock: HashMap<String, i64>,
    /// Per bundle SKU (one without stock of its own): its parts, and units
    /// of each per bundle.
    pub parts: HashMap<String, Vec<(String, i64)>>,
    /// The movements of those SKUs after `after_id`, per SKU, oldest first.
    pub steps: HashMap<String, Vec<Step>>,
}

impl Ledger {
    /// When each push to `provider` sent after `since_ms` left (Unix ms),
    /// oldest first. One entry per listing pushed.
    pub async fn push_times_since(
        &self,
        provider: ProviderName,
        since_ms: i64,
    ) -> Result<Vec<i64>> {
        db(async move {
            Ok(sqlx::query_scalar(
                "SELECT sent_at_ms FROM push_log WHERE provider = $1 AND sent_at_ms > $2
             ORDER BY sent_at_ms",
            )
            .bind(provider.as_str())
            .bind(since_ms)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// The newest movement id (0 when the journal is empty). Read before
    /// the listings: a movement after it is one a plan read later may or
    /// may not have seen, so it is replayed.
    pub async fn newest_movement_id(&self) -> Result<i64> {
        db(async move {
            Ok(
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM movements")
                    .fetch_one(&self.read)
                    .await?,
            )
        })
        .await
    }

    /// Every provider's waiting listings as last recorded, and when (the
    /// alerts evaluator reads all of them at once, every period).
    pub async fn pending_records(&self) -> Result<HashMap<ProviderName, PendingRecord>> {
        db(async move {
            let checked: Vec<(String, i64, i64)> =
                sqlx::query_as("SELECT provider, checked_at_ms, movement_id FROM pending_checks")
                    .fetch_all(&self.read)
                    .await?;
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT provider, listing_id, variant_id, since_ms FROM pending_since",
            )
            .fetch_all(&self.read)
            .await?;
            let mut out: HashMap<ProviderName, PendingRecord> = HashMap::new();
            for (p, at_ms, movement_id) in checked {
                let Some(p) = ProviderName::parse(&p) else {
                    continue;
                };
                out.entry(p).or_default().checked = Some(PendingCheck { at_ms, movement_id });
            }
            for (p, listing_id, variant_id, since) in rows {
                let Some(provider) = ProviderName::parse(&p) else {
                    continue;
                };
                out.entry(provider).or_default().since.insert(
                    ListingRef {
                        provider,
                        listing_id,
                        variant_id,
                    },
                    since,
                );
            }
            Ok(out)
        })
        .await
    }

    /// `provider`'s waiting listings as last recorded, and when.
    pub async fn pending_record(&self, provider: ProviderName) -> Result<PendingRecord> {
        db(async move {
            let checked: Option<(i64, i64)> = sqlx::query_as(
                "SELECT checked_at_ms, movement_id FROM pending_checks WHERE provider = $1",
            )
            .bind(provider.as_str())
            .fetch_optional(&self.read)
            .await?;
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT listing_id, variant_id, since_ms FROM pending_since WHERE provider = $1",
            )
            .bind(provider.as_str())
            .fetch_all(&self.read)
            .await?;
            Ok(PendingRecord {
                checked: checked.map(|(at_ms, movement_id)| PendingCheck { at_ms, movement_id }),
                since: rows
                    .into_iter()
                    .map(|(listing_id, variant_id, since)| {
                        (
                            ListingRef {
                                provider,
                                listing_id,
                                variant_id,
                            },
                            since,
                        )
                    })
                    .collect(),
            })
        })
        .await
    }

    /// Records each provider's waiting listings as of its check, all in one
    /// transaction: its rows replaced by `since` when `rows_changed`
    /// (otherwise only the check moves on, one row written).
    pub async fn record_pending(&self, records: &[PendingWrite<'_>]) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            for r in records {
                if r.rows_changed {
                    sqlx::query("DELETE FROM pending_since WHERE provider = $1")
                        .bind(r.provider.as_str())
                        .execute(&mut *tx)
                        .await?;
                    let rows: Vec<serde_json::Value> = r
                        .since
                        .iter()
                        .map(|(l, at)| serde_json::json!([l.listing_id, l.variant_id, at]))
                        .collect();
                    sqlx::query(sql(
                        &tx,
                        "INSERT INTO pending_since (provider, listing_id, variant_id, since_ms)
                         SELECT $1, j.value ->> 0, j.value ->> 1, CAST(j.value ->> 2 AS BIGINT)
                         FROM json_each($2) AS j",
                    ))
                    .bind(r.provider.as_str())
                    .bind(super::journal::json_list(&rows))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO pending_checks (provider, checked_at_ms, movement_id)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (provider) DO UPDATE SET
                         checked_at_ms = excluded.checked_at_ms, movement_id = excluded.movement_id",
                )
                .bind(r.provider.as_str())
                .bind(r.checked.at_ms)
                .bind(r.checked.movement_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The history of `listings` (of `provider`), with the movements after
    /// id `after_id` (a check's newest: older ones were seen then; 0 for
    /// all).
    pub async fn pending_history(
        &self,
        provider: ProviderName,
        listings: &[ListingRef],
        after_id: i64,
    ) -> Result<PendingHistory> {
        db(async move {
            let mut out = PendingHistory::default();
            if listings.is_empty() {
                return Ok(out);
            }
            let wanted: BTreeSet<(&str, &str)> = listings
                .iter()
                .map(|l| (l.listing_id.as_str(), l.variant_id.as_str()))
                .collect();
            // Every listing of the provider, as `listing_states` reads
            // them (one pass, indexed lookups), kept for those asked.
            let rows = sqlx::query(
                "SELECT l.listing_id, l.variant_id, l.sku, l.confirmed_qty, l.confirmed_at_ms,
                        (SELECT MIN(a.sent_at_ms) FROM push_attempts a WHERE a.provider = l.provider
                            AND a.listing_id = l.listing_id AND a.variant_id = l.variant_id),
                        (SELECT MAX(c.at_ms) FROM link_changes c WHERE c.provider = l.provider
                            AND c.listing_id = l.listing_id AND c.variant_id = l.variant_id)
                 FROM listings l WHERE l.provider = $1",
            )
            .bind(provider.as_str())
            .fetch_all(&self.read)
            .await?;
            for r in &rows {
                let (id, variant): (String, String) = (r.get(0), r.get(1));
                if !wanted.contains(&(id.as_str(), variant.as_str())) {
                    continue;
                }
                out.listings.insert(
                    ListingRef {
                        provider,
                        listing_id: id,
                        variant_id: variant,
                    },
                    ListingPast {
                        sku: r.get(2),
                        confirmed_qty: r.get(3),
                        confirmed_at_ms: r.get(4),
                        unsettled_since_ms: r.get(5),
                        moved_at_ms: r.get(6),
                    },
                );
            }
            out.definitions_at_ms = sqlx::query_scalar("SELECT MAX(at_ms) FROM definition_changes")
                .fetch_one(&self.read)
                .await?;
            let skus: BTreeSet<&str> = out.listings.values().map(|p| p.sku.as_str()).collect();
            let skus: Vec<&str> = skus.into_iter().collect();
            let mut conn = self.read.acquire().await?;
            let stock: Vec<(String, i64)> = sqlx::query_as(sql(
                &conn,
                "SELECT sku, quantity FROM stock
                 WHERE sku IN (SELECT value FROM json_each($1))
                    OR sku IN (SELECT bp.sku FROM bundle_parts bp
                               WHERE bp.bundle_sku IN (SELECT value FROM json_each($1)))",
            ))
            .bind(super::journal::json_list(&skus))
            .fetch_all(&mut *conn)
            .await?;
            out.stock = stock.into_iter().collect();
            let parts: Vec<(String, String, i64)> = sqlx::query_as(sql(
                &conn,
                "SELECT bundle_sku, sku, quantity FROM bundle_parts
                 WHERE bundle_sku IN (SELECT value FROM json_each($1)) ORDER BY bundle_sku, sku",
            ))
            .bind(super::journal::json_list(&skus))
            .fetch_all(&mut *conn)
            .await?;
            for (bundle, sku, per) in parts {
                if !out.stock.contains_key(&bundle) {
                    out.parts.entry(bundle).or_default().push((sku, per));
                }
            }
            let moving: Vec<&str> = out.stock.keys().map(String::as_str).collect();
            let steps: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(sql(
                &conn,
                "SELECT id, sku, quantity_before, quantity_after, created_at_ms FROM movements
                 WHERE sku IN (SELECT value FROM json_each($1)) AND id > $2 ORDER BY id",
            ))
            .bind(super::journal::json_list(&moving))
            .bind(after_id)
            .fetch_all(&mut *conn)
            .await?;
            for (id, sku, before, after, at_ms) in steps {
                out.steps.entry(sku.clone()).or_default().push(Step {
                    id,
                    sku,
                    before,
                    after,
                    at_ms,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ListingRef, StockPush, now_ms};
    use crate::ledger::test_support::temp_ledger;
    use crate::ledger::{BundleRow, PushRecord, StockChange};

    fn listing(p: ProviderName, id: &str) -> ListingRef {
        ListingRef {
            provider: p,
            listing_id: id.to_string(),
            variant_id: String::new(),
        }
    }

    /// Notes a push as if sent at `at_ms` (the trigger logs it like any other).
    async fn noted_at(ledger: &Ledger, p: ProviderName, id: &str, at_ms: i64) {
        let mut tx = ledger.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO push_attempts (provider, listing_id, variant_id, qty, tag, sent_at_ms)
             VALUES ($1, $2, '', 1, $3, $4)",
        )
        .bind(p.as_str())
        .bind(id)
        .bind(format!("{id}-{at_ms}"))
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    #[tokio::test]
    async fn push_times_outlive_the_settled_attempts_and_stay_per_provider() {
        let (_dir, ledger) = temp_ledger().await;
        let bz = ProviderName::Bazaardan;
        let now = now_ms();
        // Two pushes through the real path, then both confirmed: that
        // settles (deletes) their `push_attempts` rows.
        let mut pushes = vec![
            StockPush::new(listing(bz, "401"), 3),
            StockPush::new(listing(bz, "402"), 4),
        ];
        ledger.mark_attempted(&mut pushes).await.unwrap();
        for p in &pushes {
            ledger
                .record_push(&p.listing, PushRecord::Confirmed(p.quantity))
                .await
                .unwrap();
        }
        assert!(ledger.unsettled(bz).await.unwrap().is_empty());
        let times = ledger.push_times_since(bz, now - 60_000).await.unwrap();
        assert_eq!(times.len(), 2, "settled pushes still count: {times:?}");
        assert!(times.iter().all(|t| *t >= now), "{times:?}");

        // Older than the window, and another provider's: not counted.
        noted_at(&ledger, bz, "403", now - 10 * 60_000).await;
        noted_at(&ledger, ProviderName::Pazarsync, "9", now).await;
        let times = ledger.push_times_since(bz, now - 5 * 60_000).await.unwrap();
        assert_eq!(times.len(), 2, "{times:?}");
        let all = ledger.push_times_since(bz, 0).await.unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[0], now - 10 * 60_000, "oldest first");
        assert_eq!(
            ledger
                .push_times_since(ProviderName::Pazarsync, 0)
                .await
                .unwrap(),
            vec![now]
        );

        // A push more than an hour older than the newest is pruned.
        noted_at(&ledger, bz, "404", now + 2 * 3_600_000).await;
        let all = ledger.push_times_since(bz, 0).await.unwrap();
        assert_eq!(all, vec![now + 2 * 3_600_000], "older ones pruned");
    }

    /// The record of waiting listings round-trips per provider: its rows
    /// are replaced only when told they changed, its check always.
    #[tokio::test]
    async fn the_waiting_record_is_replaced_whole_and_its_check_moves_on() {
        let (_dir, ledger) = temp_ledger().await;
        let pz = ProviderName::Pazarsync;
        assert_eq!(
            ledger.pending_record(pz).await.unwrap(),
            PendingRecord::default()
        );
        let (a, b) = (listing(pz, "a"), listing(pz, "b"));
        let check = PendingCheck {
            at_ms: 1_000,
            movement_id: 7,
        };
        let write = |checked, since, rows_changed| PendingWrite {
            provider: pz,
            checked,
            since,
            rows_changed,
        };
        let both = [(a.clone(), 500), (b.clone(), 900)];
        ledger
            .record_pending(&[write(check, &both, true)])
            .await
            .unwrap();
        let r = ledger.pending_record(pz).await.unwrap();
        assert_eq!(r.checked, Some(check));
        assert_eq!(r.since, HashMap::from([(a.clone(), 500), (b.clone(), 900)]));
        let later = PendingCheck {
            at_ms: 2_000,
            movement_id: 9,
        };
        ledger
            .record_pending(&[write(later, &[], false)])
            .await
            .unwrap();
        let r = ledger.pending_record(pz).await.unwrap();
        assert_eq!((r.checked, r.since.len()), (Some(later), 2));
        let one = [(b.clone(), 950)];
        ledger
            .record_pending(&[write(later, &one, true)])
            .await
            .unwrap();
        let r = ledger.pending_record(pz).await.unwrap();
        assert_eq!(r.since, HashMap::from([(b, 950)]));
        assert_eq!(
            ledger
                .pending_record(ProviderName::Bazaardan)
                .await
                .unwrap(),
            PendingRecord::default(),
            "another provider's record is its own"
        );
    }

    /// The history of a plain listing and of a bundle's: confirmation,
    /// push in doubt, the stock and parts they are made of, and only the
    /// movements after the check.
    #[tokio::test]
    async fn the_history_holds_what_a_replay_needs() {
        let (_dir, ledger) = temp_ledger().await;
        let pz = ProviderName::Pazarsync;
        ledger
            .import_stock(&[("KALEM".into(), 10), ("DEFTER".into(), 4)], "b1", "seed")
            .await
            .unwrap();
        let seen = ledger.newest_movement_id().await.unwrap();
        assert!(seen >= 2, "{seen}");
        let part = |component: &str, quantity| BundleRow {
            line: 1,
            bundle: "SET".into(),
            component: component.into(),
            quantity,
        };
        ledger
            .import_bundles(&[part("KALEM", 2), part("DEFTER", 1)], "bundles.csv")
            .await
            .unwrap();
        let (kalem, set) = (listing(pz, "k"), listing(pz, "s"));
        ledger
            .import_mappings(&[("KALEM".into(), kalem.clone()), ("SET".into(), set.clone())])
            .await
            .unwrap();
        let mut pushes = vec![
            StockPush::new(kalem.clone(), 10),
            StockPush::new(set.clone(), 4),
        ];
        ledger.mark_attempted(&mut pushes).await.unwrap();
        ledger
            .record_push(&kalem, PushRecord::Confirmed(10))
            .await
            .unwrap();
        ledger
            .erp_movement("KALEM", StockChange::By(-3), "miscount", "k1")
            .await
            .unwrap();
        let h = ledger
            .pending_history(pz, &[kalem.clone(), set.clone()], seen)
            .await
            .unwrap();
        let k = &h.listings[&kalem];
        assert_eq!((k.sku.as_str(), k.confirmed_qty), ("KALEM", Some(10)));
        assert!(k.confirmed_at_ms.is_some() && k.unsettled_since_ms.is_none());
        let s = &h.listings[&set];
        assert_eq!((s.confirmed_qty, s.confirmed_at_ms), (None, None));
        assert!(s.unsettled_since_ms.is_some(), "its push is in doubt");
        assert_eq!(
            h.stock,
            HashMap::from([("KALEM".to_string(), 7), ("DEFTER".to_string(), 4)])
        );
        assert_eq!(
            h.parts["SET"],
            [("DEFTER".to_string(), 1), ("KALEM".to_string(), 2)]
        );
        assert!(h.definitions_at_ms.is_some(), "the bundles import");
        let steps: Vec<(&str, i64, i64)> = h
            .steps
            .values()
            .flatten()
            .map(|s| (s.sku.as_str(), s.before, s.after))
            .collect();
        assert_eq!(steps, [("KALEM", 10, 7)], "only what came after the check");
        // Asked for nothing: nothing read.
        assert_eq!(
            ledger.pending_history(pz, &[], 0).await.unwrap(),
            PendingHistory::default()
        );
    }
}
