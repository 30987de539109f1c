//! The active lease (`leader_lease`): which daemon of a pair sharing one
//! database syncs, under which epoch. The other waits as a standby and
//! takes over once the lease expires by the database's clock. Every write
//! of the holder is fenced by the epoch (see [`super::Ledger::begin`]).

use super::db;
use super::{Ledger, Result};
use serde::Serialize;
use sqlx::Row;
use std::time::{Duration, Instant};

/// The lease as the database has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    pub holder: String,
    pub epoch: i64,
    pub acquired_at_ms: i64,
    pub renewed_at_ms: i64,
    pub expires_at_ms: i64,
    /// The database's clock when this was read.
    pub now_ms: i64,
}

impl LeaseRow {
    pub fn expired(&self) -> bool {
        self.expires_at_ms <= self.now_ms
    }
}

/// A standby as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StandbyRow {
    pub holder: String,
    pub seen_at_ms: i64,
}

/// What one try to take the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours now, under this epoch, valid until `valid_until` by our own
    /// monotonic clock (a bound that never outlasts the database's expiry:
    /// it counts from before the statement that set it).
    Taken { epoch: i64, valid_until: Instant },
    /// Another holds it.
    Held(LeaseRow),
}

impl Ledger {
    /// Takes the lease for `holder` if it is free, expired, or held by a
    /// holder `dead` says is gone (a crashed daemon of this same host);
    /// else says who holds it and notes `holder` as a standby.
    pub async fn claim_lease(
        &self,
        holder: &str,
        ttl: Duration,
        dead: impl Fn(&str) -> bool + Send,
    ) -> Result<Claim> {
        db(async move {
            let started = Instant::now();
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
            let mut tx = self.begin_unfenced().await?;
            let now = db_now(&mut tx).await?;
            let row = read_lease(&mut tx, now).await?;
            if let Some(row) = &row
                && !row.expired()
                && row.holder != holder
                && !dead(&row.holder)
            {
                sqlx::query(
                    "INSERT INTO lease_standbys (holder, seen_at_ms) VALUES ($1, $2)
                     ON CONFLICT (holder) DO UPDATE SET seen_at_ms = excluded.seen_at_ms",
                )
                .bind(holder)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Standbys not seen for a day are forgotten.
                sqlx::query("DELETE FROM lease_standbys WHERE seen_at_ms < $1")
                    .bind(now - 24 * 3600 * 1000)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.fence.standby_of(&row.holder);
                return Ok(Claim::Held(row.clone()));
            }
            let epoch = row.as_ref().map_or(0, |r| r.epoch) + 1;
            sqlx::query(
                "INSERT INTO leader_lease (id, holder, epoch, acquired_at_ms, renewed_at_ms, expires_at_ms)
                 VALUES (1, $1, $2, $3, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch,
                     acquired_at_ms = excluded.acquired_at_ms, renewed_at_ms = excluded.renewed_at_ms,
                     expires_at_ms = excluded.expires_at_ms",
            )
            .bind(holder)
            .bind(epoch)
            .bind(now)
            .bind(now + ttl_ms)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM lease_standbys WHERE holder = $1")
                .bind(holder)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.fence.set(epoch, ttl / 4);
            self.fence.valid_until(started + ttl);
            Ok(Claim::Taken {
                epoch,
                valid_until: started + ttl,
        })
        })
        .await
    }

    /// Extends the lease `holder` holds under `epoch` by `ttl` from now.
    /// `Ok(false)`: it is no longer ours (taken over), and this process
    /// must stop at once. A lease that expired but that no one took (the
    /// holder was paused, and so was every standby) is still this epoch's
    /// and is renewed: nothing was written under another epoch meanwhile.
    pub async fn renew_lease(&self, holder: &str, epoch: i64, ttl: Duration) -> Result<bool> {
        db(async move {
            let started = Instant::now();
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
            let mut tx = self.begin_unfenced().await?;
            let now = db_now(&mut tx).await?;
            let done = sqlx::query(
                "UPDATE leader_lease SET renewed_at_ms = $1, expires_at_ms = $2
             WHERE id = 1 AND holder = $3 AND epoch = $4",
            )
            .bind(now)
            .bind(now + ttl_ms)
            .bind(holder)
            .bind(epoch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            if done == 1 {
                self.fence.valid_until(started + ttl);
                Ok(true)
            } else {
                self.fence.lost();
                Ok(false)
            }
        })
        .await
    }

    /// Gives the lease up at a clean stop, so a standby takes over at once
    /// instead of waiting for it to expire.
    pub async fn release_lease(&self, holder: &str, epoch: i64) -> Result<()> {
        db(async move {
            self.fence.lost();
            let mut tx = self.begin_unfenced().await?;
            sqlx::query(
            "UPDATE leader_lease SET expires_at_ms = 0 WHERE id = 1 AND holder = $1 AND epoch = $2",
        )
        .bind(holder)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The lease, if any daemon ever took it, with the database's clock.
    pub async fn lease(&self) -> Result<Option<LeaseRow>> {
        db(async move {
            let mut conn = self.read.acquire().await?;
            let now = db_now(&mut conn).await?;
            read_lease(&mut conn, now).await
        })
        .await
    }

    /// Standbys seen within `within`, by the database's clock.
    pub async fn standbys(&self, within: Duration) -> Result<Vec<StandbyRow>> {
        db(async move {
            let mut conn = self.read.acquire().await?;
            let now = db_now(&mut conn).await?;
            let since = now - i64::try_from(within.as_millis()).unwrap_or(i64::MAX / 4);
            let rows = sqlx::query(
            "SELECT holder, seen_at_ms FROM lease_standbys WHERE seen_at_ms >= $1 ORDER BY holder",
        )
        .bind(since)
        .fetch_all(&mut *conn)
        .await?;
            Ok(rows
                .iter()
                .map(|r| StandbyRow {
                    holder: r.get(0),
                    seen_at_ms: r.get(1),
                })
                .collect())
        })
        .await
    }

    /// Whether this process may still send a request under its lease:
    /// it holds one (or holds none at all: a command run by hand, or a
    /// ledger without leases), and that lease has at least a quarter of its
    /// length left by the local monotonic clock.
    pub fn lease_allows(&self) -> std::result::Result<(), String> {
        self.fence.allows()
    }

    /// The epoch this process holds (0: none).
    pub fn lease_epoch(&self) -> i64 {
        self.fence.epoch()
    }

    /// What this process is to the lease: solo, standby, active, lost.
    pub fn role(&self) -> super::Role {
        self.fence.role()
    }
}

/// The database server's clock, in ms: the clock every host reads the
/// lease by.
async fn db_now(conn: &mut sqlx::AnyConnection) -> Result<i64> {
    let backend = super::backend::Backend::of(conn);
    Ok(
        sqlx::query_scalar(sqlx::AssertSqlSafe(backend.now_ms_sql()))
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn read_lease(conn: &mut sqlx::AnyConnection, now: i64) -> Result<Option<LeaseRow>> {
    let row = sqlx::query(
        "SELECT holder, epoch, acquired_at_ms, renewed_at_ms, expires_at_ms
         FROM leader_lease WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| LeaseRow {
        holder: r.get(0),
        epoch: r.get(1),
        acquired_at_ms: r.get(2),
        renewed_at_ms: r.get(3),
        expires_at_ms: r.get(4),
        now_ms: now,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::temp_ledger;
    use crate::ledger::{LedgerError, StockChange};

    const TTL: Duration = Duration::from_secs(15);

    #[tokio::test]
    async fn one_holder_at_a_time_and_each_takeover_raises_the_epoch() {
        let (_dir, a) = temp_ledger().await;
        let b = a.with_own_fence();
        let Claim::Taken { epoch: e1, .. } = a.claim_lease("a", TTL, |_| false).await.unwrap()
        else {
            panic!("a free lease is taken");
        };
        assert_eq!(e1, 1);
        match b.claim_lease("b", TTL, |_| false).await.unwrap() {
            Claim::Held(row) => assert_eq!((row.holder.as_str(), row.epoch), ("a", 1)),
            other => panic!("b must wait: {other:?}"),
        }
        assert_eq!(a.standbys(TTL).await.unwrap()[0].holder, "b");
        assert!(a.renew_lease("a", 1, TTL).await.unwrap());
        // A holder known dead (a crashed daemon of this host) is taken over at once.
        let Claim::Taken { epoch: e2, .. } = b.claim_lease("b", TTL, |h| h == "a").await.unwrap()
        else {
            panic!("a dead holder's lease is taken");
        };
        assert_eq!(e2, 2);
        assert!(!a.renew_lease("a", 1, TTL).await.unwrap(), "a lost it");
        assert!(a.lease_allows().is_err());
        assert!(
            b.standbys(TTL).await.unwrap().is_empty(),
            "the new holder is no standby"
        );
    }

    #[tokio::test]
    async fn a_fenced_out_holder_writes_nothing() {
        let (_dir, a) = temp_ledger().await;
        let b = a.with_own_fence();
        a.claim_lease("a", Duration::from_millis(1), |_| false)
            .await
            .unwrap();
        a.erp_movement("SKU", StockChange::To(5), "count", "k1")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await; // past a 1 ms lease, by the database's clock
        let Claim::Taken { .. } = b.claim_lease("b", TTL, |_| false).await.unwrap() else {
            panic!("an expired lease is taken over");
        };
        let e = a
            .erp_movement("SKU", StockChange::To(9), "count", "k2")
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                LedgerError::Fenced {
                    held: 1,
                    current: 2
                }
            ),
            "{e}"
        );
        let e = a
            .log_request(crate::domain::ProviderName::Bazaardan, 1)
            .await
            .unwrap_err();
        assert!(matches!(e, LedgerError::Fenced { .. }), "{e}");
        assert_eq!(b.stock_of("SKU").await.unwrap(), Some(5), "nothing written");
        assert!(a.lease_allows().is_err());
        // The new holder writes, and its request rows carry its epoch.
        b.log_request(crate::domain::ProviderName::Bazaardan, 7)
            .await
            .unwrap();
        assert_eq!(b.request_epochs().await.unwrap(), vec![(7, Some(2))]);
    }

    #[tokio::test]
    async fn a_clean_stop_hands_the_lease_over_at_once() {
        let (_dir, a) = temp_ledger().await;
        let b = a.with_own_fence();
        let Claim::Taken { epoch, .. } = a.claim_lease("a", TTL, |_| false).await.unwrap() else {
            panic!()
        };
        a.release_lease("a", epoch).await.unwrap();
        assert!(matches!(
            b.claim_lease("b", TTL, |_| false).await.unwrap(),
            Claim::Taken { epoch: 2, .. }
        ));
    }
}
