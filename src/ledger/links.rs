//! Links made by the operator (`mapping import`), and the journal of links
//! moved from one SKU to another.
//!
//! A mapping row can sell a listing as the wrong SKU, which oversells: the
//! next order is booked to the new SKU while the old one stays high on every
//! other marketplace. So a row is refused when its SKU has no stock row, or
//! when its listing is linked to another SKU and the operator did not ask to
//! move it. The checks run in the write transaction that imports the rows,
//! so a daemon writing beside the CLI cannot slip a change in between.

use super::db;
use super::{Ledger, LedgerError, Result};
use crate::domain::{ListingRef, now_ms};
use serde::Serialize;
use sqlx::AnyConnection;
use std::collections::HashMap;

/// One row of a mapping file: link `listing` to `sku`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// The row's line in its file (the header is line 1), for errors.
    pub line: usize,
    pub sku: String,
    pub listing: ListingRef,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkReport {
    /// Listings linked for the first time.
    pub new: usize,
    /// Rows that re-stated the link a listing already had.
    pub unchanged: usize,
    /// Listings moved to another SKU (`relink`), as journaled.
    pub moved: Vec<LinkChange>,
}

/// A link moved from one SKU to another: a row of the append-only journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LinkChange {
    pub provider: String,
    pub listing_id: String,
    pub variant_id: String,
    pub old_sku: String,
    pub new_sku: String,
    /// What moved it, e.g. `mapping import listings.csv`.
    pub source: String,
    pub at_ms: i64,
}

impl LinkChange {
    /// `bazaardan/5001` or `bazaardan/5001/7`, as `ListingRef` prints.
    pub fn listing(&self) -> String {
        if self.variant_id.is_empty() {
            format!("{}/{}", self.provider, self.listing_id)
        } else {
            format!("{}/{}/{}", self.provider, self.listing_id, self.variant_id)
        }
    }
}

/// What a valid row will do.
enum Action {
    New,
    Unchanged,
    Move { from: String },
}

