//! The push scheduler: what each provider is sent, in what order, and when.
//!
//! - **Fresh values.** A provider's queue is re-planned from the ledger
//!   whenever the ledger's [`PlanVersion`] moved (a movement journaled, a
//!   link made or moved), checked right before each batch is formed, and a
//!   batch is formed only once the limiter has a permit for it: no batch
//!   carries a value older than the ledger at the moment it was formed, and
//!   a queued push whose wanted value went back to the confirmed one is
//!   dropped.
//! - **Lanes.** Zeros first, then decreases, then increases (see
//!   [`Lane`]); inside a lane the longest-pending listing first. Zero and
//!   decrease batches ask the limiter for urgent permits (ahead of reads),
//!   increases for bulk ones, which leave a reserve of every window and
//!   daily quota to polls.
//! - **Polls are never starved, nor are pushes.** A round gives way when
//!   the provider's next poll is due, whatever lane it is in: at once
//!   while it waits for a permit (the poll's permits are kept apart, see
//!   [`crate::limit`]), otherwise once it has sent something and has run
//!   at least as long as the work before it (the last poll, a discovery)
//!   took. So a provider is polled every `poll_interval` however long its
//!   backlog, and a poll longer than the interval (stokdurumu's 100 pages)
//!   still leaves pushing at least half the time (see [`PollDue`]).
//! - **Concurrency.** Up to what the limiter can grant in about a second
//!   (at most [`MAX_IN_FLIGHT`]) batches are in flight at once; each of
//!   their attempts still takes a permit first.
//!
//! [`PlanVersion`]: crate::ledger::PlanVersion

use super::plan::{self, Lane};
use super::{Engine, PushReport};
use crate::domain::{ListingRef, PushOutcome, StockPush, now_ms};
use crate::failpoint;
use crate::ledger::{PlanVersion, PushRecord};
use crate::limit::{Priority, with_priority};
use crate::providers::{Provider, ProviderError, PushResults};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The most batches of one provider in flight at once.
pub const MAX_IN_FLIGHT: usize = 8;

/// How many queued pushes a batch is formed from: an adapter that groups
/// listings (the v2 site: all variants of a product code in one entry)
/// needs more candidates than its cap to fill a batch.
const CANDIDATES_PER_BATCH: usize = 4;
/// How often a round waiting for a permit looks at the ledger for a more
/// urgent push (one cheap query).
const RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// How waiting for a permit ended.
enum Turn {
    Ready,
    /// Look at the queue again (a batch finished, a more urgent lane
    /// appeared).
    Again,
    /// The poll came due while the round waited for a permit.
    PollDue,
    Cancelled,
    Stop(ProviderError),
}

/// Where a queued push stands in line.
type Key = (Lane, i64, u64);

/// One provider's pending pushes, in the order they go out.
#[derive(Debug, Default)]
pub struct Queue {
    line: BTreeMap<Key, ListingRef>,
    /// The value each queued listing is to be set to.
    wanted: HashMap<ListingRef, i64>,
    /// When each listing started to differ (kept across re-plans).
    since: HashMap<ListingRef, i64>,
    /// Listings whose wanted value went down while they waited in the
    /// increase lane (kept while they differ): see [`Queue::replan`].
    sank: HashSet<ListingRef>,
    /// The places of the pushes last taken.
    taken: HashMap<ListingRef, Key>,
}

impl Queue {
    /// Replaces the queue with `plan`, leaving out `skip` (in flight, or
    /// failed this round). A listing that was pending keeps its place in
    /// time; one no longer in the plan is dropped.
    ///
    /// A listing queued to go up whose shown value is not known and whose
    /// wanted value then went down (a sale while it waited: it may show more
    /// than the new value) moves to the decrease lane and stays there while
    /// it differs: the sale must not wait for the backlog.
    pub fn replan(&mut self, plan: &plan::Plan, skip: &HashSet<ListingRef>, now_ms: i64) {
        let mut since = HashMap::with_capacity(plan.pushes.len());
        let mut sank = HashSet::new();
        let before = std::mem::take(&mut self.wanted);
        self.line.clear();
        for (seq, (push, lane)) in plan.pushes.iter().zip(&plan.lanes).enumerate() {
            let first = self.since.get(&push.listing).copied().unwrap_or(now_ms);
            since.insert(push.listing.clone(), first);
            let mut lane = *lane;
            let blind = plan.blind.get(seq).copied().unwrap_or(true);
            if lane == Lane::Increase
                && blind
                && (self.sank.contains(&push.listing)
                    || before
                        .get(&push.listing)
                        .is_some_and(|w| push.quantity < *w))
            {
                sank.insert(push.listing.clone());
                lane = Lane::Decrease;
            }
            if skip.contains(&push.listing) {
                continue;
            }
            let key = (lane, first, seq as u64);
            self.line.insert(key, push.listing.clone());
            self.wanted.insert(push.listing.clone(), push.quantity);
        }
        self.since = since;
        self.sank = sank;
    }

