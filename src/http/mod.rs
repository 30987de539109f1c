//! The one HTTP path every adapter uses: a limiter permit per attempt,
//! request rebuilt (and so re-signed) per attempt, jittered exponential
//! backoff for what is safe to retry, and server feedback (429 +
//! `Retry-After`, `X-RateLimit-Remaining: 0` + `X-RateLimit-Reset`) turned
//! into a pause of the whole provider. A provider whose requests carry a
//! credential that expires (PazarSync's bearer token) hands in an
//! [`Authorize`] hook: its credential is taken per attempt and checked
//! again after the attempt's permit wait.

use crate::config::Secret;
use crate::error::ProviderError;
use crate::limit::{Limiter, Outcome};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A response, read whole (provider answers are small).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why no whole answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No connection was made: the request never left.
    Connect(String),
    /// No whole answer within the request timeout.
    Timeout(String),
    /// The answer broke off (its body ended early, could not be read).
    Body(String),
    /// Anything else after the request may have left.
    Other(String),
}

impl SendError {
    /// Whether the provider may have carried the request out.
    pub fn may_have_arrived(&self) -> bool {
        !matches!(self, SendError::Connect(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "could not connect: {e}"),
            SendError::Timeout(e) => write!(f, "timed out: {e}"),
            SendError::Body(e) => write!(f, "broken response body: {e}"),
            SendError::Other(e) => write!(f, "request failed: {e}"),
        }
    }
}

/// Carries one request to its provider and reads the whole answer.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, request: reqwest::Request) -> Result<Reply, SendError>;
}

/// The production transport: reqwest, with the client's timeouts.
pub struct Reqwest(pub reqwest::Client);

#[async_trait::async_trait]
impl Transport for Reqwest {
    async fn send(&self, request: reqwest::Request) -> Result<Reply, SendError> {
        let resp = self.0.execute(request).await.map_err(|e| {
            let detail = error_chain(&e);
            if e.is_connect() {
                SendError::Connect(detail)
            } else if e.is_timeout() {
                SendError::Timeout(detail)
            } else if e.is_body() || e.is_decode() {
                SendError::Body(detail)
            } else {
                SendError::Other(detail)
            }
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                SendError::Timeout(error_chain(&e))
            } else {
                SendError::Body(error_chain(&e))
            }
        })?;
        Ok(Reply {
            status,
            headers,
            body: body.to_vec(),
        })
    }
}

/// What an adapter makes of a response that was not 429 or 5xx.
pub enum Verdict<T> {
    Done(T),
    /// Safe to retry after backoff (malformed body, provider-side glitch).
    Retry(String),
    /// The provider said slow down (e.g. v2 `AUTH004` in a 200); wait this
    /// long or, if `None`, a full window.
    RateLimited(Option<Duration>),
    Fail(ProviderError),
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// A rate-limit pause longer than this is not waited out inside one
    /// call: the call fails with `RateLimited` and the engine moves on.
    pub max_inline_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: crate::config::DEFAULT_MAX_ATTEMPTS,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            max_inline_wait: Duration::from_secs(120),
        }
    }
}

/// Rate-limit answers waited out inside one call before giving up on it.
const MAX_RATE_LIMITED_PER_CALL: u32 = 5;
/// Permit waits that carried the attempt's credential into its refresh
/// margin, inside one call, before giving up on it: a provider whose
/// tokens live shorter than its permits take to come cannot be called.
const MAX_STALE_PER_CALL: u32 = 3;

/// What one attempt carries to say who sends it, when that expires: the
/// headers to add to the request, which generation of the credential they
/// are (to drop exactly that one when the provider refuses it), and until
/// when it may leave (its refresh point, a margin before it expires).
pub struct Credential {
    headers: HeaderMap,
    generation: u64,
    fresh_until: tokio::time::Instant,
}

