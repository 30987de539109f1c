//! The v2 e-commerce web service: 25 requests in any 60 s for the whole
//! site, so request economy rules everything here.
//!
//! - Orders: `order/lists` by `updatedAt` descending, paged only back to the
//!   cursor (minus the overlap); `order/show` only for orders that are new or
//!   whose `updatedAt`/status changed since their detail was read. Each
//!   product line is applied once, keyed by (order id, line number).
//! - Pushes: `product/updateStocks`, up to 30 product codes a call, variant
//!   quantities grouped under their product code; per-entry and per-variant
//!   statuses decide each listing's outcome.
//! - Links: `product/lists` (50 a page): a product without variants by its
//!   `code`, a variant by its `barcode`. Order lines carry no SKU of their
//!   own, so links are never learned from them.
//! - `AUTH004` (the site's window is full) pauses the provider for a window.

pub mod client;
pub mod wire;

use crate::config::{EticaretConfig, SyncSettings};
use crate::domain::{
    Anomaly, ListingRef, OrderChanges, OrderItem, ProviderName, PushOutcome, RemoteListing,
    SeenOrder, StockPush, format_turkey, parse_provider_time,
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
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wire::{OrderLine, OrderRow, ProductRow, StockEntry, UpdateStocks, VariantStock, whole};

const MAX_PAGES: u64 = 10_000;

pub struct Eticaret {
    client: client::Client,
    statuses: Statuses,
}

impl Eticaret {
    pub fn new(
        cfg: &EticaretConfig,
        sync: &SyncSettings,
        ledger: Ledger,
        net: &Net,
    ) -> Result<Eticaret, ProviderError> {
        let limiter = Arc::new(Limiter::with_timing(
            ProviderName::Eticaret,
            Some(cfg.requests_per_minute),
            None,
            ledger,
            &sync.timing,
        ));
        let http = ProviderHttp::on(net, limiter);
        Ok(Eticaret {
            client: client::Client::new(
                http,
                cfg.base_url.clone(),
                cfg.api_key.clone(),
                cfg.api_secret.clone(),
            ),
            statuses: Statuses::new(
                ProviderName::Eticaret,
                &["1", "2", "3"],
                &["5"],
                &["4"],
                sync.restock_returns,
            ),
        })
    }

    fn lines(&self, order: &OrderRow, products: &[serde_json::Value], out: &mut OrderChanges) {
        let status = status_text(&order.status);
        for (i, raw) in products.iter().enumerate() {
            let key = format!("{}/{}", order.id, i + 1);
            let line = match from_row::<OrderLine>(raw) {
                Ok(l) => l,
                Err(e) => {
                    out.anomalies.push(Anomaly {
                        key,
                        message: format!("product line not understood: {e}"),
                    });
                    continue;
                }
            };
            let Some(quantity) = whole(&line.quantity).filter(|q| *q >= 0) else {
                out.anomalies.push(Anomaly {
                    key,
                    message: format!(
                        "quantity {} of product {} is not a whole number of units; not applied",
                        line.quantity, line.code
                    ),
                });
                continue;
            };
            out.items.push(OrderItem {
                key,
                order_ref: order.code.clone().unwrap_or_else(|| order.id.to_string()),
                listing_id: line.code,
                variant_id: line.barcode.unwrap_or_default(),
                sku_hint: None,
                quantity,
                status: status.clone(),
                effect: self.statuses.effect(&status),
                updated_at: order.updated_at.clone(),
                created_at: order.created_at.as_deref().and_then(parse_provider_time),
            });
        }
    }
}

fn status_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    }
}

fn fingerprint(o: &OrderRow) -> String {
    format!("{}|{}", o.updated_at, status_text(&o.status))
}

#[async_trait]
impl Provider for Eticaret {
    fn name(&self) -> ProviderName {
        ProviderName::Eticaret
    }

    fn max_batch(&self) -> usize {
        client::MAX_STOCK_ENTRIES
    }

