//! BaZaaRDan Partner API v1: orders polled with `updated_after`, variant ids
//! from `order_detail.php` (only for lines not seen before), one
//! `stock_update.php` per listing. A listing is `(product_id,
//! variant_combination_id)`; there is no product list, so links come from
//! the operator's mapping or from `product.sku` on order rows.

pub mod auth;
pub mod client;
pub mod wire;

use crate::config::{BazaardanConfig, SyncSettings};
use crate::domain::{
    Anomaly, ListingRef, OrderChanges, OrderItem, ProviderName, PushOutcome, StockPush,
    format_turkey, parse_provider_time,
};
use crate::http::{Net, ProviderHttp, Sends};
use crate::ledger::Ledger;
use crate::limit::Limiter;
use crate::providers::{
    OrderMemory, PollRequest, Provider, ProviderError, PushResults, Statuses, from_row,
    listing_outcome,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use wire::{OrderRow, StockUpdate};

/// A poll that pages further than this is treated as a provider fault
/// (10 000 pages of 100 rows is far beyond any lookback window).
const MAX_PAGES: usize = 10_000;

pub struct Bazaardan {
    client: client::Client,
    statuses: Statuses,
}

impl Bazaardan {
    pub fn new(
        cfg: &BazaardanConfig,
        sync: &SyncSettings,
        ledger: Ledger,
        net: &Net,
    ) -> Result<Bazaardan, ProviderError> {
        Self::with_clock(cfg, sync, ledger, net, auth::system_clock())
    }

    pub fn with_clock(
        cfg: &BazaardanConfig,
        sync: &SyncSettings,
        ledger: Ledger,
        net: &Net,
        clock: auth::Clock,
    ) -> Result<Bazaardan, ProviderError> {
        let limiter = Arc::new(Limiter::with_timing(
            ProviderName::Bazaardan,
            Some(cfg.requests_per_minute),
            None,
            ledger,
            &sync.timing,
        ));
        let http = ProviderHttp::on(net, limiter);
        let signer = auth::Signer::new(cfg.client_id.clone(), cfg.client_secret.clone(), clock);
        Ok(Bazaardan {
            client: client::Client::new(http, cfg.base_url.clone(), signer),
            statuses: Statuses::new(
                ProviderName::Bazaardan,
                &["pending", "accepted", "shipped", "delivered"],
                &["cancelled"],
                &["returned"],
                sync.restock_returns,
            ),
        })
    }

    fn to_item(&self, row: &OrderRow, variant_id: String) -> Result<OrderItem, String> {
        let quantity = match row.quantity.as_i64() {
            Some(q) if q >= 0 => q,
            _ => {
                return Err(format!(
                    "quantity {} is not a whole number of units",
                    row.quantity
                ));
            }
        };
        if parse_provider_time(&row.updated_at).is_none() {
            return Err(format!(
                "updated_at `{}` is not a timestamp",
                row.updated_at
            ));
        }
        Ok(OrderItem {
            key: row.order_item_id.to_string(),
            order_ref: row.order_no.clone(),
            listing_id: row.product.product_id.to_string(),
            variant_id,
            sku_hint: row.product.sku.clone().filter(|s| !s.trim().is_empty()),
            quantity,
            status: row.status.clone(),
            effect: self.statuses.effect(&row.status),
            updated_at: row.updated_at.clone(),
            created_at: row.created_at.as_deref().and_then(parse_provider_time),
        })
    }

    async fn push_one(
        &self,
        push: &StockPush,
        sends: &Sends,
    ) -> Result<PushOutcome, ProviderError> {
        let (product_id, variant) = parse_listing(&push.listing).map_err(ProviderError::Config)?;
        let body = StockUpdate {
            product_id,
            variant_combination_id: variant,
            stock: push.quantity,
            // The push's tag, so BaZaaRDan's records name the write.
            external_ref: Some(if push.tag.is_empty() {
                format!("stoksync-{}", crate::clock::now_utc().timestamp_millis())
            } else {
                format!("stoksync-{}", push.tag)
            }),
        };
        match self.client.stock_update(&body, sends).await {
            Ok(done) if done.new_stock == push.quantity => {
                Ok(PushOutcome::Confirmed(done.new_stock))
            }
            Ok(done) => Ok(PushOutcome::Failed(format!(
                "asked for {} but BaZaaRDan answered new_stock {}",
                push.quantity, done.new_stock
            ))),
            Err(e) => listing_outcome(e),
        }
    }
}

#[async_trait]
impl Provider for Bazaardan {
    fn name(&self) -> ProviderName {
        ProviderName::Bazaardan
    }

    /// One listing per `stock_update.php` call.
    fn max_batch(&self) -> usize {
        1
    }

    async fn poll_orders(
        &self,
        req: &PollRequest,
        memory: &dyn OrderMemory,
    ) -> Result<OrderChanges, ProviderError> {
        let lookback = chrono::Duration::from_std(req.lookback).unwrap_or(chrono::Duration::zero());
        let cursor_time = req.cursor.as_deref().and_then(parse_provider_time);
        let after = cursor_time.unwrap_or_else(crate::clock::now_utc) - lookback;
        let after_text = format_turkey(after);

        let mut rows = Vec::new();
        let mut offset = 0;
        for page in 0.. {
            if page >= MAX_PAGES {
                return Err(ProviderError::Transient(format!(
                    "orders.php kept saying has_more after {MAX_PAGES} pages"
                )));
            }
            let data = self.client.orders(&after_text, offset).await?;
            let n = data.orders.len();
            rows.extend(data.orders);
            if !data.pagination.has_more {
                break;
            }
            if n == 0 {
                return Err(ProviderError::Transient(
                    "orders.php said has_more but returned no rows".into(),
                ));
            }
            offset += n;
            crate::failpoint::point("poll.page").await;
        }

        let mut changes = OrderChanges::default();
        let mut parsed = Vec::new();
        for raw in rows {
            match from_row::<OrderRow>(&raw) {
                Ok(row) => parsed.push(row),
                Err(e) => changes.anomalies.push(Anomaly {
                    key: raw
                        .get("order_item_id")
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| {
                            format!(
                                "row {}",
                                raw.to_string().chars().take(60).collect::<String>()
                            )
                        }),
                    message: format!("order row not understood: {e}"),
                }),
            }
        }
        // The same item can appear twice when pages shift under us; keep the latest.
        parsed.sort_by_key(|r| (r.order_item_id, parse_provider_time(&r.updated_at)));
        parsed.dedup_by(|later, earlier| {
            if later.order_item_id == earlier.order_item_id {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });

        let keys: Vec<String> = parsed.iter().map(|r| r.order_item_id.to_string()).collect();
        let known = memory.known(ProviderName::Bazaardan, &keys).await?;
        let mut newest: Option<DateTime<Utc>> = cursor_time;
        for row in parsed {
            let key = row.order_item_id.to_string();
            if let Some(t) = parse_provider_time(&row.updated_at) {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
            let (variant_id, row) = match known.get(&key) {
                Some(k)
                    if k.unchanged(
                        &row.updated_at,
                        &row.status,
                        row.quantity.as_i64().unwrap_or(-1),
                    ) =>
                {
                    continue;
                }
                Some(k) => (k.variant_id.clone(), row),
                // The detail is read for the variant; it is also the
                // freshest view of the line (a cancellation made since the
                // list was read), so the line is applied as it shows it.
                None => match self.client.order_detail(row.order_item_id).await {
                    Ok(detail) if detail.order_item_id == row.order_item_id => (
                        detail
                            .variant_combination_id
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        detail,
                    ),
                    Ok(detail) => (
                        detail
                            .variant_combination_id
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        row,
                    ),
                    Err(ProviderError::Rejected(why)) => {
                        changes.anomalies.push(Anomaly {
                            key: key.clone(),
                            message: format!("refused: {why}; variant unknown"),
                        });
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            match self.to_item(&row, variant_id) {
                Ok(item) => changes.items.push(item),
                Err(message) => changes.anomalies.push(Anomaly { key, message }),
            }
        }
        changes.cursor = newest.map(format_turkey);
        Ok(changes)
    }

    async fn push_stock(&self, batch: &[StockPush]) -> PushResults {
        let mut out = PushResults::default();
        for push in batch {
            let sends = Sends::default();
            match self.push_one(push, &sends).await {
                Ok(outcome) => out.outcomes.push(outcome),
                Err(e) => {
                    out.stopped = Some(e);
                    out.in_doubt = usize::from(sends.maybe_applied() > 0);
                    break;
                }
            }
        }
        out
    }

    async fn check_credentials(&self) -> Result<(), ProviderError> {
        self.client.probe().await.map(|_| ())
    }

    fn limiter(&self) -> &Arc<Limiter> {
        self.client.http.limiter()
    }
}

fn parse_listing(l: &ListingRef) -> Result<(u64, Option<u64>), String> {
    let product = l.listing_id.parse::<u64>().map_err(|_| {
        format!(
            "BaZaaRDan listing_id must be a product_id number, got `{}`",
            l.listing_id
        )
    })?;
    let variant = if l.variant_id.is_empty() {
        None
    } else {
        Some(l.variant_id.parse::<u64>().map_err(|_| {
            format!(
                "BaZaaRDan variant_id must be a variant_combination_id number or empty, got `{}`",
                l.variant_id
            )
        })?)
    };
    Ok((product, variant))
}

pub fn validate_listing(l: &ListingRef) -> Result<(), String> {
    parse_listing(l).map(|_| ())
}
