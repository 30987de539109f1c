//! `/metrics` in the Prometheus text format (version 0.0.4). Counters are
//! this process's (they restart at zero with it); gauges read the ledger.

use super::AppState;
use crate::engine::health::drain_eta;
use crate::engine::pending;
use crate::engine::status;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

/// Builds the text. Samples are kept with their family, whatever order
/// the code adds them in, and each family is written once: its `# HELP`,
/// its `# TYPE`, then all its samples. (Interleaved families are read as
/// duplicates by a Prometheus parser, which refuses the scrape.)
#[derive(Default)]
struct Text {
    families: Vec<Family>,
}

struct Family {
    name: String,
    kind: &'static str,
    help: String,
    samples: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &'static str, help: &str) {
        debug_assert!(
            self.families.iter().all(|f| f.name != name),
            "metric family {name} declared twice"
        );
        self.families.push(Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            samples: String::new(),
        });
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let Some(f) = self.families.iter_mut().find(|f| f.name == name) else {
            debug_assert!(false, "sample of undeclared metric family {name}");
            return;
        };
        let out = &mut f.samples;
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(out, "{k}=\"{v}\"");
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for f in self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            out.push_str(&f.samples);
        }
        out
    }
}

pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    match render(&s).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("# ledger error: {e}\n"),
        )
            .into_response(),
    }
}