    /// Up to 30 product codes a call; all listings of one code in one call.
    fn batches(&self, pushes: &[StockPush]) -> Vec<Vec<StockPush>> {
        group_by_code(pushes, client::MAX_STOCK_ENTRIES)
    }

    async fn poll_orders(
        &self,
        req: &PollRequest,
        memory: &dyn OrderMemory,
    ) -> Result<OrderChanges, ProviderError> {
        let lookback = chrono::Duration::from_std(req.lookback).unwrap_or_default();
        let cursor_time = req.cursor.as_deref().and_then(parse_provider_time);
        let since = cursor_time.unwrap_or_else(crate::clock::now_utc) - lookback;

        let mut out = OrderChanges::default();
        let mut rows: BTreeMap<u64, OrderRow> = BTreeMap::new();
        let mut start = 0;
        'pages: for page in 0.. {
            if page >= MAX_PAGES {
                return Err(ProviderError::Transient("order/lists kept paging".into()));
            }
            let data = self.client.orders(start).await?;
            let n = data.list.len() as u64;
            for raw in data.list {
                let row = match from_row::<OrderRow>(&raw) {
                    Ok(r) => r,
                    Err(e) => {
                        out.anomalies.push(Anomaly {
                            key: raw
                                .get("id")
                                .map_or_else(|| "order ?".into(), |v| v.to_string()),
                            message: format!("order row not understood: {e}"),
                        });
                        continue;
                    }
                };
                let Some(t) = parse_provider_time(&row.updated_at) else {
                    out.anomalies.push(Anomaly {
                        key: row.id.to_string(),
                        message: format!("updatedAt `{}` is not a timestamp", row.updated_at),
                    });
                    continue;
                };
                if t < since {
                    // Sorted newest first: everything further is older.
                    break 'pages;
                }
                rows.insert(row.id, row);
            }
            start += n;
            crate::failpoint::point("poll.page").await;
            if n < client::ORDER_PAGE || start >= data.total {
                break;
            }
        }

        let refs: Vec<String> = rows.keys().map(u64::to_string).collect();
        let known = memory.known_orders(ProviderName::Eticaret, &refs).await?;
        let mut newest: Option<DateTime<Utc>> = cursor_time;
        for (id, row) in &rows {
            if let Some(t) = parse_provider_time(&row.updated_at) {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
            let fp = fingerprint(row);
            if known.get(&id.to_string()) == Some(&fp) {
                continue;
            }
            match self.client.order(*id).await {
                Ok(show) => self.lines(&show.order, &show.products, &mut out),
                Err(ProviderError::Rejected(why)) => out.anomalies.push(Anomaly {
                    key: id.to_string(),
                    message: format!("refused: {why}; its lines are unknown"),
                }),
                Err(e) => return Err(e),
            }
            out.orders.push(SeenOrder {
                order_ref: id.to_string(),
                fingerprint: fp,
            });
        }
        out.cursor = newest.map(format_turkey);
        Ok(out)
    }

