//! Since when each listing of a provider has waited to be pushed: its
//! wanted value (as [`plan`] computes it: rules, safety stock, bundles)
//! differs from what the provider confirmed, or a push of ours to it is in
//! doubt. The backlog alert and `/metrics` read it.
//!
//! Why from the ledger, and how:
//!
//! - A push round's view of the queue is no answer: no round runs while a
//!   provider's polls fail, so a listing waiting behind an outage would
//!   count only once the outage ended, and a process that restarts would
//!   start counting again. What waits, and since when, is a fact of the
//!   ledger, the same for every process and either backend.
//! - What waits is the plan's: every evaluation plans each provider afresh.
//! - Since when is replayed from the journal. Movements carry the quantity
//!   they left and when; a listing's confirmed value and when it was
//!   confirmed are kept; so is when its oldest push in doubt was sent. From
//!   the start of a window in which nothing but movements changed its
//!   wanted value (after the last check, its confirmation, the last rules
//!   or bundles import, its link's last move), the movements of the SKUs it
//!   is made of are applied one by one and the plan asked at each step: the
//!   listing waits since the step after which it has differed without a
//!   break. That is when the sale (or correction) that made it differ was
//!   journaled, to the millisecond, whenever it is looked at.
//! - The result is recorded (`pending_since`, `pending_checks`) by the
//!   alerts evaluator at each evaluation. A listing that already waited at
//!   the last check and has differed through the whole window keeps its
//!   recorded start, so a rules import or a confirmation of a value that
//!   was already stale does not restart its clock; a listing that did not
//!   wait then was in sync then, so only what came after can have made it
//!   differ. A change the journal cannot replay (a rules import, a config
//!   changed across a restart, a stale confirmation, a new link) is dated
//!   by the start of the window it happened in, and no earlier than the
//!   evaluating process's start; the evaluator looks every period, so that
//!   is never later than the change itself.
//!
//! Writing "since when" in every path that moves stock was the other way;
//! it cannot be exact, because the ledger does not know the wanted value
//! (it depends on the config's rules), so it would have to mark every
//! listing a movement touches, and clear marks it cannot judge.
//!
//! [`plan`]: super::plan

use super::plan;
use crate::domain::{ListingRef, ProviderName, now_ms};
use crate::ledger::{
    Ledger, LedgerError, ListingPast, ListingState, PendingCheck, PendingHistory, PendingRecord,
    PendingWrite, Step,
};
use crate::rules::Rules;
use std::collections::HashMap;
use std::time::Duration;

/// A provider's waiting listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// Each waiting listing and since when (Unix ms), oldest first.
    pub waiting: Vec<(ListingRef, i64)>,
    /// The moment it was read at.
    pub check: PendingCheck,
    /// The waiting listings or their starts differ from the record.
    pub changed: bool,
}

impl Backlog {
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// How long the longest-waiting listing has waited at `now_ms`.
    pub fn waited(&self, now_ms: i64) -> Option<Duration> {
        let oldest = self.waiting.iter().map(|w| w.1).min()?;
        Some(Duration::from_millis(
            u64::try_from(now_ms.saturating_sub(oldest)).unwrap_or(0),
        ))
    }
}

/// `provider`'s waiting listings now, each with since when. Writes
/// nothing: [`record`] does. `started_ms` is when the evaluating process
/// started (its config may differ from the last one's).
pub async fn read(
    ledger: &Ledger,
    rules: &Rules,
    provider: ProviderName,
    started_ms: i64,
) -> Result<Backlog, LedgerError> {
    let look = Look::now(ledger).await?;
    Ok(look.read(ledger, rules, provider, started_ms).await?.0)
}

/// One look at every provider's backlog: the records of the last check
/// and the moment of this one, read once for all providers.
pub struct Look {
    records: HashMap<ProviderName, PendingRecord>,
    check: PendingCheck,
}

impl Look {
    /// The newest movement first, then the time, then (in [`Look::read`])
    /// the listings: every movement up to that id is in what the plan
    /// reads, and a listing the plan finds in sync can only come to differ
    /// after `at_ms`.
    pub async fn now(ledger: &Ledger) -> Result<Look, LedgerError> {
        let records = ledger.pending_records().await?;
        let movement_id = ledger.newest_movement_id().await?;
        let at_ms = now_ms();
        Ok(Look {
            records,
            check: PendingCheck { at_ms, movement_id },
        })
    }

