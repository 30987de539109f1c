//! Alerts (`[alerts]`): when something needs the seller, say so once when
//! it starts and once when it ends.
//!
//! - [`evaluate`] is pure: facts read from the ledger and the loops'
//!   heartbeats ([`Facts`]) in, the set of alerts open now out, each with a
//!   stable key (kind, provider, SKU or listing).
//! - [`diff`] compares it with the set open before (kept in the ledger,
//!   `alerts_open`, so a restart neither fires an open episode again nor
//!   forgets to resolve it): what fired, what resolved.
//! - [`spawn`] runs it in the daemon every few seconds and writes each
//!   event's payload to the ledger's outbox in the same transaction as the
//!   open set; one delivery task per route (webhook, command) sends them in
//!   order, each attempt bounded by `timeout`, retried `retries` times with
//!   exponential backoff, then logged at error level with its payload and
//!   dropped. The provider loops never wait for any of it.
//!
//! No payload carries a secret: every value of the config's secrets is
//! replaced by `***` in what is stored and sent.

use crate::config::{Config, Secret};
use crate::domain::{
    ListingRef, ProviderName, ms_to_utc, now_ms, turkey_midnight_before, turkey_rfc3339,
};
use crate::engine::status::human_seconds;
use crate::engine::{Engine, pending, plan};
use crate::ledger::{Ledger, LedgerError, OpenAlertRow};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A daily quota this far spent is worth a warning.
pub const QUOTA_WARN_PERCENT: i64 = 80;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A SKU's ledger quantity is below zero.
    Oversold,
    /// A provider refused our credentials.
    CredentialsRefused,
    /// A daily quota is `QUOTA_WARN_PERCENT` % spent.
    QuotaLow,
    /// A daily quota is spent.
    QuotaExhausted,
    /// No successful poll of a provider for `stall_after`.
    Stalled,
    /// A provider refused a listing's push (4xx).
    PushRefused,
    /// A listing of a provider has waited to be pushed for `backlog_after`.
    Backlog,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Oversold,
        Kind::CredentialsRefused,
        Kind::QuotaLow,
        Kind::QuotaExhausted,
        Kind::Stalled,
        Kind::PushRefused,
        Kind::Backlog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Oversold => "oversold",
            Kind::CredentialsRefused => "credentials_refused",
            Kind::QuotaLow => "quota_low",
            Kind::QuotaExhausted => "quota_exhausted",
            Kind::Stalled => "stalled",
            Kind::PushRefused => "push_refused",
            Kind::Backlog => "backlog",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An alert open now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub key: String,
    pub kind: Kind,
    pub provider: Option<ProviderName>,
    pub sku: Option<String>,
    /// `listing_id` or `listing_id/variant_id`.
    pub listing: Option<String>,
    /// A plain sentence.
    pub message: String,
}

impl Alert {
    fn new(
        kind: Kind,
        provider: Option<ProviderName>,
        sku: Option<&str>,
        listing: Option<String>,
        message: String,
    ) -> Alert {
        let what = listing
            .clone()
            .or(sku.map(str::to_string))
            .unwrap_or_default();
        let key = format!(
            "{}/{}/{}",
            kind.as_str(),
            provider.map_or("", |p| p.as_str()),
            what
        );
        Alert {
            key,
            kind,
            provider,
            sku: sku.map(str::to_string),
            listing,
            message,
        }
    }
}

/// A listing a provider refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub listing: ListingRef,
    pub sku: String,
    /// The provider's reason, as recorded.
    pub reason: Option<String>,
}

/// What is known of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFacts {
    pub provider: ProviderName,
    /// A poll succeeded since this process started.
    pub polled_since_start: bool,
    /// The provider refused our credentials (the error), since the last
    /// successful poll.
    pub credentials_refused: Option<String>,
    pub last_poll_ok_ms: Option<i64>,
    pub requests_today: i64,
    pub daily_limit: Option<u32>,
    pub refused: Vec<Refused>,
    /// Listings waiting to be pushed (their wanted value differs from what
    /// the provider confirmed), and how long the longest-waiting one has
    /// waited: from the ledger (`engine::pending`), so it counts whether or
    /// not push rounds run (polls failing, the provider down) and across
    /// restarts.
    pub pending: usize,
    pub pending_for: Option<Duration>,
}

/// Everything `evaluate` looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub now_ms: i64,
    /// When this process started its loops: a provider never polled is
    /// stalled only `stall_after` after that.
    pub started_ms: i64,
    /// Oversold SKUs and their ledger quantity.
    pub oversold: Vec<(String, i64)>,
    pub providers: Vec<ProviderFacts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub stall_after: Duration,
    pub backlog_after: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn shown_listing(l: &ListingRef) -> String {
    if l.variant_id.is_empty() {
        l.listing_id.clone()
    } else {
        format!("{}/{}", l.listing_id, l.variant_id)
    }
}