    async fn push_stock(&self, batch: &[StockPush]) -> PushResults {
        let mut out = PushResults::default();
        let mut entries: Vec<StockEntry> = Vec::new();
        for push in batch {
            let i = match entries
                .iter()
                .position(|e| e.code == push.listing.listing_id)
            {
                Some(i) => i,
                None => {
                    entries.push(StockEntry {
                        code: push.listing.listing_id.clone(),
                        quantity: None,
                        variants: Vec::new(),
                    });
                    entries.len() - 1
                }
            };
            if push.listing.variant_id.is_empty() {
                entries[i].quantity = Some(push.quantity);
            } else {
                entries[i].variants.push(VariantStock {
                    barcode: push.listing.variant_id.clone(),
                    quantity: push.quantity,
                });
            }
        }
        let sends = Sends::default();
        let result = match self
            .client
            .update_stocks(&UpdateStocks { stocks: entries }, &sends)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                match listing_outcome(e) {
                    Ok(outcome) => out.outcomes = vec![outcome; batch.len()],
                    Err(e) => {
                        out.stopped = Some(e);
                        if sends.maybe_applied() > 0 {
                            out.in_doubt = batch.len();
                        }
                    }
                }
                return out;
            }
        };
        let by_code: HashMap<&str, &wire::EntryResult> =
            result.stocks.iter().map(|e| (e.code.as_str(), e)).collect();
        for push in batch {
            out.outcomes.push(entry_outcome(
                push,
                by_code.get(push.listing.listing_id.as_str()).copied(),
            ));
        }
        out
    }

    async fn list_listings(&self) -> Result<Option<Vec<RemoteListing>>, ProviderError> {
        let mut out = Vec::new();
        let mut start = 0;
        for _ in 0..MAX_PAGES {
            let data = self.client.products(start, client::PRODUCT_PAGE).await?;
            let n = data.list.len() as u64;
            for raw in data.list {
                let p = match from_row::<ProductRow>(&raw) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(provider = "eticaret", error = %e, "product row not understood; skipped");
                        continue;
                    }
                };
                if p.code.trim().is_empty() {
                    tracing::warn!(provider = "eticaret", "product row without a code; skipped");
                    continue;
                }
                let at = |variant: &str| ListingRef {
                    provider: ProviderName::Eticaret,
                    listing_id: p.code.clone(),
                    variant_id: variant.to_string(),
                };
                if p.variants.is_empty() {
                    out.push(RemoteListing {
                        listing: at(""),
                        sku: Some(p.code.clone()),
                        quantity: p.quantity.as_ref().and_then(whole),
                    });
                }
                for v in &p.variants {
                    if v.barcode.trim().is_empty() {
                        tracing::warn!(provider = "eticaret", code = %p.code, "variant without a barcode; skipped");
                        continue;
                    }
                    out.push(RemoteListing {
                        listing: at(&v.barcode),
                        sku: Some(v.barcode.clone()),
                        quantity: v.quantity.as_ref().and_then(whole),
                    });
                }
            }
            start += n;
            crate::failpoint::point("poll.page").await;
            if n < client::PRODUCT_PAGE || start >= data.total {
                return Ok(Some(out));
            }
        }
        Err(ProviderError::Transient("product/lists kept paging".into()))
    }

    /// One `product/lists` row: proves key, secret and method rights.
    async fn check_credentials(&self) -> Result<(), ProviderError> {
        self.client.products(0, 1).await.map(|_| ())
    }

    fn limiter(&self) -> &Arc<Limiter> {
        self.client.http.limiter()
    }
}

/// What one listing's entry in the `updateStocks` result means for it.
fn entry_outcome(push: &StockPush, entry: Option<&wire::EntryResult>) -> PushOutcome {
    let Some(e) = entry else {
        return PushOutcome::Failed(format!(
            "updateStocks answered nothing for product {}",
            push.listing.listing_id
        ));
    };
    let variant = &push.listing.variant_id;
    let v_status = (!variant.is_empty())
        .then(|| {
            e.variants
                .iter()
                .find(|v| &v.barcode == variant)
                .map(|v| v.status)
        })
        .flatten();
    let status = match (e.status, variant.is_empty(), v_status) {
        // "see the variants": a variant's own status, or for the product's
        // quantity, success only if every variant succeeded.
        (3, false, Some(s)) => s,
        (3, false, None) => 0,
        (3, true, _) => i64::from(e.variants.iter().all(|v| v.status == 1)),
        (1, false, Some(s)) => s,
        (s, _, _) => s,
    };
    match status {
        1 => PushOutcome::Confirmed(push.quantity),
        2 if variant.is_empty() || e.status == 2 => PushOutcome::Rejected(format!(
            "product code {} not found on the site",
            push.listing.listing_id
        )),
        2 => PushOutcome::Rejected(format!(
            "variant barcode {variant} not found under product {}",
            push.listing.listing_id
        )),
        s => PushOutcome::Failed(format!("updateStocks status {s} for {}", push.listing)),
    }
}

