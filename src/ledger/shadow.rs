//! Shadow mode's records: what providers show (read by discovery and by
//! stokdurumu's drift reads, never taken as hand edits: in shadow mode the
//! seller's current tool writes those listings), and since when each
//! listing agrees with what stoksync would push, or not.

use super::db;
use super::sql;
use super::{Ledger, Result, parse_provider};
use crate::domain::{ListingRef, ProviderName, now_ms};
use std::collections::HashMap;

impl Ledger {
    /// Takes what `provider` shows of some listings: the catalog's last
    /// read, and for a linked listing its confirmed value (nothing of ours
    /// was pushed to it, so what it showed last is what it shows).
    pub async fn observe_shown(
        &self,
        provider: ProviderName,
        shown: &[(ListingRef, i64)],
    ) -> Result<()> {
        db(async move {
            let now = now_ms();
            let mut tx = self.begin().await?;
            for (l, q) in shown {
                sqlx::query(
                    "UPDATE catalog SET quantity = $1, seen_at_ms = $2
                 WHERE provider = $3 AND listing_id = $4 AND variant_id = $5",
                )
                .bind(q)
                .bind(now)
                .bind(provider.as_str())
                .bind(&l.listing_id)
                .bind(&l.variant_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE listings SET confirmed_qty = $1, confirmed_at_ms = $2
                 WHERE provider = $3 AND listing_id = $4 AND variant_id = $5",
                )
                .bind(q)
                .bind(now)
                .bind(provider.as_str())
                .bind(&l.listing_id)
                .bind(&l.variant_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// What each listing of `provider` showed when last read, and when.
    pub async fn shown(
        &self,
        provider: ProviderName,
    ) -> Result<HashMap<ListingRef, (Option<i64>, i64)>> {
        db(async move {
            let rows: Vec<(String, String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT listing_id, variant_id, quantity, seen_at_ms FROM catalog WHERE provider = $1",
        )
        .bind(provider.as_str())
        .fetch_all(&self.read)
        .await?;
            Ok(rows
                .into_iter()
                .map(|(listing_id, variant_id, q, at)| {
                    (
                        ListingRef {
                            provider,
                            listing_id,
                            variant_id,
                        },
                        (q, at),
                    )
                })
                .collect())
        })
        .await
    }

    /// Records each listing's verdict: a listing keeps its `since` while
    /// its verdict stays; listings of `provider` not given are forgotten.
    pub async fn record_shadow(
        &self,
        provider: ProviderName,
        verdicts: &[(&ListingRef, &str)],
    ) -> Result<()> {
        db(async move {
            let now = now_ms();
            let mut tx = self.begin().await?;
            let rows: Vec<serde_json::Value> = verdicts
                .iter()
                .map(|(l, v)| serde_json::json!([l.listing_id, l.variant_id, v]))
                .collect();
            sqlx::query(sql(
                &tx,
                "DELETE FROM shadow_state WHERE provider = $1 AND NOT EXISTS (
                 SELECT 1 FROM json_each($2) AS j
                 WHERE j.value ->> 0 = shadow_state.listing_id
                   AND j.value ->> 1 = shadow_state.variant_id)",
            ))
            .bind(provider.as_str())
            .bind(super::journal::json_list(&rows))
            .execute(&mut *tx)
            .await?;
            sqlx::query(sql(
                &tx,
                "INSERT INTO shadow_state (provider, listing_id, variant_id, verdict, since_ms)
             SELECT $1, j.value ->> 0, j.value ->> 1, j.value ->> 2, $3 FROM json_each($2) AS j
             WHERE true
             ON CONFLICT (provider, listing_id, variant_id) DO UPDATE SET
                 verdict = excluded.verdict, since_ms = excluded.since_ms
             WHERE shadow_state.verdict <> excluded.verdict",
            ))
            .bind(provider.as_str())
            .bind(super::journal::json_list(&rows))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Each listing's recorded verdict and since when (Unix ms).
    pub async fn shadow_since(&self) -> Result<HashMap<ListingRef, (String, i64)>> {
        db(async move {
            let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
                "SELECT provider, listing_id, variant_id, verdict, since_ms FROM shadow_state",
            )
            .fetch_all(&self.read)
            .await?;
            rows.into_iter()
                .map(|(p, listing_id, variant_id, v, at)| {
                    Ok((
                        ListingRef {
                            provider: parse_provider(&p)?,
                            listing_id,
                            variant_id,
                        },
                        (v, at),
                    ))
                })
                .collect()
        })
        .await
    }
}
