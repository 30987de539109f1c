//! Rate limits shared by every adapter: a sliding-window log per provider,
//! a daily quota counted in the database, and a pause that server feedback
//! (429, `Retry-After`, `X-RateLimit-Remaining: 0`, v2 `AUTH004`) sets.
//!
//! Why a sliding log and not `governor::Quota::per_minute(n)`: a GCRA with
//! burst n lets n requests through at once and then refills one every 60/n s,
//! so the first minute can see almost 2n (governor issue #219). The log
//! grants a permit at time g only if fewer than n permits lie in (g - W, g];
//! then any window of length W contains at most n grants: take the last grant
//! g in the window, every other grant in it lies in (g - W, g].
//!
//! Restarts: every grant is written to the ledger's request log before the
//! request is sent (a grant that cannot be logged is not used), and a
//! server-set pause is written down too. The first permit a new process
//! asks for first reloads the last window's grants and any pause still
//! running, so no window holds more than the limit across any number of
//! restarts (systemd restarts a crashed daemon within seconds).
//!
//! Who goes first (issue 19). Order polls, and what a poll needs (its
//! pages, order details, a token), come first and never wait for pushes;
//! then pushes that lower a listing; then catalog reads (discovery,
//! stokdurumu's drift reads, history reads); then pushes that raise one. A
//! waiting caller of a higher [`Priority`] that could take the next permit
//! gets it, whoever asked first.
//!
//! Order alone is not enough once pushes have filled the window: the next
//! poll then waits for the oldest grant to leave (BaZaaRDan at 560 a minute
//! spent it in 10 s and polls waited 31–52 s; the v2 site at 22 waited
//! 29.5 s). So a push is granted only if it leaves room for the polls due
//! while it stays in the window: with it, each of those polls (one request
//! each, at the provider's `poll_interval`, see [`Limiter::plan_polls`])
//! must still find a permit on time, counting what the grants already in
//! the window free as they leave (`SlidingWindow::polls_fit`); the next
//! poll also keeps room for one order it finds (the v2 site and BaZaaRDan
//! read an order's lines with a request of its own), so a sale found is
//! applied by that poll. A push
//! that raises a listing may not delay a poll at all; one that lowers a
//! listing may delay one by at most an interval (the poll still comes
//! within two intervals of the last): a sale elsewhere and the poll that
//! finds the next sale here both matter, and at 22 a minute with 5 s polls
//! (13 of the 22 permits) a strict reserve left decreases waiting a window
//! behind polls. This keeps room only where the polls will need it, rather
//! than a fixed share (half, say) of every window: at 22 a minute a fixed
//! half is less than the polls alone need, and at 560 a fixed share idles
//! permits the polls never use. Polls in turn never take the last 10 %
//! (twice [`reserve`]: one for urgent pushes, one for bulk ones), so
//! pushes always move, however short the interval. Catalog reads keep no
//! room (see `Limiter::kind`).

use crate::config::Timing;
use crate::domain::{ProviderName, next_turkey_midnight, now_ms, turkey_midnight_before};
use crate::ledger::Ledger;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The provider's window plus a margin for network jitter: two requests we
/// send 60.0 s apart may arrive 59.9 s apart.
pub const WINDOW: Duration = Duration::from_secs(60);
pub const WINDOW_MARGIN: Duration = Duration::from_millis(500);
/// A provider pause longer than this is not waited out inside a call.
pub const LONG_PAUSE: Duration = Duration::from_secs(120);
/// The longest pause a server can impose (a `Retry-After` of 2^63 seconds
/// is a broken header, not a plan): a day, the longest quota period.
pub const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);
/// How far our clock and a provider's may disagree about when a day ends:
/// requests in the last seconds of a day also count against the next.
pub const DAY_SKEW: Duration = Duration::from_secs(5);

/// Who a permit is for, most pressing first. A waiting caller of a higher
/// priority that could take a permit gets it before any lower one; pushes
/// leave the room the polls due in the window need, and
/// [`Priority::Bulk`] callers never take the last [`reserve`] permits of
/// the window (nor of a daily quota), so a backlog of bulk work cannot
/// starve polls and urgent pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// An order poll and what it needs: its pages, order details, a token.
    Poll,
    /// A push that lowers what a listing shows (a sale, a zero).
    Urgent,
    /// Catalog reads: discovery, stokdurumu's drift reads, history reads
    /// (and anything that did not say: a credentials check).
    Normal,
    /// A push that raises what a listing shows.
    Bulk,
}

