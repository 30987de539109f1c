//! One life of the real daemon (`stoksync::daemon::Daemon`, as `run`
//! starts it) on its own thread and runtime. It ends the three ways a
//! process ends: stopped (SIGTERM: the stop token), or killed, which drops
//! the runtime and with it every task where it stands, as kill -9 would —
//! at a random moment, at a named point in the code (`failpoint`), or right
//! after a provider carried out one of its writes (the fake's tripwire).

use crate::world::Fakes;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stoksync::config::Config;
use stoksync::domain::ProviderName;
use stoksync::engine::Engine;
use stoksync::http::{Net, client_builder};
use stoksync::ledger::Ledger;
use stoksync::notify::Notifier;
use stoksync::providers::{build_all_on, retry_policy};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where the code may be killed (see `src/failpoint.rs`).
const POINTS: [&str; 6] = [
    "push.noted",
    "push.answered",
    "push.recorded",
    "poll.answered",
    "poll.page",
    "http.logged_not_sent",
];

#[derive(Debug, Clone)]
pub enum How {
    /// SIGTERM: must end in `Ok`.
    Stop,
    /// kill -9 at `until`.
    Kill,
    /// kill -9 the `nth` time the code reaches `point` (or at `until`).
    Failpoint { point: &'static str, nth: u32 },
    /// kill -9 right after `provider` carries out its `nth` write of ours
    /// (or at `until`).
    AfterWrite { provider: ProviderName, nth: u32 },
    /// Runs until told to stop.
    Last,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// When, after the world starts, this life ends at the latest.
    pub until: Duration,
    pub how: How,
    /// A pause before the next life starts (restarts come within seconds,
    /// often within the same one).
    pub restart_after: Option<Duration>,
}

impl Plan {
    pub fn last() -> Plan {
        Plan {
            until: Duration::from_secs(3600),
            how: How::Last,
            restart_after: None,
        }
    }
}

pub fn draw_lives(rng: &mut fastrand::Rng, run: Duration) -> Vec<Plan> {
    let n = rng.usize(1..=3);
    let mut ends: Vec<u64> = (0..n)
        .map(|_| rng.u64(20..=run.as_millis() as u64))
        .collect();
    ends.sort();
    ends.into_iter()
        .map(|ms| Plan {
            until: Duration::from_millis(ms),
            how: match rng.u8(0..20) {
                0..=5 => How::Stop,
                6..=9 => How::Kill,
                10..=16 => How::Failpoint {
                    point: POINTS[rng.usize(0..POINTS.len())],
                    nth: rng.u32(1..=8),
                },
                _ => How::AfterWrite {
                    provider: ProviderName::ALL[rng.usize(0..4)],
                    nth: rng.u32(1..=4),
                },
            },
            restart_after: Some(Duration::from_millis(rng.u64(0..=15))),
        })
        .collect()
}

/// One HTTP client for every life of every world in this process: building
/// one loads the system's root certificates (tens of milliseconds), and a
/// life is often shorter than that. It keeps no idle connection, so no life
/// reuses a connection another life's runtime opened.
fn shared_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            client_builder(crate::world::REQUEST_TIMEOUT)
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client")
        })
        .clone()
}

/// How a life ended, with its HTTP attempts that ended in a network error
/// (per provider), as its limiters counted them.
pub enum End {
    Stopped(Result<(), String>),
    Killed,
    Failed(String),
}

pub struct Life {
    plan: Plan,
    die: Arc<Notify>,
    stop: CancellationToken,
    end: Option<oneshot::Receiver<(End, HashMap<ProviderName, u64>)>>,
    logs: Arc<Mutex<Vec<u8>>>,
    net_errors: HashMap<ProviderName, u64>,
}

