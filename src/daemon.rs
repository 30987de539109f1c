//! The long-running service: the provider loops, the HTTP endpoint, and
//! systemd's notify protocol (READY once everything runs, WATCHDOG while
//! every loop beats, STOPPING on the way out). Shared by `run` and `demo`.

use crate::config::Config;
use crate::engine::Engine;
use crate::ledger::Ledger;
use crate::notify::Notifier;
use crate::server;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// After a stop signal, how long the work in flight may take before the
/// process exits anyway (below systemd's default 90 s stop timeout).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(45);

/// Everything `run` needs, ready to go.
pub struct Daemon {
    pub config: Arc<Config>,
    pub ledger: Ledger,
    pub engine: Arc<Engine>,
    /// Bound already, so a taken port fails before READY.
    pub listener: Option<tokio::net::TcpListener>,
}

impl Daemon {
    /// Runs until `cancel`; returns an error only if the loops end on
    /// their own (a bug worth a restart).
    pub async fn run(
        self,
        cancel: CancellationToken,
        notifier: Arc<Notifier>,
    ) -> anyhow::Result<()> {
        let Daemon {
            config,
            ledger,
            engine,
            listener,
        } = self;
        let mut run = tokio::spawn(engine.clone().run(cancel.clone()));
        let http = listener.map(|l| {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "HTTP endpoint listening (/, /healthz, /readyz, /metrics, /v1/stock)");
            }
            let state = server::AppState {
                config: config.clone(),
                ledger: ledger.clone(),
                engine: engine.clone(),
            };
            let cancel = cancel.clone();
            tokio::spawn(async move {
                if let Err(e) = server::serve(l, state, cancel).await {
                    tracing::error!(error = %e, "the HTTP endpoint stopped");
                }
            })
        });
        notifier.send(&format!(
            "READY=1\nSTATUS=syncing {} provider(s)",
            engine.providers().len()
        ));
        let watchdog = notifier.watchdog().map(|every| {
            let (engine, cancel, notifier) = (engine.clone(), cancel.clone(), notifier.clone());
            tokio::spawn(async move { feed_watchdog(&engine, &notifier, every, cancel).await })
        });
        let outcome = tokio::select! {
            _ = cancel.cancelled() => Ok(()),
            ended = &mut run => Err(anyhow::anyhow!(
                "the provider loops ended unexpectedly: {ended:?}"
            )),
        };
        notifier.send("STOPPING=1");
        if outcome.is_ok() {
            match tokio::time::timeout(SHUTDOWN_GRACE, run).await {
                Ok(_) => tracing::info!("stopped cleanly"),
                Err(_) => tracing::warn!(
                    "work in flight did not finish in time; exiting (the next start resumes from the database)"
                ),
            }
        }
        cancel.cancel();
        if let Some(w) = watchdog {
            w.abort();
        }
        if let Some(h) = http {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        outcome
    }
}

/// `WATCHDOG=1` every `every` while every provider loop beats; when one
/// stalls the pings stop and systemd restarts the service.
async fn feed_watchdog(
    engine: &Engine,
    notifier: &Notifier,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut warned = false;
    loop {
        let live = engine.health().liveness();
        if live.alive {
            notifier.send("WATCHDOG=1");
            warned = false;
        } else if !warned {
            tracing::error!(stalled = ?live.stalled, "a provider loop stopped making progress; no longer feeding the systemd watchdog");
            warned = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