    pub fn len(&self) -> usize {
        self.line.len()
    }

    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// The lane of the next push out.
    pub fn head(&self) -> Option<Lane> {
        self.line.keys().next().map(|k| k.0)
    }

    /// Takes up to `n` pushes from the head of the line; what is not sent
    /// of them goes back with [`Queue::put_back`] before the next take.
    pub fn take(&mut self, n: usize) -> Vec<StockPush> {
        self.taken.clear();
        let mut out = Vec::with_capacity(n.min(self.line.len()));
        while out.len() < n {
            let Some((key, listing)) = self.line.pop_first() else {
                break;
            };
            if let Some(want) = self.wanted.remove(&listing) {
                self.taken.insert(listing.clone(), key);
                out.push(StockPush::new(listing, want));
            }
        }
        out
    }

    /// The most urgent lane among pushes just taken.
    pub fn lane_of(&self, pushes: &[StockPush]) -> Lane {
        pushes
            .iter()
            .filter_map(|p| self.taken.get(&p.listing))
            .map(|k| k.0)
            .min()
            .unwrap_or(Lane::Increase)
    }

    /// Puts back pushes just taken but not sent, in their old places.
    pub fn put_back(&mut self, pushes: Vec<StockPush>) {
        for p in pushes {
            let Some(key) = self.taken.remove(&p.listing) else {
                continue;
            };
            self.line.insert(key, p.listing.clone());
            self.wanted.insert(p.listing, p.quantity);
        }
    }

    /// When `listing` started to differ, if it does.
    pub fn pending_since(&self, listing: &ListingRef) -> Option<i64> {
        self.since.get(listing).copied()
    }

    /// Everything still differing, queued or not (in flight, failed).
    pub fn differing(&self) -> usize {
        self.since.len()
    }
}

/// The priority a batch's permits are asked at.
pub fn priority(lane: Lane) -> Priority {
    match lane {
        Lane::Zero | Lane::Decrease => Priority::Urgent,
        Lane::Increase => Priority::Bulk,
    }
}

/// When a round gives way to the provider's next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollDue {
    /// When the poll is due. A round waiting for a permit then gives way
    /// at once: the permit it waits for is not one a poll takes from it.
    pub at: Instant,
    /// Before this, a round that can send keeps sending (once it has sent
    /// something, it gives way from `at` on). The loop sets it to the
    /// round's start plus what the poll (and discovery) before it took: a
    /// poll longer than the interval would otherwise be due again the
    /// moment a round starts, and the round would send one batch a poll.
    pub not_before: Instant,
}

/// Why a round handed control back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoundEnd {
    /// Nothing left to push.
    Drained,
    /// The provider's poll is due; the rest waits for it.
    PollDue,
    /// A stop was asked.
    Cancelled,
    /// The provider stopped the round (an outage, a quota).
    Stopped(String),
}

/// One provider's scheduler, kept across the provider loop's cycles so a
/// listing's time in the queue is remembered.
pub struct Scheduler {
    queue: Queue,
    version: Option<PlanVersion>,
    /// Listings whose push failed this round: retried next round.
    failed: HashSet<ListingRef>,
}