    /// `provider`'s backlog, with the listing states it planned from (a
    /// caller that needs them too reads them once).
    pub async fn read(
        &self,
        ledger: &Ledger,
        rules: &Rules,
        provider: ProviderName,
        started_ms: i64,
    ) -> Result<(Backlog, Vec<ListingState>), LedgerError> {
        read_with_states(
            ledger,
            rules,
            provider,
            started_ms,
            self.records.get(&provider).cloned().unwrap_or_default(),
            self.check,
        )
        .await
    }
}

async fn read_with_states(
    ledger: &Ledger,
    rules: &Rules,
    provider: ProviderName,
    started_ms: i64,
    record: PendingRecord,
    check: PendingCheck,
) -> Result<(Backlog, Vec<ListingState>), LedgerError> {
    let states = ledger.listing_states(provider).await?;
    let planned = plan::plan(&states, rules);
    if planned.pushes.is_empty() {
        return Ok((
            Backlog {
                waiting: Vec::new(),
                check,
                changed: !record.since.is_empty(),
            },
            states,
        ));
    }
    let listings: Vec<ListingRef> = planned.pushes.iter().map(|p| p.listing.clone()).collect();
    let last = record.checked;
    // Only movements the last check had not seen (ids are given in commit
    // order): by id, not time, since one made just before that check's
    // moment may have been committed just after it.
    let history = ledger
        .pending_history(provider, &listings, last.map_or(0, |c| c.movement_id))
        .await?;
    let by_ref: HashMap<&ListingRef, &ListingState> =
        states.iter().map(|s| (&s.listing, s)).collect();
    let mut waiting = Vec::with_capacity(listings.len());
    for l in listings {
        let (Some(state), Some(past)) = (by_ref.get(&l), history.listings.get(&l)) else {
            // Unlinked between the two reads: it no longer waits.
            continue;
        };
        let replay_from = [
            past.confirmed_at_ms,
            past.moved_at_ms,
            history.definitions_at_ms,
        ]
        .into_iter()
        .flatten()
        .max();
        let since = since(
            &Window {
                state,
                past,
                history: &history,
                replay_from,
                checked_at: last.map(|c| c.at_ms),
                recorded: record.since.get(&l).copied(),
            },
            rules,
            started_ms,
        );
        waiting.push((l, since));
    }
    waiting.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let changed = waiting.len() != record.since.len()
        || waiting.iter().any(|(l, s)| record.since.get(l) != Some(s));
    Ok((
        Backlog {
            waiting,
            check,
            changed,
        },
        states,
    ))
}

/// Records each provider's backlog, in one transaction (the alerts
/// evaluator does, at each evaluation; it is the only writer).
pub async fn record(
    ledger: &Ledger,
    backlogs: &[(ProviderName, &Backlog)],
) -> Result<(), LedgerError> {
    let writes: Vec<PendingWrite> = backlogs
        .iter()
        .map(|(provider, b)| PendingWrite {
            provider: *provider,
            checked: b.check,
            since: &b.waiting,
            rows_changed: b.changed,
        })
        .collect();
    ledger.record_pending(&writes).await
}

/// One waiting listing's window of history.
pub struct Window<'a> {
    /// The listing as planned now (its rule, refused value).
    pub state: &'a ListingState,
    pub past: &'a ListingPast,
    /// Its history: movements after the last check only.
    pub history: &'a PendingHistory,
    /// Since when only movements changed its wanted value (its
    /// confirmation, its link's move, the last rules or bundles import);
    /// `None`: ever.
    pub replay_from: Option<i64>,
    /// When the record was last brought up to date: not recorded, it was
    /// in sync then.
    pub checked_at: Option<i64>,
    /// Its start as recorded at the last check, if it waited then.
    pub recorded: Option<i64>,
}

/// The SKUs a listing's ledger quantity is made of: its own with units 1,
/// or a bundle's parts.
fn parts_of<'a>(w: &'a Window<'a>) -> Vec<(&'a str, i64)> {
    let sku = w.past.sku.as_str();
    if w.history.stock.contains_key(sku) {
        return vec![(sku, 1)];
    }
    w.history.parts.get(sku).map_or_else(Vec::new, |p| {
        p.iter().map(|(s, per)| (s.as_str(), *per)).collect()
    })
}

/// The ledger quantity the listing's SQL reads for these quantities: the
/// SKU's own, or what its parts make (each above zero counted) when every
/// part has stock.
fn ledger_qty(parts: &[(&str, i64)], plain: bool, q: &HashMap<&str, i64>) -> Option<i64> {
    if plain {
        return parts.first().and_then(|(s, _)| q.get(s).copied());
    }
    if parts.is_empty() {
        return None;
    }
    parts
        .iter()
        .map(|(s, per)| q.get(s).map(|v| (*v).max(0) / (*per).max(1)))
        .collect::<Option<Vec<i64>>>()
        .and_then(|v| v.into_iter().min())
}

