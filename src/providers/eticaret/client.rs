//! v2 endpoints: `order/lists`, `order/show/<id>`, `product/lists`,
//! `product/updateStocks`. `apikey` and `apisecret` headers on every request.

use super::wire::{Envelope, OrderShow, Page, UpdateResult, UpdateStocks};
use crate::config::Secret;
use crate::http::{ProviderHttp, Reply, Sends, Verdict};
use crate::providers::{ProviderError, at_endpoint};
use reqwest::Method;
use serde::de::DeserializeOwned;

/// The seed: `order/lists` pageSize max 100, `product/lists` max 50.
pub const ORDER_PAGE: u64 = 100;
pub const PRODUCT_PAGE: u64 = 50;
/// The seed: `product/updateStocks` takes at most 30 products a call.
pub const MAX_STOCK_ENTRIES: usize = 30;

pub struct Client {
    pub(super) http: ProviderHttp,
    base: String,
    key: Secret,
    secret: Secret,
}

impl Client {
    pub fn new(http: ProviderHttp, base: String, key: Secret, secret: Secret) -> Client {
        Client {
            http,
            base,
            key,
            secret,
        }
    }

    /// Orders, most recently changed first.
    pub async fn orders(&self, start: u64) -> Result<Page, ProviderError> {
        let path = format!(
            "/order/lists?pageStart={start}&pageSize={ORDER_PAGE}&orderBy=updatedAt&sort=desc"
        );
        self.call("order/lists", Method::GET, &path, None)
            .await
            .map_err(at_endpoint("order/lists"))
    }

    pub async fn order(&self, id: u64) -> Result<OrderShow, ProviderError> {
        self.call(
            "order/show",
            Method::GET,
            &format!("/order/show/{id}"),
            None,
        )
        .await
        .map_err(at_endpoint("order/show"))
    }

    pub async fn products(&self, start: u64, size: u64) -> Result<Page, ProviderError> {
        let path = format!("/product/lists?pageStart={start}&pageSize={size}");
        self.call("product/lists", Method::GET, &path, None)
            .await
            .map_err(at_endpoint("product/lists"))
    }

    /// One batch; `sends` counts attempts the site may have carried out
    /// unanswered.
    pub async fn update_stocks(
        &self,
        body: &UpdateStocks,
        sends: &Sends,
    ) -> Result<UpdateResult, ProviderError> {
        let bytes = serde_json::to_vec(body).expect("plain struct serializes");
        self.call_tracked(
            "product/updateStocks",
            Method::POST,
            "/product/updateStocks",
            Some(bytes),
            sends,
        )
        .await
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
            ProviderError::Config(format!("bad eticaret URL {}{path}: {e}", self.base))
        })?;
        let build = || {
            let mut req = self
                .http
                .client()
                .request(method.clone(), url.clone())
                .header("apikey", self.key.expose())
                .header("apisecret", self.secret.expose())
                .header("Content-Type", "application/json")
                .header("Accept", "application/json");
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            req.build()
                .map_err(|e| ProviderError::Config(format!("cannot build request: {e}")))
        };
        self.http
            .execute_tracked(op, build, interpret::<T>, sends)
            .await
    }
}

/// The `code` decides, whatever the HTTP status (PROTOCOL.md).
fn interpret<T: DeserializeOwned>(reply: &Reply) -> Verdict<T> {
    let status = reply.status;
    let env = match serde_json::from_slice::<Envelope>(&reply.body) {
        Ok(env) => env,
        Err(e) => {
            return Verdict::Retry(format!(
                "HTTP {status}: body is not the documented JSON ({e})"
            ));
        }
    };
    let text = format!(
        "{}: {}",
        env.code,
        env.message.as_deref().unwrap_or("no message")
    );
    match env.code.as_str() {
        "SUCCESS" => match serde_json::from_value::<T>(env.result) {
            Ok(t) => Verdict::Done(t),
            Err(e) => Verdict::Retry(format!(
                "{op_result}: {e}",
                op_result = "result not understood"
            )),
        },
        // Someone (maybe another tool of the seller's) used the site's
        // window: wait a full window, then go on.
        "AUTH004" => Verdict::RateLimited(None),
        "AUTH001" | "AUTH002" | "AUTH003" | "AUTH006" => {
            Verdict::Fail(ProviderError::Unauthenticated(text))
        }
        _ => Verdict::Fail(ProviderError::Rejected(text)),
    }
}
