//! The invariants every world must keep: safety at rest (the ledger is
//! exact, each order line moved it once, no limit broken, no request
//! wasted), what the logs may not hold, and liveness along the run (sales
//! reach every other channel in time, polls keep their pace, the first
//! sync ends within the bound its limits imply, the daemon makes progress
//! while a listing is wrong, the backlog alert fires and resolves in time).

use crate::model::{self, Catalog, Fakes};
use crate::run::{Record, Report};
use crate::world::{SECRETS, Setup, WINDOW};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use stoksync::domain::ProviderName;
use stoksync::ledger::Ledger;

/// The window our limiter keeps (the provider's plus its margin).
const SPAN_MS: i64 = 60_500;
/// Slack on every latency bound: a poll, an apply, a push round's start.
const SLACK_MS: i64 = 5_000;

/// The most instants (ms) inside any window of `window_ms`.
fn busiest(times: &[i64], window_ms: i64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= window_ms {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// The invariants on the world at rest.
pub async fn at_rest(
    s: &Setup,
    f: &Fakes,
    c: &Catalog,
    ledger: &Ledger,
    erp: &BTreeMap<String, i64>,
    report: &mut Report,
) {
    let fail = &mut report.failures;
    // The ledger holds what the model says.
    let want = model::expected(s, f, c, erp);
    for (sku, q) in &want {
        match ledger.stock_of(sku).await {
            Ok(Some(got)) if got == *q => {}
            got => fail.push(format!("ledger {sku} = {got:?}, the model says {q}")),
        }
    }
    let journal = match ledger.movements_with_prefix("").await {
        Ok(j) => j,
        Err(e) => {
            fail.push(format!("the journal cannot be read: {e}"));
            return;
        }
    };
    // Every order line moved the ledger exactly once per change of the
    // units it holds: its movements add up to what it holds now.
    let lines = model::lines(s, f, c);
    for l in &lines {
        let net: i64 = journal
            .iter()
            .filter(|m| m.idempotency_key.starts_with(l.prefix.as_str()) && m.sku == l.sku)
            .map(|m| m.delta)
            .sum();
        if net != -l.holds {
            fail.push(format!(
                "order line {} ({}): its movements add up to {net}, it holds {}",
                l.prefix, l.sku, l.holds
            ));
        }
    }
    for m in &journal {
        if (m.kind == "order_hold" || m.kind == "order_release")
            && !lines
                .iter()
                .any(|l| m.idempotency_key.starts_with(l.prefix.as_str()))
        {
            fail.push(format!(
                "journal key {}: no such order line",
                m.idempotency_key
            ));
        }
    }
    // No phantom hand edit: the journal's hand-made units are the panel's.
    let made = model::hand_edits(f, c);
    for sku in c.skus() {
        let journaled: i64 = journal
            .iter()
            .filter(|m| &m.sku == sku && m.kind == "external")
            .map(|m| m.delta)
            .sum();
        let panel = made.get(sku).copied().unwrap_or(0);
        if journaled != panel {
            fail.push(format!(
                "{sku}: {journaled:+} journaled as hand edits, {panel:+} edited in the panel"
            ));
        }
    }
    // One row per key.
    let mut keys = HashSet::new();
    for m in &journal {
        if !keys.insert(m.idempotency_key.as_str()) {
            fail.push(format!("journal key {} twice", m.idempotency_key));
        }
    }
    // Limits, as the providers saw them and as our request log holds them,
    // across every restart.
    for p in ProviderName::ALL {
        let plan = s.limits.of(p);
        if let Some((theirs, ours)) = plan.per_minute {
            let times = ledger.request_times_since(p, 0).await.unwrap_or_default();
            let b = busiest(&times, WINDOW.as_millis() as i64);
            if b > ours as usize {
                fail.push(format!(
                    "{p}: {b} requests in one window by the request log, limit {ours}"
                ));
            }
            let seen = f.get(p).counters().max_per_minute;
            if seen > theirs as usize {
                fail.push(format!(
                    "{p}: {seen} requests arrived in one window, the provider allows {theirs}"
                ));
            }
        }
    }
    for fake in f.all() {
        let k = fake.counters();
        if k.limit_violations > 0 {
            fail.push(format!(
                "{}: {} answers for going past a limit ({} past the daily quota)",
                fake.provider(),
                k.limit_violations,
                k.daily_violations
            ));
        }
        if k.noop_writes > 0 {
            fail.push(format!(
                "{}: {} write(s) set the value the listing already showed: {:?}",
                fake.provider(),
                k.noop_writes,
                k.noop_examples
            ));
        }
        if k.expired_tokens > 0 {
            fail.push(format!(
                "{}: {} request(s) carried an expired token: {:?}",
                fake.provider(),
                k.expired_tokens,
                k.expired_token_examples
            ));
        }
        if k.auth_failures > k.expired_tokens && fake.provider() != ProviderName::Pazarsync {
            fail.push(format!(
                "{}: {} request(s) refused for their credentials",
                fake.provider(),
                k.auth_failures
            ));
        }
    }
}

/// What no life's log may hold: a secret, a token, a panic, a ledger
/// database error (an error logged and retried hid a broken PostgreSQL
/// backend through every test once).
pub fn log(i: usize, logs: &str, report: &mut Report) {
    let fail = &mut report.failures;
    for secret in SECRETS {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            fail.push(format!("life {i}: a secret in the log: {line}"));
        }
    }
    if let Some(line) = logs.lines().find(|l| l.contains("tok_")) {
        fail.push(format!("life {i}: an access token in the log: {line}"));
    }
    for bad in [
        "panicked",
        "ended abnormally",
        "ledger database error",
        "database is locked",
    ] {
        if let Some(line) = logs.lines().find(|l| l.contains(bad)) {
            fail.push(format!("life {i}: {line}"));
        }
    }
}

/// How many requests a provider needs to set `n` listings.
fn pushes_for(p: ProviderName, n: usize) -> usize {
    match p {
        // One listing per request.
        ProviderName::Bazaardan | ProviderName::Stokdurumu => n,
        // 30 entries a call (the seed).
        ProviderName::Eticaret => n.div_ceil(30),
        // 100 items a batch.
        ProviderName::Pazarsync => n.div_ceil(100),
    }
}

/// Reads a discovery of `n` listings takes (page sizes from the seeds).
fn pages_for(p: ProviderName, n: usize) -> usize {
    match p {
        ProviderName::Bazaardan => 0,
        ProviderName::Stokdurumu | ProviderName::Pazarsync => n.div_ceil(100).max(1),
        ProviderName::Eticaret => n.div_ceil(50).max(1),
    }
}

/// The bound a first sync's limits imply: for each provider with a
/// per-minute limit L (ours), the requests it needs R (every listing
/// pushed, its product list read once, an order poll every poll interval
/// meanwhile) take a window for each L of them: T = 60.5 s × R / L, where
/// R counts the polls over T itself. The slowest provider decides.
pub fn first_sync_bound(s: &Setup, c: &Catalog, poll: Duration) -> Duration {
    let mut worst = 0f64;
    for p in ProviderName::ALL {
        let Some((_, ours)) = s.limits.of(p).per_minute else {
            continue;
        };
        let n = c.of(p).count();
        let fixed = (pushes_for(p, n) + pages_for(p, n)) as f64;
        // Requests per second spent on polls (one list page each).
        let per_poll = if p == ProviderName::Stokdurumu {
            0.0
        } else {
            1.0
        };
        let poll_rate = per_poll / poll.as_secs_f64();
        let rate = f64::from(ours) / SPAN_MS as f64 * 1000.0;
        if poll_rate >= rate {
            continue;
        }
        let t = fixed / (rate - poll_rate);
        worst = worst.max(t);
    }
    Duration::from_secs_f64(worst)
}

/// Whether a fault hit `p` within `[from, to]` (a pause it asked for, a
/// retry's backoff and its timeouts follow).
fn faulted(f: &Fakes, p: ProviderName, from: i64, to: i64) -> bool {
    f.get(p)
        .counters()
        .fault_log
        .iter()
        .any(|(at, _)| *at >= from && *at <= to)
}

/// Whether the daemon ran all along `[from, to]`.
fn up_throughout(r: &Record, from: i64, to: i64) -> bool {
    r.up.iter().any(|(a, b)| *a <= from && *b >= to)
}

/// Our requests to `p` in `(from, to]`, from the trace.
fn requests_to(trace: &[(i64, ProviderName)], p: ProviderName, from: i64, to: i64) -> usize {
    trace
        .iter()
        .filter(|(t, q)| *q == p && *t > from && *t <= to)
        .count()
}

/// The limit's bound: whether `p`'s window (limit `ours`) had no permit
/// for a push at `at`, by what we sent. Pushes get what the window leaves
/// once room is kept for the polls due before its oldest request leaves,
/// and for one order the next poll finds; when that is used up, a push
/// may wait for the window to turn, one window more.
fn window_full(
    sent: &[(i64, ProviderName)],
    p: ProviderName,
    at: i64,
    poll_ms: i64,
    ours: usize,
) -> bool {
    let inside: Vec<i64> = sent
        .iter()
        .filter(|(t, q)| *q == p && *t > at - SPAN_MS && *t <= at)
        .map(|(t, _)| *t)
        .collect();
    let Some(first) = inside.first() else {
        return false;
    };
    let polls = ((first + SPAN_MS - at).max(0) / poll_ms.max(1)) as usize;
    inside.len() + polls + 2 > ours
}

pub fn provider_of(url: &str) -> Option<ProviderName> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    ProviderName::ALL
        .into_iter()
        .find(|p| host.starts_with(&format!("{p}.")))
}

