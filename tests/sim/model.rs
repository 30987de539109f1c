//! The model, written apart from the code under test: what the ledger must
//! hold, computed only from what the fakes recorded (the orders customers
//! placed and what became of them, the counts edited by hand in the
//! stokdurumu panel) and the ERP movements the world made; and the
//! invariants every world must keep.

use crate::daemon::End;
use crate::world::{Fakes, SECRETS, Setup, WINDOW};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::ledger::{Ledger, StockChange};
use tokio::time::Instant;

/// The bundle's SKU, in the worlds that have one.
pub const KIT: &str = "SIM-KIT";

/// Every listing of the world and its SKU, in the order they were made,
/// and the bundles (SKU -> parts, units each).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    listings: Vec<(ListingRef, String)>,
    bundles: BTreeMap<String, Vec<(String, i64)>>,
}

impl Catalog {
    pub fn add(&mut self, l: ListingRef, sku: &str) {
        self.listings.push((l, sku.to_string()));
    }

    pub fn bundle(&mut self, sku: &str, parts: &[(String, i64)]) {
        self.bundles.insert(sku.to_string(), parts.to_vec());
    }

    /// What `sku` must show of the ledger `want`: its own quantity, or for
    /// a bundle the fewest whole bundles its parts make.
    fn available(&self, sku: &str, want: &BTreeMap<String, i64>) -> Option<i64> {
        match self.bundles.get(sku) {
            None => want.get(sku).copied(),
            Some(parts) => parts
                .iter()
                .map(|(p, n)| want.get(p).map(|q| q.max(&0) / n))
                .try_fold(i64::MAX, |m, q| q.map(|q| m.min(q))),
        }
    }

    pub fn of(&self, p: ProviderName) -> impl Iterator<Item = (&ListingRef, &str)> {
        self.listings
            .iter()
            .filter(move |(l, _)| l.provider == p)
            .map(|(l, s)| (l, s.as_str()))
    }

    pub fn all(&self) -> impl Iterator<Item = (&ListingRef, &str)> {
        self.listings.iter().map(|(l, s)| (l, s.as_str()))
    }

    /// The SKUs with stock (not bundles).
    pub fn skus(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, s) in &self.listings {
            if !out.contains(s) && !self.bundles.contains_key(s) {
                out.push(s.clone());
            }
        }
        out
    }

    fn sku(&self, p: ProviderName, listing_id: &str, variant_id: &str) -> Option<&str> {
        self.listings
            .iter()
            .find(|(l, _)| {
                l.provider == p && l.listing_id == listing_id && l.variant_id == variant_id
            })
            .map(|(_, s)| s.as_str())
    }

    pub fn orders(&self, f: &Fakes) -> usize {
        f.bz.items().len() + f.v2.orders().len() + f.ps.orders().len()
    }
}

/// Whether a line in `status` holds its units (PROTOCOL.md, per provider).
fn holds(p: ProviderName, status: &str, restock_returns: bool) -> bool {
    let returned = !restock_returns;
    match p {
        ProviderName::Bazaardan => match status {
            "cancelled" => false,
            "returned" => returned,
            _ => true,
        },
        ProviderName::Eticaret => match status {
            "5" => false,
            "4" => returned,
            _ => true,
        },
        _ => match status {
            "cancelled" => false,
            "returned" => returned,
            _ => true,
        },
    }
}

/// An ERP movement the world made (and the ledger applied).
#[derive(Debug, Clone)]
pub struct Erp {
    pub key: String,
    pub sku: String,
    pub change: StockChange,
}

