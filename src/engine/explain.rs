//! `explain SKU`: every number stoksync shows for one SKU, and why. Read
//! from the ledger and the config (so it works beside a running daemon):
//! the ledger quantity and its last movements, the bundle arithmetic, each
//! rule in order with its source, and for every listing the wanted value,
//! what the provider last confirmed, and why they differ if they do.

use super::health::drain_eta;
use super::plan::{self, Held};
use super::status::{describe_drain, limits, push_pace};
use crate::config::Config;
use crate::domain::{
    ProviderName, ms_to_utc, next_turkey_midnight, now_ms, turkey_midnight_before,
};
use crate::ledger::{
    BundleComponent, Ledger, LedgerError, ListingDetail, Movement, bundle_quantity,
};
use crate::rules::{RuleSet, Step};
use serde::Serialize;
use std::collections::HashMap;

/// How many movements `explain` shows.
pub const RECENT_MOVEMENTS: i64 = 10;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub sku: String,
    /// `stock`, `bundle`, or `unknown` (neither: nothing is pushed).
    pub kind: &'static str,
    /// The SKU's own ledger quantity (`None` for a bundle or an unknown SKU).
    pub ledger_quantity: Option<i64>,
    /// What the listings are computed from: the ledger quantity, or what
    /// the bundle's components make.
    pub available: Option<i64>,
    pub bundle: Option<BundleMath>,
    /// Bundles this SKU is a part of, with the units each takes.
    pub used_in_bundles: Vec<UsedIn>,
    /// Newest first.
    pub recent_movements: Vec<MovementNote>,
    pub listings: Vec<ListingNote>,
}

#[derive(Debug, Serialize)]
pub struct BundleMath {
    /// As imported, each with its row.
    pub components: Vec<BundleComponent>,
    /// Multiplied out to SKUs with stock: what each makes.
    pub parts: Vec<PartMath>,
}

