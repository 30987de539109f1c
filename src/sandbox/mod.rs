//! Faithful fakes of the providers, speaking real HTTP on loopback. Tests
//! drive them through their Rust handles; a later `sandbox` command serves
//! them all. Each fake keeps state, checks credentials exactly as the real
//! API does, enforces its rate limit, and can inject faults.

pub mod bazaardan;
pub mod control;
pub mod eticaret;
pub mod pazarsync;
pub mod stokdurumu;

use crate::domain::{ListingRef, ProviderName};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a fake counted, the same for every provider.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub requests: usize,
    pub by_endpoint: BTreeMap<String, usize>,
    /// Requests refused for bad credentials, signature, timestamp or token.
    pub auth_failures: usize,
    pub bad_signatures: usize,
    pub expired_timestamps: usize,
    /// Answers given because the client went past the provider's limit
    /// (429, v2 `AUTH004`, stokdurumu's daily quota).
    pub limit_violations: usize,
    /// Most requests that arrived inside any 60 s window.
    pub max_per_minute: usize,
    /// The largest push batch received (entries in one call).
    pub max_batch: usize,
    pub token_fetches: usize,
}

/// What every fake offers tests (and the sandbox): a product with a SKU,
/// orders, faults, counters. Listings are returned as stoksync names them.
pub trait Fake: Send + Sync {
    fn provider(&self) -> ProviderName;
    fn base_url(&self) -> String;
    /// A `[providers.<name>]` config table for this fake; with
    /// `good_credentials` false, one the fake refuses.
    fn config_table(&self, good_credentials: bool) -> String;
    /// A product (listing) showing `stock`, printing `sku` where the
    /// provider prints one.
    fn add_product(&self, sku: &str, stock: i64) -> ListingRef;
    /// A customer orders `quantity`; `None` for providers without orders.
    fn place_order(&self, listing: &ListingRef, quantity: i64) -> Option<String>;
    /// Cancels an order (its stock goes back to the listing).
    fn cancel_order(&self, order: &str);
    fn stock(&self, listing: &ListingRef) -> Option<i64>;
    /// Someone edits the stock in the provider's own panel; false when the
    /// provider has no such panel stoksync reads (only stokdurumu does).
    fn set_by_hand(&self, _listing: &ListingRef, _stock: i64) -> bool {
        false
    }
    fn inject(&self, fault: Fault, times: usize, endpoint: Option<&str>);
    /// Drops every queued fault.
    fn clear_faults(&self);
    /// Every listing of the seller, as stoksync names it, with its SKU (as
    /// the provider prints it) and the stock it shows.
    fn listings(&self) -> Vec<FakeListing>;
    /// The endpoint name stock pushes go to (for fault injection).
    fn push_endpoint(&self) -> &'static str;
    fn counters(&self) -> Counters;
}

/// One listing as a fake shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FakeListing {
    pub listing: ListingRef,
    pub sku: String,
    pub stock: i64,
}

/// Serves `app` on `addr` until the returned token is cancelled.
pub(crate) async fn serve(
    addr: &str,
    app: axum::Router,
    name: &'static str,
) -> std::io::Result<(SocketAddr, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "{name} sandbox stopped");
        }
    });
    Ok((addr, stop))
}

/// Bookkeeping every fake shares: arrivals, counters, faults.
#[derive(Default)]
pub(crate) struct Core {
    pub faults: FaultQueue,
    pub arrivals: Arrivals,
    pub counters: Mutex<Counters>,
}

impl Core {
    /// Records a request to `endpoint`; returns its arrival time.
    pub fn arrive(&self, endpoint: &str) -> Instant {
        let at = self.arrivals.record();
        let mut c = self.counters();
        c.requests += 1;
        *c.by_endpoint.entry(endpoint.to_string()).or_default() += 1;
        at
    }

    /// Whether more than `limit` requests arrived in the 60 s up to `at`
    /// (counted as a violation).
    pub fn over_minute_limit(&self, at: Instant, limit: Option<u32>) -> bool {
        let over =
            limit.is_some_and(|l| self.arrivals.in_last(at, Duration::from_secs(60)) > l as usize);
        if over {
            self.counters().limit_violations += 1;
        }
        over
    }

    pub fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Counters {
        let mut c = self.counters().clone();
        c.max_per_minute = self.arrivals.max_in_any_window(Duration::from_secs(60));
        c
    }

    pub fn batch(&self, n: usize) {
        let mut c = self.counters();
        c.max_batch = c.max_batch.max(n);
    }
}

/// A fault to inject into the next matching requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 500 with the provider's error shape.
    ServerError,
    /// Hold the request this long, then answer 500 (a client times out first).
    Hang(Duration),
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// HTTP 429 with `Retry-After`.
    RateLimited { retry_after_s: u64 },
}

/// Queued faults, each for a number of requests, optionally for one endpoint.
#[derive(Default)]
pub struct FaultQueue {
    queue: Mutex<VecDeque<(Fault, usize, Option<String>)>>,
}

impl FaultQueue {
    pub fn push(&self, fault: Fault, times: usize, endpoint: Option<&str>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((fault, times, endpoint.map(str::to_string)));
    }

    /// The fault for a request to `endpoint`, if one is queued for it.
    pub fn take(&self, endpoint: &str) -> Option<Fault> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let i = q
            .iter()
            .position(|(_, _, ep)| ep.as_deref().is_none_or(|e| e == endpoint))?;
        let fault = q[i].0.clone();
        q[i].1 -= 1;
        if q[i].1 == 0 {
            q.remove(i);
        }
        Some(fault)
    }

    pub fn clear(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Arrival times of every request, to check a client's limiter from the
/// server's side.
#[derive(Default)]
pub struct Arrivals {
    times: Mutex<Vec<Instant>>,
}

impl Arrivals {
    pub fn record(&self) -> Instant {
        let now = Instant::now();
        self.times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(now);
        now
    }

    pub fn count(&self) -> usize {
        self.times.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Requests inside the busiest window of `period`.
    pub fn max_in_any_window(&self, period: Duration) -> usize {
        crate::limit::max_in_any_window(
            &self.times.lock().unwrap_or_else(|e| e.into_inner()),
            period,
        )
    }

    /// Requests in the last `period` before `now`.
    pub fn in_last(&self, now: Instant, period: Duration) -> usize {
        let t = self.times.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .rev()
            .take_while(|&&x| now.duration_since(x) < period)
            .count()
    }
}