impl Priority {
    const ALL: [Priority; 4] = [
        Priority::Poll,
        Priority::Urgent,
        Priority::Normal,
        Priority::Bulk,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// How long a caller that could take a permit waits when a caller of a
/// higher priority could take it too (that one is woken at this instant
/// and takes it first).
const GIVE_WAY: Duration = Duration::from_millis(5);

tokio::task_local! {
    /// The priority of the HTTP attempts made inside [`with_priority`]
    /// (the adapters' calls need not pass it down).
    static PRIORITY: Priority;
}

tokio::task_local! {
    /// A permit taken before the task's first HTTP attempt: see [`Permit`].
    static PREPAID: std::cell::Cell<Option<ProviderName>>;
}

/// A permit already taken (its window slot, its share of the daily quota,
/// its line in the request log) by [`Limiter::take`], for the first HTTP
/// attempt made inside [`Permit::spend_in`]. A scheduler takes the permit
/// first and forms its batch after, so the batch is as fresh as the ledger
/// at that moment and never waits for a permit once formed.
#[must_use = "a permit taken and not spent is a request the provider never sees"]
#[derive(Debug)]
pub struct Permit {
    provider: ProviderName,
}

impl Permit {
    /// Runs `fut`; its first attempt to this permit's provider uses the
    /// permit instead of taking one. Later attempts (retries) take their own.
    pub async fn spend_in<F: std::future::Future>(self, fut: F) -> F::Output {
        PREPAID
            .scope(std::cell::Cell::new(Some(self.provider)), fut)
            .await
    }
}

/// Whether the current task holds a permit for `provider`; spends it.
fn spend_prepaid(provider: ProviderName) -> bool {
    PREPAID
        .try_with(|p| {
            let ours = p.get() == Some(provider);
            if ours {
                p.set(None);
            }
            ours
        })
        .unwrap_or(false)
}

/// Runs `fut` with its permits asked at `priority`.
pub async fn with_priority<F: std::future::Future>(priority: Priority, fut: F) -> F::Output {
    PRIORITY.scope(priority, fut).await
}

fn current_priority() -> Priority {
    PRIORITY.try_with(|p| *p).unwrap_or(Priority::Normal)
}

/// The permits of a limit of `limit` kept from bulk work (for urgent
/// pushes and reads), and from polls (so pushes always move): 5 % (at
/// least one; none for a limit of one).
pub fn reserve(limit: usize) -> usize {
    limit.div_ceil(20).min(limit.saturating_sub(1))
}

impl From<LimitError> for crate::error::ProviderError {
    fn from(e: LimitError) -> Self {
        use crate::error::ProviderError;
        match e {
            LimitError::Cancelled => ProviderError::Cancelled,
            LimitError::Paused { wait } => ProviderError::RateLimited { wait },
            e @ (LimitError::QuotaExhausted { .. } | LimitError::Reserved { .. }) => {
                ProviderError::QuotaExhausted(e.to_string())
            }
            e @ (LimitError::NotLogged(_) | LimitError::Fenced(_)) => {
                ProviderError::Ledger(e.to_string())
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "daily quota of {limit} requests used up; it resets at {resets_at} (00:00 Turkey time)"
    )]
    QuotaExhausted {
        limit: u32,
        resets_at: DateTime<Utc>,
    },
    /// What is left of today's quota is kept for polls and pushes that
    /// lower a listing; pushes that raise one wait for the next day.
    #[error(
        "the rest of today's {limit} requests is kept for order polls and decreases; increases resume at {resets_at} (00:00 Turkey time)"
    )]
    Reserved {
        limit: u32,
        resets_at: DateTime<Utc>,
    },
    #[error("stopped while waiting for a permit")]
    Cancelled,
    /// The provider said to wait longer than a caller should block (e.g.
    /// stokdurumu's quota until midnight); the caller moves on.
    #[error("paused by the provider for {}s more", wait.as_secs())]
    Paused { wait: Duration },
    /// The grant could not be written to the request log; a request that
    /// is not logged is not sent (the next process could not count it).
    #[error("cannot record the request in the ledger's request log: {0}")]
    NotLogged(String),
    /// This daemon's active lease is lost or about to end: nothing is sent
    /// (the standby that takes over must be the only one to send).
    #[error("{0}")]
    Fenced(String),
}

/// At most `limit` grants in any `period`. Each grant remembers whom it
/// went to, so the window can keep room for polls.
pub struct SlidingWindow {
    limit: usize,
    period: Duration,
    grants: Mutex<VecDeque<(Instant, Class)>>,
}

/// Whom a grant of the window went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// Made before this process started (reloaded from the request log,
    /// which does not say what for): it only fills the window.
    Earlier,
    /// An order poll (see [`Priority::Poll`]).
    Poll,
    /// Anything else.
    Other,
}

/// The most grants polls may hold in a window of `limit`: all but twice
/// its [`reserve`], so however short the poll interval, urgent pushes
/// still get the one reserve and bulk pushes (which leave the last
/// reserve to urgent ones) the other.
fn poll_cap(limit: usize) -> usize {
    limit.saturating_sub(2 * reserve(limit)).max(1)
}

/// What a permit is asked for, as the window sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The window alone, no room kept for anyone (a bare window).
    Any,
    /// An order poll: polls may fill the window but for twice the last
    /// [`reserve`] permits (see [`poll_cap`]), which stay with other work
    /// so pushes always move.
    Poll,
    /// Anything else. With `slack`, it may not leave the polls due while
    /// it stays in the window without room: each must still find a permit
    /// within `slack` + 1 poll intervals of the one before (see
    /// [`SlidingWindow::polls_fit`]). `bulk` work leaves the last
    /// [`reserve`] permits to the rest.
    Other { slack: Option<u32>, bulk: bool },
}

/// How a provider is polled, as the window keeps room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PollPace {
    every: Duration,
    /// When the last poll began (`None` before the first).
    last: Option<Instant>,
}

impl SlidingWindow {
    pub fn new(limit: u32, period: Duration) -> SlidingWindow {
        let limit = limit.max(1) as usize;
        SlidingWindow {
            limit,
            period,
            grants: Mutex::new(VecDeque::with_capacity(limit)),
        }
    }