/// Since when the listing of `w` has waited (Unix ms): see the module.
pub fn since(w: &Window, rules: &Rules, started_ms: i64) -> i64 {
    let parts = parts_of(w);
    let plain = w.history.stock.contains_key(w.past.sku.as_str());
    let from = w.replay_from.unwrap_or(i64::MIN);
    // The window: since the last check, and since `replay_from` (a
    // movement in the same millisecond as a confirmation counts in it:
    // replaying it is right either way round). Its parts' movements in
    // journal order.
    let mut steps: Vec<&Step> = parts
        .iter()
        .filter_map(|(sku, _)| w.history.steps.get(*sku))
        .flatten()
        .filter(|s| s.at_ms >= from)
        .collect();
    steps.sort_by_key(|s| s.id);
    let start = w.replay_from.max(w.checked_at);
    // The quantities at the window's start: before its first step, or as
    // they are now.
    let mut q: HashMap<&str, i64> = HashMap::new();
    for (sku, _) in &parts {
        let first = steps.iter().find(|s| s.sku == *sku).map(|s| s.before);
        if let Some(v) = first.or_else(|| w.history.stock.get(*sku).copied()) {
            q.insert(sku, v);
        }
    }
    let differs = |q: &HashMap<&str, i64>, unsettled: bool| {
        let mut s = w.state.clone();
        s.ledger_qty = ledger_qty(&parts, plain, q);
        s.confirmed_qty = w.past.confirmed_qty;
        s.unsettled = unsettled;
        !plan::plan(std::slice::from_ref(&s), rules)
            .pushes
            .is_empty()
    };
    let doubt = w.past.unsettled_since_ms;
    let mut unsettled = doubt.is_some_and(|u| u < from);
    let mut now = differs(&q, unsettled);
    let mut rose: Option<i64> = None;
    let mut at = |t: i64, d: bool, now: &mut bool| {
        if d && !*now {
            rose = Some(t);
        }
        *now = d;
    };
    for s in &steps {
        if let Some(u) = doubt.filter(|u| !unsettled && *u <= s.at_ms) {
            unsettled = true;
            at(u, differs(&q, true), &mut now);
        }
        q.insert(s.sku.as_str(), s.after);
        at(s.at_ms, differs(&q, unsettled), &mut now);
    }
    if let Some(u) = doubt.filter(|_| !unsettled) {
        at(u, differs(&q, true), &mut now);
    }
    match rose {
        Some(t) if now => t,
        // It differed through the whole window (or the reads disagree): it
        // keeps the start recorded when it already waited; otherwise the
        // change came with the window's start (a confirmed value forgotten
        // by an order comes with that order's movement).
        _ => w.recorded.unwrap_or_else(|| {
            let forgotten = w
                .past
                .confirmed_qty
                .is_none()
                .then(|| steps.first().map(|s| s.at_ms))
                .flatten()
                .filter(|_| start.is_some());
            forgotten.unwrap_or_else(|| start.map_or(started_ms, |s| s.max(started_ms)))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderName;

    const T: i64 = 1_800_000_000_000;

    fn state(sku: &str) -> ListingState {
        ListingState {
            listing: ListingRef {
                provider: ProviderName::Pazarsync,
                listing_id: "p1".into(),
                variant_id: String::new(),
            },
            sku: sku.into(),
            ledger_qty: None,
            confirmed_qty: None,
            rejected_qty: None,
            unsettled: false,
            rule: None,
        }
    }

    fn past(sku: &str, confirmed: Option<(i64, i64)>) -> ListingPast {
        ListingPast {
            sku: sku.into(),
            confirmed_qty: confirmed.map(|c| c.0),
            confirmed_at_ms: confirmed.map(|c| c.1),
            unsettled_since_ms: None,
            moved_at_ms: None,
        }
    }

    /// SKUs as they are now (`stock`) after `steps` (sku, before, after,
    /// at), journaled in that order.
    fn history(stock: &[(&str, i64)], steps: &[(&str, i64, i64, i64)]) -> PendingHistory {
        let mut h = PendingHistory {
            stock: stock.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
            ..PendingHistory::default()
        };
        for (i, (sku, before, after, at)) in steps.iter().enumerate() {
            h.steps.entry(sku.to_string()).or_default().push(Step {
                id: i as i64 + 1,
                sku: sku.to_string(),
                before: *before,
                after: *after,
                at_ms: *at,
            });
        }
        h
    }

    fn since_of(
        past: &ListingPast,
        h: &PendingHistory,
        start: Option<i64>,
        recorded: Option<i64>,
        rules: &Rules,
    ) -> i64 {
        let st = state(&past.sku);
        since(
            &Window {
                state: &st,
                past,
                history: h,
                replay_from: start,
                checked_at: None,
                recorded,
            },
            rules,
            T - 3_600_000,
        )
    }

    #[test]
    fn a_sale_dates_the_wait_and_later_sales_do_not_move_it() {
        // Confirmed 5 at T; sold at T+10 s and T+20 s.
        let p = past("KALEM", Some((5, T)));
        let h = history(
            &[("KALEM", 3)],
            &[("KALEM", 5, 4, T + 10_000), ("KALEM", 4, 3, T + 20_000)],
        );
        let r = Rules::default();
        assert_eq!(since_of(&p, &h, Some(T), None, &r), T + 10_000);
        // Whatever the last check was, and recorded or not.
        assert_eq!(
            since_of(&p, &h, Some(T + 5_000), Some(T + 10_000), &r),
            T + 10_000
        );
    }

    #[test]
    fn a_wait_that_ended_and_began_again_counts_from_the_second_start() {
        // A sale, its cancellation, a new sale: in sync in between.
        let p = past("KALEM", Some((5, T)));
        let h = history(
            &[("KALEM", 4)],
            &[
                ("KALEM", 5, 4, T + 1_000),
                ("KALEM", 4, 5, T + 2_000),
                ("KALEM", 5, 4, T + 3_000),
            ],
        );
        assert_eq!(
            since_of(&p, &h, Some(T), Some(T + 1_000), &Rules::default()),
            T + 3_000
        );
    }

    #[test]
    fn moves_the_rules_absorb_do_not_start_a_wait() {
        // With 3 held back, 3 -> 2 shows 0 as before; 2 -> 5 shows 2.
        let rules = Rules::with_safety_stock(3);
        let p = past("KALEM", Some((0, T)));
        let h = history(
            &[("KALEM", 5)],
            &[("KALEM", 3, 2, T + 1_000), ("KALEM", 2, 5, T + 4_000)],
        );
        assert_eq!(since_of(&p, &h, Some(T), None, &rules), T + 4_000);
    }

    #[test]
    fn a_listing_that_differed_all_along_keeps_its_recorded_start() {
        // Confirmed 5 at T+5 s though 4 was wanted since T+1 s (a stale
        // confirmation), or a rules import at T+5 s: the wait goes on.
        let p = past("KALEM", Some((5, T + 5_000)));
        let h = history(&[("KALEM", 4)], &[("KALEM", 5, 4, T + 1_000)]);
        let r = Rules::default();
        assert_eq!(
            since_of(&p, &h, Some(T + 5_000), Some(T + 1_000), &r),
            T + 1_000
        );
        // Not waiting at the last check: dated by the window's start.
        assert_eq!(since_of(&p, &h, Some(T + 5_000), None, &r), T + 5_000);
        // With no movement to explain it, never before this process
        // started (a config it brought).
        let quiet = history(&[("KALEM", 4)], &[]);
        assert_eq!(since_of(&p, &quiet, None, None, &r), T - 3_600_000);
        assert_eq!(
            since_of(&p, &quiet, Some(T - 7_200_000), None, &r),
            T - 3_600_000
        );
        // A window reaching back before the sale finds it.
        assert_eq!(since_of(&p, &h, None, None, &r), T + 1_000);
    }

    #[test]
    fn a_forgotten_confirmation_is_dated_by_the_order_that_forgot_it() {
        let p = past("KALEM", None);
        let h = history(&[("KALEM", 4)], &[("KALEM", 5, 4, T + 2_000)]);
        assert_eq!(
            since_of(&p, &h, Some(T), None, &Rules::default()),
            T + 2_000
        );
    }

    #[test]
    fn a_push_in_doubt_keeps_a_listing_waiting_from_when_it_was_sent() {
        // In sync at T; a push at T+3 s lost its answer; meanwhile the
        // ledger went 5 -> 4 -> 5 (back to the confirmed value).
        let mut p = past("KALEM", Some((5, T)));
        p.unsettled_since_ms = Some(T + 3_000);
        let h = history(
            &[("KALEM", 5)],
            &[("KALEM", 5, 4, T + 1_000), ("KALEM", 4, 5, T + 5_000)],
        );
        assert_eq!(
            since_of(&p, &h, Some(T), None, &Rules::default()),
            T + 1_000,
            "it waited from the sale on, without a break"
        );
        let h = history(&[("KALEM", 5)], &[]);
        assert_eq!(
            since_of(&p, &h, Some(T), None, &Rules::default()),
            T + 3_000
        );
    }

    #[test]
    fn a_bundle_waits_from_the_move_of_the_part_that_lowered_it() {
        // SET = 2 x KALEM + 1 x DEFTER; confirmed 2 sets.
        let p = past("SET", Some((2, T)));
        let mut h = history(
            &[("KALEM", 3), ("DEFTER", 1)],
            &[
                ("KALEM", 5, 4, T + 1_000),  // still 2 sets
                ("DEFTER", 5, 1, T + 2_000), // 1 set
                ("KALEM", 4, 3, T + 3_000),  // still 1
            ],
        );
        h.parts.insert(
            "SET".into(),
            vec![("DEFTER".into(), 1), ("KALEM".into(), 2)],
        );
        assert_eq!(
            since_of(&p, &h, Some(T), None, &Rules::default()),
            T + 2_000
        );
    }

    /// Through the real ledger (either backend): a listing waits from the
    /// movement that made it differ, read before or after any record,
    /// through later movements and a restart (a new reader); a
    /// confirmation of the wanted value ends it.
    #[tokio::test]
    async fn a_listing_waits_from_its_movement_whoever_reads_and_until_confirmed() {
        use crate::domain::StockPush;
        use crate::ledger::{PushRecord, StockChange};
        let (_dir, ledger) = crate::ledger::test_support::temp_ledger().await;
        let pz = ProviderName::Pazarsync;
        let rules = Rules::default();
        let l = state("KALEM").listing;
        ledger
            .import_stock(&[("KALEM".into(), 5)], "b1", "seed")
            .await
            .unwrap();
        ledger
            .import_mappings(&[("KALEM".into(), l.clone())])
            .await
            .unwrap();
        let started = now_ms();
        let b = read(&ledger, &rules, pz, started).await.unwrap();
        assert_eq!(b.len(), 1, "never confirmed: it waits");
        let mut push = vec![StockPush::new(l.clone(), 5)];
        ledger.mark_attempted(&mut push).await.unwrap();
        ledger
            .record_push(&l, PushRecord::Confirmed(5))
            .await
            .unwrap();
        let b = read(&ledger, &rules, pz, started).await.unwrap();
        assert!(b.is_empty() && !b.changed, "{b:?}");
        record(&ledger, &[(pz, &b)]).await.unwrap();

        let sold = |key: &'static str| {
            let ledger = ledger.clone();
            async move {
                ledger
                    .erp_movement("KALEM", StockChange::By(-1), "sold by hand", key)
                    .await
                    .unwrap();
                ledger
                    .history("KALEM")
                    .await
                    .unwrap()
                    .last()
                    .unwrap()
                    .created_at_ms
            }
        };
        let at = sold("s1").await;
        let b = read(&ledger, &rules, pz, now_ms()).await.unwrap();
        assert_eq!(b.waiting, [(l.clone(), at)]);
        assert!(b.changed);
        record(&ledger, &[(pz, &b)]).await.unwrap();
        // Later sales, and a new process (a later start): the same start.
        sold("s2").await;
        let again = read(&ledger, &rules, pz, now_ms() + 60_000).await.unwrap();
        assert_eq!(again.waiting, [(l.clone(), at)]);
        assert!(!again.changed);
        record(&ledger, &[(pz, &again)]).await.unwrap();
        let waited = again.waited(at + 12_000).unwrap();
        assert_eq!(waited, Duration::from_secs(12));

        // A rules import that leaves it differing: it keeps waiting from
        // the sale.
        ledger
            .import_rules(
                &[crate::ledger::RuleRow {
                    line: 1,
                    sku: "KALEM".into(),
                    provider: pz,
                    set: crate::rules::RuleSet::default().with(crate::rules::Field::SafetyStock, 1),
                }],
                "rules.csv",
            )
            .await
            .unwrap();
        let b = read(&ledger, &rules, pz, now_ms()).await.unwrap();
        assert_eq!(b.waiting, [(l.clone(), at)]);
        record(&ledger, &[(pz, &b)]).await.unwrap();

        // Confirmed at what it wants now: nothing waits.
        let want = 2; // 3 in stock, 1 held back
        let mut push = vec![StockPush::new(l.clone(), want)];
        ledger.mark_attempted(&mut push).await.unwrap();
        ledger
            .record_push(&l, PushRecord::Confirmed(want))
            .await
            .unwrap();
        let b = read(&ledger, &rules, pz, now_ms()).await.unwrap();
        assert!(b.is_empty() && b.changed, "{b:?}");
        record(&ledger, &[(pz, &b)]).await.unwrap();
        assert!(ledger.pending_record(pz).await.unwrap().since.is_empty());
    }
}