impl Credential {
    /// `Authorization: Bearer <token>`, marked sensitive.
    pub fn bearer(
        token: &Secret,
        generation: u64,
        fresh_until: tokio::time::Instant,
    ) -> Result<Credential, ProviderError> {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                ProviderError::Config(
                    "cannot build request: the access token is not a valid header value".into(),
                )
            })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        Ok(Credential {
            headers,
            generation,
            fresh_until,
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether it may still leave now: before its refresh point.
    pub fn is_fresh(&self) -> bool {
        tokio::time::Instant::now() < self.fresh_until
    }
}

// Never the headers: they are the secret.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("generation", &self.generation)
            .field("fresh_until", &self.fresh_until)
            .finish_non_exhaustive()
    }
}

/// A provider's per-attempt credential (PazarSync's token cache). The
/// retry loop asks for it before each attempt's permit, and sends the
/// attempt only if the credential is still fresh once the permit is
/// granted; otherwise the permit goes unused (a request never sent, which
/// the limit allows; sending later than the permit was logged it does not)
/// and the next round asks again, so the refresh comes first.
#[async_trait::async_trait]
pub trait Authorize: Send + Sync {
    /// The credential for the next attempt. When it must fetch a new one,
    /// that request takes its own permit, like any other.
    async fn credential(&self) -> Result<Credential, ProviderError>;

    /// The provider refused the credential of `generation` (401 or 403):
    /// forget it (and only it: a newer one fetched meanwhile stays).
    async fn refused(&self, generation: u64);
}

/// What the providers of one daemon share: one HTTP client (one TLS
/// setup, whose root certificates take tens of milliseconds to load, and
/// one pool of kept-alive connections), the transport that sends what it
/// builds, the retry policy, the stop signal.
#[derive(Clone)]
pub struct Net {
    /// Builds requests (and sends them, through [`Reqwest`], in production).
    pub client: reqwest::Client,
    pub transport: Arc<dyn Transport>,
    pub policy: RetryPolicy,
    pub cancel: CancellationToken,
}

impl Net {
    pub fn new(
        timeout: Duration,
        policy: RetryPolicy,
        cancel: CancellationToken,
    ) -> Result<Net, ProviderError> {
        let client = client_builder(timeout)
            .build()
            .map_err(|e| ProviderError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Net {
            transport: Arc::new(Reqwest(client.clone())),
            client,
            policy,
            cancel,
        })
    }
}

/// How stoksync's HTTP client is built: per-attempt timeout, a shorter
/// connect timeout, its user agent.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("stoksync/", env!("CARGO_PKG_VERSION")))
}

/// HTTP for one provider.
pub struct ProviderHttp {
    client: reqwest::Client,
    transport: Arc<dyn Transport>,
    limiter: Arc<Limiter>,
    policy: RetryPolicy,
    cancel: CancellationToken,
    /// A 429 without `Retry-After` means the daily quota (stokdurumu):
    /// pause until 00:00 Turkey time, not one window.
    daily_429: bool,
}

/// What one call sent: how many of its attempts may have been carried out
/// by the provider although no answer said so (the connection dropped or
/// timed out after the request left, a 5xx, a broken body). A write whose
/// earlier attempt may have landed must not take the retry's "before" value
/// for the state before our write.
#[derive(Debug, Default)]
pub struct Sends {
    maybe_applied: AtomicU32,
}

impl Sends {
    pub fn maybe_applied(&self) -> u32 {
        self.maybe_applied.load(Ordering::Relaxed)
    }
}

/// Until 00:00 Turkey time, when daily quotas reset.
pub fn until_daily_reset() -> Duration {
    let now = crate::clock::now_utc();
    (crate::domain::next_turkey_midnight(now) - now)
        .to_std()
        .unwrap_or(Duration::from_secs(60))
}

impl ProviderHttp {
    /// An HTTP path with a client of its own (tests; a daemon shares one
    /// [`Net`] between its providers).
    pub fn new(
        limiter: Arc<Limiter>,
        timeout: Duration,
        policy: RetryPolicy,
        cancel: CancellationToken,
    ) -> Result<ProviderHttp, ProviderError> {
        Ok(ProviderHttp::on(
            &Net::new(timeout, policy, cancel)?,
            limiter,
        ))
    }