    /// Takes a permit now, or says when to try again.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Instant> {
        self.check(now, Kind::Any, None, true)
    }

    /// Takes (when `take`) or checks a permit now for `kind` of a provider
    /// polled at `pace`, or says when to try again.
    fn check(
        &self,
        now: Instant,
        kind: Kind,
        pace: Option<PollPace>,
        take: bool,
    ) -> Result<(), Instant> {
        let limit = self.limit;
        let kept = reserve(limit);
        let mut g = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        while g
            .front()
            .is_some_and(|&(t, _)| now.duration_since(t) >= self.period)
        {
            g.pop_front();
        }
        let total = match kind {
            Kind::Other { bulk: true, .. } => (limit - kept).max(1),
            _ => limit,
        };
        // When the window is full: when enough of its oldest grants leave.
        // (Reloaded after a restart with a lower limit, the log may hold
        // more than the limit: then when only `total - 1` remain.)
        let mut again = (g.len() >= total).then(|| g[g.len() - total].0 + self.period);
        if kind == Kind::Poll {
            let cap = poll_cap(limit);
            let polls = g.iter().filter(|(_, c)| *c == Class::Poll).count();
            if polls >= cap
                && let Some(&(t, _)) = g.iter().filter(|(_, c)| *c == Class::Poll).nth(polls - cap)
            {
                let t = t + self.period;
                again = Some(again.map_or(t, |a| a.max(t)));
            }
        }
        if again.is_none()
            && let (
                Kind::Other {
                    slack: Some(slack), ..
                },
                Some(pace),
            ) = (kind, pace)
        {
            again = self.polls_fit(&g, now, pace, slack, total).err();
        }
        if let Some(at) = again {
            return Err(at);
        }
        if take {
            let class = if kind == Kind::Poll {
                Class::Poll
            } else {
                Class::Other
            };
            g.push_back((now, class));
        }
        Ok(())
    }

    /// Whether, with one more grant now, each poll due while that grant
    /// stays in the window still finds a permit within `slack` + 1 poll
    /// intervals of the poll before (one request each; a poll overdue now
    /// counts from now) in a window filled to fewer than `room` (bulk work
    /// keeps its reserve free at every poll too: room for an order detail,
    /// a sale's push); else when to look again. What the grants in the
    /// window free as they leave is counted: room is kept for polls only
    /// where they will need it.
    fn polls_fit(
        &self,
        g: &VecDeque<(Instant, Class)>,
        now: Instant,
        pace: PollPace,
        slack: u32,
        room: usize,
    ) -> Result<(), Instant> {
        let room = room.clamp(1, self.limit);
        // More polls than their cap a window cannot come, and planning
        // for them would refuse every push (a 1 s interval at 22 a
        // minute).
        let most = poll_cap(self.limit) as u32;
        let every = pace
            .every
            .max(self.period / most)
            .max(Duration::from_millis(1));
        let gap = every * (slack + 1);
        let mut times: Vec<Instant> = g.iter().map(|&(t, _)| t).collect();
        times.push(now);
        let horizon = now + self.period;
        let since = now.checked_sub(every).unwrap_or(now);
        let mut prev = pace.last.map_or(since, |l| l.max(since));
        // The next poll also keeps room for one order it finds (the v2
        // site and BaZaaRDan read each new order's lines with a request
        // of its own): a sale found is applied by that poll, not a window
        // later. Later polls plan for one request each. Polls that fill
        // their cap keep no such room: the reserve beyond the cap is the
        // pushes' own, so they always move.
        let capped = pace.every < self.period / most;
        let mut need = if room >= 3 && !capped { 2 } else { 1 };
        loop {
            let due = (prev + every).max(now);
            if due >= horizon {
                return Ok(());
            }
            // Grants only ever come later than those before: `times` is
            // sorted, and the poll goes when the one `room` back leaves
            // (`room - 1` back when it needs two).
            let n = times.len();
            let back = room + 1 - need;
            let at = if n >= back {
                due.max(times[n - back] + self.period)
            } else {
                due
            };
            if at.duration_since(prev) > gap {
                // Things change when the oldest grant leaves, or a poll
                // comes.
                let first = g.front().map_or(horizon, |&(t, _)| t + self.period);
                let next_poll = (prev + every).max(now);
                return Err(first.min(next_poll).max(now + GIVE_WAY));
            }
            for _ in 0..need {
                times.push(at);
            }
            need = 1;
            prev = at;
        }
    }

    /// Takes grants made before this process started (from the request
    /// log), oldest first. What they were for is not logged: they only
    /// fill the window.
    fn preload(&self, earlier: impl IntoIterator<Item = Instant>) {
        let mut g = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(Instant, Class)> = earlier
            .into_iter()
            .map(|t| (t, Class::Earlier))
            .chain(g.drain(..))
            .collect();
        all.sort();
        g.extend(all);
    }

    /// Grants in the window ending now.
    pub fn in_window(&self, now: Instant) -> usize {
        let g = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        g.iter()
            .filter(|&&(t, _)| now.duration_since(t) < self.period)
            .count()
    }

    pub async fn acquire(&self) {
        loop {
            match self.try_acquire(Instant::now()) {
                Ok(()) => return,
                Err(at) => tokio::time::sleep_until(at).await,
            }
        }
    }
}

/// A daily request budget, reset at 00:00 Turkey time, counted in the
/// ledger's request log so a restart does not reset it.
pub struct DailyQuota {
    pub limit: u32,
    state: Mutex<Option<(DateTime<Utc>, u32)>>,
}

impl DailyQuota {
    pub fn new(limit: u32) -> DailyQuota {
        DailyQuota {
            limit,
            state: Mutex::new(None),
        }
    }

    /// Spends one request of today's budget. The first call of a day reads
    /// what the request log holds since 00:00 Turkey time (so a restart
    /// continues the count), and counts the last [`DAY_SKEW`] of yesterday
    /// too: a request sent just before midnight may reach the provider just
    /// after it, by its clock. Later calls count in memory.
    async fn take(
        &self,
        ledger: &Ledger,
        provider: ProviderName,
        now: DateTime<Utc>,
        priority: Priority,
    ) -> Result<(), LimitError> {
        let day_start = turkey_midnight_before(now);
        let cached = {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.filter(|(d, _)| *d == day_start).map(|(_, n)| n)
        };
        let used = match cached {
            Some(n) => n,
            None => ledger
                .requests_since(
                    provider,
                    day_start.timestamp_millis() - DAY_SKEW.as_millis() as i64,
                )
                .await
                .map(|n| n as u32)
                // Unreadable log: assume the worst rather than overspend.
                .unwrap_or(self.limit),
        };
        if used >= self.limit {
            *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((day_start, used));
            return Err(LimitError::QuotaExhausted {
                limit: self.limit,
                resets_at: next_turkey_midnight(now),
            });
        }
        let limit = self.limit as usize;
        if priority == Priority::Bulk && used as usize >= limit - reserve(limit) {
            *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((day_start, used));
            return Err(LimitError::Reserved {
                limit: self.limit,
                resets_at: next_turkey_midnight(now),
            });
        }
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((day_start, used + 1));
        Ok(())
    }

    pub fn used_today(&self) -> Option<u32> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(_, n)| n)
    }

    /// Marks today's budget as spent (the provider said so: 402, or 429).
    fn exhaust(&self, now: DateTime<Utc>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((turkey_midnight_before(now), self.limit));
    }
}