/// Every order line the fakes hold, per SKU it moves: its journal key
/// prefix (`provider/item/KEY/`), SKU, units, whether its status holds, and
/// whether its quantity changed after it was placed. A bundle's line moves
/// each of its parts (units times the part's count), under one prefix.
fn lines(s: &Setup, f: &Fakes, c: &Catalog) -> Vec<(String, String, i64, bool, bool)> {
    let mut out = Vec::new();
    let resized = f.bz.resized_items();
    let mut add = |p: ProviderName, key: String, sku: Option<&str>, qty: i64, status: &str| {
        if let Some(sku) = sku {
            let changed = p == ProviderName::Bazaardan
                && key.parse().is_ok_and(|id: u64| resized.contains(&id));
            let parts = match c.bundles.get(sku) {
                Some(parts) => parts.clone(),
                None => vec![(sku.to_string(), 1)],
            };
            for (part, n) in parts {
                out.push((
                    format!("{p}/item/{key}/"),
                    part,
                    qty * n,
                    holds(p, status, s.restock_returns),
                    changed,
                ));
            }
        }
    };
    for (id, product, variant, qty, status) in f.bz.items() {
        let variant = variant.map(|v| v.to_string()).unwrap_or_default();
        let sku = c.sku(ProviderName::Bazaardan, &product.to_string(), &variant);
        add(ProviderName::Bazaardan, id.to_string(), sku, qty, &status);
    }
    for (id, status, ls) in f.v2.orders() {
        for (n, (code, _, qty)) in ls.into_iter().enumerate() {
            let sku = c.sku(ProviderName::Eticaret, &code, "");
            add(
                ProviderName::Eticaret,
                format!("{id}/{}", n + 1),
                sku,
                qty as i64,
                &status.to_string(),
            );
        }
    }
    for (id, status, items) in f.ps.orders() {
        for (iid, pid, _, qty) in items {
            let sku = c.sku(ProviderName::Pazarsync, &pid, "");
            add(
                ProviderName::Pazarsync,
                format!("{id}/{iid}"),
                sku,
                qty,
                &status,
            );
        }
    }
    out
}

/// What each SKU must hold now. Without ERP counts (sets) that is the
/// initial count, the ERP adjustments, the orders that hold and the hand
/// edits, all from what the world did and the fakes recorded. A count sets
/// a SKU outright at the moment the ledger applies it, so after one, the
/// SKU is the count plus what the ledger applied after it: the journal
/// gives only the order of events, the sizes come from the fakes (an order
/// line's quantity) and the world (an adjustment). Hand edits after a count
/// are taken as journaled; their totals are checked against the panel
/// separately.
pub async fn expected(
    s: &Setup,
    f: &Fakes,
    c: &Catalog,
    ledger: &Ledger,
    erp: &[Erp],
) -> Result<BTreeMap<String, i64>, String> {
    let lines = lines(s, f, c);
    let journal = ledger
        .movements_with_prefix("")
        .await
        .map_err(|e| e.to_string())?;
    let mut want = BTreeMap::new();
    for (sku, initial) in &s.skus {
        let mine: Vec<_> = journal.iter().filter(|m| &m.sku == sku).collect();
        let last_set = mine.iter().rposition(|m| m.kind == "erp_set");
        let (mut q, after) = match last_set {
            Some(i) => {
                let m = mine[i];
                let world = if m.idempotency_key.starts_with("erp/import/") {
                    Some(*initial)
                } else {
                    erp.iter()
                        .find(|e| e.key == m.idempotency_key && &e.sku == sku)
                        .and_then(|e| match e.change {
                            StockChange::To(v) => Some(v),
                            StockChange::By(_) => None,
                        })
                };
                if world != Some(m.quantity_after) {
                    return Err(format!(
                        "{sku}: the count {} left {} in the ledger, the world counted {world:?}",
                        m.idempotency_key, m.quantity_after
                    ));
                }
                (m.quantity_after, &mine[i + 1..])
            }
            None => (0, &mine[..]),
        };
        for m in after {
            let k = &m.idempotency_key;
            q += match m.kind.as_str() {
                "order_hold" | "order_release" => {
                    let Some((_, _, qty, _, resized)) = lines
                        .iter()
                        .find(|(p, s, ..)| k.starts_with(p.as_str()) && s == sku)
                    else {
                        return Err(format!("journal key {k}: no such order line in any fake"));
                    };
                    // A line whose quantity changed moved by the steps the
                    // ledger saw (which polls saw which quantity is not the
                    // world's to say); `check_lines` holds their sum to the
                    // line's quantity.
                    if *resized {
                        m.delta
                    } else if m.kind == "order_hold" {
                        -qty
                    } else {
                        *qty
                    }
                }
                "erp_adjust" => match erp.iter().find(|e| &e.key == k && &e.sku == sku) {
                    Some(Erp {
                        change: StockChange::By(d),
                        ..
                    }) => *d,
                    _ => {
                        return Err(format!(
                            "journal key {k}: the world made no such adjustment"
                        ));
                    }
                },
                _ => m.delta,
            };
        }
        // Lines the ledger has not (fully) applied yet: what is missing
        // comes after everything journaled, the last count included.
        for (prefix, line_sku, qty, holds, _) in &lines {
            if line_sku != sku {
                continue;
            }
            let journaled: i64 = mine
                .iter()
                .filter(|m| m.idempotency_key.starts_with(prefix.as_str()))
                .map(|m| m.delta)
                .sum();
            q += if *holds { -qty } else { 0 } - journaled;
        }
        want.insert(sku.clone(), q);
    }
    Ok(want)
}

