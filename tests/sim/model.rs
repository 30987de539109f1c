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
use stoksync::ledger::Ledger;
use tokio::time::Instant;

/// Every listing of the world and its SKU, in the order they were made.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    listings: Vec<(ListingRef, String)>,
}

impl Catalog {
    pub fn add(&mut self, l: ListingRef, sku: &str) {
        self.listings.push((l, sku.to_string()));
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

    pub fn skus(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, s) in &self.listings {
            if !out.contains(s) {
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

/// What each SKU must hold now.
pub fn expected(s: &Setup, f: &Fakes, c: &Catalog, erp: &[(String, i64)]) -> BTreeMap<String, i64> {
    let mut want: BTreeMap<String, i64> = s.skus.iter().cloned().collect();
    let mut add = |sku: Option<&str>, by: i64| {
        if let Some(sku) = sku {
            *want.entry(sku.to_string()).or_default() += by;
        }
    };
    for (sku, by) in erp {
        add(Some(sku), *by);
    }
    for (_, product, variant, qty, status) in f.bz.items() {
        let variant = variant.map(|v| v.to_string()).unwrap_or_default();
        if holds(ProviderName::Bazaardan, &status, s.restock_returns) {
            add(
                c.sku(ProviderName::Bazaardan, &product.to_string(), &variant),
                -qty,
            );
        }
    }
    for (_, status, lines) in f.v2.orders() {
        if holds(
            ProviderName::Eticaret,
            &status.to_string(),
            s.restock_returns,
        ) {
            for (code, _, qty) in lines {
                add(c.sku(ProviderName::Eticaret, &code, ""), -(qty as i64));
            }
        }
    }
    for (_, status, items) in f.ps.orders() {
        if holds(ProviderName::Pazarsync, &status, s.restock_returns) {
            for (_, pid, _, qty) in items {
                add(c.sku(ProviderName::Pazarsync, &pid, ""), -qty);
            }
        }
    }
    for (sku, by) in hand_edits(f, c) {
        add(Some(&sku), by);
    }
    want
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

/// Waits until the ledger holds `want` for every SKU, every listing shows
/// its SKU's quantity less the safety stock, and no push is unsettled.
pub async fn converge(
    s: &Setup,
    f: &Fakes,
    c: &Catalog,
    ledger: &Ledger,
    want: &BTreeMap<String, i64>,
    limit: Duration,
) -> Result<(), String> {
    let until = Instant::now() + limit;
    loop {
        let diff = differences(s, f, c, ledger, want).await;
        if diff.is_empty() {
            return Ok(());
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
        let should = want.get(sku).map(|q| (q - s.safety).max(0));
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
    pub async fn final_state(
        &mut self,
        s: &Setup,
        f: &Fakes,
        c: &Catalog,
        ledger: &Ledger,
        want: &BTreeMap<String, i64>,
    ) {
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
        // The journal: one row per key, ids in order.
        let all = ledger.movements_with_prefix("").await.unwrap_or_default();
        let mut keys = std::collections::HashSet::new();
        for m in &all {
            if !keys.insert(m.idempotency_key.clone()) {
                self.fail(format!("journal key {} twice", m.idempotency_key));
            }
        }
        let _ = want;
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