/// Counters a provider's limiter keeps for `status` and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct LimiterStats {
    pub permits: u64,
    pub waits: u64,
    /// Time spent waiting for permits, in milliseconds.
    pub wait_ms: u64,
    pub rate_limited_answers: u64,
    /// HTTP attempts by outcome.
    pub outcomes: RequestOutcomes,
    /// Access tokens fetched (PazarSync).
    pub token_refreshes: u64,
}

/// HTTP attempts of one provider by outcome, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestOutcomes {
    /// 2xx (the body may still carry an error code the adapter handles).
    pub ok: u64,
    /// 4xx other than 429.
    pub client_error: u64,
    pub server_error: u64,
    /// 429 or a provider code that means the same (v2 `AUTH004`).
    pub rate_limited: u64,
    /// No answer: connection refused, timeout, broken body.
    pub network_error: u64,
}

/// The outcome of one HTTP attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ClientError,
    ServerError,
    NetworkError,
}

/// Everything that stands between an adapter and one HTTP attempt.
pub struct Limiter {
    provider: ProviderName,
    window: Option<SlidingWindow>,
    /// The window plus the margin: how far back the request log is
    /// reloaded after a restart.
    span: Duration,
    /// How long "slow down" without a time means: one provider window.
    default_wait: Duration,
    daily: Option<DailyQuota>,
    paused_until: Mutex<Option<Instant>>,
    /// Callers waiting for a permit, by priority: a lower one gives way
    /// to a higher one that could take the permit.
    waiting: [std::sync::atomic::AtomicUsize; 4],
    /// How the provider is polled (`None` until a loop polls on a
    /// schedule): the window keeps room for polls (see
    /// [`Limiter::plan_polls`]).
    pace: Mutex<Option<PollPace>>,
    restored: tokio::sync::OnceCell<()>,
    stats: Mutex<LimiterStats>,
    ledger: Ledger,
}

impl Limiter {
    /// A limiter with the providers' real windows (60 s).
    pub fn new(
        provider: ProviderName,
        per_minute: Option<u32>,
        per_day: Option<u32>,
        ledger: Ledger,
    ) -> Limiter {
        Limiter::with_timing(provider, per_minute, per_day, ledger, &Timing::default())
    }

    pub fn with_timing(
        provider: ProviderName,
        per_minute: Option<u32>,
        per_day: Option<u32>,
        ledger: Ledger,
        timing: &Timing,
    ) -> Limiter {
        let span = timing.rate_window + timing.rate_margin;
        Limiter {
            provider,
            window: per_minute.map(|n| SlidingWindow::new(n, span)),
            span,
            default_wait: timing.rate_window,
            daily: per_day.map(DailyQuota::new),
            paused_until: Mutex::new(None),
            waiting: Default::default(),
            pace: Mutex::new(None),
            restored: tokio::sync::OnceCell::new(),
            stats: Mutex::new(LimiterStats::default()),
            ledger,
        }
    }

