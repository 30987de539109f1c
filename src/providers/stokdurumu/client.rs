//! stokdurumu endpoints: `GET /products` (paged, 100 a page) and
//! `POST /stock`. Bearer key on every request; every request counts against
//! the daily quota.

use super::wire::{ErrorBody, ProductsPage, StockChange, StockChanged};
use crate::config::Secret;
use crate::http::{ProviderHttp, Reply, Sends, Verdict};
use crate::providers::{ProviderError, at_endpoint};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The seed: `limit` max 100.
pub const PAGE_SIZE: u32 = 100;

pub struct Client {
    pub(super) http: Arc<ProviderHttp>,
    base: String,
    key: Secret,
}

impl Client {
    pub fn new(http: ProviderHttp, base: String, key: Secret) -> Client {
        Client {
            http: Arc::new(http),
            base,
            key,
        }
    }

    pub async fn products(&self, page: u32, limit: u32) -> Result<ProductsPage, ProviderError> {
        let path = format!("/products?page={page}&limit={limit}");
        self.call("products", Method::GET, &path, None)
            .await
            .map_err(at_endpoint("products"))
    }

    /// Sets a product's stock; `tag` goes into the movement's reason, so
    /// the product's history shows which write of ours it was. `sends`
    /// counts attempts that may have been carried out unanswered.
    pub async fn set_stock(
        &self,
        product_id: u64,
        qty: i64,
        tag: &str,
        sends: &Sends,
    ) -> Result<StockChanged, ProviderError> {
        let reason = reason_for(tag);
        let body = serde_json::to_vec(&StockChange {
            product_id,
            action: "set",
            qty,
            reason: &reason,
        })
        .expect("plain struct serializes");
        self.call_tracked("stock", Method::POST, "/stock", Some(body), sends)
            .await
    }

    /// The product's stock history, newest first, as the server sends it.
    pub async fn history(
        &self,
        product_id: u64,
        limit: u32,
    ) -> Result<serde_json::Value, ProviderError> {
        let path = format!("/stock?product_id={product_id}&limit={limit}");
        self.call("history", Method::GET, &path, None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ProviderError> {
        self.call_tracked(op, method, path, body, &Sends::default())
            .await
    }

    async fn call_tracked<T: DeserializeOwned>(
        &self,
        op: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        sends: &Sends,
    ) -> Result<T, ProviderError> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            ProviderError::Config(format!("bad stokdurumu URL {}{path}: {e}", self.base))
        })?;
        let build = || {
            let mut req = self
                .http
                .client()
                .request(method.clone(), url.clone())
                .bearer_auth(self.key.expose())
                .header("Accept", "application/json");
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            req.build()
                .map_err(|e| ProviderError::Config(format!("cannot build request: {e}")))
        };
        // A 402 (plan limit) pauses the provider until 00:00 Turkey time:
        // the HTTP layer does that for every `QuotaExhausted`.
        self.http
            .execute_tracked(op, build, interpret::<T>, sends)
            .await
    }
}

/// The reason a push of ours carries: `stoksync #TAG`.
pub fn reason_for(tag: &str) -> String {
    if tag.is_empty() {
        "stoksync".to_string()
    } else {
        format!("stoksync #{tag}")
    }
}

/// stokdurumu errors are `{"error": "..."}` with the status saying what
/// kind (seed, error table).
fn interpret<T: DeserializeOwned>(reply: &Reply) -> Verdict<T> {
    let status = reply.status;
    if status.is_success() {
        return match serde_json::from_slice::<T>(&reply.body) {
            Ok(t) => Verdict::Done(t),
            Err(e) => Verdict::Retry(format!(
                "HTTP {status}: body is not the documented JSON ({e})"
            )),
        };
    }
    let message = serde_json::from_slice::<ErrorBody>(&reply.body)
        .map(|b| b.error)
        .unwrap_or_else(|_| "no error message".into());
    let text = format!("HTTP {status}: {message}");
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Verdict::Fail(ProviderError::Unauthenticated(text))
        }
        StatusCode::PAYMENT_REQUIRED => Verdict::Fail(ProviderError::QuotaExhausted(format!(
            "stokdurumu plan limit reached ({text}); no request until 00:00 Turkey time — consider a larger plan"
        ))),
        s if s.is_client_error() => Verdict::Fail(ProviderError::Rejected(text)),
        _ => Verdict::Retry(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_map_to_what_the_engine_does() {
        let v = |s, b| interpret::<serde_json::Value>(&reply(s, b));
        assert!(matches!(v(200, "{\"ok\":1}"), Verdict::Done(_)));
        assert!(matches!(v(200, "<html>"), Verdict::Retry(_)));
        assert!(matches!(
            v(401, "{\"error\":\"Yetkisiz\"}"),
            Verdict::Fail(ProviderError::Unauthenticated(m)) if m.contains("Yetkisiz")
        ));
        assert!(matches!(
            v(402, "{\"error\":\"Plan limiti aşıldı\"}"),
            Verdict::Fail(ProviderError::QuotaExhausted(m)) if m.contains("plan limit")
        ));
        assert!(matches!(
            v(404, "{\"error\":\"yok\"}"),
            Verdict::Fail(ProviderError::Rejected(_))
        ));
        assert!(matches!(
            v(422, "nope"),
            Verdict::Fail(ProviderError::Rejected(_))
        ));
    }
}
