//! stokdurumu REST API v1: a stock sink with no orders, and a source of
//! movements made by hand in its panel.
//!
//! - Every request counts against the daily quota (`requests_per_day`),
//!   counted in the ledger so a restart does not reset it.
//! - Pushes are `POST /stock` with `action: set`, checked against `new_qty`.
//!   The answer's `old_qty` is what the product showed just before: when it
//!   differs from what stoksync last confirmed, someone changed it by hand,
//!   and the difference becomes a movement. So every push also reads drift,
//!   for free, and a hand-made change is never overwritten unseen.
//! - Each push carries a tag in its reason (`stoksync #TAG`). When an answer
//!   is lost after stokdurumu applied the push, the retry's `old_qty` is our
//!   own earlier write, not a hand edit; the product's history
//!   (`GET /stock?product_id=`) tells which of our tagged writes landed and
//!   what the product showed before each (see [`Provider::trail`]).
//! - Products no push touches are read (`GET /products`, 100 a page) for
//!   changes made by hand, paced three ways (issue 19: with 10 000
//!   products and no quota, every poll read all 100 pages, longer than the
//!   poll interval, and pushes nearly stopped):
//!   - **Pushes first.** While pushes wait (the last round gave way to the
//!     poll with listings left), no page is read: a listing known to be
//!     wrong is pushed before those that are not are read again. A push's
//!     answer reads its own product's drift anyway.
//!   - **A share of the time.** A poll reads pages for at most a fifth of
//!     `poll_interval` (at least one page) and the next poll goes on where
//!     it stopped, so no poll is long; a new read of the whole catalog
//!     starts only once four times what the last one spent on its pages
//!     has passed since it ended (see [`paced_by_time`]). Reading takes at
//!     most a fifth of the time.
//!   - **A share of the requests.** With a daily quota, a whole read starts
//!     only when the day's budget allows: a fifth of the quota (at least
//!     20) plus the pushes expected until the reset stay kept for pushes,
//!     and the rest is spread evenly over the time left (see
//!     [`drift_read_due`]). With the Free plan (500/day) and one page of
//!     products that is a read every ~3.6 minutes.

pub mod client;
pub mod wire;

use crate::config::{StokdurumuConfig, SyncSettings};
use crate::domain::{
    ExternalCount, ListingRef, OrderChanges, OurWrite, ProviderName, PushOutcome, RemoteListing,
    Revealed, StockPush, Trail, next_turkey_midnight, parse_provider_time, turkey_day,
    turkey_midnight_before,
};
use crate::http::{Net, ProviderHttp, Sends};
use crate::ledger::Ledger;
use crate::limit::{Limiter, Priority, with_priority};
use crate::providers::{
    OrderMemory, PollRequest, Provider, ProviderError, PushResults, from_row, listing_outcome,
};
use async_trait::async_trait;
use chrono::NaiveDate;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use wire::Product;

/// A poll that pages further than this is a provider fault.
const MAX_PAGES: u32 = 10_000;
/// Reading for hand edits takes at most one part in this many of the time:
/// of each poll interval, and of the time between two whole reads.
pub const READ_SHARE: u32 = 5;
/// History lines read to settle lost answers: the endpoint's page maximum
/// (as for every stokdurumu list). Our unsettled writes are seconds old, so
/// far fewer than this lie after them unless the panel is very busy.
const HISTORY_LIMIT: u32 = 100;

pub struct Stokdurumu {
    client: client::Client,
    /// Where the read of the catalog for hand edits stands.
    drift: Mutex<Drift>,
    /// How long one poll may spend reading pages: a [`READ_SHARE`]th of
    /// `poll_interval`.
    read_per_poll: Duration,
    /// Counts read by discovery, handed to the next poll (saves a read).
    stash: Mutex<Option<Vec<ExternalCount>>>,
    /// Requests spent on product reads today (in memory: after a restart
    /// all of today's requests count as pushes, which only makes reads rarer).
    reads_today: Mutex<(Option<NaiveDate>, u32)>,
}

