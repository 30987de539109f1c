//! BaZaaRDan endpoints over the shared HTTP path: `orders.php`,
//! `order_detail.php`, `stock_update.php`.

use super::auth::Signer;
use super::wire::{Envelope, OrderRow, OrdersData, StockUpdate, StockUpdated};
use crate::http::{ProviderHttp, Reply, Sends, Verdict, encode_query_value, retry_after};
use crate::providers::{ProviderError, at_endpoint};
use reqwest::Method;
use serde::de::DeserializeOwned;

/// PROTOCOL.md: `limit` max 100.
pub const PAGE_SIZE: usize = 100;

pub struct Client {
    pub(super) http: ProviderHttp,
    base: String,
    signer: Signer,
}

impl Client {
    pub fn new(http: ProviderHttp, base: String, signer: Signer) -> Client {
        Client { http, base, signer }
    }

    /// One page of order items changed strictly after `updated_after`
    /// (`YYYY-MM-DD HH:MM:SS`, Turkey time).
    pub async fn orders(
        &self,
        updated_after: &str,
        offset: usize,
    ) -> Result<OrdersData, ProviderError> {
        let path = format!(
            "/orders.php?limit={PAGE_SIZE}&offset={offset}&updated_after={}",
            encode_query_value(updated_after)
        );
        self.call("orders.php", Method::GET, &path, Vec::new())
            .await
            .map_err(at_endpoint("orders.php"))
    }

    /// The cheapest authenticated call: one order row.
    pub async fn probe(&self) -> Result<OrdersData, ProviderError> {
        self.call(
            "orders.php",
            Method::GET,
            "/orders.php?limit=1&offset=0",
            Vec::new(),
        )
        .await
        .map_err(at_endpoint("orders.php"))
    }

    pub async fn order_detail(&self, order_item_id: u64) -> Result<OrderRow, ProviderError> {
        let path = format!("/order_detail.php?order_item_id={order_item_id}");
        self.call("order_detail.php", Method::GET, &path, Vec::new())
            .await
            .map_err(at_endpoint("order_detail.php"))
    }

    /// Sets one listing; `sends` counts attempts BaZaaRDan may have carried
    /// out unanswered.
    pub async fn stock_update(
        &self,
        body: &StockUpdate,
        sends: &Sends,
    ) -> Result<StockUpdated, ProviderError> {
        let bytes = serde_json::to_vec(body).expect("plain struct serializes");
        self.call_tracked(
            "stock_update.php",
            Method::POST,
            "/stock_update.php",
            bytes,
            sends,
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ProviderError> {
        self.call_tracked(op, method, path, body, &Sends::default())
            .await
    }

    async fn call_tracked<T: DeserializeOwned>(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Vec<u8>,
        sends: &Sends,
    ) -> Result<T, ProviderError> {
        let url = reqwest::Url::parse(&format!("{}{}", self.base, path)).map_err(|e| {
            ProviderError::Config(format!("bad BaZaaRDan URL {}{path}: {e}", self.base))
        })?;
        let build = || {
            let mut req = self.http.client().request(method.clone(), url.clone());
            for (name, value) in self.signer.headers(method.as_str(), path, &body) {
                req = req.header(name, value);
            }
            req = req.header("Accept", "application/json");
            if !body.is_empty() {
                req = req
                    .header("Content-Type", "application/json")
                    .body(body.clone());
            }
            req.build()
                .map_err(|e| ProviderError::Config(format!("cannot build request: {e}")))
        };
        self.http
            .execute_tracked(op, build, interpret::<T>, sends)
            .await
    }
}

/// Maps a BaZaaRDan answer to what to do with it (PROTOCOL.md error codes).
fn interpret<T: DeserializeOwned>(reply: &Reply) -> Verdict<T> {
    let parsed: Result<Envelope<T>, _> = serde_json::from_slice(&reply.body);
    let status = reply.status;
    match parsed {
        Ok(Envelope {
            ok: true,
            data: Some(data),
            ..
        }) if status.is_success() => Verdict::Done(data),
        Ok(Envelope {
            error: Some(err), ..
        }) => {
            let text = format!("{}: {}", err.code, err.message);
            match err.code.as_str() {
                "INVALID_SIGNATURE" | "UNKNOWN_CLIENT" => {
                    Verdict::Fail(ProviderError::Unauthenticated(text))
                }
                "TIMESTAMP_EXPIRED" => Verdict::Fail(ProviderError::Unauthenticated(format!(
                    "{text}; the server rejects timestamps more than 300 s off: check this host's clock (NTP)"
                ))),
                "RATE_LIMITED" => Verdict::RateLimited(retry_after(&reply.headers)),
                _ if status.is_client_error() => Verdict::Fail(ProviderError::Rejected(text)),
                // An error envelope with 2xx, or an unknown code: the
                // provider is confused; try again later.
                _ => Verdict::Retry(format!("HTTP {status}, {text}")),
            }
        }
        _ if status.is_client_error() => Verdict::Fail(ProviderError::Rejected(format!(
            "HTTP {status} without an error body"
        ))),
        Ok(_) => Verdict::Retry(format!("HTTP {status}: answer without data")),
        Err(e) => Verdict::Retry(format!(
            "HTTP {status}: body is not the documented JSON ({e})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_once() {
        assert_eq!(
            encode_query_value("2026-05-08 18:30:00"),
            "2026-05-08%2018%3A30%3A00"
        );
    }
}