/// Each order line moved the ledger exactly once per change of the units it
/// holds: its movements add up to minus its quantity while it holds, to
/// nothing once released (or if it was placed and cancelled unseen).
pub async fn check_lines(s: &Setup, f: &Fakes, c: &Catalog, ledger: &Ledger) -> Vec<String> {
    let journal = ledger.movements_with_prefix("").await.unwrap_or_default();
    let mut out = Vec::new();
    let all = lines(s, f, c);
    for (prefix, sku, qty, holds, _) in &all {
        let net: i64 = journal
            .iter()
            .filter(|m| m.idempotency_key.starts_with(prefix.as_str()) && &m.sku == sku)
            .map(|m| m.delta)
            .sum();
        let want = if *holds { -qty } else { 0 };
        if net != want {
            out.push(format!(
                "order line {prefix} ({sku}): its movements add up to {net}, it should be {want}"
            ));
        }
    }
    for m in &journal {
        if (m.kind == "order_hold" || m.kind == "order_release")
            && !all
                .iter()
                .any(|(p, ..)| m.idempotency_key.starts_with(p.as_str()))
        {
            out.push(format!(
                "journal key {}: no such order line",
                m.idempotency_key
            ));
        }
    }
    out
}

/// Units edited by hand in the stokdurumu panel, per SKU.
fn hand_edits(f: &Fakes, c: &Catalog) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (id, old, new) in f.sd.hand_edits() {
        if let Some(sku) = c.sku(ProviderName::Stokdurumu, &id.to_string(), "") {
            *out.entry(sku.to_string()).or_default() += new - old;
        }
    }
    out
}

/// Moves this world's calendar to just past the next 00:00 Turkey time, as
/// if the night had passed: daily quotas start afresh.
pub fn jump_past_midnight(shift: &Arc<AtomicI64>) {
    let now = stoksync::clock::now_utc();
    let midnight = stoksync::domain::next_turkey_midnight(now);
    let by = (midnight - now).num_milliseconds() + 1_000;
    shift.fetch_add(by, Ordering::SeqCst);
}

