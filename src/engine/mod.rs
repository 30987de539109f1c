//! The engine: for each provider, poll order changes and apply them to the
//! ledger, then push every listing whose wanted stock differs from what the
//! provider confirmed. Level-triggered: every step starts from the database,
//! so a restart or an outage simply continues.
//!
//! Push safety: a push to provider P happens only after a poll of P in the
//! same cycle completed and was applied, so the value pushed reflects every
//! order of P seen by a poll that started before the push. The window that
//! remains: an order P takes after its list was read and before the push
//! lands is overwritten on P's side until the next cycle (one
//! `poll_interval` at most) polls it and pushes the corrected value. The
//! ledger itself never loses it.

pub mod dryrun;
pub mod explain;
pub mod health;
pub mod pending;
pub mod plan;
pub mod scheduler;
pub mod shadow;
pub mod status;

use crate::config::SyncSettings;
use crate::domain::{
    Attempt, ListingRef, OurWrite, ProviderName, Revealed, StockPush, Trail, now_ms,
};
use crate::failpoint;
use crate::ledger::{ApplyReport, DiscoverReport, Ledger, Sighting};
use crate::providers::{PollRequest, Provider, ProviderError};
use futures_util::future::join_all;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct Engine {
    ledger: Ledger,
    providers: Vec<Arc<dyn Provider>>,
    sync: SyncSettings,
    health: Arc<health::Health>,
}

/// A loop waiting (between cycles, or out a long provider pause) still
/// beats this often, so a long wait is never taken for a hang.
const BEAT_WHILE_IDLE: Duration = Duration::from_secs(15);

/// How long a provider loop may go without a heartbeat before `/healthz`
/// fails and the systemd watchdog stops being fed: long enough for a cycle
/// of retried requests and limiter waits (each under 2 min), far shorter
/// than a day.
pub fn stall_after(sync: &SyncSettings) -> Duration {
    (sync.poll_interval * 4).max(Duration::from_secs(600))
}

/// What one push round of one provider did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    pub planned: usize,
    pub confirmed: usize,
    pub rejected: usize,
    pub failed: usize,
    pub not_sent: usize,
    pub stopped: Option<String>,
    /// Changes made by hand that push answers revealed (stokdurumu).
    pub movements: usize,
}

/// One provider's part of a `sync --once`.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderCycle {
    pub provider: ProviderName,
    pub poll_error: Option<String>,
    pub items_seen: usize,
    pub movements: usize,
    pub unlinked: usize,
    pub push: PushReport,
    /// Listings still differing after the cycle, to be pushed again.
    pub pending: usize,
    /// Listings the provider refused (4xx) and that still differ.
    pub refused: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    pub providers: Vec<ProviderCycle>,
}

impl SyncSummary {
    pub fn converged(&self) -> bool {
        self.providers.iter().all(|p| {
            p.poll_error.is_none() && p.pending == 0 && p.refused == 0 && p.push.stopped.is_none()
        })
    }
}

impl Engine {
    pub fn new(ledger: Ledger, providers: Vec<Arc<dyn Provider>>, sync: SyncSettings) -> Engine {
        Engine {
            ledger,
            providers,
            health: Arc::new(health::Health::new(stall_after(&sync))),
            sync,
        }
    }

