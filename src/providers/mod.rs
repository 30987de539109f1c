//! The provider interface. The engine speaks only this trait: poll order
//! changes, push stock, prove credentials. Each provider lives in its own
//! folder with the same files: `mod.rs` (the trait impl), `client.rs`
//! (endpoints), `auth.rs` (signing or tokens), `wire.rs` (serde types
//! exactly as on the wire).

pub mod bazaardan;
pub mod eticaret;
pub mod pazarsync;
pub mod stokdurumu;

use crate::config::Config;
use crate::domain::{
    ItemEffect, ListingRef, OrderChanges, ProviderName, PushOutcome, RemoteListing, Revealed,
    StockPush, Trail,
};
use crate::http::{Net, RetryPolicy};
use crate::ledger::{KnownItem, Ledger, LedgerError};
use crate::limit::Limiter;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

// Defined in `crate::error`, below both the adapters and `crate::http`.
pub use crate::error::ProviderError;

// Here rather than in `crate::error`, which then names no other module.
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
    /// What listings showed just before this push set them, when the
    /// provider says so and its stock can change by hand (stokdurumu's
    /// `old_qty`): a difference from the last confirmed value is a movement.
    pub revealed: Vec<Revealed>,
    /// Of the pushes past `outcomes` (the call stopped), how many, counted
    /// from the first, may have been carried out: their request was sent
    /// and its answer lost. The rest were never sent.
    pub in_doubt: usize,
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

    /// Fingerprints of the orders among `refs` whose detail was read before.
    async fn known_orders(
        &self,
        provider: ProviderName,
        refs: &[String],
    ) -> Result<HashMap<String, String>, ProviderError>;
}

#[async_trait]
impl OrderMemory for Ledger {
    async fn known_orders(
        &self,
        provider: ProviderName,
        refs: &[String],
    ) -> Result<HashMap<String, String>, ProviderError> {
        Ok(Ledger::known_orders(self, provider, refs).await?)
    }

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

    /// Whether the provider has orders (or stock counts) to poll.
    fn has_orders(&self) -> bool {
        true
    }

    /// Splits pending pushes into calls. Default: `max_batch` listings a call.
    fn batches(&self, pushes: &[StockPush]) -> Vec<Vec<StockPush>> {
        pushes
            .chunks(self.max_batch().max(1))
            .map(<[StockPush]>::to_vec)
            .collect()
    }

    /// Every listing the provider's product list shows, for linking by SKU;
    /// `None` when the provider has no product list (BaZaaRDan).
    async fn list_listings(&self) -> Result<Option<Vec<RemoteListing>>, ProviderError> {
        Ok(None)
    }

    /// Order lines changed since the request's cursor (minus its lookback).
    async fn poll_orders(
        &self,
        req: &PollRequest,
        memory: &dyn OrderMemory,
    ) -> Result<OrderChanges, ProviderError>;

    /// [`Provider::poll_orders`], told whether pushes wait for this poll
    /// (the last round gave way to it with listings left to push). A poll
    /// that reads the catalog only to find changes made by hand
    /// (stokdurumu) reads nothing then: a listing known to be wrong is
    /// pushed before those that are not are read again. Order polls are
    /// the same either way.
    async fn poll_orders_while(
        &self,
        req: &PollRequest,
        memory: &dyn OrderMemory,
        pushes_waiting: bool,
    ) -> Result<OrderChanges, ProviderError> {
        let _ = pushes_waiting;
        self.poll_orders(req, memory).await
    }

    /// Sets each listing to its quantity. `outcomes[i]` is the outcome of
    /// `batch[i]`; when the provider as a whole failed (auth, rate limit, a
    /// stop) `stopped` says why, and `in_doubt` says which of the pushes
    /// past `outcomes` may have been carried out all the same.
    async fn push_stock(&self, batch: &[StockPush]) -> PushResults;

    /// Our writes to `listing` tagged with one of `tags` (sent since
    /// `since_ms`) that the provider carried out, oldest first, from its own
    /// history; `None` when it keeps none we can read. Asked only when
    /// answers were lost for a provider that reveals hand edits
    /// ([`PushResults::revealed`]), to tell our own writes from them.
    async fn trail(
        &self,
        _listing: &ListingRef,
        _tags: &[String],
        _since_ms: i64,
    ) -> Result<Option<Trail>, ProviderError> {
        Ok(None)
    }

    /// One cheap authenticated call that proves the credentials.
    async fn check_credentials(&self) -> Result<(), ProviderError>;

    fn limiter(&self) -> &Arc<Limiter>;
}

