//! PazarSync: OAuth2 client credentials, per-minute and per-day limits
//! (`X-RateLimit-*` headers from the server override local counts).
//!
//! - Orders are listed by `from_date`, which filters on `created_at`; the
//!   list has no items, so `GET /orders/{id}` is read only for orders new or
//!   changed (`updated_at`, status) since their detail was read. A
//!   cancellation of an older order would not show in a list starting at
//!   the cursor, so once an hour the poll lists the last 14 days instead
//!   (a few list pages; details only for what changed).
//! - Pushes: one listing is `PUT /products/{id}/stock`; more go in
//!   `POST /stocks/batch` (up to 100), where the items named in `errors`
//!   failed and the rest are set.
//! - Links: `GET /products` (100 a page) by `sku`; order items carry `sku`,
//!   so links are also learned from them.

pub mod auth;
pub mod client;
pub mod wire;

use crate::config::{PazarsyncConfig, SyncSettings};
use crate::domain::{
    Anomaly, ListingRef, OrderChanges, OrderItem, ProviderName, PushOutcome, RemoteListing,
    SeenOrder, StockPush, ms_to_utc, now_ms, parse_provider_time,
};
use crate::http::{Net, ProviderHttp, Sends};
use crate::ledger::Ledger;
use crate::limit::Limiter;
use crate::providers::{
    OrderMemory, PollRequest, Provider, ProviderError, PushResults, Statuses, from_row,
    listing_outcome,
};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use wire::{Batch, BatchItem, OrderDetail, OrderRow, Product};

const MAX_PAGES: u64 = 10_000;
/// How often the poll looks back `SWEEP_SPAN` for late changes of older orders.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
pub const SWEEP_SPAN: Duration = Duration::from_secs(14 * 24 * 3600);

pub struct Pazarsync {
    client: client::Client,
    statuses: Statuses,
}

/// The poll cursor: newest `created_at` seen, and when the last sweep ran.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    created: Option<DateTime<Utc>>,
    swept_ms: i64,
}

impl Cursor {
    fn parse(s: Option<&str>) -> Cursor {
        let mut c = Cursor {
            created: None,
            swept_ms: 0,
        };
        for part in s.unwrap_or("").split(';') {
            if let Some(v) = part.strip_prefix("created=") {
                c.created = parse_provider_time(v);
            } else if let Some(v) = part.strip_prefix("swept=") {
                c.swept_ms = v.parse().unwrap_or(0);
            }
        }
        c
    }

