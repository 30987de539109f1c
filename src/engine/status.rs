//! `status`: what each provider is doing and what stoksync could not do,
//! read from the ledger (so it works beside a running daemon).

use super::health::{PACE_WINDOW, drain_eta, pace_per_minute};
use super::plan;
use crate::config::Config;
use crate::domain::{
    ProviderName, ms_to_utc, next_turkey_midnight, now_ms, shown_stamp, turkey_midnight_before,
    turkey_rfc3339,
};
use crate::ledger::{
    AnomalyRow, CatalogProblem, DuplicateLink, Ledger, LedgerError, StockRow, UnlinkedItem,
};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Status {
    /// `live`, or `shadow` (nothing is pushed).
    pub mode: crate::config::Mode,
    /// `ok`, or `degraded` while any alert is open (`alerts` says why).
    pub state: &'static str,
    /// The alerts open now, as the daemon last evaluated them.
    pub alerts: Vec<crate::alerts::Reason>,
    pub providers: Vec<ProviderStatus>,
    pub unlinked_order_items: Vec<UnlinkedItem>,
    pub oversold: Vec<StockRow>,
    pub anomalies: Vec<AnomalyRow>,
    /// Listings discovery did not link (unknown SKU, SKU on several listings).
    pub not_linked: Vec<CatalogProblem>,
    pub sku_linked_twice: Vec<DuplicateLink>,
    /// On a shared ledger: who is active, and who waits.
    pub lease: Option<LeaseStatus>,
}

/// The active lease of a shared ledger, by the database's clock.
#[derive(Debug, Serialize)]
pub struct LeaseStatus {
    pub active: String,
    pub epoch: i64,
    pub renewed_seconds_ago: i64,
    /// Negative once expired (the active daemon is gone; a standby takes over).
    pub expires_in_seconds: i64,
    pub standbys: Vec<String>,
}

async fn lease_status(ledger: &Ledger) -> Result<Option<LeaseStatus>, LedgerError> {
    let Some(row) = ledger.lease().await? else {
        return Ok(None);
    };
    let standbys = ledger
        .standbys(std::time::Duration::from_secs(60))
        .await?
        .into_iter()
        .map(|s| s.holder)
        .collect();
    Ok(Some(LeaseStatus {
        active: row.holder,
        epoch: row.epoch,
        renewed_seconds_ago: (row.now_ms - row.renewed_at_ms) / 1000,
        expires_in_seconds: (row.expires_at_ms - row.now_ms).div_euclid(1000),
        standbys,
    }))
}

