//! The read-only status page at `/`: server-rendered HTML, no script, no
//! build step; refreshes itself every 10 s.

use super::{AppState, esc};
use crate::domain::{ms_to_utc, shown_stamp, shown_time};
use crate::engine::status;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::fmt::Write;

pub(super) const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:24px;color:#1d2433;background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#5b6475;margin-bottom:16px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;min-width:480px}
th,td{padding:6px 10px;border-bottom:1px solid #e4e7ec;text-align:left;font-size:14px;vertical-align:top}
th{background:#eef1f5;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#0a7a3d;font-weight:600}.bad{color:#b42318;font-weight:600}.warn{color:#a15c00;font-weight:600}
.none{color:#5b6475;font-style:italic}
";

pub(super) async fn status_page(State(s): State<AppState>) -> Response {
    match render(&s).await {
        Ok(body) => Html(body).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(format!(
                "<!doctype html><title>stoksync</title><h1>stoksync</h1><p>cannot read the ledger: {}</p>",
                esc(&e.to_string())
            )),
        )
            .into_response(),
    }
}

/// An RFC 3339 stamp in the seller's time, the zone named:
/// `2026-11-24 17:27:42 +03:00 (Europe/Istanbul)`.
fn when(stamp: Option<&str>) -> String {
    stamp.map_or_else(|| "never".to_string(), shown_stamp)
}

fn td(s: impl std::fmt::Display) -> String {
    format!("<td>{}</td>", esc(&s.to_string()))
}

/// A SKU, linked to its `explain` page.
fn sku_cell(sku: &str) -> String {
    format!(
        "<td><a href=\"/sku/{}\">{}</a></td>",
        url_path_segment(sku),
        esc(sku)
    )
}

/// `sku` as one URL path segment: unreserved characters as they are,
/// everything else percent-encoded (a SKU may hold `/`, `?`, `#`, spaces).
pub(super) fn url_path_segment(sku: &str) -> String {
    let mut out = String::with_capacity(sku.len());
    for b in sku.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn num(n: impl std::fmt::Display) -> String {
    format!("<td class=\"n\">{n}</td>")
}

fn table(out: &mut String, id: &str, head: &[&str], rows: &[String], empty: &str) {
    if rows.is_empty() {
        let _ = write!(out, "<p class=\"none\" id=\"{id}\">{}</p>", esc(empty));
        return;
    }
    let _ = write!(out, "<table id=\"{id}\"><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for r in rows {
        let _ = write!(out, "<tr>{r}</tr>");
    }
    out.push_str("</table>");
}

async fn render(s: &AppState) -> anyhow::Result<String> {
    let st = status::collect(&s.config, &s.ledger).await?;
    let loops = s.engine.health().snapshot();
    let live = s.engine.health().liveness();
    let recent = s.ledger.recent_movements(25).await?;
    let mut out = String::new();
    let role = match s.ledger.role() {
        crate::ledger::Role::Solo => String::new(),
        crate::ledger::Role::Active { epoch } => {
            format!(" · <span class=\"ok\">active (lease epoch {epoch})</span>")
        }
        crate::ledger::Role::Standby { active } => format!(
            " · <span class=\"warn\">standby: {} is active; this daemon takes over when its lease expires</span>",
            esc(&active)
        ),
        crate::ledger::Role::Lost { epoch } => format!(
            " · <span class=\"bad\">lost the active lease (epoch {epoch}): syncing nothing</span>"
        ),
    };
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>stoksync status</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        out,
        "<h1>stoksync</h1><div class=\"sub\">{}{role} · up {} s · {}</div>",
        esc(&s.config.database.display().to_string()),
        s.engine.health().uptime().as_secs(),
        if live.alive {
            "<span class=\"ok\">all loops alive</span>".to_string()
        } else {
            format!(
                "<span class=\"bad\">stalled: {}</span>",
                esc(&live
                    .stalled
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "))
            )
        }
    );

    if !st.alerts.is_empty() {
        let _ = write!(
            out,
            "<h2 id=\"alerts\" class=\"bad\">Degraded: {} alert(s) open</h2><ul>",
            st.alerts.len()
        );
        for a in &st.alerts {
            let _ = write!(out, "<li><b>{}</b>: {}</li>", esc(&a.kind), esc(&a.message));
        }
        out.push_str("</ul>");
    }
    if s.config.sync.mode == crate::config::Mode::Shadow {
        out.push_str(
            "<p class=\"warn\" id=\"mode\">Shadow mode: orders are applied to the ledger, nothing is pushed (see below).</p>",
        );
    }

    out.push_str("<h2>Providers</h2>");
    let rows: Vec<String> = st
        .providers
        .iter()
        .map(|p| {
            let h = loops.get(&p.provider);
            let health = match (h, &p.last_error) {
                (Some(h), _) if h.last_error.is_some() => {
                    "<td class=\"bad\">failing</td>".to_string()
                }
                (Some(h), _) if h.polled => "<td class=\"ok\">ok</td>".to_string(),
                _ => "<td class=\"warn\">starting</td>".to_string(),
            };
            let minute = match p.per_minute_limit {
                Some(l) => format!("{} / {l}", p.requests_current_minute),
                None => p.requests_current_minute.to_string(),
            };
            let day = match p.daily_limit {
                Some(l) => format!(
                    "{} / {l} ({} left)",
                    p.requests_today,
                    p.requests_left_today.unwrap_or(0)
                ),
                None => format!("{} (no daily quota)", p.requests_today),
            };
            let error = h
                .and_then(|h| h.last_error.clone())
                .or_else(|| p.last_error.clone())
                .unwrap_or_default();
            format!(
                "{}{health}{}{}{}{}{}{}{}{}",
                td(p.provider),
                td(when(p.last_successful_poll.as_deref())),
                td(when(p.last_successful_push.as_deref())),
                num(p.pending_pushes),
                num(format!("{:.2}", p.push_pace_per_minute)),
                td(status::describe_drain(
                    p.pending_pushes,
                    p.drain_eta_seconds
                )),
                td(minute),
                td(day),
                td(error)
            )
        })
        .collect();
    let pace_head = format!(
        "pushed per minute (last {} min)",
        crate::engine::health::PACE_WINDOW.as_secs() / 60
    );
    table(
        &mut out,
        "providers",
        &[
            "provider",
            "health",
            "last poll",
            "last push",
            "pending pushes",
            &pace_head,
            "backlog drains in",
            "requests this minute",
            "requests today",
            "last error",
        ],
        &rows,
        "no provider configured",
    );

    if s.config.sync.mode == crate::config::Mode::Shadow {
        shadow_section(
            &mut out,
            &crate::engine::shadow::report(&s.config, &s.ledger).await?,
        );
    }

    out.push_str("<h2>Recent movements</h2>");
    let rows: Vec<String> = recent
        .iter()
        .map(|m| {
            format!(
                "{}{}{}{}{}{}",
                td(shown_time(ms_to_utc(m.created_at_ms))),
                sku_cell(&m.sku),
                num(format!("{:+}", m.delta)),
                num(format!("{} → {}", m.quantity_before, m.quantity_after)),
                td(format!("{} ({})", m.kind, m.source)),
                td(&m.reason)
            )
        })
        .collect();
    table(
        &mut out,
        "movements",
        &["when", "SKU", "change", "quantity", "kind", "reason"],
        &rows,
        "no movement yet",
    );

    out.push_str("<h2>Order lines not linked to a SKU</h2>");
    let rows: Vec<String> = st
        .unlinked_order_items
        .iter()
        .map(|u| {
            format!(
                "{}{}{}{}{}",
                td(&u.provider),
                td(&u.order_ref),
                td(if u.variant_id.is_empty() {
                    u.listing_id.clone()
                } else {
                    format!("{}/{}", u.listing_id, u.variant_id)
                }),
                td(u.sku_hint.as_deref().unwrap_or("-")),
                num(u.quantity)
            )
        })
        .collect();
    table(
        &mut out,
        "unlinked",
        &[
            "provider",
            "order",
            "listing",
            "SKU on the order",
            "quantity",
        ],
        &rows,
        "none: every order line is linked",
    );

    out.push_str("<h2>Oversold SKUs</h2>");
    let rows: Vec<String> = st
        .oversold
        .iter()
        .map(|o| format!("{}{}", sku_cell(&o.sku), num(o.quantity)))
        .collect();
    table(
        &mut out,
        "oversold",
        &["SKU", "ledger quantity"],
        &rows,
        "none",
    );

    if !st.not_linked.is_empty() {
        out.push_str("<h2>Listings not linked</h2>");
        let rows: Vec<String> = st
            .not_linked
            .iter()
            .map(|n| format!("{}{}{}", td(&n.provider), td(&n.listing_id), td(&n.problem)))
            .collect();
        table(
            &mut out,
            "not-linked",
            &["provider", "listing", "why"],
            &rows,
            "",
        );
    }
    out.push_str("</body></html>");
    Ok(out)
}

/// Shadow mode: per provider, what stoksync would do; the listings it
/// would lower (the oversell risk) listed first.
fn shadow_section(out: &mut String, r: &crate::engine::shadow::ShadowReport) {
    out.push_str("<h2 id=\"shadow\">Shadow mode: nothing is pushed</h2>");
    let rows: Vec<String> = r
        .providers
        .iter()
        .map(|p| {
            format!(
                "{}{}{}{}{}{}",
                td(p.provider),
                num(p.agree),
                num(p.lower.len()),
                num(p.raise.len()),
                num(p.unknown.len()),
                num(p.frozen)
            )
        })
        .collect();
    table(
        out,
        "shadow-providers",
        &[
            "provider",
            "agree",
            "would lower",
            "would raise",
            "never read",
            "frozen",
        ],
        &rows,
        "no provider configured",
    );
    let n = |q: Option<i64>| q.map_or("?".to_string(), |q| q.to_string());
    let rows: Vec<String> = r
        .providers
        .iter()
        .flat_map(|p| {
            p.lower
                .iter()
                .map(move |row| (p.provider, "lower", row))
                .chain(p.raise.iter().map(move |row| (p.provider, "raise", row)))
        })
        .take(200)
        .map(|(p, word, row)| {
            format!(
                "{}{}{}{}{}{}{}",
                td(p),
                td(&row.listing),
                sku_cell(&row.sku),
                td(format!("would {word}")),
                num(n(row.shows)),
                num(n(row.would_show)),
                td(row.since.as_deref().unwrap_or("now"))
            )
        })
        .collect();
    table(
        out,
        "shadow-listings",
        &[
            "provider",
            "listing",
            "SKU",
            "",
            "shows",
            "would show",
            "since",
        ],
        &rows,
        "every listing read agrees with what stoksync would push",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_link_is_one_path_segment() {
        assert_eq!(url_path_segment("KALEM-1_a.b~"), "KALEM-1_a.b~");
        assert_eq!(url_path_segment("A/B ?#%"), "A%2FB%20%3F%23%25");
        assert_eq!(url_path_segment("ÇANTA"), "%C3%87ANTA");
        assert_eq!(
            sku_cell("<x>"),
            "<td><a href=\"/sku/%3Cx%3E\">&lt;x&gt;</a></td>"
        );
    }
}