    fn render(&self) -> String {
        format!(
            "created={};swept={}",
            self.created.map(iso).unwrap_or_default(),
            self.swept_ms
        )
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Pazarsync {
    pub fn new(
        cfg: &PazarsyncConfig,
        sync: &SyncSettings,
        ledger: Ledger,
        net: &Net,
    ) -> Result<Pazarsync, ProviderError> {
        let limiter = Arc::new(Limiter::with_timing(
            ProviderName::Pazarsync,
            Some(cfg.requests_per_minute),
            cfg.requests_per_day,
            ledger,
            &sync.timing,
        ));
        let http = ProviderHttp::on(net, limiter);
        Ok(Pazarsync {
            client: client::Client::new(
                http,
                cfg.base_url.clone(),
                cfg.client_id.clone(),
                cfg.client_secret.clone(),
            ),
            statuses: Statuses::new(
                ProviderName::Pazarsync,
                &["pending", "processing", "shipped", "delivered"],
                &["cancelled"],
                &["returned"],
                sync.restock_returns,
            ),
        })
    }

    fn lines(&self, d: &OrderDetail, out: &mut OrderChanges) {
        let mut seen = std::collections::HashSet::new();
        for (i, raw) in d.items.iter().enumerate() {
            // The item's own id when it has one, read before the rest so a
            // line reported now keeps the key it is applied under later.
            let key = match raw.get("id").and_then(|v| v.as_str()) {
                Some(id) if !id.trim().is_empty() => format!("{}/{id}", d.id),
                _ => format!("{}/{}", d.id, i + 1),
            };
            // Two lines under one key would count as one: report the second.
            if !seen.insert(key.clone()) {
                out.anomalies.push(Anomaly {
                    message: format!(
                        "item {} repeats an item id of the order; not applied",
                        i + 1
                    ),
                    key: format!("{}/{}", d.id, i + 1),
                });
                continue;
            }
            let item = match from_row::<wire::OrderItem>(raw) {
                Ok(it) => it,
                Err(e) => {
                    out.anomalies.push(Anomaly {
                        key,
                        message: format!("order item not understood: {e}"),
                    });
                    continue;
                }
            };
            let Some(quantity) = item.quantity.as_i64().filter(|q| *q >= 0) else {
                out.anomalies.push(Anomaly {
                    key,
                    message: format!("quantity {} is not a whole number of units", item.quantity),
                });
                continue;
            };
            out.items.push(OrderItem {
                key,
                order_ref: d.order_number.clone().unwrap_or_else(|| d.id.clone()),
                listing_id: item.product_id,
                variant_id: String::new(),
                sku_hint: item.sku.filter(|s| !s.trim().is_empty()),
                quantity,
                status: d.status.clone(),
                effect: self.statuses.effect(&d.status),
                updated_at: d.updated_at.clone(),
                created_at: parse_provider_time(&d.created_at),
            });
        }
    }
}

#[async_trait]
impl Provider for Pazarsync {
    fn name(&self) -> ProviderName {
        ProviderName::Pazarsync
    }

    fn max_batch(&self) -> usize {
        client::MAX_BATCH
    }

    async fn poll_orders(
        &self,
        req: &PollRequest,
        memory: &dyn OrderMemory,
    ) -> Result<OrderChanges, ProviderError> {
        let mut cursor = Cursor::parse(req.cursor.as_deref());
        let now = now_ms();
        let lookback = chrono::Duration::from_std(req.lookback).unwrap_or_default();
        let sweep =
            cursor.created.is_some() && now - cursor.swept_ms >= SWEEP_EVERY.as_millis() as i64;
        let from = if sweep {
            ms_to_utc(now) - chrono::Duration::from_std(SWEEP_SPAN).unwrap_or_default()
        } else {
            cursor.created.unwrap_or_else(crate::clock::now_utc) - lookback
        };
        let from_text = iso(from);

        let mut out = OrderChanges::default();
        let mut rows: BTreeMap<String, OrderRow> = BTreeMap::new();
        let mut page = 1;
        loop {
            let data = self.client.orders(page, &from_text).await?;
            let n = data.data.len();
            for raw in data.data {
                match from_row::<OrderRow>(&raw) {
                    Ok(r) => {
                        rows.insert(r.id.clone(), r);
                    }
                    Err(e) => out.anomalies.push(Anomaly {
                        key: raw
                            .get("id")
                            .map_or_else(|| "order ?".into(), |v| v.to_string()),
                        message: format!("order row not understood: {e}"),
                    }),
                }
            }
            if page >= data.meta.total_pages || n == 0 {
                break;
            }
            page += 1;
            crate::failpoint::point("poll.page").await;
            if page > MAX_PAGES {
                return Err(ProviderError::Transient("orders kept paging".into()));
            }
        }

        let refs: Vec<String> = rows.keys().cloned().collect();
        let known = memory.known_orders(ProviderName::Pazarsync, &refs).await?;
        for (id, row) in &rows {
            if let Some(t) = parse_provider_time(&row.created_at) {
                cursor.created = Some(cursor.created.map_or(t, |c| c.max(t)));
            }
            let fp = format!("{}|{}", row.updated_at, row.status);
            if known.get(id) == Some(&fp) {
                continue;
            }
            match self.client.order(id).await {
                Ok(d) => self.lines(&d, &mut out),
                Err(ProviderError::Rejected(why)) => out.anomalies.push(Anomaly {
                    key: id.clone(),
                    message: format!("refused: {why}; its items are unknown"),
                }),
                Err(e) => return Err(e),
            }
            out.orders.push(SeenOrder {
                order_ref: id.clone(),
                fingerprint: fp,
            });
        }
        if sweep || cursor.swept_ms == 0 {
            cursor.swept_ms = now;
        }
        if cursor.created.is_none() {
            // Nothing yet: start the next poll where this one started.
            cursor.created = Some(from + lookback);
        }
        out.cursor = Some(cursor.render());
        Ok(out)
    }

    async fn push_stock(&self, batch: &[StockPush]) -> PushResults {
        let mut out = PushResults::default();
        let sends = Sends::default();
        if let [one] = batch {
            let outcome = match self
                .client
                .set_stock(&one.listing.listing_id, one.quantity, &sends)
                .await
            {
                Ok(done) if done.stock == one.quantity => PushOutcome::Confirmed(done.stock),
                Ok(done) => PushOutcome::Failed(format!(
                    "asked for {} but PazarSync answered stock {}",
                    one.quantity, done.stock
                )),
                Err(e) => match listing_outcome(e) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        out.stopped = Some(e);
                        out.in_doubt = usize::from(sends.maybe_applied() > 0);
                        return out;
                    }
                },
            };
            out.outcomes.push(outcome);
            return out;
        }
        let body = Batch {
            items: batch
                .iter()
                .map(|p| BatchItem {
                    product_id: p.listing.listing_id.clone(),
                    stock: p.quantity,
                })
                .collect(),
        };
        match self.client.batch(&body, &sends).await {
            Ok(reply) => {
                for p in batch {
                    let err = reply
                        .errors
                        .iter()
                        .find(|e| e.product_id.as_deref() == Some(p.listing.listing_id.as_str()));
                    out.outcomes.push(match err {
                        Some(e) => PushOutcome::Rejected(
                            e.message
                                .as_deref()
                                .map(str::trim)
                                .filter(|m| !m.is_empty())
                                .unwrap_or("refused in the batch, with no reason given")
                                .to_string(),
                        ),
                        None => PushOutcome::Confirmed(p.quantity),
                    });
                }
                // An error naming an item only by SKU cannot be matched to a
                // listing we sent (we send product ids): say so.
                for e in reply.errors.iter().filter(|e| e.product_id.is_none()) {
                    tracing::warn!(provider = "pazarsync", sku = ?e.sku, message = ?e.message, "batch error without a product id");
                }
                if let Some(n) = reply.updated {
                    let confirmed = out
                        .outcomes
                        .iter()
                        .filter(|o| matches!(o, PushOutcome::Confirmed(_)))
                        .count();
                    if n as usize != confirmed {
                        tracing::warn!(
                            provider = "pazarsync",
                            updated = n,
                            confirmed,
                            "batch answer counts disagree"
                        );
                    }
                }
            }
            Err(e) => match listing_outcome(e) {
                Ok(outcome) => out.outcomes = vec![outcome; batch.len()],
                Err(e) => {
                    out.stopped = Some(e);
                    if sends.maybe_applied() > 0 {
                        out.in_doubt = batch.len();
                    }
                }
            },
        }
        out
    }