async fn render(s: &AppState) -> anyhow::Result<String> {
    let mut t = Text::default();
    let engine = &s.engine;
    let health = engine.health().snapshot();
    let providers = engine.providers();

    t.family(
        "stoksync_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    t.sample(
        "stoksync_uptime_seconds",
        &[],
        engine.health().uptime().as_secs(),
    );

    t.family(
        "stoksync_requests_total",
        "counter",
        "HTTP attempts to each provider by outcome (ok, client_error, server_error, rate_limited, network_error).",
    );
    for p in providers {
        let o = p.limiter().stats().outcomes;
        let name = p.name().to_string();
        for (outcome, n) in [
            ("ok", o.ok),
            ("client_error", o.client_error),
            ("server_error", o.server_error),
            ("rate_limited", o.rate_limited),
            ("network_error", o.network_error),
        ] {
            t.sample(
                "stoksync_requests_total",
                &[("provider", &name), ("outcome", outcome)],
                n,
            );
        }
    }

    type Read = fn(&crate::limit::LimiterStats) -> f64;
    let per_provider: [(&str, &str, &str, Read); 4] = [
        (
            "stoksync_limiter_waits_total",
            "counter",
            "Requests that waited for a rate-limit permit.",
            |s| s.waits as f64,
        ),
        (
            "stoksync_limiter_wait_seconds_total",
            "counter",
            "Seconds spent waiting for rate-limit permits.",
            |s| s.wait_ms as f64 / 1000.0,
        ),
        (
            "stoksync_rate_limited_answers_total",
            "counter",
            "Answers that said slow down (HTTP 429, v2 AUTH004).",
            |s| s.rate_limited_answers as f64,
        ),
        (
            "stoksync_token_refreshes_total",
            "counter",
            "Access tokens fetched (PazarSync OAuth2).",
            |s| s.token_refreshes as f64,
        ),
    ];
    for (name, kind, help, f) in per_provider {
        t.family(name, kind, help);
        for p in providers {
            let st = p.limiter().stats();
            t.sample(name, &[("provider", &p.name().to_string())], f(&st));
        }
    }

    t.family(
        "stoksync_quota_used_today",
        "gauge",
        "Requests spent today (since 00:00 Turkey time), for providers with a daily quota.",
    );
    let mut quotas = Vec::new();
    for p in providers {
        if let Some(limit) = p.limiter().daily_limit() {
            let used = p.limiter().used_today().await;
            quotas.push((p.name().to_string(), used, limit));
            t.sample(
                "stoksync_quota_used_today",
                &[("provider", &p.name().to_string())],
                used,
            );
        }
    }
    t.family(
        "stoksync_quota_left_today",
        "gauge",
        "Requests left today under the daily quota.",
    );
    for (name, used, limit) in &quotas {
        t.sample(
            "stoksync_quota_left_today",
            &[("provider", name)],
            limit.saturating_sub(*used),
        );
    }
    t.family(
        "stoksync_quota_limit",
        "gauge",
        "The daily quota configured for the provider.",
    );
    for (name, _, limit) in &quotas {
        t.sample("stoksync_quota_limit", &[("provider", name)], limit);
    }

    t.family(
        "stoksync_pending_pushes",
        "gauge",
        "Listings whose wanted stock differs from what the provider confirmed.",
    );
    let mut ages = Vec::new();
    let mut paces = Vec::new();
    let now = crate::domain::now_ms();
    let uptime_ms = i64::try_from(engine.health().uptime().as_millis()).unwrap_or(0);
    for p in providers {
        // The listings waiting and since when, read from the ledger as the
        // backlog alert reads them (`engine::pending`): the same count as
        // `status`'s `pending_pushes`, the same age the alert fires on.
        let backlog =
            pending::read(&s.ledger, &s.config.sync.rules, p.name(), now - uptime_ms).await?;
        let name = p.name().to_string();
        t.sample(
            "stoksync_pending_pushes",
            &[("provider", &name)],
            backlog.len(),
        );
        let pace = status::push_pace(&s.ledger, p.name(), now).await?;
        paces.push((name.clone(), backlog.len(), pace));
        let age = backlog.waited(now).map_or(0, |d| d.as_secs());
        ages.push((name, age));
    }
    t.family(
        "stoksync_pending_push_age_seconds",
        "gauge",
        "How long the provider's longest-waiting listing has waited to be pushed, from the ledger (0 when none).",
    );
    for (name, age) in &ages {
        t.sample(
            "stoksync_pending_push_age_seconds",
            &[("provider", name)],
            age,
        );
    }

    t.family(
        "stoksync_push_pace_per_minute",
        "gauge",
        &format!(
            "Listings pushed per minute over the last {} minutes (every push sent, whatever the answer).",
            crate::engine::health::PACE_WINDOW.as_secs() / 60
        ),
    );
    for (name, _, pace) in &paces {
        t.sample(
            "stoksync_push_pace_per_minute",
            &[("provider", name)],
            status::shown_pace(*pace),
        );
    }
    t.family(
        "stoksync_backlog_drain_eta_seconds",
        "gauge",
        "Seconds the pending pushes take at the current pace: 0 with none pending, +Inf when some are pending and nothing was pushed lately.",
    );
    for (name, pending, pace) in &paces {
        let eta = match drain_eta(*pending, *pace) {
            Some(d) => d.as_secs().to_string(),
            None => "+Inf".to_string(),
        };
        t.sample(
            "stoksync_backlog_drain_eta_seconds",
            &[("provider", name)],
            eta,
        );
    }

    t.family(
        "stoksync_pushes_total",
        "counter",
        "Listing pushes by result (confirmed, refused, failed), this process.",
    );
    t.family(
        "stoksync_order_lines_seen_total",
        "counter",
        "Order lines read from the provider, this process.",
    );
    t.family(
        "stoksync_loop_polled",
        "gauge",
        "1 when the provider loop has polled successfully since the start.",
    );
    for p in providers {
        let name = p.name().to_string();
        let h = health.get(&p.name());
        for (result, n) in [
            ("confirmed", h.map_or(0, |h| h.pushes_confirmed)),
            ("refused", h.map_or(0, |h| h.pushes_refused)),
            ("failed", h.map_or(0, |h| h.pushes_failed)),
        ] {
            t.sample(
                "stoksync_pushes_total",
                &[("provider", &name), ("result", result)],
                n,
            );
        }
        t.sample(
            "stoksync_order_lines_seen_total",
            &[("provider", &name)],
            h.map_or(0, |h| h.order_lines_seen),
        );
        t.sample(
            "stoksync_loop_polled",
            &[("provider", &name)],
            u8::from(h.is_some_and(|h| h.polled)),
        );
    }

    t.family(
        "stoksync_movements_applied_total",
        "counter",
        "Movements applied to the ledger by this process, per provider loop.",
    );
    for p in providers {
        let n = health.get(&p.name()).map_or(0, |h| h.movements_applied);
        t.sample(
            "stoksync_movements_applied_total",
            &[("provider", &p.name().to_string())],
            n,
        );
    }
    t.family(
        "stoksync_ledger_movements",
        "gauge",
        "Movements in the ledger's journal by source and kind (all time).",
    );
    for (source, kind, n) in s.ledger.movement_counts().await? {
        t.sample(
            "stoksync_ledger_movements",
            &[("source", &source), ("kind", &kind)],
            n,
        );
    }

    t.family(
        "stoksync_unlinked_order_items",
        "gauge",
        "Order lines not linked to a SKU (their stock is not moved until they are).",
    );
    t.sample(
        "stoksync_unlinked_order_items",
        &[],
        s.ledger.unlinked_items().await?.len(),
    );
    t.family(
        "stoksync_alerts_open",
        "gauge",
        "Alerts open now, by kind (see [alerts]); 0 for a kind with none.",
    );
    let open = s.ledger.open_alerts().await?;
    for k in crate::alerts::Kind::ALL {
        t.sample(
            "stoksync_alerts_open",
            &[("kind", k.as_str())],
            open.iter().filter(|a| a.kind == k.as_str()).count(),
        );
    }

    t.family(
        "stoksync_oversold_skus",
        "gauge",
        "SKUs whose ledger quantity is below zero.",
    );
    t.sample(
        "stoksync_oversold_skus",
        &[],
        s.ledger.oversold().await?.len(),
    );
    Ok(t.finish())
}