    pub fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    /// The loops' heartbeats and counters.
    pub fn health(&self) -> &Arc<health::Health> {
        &self.health
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn settings(&self) -> &SyncSettings {
        &self.sync
    }

    /// Links `p`'s listings by SKU from its product list (when it has one).
    pub async fn discover(
        &self,
        p: &dyn Provider,
    ) -> Result<Option<DiscoverReport>, ProviderError> {
        let Some(remote) = p.list_listings().await? else {
            return Ok(None);
        };
        let report = self.ledger.discover(p.name(), &remote).await?;
        if self.shadow() {
            // Nothing of ours was pushed: what a listing shows is what was
            // read, and the seller's current tool keeps writing it.
            let shown: Vec<(ListingRef, i64)> = remote
                .iter()
                .filter_map(|r| r.quantity.map(|q| (r.listing.clone(), q)))
                .collect();
            self.ledger.observe_shown(p.name(), &shown).await?;
        }
        tracing::info!(
            provider = %p.name(),
            seen = report.seen,
            linked = report.newly_linked,
            problems = report.problems,
            "listings discovered"
        );
        Ok(Some(report))
    }

    /// Polls `p` once and applies what it returned (items and cursor in one
    /// transaction).
    pub async fn poll(&self, p: &dyn Provider) -> Result<ApplyReport, ProviderError> {
        self.poll_with(p, false).await
    }

    /// [`Engine::poll`], saying whether pushes are waiting for it (the
    /// last round gave way to this poll): then a provider that reads its
    /// catalog for changes made by hand (stokdurumu) reads nothing this
    /// time, since a listing known to be wrong is pushed before those that
    /// are not are read again. The poll's permits are asked at
    /// [`Priority::Poll`](crate::limit::Priority::Poll): it never waits for
    /// pushes.
    pub async fn poll_with(
        &self,
        p: &dyn Provider,
        pushes_waiting: bool,
    ) -> Result<ApplyReport, ProviderError> {
        p.limiter().polling();
        crate::limit::with_priority(
            crate::limit::Priority::Poll,
            self.poll_inner(p, pushes_waiting),
        )
        .await
    }

    async fn poll_inner(
        &self,
        p: &dyn Provider,
        pushes_waiting: bool,
    ) -> Result<ApplyReport, ProviderError> {
        let name = p.name();
        self.ledger.relink_pending().await?;
        if !p.has_orders() {
            return Ok(ApplyReport::default());
        }
        let state = self.ledger.provider_state(name).await?;
        let lookback_ms = i64::try_from(self.sync.order_lookback.as_millis()).unwrap_or(i64::MAX);
        let epoch = self
            .ledger
            .epoch(name, now_ms().saturating_sub(lookback_ms))
            .await?;
        let req = PollRequest {
            cursor: state.cursor,
            lookback: self.sync.order_lookback,
        };
        let mut changes = p
            .poll_orders_while(&req, &self.ledger, pushes_waiting)
            .await?;
        if self.shadow() {
            // In shadow mode the seller's current tool writes the listings:
            // a count that changed is its write as much as a hand edit, so
            // it is recorded as what the listing shows, never journaled.
            let shown: Vec<(ListingRef, i64)> = changes
                .external
                .drain(..)
                .map(|c| (c.listing, c.observed))
                .collect();
            self.ledger.observe_shown(name, &shown).await?;
        }
        failpoint::point("poll.answered").await;
        for a in &changes.anomalies {
            tracing::warn!(provider = %name, item = %a.key, problem = %a.message, "order line kept as an anomaly");
        }
        if !changes.external.is_empty() {
            self.trail_counts(p, &mut changes.external).await?;
        }
        let report = self.ledger.apply_orders(name, &changes, epoch).await?;
        if report.movements > 0 || report.new_items > 0 {
            tracing::info!(
                provider = %name,
                items = report.items_seen,
                new = report.new_items,
                movements = report.movements,
                unlinked = report.unlinked,
                "orders applied"
            );
        }
        Ok(report)
    }

    /// Counts read from `p` for listings with unsettled pushes get the
    /// trail of those pushes, so a lost write of ours is not taken for a
    /// hand edit. A count whose trail cannot be read now is left for the
    /// next read.
    async fn trail_counts(
        &self,
        p: &dyn Provider,
        counts: &mut Vec<crate::domain::ExternalCount>,
    ) -> Result<(), ProviderError> {
        let unsettled = self.ledger.unsettled(p.name()).await?;
        if unsettled.is_empty() {
            return Ok(());
        }
        let mut kept = Vec::with_capacity(counts.len());
        for mut c in counts.drain(..) {
            if let Some(attempts) = unsettled.get(&c.listing) {
                let tags: Vec<String> = attempts.iter().map(|a| a.tag.clone()).collect();
                let since = attempts.first().map_or_else(now_ms, |a| a.sent_at_ms);
                match self.trail(p, &c.listing, &tags, since).await {
                    Ok(t) => c.trail = t,
                    Err(ProviderError::Cancelled) => return Err(ProviderError::Cancelled),
                    Err(e) => {
                        tracing::info!(provider = %p.name(), listing = %c.listing, error = %e, "cannot read the history that settles lost answers; the count is read again later");
                        continue;
                    }
                }
            }
            kept.push(c);
        }
        *counts = kept;
        Ok(())
    }

    async fn trail(
        &self,
        p: &dyn Provider,
        listing: &ListingRef,
        tags: &[String],
        since_ms: i64,
    ) -> Result<Option<Trail>, ProviderError> {
        let t = p.trail(listing, tags, since_ms).await?;
        if let Some(t) = &t
            && !t.complete
        {
            tracing::warn!(provider = %p.name(), %listing, "the provider's history does not reach back to our unsettled writes; a hand edit before them may be miscounted");
        }
        Ok(t)
    }

    /// What the answer to `push` revealed, as the ledger compares it: exact
    /// from the answer alone when nothing of ours is unsettled; otherwise
    /// along our writes in the provider's history. `None` when that history
    /// cannot be read now (a stop, a fault): then nothing is guessed, the
    /// listing stays unsettled and a later answer or read settles it. Only a
    /// provider that keeps no history at all is compared by value.
    async fn sighting(
        &self,
        p: &dyn Provider,
        push: &StockPush,
        rev: &Revealed,
        earlier: &[Attempt],
    ) -> Option<Sighting> {
        let this = OurWrite {
            tag: push.tag.clone(),
            old: rev.old,
            new: rev.new,
        };
        let stamp = format!("push-{}", push.tag);
        if !rev.resent && earlier.is_empty() {
            return Some(Sighting {
                writes: vec![this],
                stamp,
                ..Sighting::default()
            });
        }
        let mut tags: Vec<String> = earlier.iter().map(|a| a.tag.clone()).collect();
        tags.push(push.tag.clone());
        // The oldest write asked about; for this push alone, its retries
        // lie within a few minutes.
        let since = earlier
            .first()
            .map_or_else(|| now_ms() - 5 * 60_000, |a| a.sent_at_ms);
        match self.trail(p, &push.listing, &tags, since).await {
            Ok(Some(t)) if t.writes.last().is_some_and(|w| w.tag == push.tag) => Some(Sighting {
                writes: t.writes,
                stamp,
                ..Sighting::default()
            }),
            Ok(Some(_)) => {
                tracing::info!(provider = %p.name(), listing = %push.listing, "the provider's history does not show the write it just confirmed yet; settled later");
                None
            }
            Ok(None) => {
                let mut uncertain: Vec<i64> = earlier.iter().map(|a| a.qty).collect();
                uncertain.push(push.quantity);
                Some(Sighting {
                    writes: vec![this],
                    uncertain,
                    stamp,
                    now: None,
                })
            }
            Err(e) => {
                tracing::info!(provider = %p.name(), listing = %push.listing, error = %e, "cannot read the history that settles lost answers now; settled later");
                None
            }
        }
    }

    /// Pushes every listing of `p` that differs, batch by batch, in lane
    /// order (see [`scheduler`]), until none is left or the round stops.
    pub async fn push(
        &self,
        p: &Arc<dyn Provider>,
        cancel: &CancellationToken,
    ) -> Result<PushReport, ProviderError> {
        if self.shadow() {
            shadow::record(&self.sync.rules, &self.ledger, p.name()).await?;
            return Ok(PushReport::default());
        }
        let mut s = scheduler::Scheduler::new();
        let (report, _) = s.round(self, p, cancel, None).await?;
        Ok(report)
    }

    /// Listings of `p` whose wanted value differs from what it confirmed:
    /// (to push, refused by the provider).
    pub async fn pending(&self, p: ProviderName) -> Result<(usize, usize), ProviderError> {
        let states = self.ledger.listing_states(p).await?;
        let plan = plan::plan(&states, &self.sync.rules);
        let refused = plan
            .held
            .iter()
            .filter(|(_, h)| matches!(h, plan::Held::Rejected { .. }))
            .count();
        Ok((plan.pushes.len(), refused))
    }

    /// One full cycle: poll every provider, then push every provider whose
    /// poll succeeded (waiting on limiters as needed).
    pub async fn sync_once(
        &self,
        cancel: &CancellationToken,
    ) -> Result<SyncSummary, ProviderError> {
        // Link first, so this cycle already pushes to newly found listings.
        let found = join_all(self.providers.iter().map(|p| self.discover(p.as_ref()))).await;
        let polls = join_all(
            self.providers
                .iter()
                .zip(found)
                .map(|(p, found)| async move {
                    match found {
                        Err(e) => Err(e),
                        Ok(_) => self.poll(p.as_ref()).await,
                    }
                }),
        )
        .await;
        let mut cycles = Vec::new();
        for (p, res) in self.providers.iter().zip(&polls) {
            let mut c = ProviderCycle {
                provider: p.name(),
                poll_error: None,
                items_seen: 0,
                movements: 0,
                unlinked: 0,
                push: PushReport::default(),
                pending: 0,
                refused: 0,
            };
            match res {
                Ok(r) => {
                    c.items_seen = r.items_seen;
                    c.movements = r.movements;
                    c.unlinked = r.unlinked;
                }
                Err(e) => {
                    self.ledger
                        .record_provider_error(p.name(), &e.to_string())
                        .await?;
                    c.poll_error = Some(e.to_string());
                }
            }
            cycles.push(c);
        }
        // A provider whose poll failed is not pushed to: its unseen sales
        // would be overwritten.
        let pushes = join_all(
            self.providers
                .iter()
                .zip(&polls)
                .map(|(p, res)| async move {
                    match res {
                        Ok(_) => Some(self.push(p, cancel).await),
                        Err(_) => None,
                    }
                }),
        )
        .await;
        for (c, res) in cycles.iter_mut().zip(pushes) {
            match res {
                Some(Ok(r)) => c.push = r,
                Some(Err(e)) => c.push.stopped = Some(e.to_string()),
                None => {}
            }
            (c.pending, c.refused) = self.pending(c.provider).await?;
        }
        Ok(SyncSummary { providers: cycles })
    }

    /// The daemon: one loop per provider until `cancel`. Each loop polls,
    /// applies, pushes, then sleeps `poll_interval` or until another
    /// provider's orders moved stock. On cancel the unit in flight (a poll
    /// and its apply, or one push batch) finishes; waits are cut short.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let wakes: Vec<Arc<Notify>> = self
            .providers
            .iter()
            .map(|_| Arc::new(Notify::new()))
            .collect();
        let mut tasks = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            let (engine, p, cancel, wakes) =
                (self.clone(), p.clone(), cancel.clone(), wakes.clone());
            tasks.push(tokio::spawn(async move {
                engine.provider_loop(p, i, &wakes, cancel).await;
            }));
        }
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a provider loop ended abnormally");
            }
        }
    }

    async fn provider_loop(
        &self,
        p: Arc<dyn Provider>,
        me: usize,
        wakes: &[Arc<Notify>],
        cancel: CancellationToken,
    ) {
        let name = p.name();
        tracing::info!(provider = %name, "provider loop started");
        self.health.beat(name);
        let mut discovered: Option<tokio::time::Instant> = None;
        let mut sched = scheduler::Scheduler::new();
        // When the last poll was tried, and whether it was applied: a push
        // goes only to a provider whose last poll was.
        let mut polled_at: Option<tokio::time::Instant> = None;
        let mut poll_ok = false;
        // Whether the last round gave way to a poll with pushes left.
        let mut pushes_waiting = false;
        // The window keeps room for the polls due in it.
        p.limiter().plan_polls(self.sync.poll_interval);
        let wake_others = || {
            for (i, w) in wakes.iter().enumerate() {
                if i != me {
                    w.notify_one();
                }
            }
        };
        'cycles: while !cancel.is_cancelled() {
            let mut pause = Duration::ZERO;
            // What comes before this cycle's round (a discovery, a poll):
            // the round gets at least as long (see `scheduler::PollDue`).
            let cycle_start = tokio::time::Instant::now();
            if discovered.is_none_or(|t| t.elapsed() >= self.sync.discovery_interval) {
                match self.discover(p.as_ref()).await {
                    Ok(_) => discovered = Some(tokio::time::Instant::now()),
                    Err(ProviderError::Cancelled) => break,
                    // Not fatal: polling and pushing go on with the links known.
                    Err(e) => self.note_error(name, &e).await,
                }
            }
            if polled_at.is_none_or(|t| t.elapsed() >= self.sync.poll_interval) {
                polled_at = Some(tokio::time::Instant::now());
                let polled = self.poll_with(p.as_ref(), pushes_waiting).await;
                match polled {
                    Ok(report) => {
                        poll_ok = true;
                        self.health
                            .polled(name, report.items_seen, report.movements);
                        if report.movements > 0 {
                            wake_others();
                        }
                    }
                    Err(ProviderError::Cancelled) => break,
                    Err(e) => {
                        poll_ok = false;
                        if let ProviderError::RateLimited { wait } = &e {
                            pause = pause.max(*wait);
                        }
                        self.note_error(name, &e).await;
                    }
                }
            }
            let next_poll = polled_at.map(|t| t + self.sync.poll_interval);
            if poll_ok && self.shadow() {
                // Never a push: what it would push is recorded instead.
                if let Err(e) = shadow::record(&self.sync.rules, &self.ledger, name).await {
                    tracing::warn!(provider = %name, error = %e, "cannot record the shadow verdicts");
                }
            } else if poll_ok && !cancel.is_cancelled() {
                let now = tokio::time::Instant::now();
                let due = next_poll.map(|at| scheduler::PollDue {
                    at,
                    not_before: now + (now - cycle_start),
                });
                let round = sched.round(self, &p, &cancel, due).await;
                // A read waits for pushes known to be needed, not for
                // those that failed (retried next round).
                pushes_waiting =
                    matches!(round, Ok((_, scheduler::RoundEnd::PollDue))) && sched.queued() > 0;
                match round {
                    Ok((r, end)) => {
                        if r.movements > 0 {
                            wake_others();
                        }
                        self.health.pending(name, sched.backlog());
                        match end {
                            // Poll now, then go on with the round.
                            scheduler::RoundEnd::PollDue => continue 'cycles,
                            scheduler::RoundEnd::Cancelled => break 'cycles,
                            scheduler::RoundEnd::Stopped(why) => {
                                self.health.failed(name, &why);
                                pause = pause.max(Duration::from_secs(5));
                            }
                            scheduler::RoundEnd::Drained => {}
                        }
                    }
                    Err(ProviderError::Cancelled) => break,
                    Err(e) => self.note_error(name, &e).await,
                }
            }
            // Sleep until the next poll (or the pause a failure asked for),
            // or until another provider's orders moved stock: then the
            // changed listings are pushed at once, the poll stays on time.
            let now = tokio::time::Instant::now();
            let until = next_poll.unwrap_or(now).max(now + pause);
            loop {
                self.health.beat(name);
                let step = until.min(tokio::time::Instant::now() + BEAT_WHILE_IDLE);
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'cycles,
                    _ = tokio::time::sleep_until(step) => {
                        if step >= until {
                            break;
                        }
                    }
                    _ = wakes[me].notified() => break,
                }
            }
        }
        self.health.stopped(name);
        tracing::info!(provider = %name, "provider loop stopped");
    }

    /// Shadow mode: everything but the pushes.
    pub fn shadow(&self) -> bool {
        self.sync.mode == crate::config::Mode::Shadow
    }

    async fn note_error(&self, name: ProviderName, e: &ProviderError) {
        self.health.failed(name, &e.to_string());
        if matches!(e, ProviderError::Unauthenticated(_)) {
            self.health.credentials_refused(name, &e.to_string());
        }
        tracing::warn!(provider = %name, error = %e, "cycle failed; will retry");
        if let Err(le) = self
            .ledger
            .record_provider_error(name, &e.to_string())
            .await
        {
            tracing::error!(provider = %name, error = %le, "could not record the error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ItemEffect, ListingRef, OrderChanges, OrderItem, PushOutcome, StockPush};
    use crate::ledger::test_support::temp_ledger;
    use crate::limit::Limiter;
    use crate::providers::{OrderMemory, PushResults};
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A provider that answers from memory.
    struct Stub {
        name: ProviderName,
        batch: usize,
        down: AtomicBool,
        orders: Vec<OrderItem>,
        batches: Mutex<Vec<usize>>,
        limiter: Arc<Limiter>,
    }

    #[async_trait]
    impl Provider for Stub {
        fn name(&self) -> ProviderName {
            self.name
        }
        fn max_batch(&self) -> usize {
            self.batch
        }
        async fn poll_orders(
            &self,
            _: &PollRequest,
            _: &dyn OrderMemory,
        ) -> Result<OrderChanges, ProviderError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(ProviderError::Transient("HTTP 503".into()));
            }
            Ok(OrderChanges {
                items: self.orders.clone(),
                anomalies: vec![],
                cursor: Some("c".into()),
                ..OrderChanges::default()
            })
        }
        async fn push_stock(&self, batch: &[StockPush]) -> PushResults {
            self.batches.lock().unwrap().push(batch.len());
            PushResults {
                outcomes: batch
                    .iter()
                    .map(|p| PushOutcome::Confirmed(p.quantity))
                    .collect(),
                stopped: None,
                revealed: vec![],
                in_doubt: 0,
            }
        }
        async fn check_credentials(&self) -> Result<(), ProviderError> {
            Ok(())
        }
        fn limiter(&self) -> &Arc<Limiter> {
            &self.limiter
        }
    }

    fn listing(p: ProviderName, id: &str) -> ListingRef {
        ListingRef {
            provider: p,
            listing_id: id.into(),
            variant_id: String::new(),
        }
    }

    #[tokio::test]
    async fn an_outage_of_one_provider_does_not_stop_the_others() {
        let (_dir, ledger) = temp_ledger().await;
        ledger
            .import_stock(&[("A".into(), 5), ("B".into(), 3)], "b", "seed")
            .await
            .unwrap();
        let (up, down) = (ProviderName::Eticaret, ProviderName::Stokdurumu);
        let mut maps: Vec<(String, ListingRef)> = (1..=5)
            .map(|i| ("A".to_string(), listing(up, &i.to_string())))
            .collect();
        maps.push(("B".into(), listing(down, "1")));
        ledger.import_mappings(&maps).await.unwrap();

        let stub = |name, batch, orders| {
            Arc::new(Stub {
                name,
                batch,
                down: AtomicBool::new(false),
                orders,
                batches: Mutex::new(vec![]),
                limiter: Arc::new(Limiter::new(name, None, None, ledger.clone())),
            })
        };
        let order = OrderItem {
            key: "o1".into(),
            order_ref: "O-1".into(),
            listing_id: "1".into(),
            variant_id: String::new(),
            sku_hint: None,
            quantity: 1,
            status: "1".into(),
            effect: ItemEffect::Hold,
            updated_at: "t".into(),
            created_at: None,
        };
        let a = stub(up, 2, vec![order]);
        let b = stub(down, 10, vec![]);
        b.down.store(true, Ordering::SeqCst);
        let engine = Engine::new(
            ledger.clone(),
            vec![a.clone(), b.clone()],
            SyncSettings::default(),
        );
        let cancel = CancellationToken::new();

        let s = engine.sync_once(&cancel).await.unwrap();
        assert!(!s.converged());
        assert_eq!(ledger.stock_of("A").await.unwrap(), Some(4));
        assert_eq!(
            *a.batches.lock().unwrap(),
            vec![2, 2, 1],
            "batches capped at max_batch"
        );
        assert_eq!(s.providers[0].pending, 0);
        assert!(
            b.batches.lock().unwrap().is_empty(),
            "no push to a provider whose poll failed"
        );
        assert_eq!(s.providers[1].pending, 1);
        assert!(
            s.providers[1]
                .poll_error
                .as_deref()
                .unwrap()
                .contains("503")
        );
        assert!(
            ledger
                .provider_state(down)
                .await
                .unwrap()
                .last_error
                .is_some()
        );

        // It comes back: the next cycle simply continues from the database.
        b.down.store(false, Ordering::SeqCst);
        let s = engine.sync_once(&cancel).await.unwrap();
        assert!(s.converged(), "{s:?}");
        assert_eq!(*b.batches.lock().unwrap(), vec![1]);
        assert_eq!(
            *a.batches.lock().unwrap(),
            vec![2, 2, 1],
            "nothing re-pushed to the healthy provider"
        );
    }
}
