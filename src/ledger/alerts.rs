//! Alerts as the ledger keeps them: the episodes open now and the outbox of
//! deliveries owed. What an alert is and when it opens is `crate::alerts`;
//! here are rows.

use super::db;
use super::{Ledger, Result};
use serde::Serialize;

/// An alert open now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OpenAlertRow {
    pub key: String,
    pub kind: String,
    pub provider: Option<String>,
    pub sku: Option<String>,
    pub listing: Option<String>,
    pub message: String,
    pub opened_at_ms: i64,
}

/// A delivery owed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub route: String,
    pub payload: String,
    pub attempts: i64,
    pub next_at_ms: i64,
}

impl Ledger {
    /// Every alert open now, by key.
    pub async fn open_alerts(&self) -> Result<Vec<OpenAlertRow>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT key, kind, provider, sku, listing, message, opened_at_ms
             FROM alerts_open ORDER BY key",
            )
            .fetch_all(&self.read)
            .await?)
        })
        .await
    }

    /// Opens `opened` and closes `closed` (keys), and queues each payload
    /// of `deliveries` (route, JSON) due at `now_ms`: all in one
    /// transaction, so an episode is never open without its delivery owed.
    pub async fn transition_alerts(
        &self,
        opened: &[OpenAlertRow],
        closed: &[String],
        deliveries: &[(&str, String)],
        now_ms: i64,
    ) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            for a in opened {
                sqlx::query(
                    "INSERT INTO alerts_open
                 (key, kind, provider, sku, listing, message, opened_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (key) DO UPDATE SET kind = excluded.kind,
                     provider = excluded.provider, sku = excluded.sku, listing = excluded.listing,
                     message = excluded.message, opened_at_ms = excluded.opened_at_ms",
                )
                .bind(&a.key)
                .bind(&a.kind)
                .bind(&a.provider)
                .bind(&a.sku)
                .bind(&a.listing)
                .bind(&a.message)
                .bind(a.opened_at_ms)
                .execute(&mut *tx)
                .await?;
            }
            for key in closed {
                sqlx::query("DELETE FROM alerts_open WHERE key = $1")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            for (route, payload) in deliveries {
                sqlx::query(
                    "INSERT INTO alert_outbox (route, payload, attempts, next_at_ms, created_at_ms)
                 VALUES ($1, $2, 0, $3, $4)",
                )
                .bind(route)
                .bind(payload)
                .bind(now_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The oldest delivery owed on `route` (they go out in order: a
    /// "resolved" never overtakes its "fired").
    pub async fn next_alert_delivery(&self, route: &str) -> Result<Option<OutboxRow>> {
        db(async move {
            Ok(sqlx::query_as(
                "SELECT id, route, payload, attempts, next_at_ms FROM alert_outbox
             WHERE route = $1 ORDER BY id LIMIT 1",
            )
            .bind(route)
            .fetch_optional(&self.read)
            .await?)
        })
        .await
    }

    /// A delivery made, or given up: it is owed no more.
    pub async fn drop_alert_delivery(&self, id: i64) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            sqlx::query("DELETE FROM alert_outbox WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// A delivery failed: tried again at `next_at_ms`.
    pub async fn retry_alert_delivery(&self, id: i64, next_at_ms: i64) -> Result<()> {
        db(async move {
            let mut tx = self.begin().await?;
            sqlx::query(
                "UPDATE alert_outbox SET attempts = attempts + 1, next_at_ms = $1 WHERE id = $2",
            )
            .bind(next_at_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// How many deliveries are owed (all routes).
    pub async fn alert_deliveries_owed(&self) -> Result<i64> {
        db(async move {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox")
                .fetch_one(&self.read)
                .await?)
        })
        .await
    }
}
