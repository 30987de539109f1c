//! How the ledger's statements run: awaited like any other future (always,
//! in production), or, on a thread the simulator set up with
//! [`run_on_own_runtime`], to completion on a runtime of their own while
//! the simulated world waits.
//!
//! Why the simulator needs this: its world runs on one current-thread
//! runtime with tokio's paused clock, so the same seed gives the same run.
//! A database answers from threads of its own (SQLite's worker threads, a
//! PostgreSQL socket), and an answer that wakes a task at a moment the
//! machine decides would decide, too, which task runs next — and a runtime
//! with nothing to do while it waits would move its clock on. Run to
//! completion instead, a ledger call takes no simulated time and lets no
//! other task in: the interleaving is the seed's alone. The database's own
//! tasks (a pool handing back a connection, its timeouts) run on that
//! runtime's threads, in real time, so a call never waits for the world.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

thread_local! {
    /// The runtime ledger calls of this thread run on, when set.
    static OWN: RefCell<Option<tokio::runtime::Handle>> = const { RefCell::new(None) };
    /// Inside a ledger call already (its inner calls are awaited as usual).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// From now on, every ledger call made on this thread runs to completion
/// on `handle`'s runtime (whose threads drive the database), blocking this
/// thread meanwhile. For the simulator; `None` restores the default.
pub fn run_on_own_runtime(handle: Option<tokio::runtime::Handle>) {
    OWN.with(|o| *o.borrow_mut() = handle);
}

/// Runs one ledger call (see the module's documentation).
pub(crate) async fn db<T>(fut: impl Future<Output = T>) -> T {
    let own = if INSIDE.with(Cell::get) {
        None
    } else {
        OWN.with(|o| o.borrow().clone())
    };
    match own {
        None => fut.await,
        Some(handle) => run_to_completion(&handle, fut),
    }
}

fn run_to_completion<T>(handle: &tokio::runtime::Handle, fut: impl Future<Output = T>) -> T {
    struct Inside;
    impl Drop for Inside {
        fn drop(&mut self) {
            INSIDE.with(|i| i.set(false));
        }
    }
    INSIDE.with(|i| i.set(true));
    let _inside = Inside;
    // The calendar stands still while the ledger works: its timestamps are
    // the simulated moment of the call, whatever runtime is entered below.
    let _still = crate::clock::hold();
    let _rt = handle.enter();
    // Outside tokio's cooperative budget: a statement's channel and pool
    // waits inside one poll of the simulator's task would spend it, and a
    // spent budget defers the wake-up until that task yields, which it
    // does not do here.
    block_on(tokio::task::unconstrained(fut))
}

/// Wakes the thread that waits in [`block_on`].
struct Unpark {
    thread: std::thread::Thread,
    woken: std::sync::atomic::AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.thread.unpark();
    }
}

/// Polls `fut` on this thread until it is ready, parking in between.
fn block_on<T>(fut: impl Future<Output = T>) -> T {
    use std::sync::atomic::Ordering;
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        woken: std::sync::atomic::AtomicBool::new(false),
    });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        unpark.woken.store(false, Ordering::Release);
        if let Poll::Ready(t) = fut.as_mut().poll(&mut cx) {
            return t;
        }
        while !unpark.woken.load(Ordering::Acquire) {
            std::thread::park();
        }
    }
}