/// Liveness, along the run.
pub fn liveness(s: &Setup, f: &Fakes, c: &Catalog, r: &Record, report: &mut Report) {
    let poll_ms = s.poll.as_millis() as i64;
    // (ms, provider, path) of every exchange of ours.
    let trace: Vec<(i64, ProviderName, String)> = r
        .trace
        .iter()
        .filter_map(|line| {
            let mut it = line.split(' ');
            let at: i64 = it.next()?.parse().ok()?;
            let _method = it.next()?;
            let url = it.next()?;
            Some((at, provider_of(url)?, url.to_string()))
        })
        .collect();
    let sent: Vec<(i64, ProviderName)> = trace.iter().map(|(t, p, _)| (*t, *p)).collect();
    let quota_hit = |p: ProviderName| f.get(p).counters().daily_violations > 0;

    // The first sync ends within 1.1 times the bound its limits imply.
    if let Some((from, to)) = r.first_sync {
        let bound = first_sync_bound(s, c, s.poll).as_millis() as i64;
        let took = to - from;
        let allowed = bound + bound / 10 + poll_ms + SLACK_MS;
        if took > allowed {
            report.failures.push(format!(
                "the first sync took {:.1} s; its limits allow {:.1} s (1.1 × {:.1} s + a poll + 5 s)",
                took as f64 / 1000.0,
                allowed as f64 / 1000.0,
                bound as f64 / 1000.0
            ));
        }
        report.notes.push(format!(
            "first sync {:.1} s of a {:.1} s bound",
            took as f64 / 1000.0,
            bound as f64 / 1000.0
        ));
    }

    // Every sale shows on every other channel within poll_interval + 5 s,
    // or, when that channel's window was full, within one window more: the
    // daemon applies it by its next poll, and every other listing of what
    // it moved is set, by then, to no more than what the ledger allowed
    // once it was applied (the ledger's quantities, not the model's, so a
    // sale elsewhere the daemon could not have seen yet is not counted
    // against this one; the ledger itself is held to the model at rest).
    let (mut checked, mut excused) = (0usize, 0usize);
    let mut excuses: BTreeMap<&str, usize> = BTreeMap::new();
    for sale in &r.sales {
        let p = sale.listing.provider;
        let due = sale.at_ms + poll_ms + SLACK_MS;
        let why = if !up_throughout(r, sale.at_ms - poll_ms, due) {
            Some("restart")
        } else if faulted(f, p, sale.at_ms - SPAN_MS, due) {
            Some("fault")
        } else if quota_hit(p) {
            Some("quota")
        } else {
            None
        };
        if let Some(why) = why {
            *excuses.entry(why).or_insert(0usize) += 1;
            excused += 1;
            continue;
        }
        let applied = r
            .journal
            .iter()
            .filter(|(_, _, key, kind, _)| key.starts_with(&sale.line) && kind == "order_hold")
            .map(|(t, ..)| *t)
            .min();
        let Some(applied) = applied else {
            // Never held: cancelled before a poll saw it (a line missed
            // outright fails the line check at rest).
            *excuses.entry("never held").or_insert(0usize) += 1;
            excused += 1;
            continue;
        };
        // Its own window full, a lowering push elsewhere may have delayed
        // this channel's poll by an interval (the limiter's design): then
        // the poll-gap bound, 2 × poll_interval + 5 s.
        let apply_by = match s.limits.of(p).per_minute {
            Some((_, ours)) if requests_to(&sent, p, due - SPAN_MS, due) + 1 >= ours as usize => {
                sale.at_ms + 2 * poll_ms + SLACK_MS
            }
            _ => due,
        };
        let Some(applied) = Some(applied).filter(|t| *t <= apply_by) else {
            report.failures.push(format!(
                "a sale on {} at {} ({}) was applied to the ledger at {applied:?}, later than its poll allows ({apply_by})",
                sale.listing, sale.at_ms, sale.line
            ));
            continue;
        };
        let due = due.max(applied + SLACK_MS);
        // The ledger's quantity of a SKU at `ms`, by the journal.
        let ledger_at = |sku: &str, ms: i64| {
            r.journal
                .iter()
                .filter(|(t, s, ..)| s == sku && *t <= ms)
                .map(|(.., after)| *after)
                .next_back()
        };
        for (part, _) in c.parts_of(&sale.sku) {
            for (other, sku) in c.depending_on(&part) {
                if other.provider == p {
                    continue;
                }
                if !sale.shown.iter().any(|(l, _)| l == other) {
                    // Changed where the daemon could not see it yet.
                    excused += 1;
                    continue;
                }
                let q = other.provider;
                let mut deadline = due;
                if let Some((_, ours)) = s.limits.of(q).per_minute
                    && window_full(&sent, q, applied, poll_ms, ours as usize)
                {
                    deadline += SPAN_MS;
                }
                if faulted(f, q, sale.at_ms - SPAN_MS, deadline)
                    || quota_hit(q)
                    || !up_throughout(r, sale.at_ms, deadline)
                {
                    excused += 1;
                    continue;
                }
                // The most it may show: what the ledger allowed once the
                // sale was in, or later within the deadline (a restock).
                let most = r
                    .journal
                    .iter()
                    .filter(|(t, ..)| *t >= applied && *t <= deadline)
                    .map(|(t, ..)| *t)
                    .chain([applied])
                    .filter_map(|t| {
                        let have: BTreeMap<String, i64> = c
                            .parts_of(sku)
                            .iter()
                            .filter_map(|(k, _)| ledger_at(k, t).map(|q| (k.clone(), q)))
                            .collect();
                        c.wanted(s, sku, &have)
                    })
                    .max();
                let Some(most) = most else { continue };
                let writes = f.get(q).timed_writes();
                let key = stoksync::sandbox::listing_key(other);
                let last = writes
                    .iter()
                    .rfind(|(t, l, _, _)| l == &key && *t >= sale.at_ms && *t <= deadline);
                let at_sale = sale
                    .shown
                    .iter()
                    .find(|(l, _)| l == other)
                    .and_then(|(_, v)| *v);
                let shown = last.map(|w| w.3).or(at_sale);
                checked += 1;
                if shown.is_some_and(|v| v <= most) {
                    continue;
                }
                report.failures.push(format!(
                    "a sale of {} on {} at {} (applied at {applied}) did not reach {other} by {} (+{:.1} s): it may show at most {most}, it shows {shown:?} (showed {at_sale:?} at the sale; last write since {last:?})",
                    sale.sku,
                    sale.listing,
                    sale.at_ms,
                    deadline,
                    (deadline - sale.at_ms) as f64 / 1000.0,
                ));
            }
        }
    }
    report.notes.push(format!(
        "sale latency: {checked} checked, {excused} excused: {excuses:?}"
    ));

    // No provider's order polls are ever further apart than
    // 2 × poll_interval + 5 s.
    for p in [
        ProviderName::Bazaardan,
        ProviderName::Eticaret,
        ProviderName::Pazarsync,
    ] {
        let polls: Vec<i64> = trace
            .iter()
            .filter(|(_, q, url)| *q == p && is_order_poll(p, url))
            .map(|(t, _, _)| *t)
            .collect();
        let most = 2 * poll_ms + SLACK_MS;
        for w in polls.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b - a > most
                && up_throughout(r, a, b)
                && !faulted(f, p, a - SPAN_MS, b)
                && !quota_hit(p)
            {
                report.failures.push(format!(
                    "{p}: order polls {:.1} s apart ({} -> {}), at most {:.1} s",
                    (b - a) as f64 / 1000.0,
                    a,
                    b,
                    most as f64 / 1000.0
                ));
                break;
            }
        }
    }

    // Progress: while a provider's listings are wrong, it is written to at
    // least once in every window (a poll and a window's wait included).
    for p in ProviderName::ALL {
        let writes: Vec<i64> = f.get(p).timed_writes().iter().map(|w| w.0).collect();
        let samples: Vec<(i64, usize)> = r
            .wrong
            .iter()
            .filter(|(_, q, _)| *q == p)
            .map(|(t, _, n)| (*t, *n))
            .collect();
        let mut since: Option<i64> = None;
        for (t, n) in samples {
            if n == 0 {
                since = None;
                continue;
            }
            let from = *since.get_or_insert(t);
            let most = SPAN_MS + poll_ms + SLACK_MS;
            if t - from > most {
                let wrote = writes.iter().any(|w| *w > t - most && *w <= t);
                if !wrote
                    && up_throughout(r, t - most, t)
                    && !faulted(f, p, t - most - SPAN_MS, t)
                    && !quota_hit(p)
                {
                    report.failures.push(format!(
                        "{p}: {n} listing(s) wrong for {:.1} s and no write in the last {:.1} s (at {t})",
                        (t - from) as f64 / 1000.0,
                        most as f64 / 1000.0
                    ));
                    break;
                }
            }
        }
    }

    // The backlog alert fires within its threshold (plus a poll, an
    // evaluation and slack) of a provider's listings going wrong, and
    // resolves within an evaluation (and slack) of them all being right.
    let period = 5_000.min(poll_ms).max(100);
    let backlog = s.backlog_after.as_millis() as i64;
    for p in ProviderName::ALL {
        let open_at = |t: i64| {
            let mut open = false;
            for (at, k, o) in &r.alerts {
                if *at > t {
                    break;
                }
                if k.starts_with("backlog") && k.contains(p.as_str()) {
                    open = *o;
                }
            }
            open
        };
        let samples: Vec<(i64, usize, usize)> = r
            .wrong
            .iter()
            .zip(&r.unknown)
            .filter(|((_, q, _), _)| *q == p)
            .map(|((t, _, n), (_, _, u))| (*t, *n, *u))
            .collect();
        // Open at some moment in `[a, b]`.
        let open_during = |a: i64, b: i64| {
            open_at(a)
                || r.alerts.iter().any(|(at, k, o)| {
                    *o && *at > a && *at <= b && k.starts_with("backlog") && k.contains(p.as_str())
                })
        };
        // Each episode is judged once, at its first sample past its due.
        let (mut since, mut judged): (Option<i64>, bool) = (None, false);
        let (mut right_since, mut right_judged): (Option<i64>, bool) = (None, false);
        for (t, n, u) in samples {
            if n > 0 {
                right_since = None;
                let from = *since.get_or_insert_with(|| {
                    judged = false;
                    t
                });
                let due = from + backlog + poll_ms + period + SLACK_MS;
                if t >= due && !judged {
                    judged = true;
                    if up_throughout(r, from, t) && !open_during(from + backlog, t) {
                        report.failures.push(format!(
                            "{p}: listings waiting since {from} and no backlog alert by {t} ({:.1} s later; threshold {:.0} s)",
                            (t - from) as f64 / 1000.0,
                            backlog as f64 / 1000.0
                        ));
                    }
                }
            } else if u > 0 {
                // Not known to be right: neither clock runs.
                since = None;
                right_since = None;
            } else {
                since = None;
                let from = *right_since.get_or_insert_with(|| {
                    right_judged = false;
                    t
                });
                let due = from + period + SLACK_MS;
                if t >= due && !right_judged {
                    right_judged = true;
                    if up_throughout(r, from, t) && open_at(t) {
                        report.failures.push(format!(
                            "{p}: nothing waiting since {from} and the backlog alert still open at {t}"
                        ));
                    }
                }
            }
        }
    }
}

/// Whether `url` is `p`'s order list (its poll), not a detail or a page of
/// something else.
pub fn is_order_poll(p: ProviderName, url: &str) -> bool {
    match p {
        ProviderName::Bazaardan => url.contains("/orders.php?"),
        ProviderName::Eticaret => url.contains("/order/lists?"),
        ProviderName::Pazarsync => url.contains("/api/v1/orders?"),
        ProviderName::Stokdurumu => false,
    }
}
