//! What the running loops report about themselves: a heartbeat per provider
//! loop, whether it has polled, what it applied and pushed. Read by
//! `/healthz`, `/readyz`, `/metrics`, the status page, the systemd watchdog
//! and the demo. Kept in memory: it describes this process, not the ledger.

use crate::domain::ProviderName;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// One provider loop, as last reported.
#[derive(Debug, Clone)]
pub struct LoopHealth {
    pub last_beat: Instant,
    /// A poll succeeded since the process started.
    pub polled: bool,
    /// The last cycle's error, cleared by the next success.
    pub last_error: Option<String>,
    /// The provider refused our credentials (the error says how), cleared
    /// by the next successful poll. Read by the alerts.
    pub credentials_refused: Option<String>,
    pub cycles: u64,
    pub order_lines_seen: u64,
    pub movements_applied: u64,
    pub pushes_confirmed: u64,
    pub pushes_refused: u64,
    pub pushes_failed: u64,
    /// Listings still differing after the last push round, as the round
    /// saw them (the demo's line and the backlog log lines). No round runs
    /// while polls fail, so this can be stale: the backlog alert and
    /// `/metrics` read the ledger instead (`engine::pending`).
    pub pending: usize,
    pub stopped: bool,
    /// Whether a backlog is open, for the log lines of `Health::pending`.
    pub backlog: BacklogWatch,
}

/// A provider's backlog is logged as started ("push backlog started") when
/// at least this many listings still differ after a push round, and as
/// drained ("push backlog drained") when none does. In between nothing is
/// logged, so a backlog wavering around the threshold logs one line each
/// way. A few listings waiting for the next round are normal work, not a
/// backlog: 50 is more than one round usually leaves.
pub const BACKLOG_LOG_THRESHOLD: usize = 50;

