//! All four fakes at once, with a JSON control API: what `stoksync sandbox`
//! serves and what `stoksync demo` drives.
//!
//! Ports: with `--listen-base 127.0.0.1:P` the control API is on P and the
//! fakes on P+1 (BaZaaRDan), P+2 (stokdurumu), P+3 (v2 e-commerce) and P+4
//! (PazarSync); with port 0 every one gets a free port.
//!
//! Control API (JSON in, JSON out):
//! - `GET  /`                      base URLs, credentials and a ready config
//! - `GET  /state`                 every listing with its stock, and counters
//! - `POST /products`              `{"sku": "A-1", "stock": 10}` on all four
//! - `POST /orders`                `{"provider": "eticaret", "listing_id": "A-1", "quantity": 2}`
//! - `POST /orders/cancel`         `{"provider": "eticaret", "order": "1001"}`
//! - `POST /stock-by-hand`         `{"listing_id": "1", "stock": 7}` (stokdurumu's panel)
//! - `POST /faults`                `{"provider": "bazaardan", "fault": "server-error", "times": 3, "endpoint": null}`
//! - `DELETE /faults`              clears every queued fault

use super::{Fake, Fault, bazaardan, eticaret, pazarsync, stokdurumu};
use crate::domain::{ListingRef, ProviderName};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The four fakes.
pub struct Sandbox {
    pub bazaardan: bazaardan::FakeBazaardan,
    pub stokdurumu: stokdurumu::FakeStokdurumu,
    pub eticaret: eticaret::FakeEticaret,
    pub pazarsync: pazarsync::FakePazarsync,
}

/// A fault for one provider, as given on the command line:
/// `PROVIDER:KIND[:TIMES[:ENDPOINT]]`, KIND one of `server-error`,
/// `malformed`, `rate-limited`, `hang`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub provider: ProviderName,
    pub fault: Fault,
    pub times: usize,
    pub endpoint: Option<String>,
}

fn parse_kind(kind: &str) -> Result<Fault, String> {
    Ok(match kind {
        "server-error" => Fault::ServerError,
        "malformed" => Fault::Malformed,
        "rate-limited" => Fault::RateLimited { retry_after_s: 5 },
        "hang" => Fault::Hang(Duration::from_secs(60)),
        other => {
            return Err(format!(
                "unknown fault `{other}` (server-error, malformed, rate-limited, hang)"
            ));
        }
    })
}

