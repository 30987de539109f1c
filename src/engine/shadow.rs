//! Shadow mode: what stoksync would push, beside the tool a seller uses
//! today. Every linked listing is compared with what its provider showed
//! when last read: it agrees, or stoksync would lower it (the oversell risk
//! the current tool leaves), or raise it (sales it misses); `unknown` when
//! the provider's listing was never read (BaZaaRDan has no product list).

use super::plan;
use crate::config::Config;
use crate::domain::{ListingRef, ProviderName, ms_to_utc};
use crate::ledger::ListingState;
use crate::ledger::{Ledger, LedgerError};
use crate::rules::Rules;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Agree,
    /// It shows more than stoksync would: stoksync would lower it.
    Lower,
    /// It shows less: stoksync would raise it.
    Raise,
    /// What it shows was never read.
    Unknown,
    /// A `frozen` rule: stoksync would leave it alone.
    Frozen,
    /// Its SKU has no stock in the ledger: stoksync would leave it alone.
    NoStock,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Agree => "agree",
            Verdict::Lower => "lower",
            Verdict::Raise => "raise",
            Verdict::Unknown => "unknown",
            Verdict::Frozen => "frozen",
            Verdict::NoStock => "no_stock",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ShadowReport {
    pub mode: crate::config::Mode,
    pub providers: Vec<ProviderShadow>,
}

#[derive(Debug, Serialize)]
pub struct ProviderShadow {
    pub provider: ProviderName,
    pub agree: usize,
    pub frozen: usize,
    pub no_stock: usize,
    /// Listings stoksync would lower: the oversell risk, worst first.
    pub lower: Vec<ShadowRow>,
    pub raise: Vec<ShadowRow>,
    pub unknown: Vec<ShadowRow>,
}

#[derive(Debug, Serialize)]
pub struct ShadowRow {
    pub sku: String,
    pub listing: String,
    /// What stoksync would push.
    pub would_show: Option<i64>,
    /// What the provider showed when last read.
    pub shows: Option<i64>,
    pub read_at: Option<String>,
    /// Since when it has had this verdict (as recorded by a shadow daemon).
    pub since: Option<String>,
}

/// A moment as the seller reads clocks (Istanbul time, the zone named).
fn stamp(ms: i64) -> String {
    crate::domain::shown_time(ms_to_utc(ms))
}

/// A listing, its verdict, what stoksync would push, and what the
/// provider showed when last read (and when).
type Judged = (
    ListingState,
    Verdict,
    Option<i64>,
    Option<(Option<i64>, i64)>,
);

/// Each listing of `provider` with its verdict and the numbers behind it.
async fn verdicts(
    rules: &Rules,
    ledger: &Ledger,
    provider: ProviderName,
) -> Result<Vec<Judged>, LedgerError> {
    let states = ledger.listing_states(provider).await?;
    let shown = ledger.shown(provider).await?;
    Ok(states
        .into_iter()
        .map(|s| {
            let read = shown.get(&s.listing).copied();
            let want = plan::wanted_of(&s, rules);
            let verdict = match (want, read.and_then(|r| r.0)) {
                (None, _) => Verdict::NoStock,
                (Some((_, true)), _) => Verdict::Frozen,
                (Some(_), None) => Verdict::Unknown,
                (Some((w, _)), Some(q)) if q == w => Verdict::Agree,
                (Some((w, _)), Some(q)) if q > w => Verdict::Lower,
                _ => Verdict::Raise,
            };
            (s, verdict, want.map(|w| w.0), read)
        })
        .collect())
}

/// Records every listing's verdict for `provider` now (a shadow daemon
/// does this after each poll), so the report can say since when.
pub async fn record(
    rules: &Rules,
    ledger: &Ledger,
    provider: ProviderName,
) -> Result<(), LedgerError> {
    let v = verdicts(rules, ledger, provider).await?;
    let rows: Vec<(&ListingRef, &str)> = v
        .iter()
        .map(|(s, v, ..)| (&s.listing, v.as_str()))
        .collect();
    ledger.record_shadow(provider, &rows).await
}

/// The shadow report of every configured provider.
pub async fn report(config: &Config, ledger: &Ledger) -> Result<ShadowReport, LedgerError> {
    let since = ledger.shadow_since().await?;
    let mut providers = Vec::new();
    for p in config.enabled_providers() {
        let mut out = ProviderShadow {
            provider: p,
            agree: 0,
            frozen: 0,
            no_stock: 0,
            lower: vec![],
            raise: vec![],
            unknown: vec![],
        };
        for (s, verdict, would, read) in verdicts(&config.sync.rules, ledger, p).await? {
            let row = || ShadowRow {
                sku: s.sku.clone(),
                listing: s.listing.to_string(),
                would_show: would,
                shows: read.and_then(|r| r.0),
                read_at: read.map(|r| stamp(r.1)),
                since: since
                    .get(&s.listing)
                    .filter(|(v, _)| v == verdict.as_str())
                    .map(|(_, at)| stamp(*at)),
            };
            match verdict {
                Verdict::Agree => out.agree += 1,
                Verdict::Frozen => out.frozen += 1,
                Verdict::NoStock => out.no_stock += 1,
                Verdict::Lower => out.lower.push(row()),
                Verdict::Raise => out.raise.push(row()),
                Verdict::Unknown => out.unknown.push(row()),
            }
        }
        // The biggest oversell risk first.
        out.lower
            .sort_by_key(|r| std::cmp::Reverse(r.shows.unwrap_or(0) - r.would_show.unwrap_or(0)));
        providers.push(out);
    }
    Ok(ShadowReport {
        mode: config.sync.mode,
        providers,
    })
}

/// The human form of `shadow report`.
pub fn render(r: &ShadowReport) -> String {
    let mut out = String::new();
    if r.mode == crate::config::Mode::Live {
        out.push_str(
            "(the config's mode is live: stoksync pushes; this compares with the last reads)\n",
        );
    }
    let n = |q: Option<i64>| q.map_or("?".to_string(), |q| q.to_string());
    for p in &r.providers {
        out.push_str(&format!(
            "{}: {} agree, {} would be lowered, {} would be raised, {} never read, {} frozen, {} without stock\n",
            p.provider,
            p.agree,
            p.lower.len(),
            p.raise.len(),
            p.unknown.len(),
            p.frozen,
            p.no_stock
        ));
        for (word, rows) in [("lower", &p.lower), ("raise", &p.raise)] {
            for row in rows {
                out.push_str(&format!(
                    "  would {word} {} ({}): shows {}, would show {}{}{}\n",
                    row.listing,
                    row.sku,
                    n(row.shows),
                    n(row.would_show),
                    row.read_at
                        .as_ref()
                        .map_or(String::new(), |t| format!("; read {t}")),
                    row.since
                        .as_ref()
                        .map_or(String::new(), |t| format!("; since {t}"))
                ));
            }
        }
        if !p.unknown.is_empty() {
            out.push_str(&format!(
                "  never read ({}; a provider without a product list is never read), would show: {}\n",
                p.unknown.len(),
                p.unknown
                    .iter()
                    .map(|r| format!("{} {}", r.sku, n(r.would_show)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}
