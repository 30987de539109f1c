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
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
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
    /// The most requests handled at once.
    pub max_busy: usize,
    /// The largest push batch received (entries in one call).
    pub max_batch: usize,
    pub token_fetches: usize,
    /// Requests that carried a token the fake issued and that had expired
    /// when the request arrived (PazarSync; no grace). A revoked token is
    /// not counted here: a client cannot know of a revocation, but it knows
    /// when its token expires.
    pub expired_tokens: usize,
    /// A few of them, described.
    pub expired_token_examples: Vec<String>,
    /// Requests carried out whose answer the fake then lost on purpose
    /// (an injected `Fault::Lost`).
    pub lost_answers: usize,
    /// Injected faults the client can only see as a network error (a
    /// dropped connection, a hang past its timeout).
    pub network_faults: usize,
    /// Our writes that set a listing to the value it already showed, when
    /// the last thing that happened to the listing was an earlier write of
    /// ours whose answer the client received, or a read that showed the
    /// client its value: a request spent for nothing.
    pub noop_writes: usize,
    /// A few of them, described.
    pub noop_examples: Vec<String>,
    /// Requests past the daily quota (also counted in `limit_violations`).
    pub daily_violations: usize,
    /// Injected faults that hit a request, by `endpoint kind` (e.g.
    /// `stock_update.php lost-drop`): what a simulated world exercised.
    pub faults_fired: BTreeMap<String, usize>,
    /// When each of them hit (Unix ms), and which.
    pub fault_log: Vec<(i64, String)>,
}

/// What every fake offers tests (and the sandbox): a product with a SKU,
/// orders, faults, counters. Listings are returned as stoksync names them.
pub trait Fake: Send + Sync {
    fn provider(&self) -> ProviderName;
    /// The fake's HTTP routes (what its socket serves, or what
    /// [`InProcess`] calls).
    fn router(&self) -> axum::Router;
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
    /// The client was killed: no answer given so far counts as received
    /// (for the no-op-write check).
    fn forget_answers(&self);
    /// Runs `wire` after each write of ours is carried out (the simulator
    /// kills the daemon there), or stops doing so.
    fn set_tripwire(&self, wire: Option<Tripwire>);
    /// Requests being handled right now.
    fn busy(&self) -> usize;
    /// The client may not know what `listing` shows (a killed client left
    /// a write to it unsettled): its next write of the same value is no
    /// wasted one.
    fn excuse(&self, listing: &ListingRef);
    /// Every write of ours: when (Unix ms), the listing (see
    /// [`listing_key`]), the value it replaced, the value it set.
    fn timed_writes(&self) -> Vec<(i64, String, i64, i64)>;
    /// When each request arrived, by the wall clock (Unix ms).
    fn arrivals_ms(&self) -> Vec<i64>;
}

/// How the fakes name a listing in their bookkeeping: its id, and
/// `id/variant` for a variant.
pub fn listing_key(l: &ListingRef) -> String {
    if l.variant_id.is_empty() {
        l.listing_id.clone()
    } else {
        format!("{}/{}", l.listing_id, l.variant_id)
    }
}

/// One listing as a fake shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FakeListing {
    pub listing: ListingRef,
    pub sku: String,
    pub stock: i64,
}

/// The simulator's [`Transport`](crate::http::Transport): a request goes
/// to the router of the fake whose base URL it names, called in-process,
/// so it takes virtual time only (a fault's hang is a timer), and an answer
/// not whole within `timeout` is a timeout, as reqwest's would be.
pub struct InProcess {
    routes: Vec<(String, axum::Router)>,
    timeout: Duration,
    trace: Option<std::sync::Arc<Mutex<Vec<String>>>>,
}

impl InProcess {
    pub fn new(fakes: &[&dyn Fake], timeout: Duration) -> InProcess {
        InProcess {
            routes: fakes
                .iter()
                .filter_map(|f| {
                    let url = url::Url::parse(&f.base_url()).ok()?;
                    Some((authority(&url), f.router()))
                })
                .collect(),
            timeout,
            trace: None,
        }
    }