type Sent = (Vec<StockPush>, PushResults);

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler {
            queue: Queue::default(),
            version: None,
            failed: HashSet::new(),
        }
    }

    /// Listings still differing after the last round or batch.
    pub fn backlog(&self) -> usize {
        self.queue.differing()
    }

    /// Listings queued and not yet sent: what a round that gave way to a
    /// poll left (not counting pushes that failed this round, retried by
    /// the next).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    async fn replan(
        &mut self,
        engine: &Engine,
        p: &dyn Provider,
        in_flight: &HashSet<ListingRef>,
    ) -> Result<(), ProviderError> {
        let version = engine.ledger.plan_version(p.name()).await?;
        self.replan_at(engine, p, in_flight, version).await
    }

    /// Re-plans from the ledger as it is at `version` (just read).
    async fn replan_at(
        &mut self,
        engine: &Engine,
        p: &dyn Provider,
        in_flight: &HashSet<ListingRef>,
        version: PlanVersion,
    ) -> Result<(), ProviderError> {
        let name = p.name();
        let states = engine.ledger.listing_states(name).await?;
        let plan = plan::plan(&states, &engine.sync.rules);
        let skip: HashSet<ListingRef> = in_flight.iter().chain(&self.failed).cloned().collect();
        self.queue.replan(&plan, &skip, now_ms());
        self.version = Some(version);
        if tracing::enabled!(tracing::Level::DEBUG) {
            for (push, lane) in plan.pushes.iter().zip(&plan.lanes) {
                if let Some(s) = states.iter().find(|s| s.listing == push.listing) {
                    tracing::debug!(provider = %name, listing = %push.listing, wanted = push.quantity, confirmed = ?s.confirmed_qty, unsettled = s.unsettled, ?lane, "push planned");
                }
            }
        }
        Ok(())
    }

    async fn replan_if_moved(
        &mut self,
        engine: &Engine,
        p: &dyn Provider,
        in_flight: &HashSet<ListingRef>,
    ) -> Result<(), ProviderError> {
        let now = engine.ledger.plan_version(p.name()).await?;
        if self.version != Some(now) {
            self.replan_at(engine, p, in_flight, now).await?;
        }
        Ok(())
    }

    /// Pushes `p`'s pending listings until none is left, the poll is due
    /// (see [`PollDue`]), a stop is asked, or the provider stops the round.
    pub async fn round(
        &mut self,
        engine: &Engine,
        provider: &Arc<dyn Provider>,
        cancel: &CancellationToken,
        poll_due: Option<PollDue>,
    ) -> Result<(PushReport, RoundEnd), ProviderError> {
        let p = provider.as_ref();
        let name = p.name();
        let mut report = PushReport::default();
        self.failed.clear();
        let mut in_flight: HashSet<ListingRef> = HashSet::new();
        self.replan(engine, p, &in_flight).await?;
        let width = p.limiter().per_second(MAX_IN_FLIGHT);
        let max_batch = p.max_batch().max(1);
        let mut flying = FuturesUnordered::new();
        let mut end = RoundEnd::Drained;
        let mut sent = 0;
        'round: loop {
            // Fill: form batches while there is room in flight.
            while end == RoundEnd::Drained && flying.len() < width {
                if cancel.is_cancelled() {
                    end = RoundEnd::Cancelled;
                    break;
                }
                self.replan_if_moved(engine, p, &in_flight).await?;
                let Some(lane) = self.queue.head() else {
                    break;
                };
                // A round that can send gives way to a due poll once it has
                // sent something and has had its time: every round makes
                // progress, even when polls take longer than the interval.
                let now = Instant::now();
                if poll_due
                    .is_some_and(|d| now >= d.at && now >= d.not_before && report.planned > 0)
                {
                    end = RoundEnd::PollDue;
                    break;
                }
                let due = poll_due.map(|d| d.at);
                // Wait until a permit at this lane's priority is free,
                // finishing batches in flight meanwhile and looking now and
                // then for a more urgent lane (a sale while bulk work waits
                // for the window must not wait with it).
                let wait = p.limiter().ready(cancel, priority(lane));
                tokio::pin!(wait);
                let turn = loop {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break Turn::Cancelled,
                        Some(done) = flying.next(), if !flying.is_empty() => {
                            self.finish(engine, p, done, &mut in_flight, &mut report, &mut sent, &mut end).await?;
                            if end != RoundEnd::Drained {
                                break Turn::Again;
                            }
                        }
                        r = &mut wait => break match r.map_err(ProviderError::from) {
                            Ok(()) => Turn::Ready,
                            Err(ProviderError::Cancelled) => Turn::Cancelled,
                            Err(e) => Turn::Stop(e),
                        },
                        // Waiting for a permit when the poll comes due: the
                        // poll goes now (its permits are its own), the round
                        // resumes after it.
                        _ = sleep_until_opt(due) => break Turn::PollDue,
                        _ = tokio::time::sleep(RECHECK) => {
                            self.replan_if_moved(engine, p, &in_flight).await?;
                            if self.queue.head().is_some_and(|l| priority(l) != priority(lane)) {
                                break Turn::Again;
                            }
                        }
                    }
                };
                match turn {
                    Turn::Ready => {}
                    Turn::Again => continue,
                    Turn::PollDue => {
                        end = RoundEnd::PollDue;
                        break;
                    }
                    Turn::Cancelled => {
                        end = RoundEnd::Cancelled;
                        break;
                    }
                    Turn::Stop(e) => {
                        end = RoundEnd::Stopped(e.to_string());
                        break;
                    }
                }
                // Take the permit, then form the batch from the ledger as it
                // is now: once formed, a batch never waits for a permit, so
                // what it carries is never older than this moment.
                let permit = match p.limiter().take(cancel, priority(lane)).await {
                    Ok(permit) => permit,
                    Err(e) => match ProviderError::from(e) {
                        ProviderError::Cancelled => {
                            end = RoundEnd::Cancelled;
                            break;
                        }
                        e @ ProviderError::Ledger(_) => return Err(e),
                        e => {
                            end = RoundEnd::Stopped(e.to_string());
                            break;
                        }
                    },
                };
                self.replan_if_moved(engine, p, &in_flight).await?;
                if self.queue.is_empty() {
                    // Nothing left to send: the permit goes unspent (a
                    // request the provider never sees; the limit holds).
                    drop(permit);
                    break;
                }
                let candidates = self.queue.take(max_batch * CANDIDATES_PER_BATCH);
                let mut batches = p.batches(&candidates).into_iter();
                let Some(mut batch) = batches.next() else {
                    break;
                };
                let lane = self.queue.lane_of(&batch);
                self.queue.put_back(batches.flatten().collect());
                engine.ledger.mark_attempted(&mut batch).await?;
                failpoint::point("push.noted").await;
                report.planned += batch.len();
                in_flight.extend(batch.iter().map(|b| b.listing.clone()));
                // Each batch is its own task: it makes progress (its
                // permits, its request log writes) while this one waits on
                // the ledger.
                let prio = priority(lane);
                let (task_p, task_batch) = (provider.clone(), batch.clone());
                let task = tokio::spawn(async move {
                    with_priority(prio, permit.spend_in(task_p.push_stock(&task_batch))).await
                });
                flying.push(async move {
                    let results = task.await.unwrap_or_else(|e| PushResults {
                        stopped: Some(ProviderError::Transient(format!(
                            "the push task ended abnormally: {e}"
                        ))),
                        // Nothing is known of what it sent.
                        in_doubt: batch.len(),
                        ..PushResults::default()
                    });
                    (batch, results)
                });
            }
            // Drain: wait for the next batch in flight to finish.
            let Some(done) = flying.next().await else {
                break 'round;
            };
            self.finish(
                engine,
                p,
                done,
                &mut in_flight,
                &mut report,
                &mut sent,
                &mut end,
            )
            .await?;
        }
        report.not_sent = report.planned - sent;
        report.planned += self.queue.len();
        report.not_sent += self.queue.len();
        if let RoundEnd::Stopped(why) = &end {
            report.stopped = Some(why.clone());
            engine.ledger.record_provider_error(name, why).await?;
        }
        if report.planned > 0
            && report.stopped.is_none()
            && report.failed == 0
            && end == RoundEnd::Drained
        {
            engine.ledger.record_push_ok(name).await?;
        }
        Ok((report, end))
    }

    /// Records what one batch's answer said.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &mut self,
        engine: &Engine,
        p: &dyn Provider,
        (batch, results): Sent,
        in_flight: &mut HashSet<ListingRef>,
        report: &mut PushReport,
        sent: &mut usize,
        end: &mut RoundEnd,
    ) -> Result<(), ProviderError> {
        let name = p.name();
        failpoint::point("push.answered").await;
        let unsettled = if results.revealed.is_empty() {
            Default::default()
        } else {
            engine.ledger.unsettled(name).await?
        };
        // What the answer revealed (stokdurumu), compared now or, when our
        // own earlier writes cannot be told apart yet, left unsettled for
        // later. (This may ask the provider, so it comes before the write.)
        let mut seen = Vec::with_capacity(results.outcomes.len());
        for (push, outcome) in batch.iter().zip(&results.outcomes) {
            let revealed = results.revealed.iter().find(|r| r.listing == push.listing);
            seen.push(match (outcome, revealed) {
                (PushOutcome::Confirmed(_), Some(rev)) => {
                    let earlier: Vec<_> = unsettled
                        .get(&push.listing)
                        .map(|v| v.iter().filter(|a| a.tag != push.tag).cloned().collect())
                        .unwrap_or_default();
                    Some(engine.sighting(p, push, rev, &earlier).await)
                }
                _ => None,
            });
        }
        let mut records = Vec::with_capacity(results.outcomes.len());
        for ((push, outcome), seen) in batch.iter().zip(&results.outcomes).zip(&seen) {
            *sent += 1;
            let record = match outcome {
                PushOutcome::Confirmed(q) => {
                    report.confirmed += 1;
                    tracing::info!(provider = %name, listing = %push.listing, quantity = q, "push confirmed");
                    match seen {
                        Some(Some(sighting)) => PushRecord::ConfirmedSeen { qty: *q, sighting },
                        // Its value is known; what the hand did is not yet.
                        Some(None) => PushRecord::Answered {
                            qty: *q,
                            tag: &push.tag,
                        },
                        None => PushRecord::Confirmed(*q),
                    }
                }
                PushOutcome::Rejected(why) => {
                    report.rejected += 1;
                    tracing::warn!(provider = %name, listing = %push.listing, quantity = push.quantity, reason = %why, "push refused by the provider");
                    PushRecord::Rejected {
                        wanted: push.quantity,
                        reason: why,
                    }
                }
                PushOutcome::Failed(why) => {
                    report.failed += 1;
                    self.failed.insert(push.listing.clone());
                    tracing::warn!(provider = %name, listing = %push.listing, reason = %why, "push failed; will retry");
                    PushRecord::Failed(why)
                }
            };
            records.push((&push.listing, record));
        }
        // The whole answer in one transaction: one commit a batch.
        if !records.is_empty() {
            report.movements += engine.ledger.record_pushes(&records).await?;
            failpoint::point("push.recorded").await;
        }
        // Pushes the call never sent cannot have changed anything.
        let doubtful = results.outcomes.len() + results.in_doubt;
        let never_sent: Vec<String> = batch.iter().skip(doubtful).map(|p| p.tag.clone()).collect();
        if !never_sent.is_empty() {
            engine.ledger.unnote(&never_sent).await?;
        }
        for push in batch.iter().skip(results.outcomes.len()) {
            self.failed.insert(push.listing.clone());
        }
        for push in &batch {
            in_flight.remove(&push.listing);
        }
        engine.health.beat(name);
        engine.health.pushed(
            name,
            results
                .outcomes
                .iter()
                .filter(|o| matches!(o, PushOutcome::Confirmed(_)))
                .count(),
            results
                .outcomes
                .iter()
                .filter(|o| matches!(o, PushOutcome::Rejected(_)))
                .count(),
            results
                .outcomes
                .iter()
                .filter(|o| matches!(o, PushOutcome::Failed(_)))
                .count(),
            0,
        );
        engine.health.pending(name, self.backlog());
        if let Some(e) = results.stopped {
            if e == ProviderError::Cancelled {
                if *end == RoundEnd::Drained || *end == RoundEnd::PollDue {
                    *end = RoundEnd::Cancelled;
                }
            } else if !matches!(end, RoundEnd::Stopped(_)) {
                *end = RoundEnd::Stopped(e.to_string());
            }
        }
        Ok(())
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderName;

    fn l(id: u32) -> ListingRef {
        ListingRef {
            provider: ProviderName::Bazaardan,
            listing_id: id.to_string(),
            variant_id: String::new(),
        }
    }

    fn plan_of(items: &[(u32, i64, Lane)]) -> plan::Plan {
        plan::Plan {
            pushes: items
                .iter()
                .map(|(i, q, _)| StockPush::new(l(*i), *q))
                .collect(),
            lanes: items.iter().map(|x| x.2).collect(),
            blind: items.iter().map(|_| true).collect(),
            held: vec![],
        }
    }

    /// A decrease queued after 1 000 increases goes out before them, and a
    /// zero before the decrease.
    #[test]
    fn a_late_decrease_goes_ahead_of_a_thousand_increases() {
        let mut q = Queue::default();
        let mut items: Vec<(u32, i64, Lane)> = (0..1000).map(|i| (i, 10, Lane::Increase)).collect();
        q.replan(&plan_of(&items), &HashSet::new(), 1_000);
        assert_eq!(q.take(1)[0].listing, l(0), "oldest increase first");
        // Later: a sale elsewhere lowers listing 5000, another goes to 0.
        items.push((5000, 3, Lane::Decrease));
        items.push((5001, 0, Lane::Zero));
        q.replan(&plan_of(&items), &HashSet::new(), 2_000);
        let first: Vec<ListingRef> = q.take(3).into_iter().map(|p| p.listing).collect();
        assert_eq!(first, [l(5001), l(5000), l(0)]);
    }

    /// Inside a lane the longest-pending listing goes first, whatever its
    /// place in the catalog.
    #[test]
    fn the_longest_pending_goes_first_within_a_lane() {
        let mut q = Queue::default();
        q.replan(&plan_of(&[(7, 1, Lane::Increase)]), &HashSet::new(), 1_000);
        q.replan(
            &plan_of(&[(1, 1, Lane::Increase), (7, 1, Lane::Increase)]),
            &HashSet::new(),
            5_000,
        );
        assert_eq!(q.take(1)[0].listing, l(7));
        assert_eq!(q.pending_since(&l(1)), Some(5_000));
    }

    /// A re-plan carries the new wanted value, drops a listing that went
    /// back to its confirmed value, and leaves out what is in flight.
    #[test]
    fn a_replan_carries_new_values_and_drops_what_no_longer_differs() {
        let mut q = Queue::default();
        q.replan(
            &plan_of(&[(1, 5, Lane::Increase), (2, 5, Lane::Increase)]),
            &HashSet::new(),
            0,
        );
        let flying: HashSet<ListingRef> = [l(3)].into();
        q.replan(
            &plan_of(&[(1, 4, Lane::Decrease), (3, 9, Lane::Increase)]),
            &flying,
            10,
        );
        let all = q.take(10);
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!((all[0].listing.clone(), all[0].quantity), (l(1), 4));
        assert_eq!(q.differing(), 2, "in-flight listing 3 still differs");
    }

    /// A listing waiting to go up (its shown value unknown) whose wanted
    /// value then drops (a sale elsewhere) goes ahead of the backlog, and
    /// stays ahead on later re-plans while it differs.
    #[test]
    fn a_queued_increase_whose_value_sinks_goes_ahead() {
        let mut q = Queue::default();
        let mut items: Vec<(u32, i64, Lane)> = (0..100).map(|i| (i, 10, Lane::Increase)).collect();
        q.replan(&plan_of(&items), &HashSet::new(), 0);
        items[99].1 = 9;
        q.replan(&plan_of(&items), &HashSet::new(), 10);
        assert_eq!(q.head(), Some(Lane::Decrease));
        // Another change elsewhere: listing 99 keeps its place.
        items.push((500, 4, Lane::Increase));
        q.replan(&plan_of(&items), &HashSet::new(), 20);
        let first = q.take(1);
        assert_eq!((first[0].listing.clone(), first[0].quantity), (l(99), 9));
        assert_eq!(q.lane_of(&first), Lane::Decrease);
        // A listing known to show less than the new value (confirmed
        // below it) is an increase, however its wanted value moved.
        let mut q = Queue::default();
        let mut known = plan_of(&[(1, 5, Lane::Increase)]);
        known.blind = vec![false];
        q.replan(&known, &HashSet::new(), 0);
        known.pushes[0].quantity = 4;
        q.replan(&known, &HashSet::new(), 0);
        assert_eq!(q.head(), Some(Lane::Increase));
        // A value that goes up again is an increase like any other.
        let mut q = Queue::default();
        q.replan(
            &plan_of(&[(1, 5, Lane::Increase), (2, 5, Lane::Increase)]),
            &HashSet::new(),
            0,
        );
        q.replan(
            &plan_of(&[(1, 5, Lane::Increase), (2, 6, Lane::Increase)]),
            &HashSet::new(),
            0,
        );
        assert_eq!(q.head(), Some(Lane::Increase));
    }

    #[test]
    fn put_back_keeps_the_lane_and_age() {
        let mut q = Queue::default();
        q.replan(
            &plan_of(&[(1, 5, Lane::Increase), (2, 3, Lane::Decrease)]),
            &HashSet::new(),
            0,
        );
        let taken = q.take(2);
        assert_eq!(taken[0].listing, l(2));
        assert_eq!(q.lane_of(&taken[1..]), Lane::Increase);
        assert_eq!(q.lane_of(&taken), Lane::Decrease);
        q.put_back(taken);
        assert_eq!(q.head(), Some(Lane::Decrease));
        assert_eq!(q.len(), 2);
    }
}
