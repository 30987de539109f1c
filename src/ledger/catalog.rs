//! Discovery (linking listings by the SKU a provider prints on them), stock
//! a provider shows that changed by hand, and pushes whose outcome is
//! unknown.
//!
//! Telling a hand edit from our own write. A listing's `confirmed_qty` is
//! the value it showed after the last write of ours we heard back about.
//! Every push is noted in `push_attempts` before it is sent and stays there
//! until an answer settles it; while a listing has such unsettled pushes,
//! any of their values may be what it shows (an answer can be lost after
//! the provider applied the write). So a value the provider reports is
//! compared not with `confirmed_qty` alone but along our writes the provider
//! carried out since, read from its own history (`Trail`): a hand edit is
//! what moved the listing between two of our writes, or after the last.

use super::bundles::known_skus;
use super::db;
use super::journal::{MovementKind, NewMovement, StockChange, apply_movement};
use super::relink::relink_in;
use super::{Ledger, Result};
use crate::domain::{
    Attempt, ExternalCount, ListingRef, OurWrite, ProviderName, RemoteListing, StockPush, now_ms,
};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
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
        db(async move {
            let mut tx = self.begin().await?;
            let p = provider.as_str();
            let mut linked: HashMap<(String, String), String> = HashMap::new();
            let mut sku_owner: HashMap<String, String> = HashMap::new();
            for r in sqlx::query("SELECT listing_id, variant_id, sku FROM listings WHERE provider = $1")
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
            let known: HashSet<String> = known_skus(&mut tx).await?;

            sqlx::query("DELETE FROM catalog WHERE provider = $1")
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
                        "UPDATE listings SET confirmed_qty = $1, confirmed_at_ms = $2
                         WHERE provider = $3 AND listing_id = $4 AND variant_id = $5
                           AND confirmed_qty IS NULL
                           AND NOT EXISTS (SELECT 1 FROM push_attempts a WHERE a.provider = $3
                                           AND a.listing_id = $4 AND a.variant_id = $5)",
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
                                 VALUES ($1, $2, $3, $4, 'discovered', $5, $6)",
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
                    "INSERT INTO catalog (provider, listing_id, variant_id, sku, quantity, problem,
                                          seen_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (provider, listing_id, variant_id) DO UPDATE SET
                         sku = excluded.sku, quantity = excluded.quantity,
                         problem = excluded.problem, seen_at_ms = excluded.seen_at_ms",
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
        })
        .await
    }

    /// Listings the last discovery of each provider did not link.
    pub async fn catalog_problems(&self) -> Result<Vec<CatalogProblem>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT provider, listing_id, variant_id, sku, problem FROM catalog
             WHERE problem IS NOT NULL ORDER BY provider, listing_id, variant_id",
            )
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// SKUs linked to several listings of one provider (by mapping or learned
    /// from orders). Each listing is kept in step; the operator should know.
    pub async fn duplicate_links(&self) -> Result<Vec<DuplicateLink>> {
        db(async move {
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
        })
        .await
    }

    /// Notes each push before it is sent, and gives it its tag.
    pub async fn mark_attempted(&self, pushes: &mut [StockPush]) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            let now = now_ms();
            for push in pushes.iter_mut() {
                push.tag = format!("{:016x}", fastrand::u64(..));
                sqlx::query(
                "INSERT INTO push_attempts (provider, listing_id, variant_id, qty, tag, sent_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(push.listing.provider.as_str())
            .bind(&push.listing.listing_id)
            .bind(&push.listing.variant_id)
            .bind(push.quantity)
            .bind(&push.tag)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Forgets pushes noted but never sent (the call stopped before them):
    /// they cannot have changed anything.
    pub async fn unnote(&self, tags: &[String]) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            for tag in tags {
                sqlx::query("DELETE FROM push_attempts WHERE tag = $1")
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Listings of `provider` with pushes whose outcome is unknown, each
    /// with those pushes, oldest first.
    pub async fn unsettled(
        &self,
        provider: ProviderName,
    ) -> Result<HashMap<ListingRef, Vec<Attempt>>> {
        db(async move {
            let rows = sqlx::query(
                "SELECT listing_id, variant_id, qty, tag, sent_at_ms FROM push_attempts
             WHERE provider = $1 ORDER BY id",
            )
            .bind(provider.as_str())
            .fetch_all(&self.read)
            .await?;
            let mut out: HashMap<ListingRef, Vec<Attempt>> = HashMap::new();
            for r in rows {
                out.entry(ListingRef {
                    provider,
                    listing_id: r.get(0),
                    variant_id: r.get(1),
                })
                .or_default()
                .push(Attempt {
                    qty: r.get(2),
                    tag: r.get(3),
                    sent_at_ms: r.get(4),
                });
            }
            Ok(out)
        })
        .await
    }
}

/// What a provider showed of a listing, to compare with what stoksync
/// knows it set.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    /// Our writes the provider carried out since the listing's last
    /// confirmation, oldest first, each with what it showed before.
    pub writes: Vec<OurWrite>,
    /// What it shows now, when read (not given after a push: the last
    /// write's value is).
    pub now: Option<i64>,
    /// Values unsettled pushes of ours may have left, when the provider's
    /// history could not be read: the first value seen is ours if it is one
    /// of these (or the confirmed one); otherwise the latest of them is
    /// taken as the base.
    pub uncertain: Vec<i64>,
    /// Names the observation in the movement's key.
    pub stamp: String,
}

/// Hand-made units in a sighting: what moved the listing between our
/// writes and after the last, measured from `confirmed`. Returns the units
/// and the value the listing shows after it all (its new confirmed value).
pub fn hand_made(confirmed: Option<i64>, s: &Sighting) -> (i64, Option<i64>) {
    let mut base = confirmed;
    let mut hand = 0i64;
    let points = s
        .writes
        .iter()
        .map(|w| (w.old, w.new))
        .chain(s.now.map(|n| (n, n)));
    for (i, (seen, after)) in points.enumerate() {
        if let Some(b) = base {
            if i == 0 && !s.uncertain.is_empty() {
                if seen != b && !s.uncertain.contains(&seen) {
                    let latest = *s.uncertain.last().expect("not empty");
                    hand = hand.saturating_add(seen.saturating_sub(latest));
                }
            } else {
                hand = hand.saturating_add(seen.saturating_sub(b));
            }
        }
        base = Some(after);
    }
    (hand, base)
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

/// A count a provider's read showed for a linked listing (stokdurumu's
/// drift read): with the trail of our unsettled writes when the engine read
/// one.
pub(crate) async fn observe_count(conn: &mut AnyConnection, c: &ExternalCount) -> Result<usize> {
    let l = &c.listing;
    let mut sighting = Sighting {
        now: Some(c.observed),
        stamp: c.stamp.clone(),
        ..Sighting::default()
    };
    match &c.trail {
        Some(t) => sighting.writes = t.writes.clone(),
        None => {
            sighting.uncertain = sqlx::query_scalar(
                "SELECT qty FROM push_attempts
                 WHERE provider = $1 AND listing_id = $2 AND variant_id = $3 ORDER BY id",
            )
            .bind(l.provider.as_str())
            .bind(&l.listing_id)
            .bind(&l.variant_id)
            .fetch_all(&mut *conn)
            .await?;
        }
    }
    observe(conn, l, &sighting).await
}

/// Takes what a provider showed of a linked listing. Units that moved it
/// other than by our writes (see [`hand_made`]) were moved by hand in the
/// provider's panel: they become one `external` movement. The value it
/// shows after everything becomes the confirmed one, and every unsettled
/// push of the listing is settled. Returns movements written.
pub(crate) async fn observe(
    conn: &mut AnyConnection,
    l: &ListingRef,
    s: &Sighting,
) -> Result<usize> {
    let Some(row) = sqlx::query(
        "SELECT sku, confirmed_qty FROM listings
         WHERE provider = $1 AND listing_id = $2 AND variant_id = $3",
    )
    .bind(l.provider.as_str())
    .bind(&l.listing_id)
    .bind(&l.variant_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(0);
    };
    let (sku, confirmed): (String, Option<i64>) = (row.get(0), row.get(1));
    let (hand, shows) = hand_made(confirmed, s);
    let mut written = 0;
    if hand != 0 && super::bundles::is_bundle(conn, &sku).await? {
        // Which components the edit meant is anyone's guess: the ledger
        // stays, and the bundle's value is pushed back over it.
        tracing::warn!(listing = %l, sku = %sku, units = hand, "a change made by hand on a bundle's listing is not taken into the ledger: a bundle has no stock of its own; change its components' stock instead");
    } else if hand != 0 {
        // Unique per observation: an observation is applied in the same
        // transaction that moves the confirmed value past it, so it can
        // never be applied twice, while two hand edits can look alike.
        let key = format!(
            "{}/manual/{}/{}/{}-{:08x}",
            l.provider,
            listing_key(l),
            s.stamp,
            now_ms(),
            fastrand::u32(..)
        );
        let reason = format!(
            "changed by hand in {}: {hand:+} on listing {l} (it shows {})",
            l.provider,
            shows.map_or("?".to_string(), |v| v.to_string())
        );
        let applied = apply_movement(
            conn,
            NewMovement {
                key: &key,
                sku: &sku,
                change: StockChange::By(hand),
                kind: MovementKind::External,
                source: l.provider.as_str(),
                reason: &reason,
            },
        )
        .await?;
        written = usize::from(applied.is_some());
    }
    if let Some(v) = shows {
        sqlx::query(
            "UPDATE listings SET confirmed_qty = $1, confirmed_at_ms = $2
             WHERE provider = $3 AND listing_id = $4 AND variant_id = $5",
        )
        .bind(v)
        .bind(now_ms())
        .bind(l.provider.as_str())
        .bind(&l.listing_id)
        .bind(&l.variant_id)
        .execute(&mut *conn)
        .await?;
    }
    settle(conn, l).await?;
    Ok(written)
}

/// Forgets the unsettled pushes of `l`: an answer or an observation has
/// accounted for them.
pub(crate) async fn settle(conn: &mut AnyConnection, l: &ListingRef) -> Result<()> {
    sqlx::query(
        "DELETE FROM push_attempts WHERE provider = $1 AND listing_id = $2 AND variant_id = $3",
    )
    .bind(l.provider.as_str())
    .bind(&l.listing_id)
    .bind(&l.variant_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn listing_key(l: &ListingRef) -> String {
    describe(&l.listing_id, &l.variant_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::temp_ledger;

    fn listing(provider: ProviderName, id: &str) -> ListingRef {
        ListingRef {
            provider,
            listing_id: id.into(),
            variant_id: String::new(),
        }
    }

    fn remote(provider: ProviderName, id: &str, sku: &str, qty: i64) -> RemoteListing {
        RemoteListing {
            listing: listing(provider, id),
            sku: Some(sku.into()),
            quantity: Some(qty),
        }
    }

    /// The confirmed value of each listing of `sku`, by listing id.
    async fn confirmed(ledger: &Ledger, sku: &str) -> Vec<(String, Option<i64>)> {
        ledger
            .listing_details(sku)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.listing.listing_id, d.confirmed_qty))
            .collect()
    }

    /// A listing linked by `mapping import` has no confirmed value; the
    /// first discovery that sees it takes what the provider shows, so an
    /// equal value is never pushed. Unless a push of ours to it is
    /// unsettled (it may show our value, not its own), or it was confirmed
    /// already. Every provider that discovers, on either backend.
    #[tokio::test]
    async fn an_answered_push_not_yet_told_apart_is_not_pushed_again_but_stays_to_settle() {
        // Found by the simulator (seeds 0 and 11): a push to stokdurumu was
        // answered, but its history could not be read to tell our earlier
        // send from a hand edit; it was recorded as failed, so the listing
        // was pushed the same value again, for nothing.
        let (_d, ledger) = temp_ledger().await;
        let p = ProviderName::Stokdurumu;
        ledger
            .import_stock(&[("A".into(), 5)], "b", "seed")
            .await
            .unwrap();
        let l = listing(p, "41");
        ledger
            .import_mappings(&[("A".into(), l.clone())])
            .await
            .unwrap();
        let mut pushes = vec![StockPush::new(l.clone(), 5)];
        ledger.mark_attempted(&mut pushes).await.unwrap();
        ledger
            .record_push(
                &l,
                crate::ledger::PushRecord::Answered {
                    qty: 5,
                    tag: &pushes[0].tag,
                },
            )
            .await
            .unwrap();
        let states = ledger.listing_states(p).await.unwrap();
        assert_eq!(
            (states[0].confirmed_qty, states[0].unsettled),
            (Some(5), false),
            "it shows what the answer said, and nothing is in doubt"
        );
        assert_eq!(
            ledger.unsettled(p).await.unwrap()[&l].len(),
            1,
            "the attempt stays until a read or an answer settles it"
        );
        // An earlier push with no answer does not put a later answered
        // one in doubt: the later answer says what it shows since.
        let (_d2, other) = temp_ledger().await;
        other
            .import_stock(&[("A".into(), 5)], "b", "seed")
            .await
            .unwrap();
        other
            .import_mappings(&[("A".into(), l.clone())])
            .await
            .unwrap();
        let mut first = vec![StockPush::new(l.clone(), 5)];
        other.mark_attempted(&mut first).await.unwrap();
        let mut second = vec![StockPush::new(l.clone(), 5)];
        other.mark_attempted(&mut second).await.unwrap();
        other
            .record_push(
                &l,
                crate::ledger::PushRecord::Answered {
                    qty: 5,
                    tag: &second[0].tag,
                },
            )
            .await
            .unwrap();
        let states = other.listing_states(p).await.unwrap();
        assert_eq!(
            (states[0].confirmed_qty, states[0].unsettled),
            (Some(5), false)
        );
        assert_eq!(other.unsettled(p).await.unwrap()[&l].len(), 2);
        // A later push with no answer yet: in doubt again.
        let mut again = vec![StockPush::new(l.clone(), 4)];
        ledger.mark_attempted(&mut again).await.unwrap();
        assert!(ledger.listing_states(p).await.unwrap()[0].unsettled);
        ledger
            .record_push(&l, crate::ledger::PushRecord::Confirmed(4))
            .await
            .unwrap();
        assert!(ledger.unsettled(p).await.unwrap().is_empty());
        let states = ledger.listing_states(p).await.unwrap();
        assert_eq!(
            (states[0].confirmed_qty, states[0].unsettled),
            (Some(4), false)
        );
    }

    #[tokio::test]
    async fn a_mapped_listing_starts_from_what_the_provider_shows() {
        for p in [
            ProviderName::Stokdurumu,
            ProviderName::Eticaret,
            ProviderName::Pazarsync,
        ] {
            let (_dir, ledger) = temp_ledger().await;
            ledger
                .import_stock(&[("KALEM-1".into(), 10)], "b", "seed")
                .await
                .unwrap();
            let mapped = ["5001", "5002", "5003"].map(|id| ("KALEM-1".to_string(), listing(p, id)));
            ledger.import_mappings(&mapped).await.unwrap();
            // 5002: a push of ours is unsettled; 5003: confirmed at 10.
            let mut pushes = [StockPush::new(listing(p, "5002"), 10)];
            ledger.mark_attempted(&mut pushes).await.unwrap();
            ledger
                .record_push(
                    &listing(p, "5003"),
                    crate::ledger::PushRecord::Confirmed(10),
                )
                .await
                .unwrap();

            let report = ledger
                .discover(
                    p,
                    &[
                        remote(p, "5001", "KALEM-1", 7),
                        remote(p, "5002", "KALEM-1", 8),
                        remote(p, "5003", "KALEM-1", 9),
                    ],
                )
                .await
                .unwrap_or_else(|e| panic!("discovery of {p} failed: {e}"));
            assert_eq!((report.already_linked, report.problems), (3, 0), "{p}");
            assert_eq!(
                confirmed(&ledger, "KALEM-1").await,
                [
                    ("5001".to_string(), Some(7)),
                    ("5002".to_string(), None),
                    ("5003".to_string(), Some(10)),
                ],
                "{p}"
            );
        }
    }

    fn w(old: i64, new: i64) -> OurWrite {
        OurWrite {
            tag: "t".into(),
            old,
            new,
        }
    }

    #[test]
    fn hand_edits_are_what_moved_a_listing_between_our_writes() {
        // (confirmed, writes, now, uncertain) -> (hand, shows)
        type Case = (
            Option<i64>,
            Vec<OurWrite>,
            Option<i64>,
            Vec<i64>,
            (i64, Option<i64>),
        );
        let cases: Vec<Case> = vec![
            // a plain answer: before 8 where we had 10 -> -2 by hand
            (Some(10), vec![w(8, 15)], None, vec![], (-2, Some(15))),
            // our lost write landed, the retry saw it: nothing by hand
            (
                Some(10),
                vec![w(10, 15), w(15, 15)],
                None,
                vec![],
                (0, Some(15)),
            ),
            // a hand edit between our lost write and its retry
            (
                Some(10),
                vec![w(10, 15), w(13, 15)],
                None,
                vec![],
                (-2, Some(15)),
            ),
            // a hand edit before our write that was then lost
            (
                Some(10),
                vec![w(9, 15), w(15, 15)],
                None,
                vec![],
                (-1, Some(15)),
            ),
            // a read after our lost write, and after a later hand edit
            (Some(10), vec![w(10, 15)], Some(15), vec![], (0, Some(15))),
            (Some(10), vec![w(10, 15)], Some(12), vec![], (-3, Some(12))),
            // a read with nothing of ours in between
            (Some(10), vec![], Some(7), vec![], (-3, Some(7))),
            // never confirmed: no base for the first comparison
            (
                None,
                vec![w(3, 15), w(14, 15)],
                None,
                vec![],
                (-1, Some(15)),
            ),
            (None, vec![], Some(4), vec![], (0, Some(4))),
            // no history: a value one of our unsettled pushes may have left
            // is ours; another is measured from the latest of them
            (Some(10), vec![w(15, 20)], None, vec![15, 20], (0, Some(20))),
            (Some(10), vec![w(10, 20)], None, vec![15, 20], (0, Some(20))),
            (
                Some(10),
                vec![w(18, 20)],
                None,
                vec![15, 20],
                (-2, Some(20)),
            ),
            (Some(10), vec![], Some(15), vec![15], (0, Some(15))),
            (Some(10), vec![], Some(13), vec![15], (-2, Some(13))),
        ];
        for (i, (confirmed, writes, now, uncertain, want)) in cases.into_iter().enumerate() {
            let s = Sighting {
                writes,
                now,
                uncertain,
                stamp: String::new(),
            };
            assert_eq!(hand_made(confirmed, &s), want, "case {i}");
        }
    }
}