impl Stokdurumu {
    pub fn new(
        cfg: &StokdurumuConfig,
        sync: &SyncSettings,
        ledger: Ledger,
        net: &Net,
    ) -> Result<Stokdurumu, ProviderError> {
        let limiter = Arc::new(Limiter::with_timing(
            ProviderName::Stokdurumu,
            None,
            cfg.requests_per_day,
            ledger,
            &sync.timing,
        ));
        let http = ProviderHttp::on(net, limiter).daily_429();
        Ok(Stokdurumu {
            client: client::Client::new(http, cfg.base_url.clone(), cfg.api_key.clone()),
            drift: Mutex::new(Drift::default()),
            read_per_poll: sync.poll_interval / READ_SHARE,
            stash: Mutex::new(None),
            reads_today: Mutex::new((None, 0)),
        })
    }

    /// Every product, page by page (discovery): a whole read, so the next
    /// one for hand edits waits as after any other.
    async fn read_all(&self) -> Result<(Vec<Product>, Vec<String>), ProviderError> {
        let mut products = Vec::new();
        let mut odd = Vec::new();
        let started = Instant::now();
        let mut page = 1;
        loop {
            let data = self.client.products(page, client::PAGE_SIZE).await?;
            self.count_read(1);
            let n = data.products.len();
            parse_page(data.products, &mut products, &mut odd);
            if page >= data.meta.pages || n == 0 {
                break;
            }
            page += 1;
            crate::failpoint::point("poll.page").await;
            if page > MAX_PAGES {
                return Err(ProviderError::Transient(format!(
                    "products kept paging past {MAX_PAGES} pages"
                )));
            }
        }
        self.lock_drift().ended(page, started.elapsed());
        for o in &odd {
            tracing::warn!(provider = "stokdurumu", "{o}");
        }
        Ok((products, odd))
    }

    /// The next pages of the read for hand edits, for at most
    /// `read_per_poll` (at least one page); a whole read starts only when
    /// it is due (see the module's documentation).
    async fn read_some(&self) -> Result<Vec<Product>, ProviderError> {
        let resume = self.lock_drift().next_page;
        let mut page = match resume {
            Some(page) => page,
            None if self.read_due().await => 1,
            None => return Ok(Vec::new()),
        };
        let started = Instant::now();
        let mut products = Vec::new();
        let mut odd = Vec::new();
        loop {
            let t = Instant::now();
            let data = self.client.products(page, client::PAGE_SIZE).await;
            // A page that failed is read again at the next poll.
            self.lock_drift().reading(page, t.elapsed());
            let data = data?;
            self.count_read(1);
            let n = data.products.len();
            parse_page(data.products, &mut products, &mut odd);
            if page >= data.meta.pages || n == 0 {
                let mut d = self.lock_drift();
                let spent = d.spent;
                d.ended(page, spent);
                break;
            }
            page += 1;
            if page > MAX_PAGES {
                self.lock_drift().next_page = None;
                return Err(ProviderError::Transient(format!(
                    "products kept paging past {MAX_PAGES} pages"
                )));
            }
            self.lock_drift().next_page = Some(page);
            if started.elapsed() >= self.read_per_poll {
                break;
            }
            crate::failpoint::point("poll.page").await;
        }
        for o in &odd {
            tracing::warn!(provider = "stokdurumu", "{o}");
        }
        Ok(products)
    }

    fn lock_drift(&self) -> std::sync::MutexGuard<'_, Drift> {
        self.drift.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `pages` requests spent on product reads today.
    fn count_read(&self, pages: u32) {
        let day = turkey_day(crate::clock::now_utc());
        let mut r = self.reads_today.lock().unwrap_or_else(|e| e.into_inner());
        if r.0 != Some(day) {
            *r = (Some(day), 0);
        }
        r.1 += pages;
    }

    /// Whether a whole read for hand edits may start now: its share of the
    /// time, and of the day's quota.
    async fn read_due(&self) -> bool {
        let (last, pages) = {
            let d = self.lock_drift();
            (d.last, d.pages)
        };
        if !paced_by_time(last.map(|(ended, spent)| (ended.elapsed(), spent))) {
            return false;
        }
        let limiter = self.limiter();
        let now = crate::clock::now_utc();
        let day = turkey_day(now);
        let used_by_reads = {
            let r = self.reads_today.lock().unwrap_or_else(|e| e.into_inner());
            if r.0 == Some(day) { r.1 } else { 0 }
        };
        let budget = Budget {
            daily_limit: limiter.daily_limit(),
            used: limiter.used_today().await,
            used_by_reads,
            elapsed: (now - turkey_midnight_before(now))
                .to_std()
                .unwrap_or_default(),
            until_reset: (next_turkey_midnight(now) - now)
                .to_std()
                .unwrap_or_default(),
        };
        drift_read_due(budget, pages, last.map(|(ended, _)| ended.elapsed()))
    }
}