/// Waits until the ledger holds what the model says for every SKU, every
/// listing shows its SKU's quantity less the safety stock, and no push is
/// unsettled.
pub async fn converge(
    s: &Setup,
    f: &Fakes,
    c: &Catalog,
    ledger: &Ledger,
    erp: &[Erp],
    limit: Duration,
) -> Result<BTreeMap<String, i64>, String> {
    let until = Instant::now() + limit;
    loop {
        let want = expected(s, f, c, ledger, erp).await?;
        let mut diff = differences(s, f, c, ledger, &want).await;
        // Totals can agree while lines do not (a cancellation and a new
        // order of the same size not yet polled): wait for the lines too.
        if diff.is_empty() {
            diff = check_lines(s, f, c, ledger).await;
        }
        if diff.is_empty() {
            return Ok(want);
        }
        if Instant::now() > until {
            return Err(diff.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn differences(
    s: &Setup,
    f: &Fakes,
    c: &Catalog,
    ledger: &Ledger,
    want: &BTreeMap<String, i64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (sku, q) in want {
        let got = ledger.stock_of(sku).await.ok().flatten();
        if got != Some(*q) {
            out.push(format!("ledger {sku} = {got:?}, the model says {q}"));
        }
    }
    for (l, sku) in c.all() {
        let shows = f.get(l.provider).stock(l);
        let should = c.available(sku, want).map(|q| (q - s.safety).max(0));
        if shows != should {
            out.push(format!(
                "{l} ({sku}) shows {shows:?}, should show {should:?}"
            ));
        }
    }
    for p in ProviderName::ALL {
        if let Ok(u) = ledger.unsettled(p).await
            && !u.is_empty()
        {
            out.push(format!("{p}: {} listing(s) with unsettled pushes", u.len()));
        }
    }
    out
}

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

/// What one world broke, if anything.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
    pub logs: Vec<String>,
    net_errors: HashMap<ProviderName, u64>,
    pub notes: Vec<String>,
}

impl Checks {
    pub fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    /// What one life showed: how it ended, its log lines.
    pub fn incarnation(&mut self, i: usize, end: &End, life: &crate::daemon::Life) {
        match end {
            End::Stopped(Err(e)) => self.fail(format!("life {i}: a stop ended in an error: {e}")),
            End::Failed(e) => self.fail(format!("life {i}: {e}")),
            _ => {}
        }
        for (p, n) in life.net_errors() {
            *self.net_errors.entry(*p).or_default() += n;
        }
        let logs = life.logs();
        for secret in SECRETS {
            if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
                self.fail(format!("life {i}: a secret in the log: {line}"));
            }
        }
        if let Some(line) = logs.lines().find(|l| l.contains("tok_")) {
            self.fail(format!("life {i}: an access token in the log: {line}"));
        }
        if let Some(line) = logs
            .lines()
            .find(|l| l.contains("panicked") || l.contains("ended abnormally"))
        {
            self.fail(format!("life {i}: {line}"));
        }
        self.logs.push(logs);
    }

    /// The invariants on the world at rest.
    pub async fn final_state(&mut self, s: &Setup, f: &Fakes, c: &Catalog, ledger: &Ledger) {
        // No phantom hand edit: the journal's hand-made units are the
        // panel's, SKU by SKU.
        let made = hand_edits(f, c);
        for sku in c.skus() {
            let journaled: i64 = ledger
                .history(&sku)
                .await
                .unwrap_or_default()
                .iter()
                .filter(|m| m.kind == "external")
                .map(|m| m.delta)
                .sum();
            let panel = made.get(&sku).copied().unwrap_or(0);
            if journaled != panel {
                self.fail(format!(
                    "{sku}: {journaled:+} journaled as hand edits, {panel:+} edited in the panel"
                ));
            }
        }
        // Every order line once per change of its units.
        for why in check_lines(s, f, c, ledger).await {
            self.fail(why);
        }
        // The journal: one row per key.
        let all = ledger.movements_with_prefix("").await.unwrap_or_default();
        let mut keys = std::collections::HashSet::new();
        for m in &all {
            if !keys.insert(m.idempotency_key.clone()) {
                self.fail(format!("journal key {} twice", m.idempotency_key));
            }
        }
        // Limits: as the providers saw them (with their own, higher
        // limits) and as our request log holds them (our configured ones),
        // across every restart.
        let l = &s.limits;
        let minute = [
            (ProviderName::Bazaardan, l.bz),
            (ProviderName::Eticaret, l.v2),
            (ProviderName::Pazarsync, l.ps),
        ];
        let window_ms = WINDOW.as_millis() as i64;
        for (p, (theirs, ours)) in minute {
            let times = ledger.request_times_since(p, 0).await.unwrap_or_default();
            let b = busiest(&times, window_ms);
            if b > ours as usize {
                self.fail(format!(
                    "{p}: {b} requests in one window by the request log, limit {ours}"
                ));
            }
            let seen = f.get(p).counters().max_per_minute;
            if seen > theirs as usize {
                self.fail(format!(
                    "{p}: {seen} requests arrived in one window, the provider allows {theirs}"
                ));
            }
        }
        for fake in f.all() {
            let c = fake.counters();
            if c.limit_violations > 0 {
                self.fail(format!(
                    "{}: {} answers for going past a limit ({} past the daily quota)",
                    fake.provider(),
                    c.limit_violations,
                    c.daily_violations
                ));
            }
            // A write that set a listing to the value our last answered
            // write left there; checkable when every network error the
            // client saw was one the fake injected.
            let client = self.net_errors.get(&fake.provider()).copied().unwrap_or(0);
            if client <= c.network_faults as u64 {
                if c.noop_writes > 0 {
                    self.fail(format!(
                        "{}: {} write(s) set the value the listing already showed: {:?}",
                        fake.provider(),
                        c.noop_writes,
                        c.noop_examples
                    ));
                }
            } else {
                self.notes.push(format!(
                    "{}: {} network errors the fake did not inject; no-op check skipped",
                    fake.provider(),
                    client - c.network_faults as u64
                ));
            }
        }
    }

    pub fn verdict(&self) -> Result<(), String> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(self.failures.join("\n  "))
        }
    }
}
