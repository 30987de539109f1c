//! The provider interface. The engine speaks only this trait: poll order
//! changes, push stock, prove credentials. Each provider lives in its own
//! folder with the same files: `mod.rs` (the trait impl), `client.rs`
//! (endpoints), `auth.rs` (signing or tokens), `wire.rs` (serde types
//! exactly as on the wire).

pub mod bazaardan;

use crate::config::Config;
use crate::domain::{ListingRef, OrderChanges, ProviderName, PushOutcome, StockPush};
use crate::http::RetryPolicy;
use crate::ledger::{KnownItem, Ledger, LedgerError};
use crate::limit::Limiter;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Errors the engine acts on. Messages tell the operator what to do.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    #[error("rate limited by the provider; waiting {}s before the next request", wait.as_secs())]
    RateLimited { wait: Duration },
    #[error("{0}")]
    QuotaExhausted(String),
    #[error("credentials refused ({0}); check client id/secret or API key in the config")]
    Unauthenticated(String),
    #[error("request refused: {0}")]
    Rejected(String),
    #[error("provider unavailable: {0}")]
    Transient(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("ledger: {0}")]
    Ledger(String),
    #[error("stopped")]
    Cancelled,
}

impl From<LedgerError> for ProviderError {
    fn from(e: LedgerError) -> Self {
        ProviderError::Ledger(e.to_string())
    }
}

/// The result of one push call.
#[derive(Debug, Default)]
pub struct PushResults {
    pub outcomes: Vec<PushOutcome>,
    pub stopped: Option<ProviderError>,
}

/// Where to start polling.
#[derive(Debug, Clone)]
pub struct PollRequest {
    /// The cursor stored with the last applied poll (adapter-specific text).
    pub cursor: Option<String>,
    /// How far back before the cursor to look again.
    pub lookback: Duration,
}

/// What the ledger remembers of order items, so adapters can skip detail
/// calls for lines they have already seen unchanged.
#[async_trait]
pub trait OrderMemory: Send + Sync {
    async fn known(
        &self,
        provider: ProviderName,
        keys: &[String],
    ) -> Result<HashMap<String, KnownItem>, ProviderError>;
}

#[async_trait]
impl OrderMemory for Ledger {
    async fn known(
        &self,
        provider: ProviderName,
        keys: &[String],
    ) -> Result<HashMap<String, KnownItem>, ProviderError> {
        Ok(self.known_items(provider, keys).await?)
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> ProviderName;

    /// Most listings one push call may carry.
    fn max_batch(&self) -> usize;

    /// Whether the provider has orders to poll.
    fn has_orders(&self) -> bool {
        true
    }

    /// Order lines changed since the request's cursor (minus its lookback).
    async fn poll_orders(
        &self,
        req: &PollRequest,
        memory: &dyn OrderMemory,
    ) -> Result<OrderChanges, ProviderError>;

    /// Sets each listing to its quantity. `outcomes[i]` is the outcome of
    /// `batch[i]`; when the provider as a whole failed (auth, rate limit)
    /// `stopped` says why and the pushes past `outcomes` were not sent.
    async fn push_stock(&self, batch: &[StockPush]) -> PushResults;

    /// One cheap authenticated call that proves the credentials.
    async fn check_credentials(&self) -> Result<(), ProviderError>;

    fn limiter(&self) -> &Arc<Limiter>;
}

/// Checks that a listing reference has the form its provider uses.
pub fn validate_listing(l: &ListingRef) -> Result<(), String> {
    match l.provider {
        ProviderName::Bazaardan => bazaardan::validate_listing(l),
        _ => {
            if l.listing_id.trim().is_empty() {
                Err("listing_id is empty".into())
            } else {
                Ok(())
            }
        }
    }
}

/// Builds an adapter for every provider that has a table in the config.
/// Providers without an adapter yet are reported, not silently skipped.
pub fn build_all(
    config: &Config,
    ledger: &Ledger,
    cancel: &CancellationToken,
) -> Result<Vec<Arc<dyn Provider>>, ProviderError> {
    let policy = RetryPolicy {
        max_attempts: config.sync.max_attempts,
        ..RetryPolicy::default()
    };
    let mut out: Vec<Arc<dyn Provider>> = Vec::new();
    if let Some(b) = &config.bazaardan {
        out.push(Arc::new(bazaardan::Bazaardan::new(
            b,
            &config.sync,
            ledger.clone(),
            policy.clone(),
            cancel.clone(),
        )?));
    }
    for name in config.enabled_providers() {
        if name != ProviderName::Bazaardan {
            tracing::warn!(provider = %name, "this provider is configured but its adapter is not in this build yet; it is not synced");
        }
    }
    Ok(out)
}
