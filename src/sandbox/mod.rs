//! Faithful fakes of the providers, speaking real HTTP on loopback. Tests
//! drive them through their Rust handles; a later `sandbox` command serves
//! them all. Each fake keeps state, checks credentials exactly as the real
//! API does, enforces its rate limit, and can inject faults.

pub mod bazaardan;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

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