#[derive(Debug, Serialize)]
pub struct ProviderStatus {
    pub provider: ProviderName,
    pub last_successful_poll: Option<String>,
    pub last_successful_push: Option<String>,
    /// The backlog: listings whose wanted stock differs from what the
    /// provider confirmed.
    pub pending_pushes: usize,
    /// Listings pushed per minute over the last `PACE_WINDOW` (rounded to
    /// hundredths), from the ledger.
    pub push_pace_per_minute: f64,
    /// How long the backlog takes to push at that pace, in seconds: 0 with
    /// no backlog, `null` when nothing is being pushed.
    pub drain_eta_seconds: Option<u64>,
    pub refused_listings: usize,
    pub listings_without_stock: usize,
    /// Listings a `frozen` rule keeps from ever being pushed.
    pub frozen_listings: usize,
    pub requests_current_minute: i64,
    pub requests_today: i64,
    pub per_minute_limit: Option<u32>,
    pub daily_limit: Option<u32>,
    pub requests_left_today: Option<i64>,
    pub daily_resets_at: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

pub(crate) fn limits(config: &Config, p: ProviderName) -> (Option<u32>, Option<u32>) {
    match p {
        ProviderName::Bazaardan => (
            config.bazaardan.as_ref().map(|c| c.requests_per_minute),
            None,
        ),
        ProviderName::Stokdurumu => (
            None,
            config.stokdurumu.as_ref().and_then(|c| c.requests_per_day),
        ),
        ProviderName::Eticaret => (
            config.eticaret.as_ref().map(|c| c.requests_per_minute),
            None,
        ),
        ProviderName::Pazarsync => config
            .pazarsync
            .as_ref()
            .map(|c| (Some(c.requests_per_minute), c.requests_per_day))
            .unwrap_or_default(),
    }
}

/// The push pace of `provider` as the ledger shows it at `now_ms`: listings
/// pushed per minute over the last `PACE_WINDOW` (see `pace_per_minute`).
/// Counts pushes of every process, so it reads the same from `status`, the
/// status page and `/metrics`.
pub async fn push_pace(
    ledger: &Ledger,
    provider: ProviderName,
    now_ms: i64,
) -> Result<f64, LedgerError> {
    let window_ms = i64::try_from(PACE_WINDOW.as_millis()).unwrap_or(i64::MAX);
    let times = ledger
        .push_times_since(provider, now_ms.saturating_sub(window_ms))
        .await?;
    Ok(pace_per_minute(&times, now_ms, PACE_WINDOW))
}

/// A pace as shown: hundredths of a listing a minute.
pub fn shown_pace(pace: f64) -> f64 {
    (pace * 100.0).round() / 100.0
}

/// The backlog, pace and drain time in words, as `status` and the status
/// page print them.
pub fn describe_drain(pending: usize, eta_seconds: Option<u64>) -> String {
    match (pending, eta_seconds) {
        (0, _) => "no backlog".to_string(),
        (_, None) => "unknown (nothing pushed lately)".to_string(),
        (_, Some(s)) => format!("about {}", human_seconds(s)),
    }
}

/// `3725` as `1h 2m 5s`, `42` as `42s`.
pub fn human_seconds(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// Times in `status --json`: RFC 3339 at Turkey's offset (+03:00).
fn stamp(ms: Option<i64>) -> Option<String> {
    ms.map(|m| turkey_rfc3339(ms_to_utc(m)))
}

/// A stamp of [`stamp`] as the text form shows it.
fn shown(stamp: Option<&str>) -> String {
    stamp.map_or_else(|| "never".to_string(), shown_stamp)
}

pub async fn collect(config: &Config, ledger: &Ledger) -> Result<Status, LedgerError> {
    let now = now_ms();
    let day_start = turkey_midnight_before(crate::clock::now_utc()).timestamp_millis();
    let mut providers = Vec::new();
    for p in config.enabled_providers() {
        let state = ledger.provider_state(p).await?;
        let listings = ledger.listing_states(p).await?;
        let planned = plan::plan(&listings, &config.sync.rules);
        let (per_minute, daily) = limits(config, p);
        let today = ledger.requests_since(p, day_start).await?;
        let pending = planned.pushes.len();
        let pace = push_pace(ledger, p, now).await?;
        providers.push(ProviderStatus {
            provider: p,
            last_successful_poll: stamp(state.last_poll_ok_ms),
            last_successful_push: stamp(state.last_push_ok_ms),
            pending_pushes: pending,
            push_pace_per_minute: shown_pace(pace),
            drain_eta_seconds: drain_eta(pending, pace).map(|d| d.as_secs()),
            refused_listings: planned
                .held
                .iter()
                .filter(|(_, h)| matches!(h, plan::Held::Rejected { .. }))
                .count(),
            listings_without_stock: planned
                .held
                .iter()
                .filter(|(_, h)| matches!(h, plan::Held::SkuNotInLedger))
                .count(),
            frozen_listings: planned
                .held
                .iter()
                .filter(|(_, h)| matches!(h, plan::Held::Frozen { .. }))
                .count(),
            requests_current_minute: ledger.requests_since(p, now - 60_000).await?,
            requests_today: today,
            per_minute_limit: per_minute,
            daily_limit: daily,
            requests_left_today: daily.map(|d| (i64::from(d) - today).max(0)),
            daily_resets_at: daily
                .map(|_| turkey_rfc3339(next_turkey_midnight(crate::clock::now_utc()))),
            last_error: state.last_error,
            last_error_at: stamp(state.last_error_ms),
        });
    }
    let alerts = crate::alerts::reasons(ledger).await?;
    Ok(Status {
        mode: config.sync.mode,
        state: if alerts.is_empty() { "ok" } else { "degraded" },
        alerts,
        providers,
        unlinked_order_items: ledger.unlinked_items().await?,
        oversold: ledger.oversold().await?,
        anomalies: ledger.anomalies().await?,
        not_linked: ledger.catalog_problems().await?,
        sku_linked_twice: ledger.duplicate_links().await?,
        lease: lease_status(ledger).await?,
    })
}

/// The human form of `status`.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    if let Some(l) = &s.lease {
        if l.expires_in_seconds >= 0 {
            out.push_str(&format!(
                "active: {} (lease epoch {}, renewed {}s ago, expires in {}s)\n",
                l.active, l.epoch, l.renewed_seconds_ago, l.expires_in_seconds
            ));
        } else {
            out.push_str(&format!(
                "active: none: the lease of {} (epoch {}) expired {}s ago; a standby takes over\n",
                l.active, l.epoch, -l.expires_in_seconds
            ));
        }
        for sb in &l.standbys {
            out.push_str(&format!("standby: {sb}\n"));
        }
    }
    if s.mode == crate::config::Mode::Shadow {
        out.push_str(
            "mode: shadow: orders are applied, nothing is pushed (`stoksync shadow report` shows what would be)\n",
        );
    }
    if !s.alerts.is_empty() {
        out.push_str(&format!("degraded: {} alert(s) open\n", s.alerts.len()));
        for a in &s.alerts {
            out.push_str(&format!(
                "  {} since {}: {}\n",
                a.kind,
                shown_stamp(&a.since),
                a.message
            ));
        }
    }
    for p in &s.providers {
        out.push_str(&format!("{}\n", p.provider));
        out.push_str(&format!(
            "  last poll: {}   last push: {}\n",
            shown(p.last_successful_poll.as_deref()),
            shown(p.last_successful_push.as_deref())
        ));
        out.push_str(&format!(
            "  pending pushes: {}   refused: {}   linked to SKUs without stock: {}   frozen: {}\n",
            p.pending_pushes, p.refused_listings, p.listings_without_stock, p.frozen_listings
        ));
        out.push_str(&format!(
            "  push pace: {:.2} listings/min (last {} min)   backlog of {} drains in: {}\n",
            p.push_pace_per_minute,
            PACE_WINDOW.as_secs() / 60,
            p.pending_pushes,
            describe_drain(p.pending_pushes, p.drain_eta_seconds)
        ));
        let minute = p
            .per_minute_limit
            .map_or(String::new(), |l| format!(" of {l}"));
        let day = match (p.daily_limit, &p.daily_resets_at) {
            (Some(l), Some(at)) => format!(
                " of {l}, {} left (resets {})",
                p.requests_left_today.unwrap_or(0),
                shown_stamp(at)
            ),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  requests: {}{minute} this minute, {}{day} today\n",
            p.requests_current_minute, p.requests_today
        ));
        if let Some(e) = &p.last_error {
            out.push_str(&format!(
                "  last error ({}): {e}\n",
                p.last_error_at
                    .as_deref()
                    .map_or("?".to_string(), shown_stamp)
            ));
        }
    }
    out.push_str(&format!(
        "unlinked order items: {}\n",
        s.unlinked_order_items.len()
    ));
    for u in &s.unlinked_order_items {
        out.push_str(&format!(
            "  {} item {} (order {}): listing {}{} sku {} qty {} status {}\n",
            u.provider,
            u.item_key,
            u.order_ref,
            u.listing_id,
            if u.variant_id.is_empty() {
                String::new()
            } else {
                format!("/{}", u.variant_id)
            },
            u.sku_hint.as_deref().unwrap_or("-"),
            u.quantity,
            u.status
        ));
    }
    if !s.not_linked.is_empty() {
        out.push_str(&format!("listings not linked: {}\n", s.not_linked.len()));
        for n in &s.not_linked {
            out.push_str(&format!(
                "  {} {}{}: {}\n",
                n.provider,
                n.listing_id,
                if n.variant_id.is_empty() {
                    String::new()
                } else {
                    format!("/{}", n.variant_id)
                },
                n.problem
            ));
        }
    }
    for d in &s.sku_linked_twice {
        out.push_str(&format!(
            "SKU {} is linked to {} listings of {}: {}\n",
            d.sku,
            d.listings.len(),
            d.provider,
            d.listings.join(", ")
        ));
    }
    out.push_str(&format!("oversold SKUs: {}\n", s.oversold.len()));
    for o in &s.oversold {
        out.push_str(&format!("  {} at {}\n", o.sku, o.quantity));
    }
    if !s.anomalies.is_empty() {
        out.push_str(&format!(
            "order lines not understood: {}\n",
            s.anomalies.len()
        ));
        for a in &s.anomalies {
            out.push_str(&format!(
                "  {} item {}: {}\n",
                a.provider, a.item_key, a.message
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_times_read_as_words() {
        assert_eq!(describe_drain(0, Some(0)), "no backlog");
        assert_eq!(describe_drain(0, None), "no backlog");
        assert_eq!(describe_drain(7, None), "unknown (nothing pushed lately)");
        assert_eq!(describe_drain(7, Some(42)), "about 42s");
        assert_eq!(describe_drain(7, Some(240)), "about 4m 0s");
        assert_eq!(describe_drain(7, Some(3725)), "about 1h 2m 5s");
        assert_eq!(shown_pace(10.0 / 3.0), 3.33);
    }
}
