//! `sync --once --dry-run`: what a sync would push, provider by provider,
//! the largest oversell risk first, with nothing written to any provider
//! (the sync before it runs in shadow mode: orders are polled and applied
//! to the ledger, product lists read, no stock pushed).

use super::plan;
use crate::config::Config;
use crate::domain::{ProviderName, ms_to_utc, shown_time};
use crate::ledger::{Ledger, LedgerError};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DryRun {
    pub providers: Vec<ProviderDryRun>,
}

#[derive(Debug, Serialize)]
pub struct ProviderDryRun {
    pub provider: ProviderName,
    /// Linked listings that already show what stoksync wants.
    pub in_step: usize,
    /// Listings stoksync would leave alone: frozen, refused by the provider
    /// at this value, or their SKU has no stock in the ledger.
    pub left_alone: usize,
    /// What it would push: those it would lower first, the largest
    /// oversell risk (what the listing shows above what stoksync allows)
    /// first; then those whose count was never read; then those it would
    /// raise.
    pub pushes: Vec<DryPush>,
}

#[derive(Debug, Serialize)]
pub struct DryPush {
    pub sku: String,
    pub listing: String,
    pub would_show: i64,
    /// What the listing shows as far as stoksync knows (a product list it
    /// read, or an answered write of its own since), `None` when never
    /// read.
    pub shows: Option<i64>,
    /// When the product list said so, if that is where `shows` comes from.
    pub read_at: Option<String>,
    /// `shows - would_show` when known and positive: units the listing
    /// offers that are not there.
    pub oversell_risk: Option<i64>,
}

impl DryPush {
    /// Lowers first by risk, then unknowns, then raises.
    fn order(&self) -> (u8, i64) {
        match self.shows {
            Some(s) if s > self.would_show => (0, -(s - self.would_show)),
            None => (1, 0),
            Some(s) => (2, s - self.would_show),
        }
    }
}

/// What a sync of every configured provider would push now.
pub async fn collect(config: &Config, ledger: &Ledger) -> Result<DryRun, LedgerError> {
    let mut providers = Vec::new();
    for p in config.enabled_providers() {
        let states = ledger.listing_states(p).await?;
        let shown = ledger.shown(p).await?;
        let planned = plan::plan(&states, &config.sync.rules);
        let mut pushes: Vec<DryPush> = planned
            .pushes
            .iter()
            .zip(&planned.blind)
            .map(|(push, blind)| {
                let state = states.iter().find(|s| s.listing == push.listing);
                let read = shown.get(&push.listing).copied();
                // What it shows: the product list's reading, unless a
                // trusted answer of ours says otherwise since.
                let confirmed = state.and_then(|s| s.confirmed_qty).filter(|_| !blind);
                let (shows, read_at) = match (read, confirmed) {
                    (Some((Some(q), at)), c) if c.is_none_or(|c| c == q) => {
                        (Some(q), Some(shown_time(ms_to_utc(at))))
                    }
                    (_, Some(c)) => (Some(c), None),
                    _ => (None, None),
                };
                DryPush {
                    sku: state.map(|s| s.sku.clone()).unwrap_or_default(),
                    listing: push.listing.to_string(),
                    would_show: push.quantity,
                    shows,
                    read_at,
                    oversell_risk: shows.map(|s| s - push.quantity).filter(|r| *r > 0),
                }
            })
            .collect();
        pushes.sort_by_key(|d| (d.order(), d.listing.clone()));
        let left_alone = planned.held.len();
        providers.push(ProviderDryRun {
            provider: p,
            in_step: states.len().saturating_sub(pushes.len() + left_alone),
            left_alone,
            pushes,
        });
    }
    Ok(DryRun { providers })
}

/// The human form: one line per provider, one per push.
pub fn render(r: &DryRun) -> String {
    let mut out = String::from("dry run: nothing was pushed to any provider\n");
    for p in &r.providers {
        out.push_str(&format!(
            "{}: would push {} listing(s) ({} in step, {} left alone)\n",
            p.provider,
            p.pushes.len(),
            p.in_step,
            p.left_alone
        ));
        for d in &p.pushes {
            let shows = match (d.shows, &d.read_at) {
                (Some(s), Some(at)) => format!("shows {s} (product list read {at})"),
                (Some(s), None) => format!("shows {s} (our last answered write)"),
                (None, _) => "shows ? (never read)".to_string(),
            };
            let risk = d
                .oversell_risk
                .map(|r| format!(", {r} unit(s) oversell risk"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {} ({}): {shows} -> would show {}{risk}\n",
                d.listing, d.sku, d.would_show
            ));
        }
    }
    out
}