    async fn list_listings(&self) -> Result<Option<Vec<RemoteListing>>, ProviderError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let data = self.client.products(page, client::PAGE_SIZE).await?;
            let n = data.data.len();
            for raw in data.data {
                match from_row::<Product>(&raw) {
                    Ok(p) if p.id.trim().is_empty() => {
                        tracing::warn!(provider = "pazarsync", sku = ?p.sku, "product row without an id; skipped")
                    }
                    Ok(p) => out.push(RemoteListing {
                        listing: ListingRef {
                            provider: ProviderName::Pazarsync,
                            listing_id: p.id,
                            variant_id: String::new(),
                        },
                        sku: p.sku,
                        quantity: p.stock.as_ref().and_then(serde_json::Number::as_i64),
                    }),
                    Err(e) => {
                        tracing::warn!(provider = "pazarsync", error = %e, "product row not understood; skipped")
                    }
                }
            }
            if page >= data.meta.total_pages || n == 0 {
                return Ok(Some(out));
            }
            page += 1;
            crate::failpoint::point("poll.page").await;
            if page > MAX_PAGES {
                return Err(ProviderError::Transient("products kept paging".into()));
            }
        }
    }

    /// One token fetch proves the client id and secret.
    async fn check_credentials(&self) -> Result<(), ProviderError> {
        self.client.fetch_token().await.map(|_| ())
    }

    fn limiter(&self) -> &Arc<Limiter> {
        self.client.http.limiter()
    }
}

pub fn validate_listing(l: &ListingRef) -> Result<(), String> {
    if l.variant_id.is_empty() {
        Ok(())
    } else {
        Err("PazarSync products have no variants here; leave variant_id empty".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_round_trips() {
        let c = Cursor {
            created: parse_provider_time("2026-11-24T10:00:00Z"),
            swept_ms: 42,
        };
        assert_eq!(Cursor::parse(Some(&c.render())), c);
        assert_eq!(Cursor::parse(None).created, None);
        assert_eq!(Cursor::parse(Some("garbage")).swept_ms, 0);
    }
}