/// The alerts open given `f`, sorted by key. `open` maps the keys open
/// before to when they opened: an episode that only the daemon's own
/// memory can end (credentials, stall) stays open across a restart until
/// the fact that ends it is seen, rather than resolving because the new
/// process has not looked yet. (A backlog is read from the ledger: the new
/// process knows it at once.)
pub fn evaluate(f: &Facts, t: &Thresholds, open: &BTreeMap<String, i64>) -> Vec<Alert> {
    let mut out = Vec::new();
    for (sku, q) in &f.oversold {
        out.push(Alert::new(
            Kind::Oversold,
            None,
            Some(sku),
            None,
            format!(
                "SKU {sku} is oversold: the ledger holds {q}, so {} unit(s) were sold that were not there.",
                -q
            ),
        ));
    }
    for p in &f.providers {
        let name = p.provider;
        let key = |k: Kind| Alert::new(k, Some(name), None, None, String::new()).key;
        let was_open = |k: Kind| open.get(&key(k)).copied();

        let creds = match (&p.credentials_refused, was_open(Kind::CredentialsRefused)) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(_)) if !p.polled_since_start => {
                Some("credentials refused before the restart".to_string())
            }
            _ => None,
        };
        if let Some(e) = creds {
            out.push(Alert::new(
                Kind::CredentialsRefused,
                Some(name),
                None,
                None,
                format!(
                    "{name} refuses stoksync's credentials, so nothing is synced with it until they are fixed: {e}."
                ),
            ));
        }

        if let Some(limit) = p.daily_limit.filter(|l| *l > 0) {
            let used = p.requests_today;
            let limit = i64::from(limit);
            if used >= limit {
                out.push(Alert::new(
                    Kind::QuotaExhausted,
                    Some(name),
                    None,
                    None,
                    format!(
                        "{name} has used all {limit} requests of today's quota: nothing is sent to it until 00:00 Turkey time."
                    ),
                ));
            }
            if used * 100 >= limit * QUOTA_WARN_PERCENT {
                out.push(Alert::new(
                    Kind::QuotaLow,
                    Some(name),
                    None,
                    None,
                    format!(
                        "{name} has used {used} of its {limit} requests today ({} %); the quota resets at 00:00 Turkey time.",
                        used * 100 / limit
                    ),
                ));
            }
        }

        let since = p.last_poll_ok_ms.unwrap_or(i64::MIN).max(f.started_ms);
        let silent_for = f.now_ms.saturating_sub(since);
        let stalled = silent_for > ms(t.stall_after)
            || was_open(Kind::Stalled)
                .is_some_and(|opened| p.last_poll_ok_ms.is_none_or(|ok| ok < opened));
        if stalled {
            let last = p
                .last_poll_ok_ms
                .map_or("never".to_string(), |m| turkey_rfc3339(ms_to_utc(m)));
            out.push(Alert::new(
                Kind::Stalled,
                Some(name),
                None,
                None,
                format!(
                    "{name} has not been polled successfully for over {} (last success: {last}).",
                    human_seconds(t.stall_after.as_secs())
                ),
            ));
        }

        for r in &p.refused {
            let listing = shown_listing(&r.listing);
            out.push(Alert::new(
                Kind::PushRefused,
                Some(name),
                Some(&r.sku),
                Some(listing.clone()),
                format!(
                    "{name} refused the stock of listing {listing} (SKU {}): {}. It is not sent again until the wanted value changes.",
                    r.sku,
                    r.reason.as_deref().unwrap_or("no reason given")
                ),
            ));
        }

        let backlog = p.pending > 0 && p.pending_for.is_some_and(|d| d >= t.backlog_after);
        if backlog {
            out.push(Alert::new(
                Kind::Backlog,
                Some(name),
                None,
                None,
                format!(
                    "{name} has had a listing waiting to be pushed for over {} ({} waiting now).",
                    human_seconds(t.backlog_after.as_secs()),
                    p.pending
                ),
            ));
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out
}

/// What changed between the alerts open before and now: the alerts that
/// fired (open now, not before) and the rows that resolved (open before,
/// not now). An alert open both times is neither, whatever its message.
pub fn diff(before: &[OpenAlertRow], now: &[Alert]) -> (Vec<Alert>, Vec<OpenAlertRow>) {
    let fired = now
        .iter()
        .filter(|a| !before.iter().any(|b| b.key == a.key))
        .cloned()
        .collect();
    let resolved = before
        .iter()
        .filter(|b| !now.iter().any(|a| a.key == b.key))
        .cloned()
        .collect();
    (fired, resolved)
}