impl Ledger {
    /// Links listings to SKUs, all rows or none. Refuses (with
    /// [`LedgerError::Refused`], every bad row with its line) a row whose SKU
    /// has no stock row, and a row whose listing is linked to another SKU
    /// unless `relink` is set. A move forgets the listing's confirmed and
    /// refused values, so the new SKU's quantity is pushed, and is journaled
    /// with `source`.
    pub async fn import_links(
        &self,
        rows: &[LinkRow],
        relink: bool,
        source: &str,
    ) -> Result<LinkReport> {
        db(async move {
            let mut tx = self.begin().await?;
            let actions = check(&mut tx, rows, relink).await?;
            let now = now_ms();
            let mut report = LinkReport::default();
            for (row, action) in rows.iter().zip(actions) {
                let l = &row.listing;
                match action {
                    Action::New => {
                        sqlx::query(
                            "INSERT INTO listings (provider, listing_id, variant_id, sku, origin)
                         VALUES ($1, $2, $3, $4, 'mapping')",
                        )
                        .bind(l.provider.as_str())
                        .bind(&l.listing_id)
                        .bind(&l.variant_id)
                        .bind(&row.sku)
                        .execute(&mut *tx)
                        .await?;
                        report.new += 1;
                    }
                    Action::Unchanged => {
                        // As before links were checked: the operator vouches for
                        // the link, and a value the provider refused is tried again.
                        sqlx::query(
                            "UPDATE listings SET origin = 'mapping', rejected_qty = NULL
                         WHERE provider = $1 AND listing_id = $2 AND variant_id = $3",
                        )
                        .bind(l.provider.as_str())
                        .bind(&l.listing_id)
                        .bind(&l.variant_id)
                        .execute(&mut *tx)
                        .await?;
                        report.unchanged += 1;
                    }
                    Action::Move { from } => {
                        // What the provider confirmed was the old SKU's quantity.
                        sqlx::query(
                        "UPDATE listings SET sku = $1, origin = 'mapping', confirmed_qty = NULL,
                                confirmed_at_ms = NULL, rejected_qty = NULL, last_error = NULL
                         WHERE provider = $2 AND listing_id = $3 AND variant_id = $4",
                    )
                    .bind(&row.sku)
                    .bind(l.provider.as_str())
                    .bind(&l.listing_id)
                    .bind(&l.variant_id)
                    .execute(&mut *tx)
                    .await?;
                        let change = LinkChange {
                            provider: l.provider.as_str().to_string(),
                            listing_id: l.listing_id.clone(),
                            variant_id: l.variant_id.clone(),
                            old_sku: from,
                            new_sku: row.sku.clone(),
                            source: source.to_string(),
                            at_ms: now,
                        };
                        sqlx::query(
                            "INSERT INTO link_changes (provider, listing_id, variant_id, old_sku,
                                                   new_sku, source, at_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(&change.provider)
                        .bind(&change.listing_id)
                        .bind(&change.variant_id)
                        .bind(&change.old_sku)
                        .bind(&change.new_sku)
                        .bind(&change.source)
                        .bind(change.at_ms)
                        .execute(&mut *tx)
                        .await?;
                        report.moved.push(change);
                    }
                }
            }
            tx.commit().await?;
            Ok(report)
        })
        .await
    }

    /// The rows [`Ledger::import_links`] would refuse now, each with its
    /// line. Writes nothing: for reporting them beside a file's other errors
    /// when nothing is imported anyway.
    pub async fn check_links(
        &self,
        rows: &[LinkRow],
        relink: bool,
    ) -> Result<Vec<(usize, String)>> {
        db(async move {
            let mut conn = self.read.acquire().await?;
            match check(&mut conn, rows, relink).await {
                Ok(_) => Ok(Vec::new()),
                Err(LedgerError::Refused(errors)) => Ok(errors),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Links listings to SKUs, refusing as [`Ledger::import_links`] does
    /// without `relink`; rows are numbered from 1 in errors.
    pub async fn import_mappings(&self, rows: &[(String, ListingRef)]) -> Result<usize> {
        db(async move {
            let rows: Vec<LinkRow> = rows
                .iter()
                .enumerate()
                .map(|(i, (sku, listing))| LinkRow {
                    line: i + 1,
                    sku: sku.clone(),
                    listing: listing.clone(),
                })
                .collect();
            self.import_links(&rows, false, "import_mappings").await?;
            Ok(rows.len())
        })
        .await
    }

    /// The newest `limit` link moves, newest first.
    pub async fn link_changes(&self, limit: i64) -> Result<Vec<LinkChange>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT provider, listing_id, variant_id, old_sku, new_sku, source, at_ms
             FROM link_changes ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }
}

/// What each row will do, or every refused row with its line.
async fn check(conn: &mut AnyConnection, rows: &[LinkRow], relink: bool) -> Result<Vec<Action>> {
    let mut actions = Vec::with_capacity(rows.len());
    let mut refused = Vec::new();
    let mut seen: HashMap<&ListingRef, usize> = HashMap::new();
    for row in rows {
        if let Some(first) = seen.insert(&row.listing, row.line) {
            refused.push((
                row.line,
                format!("listing {} already given on line {first}", row.listing),
            ));
            continue;
        }
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM stock WHERE sku = $1 UNION ALL SELECT 1 FROM bundles WHERE bundle_sku = $1",
        )
        .bind(&row.sku)
        .fetch_optional(&mut *conn)
        .await?;
        if known.is_none() {
            refused.push((
                row.line,
                format!(
                    "SKU `{}` is not in the ledger: import its stock first (`stock import`, or `bundle import` for a bundle), then link it",
                    row.sku
                ),
            ));
            continue;
        }
        let l = &row.listing;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT sku FROM listings WHERE provider = $1 AND listing_id = $2 AND variant_id = $3",
        )
        .bind(l.provider.as_str())
        .bind(&l.listing_id)
        .bind(&l.variant_id)
        .fetch_optional(&mut *conn)
        .await?;
        actions.push(match current {
            None => Action::New,
            Some(sku) if sku == row.sku => Action::Unchanged,
            Some(sku) if relink => Action::Move { from: sku },
            Some(sku) => {
                refused.push((
                    row.line,
                    format!(
                        "listing {l} is linked to SKU `{sku}`; to sell it as `{}` instead, import with --relink",
                        row.sku
                    ),
                ));
                continue;
            }
        });
    }
    if refused.is_empty() {
        Ok(actions)
    } else {
        Err(LedgerError::Refused(refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderName;
    use crate::ledger::test_support::temp_ledger;

    const P: ProviderName = ProviderName::Bazaardan;

    fn row(line: usize, sku: &str, listing_id: &str) -> LinkRow {
        LinkRow {
            line,
            sku: sku.into(),
            listing: ListingRef {
                provider: P,
                listing_id: listing_id.into(),
                variant_id: String::new(),
            },
        }
    }

    /// KALEM-1 (10) and KALEM-2 (4); listing 5001 linked to KALEM-1 and
    /// confirmed at 10.
    async fn seeded() -> (tempfile::TempDir, Ledger) {
        let (dir, ledger) = temp_ledger().await;
        ledger
            .import_stock(
                &[("KALEM-1".into(), 10), ("KALEM-2".into(), 4)],
                "b",
                "seed",
            )
            .await
            .unwrap();
        let r = ledger
            .import_links(&[row(2, "KALEM-1", "5001")], false, "seed")
            .await
            .unwrap();
        assert_eq!((r.new, r.unchanged, r.moved.len()), (1, 0, 0));
        // As if pushed and confirmed, then a later value refused.
        let mut tx = ledger.begin().await.unwrap();
        sqlx::query("UPDATE listings SET confirmed_qty = 10, rejected_qty = 9, last_error = 'no'")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (dir, ledger)
    }

    /// (confirmed_qty, rejected_qty, last_error) of one listing.
    async fn push_state(
        ledger: &Ledger,
        listing_id: &str,
    ) -> (Option<i64>, Option<i64>, Option<String>) {
        sqlx::query_as(
            "SELECT confirmed_qty, rejected_qty, last_error FROM listings
             WHERE provider = 'bazaardan' AND listing_id = $1",
        )
        .bind(listing_id)
        .fetch_one(&ledger.read)
        .await
        .unwrap()
    }

    /// (sku, listing_id, confirmed_qty) of every link.
    async fn links(ledger: &Ledger) -> Vec<(String, String, Option<i64>)> {
        ledger
            .list_mappings()
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.sku, m.listing_id, m.confirmed_qty))
            .collect()
    }

    fn refused(e: LedgerError) -> Vec<(usize, String)> {
        match e {
            LedgerError::Refused(rows) => rows,
            other => panic!("expected refused rows, got {other}"),
        }
    }

    #[tokio::test]
    async fn an_unknown_sku_is_refused_with_its_line_and_nothing_is_linked() {
        let (_dir, ledger) = seeded().await;
        let before = links(&ledger).await;
        let rows = [row(2, "KALEM-2", "5002"), row(3, "NO-SUCH-SKU", "5001")];
        for relink in [false, true] {
            let e = ledger.import_links(&rows, relink, "t").await.unwrap_err();
            let errors = refused(e);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].0, 3);
            assert!(
                errors[0].1.contains("`NO-SUCH-SKU` is not in the ledger")
                    && errors[0].1.contains("import its stock first"),
                "{errors:?}"
            );
            assert_eq!(ledger.check_links(&rows, relink).await.unwrap(), errors);
        }
        assert_eq!(links(&ledger).await, before, "the good row 2 is not linked");
        assert!(ledger.link_changes(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_listing_of_another_sku_is_refused_naming_it_unless_relinked() {
        let (_dir, ledger) = seeded().await;
        let rows = [row(2, "KALEM-2", "5002"), row(3, "KALEM-2", "5001")];
        let errors = refused(ledger.import_links(&rows, false, "t").await.unwrap_err());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 3);
        assert!(
            errors[0]
                .1
                .contains("listing bazaardan/5001 is linked to SKU `KALEM-1`")
                && errors[0].1.contains("--relink"),
            "{errors:?}"
        );
        assert_eq!(
            links(&ledger).await,
            vec![("KALEM-1".into(), "5001".into(), Some(10))]
        );

        let r = ledger
            .import_links(&rows, true, "mapping import x.csv")
            .await
            .unwrap();
        assert_eq!((r.new, r.unchanged), (1, 0));
        assert_eq!(r.moved.len(), 1);
        let m = &r.moved[0];
        assert_eq!(
            (m.listing(), m.old_sku.as_str(), m.new_sku.as_str()),
            ("bazaardan/5001".to_string(), "KALEM-1", "KALEM-2")
        );
        // The confirmation was KALEM-1's 10: forgotten, so 4 is pushed.
        assert_eq!(
            links(&ledger).await,
            vec![
                ("KALEM-2".into(), "5001".into(), None),
                ("KALEM-2".into(), "5002".into(), None)
            ]
        );
        assert_eq!(push_state(&ledger, "5001").await, (None, None, None));
        let journal = ledger.link_changes(10).await.unwrap();
        assert_eq!(journal, r.moved);
        assert_eq!(journal[0].source, "mapping import x.csv");

        // Again: nothing moves, nothing more is journaled.
        let r = ledger.import_links(&rows, true, "again").await.unwrap();
        assert_eq!((r.new, r.unchanged, r.moved.len()), (0, 2, 0));
        assert_eq!(ledger.link_changes(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn restating_a_link_keeps_it_and_its_confirmation() {
        let (_dir, ledger) = seeded().await;
        let r = ledger
            .import_links(&[row(2, "KALEM-1", "5001")], false, "t")
            .await
            .unwrap();
        assert_eq!((r.new, r.unchanged, r.moved.len()), (0, 1, 0));
        assert_eq!(
            links(&ledger).await,
            vec![("KALEM-1".into(), "5001".into(), Some(10))]
        );
        // As before links were checked, a refused value may be tried again.
        assert_eq!(
            push_state(&ledger, "5001").await,
            (Some(10), None, Some("no".into()))
        );
        assert!(ledger.link_changes(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn every_refused_row_is_reported_at_once() {
        let (_dir, ledger) = seeded().await;
        let rows = [
            row(2, "GHOST", "7"),
            row(3, "KALEM-1", "8"),
            row(4, "KALEM-2", "5001"),
            row(5, "GHOST-2", "9"),
            row(6, "KALEM-1", "8"),
        ];
        let lines: Vec<usize> = refused(ledger.import_links(&rows, false, "t").await.unwrap_err())
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(lines, vec![2, 4, 5, 6]);
        assert_eq!(links(&ledger).await.len(), 1, "row 3 is not linked either");
    }

    #[tokio::test]
    async fn the_journal_is_append_only() {
        let (_dir, ledger) = seeded().await;
        ledger
            .import_links(&[row(2, "KALEM-2", "5001")], true, "t")
            .await
            .unwrap();
        let mut tx = ledger.begin().await.unwrap();
        let e = sqlx::query("UPDATE link_changes SET new_sku = 'X'")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        drop(tx);
        // A new transaction: PostgreSQL ends one at its first error.
        let mut tx = ledger.begin().await.unwrap();
        let e = sqlx::query("DELETE FROM link_changes")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }

    #[tokio::test]
    async fn the_old_entry_point_refuses_a_steal_too() {
        let (_dir, ledger) = seeded().await;
        let e = ledger
            .import_mappings(&[("KALEM-2".into(), row(0, "KALEM-2", "5001").listing)])
            .await
            .unwrap_err();
        assert_eq!(refused(e)[0].0, 1);
        assert_eq!(links(&ledger).await[0].0, "KALEM-1");
    }
}