/// Where the read of the catalog for hand edits stands.
#[derive(Debug)]
struct Drift {
    /// The read in progress: the next page to read.
    next_page: Option<u32>,
    /// Time the read in progress spent on its pages so far.
    spent: Duration,
    /// The last whole read: when it ended, and the time its pages took.
    last: Option<(Instant, Duration)>,
    /// Pages the catalog had at the last whole read (one before any).
    pages: u32,
}

impl Default for Drift {
    fn default() -> Self {
        Drift {
            next_page: None,
            spent: Duration::ZERO,
            last: None,
            pages: 1,
        }
    }
}

impl Drift {
    /// A page of the read in progress took `took` (answered or not).
    fn reading(&mut self, page: u32, took: Duration) {
        if self.next_page.is_none() {
            self.spent = Duration::ZERO;
        }
        self.next_page = Some(page);
        self.spent += took;
    }

    /// A whole read of `pages` pages ended, its pages having taken `spent`.
    fn ended(&mut self, pages: u32, spent: Duration) {
        self.next_page = None;
        self.spent = Duration::ZERO;
        self.last = Some((Instant::now(), spent));
        self.pages = pages.max(1);
    }
}

/// Product rows of one page, parsed; rows not understood are described.
fn parse_page(rows: Vec<serde_json::Value>, products: &mut Vec<Product>, odd: &mut Vec<String>) {
    for raw in rows {
        match from_row::<Product>(&raw) {
            Ok(p) => products.push(p),
            Err(e) => odd.push(format!("product row not understood ({e}): {raw}")),
        }
    }
}

/// Whether a new whole read for hand edits keeps reading to a
/// [`READ_SHARE`]th of the time: `last` is (since the last whole read
/// ended, the time its pages took); the rest must be at least
/// `READ_SHARE - 1` times the reading. Always, before the first read.
pub fn paced_by_time(last: Option<(Duration, Duration)>) -> bool {
    last.is_none_or(|(since, spent)| since >= spent * (READ_SHARE - 1))
}

/// Today's spending, as the read planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub daily_limit: Option<u32>,
    /// Requests spent today, all kinds.
    pub used: u32,
    /// Of those, spent on product reads.
    pub used_by_reads: u32,
    /// Since 00:00 Turkey time, and until the next.
    pub elapsed: Duration,
    pub until_reset: Duration,
}

/// Whether a read of every product (`pages` requests) fits the day's plan
/// now. Unlimited plans always (time paces them: [`paced_by_time`]).
/// Otherwise pushes come first: the
/// pushes expected until the reset (at today's push rate) plus a fifth of
/// the quota (at least 20, at most half) stay reserved, and what remains is
/// spread evenly over the time until the reset, so reads never use the
/// quota up by noon.
pub fn drift_read_due(b: Budget, pages: u32, since_last: Option<Duration>) -> bool {
    let Some(limit) = b.daily_limit else {
        return true;
    };
    let pages = pages.max(1);
    let pushes = b.used.saturating_sub(b.used_by_reads) as f64;
    // At least ten minutes of history, so one early push is not a rate.
    let elapsed = b.elapsed.max(Duration::from_secs(600)).as_secs_f64();
    let expected_pushes = (pushes / elapsed * b.until_reset.as_secs_f64()).ceil() as u32;
    let reserve = (limit / 5)
        .max(20)
        .min(limit / 2)
        .saturating_add(expected_pushes);
    let until_reset = b.until_reset;
    let spare = limit.saturating_sub(b.used).saturating_sub(reserve);
    if spare < pages {
        return false;
    }
    let reads_left = spare / pages;
    let interval = until_reset / reads_left;
    since_last.is_none_or(|s| s >= interval)
}

fn to_counts(products: &[Product]) -> Vec<ExternalCount> {
    products
        .iter()
        .filter_map(|p| {
            Some(ExternalCount {
                listing: listing(p.id),
                observed: p.stock_qty.as_i64()?,
                stamp: p.updated_at.clone().unwrap_or_else(|| "read".into()),
                trail: None,
            })
        })
        .collect()
}