/// The sentence that says an alert ended.
pub fn resolved_message(row: &OpenAlertRow) -> String {
    let p = row.provider.as_deref().unwrap_or("?");
    let sku = row.sku.as_deref().unwrap_or("?");
    match Kind::parse(&row.kind) {
        Some(Kind::Oversold) => format!("SKU {sku} is no longer oversold."),
        Some(Kind::CredentialsRefused) => format!("{p} accepts stoksync's credentials again."),
        Some(Kind::QuotaLow) => {
            format!("{p}'s daily quota is below {QUOTA_WARN_PERCENT} % spent again.")
        }
        Some(Kind::QuotaExhausted) => format!("{p}'s daily quota is no longer spent."),
        Some(Kind::Stalled) => format!("{p} was polled successfully again."),
        Some(Kind::PushRefused) => format!(
            "{p} no longer refuses listing {} (SKU {sku}): its value was accepted, changed or unlinked.",
            row.listing.as_deref().unwrap_or("?")
        ),
        Some(Kind::Backlog) => format!("{p}'s pushes have caught up."),
        None => format!("resolved: {}", row.message),
    }
}

/// Replaces every secret's value in `text` by `***`.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.expose().len() >= 3 {
            out = out.replace(s.expose(), "***");
        }
    }
    out
}

/// The JSON of one event.
pub fn payload(event: &str, row: &OpenAlertRow, message: &str, at_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "event": event,
        "key": row.key,
        "kind": row.kind,
        "provider": row.provider,
        "sku": row.sku,
        "listing": row.listing,
        "message": message,
        "since": turkey_rfc3339(ms_to_utc(row.opened_at_ms)),
        "at": turkey_rfc3339(ms_to_utc(at_ms)),
    })
}

/// An open alert as `status`, `/readyz` and the page show it.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub kind: String,
    pub provider: Option<String>,
    pub sku: Option<String>,
    pub listing: Option<String>,
    pub message: String,
    pub since: String,
}

/// The alerts open now, as the daemon last saw them.
pub async fn reasons(ledger: &Ledger) -> Result<Vec<Reason>, LedgerError> {
    Ok(ledger
        .open_alerts()
        .await?
        .into_iter()
        .map(|r| Reason {
            since: turkey_rfc3339(ms_to_utc(r.opened_at_ms)),
            kind: r.kind,
            provider: r.provider,
            sku: r.sku,
            listing: r.listing,
            message: r.message,
        })
        .collect())
}

/// Reads the facts for `evaluate`, and records each provider's waiting
/// listings with since when (`engine::pending`; the evaluator is the only
/// writer of that record, so the next evaluation, in this process or the
/// next, starts from it). In shadow mode nothing is pushed, so nothing
/// waits to be.
pub async fn gather(
    config: &Config,
    ledger: &Ledger,
    engine: &Engine,
    started_ms: i64,
) -> Result<Facts, LedgerError> {
    let now = now_ms();
    let day_start = turkey_midnight_before(crate::clock::now_utc()).timestamp_millis();
    let loops = engine.health().snapshot();
    // The providers' reasons, read only when some listing is refused.
    let mut reasons: Option<HashMap<(ProviderName, String, String), Option<String>>> = None;
    let mut providers = Vec::new();
    let mut backlogs = Vec::new();
    // Read once for every provider: a few statements every period, not a
    // few per provider.
    let states = ledger.provider_states().await?;
    let look = if engine.shadow() {
        None
    } else {
        Some(pending::Look::now(ledger).await?)
    };
    for p in engine.providers() {
        let name = p.name();
        let state = states.get(&name).cloned().unwrap_or_default();
        // The backlog's read plans from the listing states too: read once.
        let (backlog, listings) = match &look {
            None => (None, ledger.listing_states(name).await?),
            Some(look) => {
                let (b, states) = look
                    .read(ledger, &config.sync.rules, name, started_ms)
                    .await?;
                (Some(b), states)
            }
        };
        let planned = plan::plan(&listings, &config.sync.rules);
        let sku_of: HashMap<&ListingRef, &str> = listings
            .iter()
            .map(|l| (&l.listing, l.sku.as_str()))
            .collect();
        let rejected = planned
            .held
            .iter()
            .filter(|(_, h)| matches!(h, plan::Held::Rejected { .. }));
        if reasons.is_none() && rejected.clone().next().is_some() {
            reasons = Some(
                ledger
                    .list_mappings()
                    .await?
                    .into_iter()
                    .map(|m| ((m.provider, m.listing_id, m.variant_id), m.last_error))
                    .collect(),
            );
        }
        let reasons = reasons.as_ref();
        let refused = rejected
            .map(|(l, _)| Refused {
                sku: sku_of.get(l).copied().unwrap_or("?").to_string(),
                reason: reasons
                    .and_then(|r| r.get(&(name, l.listing_id.clone(), l.variant_id.clone())))
                    .cloned()
                    .flatten(),
                listing: l.clone(),
            })
            .collect();
        let h = loops.get(&name);
        let daily_limit = crate::engine::status::limits(config, name).1;
        providers.push(ProviderFacts {
            provider: name,
            polled_since_start: h.is_some_and(|h| h.polled),
            credentials_refused: h.and_then(|h| h.credentials_refused.clone()),
            last_poll_ok_ms: state.last_poll_ok_ms,
            // Counted only where a daily quota makes it matter.
            requests_today: match daily_limit {
                Some(_) => ledger.requests_since(name, day_start).await?,
                None => 0,
            },
            daily_limit,
            refused,
            pending: backlog.as_ref().map_or(0, |b| b.len()),
            pending_for: backlog.as_ref().and_then(|b| b.waited(now)),
        });
        backlogs.extend(backlog.map(|b| (name, b)));
    }
    // Not recorded this time (a busy database): the next evaluation
    // replays from the last record, so nothing is lost but a little work;
    // the alerts still go by what was read.
    let recorded: Vec<(ProviderName, &pending::Backlog)> =
        backlogs.iter().map(|(p, b)| (*p, b)).collect();
    if let Err(e) = pending::record(ledger, &recorded).await {
        tracing::warn!(error = %e, "cannot record the listings waiting to be pushed");
    }
    Ok(Facts {
        now_ms: now,
        started_ms,
        oversold: ledger
            .oversold()
            .await?
            .into_iter()
            .map(|r| (r.sku, r.quantity))
            .collect(),
        providers,
    })
}