/// Log lines of one life, kept in memory (checked for secrets).
#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn spawn(
    config: Arc<Config>,
    shift: Arc<AtomicI64>,
    plan: Plan,
    fakes: &Fakes,
    index: usize,
) -> Life {
    let die = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let logs = Arc::new(Mutex::new(Vec::new()));
    if let How::AfterWrite { provider, nth } = plan.how {
        let (die, seen) = (die.clone(), Arc::new(AtomicU32::new(0)));
        fakes.get(provider).set_tripwire(Some(Arc::new(move || {
            if seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                die.notify_one();
            }
        })));
    }
    let hook: stoksync::failpoint::Hook = match plan.how {
        How::Failpoint { point, nth } => {
            let (die, seen) = (die.clone(), Arc::new(AtomicU32::new(0)));
            Arc::new(move |name| {
                if name == point && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
                    die.notify_one();
                    true
                } else {
                    false
                }
            })
        }
        _ => Arc::new(|_| false),
    };
    let (tx, rx) = oneshot::channel();
    let (die2, stop2, logs2) = (die.clone(), stop.clone(), logs.clone());
    std::thread::Builder::new()
        .name(format!("sim-life-{index}"))
        .spawn(move || {
            stoksync::clock::shift_this_thread(shift);
            stoksync::failpoint::install(hook);
            let sub = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("stoksync=debug,warn"))
                .with_writer(move || Buf(logs2.clone()))
                .with_ansi(false)
                .finish();
            let _log = tracing::subscriber::set_default(sub);
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send((End::Failed(e.to_string()), HashMap::new()));
                    return;
                }
            };
            let kept: Arc<Mutex<Option<Arc<Engine>>>> = Arc::default();
            let slot = kept.clone();
            let trace = std::env::var("STOKSYNC_SIM_TRACE").is_ok();
            let t0 = std::time::Instant::now();
            let end = rt.block_on(async move {
                let ledger = match Ledger::open(&config.database).await {
                    Ok(l) => l,
                    Err(e) => return End::Failed(e.to_string()),
                };
                if trace {
                    eprintln!("life {index}: ledger open after {:?}", t0.elapsed());
                }
                let net = Net {
                    transport: Arc::new(stoksync::http::Reqwest(shared_client())),
                    client: shared_client(),
                    policy: retry_policy(&config),
                    cancel: stop2.clone(),
                };
                let providers = match build_all_on(&config, &ledger, &net) {
                    Ok(p) => p,
                    Err(e) => return End::Failed(e.to_string()),
                };
                let engine = Arc::new(Engine::new(ledger.clone(), providers, config.sync.clone()));
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine.clone());
                if trace {
                    eprintln!("life {index}: engine built after {:?}", t0.elapsed());
                }
                let d = stoksync::daemon::Daemon {
                    config,
                    ledger: ledger.clone(),
                    engine,
                    listener: None,
                    lease: None,
                };
                tokio::select! {
                    biased;
                    _ = die2.notified() => {
                        if trace {
                            eprintln!("life {index}: die seen after {:?}", t0.elapsed());
                        }
                        End::Killed
                    }
                    r = d.run(stop2, Arc::new(Notifier::disabled())) => {
                        ledger.close().await;
                        End::Stopped(r.map_err(|e| format!("{e:#}")))
                    }
                }
            });
            let engine = kept.lock().unwrap_or_else(|e| e.into_inner()).take();
            let net: HashMap<ProviderName, u64> = engine
                .as_ref()
                .map(|e| {
                    e.providers()
                        .iter()
                        .map(|p| (p.name(), p.limiter().stats().outcomes.network_error))
                        .collect()
                })
                .unwrap_or_default();
            {
                // Drop what is left where a runtime is current (the ledger's
                // pool hands connections back through it), then the runtime:
                // every task of this life is dropped where it stands.
                let _in = rt.enter();
                drop(engine);
            }
            drop(rt);
            if trace {
                eprintln!(
                    "life {index}: ended after {:?}: {}",
                    t0.elapsed(),
                    match &end {
                        End::Killed => "killed".to_string(),
                        End::Stopped(r) => format!("stopped {r:?}"),
                        End::Failed(e) => format!("failed {e}"),
                    }
                );
            }
            let _ = tx.send((end, net));
        })
        .expect("a thread for the daemon");
    Life {
        plan,
        die,
        stop,
        end: Some(rx),
        logs,
        net_errors: HashMap::new(),
    }
}

impl Life {
    /// Waits for this life to end by its plan (measured from `start`).
    pub async fn finish(&mut self, start: Instant) -> End {
        let Some(mut rx) = self.end.take() else {
            return End::Failed("finished twice".into());
        };
        let got = tokio::select! {
            got = &mut rx => Some(got),
            _ = tokio::time::sleep_until(start + self.plan.until) => None,
        };
        let got = match got {
            Some(g) => g,
            None => {
                match self.plan.how {
                    How::Stop => self.stop.cancel(),
                    How::Last => {}
                    _ => self.die.notify_one(),
                }
                match tokio::time::timeout(Duration::from_secs(60), rx).await {
                    Ok(g) => g,
                    Err(_) => return End::Failed("did not end within 60 s".into()),
                }
            }
        };
        match got {
            Ok((end, net)) => {
                self.net_errors = net;
                end
            }
            Err(_) => End::Failed("its thread ended without a word (a panic?)".into()),
        }
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    pub fn net_errors(&self) -> &HashMap<ProviderName, u64> {
        &self.net_errors
    }
}

/// After a kill: once the fakes have finished the requests the dead life
/// left in flight, none of the answers they gave counts as received.
pub async fn after_kill(fakes: &Fakes) {
    let until = Instant::now() + Duration::from_secs(5);
    while fakes.all().iter().any(|f| f.busy() > 0) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for f in fakes.all() {
        f.forget_answers();
        f.set_tripwire(None);
    }
}