fn listing(id: u64) -> ListingRef {
    ListingRef {
        provider: ProviderName::Stokdurumu,
        listing_id: id.to_string(),
        variant_id: String::new(),
    }
}

#[async_trait]
impl Provider for Stokdurumu {
    fn name(&self) -> ProviderName {
        ProviderName::Stokdurumu
    }

    /// One product per `POST /stock`.
    fn max_batch(&self) -> usize {
        1
    }

    /// No orders: a poll reads the stock the panel shows, as its pace
    /// allows, so changes made by hand reach the ledger.
    async fn poll_orders(
        &self,
        req: &PollRequest,
        memory: &dyn OrderMemory,
    ) -> Result<OrderChanges, ProviderError> {
        self.poll_orders_while(req, memory, false).await
    }

    /// While pushes wait, only what discovery read already (free).
    async fn poll_orders_while(
        &self,
        _req: &PollRequest,
        _memory: &dyn OrderMemory,
        pushes_waiting: bool,
    ) -> Result<OrderChanges, ProviderError> {
        let stashed = self.stash.lock().unwrap_or_else(|e| e.into_inner()).take();
        let external = match stashed {
            Some(counts) => counts,
            None if pushes_waiting => Vec::new(),
            // A catalog read, not the poll of an order: its permits are
            // asked as such.
            None => to_counts(&with_priority(Priority::Normal, self.read_some()).await?),
        };
        Ok(OrderChanges {
            external,
            ..OrderChanges::default()
        })
    }

    async fn push_stock(&self, batch: &[StockPush]) -> PushResults {
        let mut out = PushResults::default();
        for push in batch {
            let Ok(id) = push.listing.listing_id.parse::<u64>() else {
                out.outcomes.push(PushOutcome::Rejected(format!(
                    "stokdurumu listing_id must be a product id number, got `{}`",
                    push.listing.listing_id
                )));
                continue;
            };
            let sends = Sends::default();
            match self
                .client
                .set_stock(id, push.quantity, &push.tag, &sends)
                .await
            {
                Ok(done)
                    if done.new_qty.as_i64() == Some(push.quantity)
                        && done.success != Some(false) =>
                {
                    if let Some(old) = done.old_qty.as_i64() {
                        out.revealed.push(Revealed {
                            listing: push.listing.clone(),
                            old,
                            new: push.quantity,
                            resent: sends.maybe_applied() > 0,
                        });
                    }
                    out.outcomes.push(PushOutcome::Confirmed(push.quantity));
                }
                Ok(done) => out.outcomes.push(PushOutcome::Failed(format!(
                    "asked to set {} but stokdurumu answered new_qty {}",
                    push.quantity, done.new_qty
                ))),
                Err(e) => match listing_outcome(e) {
                    Ok(outcome) => out.outcomes.push(outcome),
                    Err(e) => {
                        out.stopped = Some(e);
                        out.in_doubt = usize::from(sends.maybe_applied() > 0);
                        break;
                    }
                },
            }
        }
        out
    }

