//! Named points where the simulator may "kill" the process: at a point, a
//! thread with a hook installed asks the hook; if it says stop, the task
//! never resumes (the simulator drops the whole runtime, as kill -9
//! would). Without a hook (always, outside the simulator) a point is one
//! thread-local read.
//!
//! The points are where a crash is most telling: after a push was noted
//! and before it was sent, after a provider answered and before the ledger
//! committed what it said, between the items of a batch, after a request
//! was logged and before it left, between the pages of a poll.

use std::cell::RefCell;
use std::sync::Arc;

/// Decides, for a named point, whether the process dies there.
pub type Hook = Arc<dyn Fn(&'static str) -> bool + Send + Sync>;

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Installs `hook` for every point reached on this thread.
pub fn install(hook: Hook) {
    HOOK.with(|h| *h.borrow_mut() = Some(hook));
}

/// A point named `name`: returns at once, or never when the hook says the
/// process dies here.
pub async fn point(name: &'static str) {
    let dies = HOOK.with(|h| h.borrow().as_ref().is_some_and(|hook| hook(name)));
    if dies {
        std::future::pending::<()>().await;
    }
}