/// Where alerts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Webhook,
    Command,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Webhook => "webhook",
            Route::Command => "command",
        }
    }
}

/// The routes `config` sets.
pub fn routes(config: &Config) -> Vec<Route> {
    let mut out = Vec::new();
    if config.alerts.webhook.is_some() {
        out.push(Route::Webhook);
    }
    if config.alerts.command.is_some() {
        out.push(Route::Command);
    }
    out
}

/// The wait before retry `n` (1 for the first): `base` doubled each time,
/// at most `cap`.
pub fn backoff(n: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(1u32 << n.saturating_sub(1).min(20))
        .min(cap)
}

/// How often the daemon evaluates: as often as it polls, at most every 5 s.
pub fn evaluate_every(config: &Config) -> Duration {
    config
        .sync
        .poll_interval
        .min(Duration::from_secs(5))
        .max(Duration::from_millis(100))
}

/// Retry pacing of deliveries (tests shrink it).
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

/// One evaluation: reads the facts, records what fired and resolved with
/// its deliveries owed, logs each event. Returns whether anything changed.
pub async fn evaluate_once(
    config: &Config,
    ledger: &Ledger,
    engine: &Engine,
    started_ms: i64,
) -> Result<bool, LedgerError> {
    let facts = gather(config, ledger, engine, started_ms).await?;
    let thresholds = Thresholds {
        stall_after: config
            .alerts
            .stall_after
            .unwrap_or_else(|| crate::engine::stall_after(&config.sync)),
        backlog_after: config.alerts.backlog_after,
    };
    let before = ledger.open_alerts().await?;
    let open: BTreeMap<String, i64> = before
        .iter()
        .map(|r| (r.key.clone(), r.opened_at_ms))
        .collect();
    let secrets = config.secrets();
    let mut now = evaluate(&facts, &thresholds, &open);
    for a in &mut now {
        a.message = redact(&a.message, &secrets);
    }
    let (fired, resolved) = diff(&before, &now);
    if fired.is_empty() && resolved.is_empty() {
        return Ok(false);
    }
    let at = facts.now_ms;
    let routes = routes(config);
    let mut opened = Vec::new();
    let mut deliveries = Vec::new();
    let mut closed = Vec::new();
    for a in &fired {
        let row = OpenAlertRow {
            key: a.key.clone(),
            kind: a.kind.as_str().to_string(),
            provider: a.provider.map(|p| p.as_str().to_string()),
            sku: a.sku.clone(),
            listing: a.listing.clone(),
            message: a.message.clone(),
            opened_at_ms: at,
        };
        tracing::warn!(alert = %a.key, kind = a.kind.as_str(), "alert: {}", a.message);
        let body = redact(
            &payload("fired", &row, &row.message, at).to_string(),
            &secrets,
        );
        for r in &routes {
            deliveries.push((r.as_str(), body.clone()));
        }
        opened.push(row);
    }
    for row in &resolved {
        let message = redact(&resolved_message(row), &secrets);
        tracing::info!(alert = %row.key, kind = %row.kind, "alert resolved: {message}");
        let body = redact(
            &payload("resolved", row, &message, at).to_string(),
            &secrets,
        );
        for r in &routes {
            deliveries.push((r.as_str(), body.clone()));
        }
        closed.push(row.key.clone());
    }
    ledger
        .transition_alerts(&opened, &closed, &deliveries, at)
        .await?;
    Ok(true)
}