    async fn trail(
        &self,
        l: &ListingRef,
        tags: &[String],
        since_ms: i64,
    ) -> Result<Option<Trail>, ProviderError> {
        let Ok(id) = l.listing_id.parse::<u64>() else {
            return Ok(None);
        };
        let answer = match self.client.history(id, HISTORY_LIMIT).await {
            Ok(a) => a,
            // No such endpoint on this server, or not for this product.
            Err(ProviderError::Rejected(why)) => {
                tracing::warn!(provider = "stokdurumu", listing = %l, reason = %why, "the stock history cannot be read; telling our own lost writes from hand edits by value only");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        Ok(trail_from(&answer, tags, since_ms))
    }

    /// Products linked by `sku`. The counts read here also serve the next
    /// poll's drift check, so discovery costs no extra read.
    async fn list_listings(&self) -> Result<Option<Vec<RemoteListing>>, ProviderError> {
        let (products, _) = self.read_all().await?;
        *self.stash.lock().unwrap_or_else(|e| e.into_inner()) = Some(to_counts(&products));
        Ok(Some(
            products
                .iter()
                .map(|p| RemoteListing {
                    listing: listing(p.id),
                    sku: p.sku.clone(),
                    quantity: p.stock_qty.as_i64(),
                })
                .collect(),
        ))
    }

    async fn check_credentials(&self) -> Result<(), ProviderError> {
        self.client.products(1, 1).await.map(|_| ())
    }

    fn limiter(&self) -> &Arc<Limiter> {
        self.client.http.limiter()
    }
}

/// Our tagged writes in a history answer, oldest first; `None` when the
/// answer is not a history.
pub fn trail_from(answer: &serde_json::Value, tags: &[String], since_ms: i64) -> Option<Trail> {
    let lines = wire::history_lines(answer)?;
    let parsed: Vec<wire::HistoryLine> = lines
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    let mut ordered: Vec<&wire::HistoryLine> = parsed.iter().collect();
    if ordered.iter().all(|h| h.id.is_some()) {
        ordered.sort_by_key(|h| h.id);
    } else {
        // Newest first, as a history is listed.
        ordered.reverse();
    }
    let writes = ordered
        .iter()
        .filter_map(|h| {
            let reason = h.reason.as_deref()?;
            let tag = tags
                .iter()
                .find(|t| !t.is_empty() && reason.contains(&format!("#{t}")))?;
            Some(OurWrite {
                tag: tag.clone(),
                old: h.old_qty.as_ref()?.as_i64()?,
                new: h.new_qty.as_ref()?.as_i64()?,
            })
        })
        .collect();
    // Fewer lines than asked for: this is all of it. Otherwise the oldest
    // line must predate the oldest write asked about (to the second, with
    // a second of slack for the clocks).
    let all = (lines.len() as u32) < HISTORY_LIMIT;
    let reaches_back = ordered
        .first()
        .and_then(|h| h.created_at.as_deref())
        .and_then(parse_provider_time)
        .is_some_and(|t| t.timestamp_millis() + 1000 < since_ms);
    Some(Trail {
        writes,
        complete: all || reaches_back,
    })
}

pub fn validate_listing(l: &ListingRef) -> Result<(), String> {
    if !l.variant_id.is_empty() {
        return Err("stokdurumu products have no variants; leave variant_id empty".into());
    }
    l.listing_id.parse::<u64>().map(|_| ()).map_err(|_| {
        format!(
            "stokdurumu listing_id must be a product id number, got `{}`",
            l.listing_id
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    #[test]
    fn a_trail_is_our_tagged_writes_oldest_first() {
        let tags = vec!["aa".to_string(), "bb".to_string()];
        let history = serde_json::json!({"movements": [
            {"id": 5, "old_qty": 13, "new_qty": 15, "reason": "stoksync #bb", "created_at": "2026-05-08 18:00:03"},
            {"id": 4, "old_qty": 15, "new_qty": 13, "reason": "panelden", "created_at": "2026-05-08 18:00:02"},
            {"id": 3, "old_qty": 10, "new_qty": 15, "reason": "stoksync #aa", "created_at": "2026-05-08 18:00:01"},
            {"id": 2, "old_qty": 9, "new_qty": 10, "reason": "stoksync #zz", "created_at": "2026-05-08 17:00:00"},
            {"id": 1, "reason": "odd line without quantities"}
        ]});
        let t = trail_from(&history, &tags, 0).unwrap();
        let got: Vec<(String, i64, i64)> = t
            .writes
            .into_iter()
            .map(|w| (w.tag, w.old, w.new))
            .collect();
        assert_eq!(got, [("aa".into(), 10, 15), ("bb".into(), 13, 15)]);
        assert!(t.complete, "fewer lines than the limit: all of it");
        // A bare array, newest first, without ids, works the same.
        let bare = serde_json::json!([
            {"old_qty": 13, "new_qty": 15, "reason": "stoksync #bb"},
            {"old_qty": 10, "new_qty": 15, "reason": "stoksync #aa"}
        ]);
        assert_eq!(trail_from(&bare, &tags, 0).unwrap().writes.len(), 2);
        // Not a history at all.
        assert!(trail_from(&serde_json::json!({"error": "x"}), &tags, 0).is_none());
        // A full page that starts after the oldest write asked about.
        let lines: Vec<serde_json::Value> = (0..HISTORY_LIMIT)
            .map(|i| serde_json::json!({"id": 1000 - i, "old_qty": 1, "new_qty": 2, "reason": "panel", "created_at": "2026-05-08 18:00:00"}))
            .collect();
        let early = crate::domain::parse_provider_time("2026-05-08 17:30:00")
            .unwrap()
            .timestamp_millis();
        assert!(trail_from(&serde_json::json!(lines), &tags, early).is_some_and(|t| !t.complete));
        let late = crate::domain::parse_provider_time("2026-05-08 19:00:00")
            .unwrap()
            .timestamp_millis();
        assert!(
            trail_from(&serde_json::json!(lines), &tags, late)
                .unwrap()
                .complete
        );
    }

    #[test]
    fn drift_reads_fit_the_plan() {
        let d = |s| Duration::from_secs(s);
        // (limit, used (all reads), pages, until reset, since last) -> due
        let cases = [
            (None, 10_000, 5, d(H), Some(d(0)), true),
            (Some(500), 0, 1, d(24 * H), None, true),
            // 400 spare reads over 24 h: one per 216 s.
            (Some(500), 0, 1, d(24 * H), Some(d(200)), false),
            (Some(500), 0, 1, d(24 * H), Some(d(220)), true),
            // the reserve for pushes is never spent on reads
            (Some(500), 400, 1, d(H), Some(d(H)), false),
            (Some(500), 399, 1, d(H), Some(d(H)), true),
            // more pages, fewer reads
            (Some(500), 0, 10, d(24 * H), Some(d(2000)), false),
            (Some(500), 0, 10, d(24 * H), Some(d(2200)), true),
            // a tiny plan keeps half for pushes
            (Some(30), 14, 1, d(H), Some(d(H)), true),
            (Some(30), 15, 1, d(H), Some(d(H)), false),
        ];
        for (i, (limit, used, pages, until, since, due)) in cases.into_iter().enumerate() {
            let b = Budget {
                daily_limit: limit,
                used,
                used_by_reads: used,
                elapsed: d(24 * H) - until,
                until_reset: until,
            };
            assert_eq!(drift_read_due(b, pages, since), due, "case {i}");
        }
        // Pushes at 20 an hour so far: the 20 an hour still to come are kept.
        let b = Budget {
            daily_limit: Some(500),
            used: 200,
            used_by_reads: 0,
            elapsed: d(10 * H),
            until_reset: d(14 * H),
        };
        assert!(
            !drift_read_due(b, 1, Some(d(H))),
            "280 pushes expected + 100 kept > 300 left"
        );
    }

    /// A read whose pages took 10 s starts again 40 s after it ended, not
    /// sooner: reading takes a fifth of the time at most.
    #[test]
    fn reads_take_a_fifth_of_the_time() {
        let d = Duration::from_secs;
        assert!(paced_by_time(None), "the first read");
        assert!(!paced_by_time(Some((d(39), d(10)))));
        assert!(paced_by_time(Some((d(40), d(10)))));
        // Pages that answer at once pace nothing.
        assert!(paced_by_time(Some((d(0), d(0)))));
    }

    /// A whole day on the Free plan, polled every 30 s, with a push every
    /// 5 minutes: reads go on until the evening and the quota is never hit.
    #[test]
    fn a_free_plan_day_spreads_reads_and_keeps_room_for_pushes() {
        let (limit, poll, day) = (500u32, 30u64, 24 * H);
        let (mut used, mut reads, mut last, mut last_read_at) = (0u32, 0u32, None::<u64>, 0u64);
        for t in (0..day).step_by(poll as usize) {
            if t % 300 == 0 {
                used += 1; // a push
            }
            let since = last.map(|l| Duration::from_secs(t - l));
            let b = Budget {
                daily_limit: Some(limit),
                used,
                used_by_reads: reads,
                elapsed: Duration::from_secs(t),
                until_reset: Duration::from_secs(day - t),
            };
            if drift_read_due(b, 1, since) {
                used += 1;
                reads += 1;
                last = Some(t);
                last_read_at = t;
            }
        }
        assert!(used <= limit, "used {used}");
        assert!(reads > 100, "only {reads} reads");
        assert!(last_read_at > 22 * H, "last read at {}s", last_read_at);
        assert!(limit - used >= 20, "no room left for pushes: used {used}");
    }
}