#[derive(Debug, Serialize)]
pub struct PartMath {
    pub sku: String,
    pub per_bundle: i64,
    pub quantity: Option<i64>,
    /// Whole bundles this part allows: `max(0, quantity) / per_bundle`.
    pub makes: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct UsedIn {
    pub bundle: String,
    pub per_bundle: i64,
}

#[derive(Debug, Serialize)]
pub struct MovementNote {
    pub at: String,
    pub delta: i64,
    pub before: i64,
    pub after: i64,
    pub kind: String,
    pub source: String,
    pub reason: String,
    /// The order that moved it, for order movements.
    pub order: Option<String>,
    pub key: String,
}

#[derive(Debug, Serialize)]
pub struct ListingNote {
    pub provider: ProviderName,
    pub listing: String,
    pub origin: String,
    /// The rules applied to `available`, in order, each with its source.
    pub rules: Vec<Step>,
    pub wanted: Option<i64>,
    pub confirmed: Option<i64>,
    pub confirmed_at: Option<String>,
    /// `in_step`, `pending`, `frozen`, `refused`, `no_stock`, `not_synced`.
    pub state: &'static str,
    /// Why it is not there yet (empty when in step), in plain words.
    pub why: Vec<String>,
}

/// A moment as the seller reads clocks (Istanbul time, the zone named).
fn stamp(ms: i64) -> String {
    crate::domain::shown_time(ms_to_utc(ms))
}

fn note(m: Movement) -> MovementNote {
    let order = m
        .kind
        .starts_with("order_")
        .then(|| m.reason.strip_prefix("order "))
        .flatten()
        .map(|r| r.split(':').next().unwrap_or(r).to_string());
    MovementNote {
        at: stamp(m.created_at_ms),
        delta: m.delta,
        before: m.quantity_before,
        after: m.quantity_after,
        kind: m.kind,
        source: m.source,
        reason: m.reason,
        order,
        key: m.idempotency_key,
    }
}

/// Explains `sku`. `Ok(None)` when the ledger knows nothing of it (no
/// stock, no bundle, no listing).
pub async fn explain(
    config: &Config,
    ledger: &Ledger,
    sku: &str,
) -> Result<Option<Explanation>, LedgerError> {
    let own = ledger.stock_of(sku).await?;
    let bundle = ledger.bundles(Some(sku)).await?.pop();
    let details = ledger.listing_details(sku).await?;
    if own.is_none() && bundle.is_none() && details.is_empty() {
        return Ok(None);
    }
    let bundle_math = match &bundle {
        None => None,
        Some(b) => {
            let mut stock = HashMap::new();
            let mut parts = Vec::new();
            for (part, per) in &b.parts {
                let q = ledger.stock_of(part).await?;
                if let Some(q) = q {
                    stock.insert(part.clone(), q);
                }
                parts.push(PartMath {
                    sku: part.clone(),
                    per_bundle: *per,
                    quantity: q,
                    makes: q.map(|q| q.max(0) / per),
                });
            }
            Some((
                BundleMath {
                    components: b.components.clone(),
                    parts,
                },
                bundle_quantity(&b.parts, &stock),
            ))
        }
    };
    let available = own.or(bundle_math.as_ref().and_then(|(_, q)| *q));
    let kind = match (own, &bundle) {
        (Some(_), _) => "stock",
        (None, Some(_)) => "bundle",
        (None, None) => "unknown",
    };
    let sku_rules: HashMap<ProviderName, (RuleSet, String)> = ledger
        .sku_rules(Some(sku))
        .await?
        .into_iter()
        .map(|r| (r.provider, (r.set(), r.source.clone())))
        .collect();
    let mut listings = Vec::new();
    let mut plans = HashMap::new();
    for d in details {
        let rule = sku_rules.get(&d.listing.provider);
        let note = listing_note(config, ledger, d, available, rule, &mut plans).await?;
        listings.push(note);
    }
    Ok(Some(Explanation {
        sku: sku.to_string(),
        kind,
        ledger_quantity: own,
        available,
        bundle: bundle_math.map(|(m, _)| m),
        used_in_bundles: ledger
            .bundles_using(sku)
            .await?
            .into_iter()
            .map(|(bundle, per_bundle)| UsedIn { bundle, per_bundle })
            .collect(),
        recent_movements: ledger
            .recent_history(sku, RECENT_MOVEMENTS)
            .await?
            .into_iter()
            .map(note)
            .collect(),
        listings,
    }))
}

/// A provider's listings and their plan, read once per `explain`.
type Plans = HashMap<ProviderName, (Vec<crate::ledger::ListingState>, plan::Plan)>;

async fn listing_note(
    config: &Config,
    ledger: &Ledger,
    d: ListingDetail,
    available: Option<i64>,
    rule: Option<&(RuleSet, String)>,
    plans: &mut Plans,
) -> Result<ListingNote, LedgerError> {
    let p = d.listing.provider;
    let rules = &config.sync.rules;
    let steps = available.map_or_else(Vec::new, |a| {
        rules.steps(p, rule.map(|r| &r.0), rule.map_or("", |r| r.1.as_str()), a)
    });
    let mut out = ListingNote {
        provider: p,
        listing: d.listing.to_string(),
        origin: d.origin.clone(),
        wanted: steps.last().map(|s| s.after),
        rules: steps,
        confirmed: d.confirmed_qty,
        confirmed_at: d.confirmed_at_ms.map(stamp),
        state: "in_step",
        why: vec![],
    };
    if !config.enabled_providers().contains(&p) {
        out.state = "not_synced";
        out.why.push(format!(
            "{p} is not in the config: this listing is not synced"
        ));
        return Ok(out);
    }
    if let std::collections::hash_map::Entry::Vacant(e) = plans.entry(p) {
        let states = ledger.listing_states(p).await?;
        let planned = plan::plan(&states, rules);
        e.insert((states, planned));
    }
    let (states, planned) = &plans[&p];
    if let Some((_, held)) = planned.held.iter().find(|(l, _)| *l == d.listing) {
        match held {
            Held::SkuNotInLedger => {
                out.state = "no_stock";
                out.why.push(
                    "the SKU has no stock in the ledger, so nothing is pushed (a listing is never zeroed on a guess): import its stock".to_string(),
                );
            }
            Held::Rejected { wanted } => {
                out.state = "refused";
                out.why.push(format!(
                    "{p} refused the value {wanted}: {}. It is not sent again until the wanted value changes (or the link is imported again)",
                    d.last_error.as_deref().unwrap_or("no reason given")
                ));
            }
            Held::Frozen { .. } => {
                out.state = "frozen";
                let source = out
                    .rules
                    .iter()
                    .find(|s| s.field == crate::rules::Field::Frozen)
                    .map_or("a rule".to_string(), |s| s.source.to_string());
                out.why.push(format!(
                    "frozen by {source}: never pushed; it shows what {p} shows ({})",
                    d.confirmed_qty
                        .map_or("not known".to_string(), |c| c.to_string())
                ));
            }
        }
        return Ok(out);
    }
    let Some(at) = planned.pushes.iter().position(|x| x.listing == d.listing) else {
        return Ok(out);
    };
    out.state = "pending";
    out.wanted = Some(planned.pushes[at].quantity);
    let state = states.iter().find(|s| s.listing == d.listing);
    if state.is_some_and(|s| s.unsettled) {
        out.why.push(
            "an answer to one of our pushes was lost, so what it shows is not known for sure: it is pushed again to settle it".to_string(),
        );
    } else if d.confirmed_qty.is_none() {
        out.why
            .push(format!("{p} has not confirmed a value for it yet"));
    }
    why_waiting(config, ledger, p, planned, at, &mut out.why).await?;
    Ok(out)
}

/// Why the push at `at` of `planned` has not happened yet: a provider
/// pause, a failed poll, a spent limit, the pushes ahead of it.
async fn why_waiting(
    config: &Config,
    ledger: &Ledger,
    p: ProviderName,
    planned: &plan::Plan,
    at: usize,
    why: &mut Vec<String>,
) -> Result<(), LedgerError> {
    let now = now_ms();
    if let Some(until) = ledger.pause_of(p).await?.filter(|u| *u > now) {
        why.push(format!(
            "{p} asked us to wait: it is paused until {} ({} from now)",
            stamp(until),
            super::status::human_seconds(((until - now) / 1000).max(0) as u64)
        ));
    }
    let state = ledger.provider_state(p).await?;
    if let Some(err_ms) = state.last_error_ms
        && err_ms > state.last_poll_ok_ms.unwrap_or(0)
    {
        why.push(format!(
            "the last poll of {p} failed at {} ({}): pushes to {p} wait for a poll that succeeds",
            stamp(err_ms),
            state.last_error.as_deref().unwrap_or("no detail")
        ));
    }
    let (per_minute, daily) = limits(config, p);
    if let Some(limit) = per_minute {
        let since = now - 60_000;
        if ledger.requests_since(p, since).await? >= i64::from(limit)
            && let Some(first) = ledger.first_request_since(p, since).await?
        {
            why.push(format!(
                "this minute's {limit} requests to {p} are spent: the next permit in about {} s",
                ((first + 60_000 - now + 999) / 1000).max(1)
            ));
        }
    }
    if let Some(limit) = daily {
        let day = turkey_midnight_before(crate::clock::now_utc()).timestamp_millis();
        if ledger.requests_since(p, day).await? >= i64::from(limit) {
            why.push(format!(
                "today's {limit} requests to {p} are spent: the quota resets at {}",
                crate::domain::shown_time(next_turkey_midnight(crate::clock::now_utc()))
            ));
        }
    }
    let lane = planned.lanes[at];
    let urgent = planned.lanes.iter().filter(|l| **l < lane).count();
    let same = planned.lanes[..at].iter().filter(|l| **l == lane).count();
    let pending = planned.pushes.len();
    let pace = push_pace(ledger, p, now).await?;
    why.push(format!(
        "it waits in the {} lane behind about {} push(es) ({urgent} more urgent); the backlog of {pending} drains in {}",
        match lane {
            plan::Lane::Zero => "zero",
            plan::Lane::Decrease => "decrease",
            plan::Lane::Increase => "increase",
        },
        urgent + same,
        describe_drain(pending, drain_eta(pending, pace).map(|d| d.as_secs()))
    ));
    Ok(())
}

/// The human form of `explain`.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let n = |q: Option<i64>| q.map_or("unknown".to_string(), |q| q.to_string());
    match e.kind {
        "bundle" => out.push_str(&format!(
            "{} is a bundle: it has no stock of its own; its components make {}\n",
            e.sku,
            n(e.available)
        )),
        "stock" => out.push_str(&format!(
            "{}: {} in the ledger\n",
            e.sku,
            n(e.ledger_quantity)
        )),
        _ => out.push_str(&format!(
            "{}: not in the ledger (no stock, not a bundle): its listings are not pushed\n",
            e.sku
        )),
    }
    if let Some(b) = &e.bundle {
        out.push_str("  made of:\n");
        for c in &b.components {
            out.push_str(&format!("    {} x{}  ({})\n", c.sku, c.quantity, c.source));
        }
        out.push_str("  what each part allows (whole bundles = stock / units per bundle):\n");
        for p in &b.parts {
            out.push_str(&format!(
                "    {}: {} / {} = {}\n",
                p.sku,
                n(p.quantity),
                p.per_bundle,
                n(p.makes)
            ));
        }
        out.push_str(&format!("  the fewest is {}\n", n(e.available)));
    }
    for u in &e.used_in_bundles {
        out.push_str(&format!(
            "  part of bundle {} ({} per bundle): `stoksync explain {}`\n",
            u.bundle, u.per_bundle, u.bundle
        ));
    }
    if e.recent_movements.is_empty() {
        out.push_str("no movements\n");
    } else {
        out.push_str(&format!(
            "last {} movement(s), newest first:\n",
            e.recent_movements.len()
        ));
        for m in &e.recent_movements {
            let what = match &m.order {
                Some(o) if m.reason == format!("order {o}") => {
                    format!("{} by order {o} on {}", m.kind, m.source)
                }
                Some(o) => format!("{} by order {o} on {} ({})", m.kind, m.source, m.reason),
                None => format!("{} by {} ({})", m.kind, m.source, m.reason),
            };
            out.push_str(&format!(
                "  {}  {:+}  {} -> {}  {what}\n",
                m.at, m.delta, m.before, m.after
            ));
        }
    }
    if e.listings.is_empty() {
        out.push_str("no listings linked\n");
    }
    for l in &e.listings {
        out.push_str(&format!(
            "{} ({}): should show {}; {} last confirmed {}{}\n",
            l.listing,
            l.origin,
            n(l.wanted),
            l.provider,
            n(l.confirmed),
            l.confirmed_at
                .as_ref()
                .map_or(String::new(), |t| format!(" at {t}"))
        ));
        for s in &l.rules {
            out.push_str(&format!(
                "    {} {} from {}: {} -> {}\n",
                s.field, s.value, s.source, s.before, s.after
            ));
        }
        match l.state {
            "in_step" => out.push_str("    in step: it shows what it should\n"),
            _ => {
                for w in &l.why {
                    out.push_str(&format!("    not there yet: {w}\n"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ListingRef;
    use crate::ledger::test_support::temp_ledger;

    /// A pending listing says, in plain words, every reason it waits: the
    /// provider's pause, a failed poll, a spent minute, the pushes ahead.
    #[tokio::test]
    async fn a_pending_listing_says_why_it_waits() {
        let (_d, ledger) = temp_ledger().await;
        let config = Config::parse(
            "[ledger]\ndatabase = \"x.db\"\n[providers.bazaardan]\nbase_url = \"https://bz.test\"\nclient_id = \"a\"\nclient_secret = \"b\"\nrequests_per_minute = 2\n",
            std::path::Path::new("/tmp/x.toml"),
            &|_| None,
        )
        .unwrap();
        let p = ProviderName::Bazaardan;
        ledger
            .import_stock(&[("A".into(), 5), ("B".into(), 0)], "s", "s")
            .await
            .unwrap();
        let l = |id: &str| ListingRef {
            provider: p,
            listing_id: id.to_string(),
            variant_id: String::new(),
        };
        // B's listing goes to 0 (a more urgent lane), A's goes up.
        ledger
            .import_mappings(&[("A".into(), l("1")), ("B".into(), l("2"))])
            .await
            .unwrap();
        let now = now_ms();
        ledger.save_pause(p, now + 90_000, "429").await.unwrap();
        ledger.record_provider_error(p, "HTTP 503").await.unwrap();
        ledger.log_request(p, now - 20_000).await.unwrap();
        ledger.log_request(p, now - 10_000).await.unwrap();
        let e = explain(&config, &ledger, "A").await.unwrap().unwrap();
        let note = &e.listings[0];
        assert_eq!((note.state, note.wanted), ("pending", Some(5)));
        let why = note.why.join("\n");
        for needle in [
            "has not confirmed a value for it yet",
            "paused until",
            "the last poll of bazaardan failed",
            "HTTP 503",
            "this minute's 2 requests to bazaardan are spent: the next permit in about 40 s",
            "behind about 1 push(es) (1 more urgent)",
        ] {
            assert!(why.contains(needle), "{needle:?} in:\n{why}");
        }
        assert!(explain(&config, &ledger, "NOPE").await.unwrap().is_none());
    }
}
