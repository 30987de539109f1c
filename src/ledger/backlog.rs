//! When pushes were sent, for the push pace (`status`, `/metrics`, the
//! status page). Read from `push_log`, which the database fills on every
//! push noted in `push_attempts` and keeps for an hour (see the migration
//! `push_log`): `push_attempts` itself forgets a push once it is settled.

use super::db;
use super::{Ledger, Result};
use crate::domain::ProviderName;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ListingRef, StockPush, now_ms};
    use crate::ledger::PushRecord;
    use crate::ledger::test_support::temp_ledger;

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
}
