//! Wall-clock time: every timestamp stoksync writes, every calendar rule
//! (the daily quota's 00:00 Turkey time) and every time it tells a provider
//! read the clock here, never `Utc::now()` directly.
//!
//! One reason: the simulator (`tests/sim.rs`) runs a world in virtual
//! time. On its thread the calendar is [`simulate`]d: it reads tokio's
//! paused clock from a moment the simulator chose, so a day of a seller's
//! traffic, a quota day's 00:00 Turkey time included, passes in seconds and
//! the same seed reads the same times. A thread that was not set up (every
//! thread in production) reads the system clock unchanged.

use chrono::{DateTime, Utc};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

thread_local! {
    static SHIFT: RefCell<Option<Arc<AtomicI64>>> = const { RefCell::new(None) };
    /// The simulated calendar: Unix ms when tokio's clock read the instant.
    static SIM: Cell<Option<(i64, tokio::time::Instant)>> = const { Cell::new(None) };
    /// The calendar held still (see [`hold`]).
    static HELD: Cell<Option<i64>> = const { Cell::new(None) };
}

/// From now on, this thread's calendar reads `at_ms` (Unix ms) at tokio's
/// current instant and moves with tokio's clock (paused, in a simulation).
/// Call it inside the runtime whose clock it follows; `None` ends it.
pub fn simulate(at_ms: Option<i64>) {
    SIM.with(|s| s.set(at_ms.map(|ms| (ms, tokio::time::Instant::now()))));
}

/// While the guard lives, this thread's calendar reads `at_ms` (a ledger
/// call of a simulated world runs on a courier thread, at the simulated
/// moment it was made).
pub(crate) fn hold_at(at_ms: i64) -> Held {
    let was = HELD.with(Cell::get);
    HELD.with(|h| h.set(Some(at_ms)));
    Held(was)
}

/// See [`hold_at`].
pub(crate) struct Held(Option<i64>);

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|h| h.set(self.0));
    }
}

/// Milliseconds to add to the system clock on this thread.
fn shift_ms() -> i64 {
    SHIFT.with(|s| s.borrow().as_ref().map_or(0, |a| a.load(Ordering::Relaxed)))
}

/// Now, as this thread's calendar reads it.
pub fn now_utc() -> DateTime<Utc> {
    if let Some(ms) = sim_ms() {
        return DateTime::from_timestamp_millis(ms).unwrap_or_default();
    }
    let real = Utc::now();
    match shift_ms() {
        0 => real,
        ms => real + chrono::Duration::milliseconds(ms),
    }
}

/// Now in Unix milliseconds.
pub fn now_ms() -> i64 {
    sim_ms().unwrap_or_else(|| now_utc().timestamp_millis())
}

/// The simulated calendar's reading, on a simulated thread.
fn sim_ms() -> Option<i64> {
    if let Some(ms) = HELD.with(Cell::get) {
        return Some(ms);
    }
    let (at, base) = SIM.with(Cell::get)?;
    let passed = tokio::time::Instant::now().saturating_duration_since(base);
    Some(at.saturating_add(i64::try_from(passed.as_millis()).unwrap_or(i64::MAX)))
}

/// Shifts this thread's calendar by the value of `shift` (milliseconds),
/// which the caller may move forward later; threads given the same `shift`
/// agree on the time. For simulations only.
pub fn shift_this_thread(shift: Arc<AtomicI64>) {
    SHIFT.with(|s| *s.borrow_mut() = Some(shift));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_moves_only_the_threads_that_share_it() {
        let before = now_ms();
        let shift = Arc::new(AtomicI64::new(86_400_000));
        let s = shift.clone();
        let shifted = std::thread::spawn(move || {
            shift_this_thread(s);
            now_ms()
        })
        .join()
        .unwrap();
        assert!(shifted - before >= 86_400_000, "{shifted} vs {before}");
        assert!(now_ms() - before < 86_400_000, "this thread is not shifted");
    }
}