/// Sends one payload by `route`; `Err` says why it failed (never a secret).
pub async fn deliver(
    config: &Config,
    client: &reqwest::Client,
    route: Route,
    payload: &str,
) -> Result<(), String> {
    let timeout = config.alerts.timeout;
    match route {
        Route::Webhook => {
            let Some(url) = &config.alerts.webhook else {
                return Err("no webhook configured".into());
            };
            let sent = client
                .post(url.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(payload.to_string())
                .timeout(timeout)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("the webhook answered {}", r.status())),
                // reqwest's error text names the URL: keep to its kind.
                Err(e) if e.is_timeout() => Err(format!(
                    "the webhook did not answer within {}",
                    humantime::format_duration(timeout)
                )),
                Err(e) if e.is_connect() => Err("cannot connect to the webhook".into()),
                Err(_) => Err("the webhook request failed".into()),
            }
        }
        Route::Command => {
            let Some(argv) = config.alerts.command.as_ref().filter(|a| !a.is_empty()) else {
                return Err("no command configured".into());
            };
            run_command(argv, payload, timeout).await
        }
    }
}

/// Runs `argv` with `payload` on its standard input; killed after `timeout`.
async fn run_command(argv: &[String], payload: &str, timeout: Duration) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let program = &argv[0];
    let mut child = tokio::process::Command::new(program)
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let mut stdin = child.stdin.take();
    let run = async {
        if let Some(s) = stdin.as_mut() {
            // A command that does not read its input is not a failure.
            let _ = s.write_all(payload.as_bytes()).await;
            let _ = s.shutdown().await;
        }
        drop(stdin.take());
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        // Dropping the child on timeout kills it (`kill_on_drop`).
        Err(_) => Err(format!(
            "`{program}` did not finish within {}; killed",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => Err(format!("`{program}`: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let err: String = err.trim().chars().take(200).collect();
            Err(format!("`{program}` ended with {}: {err}", out.status))
        }
    }
}

/// Delivers what `route` owes, oldest first, until told to stop.
async fn delivery_loop(
    config: Arc<Config>,
    ledger: Ledger,
    route: Route,
    wake: Arc<Notify>,
    pacing: Pacing,
    cancel: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let wait = match ledger.next_alert_delivery(route.as_str()).await {
            Err(e) => {
                tracing::warn!(route = route.as_str(), error = %e, "cannot read the alert outbox");
                Duration::from_secs(1)
            }
            Ok(None) => Duration::from_secs(60),
            Ok(Some(row)) if row.next_at_ms > now_ms() => {
                Duration::from_millis(u64::try_from(row.next_at_ms - now_ms()).unwrap_or(0))
            }
            Ok(Some(row)) => {
                let outcome = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    o = deliver(&config, &client, route, &row.payload) => o,
                };
                let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX) + 1;
                let done = match &outcome {
                    Ok(()) => {
                        tracing::info!(route = route.as_str(), attempt, "alert delivered");
                        ledger.drop_alert_delivery(row.id).await
                    }
                    Err(e) if attempt > config.alerts.retries => {
                        tracing::error!(
                            route = route.as_str(),
                            attempts = attempt,
                            error = %e,
                            payload = %row.payload,
                            "alert not delivered, retries spent; dropped"
                        );
                        ledger.drop_alert_delivery(row.id).await
                    }
                    Err(e) => {
                        let after = backoff(attempt, pacing.base, pacing.cap);
                        tracing::warn!(
                            route = route.as_str(),
                            attempt,
                            error = %e,
                            retry_in_ms = after.as_millis() as u64,
                            "alert delivery failed; will retry"
                        );
                        ledger
                            .retry_alert_delivery(row.id, now_ms() + ms(after))
                            .await
                    }
                };
                if let Err(e) = done {
                    tracing::warn!(route = route.as_str(), error = %e, "cannot update the alert outbox");
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                }
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The daemon's alerts: evaluates every `evaluate_every` and delivers on
/// its own tasks, until `cancel`. Nothing here is awaited by the provider
/// loops.
pub fn spawn(
    config: Arc<Config>,
    ledger: Ledger,
    engine: Arc<Engine>,
    pacing: Pacing,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started_ms = now_ms();
        let every = evaluate_every(&config);
        let mut wakes = Vec::new();
        let mut tasks = Vec::new();
        for route in routes(&config) {
            let wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            tasks.push(tokio::spawn(delivery_loop(
                config.clone(),
                ledger.clone(),
                route,
                wake,
                pacing,
                cancel.clone(),
            )));
        }
        // A tick every `every`, however long an evaluation takes (a late
        // one is not made up for by a burst): an alert fires or resolves
        // within one period of its fact.
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            match evaluate_once(&config, &ledger, &engine, started_ms).await {
                Ok(true) => wakes.iter().for_each(|w| w.notify_one()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot evaluate the alerts"),
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn t() -> Thresholds {
        Thresholds {
            stall_after: Duration::from_secs(600),
            backlog_after: Duration::from_secs(600),
        }
    }

    fn quiet(p: ProviderName) -> ProviderFacts {
        ProviderFacts {
            provider: p,
            polled_since_start: true,
            credentials_refused: None,
            last_poll_ok_ms: Some(NOW - 1_000),
            requests_today: 10,
            daily_limit: Some(500),
            refused: vec![],
            pending: 0,
            pending_for: None,
        }
    }

    fn facts(providers: Vec<ProviderFacts>) -> Facts {
        Facts {
            now_ms: NOW,
            started_ms: NOW - 3_600_000,
            oversold: vec![],
            providers,
        }
    }

    fn rows(alerts: &[Alert], at: i64) -> Vec<OpenAlertRow> {
        alerts
            .iter()
            .map(|a| OpenAlertRow {
                key: a.key.clone(),
                kind: a.kind.as_str().into(),
                provider: a.provider.map(|p| p.as_str().into()),
                sku: a.sku.clone(),
                listing: a.listing.clone(),
                message: a.message.clone(),
                opened_at_ms: at,
            })
            .collect()
    }

    fn keys(a: &[Alert]) -> Vec<&str> {
        a.iter().map(|a| a.key.as_str()).collect()
    }

    /// Runs snapshots through evaluate and diff as the daemon does; returns
    /// the events (`+key` fired, `-key` resolved) in order.
    fn episode(snapshots: &[Facts]) -> Vec<String> {
        let mut open: Vec<OpenAlertRow> = vec![];
        let mut events = vec![];
        for f in snapshots {
            let map = open
                .iter()
                .map(|r| (r.key.clone(), r.opened_at_ms))
                .collect();
            let now = evaluate(f, &t(), &map);
            let (fired, resolved) = diff(&open, &now);
            events.extend(fired.iter().map(|a| format!("+{}", a.key)));
            events.extend(resolved.iter().map(|r| format!("-{}", r.key)));
            open.retain(|r| !resolved.iter().any(|x| x.key == r.key));
            open.extend(rows(&fired, f.now_ms));
        }
        events
    }

    #[test]
    fn a_quiet_world_has_no_alert() {
        let f = facts(ProviderName::ALL.into_iter().map(quiet).collect());
        assert!(evaluate(&f, &t(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn an_oversold_sku_fires_once_and_resolves_once() {
        let mut f = facts(vec![quiet(ProviderName::Bazaardan)]);
        let clean = f.clone();
        f.oversold = vec![("KALEM".into(), -3)];
        let mut deeper = f.clone();
        deeper.oversold = vec![("KALEM".into(), -5)];
        let events = episode(&[clean.clone(), f.clone(), deeper, f, clean.clone(), clean]);
        assert_eq!(events, ["+oversold//KALEM", "-oversold//KALEM"]);
        let mut f = facts(vec![]);
        f.oversold = vec![("KALEM".into(), -3)];
        let a = &evaluate(&f, &t(), &BTreeMap::new())[0];
        assert_eq!(a.kind, Kind::Oversold);
        assert_eq!(a.sku.as_deref(), Some("KALEM"));
        assert!(
            a.message.contains("holds -3") && a.message.ends_with('.'),
            "{}",
            a.message
        );
    }

    #[test]
    fn refused_credentials_stay_open_across_a_restart_until_a_poll_succeeds() {
        let mut bad = quiet(ProviderName::Pazarsync);
        bad.credentials_refused = Some("credentials refused (invalid_client)".into());
        bad.polled_since_start = false;
        let a = evaluate(&facts(vec![bad.clone()]), &t(), &BTreeMap::new());
        assert_eq!(keys(&a), ["credentials_refused/pazarsync/"]);
        assert!(a[0].message.contains("invalid_client"), "{}", a[0].message);
        // A new process that has not polled yet knows nothing: it stays.
        let mut fresh = quiet(ProviderName::Pazarsync);
        fresh.polled_since_start = false;
        let open = BTreeMap::from([("credentials_refused/pazarsync/".to_string(), NOW)]);
        assert_eq!(
            keys(&evaluate(&facts(vec![fresh]), &t(), &open)),
            ["credentials_refused/pazarsync/"]
        );
        // A successful poll ends it.
        let good = quiet(ProviderName::Pazarsync);
        assert!(evaluate(&facts(vec![good]), &t(), &open).is_empty());
        let events = episode(&[
            facts(vec![bad.clone()]),
            facts(vec![bad]),
            facts(vec![quiet(ProviderName::Pazarsync)]),
        ]);
        assert_eq!(
            events,
            [
                "+credentials_refused/pazarsync/",
                "-credentials_refused/pazarsync/"
            ]
        );
    }

    #[test]
    fn quota_warns_at_80_percent_and_again_when_spent() {
        let at = |used: i64| {
            let mut p = quiet(ProviderName::Stokdurumu);
            p.requests_today = used;
            facts(vec![p])
        };
        assert!(evaluate(&at(399), &t(), &BTreeMap::new()).is_empty());
        assert_eq!(
            keys(&evaluate(&at(400), &t(), &BTreeMap::new())),
            ["quota_low/stokdurumu/"]
        );
        assert_eq!(
            keys(&evaluate(&at(500), &t(), &BTreeMap::new())),
            ["quota_exhausted/stokdurumu/", "quota_low/stokdurumu/"]
        );
        let events = episode(&[at(10), at(450), at(499), at(500), at(501), at(3)]);
        assert_eq!(
            events,
            [
                "+quota_low/stokdurumu/",
                "+quota_exhausted/stokdurumu/",
                // A new day ends both (resolved in key order).
                "-quota_low/stokdurumu/",
                "-quota_exhausted/stokdurumu/",
            ]
        );
        let mut unlimited = quiet(ProviderName::Stokdurumu);
        unlimited.daily_limit = None;
        unlimited.requests_today = 1_000_000;
        assert!(evaluate(&facts(vec![unlimited]), &t(), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn a_provider_not_polled_for_stall_after_is_stalled_and_a_restart_does_not_end_it() {
        let mut p = quiet(ProviderName::Eticaret);
        p.last_poll_ok_ms = Some(NOW - 600_001);
        let stalled = facts(vec![p.clone()]);
        assert_eq!(
            keys(&evaluate(&stalled, &t(), &BTreeMap::new())),
            ["stalled/eticaret/"]
        );
        p.last_poll_ok_ms = Some(NOW - 599_000);
        assert!(evaluate(&facts(vec![p.clone()]), &t(), &BTreeMap::new()).is_empty());
        // Never polled: counted from the start of this process.
        p.last_poll_ok_ms = None;
        let mut f = facts(vec![p.clone()]);
        f.started_ms = NOW - 1_000;
        assert!(evaluate(&f, &t(), &BTreeMap::new()).is_empty());
        // Open before a restart: stays until a poll succeeds after it opened.
        let open = BTreeMap::from([("stalled/eticaret/".to_string(), NOW - 5_000)]);
        p.last_poll_ok_ms = Some(NOW - 700_000);
        let mut f = facts(vec![p.clone()]);
        f.started_ms = NOW - 1_000;
        assert_eq!(keys(&evaluate(&f, &t(), &open)), ["stalled/eticaret/"]);
        p.last_poll_ok_ms = Some(NOW - 10);
        let mut f = facts(vec![p]);
        f.started_ms = NOW - 1_000;
        assert!(evaluate(&f, &t(), &open).is_empty());
    }

    #[test]
    fn each_refused_listing_is_its_own_alert_with_sku_and_reason() {
        let mut p = quiet(ProviderName::Bazaardan);
        let refused = |id: &str| Refused {
            listing: ListingRef {
                provider: ProviderName::Bazaardan,
                listing_id: id.into(),
                variant_id: String::new(),
            },
            sku: "DEFTER".into(),
            reason: Some("NOT_FOUND: Product or variant not found".into()),
        };
        p.refused = vec![refused("999999"), refused("888")];
        let a = evaluate(&facts(vec![p.clone()]), &t(), &BTreeMap::new());
        assert_eq!(
            keys(&a),
            [
                "push_refused/bazaardan/888",
                "push_refused/bazaardan/999999"
            ]
        );
        assert_eq!(a[1].sku.as_deref(), Some("DEFTER"));
        assert_eq!(a[1].listing.as_deref(), Some("999999"));
        assert!(a[1].message.contains("NOT_FOUND"), "{}", a[1].message);
        let mut one = p.clone();
        one.refused.truncate(1);
        let events = episode(&[facts(vec![p]), facts(vec![one])]);
        assert_eq!(
            events,
            [
                "+push_refused/bazaardan/888",
                "+push_refused/bazaardan/999999",
                "-push_refused/bazaardan/888",
            ]
        );
    }

    #[test]
    fn a_backlog_fires_after_backlog_after_and_resolves_when_it_drains() {
        let with = |pending: usize, secs: u64| {
            let mut p = quiet(ProviderName::Pazarsync);
            p.pending = pending;
            p.pending_for = (pending > 0).then_some(Duration::from_secs(secs));
            facts(vec![p])
        };
        let events = episode(&[
            with(0, 0),
            with(9, 100),
            with(9, 599),
            with(9, 600),
            with(3, 900),
            with(0, 0),
        ]);
        assert_eq!(events, ["+backlog/pazarsync/", "-backlog/pazarsync/"]);
        // The facts come from the ledger: a new process that has not polled
        // yet knows the backlog as well as the old one did.
        let mut fresh = with(2, 700);
        fresh.providers[0].polled_since_start = false;
        let open = BTreeMap::from([("backlog/pazarsync/".to_string(), NOW)]);
        assert_eq!(keys(&evaluate(&fresh, &t(), &open)), ["backlog/pazarsync/"]);
        let mut drained = with(0, 0);
        drained.providers[0].polled_since_start = false;
        assert!(evaluate(&drained, &t(), &open).is_empty());
    }

    #[test]
    fn payloads_carry_the_fields_and_never_a_secret() {
        let secret = Secret::new("s3cr3t-\"quoted\"-value");
        let row = OpenAlertRow {
            key: "credentials_refused/bazaardan/".into(),
            kind: "credentials_refused".into(),
            provider: Some("bazaardan".into()),
            sku: None,
            listing: None,
            message: "bazaardan said s3cr3t-\"quoted\"-value is wrong".into(),
            opened_at_ms: NOW,
        };
        let message = redact(&row.message, &[&secret]);
        assert_eq!(message, "bazaardan said *** is wrong");
        let body = payload("fired", &row, &message, NOW + 1_000).to_string();
        assert!(!body.contains("s3cr3t"), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["event"], "fired");
        assert_eq!(v["kind"], "credentials_refused");
        assert_eq!(v["provider"], "bazaardan");
        assert!(v["sku"].is_null());
        assert!(v["since"].as_str().unwrap().ends_with("+03:00"), "{v}");
        assert!(v["at"].as_str().is_some());
        assert_eq!(
            resolved_message(&row),
            "bazaardan accepts stoksync's credentials again."
        );
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }

    fn command_config(dir: &std::path::Path, script: &str, retries: u32) -> Arc<Config> {
        let text = format!(
            "[ledger]\ndatabase = \"x.db\"\n[http]\nlisten = \"off\"\n[alerts]\ncommand = [\"sh\", \"-c\", {:?}]\ntimeout = \"5s\"\nretries = {retries}\n",
            script
        );
        Arc::new(Config::parse(&text, &dir.join("t.toml"), &|_| None).unwrap())
    }

    /// What a route owes stays in the outbox until delivered: a new
    /// delivery task (a restart) sends it; a route that keeps failing is
    /// tried `retries + 1` times, in order, then the row is dropped.
    #[tokio::test]
    async fn owed_deliveries_survive_a_restart_and_failures_are_retried_then_dropped() {
        let (dir, ledger) = crate::ledger::test_support::temp_ledger().await;
        let row = OpenAlertRow {
            key: "oversold//KALEM".into(),
            kind: "oversold".into(),
            provider: None,
            sku: Some("KALEM".into()),
            listing: None,
            message: "SKU KALEM is oversold.".into(),
            opened_at_ms: NOW,
        };
        let body = payload("fired", &row, &row.message, NOW).to_string();
        ledger
            .transition_alerts(
                std::slice::from_ref(&row),
                &[],
                &[("command", body.clone())],
                now_ms(),
            )
            .await
            .unwrap();
        let pacing = Pacing {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
        };
        // A command that always fails, with one retry.
        let tries = dir.path().join("tries");
        let failing = command_config(
            dir.path(),
            &format!("echo x >> '{}'; exit 3", tries.display()),
            1,
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(delivery_loop(
            failing,
            ledger.clone(),
            Route::Command,
            Arc::new(Notify::new()),
            pacing,
            cancel.clone(),
        ));
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while ledger.alert_deliveries_owed().await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < end, "never dropped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        task.await.unwrap();
        let tried = std::fs::read_to_string(&tries).unwrap();
        assert_eq!(tried.lines().count(), 2, "tried once and retried once");
        assert_eq!(
            ledger.open_alerts().await.unwrap(),
            std::slice::from_ref(&row)
        );

        // Owed by a process that stopped before delivering: the next one sends it.
        ledger
            .transition_alerts(
                &[],
                std::slice::from_ref(&row.key),
                &[("command", body.clone())],
                now_ms(),
            )
            .await
            .unwrap();
        assert!(ledger.open_alerts().await.unwrap().is_empty());
        let out = dir.path().join("got.json");
        let working = command_config(dir.path(), &format!("cat > '{}'", out.display()), 1);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(delivery_loop(
            working,
            ledger.clone(),
            Route::Command,
            Arc::new(Notify::new()),
            pacing,
            cancel.clone(),
        ));
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while ledger.alert_deliveries_owed().await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < end, "never delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), body);
    }

    /// A command that outlives `timeout` is killed and the attempt fails.
    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let started = std::time::Instant::now();
        let err = run_command(
            &["sleep".to_string(), "30".to_string()],
            "{}",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = run_command(
            &["/no/such/program".to_string()],
            "{}",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.contains("cannot start"), "{err}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (b, c) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff(1, b, c), Duration::from_secs(1));
        assert_eq!(backoff(2, b, c), Duration::from_secs(2));
        assert_eq!(backoff(4, b, c), Duration::from_secs(8));
        assert_eq!(backoff(40, b, c), c);
    }
}
