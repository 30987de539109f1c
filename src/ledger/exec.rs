//! How the ledger's statements run: awaited like any other future (always,
//! in production), or, on a thread the simulator set up with
//! [`run_on_own_runtime`], to completion elsewhere while the simulated
//! world waits.
//!
//! Why the simulator needs this: its world runs on one current-thread
//! runtime with tokio's paused clock, so the same seed gives the same run.
//! A database answers from threads of its own (SQLite's worker threads, a
//! PostgreSQL socket), and an answer that wakes a task at a moment the
//! machine decides would decide, too, which task runs next — and a runtime
//! with nothing to do while it waits would move its clock on. Run to
//! completion instead, a ledger call takes no simulated time and lets no
//! other task in: the interleaving is the seed's alone.
//!
//! Where it runs: with the database's runtime entered (its tasks — a pool
//! handing back a connection, timeouts, sockets — run on that runtime's
//! threads, in real time, so a call never waits for the world), either on
//! the simulator's own thread ([`Via::Inline`], for SQLite: no thread hop
//! but the statement's own), or on a courier thread of it ([`Via::Courier`],
//! for PostgreSQL). The simulator's thread is inside its runtime's
//! scheduler, and tokio defers some wake-ups (`yield_now`, seen while a
//! PostgreSQL pool connects) until that scheduler's task yields, which a
//! thread blocked on a call never does; a courier thread runs no scheduler.
//! What the call reads of its thread travels with it to the courier: the
//! calendar (held at the moment of the call), the random numbers
//! (`fastrand`'s state, handed back after), the log subscriber.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::task::{Context, Poll, Wake, Waker};

/// Where a simulator's ledger calls run (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Inline,
    Courier,
}

thread_local! {
    /// Where ledger calls of this thread run, when set.
    static OWN: RefCell<Option<Own>> = const { RefCell::new(None) };
    /// Inside a ledger call already (its inner calls are awaited as usual).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// A job for the courier: a call to run to completion.
type Job = Box<dyn FnOnce() + Send + 'static>;

type Jobs = mpsc::Sender<(Job, mpsc::SyncSender<()>)>;

/// The runtime a simulator's thread runs its ledger calls on, and the
/// courier thread it hands them to, if it does.
struct Own {
    handle: tokio::runtime::Handle,
    courier: Option<Jobs>,
}

impl Own {
    fn start(handle: tokio::runtime::Handle, via: Via) -> Own {
        let courier = match via {
            Via::Inline => None,
            Via::Courier => Some(courier()),
        };
        Own { handle, courier }
    }
}

/// Starts a courier thread; it ends when the last sender is dropped.
fn courier() -> Jobs {
    let (jobs, inbox) = mpsc::channel::<(Job, mpsc::SyncSender<()>)>();
    std::thread::Builder::new()
        .name("ledger-courier".into())
        .spawn(move || {
            // Ends when the simulator's thread drops its sender.
            while let Ok((job, done)) = inbox.recv() {
                job();
                let _ = done.send(());
            }
        })
        .expect("a thread for the ledger's calls");
    jobs
}

/// From now on, every ledger call made on this thread runs to completion
/// with `handle`'s runtime (whose threads drive the database) entered, on
/// this thread or a courier thread (`via`), blocking this thread
/// meanwhile. For the simulator; `None` restores the default.
pub fn run_on_own_runtime(handle: Option<(tokio::runtime::Handle, Via)>) {
    OWN.with(|o| *o.borrow_mut() = handle.map(|(h, via)| Own::start(h, via)));
}

/// Runs one ledger call (see the module's documentation).
pub(crate) async fn db<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let own = if INSIDE.with(Cell::get) {
        None
    } else {
        OWN.with(|o| {
            o.borrow()
                .as_ref()
                .map(|o| (o.handle.clone(), o.courier.clone()))
        })
    };
    match own {
        None => fut.await,
        Some((handle, None)) => inline(&handle, fut),
        Some((handle, Some(jobs))) => by_courier(handle, jobs, fut),
    }
}

/// On this thread: the calendar held, the database's runtime entered.
fn inline<T>(handle: &tokio::runtime::Handle, fut: impl Future<Output = T>) -> T {
    struct Inside;
    impl Drop for Inside {
        fn drop(&mut self) {
            INSIDE.with(|i| i.set(false));
        }
    }
    INSIDE.with(|i| i.set(true));
    let _inside = Inside;
    let _still = crate::clock::hold_at(crate::clock::now_ms());
    let _rt = handle.enter();
    // Outside tokio's cooperative budget: a statement's channel and pool
    // waits inside one poll of the simulator's task would spend it, and a
    // spent budget defers the wake-up until that task yields, which it
    // does not do here.
    block_on(tokio::task::unconstrained(fut))
}

fn by_courier<F>(handle: tokio::runtime::Handle, jobs: Jobs, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let at_ms = crate::clock::now_ms();
    let seed = fastrand::get_seed();
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let mut out: Option<std::thread::Result<F::Output>> = None;
    let mut seed_after = seed;
    {
        let (out, seed_after) = (&mut out, &mut seed_after);
        let job = move || {
            let _log = tracing::dispatcher::set_default(&dispatch);
            let _still = crate::clock::hold_at(at_ms);
            fastrand::seed(seed);
            INSIDE.with(|i| i.set(true));
            let _rt = handle.enter();
            // Outside tokio's cooperative budget: this thread runs no
            // scheduler that would ever hand a spent one back.
            *out = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || block_on(tokio::task::unconstrained(fut)),
            )));
            INSIDE.with(|i| i.set(false));
            *seed_after = fastrand::get_seed();
        };
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
        // SAFETY: the job borrows this frame (the future, `out`,
        // `seed_after`); this thread waits below until the courier has
        // run it to the end (a panic inside is caught there), so nothing
        // it borrows is gone before it is. As `std::thread::scope` does.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        let (done, finished) = mpsc::sync_channel(1);
        jobs.send((job, done))
            .expect("the ledger's courier thread is running");
        finished
            .recv()
            .expect("the ledger's courier thread finished the call");
    }
    fastrand::seed(seed_after);
    match out.expect("the call ran") {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
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