    /// Writes one line per exchange to `trace`: when (Unix ms), the
    /// request (method, URL, a hash of its body) and what came back (the
    /// status and a hash of the body, or the error): what a replay of the
    /// same seed must repeat byte for byte.
    pub fn with_trace(mut self, trace: std::sync::Arc<Mutex<Vec<String>>>) -> InProcess {
        self.trace = Some(trace);
        self
    }
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same bytes give the same digest in every process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn authority(url: &url::Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

#[async_trait::async_trait]
impl crate::http::Transport for InProcess {
    async fn send(
        &self,
        request: reqwest::Request,
    ) -> Result<crate::http::Reply, crate::http::SendError> {
        use crate::http::SendError;
        use tower::ServiceExt;
        let here = authority(request.url());
        let Some((_, router)) = self.routes.iter().find(|(a, _)| *a == here) else {
            return Err(SendError::Connect(format!("no fake serves {here}")));
        };
        let mut target = request.url().path().to_string();
        if let Some(q) = request.url().query() {
            target.push('?');
            target.push_str(q);
        }
        let mut req = axum::http::Request::builder()
            .method(request.method().clone())
            .uri(target);
        for (name, value) in request.headers() {
            req = req.header(name, value);
        }
        let body = request
            .body()
            .and_then(|b| b.as_bytes())
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let asked = self.trace.as_ref().map(|_| {
            format!(
                "{} {} {} {:016x}",
                crate::clock::now_ms(),
                request.method(),
                request.url(),
                digest(&body)
            )
        });
        let req = req
            .body(axum::body::Body::from(body))
            .map_err(|e| SendError::Other(e.to_string()))?;
        let exchange = async {
            let resp = router
                .clone()
                .oneshot(req)
                .await
                .map_err(|e| SendError::Other(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|e| SendError::Body(e.to_string()))?;
            Ok(crate::http::Reply {
                status: parts.status,
                headers: parts.headers,
                body: body.to_vec(),
            })
        };
        let out = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        };
        // The simulator kills its daemon here when a fake's tripwire went
        // off: the provider carried the request out, its answer is lost.
        crate::failpoint::point("http.answered").await;
        if let (Some(trace), Some(asked)) = (&self.trace, asked) {
            let got = match &out {
                Ok(r) => format!("{} {:016x}", r.status.as_u16(), digest(&r.body)),
                Err(e) => e.to_string(),
            };
            trace
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{asked} -> {got}"));
        }
        out
    }
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

/// Bookkeeping every fake shares: arrivals, counters, faults, the window
/// its per-minute limit counts in, daily quota, and what became of our
/// writes.
pub(crate) struct Core {
    pub faults: FaultQueue,
    pub arrivals: Arrivals,
    pub counters: Mutex<Counters>,
    /// The provider's per-minute window (60 s; shorter in the simulator).
    pub window: Duration,
    /// Requests counted on the current Turkey day.
    day: Mutex<Option<(chrono::NaiveDate, usize)>>,
    /// Per listing, what the client can know it shows (see [`Known`]);
    /// absent once anything else changed it.
    known: Mutex<HashMap<String, Known>>,
    /// Listings something other than our writes changed since our last
    /// write to them (an order at this marketplace: it may have moved its
    /// own count, so our next write is never a wasted one, whatever the
    /// client read meanwhile).
    moved: Mutex<std::collections::HashSet<String>>,
    /// Called after every write of ours is carried out (the simulator's
    /// "kill the daemon now").
    tripwire: Mutex<Option<Tripwire>>,
    /// Requests being handled now.
    busy: std::sync::atomic::AtomicUsize,
    /// Per order line: the status the client was last shown.
    served: Mutex<HashMap<String, String>>,
    /// Per listing, the last things that happened to it (for reports).
    story: Mutex<HashMap<String, VecDeque<String>>>,
    /// Every write of ours, in the order carried out: (listing, new value).
    writes: Mutex<Vec<(String, i64)>>,
    /// The same, with when (Unix ms) and the value each replaced.
    timed_writes: Mutex<Vec<(i64, String, i64, i64)>>,
}

/// Marks a request as being handled until dropped.
pub(crate) struct Busy<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the simulator runs when a fake carries out a write; `true`: the
/// client dies before this answer reaches it.
pub type Tripwire = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// What the client can know a listing shows, by the last thing that
/// happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Our write, and its answer reached the client.
    Answered,
    /// Our write, and its answer was lost.
    Lost,
    /// A read (a product list) showed the client its value.
    Read,
}

impl Default for Core {
    fn default() -> Self {
        Core::new(Duration::from_secs(60))
    }
}

impl Core {
    pub fn new(window: Duration) -> Core {
        Core {
            faults: FaultQueue::default(),
            arrivals: Arrivals::default(),
            counters: Mutex::new(Counters::default()),
            window,
            day: Mutex::new(None),
            known: Mutex::new(HashMap::new()),
            moved: Mutex::new(std::collections::HashSet::new()),
            tripwire: Mutex::new(None),
            busy: std::sync::atomic::AtomicUsize::new(0),
            served: Mutex::new(HashMap::new()),
            story: Mutex::new(HashMap::new()),
            writes: Mutex::new(Vec::new()),
            timed_writes: Mutex::new(Vec::new()),
        }
    }

    fn tell(&self, listing: &str, what: String) {
        let mut s = self.story.lock().unwrap_or_else(|e| e.into_inner());
        let t = s.entry(listing.to_string()).or_default();
        if t.len() == 8 {
            t.pop_front();
        }
        t.push_back(format!("{} {what}", crate::clock::now_ms() % 100_000));
    }

    fn story_of(&self, listing: &str) -> Vec<String> {
        self.story
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(listing)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// An order line on `listing` is shown to the client in `status`. The
    /// first time it is shown, or shown in a status that may have moved
    /// the marketplace's own stock (`moves`: a cancellation, a return),
    /// the client learns something happened to the listing: a write it
    /// makes then is not a wasted one.
    pub fn served(&self, line: &str, status: &str, moves: bool, listing: &str) {
        let fresh = {
            let mut s = self.served.lock().unwrap_or_else(|e| e.into_inner());
            match s.insert(line.to_string(), status.to_string()) {
                None => true,
                Some(was) => was != status && moves,
            }
        };
        if fresh {
            self.tell(listing, format!("line {line} shown as {status}"));
            self.changed(listing);
        }
    }

    /// A request is being handled until the guard drops.
    pub fn enter(&self) -> Busy<'_> {
        let now = self.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let mut c = self.counters();
        c.max_busy = c.max_busy.max(now);
        drop(c);
        Busy(&self.busy)
    }

    pub fn busy(&self) -> usize {
        self.busy.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records a request to `endpoint`; returns its arrival time (Unix ms).
    pub fn arrive(&self, endpoint: &str) -> i64 {
        let at = self.arrivals.record();
        let mut c = self.counters();
        c.requests += 1;
        *c.by_endpoint.entry(endpoint.to_string()).or_default() += 1;
        at
    }

    /// Whether more than `limit` requests arrived in the window up to `at`
    /// (counted as a violation).
    pub fn over_minute_limit(&self, at: i64, limit: Option<u32>) -> bool {
        let over = limit.is_some_and(|l| self.arrivals.in_last(at, self.window) > l as usize);
        if over {
            self.counters().limit_violations += 1;
        }
        over
    }

    /// Counts a request against today's quota (days turn at 00:00 Turkey
    /// time); whether it is past `limit` (counted as a violation).
    pub fn over_daily_limit(&self, limit: Option<u32>) -> bool {
        let today = crate::domain::turkey_day(crate::clock::now_utc());
        let used = {
            let mut d = self.day.lock().unwrap_or_else(|e| e.into_inner());
            let n = match *d {
                Some((day, n)) if day == today => n + 1,
                _ => 1,
            };
            *d = Some((today, n));
            n
        };
        let over = limit.is_some_and(|l| used > l as usize);
        if over {
            let mut c = self.counters();
            c.limit_violations += 1;
            c.daily_violations += 1;
        }
        over
    }

    /// Seconds to tell a client to wait for the window (`Retry-After`).
    pub fn window_secs(&self) -> u64 {
        self.window.as_secs_f64().ceil().max(1.0) as u64
    }

    pub fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Counters {
        let mut c = self.counters().clone();
        c.max_per_minute = self.arrivals.max_in_any_window(self.window);
        c
    }

    pub fn batch(&self, n: usize) {
        let mut c = self.counters();
        c.max_batch = c.max_batch.max(n);
    }

    /// The fault for a request to `endpoint`, split: one that hits before
    /// the request is carried out is returned as `Err` (answer it and stop),
    /// one that loses the answer afterwards as `Ok(Some(_))`.
    pub fn fault(&self, endpoint: &str) -> Result<Option<Lost>, Fault> {
        let fault = self.faults.take(endpoint);
        if let Some(f) = &fault {
            let what = format!("{endpoint} {}", f.label());
            let mut c = self.counters();
            c.fault_log.push((crate::clock::now_ms(), what.clone()));
            *c.faults_fired.entry(what).or_default() += 1;
        }
        match fault {
            None => Ok(None),
            Some(Fault::Lost(l)) => Ok(Some(l)),
            // Not carried out: a write repeated later was never made
            // before, so it is no wasted write either way.
            Some(f) => {
                if matches!(f, Fault::Drop | Fault::Hang(_)) {
                    self.counters().network_faults += 1;
                }
                Err(f)
            }
        }
    }

    /// Our write set `listing` from `old` to `new`; `answered` is false when
    /// its answer is about to be lost.
    pub fn wrote(&self, listing: &str, old: i64, new: i64, answered: bool) {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((listing.to_string(), new));
        self.timed_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((crate::clock::now_ms(), listing.to_string(), old, new));
        let wire = self
            .tripwire
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // The client dies before this answer reaches it.
        let dies = wire.is_some_and(|w| w());
        let answered = answered && !dies;
        self.moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(listing);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let wasted =
            old == new && matches!(known.get(listing), Some(Known::Answered | Known::Read));
        let was = known.insert(
            listing.to_string(),
            if answered {
                Known::Answered
            } else {
                Known::Lost
            },
        );
        drop(known);
        if wasted {
            let story = self.story_of(listing);
            let mut c = self.counters();
            c.noop_writes += 1;
            if c.noop_examples.len() < 10 {
                c.noop_examples.push(format!(
                    "{listing} set to {new}, the value the client knew it showed ({}; before: {story:?})",
                    match was {
                        Some(Known::Read) => "it read it",
                        _ => "our last answered write left it",
                    }
                ));
            }
        }
        self.tell(
            listing,
            format!(
                "our write {old}->{new}{}",
                if answered { "" } else { " (answer lost)" }
            ),
        );
    }

    /// A read whose answer reached the client showed it what `listing`
    /// holds: writing that same value next is a wasted request.
    pub fn shown(&self, listing: &str) {
        if self
            .moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(listing)
        {
            return;
        }
        // A write of ours whose answer was lost excuses the next write of
        // the same value, whatever was read since (the client may not tie
        // what it read to that write).
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.get(listing) != Some(&Known::Lost) {
            known.insert(listing.to_string(), Known::Read);
        }
    }

    /// A write to `listings` got no answer the client can trust (a fault
    /// hit it before it was carried out: the client cannot tell that from
    /// an answer lost after): its next write of the same value to them is
    /// no wasted one.
    pub fn unanswered(&self, listings: impl IntoIterator<Item = String>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for l in listings {
            known.insert(l, Known::Lost);
        }
    }

    /// The client may not know what `listing` shows (the simulator says so
    /// of a listing a killed client left with an unsettled write).
    pub fn excuse(&self, listing: &str) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(listing.to_string(), Known::Lost);
    }

    /// Every write of ours so far, with when it was carried out (Unix ms),
    /// the value it replaced and the value it set.
    pub fn timed_writes(&self) -> Vec<(i64, String, i64, i64)> {
        self.timed_writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every write of ours so far, in the order carried out.
    pub fn writes(&self) -> Vec<(String, i64)> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Something other than our write changed `listing` (an order, a
    /// cancellation, a hand edit).
    pub fn changed(&self, listing: &str) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(listing);
        self.moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(listing.to_string());
        self.tell(listing, "changed by others".into());
    }

    /// The client may not have received any answer given so far (it was
    /// killed): no write of ours counts as answered.
    pub fn forget_answers(&self) {
        for v in self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values_mut()
        {
            *v = Known::Lost;
        }
    }

    pub fn set_tripwire(&self, wire: Option<Tripwire>) {
        *self.tripwire.lock().unwrap_or_else(|e| e.into_inner()) = wire;
    }

    /// The answer the client gets when `lost` hits a request that was
    /// carried out.
    pub async fn lose(&self, lost: Lost) -> axum::response::Response {
        use axum::response::IntoResponse;
        {
            let mut c = self.counters();
            c.lost_answers += 1;
            if matches!(lost, Lost::Drop | Lost::Hang(_)) {
                c.network_faults += 1;
            }
        }
        match lost {
            Lost::Drop => dropped(),
            Lost::Hang(d) => {
                tokio::time::sleep(d).await;
                dropped()
            }
            Lost::Malformed => (axum::http::StatusCode::OK, "{\"ok\": tr").into_response(),
            Lost::ServerError => (
                axum::http::StatusCode::BAD_GATEWAY,
                "<html>502 Bad Gateway</html>",
            )
                .into_response(),
        }
    }
}

/// A response the client cannot read: the connection drops before the
/// body ends.
pub(crate) fn dropped() -> axum::response::Response {
    let body = axum::body::Body::from_stream(futures_util::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
    }));
    axum::response::Response::new(body)
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
    /// The connection drops before the request is carried out.
    Drop,
    /// The request IS carried out, then its answer is lost: the class of
    /// fault where a retry meets our own earlier write.
    Lost(Lost),
}

impl Fault {
    /// A short name for reports: `server-error`, `lost-drop`, ...
    pub fn label(&self) -> &'static str {
        match self {
            Fault::ServerError => "server-error",
            Fault::Hang(_) => "hang",
            Fault::Malformed => "malformed",
            Fault::RateLimited { .. } => "rate-limited",
            Fault::Drop => "drop",
            Fault::Lost(Lost::Drop) => "lost-drop",
            Fault::Lost(Lost::Hang(_)) => "lost-hang",
            Fault::Lost(Lost::Malformed) => "lost-malformed",
            Fault::Lost(Lost::ServerError) => "lost-server-error",
        }
    }
}