/// The push pace counts the pushes of this last stretch of time.
pub const PACE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Listings pushed per minute, from when each push was sent (Unix ms, any
/// order): the pushes sent within `window` before `now_ms`, over the time
/// from the oldest of them to now, that time taken as at least a minute
/// (a burst just sent is not read as thousands a minute) and at most
/// `window`. 0 when nothing was sent within the window.
pub fn pace_per_minute(sent_at_ms: &[i64], now_ms: i64, window: Duration) -> f64 {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
    let from = now_ms.saturating_sub(window_ms);
    let recent = sent_at_ms.iter().filter(|t| **t > from && **t <= now_ms);
    let (count, oldest) = recent.fold((0u64, now_ms), |(n, o), t| (n + 1, o.min(*t)));
    if count == 0 {
        return 0.0;
    }
    let span_ms = (now_ms - oldest).clamp(60_000.min(window_ms), window_ms);
    count as f64 * 60_000.0 / span_ms as f64
}

/// How long `backlog` listings take to push at `pace_per_minute`, rounded
/// up to the second: zero when there is no backlog, `None` (unknown) when
/// there is one and nothing is being pushed.
pub fn drain_eta(backlog: usize, pace_per_minute: f64) -> Option<Duration> {
    if backlog == 0 {
        return Some(Duration::ZERO);
    }
    if !(pace_per_minute.is_finite() && pace_per_minute > 0.0) {
        return None;
    }
    let secs = (backlog as f64 * 60.0 / pace_per_minute).ceil();
    Some(Duration::from_secs(secs.min(u64::MAX as f64) as u64))
}

/// A change of a provider's backlog worth one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacklogEvent {
    /// `size` listings differ, at least `BACKLOG_LOG_THRESHOLD`.
    Started { size: usize },
    /// Nothing differs any more. `pushed` listings were sent (whatever
    /// the answer) and `confirmed` confirmed while it lasted; `peak` is the
    /// largest size it reached.
    Drained {
        lasted: Duration,
        pushed: u64,
        confirmed: u64,
        peak: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenBacklog {
    since: Instant,
    peak: usize,
    pushed: u64,
    confirmed: u64,
}

/// Tells when a backlog starts and when it drains, from the pending counts
/// and push results a provider loop reports. Pure: the caller gives the
/// time and does the logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogWatch {
    threshold: usize,
    open: Option<OpenBacklog>,
}

impl Default for BacklogWatch {
    fn default() -> Self {
        BacklogWatch::new(BACKLOG_LOG_THRESHOLD)
    }
}

impl BacklogWatch {
    /// A backlog starts at `threshold` listings (at least 1).
    pub fn new(threshold: usize) -> BacklogWatch {
        BacklogWatch {
            threshold: threshold.max(1),
            open: None,
        }
    }

    /// Whether a backlog has started and not drained yet.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// A push round sent `sent` listings, `confirmed` of them confirmed.
    pub fn pushed(&mut self, sent: usize, confirmed: usize) {
        if let Some(o) = &mut self.open {
            o.pushed += sent as u64;
            o.confirmed += confirmed as u64;
        }
    }

    /// `pending` listings differ at `now`; says whether that starts or
    /// ends a backlog.
    pub fn pending(&mut self, pending: usize, now: Instant) -> Option<BacklogEvent> {
        match &mut self.open {
            None if pending >= self.threshold => {
                self.open = Some(OpenBacklog {
                    since: now,
                    peak: pending,
                    pushed: 0,
                    confirmed: 0,
                });
                Some(BacklogEvent::Started { size: pending })
            }
            None => None,
            Some(o) if pending == 0 => {
                let event = BacklogEvent::Drained {
                    lasted: now.saturating_duration_since(o.since),
                    pushed: o.pushed,
                    confirmed: o.confirmed,
                    peak: o.peak,
                };
                self.open = None;
                Some(event)
            }
            Some(o) => {
                o.peak = o.peak.max(pending);
                None
            }
        }
    }
}

/// Heartbeats of every provider loop.
pub struct Health {
    started: Instant,
    /// A loop that has not beaten for this long is stalled.
    stall_after: Duration,
    loops: Mutex<BTreeMap<ProviderName, LoopHealth>>,
}

/// The verdict of `/healthz` and of the watchdog.
#[derive(Debug, Clone, Serialize)]
pub struct Liveness {
    pub alive: bool,
    /// Loops that stopped beating, with the seconds since their last beat.
    pub stalled: Vec<(ProviderName, u64)>,
}

impl Health {
    pub fn new(stall_after: Duration) -> Health {
        Health {
            started: Instant::now(),
            stall_after,
            loops: Mutex::new(BTreeMap::new()),
        }
    }

    fn with<R>(&self, p: ProviderName, f: impl FnOnce(&mut LoopHealth) -> R) -> R {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let h = loops.entry(p).or_insert_with(|| LoopHealth {
            last_beat: Instant::now(),
            polled: false,
            last_error: None,
            credentials_refused: None,
            cycles: 0,
            order_lines_seen: 0,
            movements_applied: 0,
            pushes_confirmed: 0,
            pushes_refused: 0,
            pushes_failed: 0,
            pending: 0,
            stopped: false,
            backlog: BacklogWatch::default(),
        });
        f(h)
    }

    /// The loop of `p` made progress (or is waiting on purpose).
    pub fn beat(&self, p: ProviderName) {
        self.with(p, |h| h.last_beat = Instant::now());
    }

    pub fn polled(&self, p: ProviderName, lines: usize, movements: usize) {
        self.with(p, |h| {
            h.last_beat = Instant::now();
            h.polled = true;
            h.last_error = None;
            h.credentials_refused = None;
            h.cycles += 1;
            h.order_lines_seen += lines as u64;
            h.movements_applied += movements as u64;
        });
    }

    pub fn failed(&self, p: ProviderName, error: &str) {
        self.with(p, |h| {
            h.last_beat = Instant::now();
            h.last_error = Some(error.to_string());
        });
    }

    /// `p` refused our credentials: `error` says how (never a secret).
    pub fn credentials_refused(&self, p: ProviderName, error: &str) {
        self.with(p, |h| h.credentials_refused = Some(error.to_string()));
    }

    pub fn pushed(
        &self,
        p: ProviderName,
        confirmed: usize,
        refused: usize,
        failed: usize,
        movements: usize,
    ) {
        self.with(p, |h| {
            h.last_beat = Instant::now();
            h.pushes_confirmed += confirmed as u64;
            h.pushes_refused += refused as u64;
            h.pushes_failed += failed as u64;
            h.movements_applied += movements as u64;
            h.backlog.pushed(confirmed + refused + failed, confirmed);
        });
    }

    /// `pending` listings of `p` still differ after a push round. Logs once
    /// when a backlog starts and once when it drains (see
    /// `BACKLOG_LOG_THRESHOLD`).
    pub fn pending(&self, p: ProviderName, pending: usize) {
        let now = Instant::now();
        let event = self.with(p, |h| {
            h.pending = pending;
            h.backlog.pending(pending, now)
        });
        match event {
            Some(BacklogEvent::Started { size }) => tracing::info!(
                provider = %p,
                size,
                threshold = BACKLOG_LOG_THRESHOLD,
                "push backlog started"
            ),
            Some(BacklogEvent::Drained {
                lasted,
                pushed,
                confirmed,
                peak,
            }) => tracing::info!(
                provider = %p,
                lasted_s = lasted.as_secs(),
                pushed,
                confirmed,
                peak,
                "push backlog drained"
            ),
            None => {}
        }
    }

    pub fn stopped(&self, p: ProviderName) {
        self.with(p, |h| h.stopped = true);
    }

    pub fn snapshot(&self) -> BTreeMap<ProviderName, LoopHealth> {
        self.loops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Alive when every loop that started has beaten within `stall_after`
    /// and none has ended.
    pub fn liveness(&self) -> Liveness {
        let now = Instant::now();
        let stalled: Vec<(ProviderName, u64)> = self
            .snapshot()
            .into_iter()
            .filter(|(_, h)| h.stopped || now.duration_since(h.last_beat) > self.stall_after)
            .map(|(p, h)| (p, now.duration_since(h.last_beat).as_secs()))
            .collect();
        Liveness {
            alive: stalled.is_empty(),
            stalled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_beating_is_stalled() {
        let h = Health::new(Duration::from_secs(60));
        h.beat(ProviderName::Eticaret);
        h.beat(ProviderName::Stokdurumu);
        assert!(h.liveness().alive);
        tokio::time::advance(Duration::from_secs(45)).await;
        h.beat(ProviderName::Stokdurumu);
        tokio::time::advance(Duration::from_secs(30)).await;
        let l = h.liveness();
        assert!(!l.alive);
        assert_eq!(l.stalled, vec![(ProviderName::Eticaret, 75)]);
        h.stopped(ProviderName::Stokdurumu);
        h.beat(ProviderName::Eticaret);
        assert_eq!(h.liveness().stalled.len(), 1, "a stopped loop is not alive");
    }

    fn ms(secs: i64) -> i64 {
        secs * 1000
    }

    #[test]
    fn pace_counts_the_pushes_of_the_window_over_the_time_they_took() {
        let now = ms(10_000);
        // 30 pushes spread over the last two minutes: 15 a minute.
        let times: Vec<i64> = (0..30).map(|i| now - ms(120) + ms(4 * i)).collect();
        assert_eq!(pace_per_minute(&times, now, PACE_WINDOW), 15.0);
        // Pushes before the window do not count, nor the window's edge.
        let mut with_old = times.clone();
        with_old.extend([now - ms(300), now - ms(301), now - ms(3_000)]);
        assert_eq!(pace_per_minute(&with_old, now, PACE_WINDOW), 15.0);
        // A burst just sent is read over a minute, not over 2 s.
        let burst = [now - ms(2), now - ms(1), now];
        assert_eq!(pace_per_minute(&burst, now, PACE_WINDOW), 3.0);
        // Over the whole window at most: 10 pushes 4 min 59 s ago.
        let early = [now - ms(299); 10];
        let pace = pace_per_minute(&early, now, PACE_WINDOW);
        assert!((pace - 10.0 / (299.0 / 60.0)).abs() < 1e-9, "{pace}");
        // Nothing sent in the window: no pace; later stamps are ignored.
        assert_eq!(pace_per_minute(&[], now, PACE_WINDOW), 0.0);
        assert_eq!(pace_per_minute(&[now - ms(400)], now, PACE_WINDOW), 0.0);
        assert_eq!(pace_per_minute(&[now + ms(5)], now, PACE_WINDOW), 0.0);
    }

    #[test]
    fn eta_is_backlog_over_pace_and_unknown_without_pace() {
        assert_eq!(drain_eta(120, 30.0), Some(Duration::from_secs(240)));
        assert_eq!(
            drain_eta(1, 7.0),
            Some(Duration::from_secs(9)),
            "rounded up"
        );
        assert_eq!(drain_eta(0, 0.0), Some(Duration::ZERO), "no backlog");
        assert_eq!(drain_eta(0, 12.0), Some(Duration::ZERO));
        assert_eq!(drain_eta(5, 0.0), None, "nothing pushed: unknown");
        assert_eq!(drain_eta(5, f64::NAN), None);
        assert_eq!(drain_eta(5, -1.0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backlog_starts_at_the_threshold_and_drains_at_zero_once_each() {
        let mut w = BacklogWatch::new(50);
        let t0 = Instant::now();
        assert_eq!(w.pending(49, t0), None, "below the threshold");
        w.pushed(10, 10);
        assert_eq!(w.pending(50, t0), Some(BacklogEvent::Started { size: 50 }));
        assert!(w.is_open());
        // Up, down, below the threshold but not empty: nothing to say.
        for (i, n) in [80, 120, 60, 10, 49, 51, 3].into_iter().enumerate() {
            w.pushed(20, 15);
            assert_eq!(w.pending(n, t0 + Duration::from_secs(i as u64)), None);
        }
        w.pushed(3, 3);
        assert_eq!(
            w.pending(0, t0 + Duration::from_secs(90)),
            Some(BacklogEvent::Drained {
                lasted: Duration::from_secs(90),
                pushed: 7 * 20 + 3,
                confirmed: 7 * 15 + 3,
                peak: 120,
            })
        );
        assert!(!w.is_open());
        assert_eq!(w.pending(0, t0 + Duration::from_secs(91)), None);
        // Pushes between backlogs are not carried into the next one.
        w.pushed(500, 500);
        assert_eq!(w.pending(70, t0), Some(BacklogEvent::Started { size: 70 }));
        assert_eq!(
            w.pending(0, t0 + Duration::from_secs(1)),
            Some(BacklogEvent::Drained {
                lasted: Duration::from_secs(1),
                pushed: 0,
                confirmed: 0,
                peak: 70,
            })
        );
    }

    /// Collects what is logged on this thread.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn health_logs_one_line_per_backlog_transition() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let h = Health::new(Duration::from_secs(60));
        let p = ProviderName::Stokdurumu;
        for n in [3, 0, 10] {
            h.pending(p, n);
        }
        for n in [400, 380, 300, 20, 60, 5] {
            h.pushed(p, 20, 1, 2, 0);
            h.pending(p, n);
            tokio::time::advance(Duration::from_secs(30)).await;
        }
        h.pushed(p, 5, 0, 0, 0);
        h.pending(p, 0);
        h.pending(p, 0);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("push backlog started"), "{text}");
        assert!(lines[0].contains("provider=stokdurumu"), "{text}");
        assert!(lines[0].contains("size=400"), "{text}");
        assert!(lines[1].contains("push backlog drained"), "{text}");
        assert!(lines[1].contains("lasted_s=180"), "{text}");
        // Five rounds after the start, of 23 sent (20 confirmed), then 5.
        assert!(lines[1].contains("pushed=120"), "{text}");
        assert!(lines[1].contains("confirmed=105"), "{text}");
        assert!(lines[1].contains("peak=400"), "{text}");
    }
}
