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
    pub cycles: u64,
    pub order_lines_seen: u64,
    pub movements_applied: u64,
    pub pushes_confirmed: u64,
    pub pushes_refused: u64,
    pub pushes_failed: u64,
    /// Listings still differing after the last push round.
    pub pending: usize,
    /// Since when `pending` has been above zero without a break.
    pub pending_since: Option<Instant>,
    pub stopped: bool,
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
            cycles: 0,
            order_lines_seen: 0,
            movements_applied: 0,
            pushes_confirmed: 0,
            pushes_refused: 0,
            pushes_failed: 0,
            pending: 0,
            pending_since: None,
            stopped: false,
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
        });
    }

    pub fn pending(&self, p: ProviderName, pending: usize) {
        self.with(p, |h| {
            h.pending = pending;
            if pending == 0 {
                h.pending_since = None;
            } else if h.pending_since.is_none() {
                h.pending_since = Some(Instant::now());
            }
        });
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

    #[tokio::test(start_paused = true)]
    async fn pending_age_counts_from_the_first_cycle_with_pending_pushes() {
        let h = Health::new(Duration::from_secs(60));
        let p = ProviderName::Pazarsync;
        h.pending(p, 3);
        tokio::time::advance(Duration::from_secs(10)).await;
        h.pending(p, 2);
        let since = h.snapshot()[&p].pending_since.unwrap();
        assert_eq!(since.elapsed(), Duration::from_secs(10));
        h.pending(p, 0);
        assert!(h.snapshot()[&p].pending_since.is_none());
    }
}