/// What a provider's order statuses mean for stock (PROTOCOL.md): some
/// hold, some release, the "returned" ones release only when returns are
/// restocked, and an unknown status holds and is logged once.
pub struct Statuses {
    provider: ProviderName,
    hold: &'static [&'static str],
    release: &'static [&'static str],
    returned: &'static [&'static str],
    restock_returns: bool,
    unknown: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Statuses {
    pub fn new(
        provider: ProviderName,
        hold: &'static [&'static str],
        release: &'static [&'static str],
        returned: &'static [&'static str],
        restock_returns: bool,
    ) -> Statuses {
        Statuses {
            provider,
            hold,
            release,
            returned,
            restock_returns,
            unknown: Default::default(),
        }
    }

    pub fn effect(&self, status: &str) -> ItemEffect {
        if self.hold.contains(&status) {
            ItemEffect::Hold
        } else if self.release.contains(&status) {
            ItemEffect::Release
        } else if self.returned.contains(&status) {
            if self.restock_returns {
                ItemEffect::Release
            } else {
                ItemEffect::Hold
            }
        } else {
            let mut seen = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
            if seen.insert(status.to_string()) {
                tracing::warn!(provider = %self.provider, status, "unknown order status; holding its stock");
            }
            ItemEffect::Hold
        }
    }
}

/// Reads one row of an answer (an order line, a product). The error names
/// the field that is wrong (`product.product_id: invalid type: ...`),
/// which serde's own message does not.
pub(crate) fn from_row<T: serde::de::DeserializeOwned>(
    raw: &serde_json::Value,
) -> Result<T, String> {
    serde_path_to_error::deserialize(raw).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// Names the endpoint in an error about one of its answers. The retry loop
/// names it in `Transient`; a refusal needs it too, or "HTTP 400 without an
/// error body" leaves the operator guessing which call failed. (Push errors
/// become the outcome of a listing, which says where.)
pub(crate) fn at_endpoint(op: &'static str) -> impl Fn(ProviderError) -> ProviderError {
    move |e| match e {
        ProviderError::Rejected(m) if !m.contains(op) => {
            ProviderError::Rejected(format!("{op}: {m}"))
        }
        ProviderError::Unauthenticated(m) if !m.contains(op) => {
            ProviderError::Unauthenticated(format!("{op}: {m}"))
        }
        e => e,
    }
}

/// A push error that concerns only the listing (refused, or may not have
/// landed) becomes its outcome; anything else stops the provider's round.
pub fn listing_outcome(e: ProviderError) -> Result<PushOutcome, ProviderError> {
    match e {
        ProviderError::Rejected(why) => Ok(PushOutcome::Rejected(why)),
        ProviderError::Transient(why) => Ok(PushOutcome::Failed(why)),
        e => Err(e),
    }
}

/// Checks that a listing reference has the form its provider uses.
pub fn validate_listing(l: &ListingRef) -> Result<(), String> {
    if l.listing_id.trim().is_empty() {
        return Err("listing_id is empty".into());
    }
    match l.provider {
        ProviderName::Bazaardan => bazaardan::validate_listing(l),
        ProviderName::Stokdurumu => stokdurumu::validate_listing(l),
        ProviderName::Pazarsync => pazarsync::validate_listing(l),
        ProviderName::Eticaret => Ok(()),
    }
}

/// Builds an adapter for every provider that has a table in the config.
/// Providers without an adapter yet are reported, not silently skipped.
pub fn build_all(
    config: &Config,
    ledger: &Ledger,
    cancel: &CancellationToken,
) -> Result<Vec<Arc<dyn Provider>>, ProviderError> {
    let policy = retry_policy(config);
    let net = Net::new(config.sync.request_timeout, policy, cancel.clone())?;
    build_all_on(config, ledger, &net)
}

/// The retry policy the config asks for.
pub fn retry_policy(config: &Config) -> RetryPolicy {
    RetryPolicy {
        max_attempts: config.sync.max_attempts,
        base: config.sync.timing.retry_base,
        cap: config.sync.timing.retry_cap,
        ..RetryPolicy::default()
    }
}

/// As [`build_all`], over a [`Net`] the caller built (the simulator shares
/// one HTTP client between the many lives of a daemon it runs).
pub fn build_all_on(
    config: &Config,
    ledger: &Ledger,
    net: &Net,
) -> Result<Vec<Arc<dyn Provider>>, ProviderError> {
    let mut out: Vec<Arc<dyn Provider>> = Vec::new();
    let (sync, l) = (&config.sync, ledger);
    if let Some(b) = &config.bazaardan {
        out.push(Arc::new(bazaardan::Bazaardan::new(
            b,
            sync,
            l.clone(),
            net,
        )?));
    }
    if let Some(s) = &config.stokdurumu {
        out.push(Arc::new(stokdurumu::Stokdurumu::new(
            s,
            sync,
            l.clone(),
            net,
        )?));
    }
    if let Some(e) = &config.eticaret {
        out.push(Arc::new(eticaret::Eticaret::new(e, sync, l.clone(), net)?));
    }
    if let Some(z) = &config.pazarsync {
        out.push(Arc::new(pazarsync::Pazarsync::new(
            z,
            sync,
            l.clone(),
            net,
        )?));
    }
    Ok(out)
}
