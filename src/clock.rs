//! Wall-clock time: every timestamp stoksync writes, every calendar rule
//! (the daily quota's 00:00 Turkey time) and every time it tells a provider
//! read the clock here, never `Utc::now()` directly.
//!
//! One reason: the simulator (`tests/sim.rs`) shifts the calendar of the
//! threads that run one simulated world, so a day boundary can fall inside
//! a run that lasts a second. A thread that was not shifted (every thread in
//! production) reads the system clock unchanged.

use chrono::{DateTime, Utc};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

thread_local! {
    static SHIFT: RefCell<Option<Arc<AtomicI64>>> = const { RefCell::new(None) };
}

/// Milliseconds to add to the system clock on this thread.
fn shift_ms() -> i64 {
    SHIFT.with(|s| s.borrow().as_ref().map_or(0, |a| a.load(Ordering::Relaxed)))
}

/// Now, as this thread's calendar reads it.
pub fn now_utc() -> DateTime<Utc> {
    let real = Utc::now();
    match shift_ms() {
        0 => real,
        ms => real + chrono::Duration::milliseconds(ms),
    }
}

/// Now in Unix milliseconds.
pub fn now_ms() -> i64 {
    now_utc().timestamp_millis()
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