/// Groups pushes by product code (one entry a code), at most `max` codes a
/// batch, keeping the codes in the order they come.
pub fn group_by_code(pushes: &[StockPush], max: usize) -> Vec<Vec<StockPush>> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_code: HashMap<&str, Vec<StockPush>> = HashMap::new();
    for p in pushes {
        let code = p.listing.listing_id.as_str();
        by_code.entry(code).or_insert_with(|| {
            order.push(code);
            Vec::new()
        });
        by_code
            .get_mut(code)
            .expect("just inserted")
            .push(p.clone());
    }
    order
        .chunks(max.max(1))
        .map(|codes| codes.iter().flat_map(|c| by_code[c].clone()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn push(code: &str, barcode: &str, q: i64) -> StockPush {
        StockPush {
            listing: ListingRef {
                provider: ProviderName::Eticaret,
                listing_id: code.into(),
                variant_id: barcode.into(),
            },
            quantity: q,
            tag: String::new(),
        }
    }

    #[test]
    fn batches_hold_at_most_30_codes_with_their_variants_together() {
        let mut pushes = Vec::new();
        for c in 0..65 {
            pushes.push(push(&format!("P{c}"), "", 1));
            if c % 2 == 0 {
                pushes.push(push(&format!("P{c}"), &format!("B{c}a"), 1));
                pushes.push(push(&format!("P{c}"), &format!("B{c}b"), 1));
            }
        }
        let batches = group_by_code(&pushes, 30);
        assert_eq!(batches.len(), 3);
        for b in &batches {
            let codes: HashSet<&str> = b.iter().map(|p| p.listing.listing_id.as_str()).collect();
            assert!(codes.len() <= 30);
        }
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), pushes.len());
        let first: HashSet<&str> = batches[0]
            .iter()
            .map(|p| p.listing.listing_id.as_str())
            .collect();
        assert!(
            first.contains("P0")
                && batches[0]
                    .iter()
                    .filter(|p| p.listing.listing_id == "P0")
                    .count()
                    == 3
        );
    }

    #[test]
    fn entry_statuses_map_to_outcomes() {
        let e = |status, variants: Vec<(&str, i64)>| wire::EntryResult {
            code: "P".into(),
            status,
            variants: variants
                .into_iter()
                .map(|(b, s)| wire::VariantResult {
                    barcode: b.into(),
                    status: s,
                })
                .collect(),
        };
        let whole = push("P", "", 4);
        let var = push("P", "B1", 4);
        let ok = PushOutcome::Confirmed(4);
        assert_eq!(entry_outcome(&whole, Some(&e(1, vec![]))), ok);
        assert!(matches!(
            entry_outcome(&whole, Some(&e(0, vec![]))),
            PushOutcome::Failed(_)
        ));
        assert!(matches!(
            entry_outcome(&whole, Some(&e(2, vec![]))),
            PushOutcome::Rejected(_)
        ));
        assert!(matches!(
            entry_outcome(&whole, None),
            PushOutcome::Failed(_)
        ));
        assert_eq!(
            entry_outcome(&var, Some(&e(3, vec![("B1", 1), ("B2", 2)]))),
            ok
        );
        assert!(matches!(
            entry_outcome(&var, Some(&e(3, vec![("B1", 2)]))),
            PushOutcome::Rejected(_)
        ));
        assert!(matches!(
            entry_outcome(&var, Some(&e(3, vec![("B1", 0)]))),
            PushOutcome::Failed(_)
        ));
        assert!(matches!(
            entry_outcome(&var, Some(&e(3, vec![]))),
            PushOutcome::Failed(_)
        ));
        assert_eq!(entry_outcome(&var, Some(&e(1, vec![]))), ok);
        assert!(matches!(
            entry_outcome(&whole, Some(&e(3, vec![("B1", 1), ("B2", 0)]))),
            PushOutcome::Failed(_)
        ));
    }

    #[test]
    fn fractional_quantities_are_not_whole() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        assert_eq!(whole(&n("3")), Some(3));
        assert_eq!(whole(&n("3.0")), Some(3));
        assert_eq!(whole(&n("2.5")), None);
    }
}
