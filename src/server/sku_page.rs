//! `/sku/{sku}`: `explain SKU` as a page (`?format=json` for its JSON).

use super::page::{STYLE, url_path_segment};
use super::{AppState, esc};
use crate::engine::explain::{self, Explanation};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json, Response};
use serde::Deserialize;
use std::fmt::Write;

#[derive(Deserialize)]
pub(super) struct Format {
    format: Option<String>,
}

pub(super) async fn sku_page(
    State(s): State<AppState>,
    Path(sku): Path<String>,
    Query(f): Query<Format>,
) -> Response {
    let json = f.format.as_deref() == Some("json");
    match explain::explain(&s.config, &s.ledger, &sku).await {
        Ok(Some(e)) if json => Json(e).into_response(),
        Ok(Some(e)) => Html(render(&e)).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html(format!(
                "<!doctype html><title>stoksync</title><style>{STYLE}</style><h1>{}</h1><p>No such SKU: no stock, no bundle and no listing has it.</p><p><a href=\"/\">status</a></p>",
                esc(&sku)
            )),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(format!(
                "<!doctype html><title>stoksync</title><p>cannot read the ledger: {}</p>",
                esc(&e.to_string())
            )),
        )
            .into_response(),
    }
}

fn opt(q: Option<i64>) -> String {
    q.map_or("unknown".to_string(), |q| q.to_string())
}

fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · stoksync</title><style>{STYLE}</style></head><body><h1>{}</h1><div class=\"sub\"><a href=\"/\">status</a> · <a href=\"?format=json\">JSON</a></div>",
        esc(&e.sku),
        esc(&e.sku)
    );
    let head = match e.kind {
        "bundle" => format!(
            "A bundle: no stock of its own; its components make <b>{}</b>.",
            opt(e.available)
        ),
        "stock" => format!("<b>{}</b> in the ledger.", opt(e.ledger_quantity)),
        _ => "Not in the ledger (no stock, not a bundle): its listings are not pushed.".to_string(),
    };
    let _ = write!(out, "<p id=\"quantity\">{head}</p>");
    if let Some(b) = &e.bundle {
        out.push_str("<h2>Bundle</h2><table id=\"bundle\"><tr><th>part</th><th>in stock</th><th>per bundle</th><th>whole bundles</th></tr>");
        for p in &b.parts {
            let _ = write!(
                out,
                "<tr><td><a href=\"/sku/{}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                url_path_segment(&p.sku),
                esc(&p.sku),
                opt(p.quantity),
                p.per_bundle,
                opt(p.makes)
            );
        }
        let _ = write!(out, "</table><p>The fewest is {}.</p>", opt(e.available));
    }
    if !e.used_in_bundles.is_empty() {
        out.push_str("<p>Part of: ");
        let links: Vec<String> = e
            .used_in_bundles
            .iter()
            .map(|u| {
                format!(
                    "<a href=\"/sku/{}\">{}</a> ({} per bundle)",
                    url_path_segment(&u.bundle),
                    esc(&u.bundle),
                    u.per_bundle
                )
            })
            .collect();
        let _ = write!(out, "{}</p>", links.join(", "));
    }
    out.push_str("<h2>Listings</h2>");
    if e.listings.is_empty() {
        out.push_str("<p class=\"none\">no listing linked</p>");
    } else {
        out.push_str("<table id=\"listings\"><tr><th>listing</th><th>should show</th><th>confirmed</th><th>rules, in order</th><th>state</th></tr>");
        for l in &e.listings {
            let rules: Vec<String> = l
                .rules
                .iter()
                .map(|s| {
                    esc(&format!(
                        "{} {} from {}: {} → {}",
                        s.field, s.value, s.source, s.before, s.after
                    ))
                })
                .collect();
            let state = if l.why.is_empty() {
                "<span class=\"ok\">in step</span>".to_string()
            } else {
                format!(
                    "<span class=\"warn\">{}</span><ul>{}</ul>",
                    esc(l.state),
                    l.why
                        .iter()
                        .map(|w| format!("<li>{}</li>", esc(w)))
                        .collect::<String>()
                )
            };
            let _ = write!(
                out,
                "<tr><td>{} <small>({})</small></td><td class=\"n\">{}</td><td class=\"n\">{}{}</td><td>{}</td><td>{state}</td></tr>",
                esc(&l.listing),
                esc(&l.origin),
                opt(l.wanted),
                opt(l.confirmed),
                l.confirmed_at
                    .as_ref()
                    .map_or(String::new(), |t| format!("<br><small>{}</small>", esc(t))),
                rules.join("<br>"),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<h2>Last movements</h2>");
    if e.recent_movements.is_empty() {
        out.push_str("<p class=\"none\">no movement</p>");
    } else {
        out.push_str("<table id=\"movements\"><tr><th>when</th><th>change</th><th>quantity</th><th>kind</th><th>reason</th></tr>");
        for m in &e.recent_movements {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"n\">{:+}</td><td class=\"n\">{} → {}</td><td>{} ({})</td><td>{}</td></tr>",
                esc(&m.at),
                m.delta,
                m.before,
                m.after,
                esc(&m.kind),
                esc(&m.source),
                esc(&m.reason)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>");
    out
}