    /// The HTTP path of one provider over the daemon's shared client.
    pub fn on(net: &Net, limiter: Arc<Limiter>) -> ProviderHttp {
        ProviderHttp {
            client: net.client.clone(),
            transport: net.transport.clone(),
            limiter,
            policy: net.policy.clone(),
            cancel: net.cancel.clone(),
            daily_429: false,
        }
    }

    /// For providers whose 429 means "daily quota used up" (stokdurumu): a
    /// 429 without `Retry-After` pauses until 00:00 Turkey time.
    pub fn daily_429(mut self) -> ProviderHttp {
        self.daily_429 = true;
        self
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Sends the request `build` makes, retrying per policy; `interpret`
    /// turns each non-429, non-5xx reply into a verdict.
    pub async fn execute<T>(
        &self,
        op: &str,
        build: impl Fn() -> Result<reqwest::Request, ProviderError>,
        interpret: impl Fn(&Reply) -> Verdict<T>,
    ) -> Result<T, ProviderError> {
        self.execute_tracked(op, build, interpret, &Sends::default())
            .await
    }

    /// As [`execute`](Self::execute), counting in `sends` the attempts the
    /// provider may have carried out without our hearing of it.
    pub async fn execute_tracked<T>(
        &self,
        op: &str,
        build: impl Fn() -> Result<reqwest::Request, ProviderError>,
        interpret: impl Fn(&Reply) -> Verdict<T>,
        sends: &Sends,
    ) -> Result<T, ProviderError> {
        self.run(op, None, build, interpret, sends).await
    }

    /// As [`execute_tracked`](Self::execute_tracked), each attempt
    /// carrying the credential `auth` gives for it (see [`Authorize`]). An
    /// answer refusing the credential (`interpret` fails with
    /// `Unauthenticated`) drops it, and the call is tried once more with a
    /// new one; a second refusal is the call's error.
    pub async fn execute_authorized<T>(
        &self,
        op: &str,
        auth: &dyn Authorize,
        build: impl Fn() -> Result<reqwest::Request, ProviderError>,
        interpret: impl Fn(&Reply) -> Verdict<T>,
        sends: &Sends,
    ) -> Result<T, ProviderError> {
        self.run(op, Some(auth), build, interpret, sends).await
    }

    async fn run<T>(
        &self,
        op: &str,
        auth: Option<&dyn Authorize>,
        build: impl Fn() -> Result<reqwest::Request, ProviderError>,
        interpret: impl Fn(&Reply) -> Verdict<T>,
        sends: &Sends,
    ) -> Result<T, ProviderError> {
        let provider = self.limiter.provider();
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        let mut refused = 0u32;
        let mut stale = 0u32;
        loop {
            // Before the permit: fetching a credential takes permits of its
            // own, and an attempt must leave as soon as its permit is logged.
            let credential = match auth {
                Some(a) => Some(a.credential().await?),
                None => None,
            };
            self.limiter.acquire(&self.cancel).await?;
            if let Some(c) = &credential
                && !c.is_fresh()
            {
                stale += 1;
                if stale >= MAX_STALE_PER_CALL {
                    return Err(ProviderError::Transient(format!(
                        "{op}: the credential reached its refresh point while waiting for a permit, {stale} times"
                    )));
                }
                tracing::info!(%provider, op, "the credential reached its refresh point while waiting for a permit; refreshing it first (the permit goes unused)");
                continue;
            }
            let mut request = build()?;
            if let Some(c) = &credential {
                request.headers_mut().extend(c.headers.clone());
            }
            // Logged, not yet sent: a crash here must cost a permit, never
            // break the limit.
            crate::failpoint::point("http.logged_not_sent").await;
            let verdict = match self.transport.send(request).await {
                Err(e) => {
                    self.limiter.note_outcome(Outcome::NetworkError);
                    if e.may_have_arrived() {
                        sends.maybe_applied.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::Retry(e.to_string())
                }
                Ok(reply) => {
                    let status = reply.status;
                    self.feedback(&reply.headers).await;
                    // 429s are counted by `note_rate_limited` below.
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        Verdict::RateLimited(retry_after(&reply.headers))
                    } else if status.is_server_error() {
                        self.limiter.note_outcome(Outcome::ServerError);
                        sends.maybe_applied.fetch_add(1, Ordering::Relaxed);
                        Verdict::Retry(format!("HTTP {status}"))
                    } else {
                        self.limiter.note_outcome(if status.is_client_error() {
                            Outcome::ClientError
                        } else {
                            Outcome::Ok
                        });
                        let v = interpret(&reply);
                        if matches!(v, Verdict::Retry(_)) {
                            sends.maybe_applied.fetch_add(1, Ordering::Relaxed);
                        }
                        v
                    }
                }
            };
            match verdict {
                Verdict::Done(t) => return Ok(t),
                Verdict::Fail(ProviderError::Unauthenticated(why))
                    if let (Some(a), Some(c)) = (auth, &credential) =>
                {
                    a.refused(c.generation).await;
                    refused += 1;
                    if refused >= 2 {
                        return Err(ProviderError::Unauthenticated(format!(
                            "{why}; a freshly fetched token was refused too"
                        )));
                    }
                    tracing::info!(%provider, op, "credential refused; fetching a new one");
                }
                Verdict::Fail(e) => {
                    if let ProviderError::QuotaExhausted(_) = &e {
                        self.limiter.exhaust_today().await;
                    }
                    return Err(e);
                }
                Verdict::RateLimited(wait) => {
                    let wait = wait.unwrap_or_else(|| {
                        if self.daily_429 {
                            until_daily_reset()
                        } else {
                            self.limiter.default_wait()
                        }
                    });
                    self.limiter
                        .note_rate_limited(wait, &format!("{op}: rate limited"))
                        .await;
                    rate_limited += 1;
                    if rate_limited >= MAX_RATE_LIMITED_PER_CALL
                        || wait > self.policy.max_inline_wait
                    {
                        return Err(ProviderError::RateLimited { wait });
                    }
                }
                Verdict::Retry(reason) => {
                    failures += 1;
                    if failures >= self.policy.max_attempts {
                        return Err(ProviderError::Transient(format!(
                            "{op}: {reason} (gave up after {failures} attempts)"
                        )));
                    }
                    let delay = backoff(&self.policy, failures);
                    tracing::info!(%provider, op, %reason, attempt = failures, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::select! {
                        biased;
                        _ = self.cancel.cancelled() => return Err(ProviderError::Cancelled),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset` (Unix seconds):
    /// nothing more may be sent until then.
    async fn feedback(&self, headers: &HeaderMap) {
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset = header_u64(headers, "x-ratelimit-reset");
        if let (Some(0), Some(reset)) = (remaining, reset) {
            let now = crate::clock::now_utc().timestamp().max(0) as u64;
            let wait = Duration::from_secs(reset.saturating_sub(now).min(24 * 3600));
            if !wait.is_zero() {
                self.limiter
                    .pause(wait, "X-RateLimit-Remaining: 0 until X-RateLimit-Reset")
                    .await;
            }
        }
    }
}

/// Full-jitter exponential backoff: uniform in [d/2, d], d = base * 2^(n-1) capped.
pub fn backoff(policy: &RetryPolicy, failures: u32) -> Duration {
    let exp = policy
        .base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(policy.cap);
    let half = exp / 2;
    half + Duration::from_micros(fastrand::u64(0..=half.as_micros() as u64))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
/// BaZaaRDan's signature covers the query exactly as sent, so this is
/// the one place it is written.
pub fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Retry-After` in seconds (the HTTP-date form is not used by our providers).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_u64(headers, "retry-after").map(|s| Duration::from_secs(s).min(crate::limit::MAX_PAUSE))
}

/// The error and its causes, without the URL: it adds nothing the operator
/// does not know and keeps log lines short. (Our URLs carry no credentials.)
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let p = RetryPolicy::default();
        for n in 1..30 {
            let d = backoff(&p, n);
            assert!(d <= p.cap, "{n}: {d:?}");
            let nominal = p.base.saturating_mul(1 << (n - 1).min(16)).min(p.cap);
            assert!(d >= nominal / 2, "{n}: {d:?}");
        }
    }
}