/// How an answer is lost after the provider carried the request out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lost {
    /// The connection drops mid-answer.
    Drop,
    /// The answer comes too late: the client has timed out.
    Hang(Duration),
    /// A body that is not the documented JSON.
    Malformed,
    /// A 5xx from a proxy in front of the provider.
    ServerError,
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

/// Arrival times of every request by the wall clock (Unix ms), to check a
/// client's limiter from the server's side. The wall clock, not a monotonic
/// one: the simulator moves its worlds' calendars forward (a night passes),
/// and a provider's windows pass with them.
#[derive(Default)]
pub struct Arrivals {
    walls: Mutex<Vec<i64>>,
}

impl Arrivals {
    /// Records an arrival now; returns its time.
    pub fn record(&self) -> i64 {
        let now = crate::clock::now_ms();
        self.walls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(now);
        now
    }

    /// Every arrival (Unix ms), in order.
    pub fn walls(&self) -> Vec<i64> {
        self.walls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count(&self) -> usize {
        self.walls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Requests inside the busiest window of `period`.
    pub fn max_in_any_window(&self, period: Duration) -> usize {
        max_in_any_window_ms(
            &self.walls.lock().unwrap_or_else(|e| e.into_inner()),
            period.as_millis() as i64,
        )
    }

    /// Requests in the last `period` up to `now` (Unix ms).
    pub fn in_last(&self, now: i64, period: Duration) -> usize {
        let p = period.as_millis() as i64;
        let t = self.walls.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().rev().take_while(|&&x| now - x < p).count()
    }
}

/// The most of `sorted` (Unix ms) inside any window of `period_ms`.
pub fn max_in_any_window_ms(sorted: &[i64], period_ms: i64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= period_ms {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
