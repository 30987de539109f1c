//! PazarSync endpoints. Every attempt carries the cached bearer token,
//! taken for that attempt (the client is the retry loop's
//! [`Authorize`] hook): a retry after a fault, a backoff or a permit wait
//! never sends a token inside its refresh margin. A 401 drops that token,
//! fetches one new token and retries once.

use super::auth::TokenCache;
use super::wire::{
    Batch, BatchReply, ErrorBody, ListPage, OrderDetail, SetStock, StockSet, TokenReply,
    TokenRequest,
};
use crate::config::Secret;
use crate::http::{Authorize, Credential, ProviderHttp, Reply, Sends, Verdict, encode_query_value};
use crate::providers::{ProviderError, at_endpoint};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

/// The seed: `limit` max 100 for lists; `stocks/batch` at most 100 items.
pub const PAGE_SIZE: u64 = 100;
pub const MAX_BATCH: usize = 100;

pub struct Client {
    pub(super) http: ProviderHttp,
    base: String,
    client_id: String,
    client_secret: Secret,
    tokens: TokenCache,
}

impl Client {
    pub fn new(
        http: ProviderHttp,
        base: String,
        client_id: String,
        client_secret: Secret,
    ) -> Client {
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            client_id,
            client_secret,
            tokens: TokenCache::default(),
        }
    }

    /// `POST /api/auth/token`; takes a permit like any request.
    pub async fn fetch_token(&self) -> Result<(Secret, Option<u64>), ProviderError> {
        let body = serde_json::to_vec(&TokenRequest {
            client_id: &self.client_id,
            client_secret: self.client_secret.expose(),
            grant_type: "client_credentials",
        })
        .expect("plain struct serializes");
        let url = self.url("/api/auth/token")?;
        let build = || {
            self.http
                .client()
                .post(url.clone())
                .header("Content-Type", "application/json")
                .header("Accept", "application/json")
                .body(body.clone())
                .build()
                .map_err(|e| ProviderError::Config(format!("cannot build request: {e}")))
        };
        let reply: TokenReply = self
            .http
            .execute("auth/token", build, interpret)
            .await
            .map_err(at_endpoint("auth/token"))?;
        self.http.limiter().note_token_refresh();
        // A token that cannot be sent in a header would fail every later
        // request as "cannot build request" (a configuration error) for as
        // long as it is cached: refuse it here, as the answer it is.
        if reply.access_token.is_empty()
            || !reply.access_token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ProviderError::Transient(
                "auth/token: the answer's access_token is empty or not printable ASCII".into(),
            ));
        }
        tracing::info!(
            provider = "pazarsync",
            expires_in = reply.expires_in,
            "access token fetched"
        );
        Ok((Secret::new(reply.access_token), reply.expires_in))
    }

    pub async fn orders(&self, page: u64, from_date: &str) -> Result<ListPage, ProviderError> {
        let path = format!(
            "/api/v1/orders?page={page}&limit={PAGE_SIZE}&from_date={}",
            encode_query_value(from_date)
        );
        self.call("orders", Method::GET, &path, None)
            .await
            .map_err(at_endpoint("orders"))
    }

    pub async fn order(&self, id: &str) -> Result<OrderDetail, ProviderError> {
        let path = format!("/api/v1/orders/{}", encode_query_value(id));
        self.call("orders/{id}", Method::GET, &path, None)
            .await
            .map_err(at_endpoint("orders/{id}"))
    }

    pub async fn products(&self, page: u64, limit: u64) -> Result<ListPage, ProviderError> {
        let path = format!("/api/v1/products?page={page}&limit={limit}");
        self.call("products", Method::GET, &path, None)
            .await
            .map_err(at_endpoint("products"))
    }

    /// `sends` counts attempts PazarSync may have carried out unanswered.
    pub async fn set_stock(
        &self,
        id: &str,
        stock: i64,
        sends: &Sends,
    ) -> Result<StockSet, ProviderError> {
        let path = format!("/api/v1/products/{}/stock", encode_query_value(id));
        let body = serde_json::to_vec(&SetStock { stock }).expect("plain struct serializes");
        self.call_tracked("products/{id}/stock", Method::PUT, &path, Some(body), sends)
            .await
    }

    /// `sends` counts attempts PazarSync may have carried out unanswered.
    pub async fn batch(&self, batch: &Batch, sends: &Sends) -> Result<BatchReply, ProviderError> {
        let body = serde_json::to_vec(batch).expect("plain struct serializes");
        self.call_tracked(
            "stocks/batch",
            Method::POST,
            "/api/v1/stocks/batch",
            Some(body),
            sends,
        )
        .await
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, ProviderError> {
        reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            ProviderError::Config(format!("bad PazarSync URL {}{path}: {e}", self.base))
        })
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
        let url = self.url(path)?;
        let build = || {
            let mut req = self
                .http
                .client()
                .request(method.clone(), url.clone())
                .header("Accept", "application/json");
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            req.build()
                .map_err(|e| ProviderError::Config(format!("cannot build request: {e}")))
        };
        self.http
            .execute_authorized(op, self, build, interpret::<T>, sends)
            .await
    }
}

/// The bearer token, per attempt: the cached one until its refresh point,
/// then one new token shared by every caller.
#[async_trait::async_trait]
impl Authorize for Client {
    async fn credential(&self) -> Result<Credential, ProviderError> {
        let token = self.tokens.get(|| self.fetch_token()).await?;
        Credential::bearer(&token.value, token.generation, token.refresh_at())
    }

    async fn refused(&self, generation: u64) {
        self.tokens.invalidate(generation).await;
    }
}

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
    let text = match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(b) => format!("HTTP {status}, {}: {}", b.error.code, b.error.message),
        Err(_) => format!("HTTP {status} without an error body"),
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Verdict::Fail(ProviderError::Unauthenticated(text))
        }
        s if s.is_client_error() => Verdict::Fail(ProviderError::Rejected(text)),
        _ => Verdict::Retry(text),
    }
}