    /// Reloads what an earlier process left: the grants of the last window
    /// and a server-set pause still running. Once, before the first permit.
    async fn restore(&self) {
        let now = now_ms();
        let now_i = Instant::now();
        let span_ms = i64::try_from(self.span.as_millis()).unwrap_or(i64::MAX);
        if let Some(w) = &self.window {
            match self
                .ledger
                .request_times_since(self.provider, now - span_ms)
                .await
            {
                Ok(times) => {
                    let earlier: Vec<Instant> = times
                        .into_iter()
                        .map(|at| {
                            let ago = Duration::from_millis(now.saturating_sub(at).max(0) as u64);
                            now_i.checked_sub(ago).unwrap_or(now_i)
                        })
                        .collect();
                    if !earlier.is_empty() {
                        tracing::debug!(provider = %self.provider, grants = earlier.len(), "the last window's requests reloaded from the request log");
                    }
                    w.preload(earlier);
                }
                Err(e) => {
                    // Unknown history: assume the window is full rather
                    // than risk a burst over the limit.
                    tracing::warn!(provider = %self.provider, error = %e, "cannot read the request log; waiting one window before the first request");
                    w.preload(std::iter::repeat_n(now_i, w.limit));
                }
            }
        }
        match self.ledger.pause_of(self.provider).await {
            Ok(Some(until_ms)) if until_ms > now => {
                let wait = Duration::from_millis((until_ms - now) as u64);
                tracing::info!(provider = %self.provider, wait_s = wait.as_secs_f64(), "a pause the provider set before the restart still runs");
                self.hold_until(now_i + wait);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e, "cannot read a saved pause; waiting one window");
                self.hold_until(now_i + self.default_wait);
            }
        }
    }

    pub fn provider(&self) -> ProviderName {
        self.provider
    }

    /// Waits for a permit for one HTTP attempt and records it in the
    /// request log. `Ok` means: send now. The permit is asked at the
    /// priority [`with_priority`] set around the call (normal otherwise).
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<(), LimitError> {
        if spend_prepaid(self.provider) {
            return self.ledger.lease_allows().map_err(LimitError::Fenced);
        }
        let priority = current_priority();
        let started = Instant::now();
        let waited = self.wait_turn(cancel, priority, true).await?;
        if let Some(d) = &self.daily {
            d.take(
                &self.ledger,
                self.provider,
                crate::clock::now_utc(),
                priority,
            )
            .await?;
        }
        {
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.permits += 1;
            s.waits += u64::from(waited);
            if waited {
                s.wait_ms += started.elapsed().as_millis() as u64;
            }
        }
        self.ledger
            .log_request(self.provider, now_ms())
            .await
            .map_err(|e| LimitError::NotLogged(e.to_string()))?;
        // The last word before the request leaves: the lease it is sent
        // under still has its margin left.
        self.ledger.lease_allows().map_err(LimitError::Fenced)
    }

    /// Takes a permit at `priority` now (waiting for it), to be spent by a
    /// task formed after: see [`Permit`].
    pub async fn take(
        &self,
        cancel: &CancellationToken,
        priority: Priority,
    ) -> Result<Permit, LimitError> {
        with_priority(priority, self.acquire(cancel)).await?;
        Ok(Permit {
            provider: self.provider,
        })
    }

    /// Waits until a caller of `priority` could take a permit, without
    /// taking it: a scheduler forms its batch only then, so what it sends
    /// is as fresh as the ledger at the moment a permit is free.
    pub async fn ready(
        &self,
        cancel: &CancellationToken,
        priority: Priority,
    ) -> Result<(), LimitError> {
        self.wait_turn(cancel, priority, false).await.map(|_| ())
    }

    /// How many requests this limiter can grant in about a second: what a
    /// scheduler may keep in flight (at least one, at most `max`).
    pub fn per_second(&self, max: usize) -> usize {
        match &self.window {
            Some(w) => {
                let per_s = w.limit as f64 / w.period.as_secs_f64().max(0.001);
                (per_s.ceil() as usize).clamp(1, max.max(1))
            }
            None => max.max(1),
        }
    }

    /// The provider is polled every `every` from now on: the window keeps
    /// room for the polls due in it (`sync --once` polls once, before it
    /// pushes, and keeps none).
    pub fn plan_polls(&self, every: Duration) {
        let mut p = self.pace.lock().unwrap_or_else(|e| e.into_inner());
        *p = Some(PollPace {
            every,
            last: p.and_then(|p| p.last),
        });
    }

    /// A poll begins now: the next is due `every` later.
    pub fn polling(&self) {
        if let Some(p) = self.pace.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            p.last = Some(Instant::now());
        }
    }

    /// What a caller of `priority` is, as the window sees it. Pushes keep
    /// room for the polls due while their permit stays in the window (a
    /// round gives way to each poll when it is due, so those polls do
    /// come): one that raises a listing may not delay a poll at all; one
    /// that lowers a listing may make a poll wait one interval more (a
    /// sale's push and the poll that finds the next sale both matter; the
    /// poll still comes within two intervals of the last). Catalog reads
    /// keep none: they run in the provider's loop before its poll (a
    /// discovery), or inside it (stokdurumu), so the poll cannot come
    /// while they wait, and refusing them would only hold it back.
    fn kind(priority: Priority) -> Kind {
        match priority {
            Priority::Poll => Kind::Poll,
            Priority::Urgent => Kind::Other {
                slack: Some(1),
                bulk: false,
            },
            Priority::Normal => Kind::Other {
                slack: None,
                bulk: false,
            },
            Priority::Bulk => Kind::Other {
                slack: Some(0),
                bulk: true,
            },
        }
    }

    /// Takes (when `take`) or checks a permit of `w` now for `priority`; a
    /// caller gives way to a waiting caller of a higher priority that
    /// could take it now too.
    fn turn(
        &self,
        w: &SlidingWindow,
        now: Instant,
        priority: Priority,
        take: bool,
    ) -> Result<(), Instant> {
        use std::sync::atomic::Ordering;
        let pace = *self.pace.lock().unwrap_or_else(|e| e.into_inner());
        w.check(now, Self::kind(priority), pace, false)?;
        for higher in Priority::ALL.into_iter().filter(|q| *q < priority) {
            if self.waiting[higher.index()].load(Ordering::SeqCst) > 0
                && w.check(now, Self::kind(higher), pace, false).is_ok()
            {
                return Err(now + GIVE_WAY);
            }
        }
        if take {
            w.check(now, Self::kind(priority), pace, true)
        } else {
            Ok(())
        }
    }

    /// Waits for the pause, callers ahead, and the window; takes the
    /// window's permit when `take`. Returns whether it waited.
    async fn wait_turn(
        &self,
        cancel: &CancellationToken,
        priority: Priority,
        take: bool,
    ) -> Result<bool, LimitError> {
        use std::sync::atomic::Ordering;
        self.restored.get_or_init(|| self.restore()).await;
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let counter = &self.waiting[priority.index()];
        counter.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(counter);
        let mut waited = false;
        loop {
            let now = Instant::now();
            let pause = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            let wait_until = match pause {
                Some(until) if until > now => Some(until),
                _ => match &self.window {
                    Some(w) => self.turn(w, now, priority, take).err(),
                    None => None,
                },
            };
            let Some(until) = wait_until else {
                return Ok(waited);
            };
            if until > now + LONG_PAUSE {
                return Err(LimitError::Paused { wait: until - now });
            }
            if !waited {
                let wait = until - now;
                if wait >= Duration::from_secs(5) {
                    tracing::info!(provider = %self.provider, wait_s = wait.as_secs_f64(), ?priority, "waiting for a rate-limit permit");
                } else {
                    tracing::debug!(provider = %self.provider, wait_ms = wait.as_millis() as u64, ?priority, "waiting for a rate-limit permit");
                }
            }
            waited = true;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(LimitError::Cancelled),
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Holds every caller until `until`, in memory only.
    fn hold_until(&self, until: Instant) {
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// Stops every caller for `wait` (a server said so; at most a day,
    /// whatever it said), and writes the pause down so a restart inside it
    /// keeps it.
    pub async fn pause(&self, wait: Duration, why: &str) {
        let wait = wait.min(MAX_PAUSE);
        self.hold_until(Instant::now() + wait);
        let until = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        if let Err(e) = self.ledger.save_pause(self.provider, until, why).await {
            tracing::warn!(provider = %self.provider, error = %e, "cannot save the pause; a restart inside it would not know it");
        }
    }

    /// How long to pause when a server says "slow down" without saying
    /// for how long: one provider window.
    pub fn default_wait(&self) -> Duration {
        self.default_wait
    }

    /// A 429 or its equivalent: counted, logged, and every caller paused.
    pub async fn note_rate_limited(&self, wait: Duration, why: &str) {
        {
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.rate_limited_answers += 1;
            s.outcomes.rate_limited += 1;
        }
        tracing::warn!(provider = %self.provider, wait_s = wait.as_secs_f64(), reason = why, "provider said slow down; pausing");
        self.pause(wait, why).await;
    }

    /// Counts one HTTP attempt's outcome (429s are counted by
    /// [`Limiter::note_rate_limited`]).
    pub fn note_outcome(&self, outcome: Outcome) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let o = &mut s.outcomes;
        match outcome {
            Outcome::Ok => o.ok += 1,
            Outcome::ClientError => o.client_error += 1,
            Outcome::ServerError => o.server_error += 1,
            Outcome::NetworkError => o.network_error += 1,
        }
    }

    pub fn note_token_refresh(&self) {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token_refreshes += 1;
    }

    pub fn stats(&self) -> LimiterStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests spent today (since 00:00 Turkey time), from the request log.
    pub async fn used_today(&self) -> u32 {
        let since = turkey_midnight_before(crate::clock::now_utc()).timestamp_millis();
        let logged = self
            .ledger
            .requests_since(self.provider, since)
            .await
            .unwrap_or(0);
        let counted = self.daily.as_ref().and_then(DailyQuota::used_today);
        (logged as u32).max(counted.unwrap_or(0))
    }

    /// The provider said today's quota is spent: no request until 00:00
    /// Turkey time, across restarts too.
    pub async fn exhaust_today(&self) {
        let now = crate::clock::now_utc();
        if let Some(d) = &self.daily {
            d.exhaust(now);
        }
        let wait = (next_turkey_midnight(now) - now)
            .to_std()
            .unwrap_or(self.default_wait);
        self.pause(wait, "daily quota used up").await;
    }

    pub fn daily_limit(&self) -> Option<u32> {
        self.daily.as_ref().map(|d| d.limit)
    }

    pub fn per_minute(&self) -> Option<usize> {
        self.window.as_ref().map(|w| w.limit)
    }
}

/// The most instants (sorted) that fall inside any window of `period`:
/// how a limit is checked from the outside, in tests and in the sandbox.
pub fn max_in_any_window(sorted: &[Instant], period: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi].duration_since(sorted[lo]) >= period {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::test_support::temp_ledger;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn no_60s_window_ever_holds_more_than_the_limit() {
        // 25/min, 40 callers hammering for two simulated hours with random
        // think times: the schedule a governor quota with burst 25 breaks.
        let w = Arc::new(SlidingWindow::new(25, WINDOW));
        let log = Arc::new(Mutex::new(Vec::new()));
        let end = Instant::now() + Duration::from_secs(2 * 3600);
        let mut tasks = Vec::new();
        for seed in 0..40u64 {
            let (w, log) = (w.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                while Instant::now() < end {
                    w.acquire().await;
                    log.lock().unwrap().push(Instant::now());
                    tokio::time::sleep(Duration::from_millis(rng.u64(0..5_000))).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut grants = log.lock().unwrap().clone();
        grants.sort();
        assert!(
            grants.len() > 2 * 60 * 24,
            "the limiter starved callers: {}",
            grants.len()
        );
        let busiest = max_in_any_window(&grants, WINDOW);
        println!(
            "limiter: {} grants to 40 callers over 2 simulated hours; busiest 60 s window {busiest} (limit 25)",
            grants.len()
        );
        assert_eq!(busiest, 25);
    }

    #[tokio::test]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let (_d, ledger) = temp_ledger().await;
        let l = Limiter::new(ProviderName::Eticaret, Some(25), None, ledger);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        l.note_rate_limited(Duration::from_millis(300), "test")
            .await;
        l.acquire(&cancel).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(l.stats().rate_limited_answers, 1);
        // A waiting caller is released by cancellation, with no permit.
        l.note_rate_limited(Duration::from_secs(60), "test").await;
        cancel.cancel();
        assert_eq!(l.acquire(&cancel).await, Err(LimitError::Cancelled));
        // A pause longer than a caller should block is reported at once.
        l.note_rate_limited(Duration::from_secs(600), "test").await;
        assert!(matches!(
            l.acquire(&CancellationToken::new()).await,
            Err(LimitError::Paused { wait }) if wait > LONG_PAUSE
        ));
    }

    /// Defect: after kill -9 and an immediate restart the window started
    /// empty, and the v2 site saw 8 requests over its 25 in one minute.
    /// A permit taken ahead is spent by the first attempt made inside
    /// `spend_in` (no second permit, no second log line), only by its own
    /// provider's limiter, and only once.
    #[tokio::test]
    async fn a_permit_taken_ahead_is_spent_once_by_its_own_provider() {
        let (_d, ledger) = temp_ledger().await;
        let cancel = CancellationToken::new();
        let ours = Limiter::new(ProviderName::Eticaret, Some(25), None, ledger.clone());
        let other = Limiter::new(ProviderName::Pazarsync, Some(25), None, ledger.clone());
        let permit = ours.take(&cancel, Priority::Urgent).await.unwrap();
        assert_eq!(ours.stats().permits, 1);
        permit
            .spend_in(async {
                other.acquire(&cancel).await.unwrap();
                ours.acquire(&cancel).await.unwrap();
                assert_eq!(
                    ours.stats().permits,
                    1,
                    "the first attempt spent the permit"
                );
                ours.acquire(&cancel).await.unwrap();
                assert_eq!(ours.stats().permits, 2, "a retry takes its own");
            })
            .await;
        assert_eq!(other.stats().permits, 1);
        let logged = ledger
            .request_times_since(ProviderName::Eticaret, 0)
            .await
            .unwrap();
        assert_eq!(logged.len(), 2, "one log line a request sent");
    }

    #[tokio::test]
    async fn a_restart_inside_the_window_keeps_the_window_full() {
        let (_dir, ledger) = temp_ledger().await;
        let cancel = CancellationToken::new();
        let first = Limiter::new(ProviderName::Eticaret, Some(5), None, ledger.clone());
        for _ in 0..5 {
            first.acquire(&cancel).await.unwrap();
        }
        drop(first);
        // The restarted process reads the same request log.
        let again = Limiter::new(ProviderName::Eticaret, Some(5), None, ledger.clone());
        let sixth = tokio::time::timeout(Duration::from_millis(300), again.acquire(&cancel)).await;
        assert!(
            sixth.is_err(),
            "a sixth request inside the window was granted after a restart"
        );
        // Another provider's window is its own.
        let other = Limiter::new(ProviderName::Bazaardan, Some(5), None, ledger);
        other.acquire(&cancel).await.unwrap();
    }

    /// A pause a provider set (429 + Retry-After, AUTH004, X-RateLimit-Reset)
    /// holds across a restart.
    #[tokio::test]
    async fn a_pause_the_provider_set_survives_a_restart() {
        let (_dir, ledger) = temp_ledger().await;
        let cancel = CancellationToken::new();
        let l = Limiter::new(ProviderName::Pazarsync, Some(60), None, ledger.clone());
        l.note_rate_limited(Duration::from_secs(30), "test").await;
        drop(l);
        let l = Limiter::new(ProviderName::Pazarsync, Some(60), None, ledger.clone());
        let got = tokio::time::timeout(Duration::from_millis(300), l.acquire(&cancel)).await;
        assert!(got.is_err(), "a request went out inside a saved pause");
        // A long one (a daily quota used up) is reported at once, not waited.
        let l = Limiter::new(ProviderName::Stokdurumu, None, Some(500), ledger.clone());
        l.pause(Duration::from_secs(3600), "test").await;
        drop(l);
        let l = Limiter::new(ProviderName::Stokdurumu, None, Some(500), ledger);
        assert!(matches!(
            l.acquire(&cancel).await,
            Err(LimitError::Paused { wait }) if wait > Duration::from_secs(3500)
        ));
    }

    /// Three minutes of a 22/min window polled every 5 s (13 polls a
    /// window), with pushes of `priority` asking for every permit they can
    /// get every 100 ms: (polls granted late and by how much at most,
    /// pushes granted, the busiest window).
    fn polls_beside_pushes(priority: Priority) -> (usize, Duration, usize, usize) {
        polls_every_beside_pushes(Duration::from_secs(5), priority, 0)
    }

    fn polls_every_beside_pushes(
        every: Duration,
        priority: Priority,
        finds_every: u32,
    ) -> (usize, Duration, usize, usize) {
        let span = WINDOW + WINDOW_MARGIN;
        let w = SlidingWindow::new(22, span);
        let t0 = Instant::now();
        let mut pace = PollPace { every, last: None };
        let (mut late, mut worst, mut pushes) = (0, Duration::ZERO, 0);
        let mut due = t0;
        let mut granted = Vec::new();
        let mut polls = 0u32;
        for step in 0..1800u32 {
            let now = t0 + Duration::from_millis(100) * step;
            if now >= due && w.check(now, Kind::Poll, Some(pace), true).is_ok() {
                if now > due {
                    late += 1;
                    worst = worst.max(now - due);
                }
                pace.last = Some(now);
                due = now + every;
                granted.push(now);
                // What the poll found (one poll in `finds_every`): an
                // order whose lines take a read of their own.
                polls += 1;
                if finds_every > 0 && polls.is_multiple_of(finds_every) {
                    if w.check(now, Kind::Poll, Some(pace), true).is_ok() {
                        granted.push(now);
                    } else {
                        late += 1;
                    }
                }
            }
            while w
                .check(now, Limiter::kind(priority), Some(pace), true)
                .is_ok()
            {
                pushes += 1;
                granted.push(now);
            }
        }
        granted.sort();
        (late, worst, pushes, max_in_any_window(&granted, span))
    }

    /// Defect (issue 19): pushes filled the window, and the next order
    /// poll waited for the oldest grant to leave (29.5 s on the v2 site at
    /// 22 a minute). Pushes that raise a listing now leave the polls due
    /// in their window room to go on time; pushes that lower one may delay
    /// a poll by at most one interval. Either way the pushes get what the
    /// polls leave (22 - 13 a window, less room for one order the next
    /// poll finds and the bulk reserve), and no window holds more than
    /// the limit.
    #[test]
    fn pushes_leave_room_for_the_polls_due_in_their_window() {
        let (late, _, bulk, busiest) = polls_beside_pushes(Priority::Bulk);
        assert_eq!(late, 0, "a poll waited for bulk pushes");
        assert!(busiest <= 22, "{busiest}");
        // Three minutes: at least 3 windows of 22 - 13 - 1 (an order the
        // next poll finds) - 2 (the reserve).
        assert!(bulk >= 3 * 6, "bulk pushes starved: {bulk}");
        let (_, worst, urgent, busiest) = polls_beside_pushes(Priority::Urgent);
        assert!(worst <= Duration::from_secs(5), "a poll waited {worst:?}");
        assert!(busiest <= 22, "{busiest}");
        assert!(urgent >= bulk, "urgent {urgent} < bulk {bulk}");
        // Polls every second want 61 permits a window of 22: they get 18,
        // and bulk pushes still move (at least one a window).
        let (_, _, bulk, busiest) =
            polls_every_beside_pushes(Duration::from_secs(1), Priority::Bulk, 0);
        assert!(busiest <= 22, "{busiest}");
        assert!(bulk >= 3, "pushes starved by polls: {bulk}");
    }

    /// Defect (issue 19, found by the simulator, seed 153): a lowering
    /// push took the last permit before the next poll, the poll found a
    /// sale, and reading that order's lines waited 4.5 s for a permit, so
    /// the sale was applied 10.2 s after it was made (5 s polls). The next
    /// poll now keeps room for one order it finds, whatever pushes wait:
    /// here an order every 30 s at 22 a minute (before: a poll waited
    /// 5.5 s behind lowering pushes; orders on every third poll leave
    /// more reads than one kept permit covers, and polls then wait).
    #[test]
    fn the_next_poll_keeps_room_for_the_order_it_finds() {
        for priority in [Priority::Urgent, Priority::Bulk] {
            let (late, worst, pushes, busiest) =
                polls_every_beside_pushes(Duration::from_secs(5), priority, 6);
            assert!(busiest <= 22, "{busiest}");
            assert!(pushes >= 3, "{priority:?} pushes starved: {pushes}");
            if priority == Priority::Bulk {
                assert_eq!(
                    late, 0,
                    "a poll or its order read waited for bulk pushes ({pushes} pushes)"
                );
            } else {
                // A lowering push may delay a poll by an interval, never
                // the order read that poll makes.
                assert!(worst <= Duration::from_secs(5), "a poll waited {worst:?}");
            }
        }
    }

    /// A poll never gives way to waiting urgent callers; every other
    /// caller gives way to a waiting caller of a higher priority that
    /// could take the permit too, and only then.
    #[tokio::test]
    async fn a_waiting_higher_priority_goes_first_and_a_poll_waits_for_nobody() {
        use std::sync::atomic::Ordering;
        let (_d, ledger) = temp_ledger().await;
        let l = Limiter::new(ProviderName::Eticaret, Some(22), None, ledger);
        let w = l.window.as_ref().unwrap();
        let now = Instant::now();
        l.waiting[Priority::Urgent.index()].store(1, Ordering::SeqCst);
        assert_eq!(l.turn(w, now, Priority::Poll, false), Ok(()));
        assert_eq!(
            l.turn(w, now, Priority::Bulk, false),
            Err(now + GIVE_WAY),
            "bulk work gives way to a waiting urgent push"
        );
        l.waiting[Priority::Poll.index()].store(1, Ordering::SeqCst);
        assert_eq!(
            l.turn(w, now, Priority::Urgent, false),
            Err(now + GIVE_WAY),
            "an urgent push gives way to a waiting poll"
        );
        // A waiting bulk push that could not go holds no one back: fill
        // the window to the bulk cap (22 less its reserve of 2).
        l.waiting[Priority::Poll.index()].store(0, Ordering::SeqCst);
        l.waiting[Priority::Urgent.index()].store(0, Ordering::SeqCst);
        for _ in 0..20 {
            w.try_acquire(now).unwrap();
        }
        l.waiting[Priority::Bulk.index()].store(1, Ordering::SeqCst);
        assert!(l.turn(w, now, Priority::Bulk, false).is_err());
        assert_eq!(l.turn(w, now, Priority::Normal, true), Ok(()));
    }

    /// Grants reloaded after a restart (what they were for is not logged)
    /// only fill the window; pushes leave room for the polls due while
    /// they stay in it, bulk ones their reserve too.
    #[test]
    fn reloaded_grants_only_fill_the_window() {
        let span = WINDOW + WINDOW_MARGIN;
        let w = SlidingWindow::new(22, span);
        let t0 = Instant::now();
        w.preload(std::iter::repeat_n(t0, 16));
        let now = t0 + Duration::from_secs(1);
        let pace = Some(PollPace {
            every: Duration::from_secs(20),
            last: Some(now),
        });
        // Polls due at +20 s (with room for one order it finds) and
        // +40 s, the reloaded grants leaving at +59.5 s. A bulk push may
        // take the 17th permit: the polls then still go on time with 2
        // permits (the bulk reserve) to spare.
        let bulk = Limiter::kind(Priority::Bulk);
        assert_eq!(w.check(now, bulk, pace, true), Ok(()));
        assert!(w.check(now, bulk, pace, false).is_err());
        // Urgent pushes may take up to the 20th (the poll at +40 s then
        // waits until +59.5 s, less than an interval late), leaving the
        // 21st and 22nd to the poll at +20 s and an order it finds.
        let urgent = Limiter::kind(Priority::Urgent);
        for _ in 18..=20 {
            assert_eq!(w.check(now, urgent, pace, true), Ok(()));
        }
        assert!(w.check(now, urgent, pace, false).is_err());
        assert_eq!(w.check(now, Kind::Poll, pace, true), Ok(()));
        assert_eq!(w.check(now, Kind::Poll, pace, true), Ok(()));
        assert_eq!(w.in_window(now), 22);
        // The reloaded grants leave at t0 + span: room again.
        assert_eq!(w.check(t0 + span, bulk, pace, false), Ok(()));
    }

    /// Grants reloaded with a lower limit than they were made under still
    /// hold the next grant back until the window has room.
    #[test]
    fn a_window_reloaded_over_its_limit_waits_for_room() {
        let w = SlidingWindow::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        w.preload([t0, t0 + Duration::from_secs(1), t0 + Duration::from_secs(2)]);
        let at = t0 + Duration::from_secs(3);
        assert_eq!(w.try_acquire(at), Err(t0 + Duration::from_secs(61)));
        assert_eq!(w.try_acquire(t0 + Duration::from_secs(61)), Ok(()));
        assert_eq!(w.in_window(t0 + Duration::from_secs(61)), 2);
    }

    #[tokio::test]
    async fn a_daily_quota_survives_a_restart() {
        let (dir, ledger) = temp_ledger().await;
        let cancel = CancellationToken::new();
        let l = Limiter::new(ProviderName::Stokdurumu, None, Some(3), ledger.clone());
        for _ in 0..3 {
            l.acquire(&cancel).await.unwrap();
        }
        assert!(matches!(
            l.acquire(&cancel).await,
            Err(LimitError::QuotaExhausted { limit: 3, .. })
        ));
        ledger.close().await;
        drop(l);

        let reopened = Ledger::open(&dir.path().join("ledger.db")).await.unwrap();
        let l = Limiter::new(ProviderName::Stokdurumu, None, Some(3), reopened.clone());
        let err = l.acquire(&cancel).await.unwrap_err();
        let LimitError::QuotaExhausted { resets_at, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(resets_at, next_turkey_midnight(crate::clock::now_utc()));
        // Another provider's budget is its own.
        let other = Limiter::new(ProviderName::Pazarsync, None, Some(3), reopened);
        other.acquire(&cancel).await.unwrap();
    }
}
