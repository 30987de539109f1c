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
    /// On a shared (PostgreSQL) ledger: wait as a standby until this
    /// process holds the active lease, and stop when it loses it.
    pub lease: Option<LeaseSettings>,
}

/// This daemon as a lease holder.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub holder: String,
    pub ttl: Duration,
}

/// How the daemon's run ended when it was not a stop.
#[derive(Debug, thiserror::Error)]
#[error(
    "this daemon lost the active lease (epoch {epoch}) and stopped syncing; it exits so that a restart waits as a standby"
)]
pub struct LeaseLost {
    pub epoch: i64,
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
            lease,
        } = self;
        let http = listener.map(|l| {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "HTTP endpoint listening (/, /sku/{{sku}}, /healthz, /readyz, /metrics, /v1/stock)");
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
        // A standby first waits for the lease (ready, and feeding the
        // watchdog: waiting is its job); a stop meanwhile is a clean stop.
        let lost = CancellationToken::new();
        let mut held = None;
        if let Some(l) = &lease {
            notifier.send("READY=1\nSTATUS=standby: waiting for the active lease");
            let fed = notifier.watchdog().is_some();
            let got = crate::lease::wait_for_lease(&ledger, &l.holder, l.ttl, &cancel, |row| {
                if fed {
                    notifier.send("WATCHDOG=1");
                }
                notifier.send(&format!("STATUS=standby: {} is active", row.holder));
            })
            .await;
            let Some(epoch) = got else {
                notifier.send("STOPPING=1");
                tracing::info!("stopped cleanly (standby)");
                if let Some(h) = http {
                    let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
                }
                return Ok(());
            };
            held = Some(epoch);
            tokio::spawn(crate::lease::keep_lease(
                ledger.clone(),
                l.holder.clone(),
                epoch,
                l.ttl,
                cancel.clone(),
                lost.clone(),
            ));
        }
        // The loops stop on a stop, and at once when the lease is lost.
        let loops = cancel.child_token();
        {
            let (lost, loops) = (lost.clone(), loops.clone());
            tokio::spawn(async move {
                tokio::select! {
                    biased;
                    _ = lost.cancelled() => loops.cancel(),
                    _ = loops.cancelled() => {}
                }
            });
        }
        let mut run = tokio::spawn(engine.clone().run(loops.clone()));
        // Alerts on their own tasks: a slow receiver never holds a loop.
        let alerts = crate::alerts::spawn(
            config.clone(),
            ledger.clone(),
            engine.clone(),
            crate::alerts::Pacing::default(),
            loops.clone(),
        );
        notifier.send(&format!(
            "READY=1\nSTATUS=syncing {} provider(s)",
            engine.providers().len()
        ));
        let watchdog = notifier.watchdog().map(|every| {
            let (engine, cancel, notifier) = (engine.clone(), cancel.clone(), notifier.clone());
            tokio::spawn(async move { feed_watchdog(&engine, &notifier, every, cancel).await })
        });
        // The stop is checked first, and again when the loops end: loops
        // that end because a stop was asked are a clean stop, whichever of
        // the two this task happens to see first.
        let ended_early = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            _ = lost.cancelled() => None,
            ended = &mut run => Some(ended),
        };
        notifier.send("STOPPING=1");
        let outcome = match ended_early {
            _ if lost.is_cancelled() && !cancel.is_cancelled() => {
                // Nothing more is written or sent (the fence refuses it);
                // the loops are told to stop and given a moment.
                loops.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), run).await;
                Err(anyhow::Error::new(LeaseLost {
                    epoch: held.unwrap_or(0),
                }))
            }
            Some(_) if cancel.is_cancelled() => {
                tracing::info!("stopped cleanly");
                Ok(())
            }
            Some(ended) => Err(anyhow::anyhow!(
                "the provider loops ended unexpectedly: {ended:?}"
            )),
            None => {
                match tokio::time::timeout(SHUTDOWN_GRACE, run).await {
                    Ok(_) => tracing::info!("stopped cleanly"),
                    Err(_) => tracing::warn!(
                        "work in flight did not finish in time; exiting (the next start resumes from the database)"
                    ),
                }
                Ok(())
            }
        };
        cancel.cancel();
        if let Some(w) = watchdog {
            w.abort();
        }
        // Deliveries still owed stay in the ledger's outbox for the next start.
        let mut alerts = alerts;
        if tokio::time::timeout(Duration::from_secs(2), &mut alerts)
            .await
            .is_err()
        {
            alerts.abort();
        }
        if let (Some(l), Some(epoch)) = (&lease, held)
            && !lost.is_cancelled()
        {
            // A clean stop hands over at once instead of after the lease.
            match ledger.release_lease(&l.holder, epoch).await {
                Ok(()) => tracing::info!(epoch, "gave up the active lease"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot give up the lease; a standby takes over when it expires")
                }
            }
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
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderChanges, ProviderName, StockPush};
    use crate::ledger::test_support::temp_ledger;
    use crate::limit::Limiter;
    use crate::providers::{OrderMemory, PollRequest, Provider, ProviderError, PushResults};
    use async_trait::async_trait;
    use std::path::Path;

    /// A provider with nothing to do: its loop ends as soon as a stop is asked.
    struct Idle(Arc<Limiter>);

    #[async_trait]
    impl Provider for Idle {
        fn name(&self) -> ProviderName {
            self.0.provider()
        }
        fn max_batch(&self) -> usize {
            1
        }
        async fn poll_orders(
            &self,
            _: &PollRequest,
            _: &dyn OrderMemory,
        ) -> Result<OrderChanges, ProviderError> {
            Ok(OrderChanges::default())
        }
        async fn push_stock(&self, _: &[StockPush]) -> PushResults {
            PushResults::default()
        }
        async fn check_credentials(&self) -> Result<(), ProviderError> {
            Ok(())
        }
        fn limiter(&self) -> &Arc<Limiter> {
            &self.0
        }
    }

    fn config() -> Arc<Config> {
        Arc::new(
            Config::parse(
                "[ledger]\ndatabase = \"x.db\"\n[http]\nlisten = \"off\"\n",
                Path::new("t.toml"),
                &|_| None,
            )
            .unwrap(),
        )
    }

    /// A stop is not a failure: when the loops end because of it, `run`
    /// returns `Ok` every time, even when the loops' end and the stop are
    /// seen in the same poll. On a current-thread runtime the stop's task
    /// wakes the loops, they end and the engine's task completes before
    /// `run` is polled again, so both are ready together on every
    /// iteration (the race systemd saw as a failed stop).
    #[tokio::test]
    async fn a_stop_always_ends_cleanly_even_when_the_loops_end_with_it() {
        let (_dir, ledger) = temp_ledger().await;
        let config = config();
        for i in 0..40 {
            let providers: Vec<Arc<dyn Provider>> = ProviderName::ALL
                .iter()
                .map(|p| {
                    Arc::new(Idle(Arc::new(Limiter::new(*p, None, None, ledger.clone()))))
                        as Arc<dyn Provider>
                })
                .collect();
            let engine = Arc::new(Engine::new(ledger.clone(), providers, config.sync.clone()));
            let d = Daemon {
                config: config.clone(),
                ledger: ledger.clone(),
                engine,
                listener: None,
                lease: None,
            };
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                // Long enough for the loops to be idle, waiting for their
                // next cycle (30 s away).
                tokio::time::sleep(Duration::from_millis(40)).await;
                stop.cancel();
            });
            let outcome = d.run(cancel, Arc::new(Notifier::disabled())).await;
            assert!(outcome.is_ok(), "iteration {i}: {outcome:?}");
        }
    }

    /// Loops that end with no stop asked for are a bug worth a restart.
    #[tokio::test]
    async fn loops_that_end_on_their_own_are_a_failure() {
        let (_dir, ledger) = temp_ledger().await;
        let config = config();
        let engine = Arc::new(Engine::new(ledger.clone(), vec![], config.sync.clone()));
        let d = Daemon {
            config,
            ledger,
            engine,
            listener: None,
            lease: None,
        };
        let outcome = d
            .run(CancellationToken::new(), Arc::new(Notifier::disabled()))
            .await;
        assert!(outcome.is_err());
    }
}