impl std::str::FromStr for FaultSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(4, ':').collect();
        if parts.len() < 2 {
            return Err(format!(
                "`{s}`: write PROVIDER:KIND[:TIMES[:ENDPOINT]], e.g. eticaret:server-error:3"
            ));
        }
        let provider = parts[0]
            .parse::<ProviderName>()
            .map_err(|e| format!("`{s}`: {e}"))?;
        let fault = parse_kind(parts[1]).map_err(|e| format!("`{s}`: {e}"))?;
        let times = match parts.get(2) {
            None => 1,
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{s}`: TIMES must be a number above 0"))?,
        };
        Ok(FaultSpec {
            provider,
            fault,
            times,
            endpoint: parts.get(3).map(|e| e.to_string()),
        })
    }
}

impl Sandbox {
    /// Starts the four fakes on `host` ports `base+1..=base+4` (or free
    /// ports when `base` is 0), with the providers' real limits.
    pub async fn start(base: SocketAddr) -> std::io::Result<Sandbox> {
        let at = |i: u16| {
            let port = if base.port() == 0 {
                0
            } else {
                base.port().saturating_add(i)
            };
            SocketAddr::new(base.ip(), port).to_string()
        };
        Ok(Sandbox {
            bazaardan: bazaardan::FakeBazaardan::start_on(&at(1), Default::default()).await?,
            stokdurumu: stokdurumu::FakeStokdurumu::start_on(
                &at(2),
                stokdurumu::Options {
                    requests_per_day: Some(crate::config::STOKDURUMU_DEFAULT_PER_DAY),
                    ..Default::default()
                },
            )
            .await?,
            eticaret: eticaret::FakeEticaret::start_on(&at(3), Default::default()).await?,
            pazarsync: pazarsync::FakePazarsync::start_on(&at(4), Default::default()).await?,
        })
    }

    pub fn fakes(&self) -> [&dyn Fake; 4] {
        [
            &self.bazaardan,
            &self.stokdurumu,
            &self.eticaret,
            &self.pazarsync,
        ]
    }

    pub fn fake(&self, p: ProviderName) -> &dyn Fake {
        match p {
            ProviderName::Bazaardan => &self.bazaardan,
            ProviderName::Stokdurumu => &self.stokdurumu,
            ProviderName::Eticaret => &self.eticaret,
            ProviderName::Pazarsync => &self.pazarsync,
        }
    }

    /// A complete stoksync config for these fakes.
    pub fn config(&self, database: &str, http_listen: &str, poll_interval: &str) -> String {
        let mut out = format!(
            "# stoksync config for the sandbox (credentials are the sandbox's own)\n[ledger]\ndatabase = \"{database}\"\n\n[sync]\npoll_interval = \"{poll_interval}\"\nrequest_timeout = \"10s\"\n\n[http]\nlisten = \"{http_listen}\"\n\n"
        );
        for f in self.fakes() {
            out.push_str(&f.config_table(true));
            out.push('\n');
        }
        out
    }

    /// Puts each `(sku, stock)` on all four providers, showing `stock`;
    /// returns the BaZaaRDan links (it has no product list to discover).
    pub fn add_catalog(&self, rows: &[(String, i64)]) -> Vec<(String, ListingRef)> {
        let mut links = Vec::new();
        for (sku, stock) in rows {
            for f in self.fakes() {
                let l = f.add_product(sku, *stock);
                if f.provider() == ProviderName::Bazaardan {
                    links.push((sku.clone(), l));
                }
            }
        }
        links
    }

    pub fn apply_fault(&self, f: &FaultSpec) {
        self.fake(f.provider)
            .inject(f.fault.clone(), f.times, f.endpoint.as_deref());
    }

    /// Every listing and every counter, as the control API's `/state`.
    pub fn state(&self) -> Value {
        let providers: Vec<Value> = self
            .fakes()
            .iter()
            .map(|f| {
                let c = f.counters();
                json!({
                    "provider": f.provider(),
                    "base_url": f.base_url(),
                    "listings": f.listings(),
                    "counters": {
                        "requests": c.requests,
                        "by_endpoint": c.by_endpoint,
                        "auth_failures": c.auth_failures,
                        "limit_violations": c.limit_violations,
                        "max_per_minute": c.max_per_minute,
                        "max_batch": c.max_batch,
                        "token_fetches": c.token_fetches,
                    },
                })
            })
            .collect();
        json!({ "providers": providers })
    }

    /// Serves the control API on `addr` until `stop`.
    pub async fn serve_control(
        self: Arc<Self>,
        addr: SocketAddr,
        stop: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let app = Router::new()
            .route("/", get(index))
            .route("/state", get(state))
            .route("/products", post(add_product))
            .route("/orders", post(place_order))
            .route("/orders/cancel", post(cancel_order))
            .route("/stock-by-hand", post(by_hand))
            .route("/faults", post(add_fault).delete(clear_faults))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "sandbox control API stopped");
            }
        });
        Ok(bound)
    }
}

type S = State<Arc<Sandbox>>;

/// A refused control call: 400 with `{"error": "..."}`.
struct Bad(String);

impl IntoResponse for Bad {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": self.0})),
        )
            .into_response()
    }
}

fn bad(message: impl Into<String>) -> Bad {
    Bad(message.into())
}

fn body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Bad> {
    serde_json::from_slice(b).map_err(|e| bad(format!("bad JSON body: {e}")))
}

type Reply = Result<Response, Bad>;

async fn index(State(s): S) -> Response {
    let providers: Vec<Value> = s
        .fakes()
        .iter()
        .map(|f| json!({"provider": f.provider(), "base_url": f.base_url(), "config": f.config_table(true)}))
        .collect();
    axum::Json(json!({
        "providers": providers,
        "config": s.config("stoksync.db", "127.0.0.1:8787", "5s"),
    }))
    .into_response()
}

async fn state(State(s): S) -> Response {
    axum::Json(s.state()).into_response()
}

#[derive(Deserialize)]
struct NewProduct {
    sku: String,
    stock: i64,
}

async fn add_product(State(s): S, b: axum::body::Bytes) -> Reply {
    let p: NewProduct = body(&b)?;
    if p.sku.trim().is_empty() || p.stock < 0 {
        return Err(bad("`sku` must not be empty and `stock` must be 0 or more"));
    }
    let links = s.add_catalog(&[(p.sku.clone(), p.stock)]);
    Ok(
        axum::Json(json!({"sku": p.sku, "bazaardan_listing": links.first().map(|l| &l.1)}))
            .into_response(),
    )
}

#[derive(Deserialize)]
struct NewOrder {
    provider: ProviderName,
    listing_id: String,
    #[serde(default)]
    variant_id: String,
    quantity: i64,
}

async fn place_order(State(s): S, b: axum::body::Bytes) -> Reply {
    let o: NewOrder = body(&b)?;
    if o.quantity <= 0 {
        return Err(bad("`quantity` must be above 0"));
    }
    let l = ListingRef {
        provider: o.provider,
        listing_id: o.listing_id,
        variant_id: o.variant_id,
    };
    match s.fake(o.provider).place_order(&l, o.quantity) {
        Some(order) => Ok(axum::Json(json!({"order": order})).into_response()),
        None => Err(bad(format!(
            "{} takes no orders, or has no listing {l}",
            o.provider
        ))),
    }
}

#[derive(Deserialize)]
struct Cancel {
    provider: ProviderName,
    order: String,
}

async fn cancel_order(State(s): S, b: axum::body::Bytes) -> Reply {
    let c: Cancel = body(&b)?;
    s.fake(c.provider).cancel_order(&c.order);
    Ok(axum::Json(json!({"cancelled": c.order})).into_response())
}

#[derive(Deserialize)]
struct ByHand {
    listing_id: String,
    stock: i64,
}

async fn by_hand(State(s): S, b: axum::body::Bytes) -> Reply {
    let h: ByHand = body(&b)?;
    let l = ListingRef {
        provider: ProviderName::Stokdurumu,
        listing_id: h.listing_id,
        variant_id: String::new(),
    };
    if h.stock < 0 || !Fake::set_by_hand(&s.stokdurumu, &l, h.stock) {
        return Err(bad(format!(
            "no stokdurumu product {l}, or a negative stock"
        )));
    }
    Ok(axum::Json(json!({"listing": l, "stock": h.stock})).into_response())
}

#[derive(Deserialize)]
struct NewFault {
    provider: ProviderName,
    fault: String,
    #[serde(default = "one")]
    times: usize,
    endpoint: Option<String>,
}

fn one() -> usize {
    1
}

async fn add_fault(State(s): S, b: axum::body::Bytes) -> Reply {
    let f: NewFault = body(&b)?;
    let fault = match parse_kind(&f.fault) {
        Ok(k) => k,
        Err(e) => return Err(bad(e)),
    };
    if f.times == 0 {
        return Err(bad("`times` must be above 0"));
    }
    s.apply_fault(&FaultSpec {
        provider: f.provider,
        fault,
        times: f.times,
        endpoint: f.endpoint,
    });
    Ok(axum::Json(json!({"queued": f.times})).into_response())
}

async fn clear_faults(State(s): S) -> Response {
    for f in s.fakes() {
        f.clear_faults();
    }
    axum::Json(json!({"cleared": true})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_or_say_why_not() {
        let f: FaultSpec = "eticaret:server-error:3".parse().unwrap();
        assert_eq!(f.provider, ProviderName::Eticaret);
        assert_eq!(f.fault, Fault::ServerError);
        assert_eq!(f.times, 3);
        let f: FaultSpec = "pazarsync:malformed:1:stocks/batch".parse().unwrap();
        assert_eq!(f.endpoint.as_deref(), Some("stocks/batch"));
        assert_eq!("bazaardan:hang".parse::<FaultSpec>().unwrap().times, 1);
        assert!(
            "nowhere:hang"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("nowhere")
        );
        assert!(
            "eticaret:boom"
                .parse::<FaultSpec>()
                .unwrap_err()
                .contains("boom")
        );
        assert!("eticaret:hang:0".parse::<FaultSpec>().is_err());
        assert!("eticaret".parse::<FaultSpec>().is_err());
    }
}
