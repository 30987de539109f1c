//! The daemon's HTTP side on `[http] listen`: `/healthz`, `/readyz`,
//! `/metrics` (Prometheus text), the ERP API under `/v1/stock`, and a
//! read-only status page at `/`. Everything is read from the ledger and the
//! engine's heartbeats; the ERP API writes through the same ledger calls as
//! the CLI, with the same idempotency.
//!
//! `/v1/*` needs `Authorization: Bearer <http.token>` whenever a token is
//! configured (always when listening beyond loopback: config refuses
//! otherwise). Health, metrics and the page are read-only and open.

mod metrics;
mod page;
mod sku_page;

use crate::config::{Config, Secret};
use crate::engine::Engine;
use crate::ledger::{Ledger, LedgerError, StockChange};
use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub ledger: Ledger,
    pub engine: Arc<Engine>,
}

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 200;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::status_page))
        .route("/sku/{sku}", get(sku_page::sku_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/stock", get(list_stock))
        .route("/v1/stock/{sku}", get(get_stock).put(set_stock))
        .route("/v1/stock/{sku}/adjust", post(adjust_stock))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint").into_response() })
        .with_state(state)
}

/// Binds `addr` (before READY is sent, so a taken port fails the start).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (`http.listen`): {e}"))
}

/// Serves until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

/// An API refusal: a status and a message, sent as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
            other => {
                tracing::error!(error = %other, "ledger error in the HTTP API");
                error(StatusCode::SERVICE_UNAVAILABLE, other.to_string())
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

async fn healthz(State(s): State<AppState>) -> Response {
    let l = s.engine.health().liveness();
    let code = if l.alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let stalled: Vec<_> = l
        .stalled
        .iter()
        .map(|(p, secs)| json!({"provider": p, "seconds_since_heartbeat": secs}))
        .collect();
    (
        code,
        axum::Json(json!({
            "alive": l.alive,
            "uptime_seconds": s.engine.health().uptime().as_secs(),
            "stalled_loops": stalled,
        })),
    )
        .into_response()
}

/// Ready when the database answers and every provider has polled at least
/// once or reported why it could not. `state` is `degraded` while any alert
/// is open (`alerts` gives the reasons), `starting` before ready.
async fn readyz(State(s): State<AppState>) -> Response {
    let database = s.ledger.ping().await;
    let loops = s.engine.health().snapshot();
    let mut ready = database.is_ok();
    let providers: Vec<_> = s
        .engine
        .providers()
        .iter()
        .map(|p| {
            let h = loops.get(&p.name());
            let polled = h.is_some_and(|h| h.polled);
            let error = h.and_then(|h| h.last_error.clone());
            if !polled && error.is_none() {
                ready = false;
            }
            json!({"provider": p.name(), "polled": polled, "error": error})
        })
        .collect();
    // A standby is alive but not the one syncing: not ready, and says so.
    let role = s.ledger.role();
    let standby = matches!(
        role,
        crate::ledger::Role::Standby { .. } | crate::ledger::Role::Lost { .. }
    );
    if standby {
        ready = false;
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Open alerts do not change the code (it is about the process), only
    // what the body says.
    let alerts = crate::alerts::reasons(&s.ledger).await.unwrap_or_default();
    let state = if let crate::ledger::Role::Standby { .. } = role {
        "standby"
    } else if let crate::ledger::Role::Lost { .. } = role {
        "lease_lost"
    } else if !ready {
        "starting"
    } else if alerts.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    (
        code,
        axum::Json(json!({
            "ready": ready,
            "state": state,
            "lease": role,
            "alerts": alerts,
            "database": database.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string()),
            "providers": providers,
        })),
    )
        .into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the caller may use `/v1/*`.
fn authorize(token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), token.expose().as_bytes()) => Ok(()),
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, "wrong bearer token")),
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <http.token>`",
        )),
    }
}

async fn list_stock(State(s): State<AppState>, headers: HeaderMap) -> ApiResult {
    authorize(s.config.http.token.as_ref(), &headers)?;
    Ok(axum::Json(s.ledger.list_stock().await?).into_response())
}

async fn get_stock(
    State(s): State<AppState>,
    sku: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    authorize(s.config.http.token.as_ref(), &headers)?;
    let sku = path_sku(sku)?;
    match s.ledger.stock_of(&sku).await? {
        Some(q) => Ok(axum::Json(json!({"sku": sku, "quantity": q})).into_response()),
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!("SKU `{sku}` is not in the ledger"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetBody {
    quantity: i64,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdjustBody {
    delta: i64,
    reason: String,
}

/// The movement's idempotency key: the caller's `Idempotency-Key` (a retried
/// call applies once), or a fresh one.
fn movement_key(what: &str, headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(format!(
            "erp/api/{what}/{}-{:08x}",
            crate::domain::now_ms(),
            fastrand::u32(..)
        )),
        Some(v) => {
            let k = v.to_str().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "`Idempotency-Key` must be visible ASCII",
                )
            })?;
            let k = k.trim();
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
                ));
            }
            Ok(format!("erp/api/key/{k}"))
        }
    }
}

/// The SKU in the path. Refusals are JSON like every API error (axum's own
/// are plain text), e.g. for a percent-encoded SKU that is not UTF-8.
fn path_sku(sku: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    sku.map(|Path(s)| s).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the SKU in the path: {}", e.body_text()),
        )
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON {shape}: {e}"),
        )
    })
}

async fn movement(
    s: &AppState,
    headers: &HeaderMap,
    sku: &str,
    change: StockChange,
    reason: &str,
    what: &str,
) -> ApiResult {
    // The ledger's rule, checked before the key so an empty reason is
    // refused whatever the headers say.
    crate::ledger::check_reason(reason)?;
    let key = movement_key(what, headers)?;
    let result = s.ledger.erp_movement(sku, change, reason, &key).await;
    // A key seen before applies nothing. When it was used for another SKU
    // the caller has mixed up two changes: say so, rather than answer with
    // this SKU's count as if the change had been made (or fail to find it).
    // Only replays pay for the lookup.
    if !matches!(&result, Ok(o) if o.applied)
        && headers.contains_key("idempotency-key")
        && let Some(first) = s
            .ledger
            .movements_with_prefix(&key)
            .await?
            .into_iter()
            .find(|m| m.idempotency_key == key)
        && first.sku != sku
    {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "this `Idempotency-Key` was already used for SKU `{}`; send a new key for a change of `{sku}`",
                first.sku
            ),
        ));
    }
    let out = result?;
    if out.applied {
        // The loops push the new value on their next cycle.
        tracing::info!(
            sku,
            quantity = out.quantity,
            reason,
            "stock changed through the ERP API"
        );
    }
    Ok(axum::Json(
        json!({"sku": sku, "quantity": out.quantity, "applied": out.applied, "delta": out.delta}),
    )
    .into_response())
}

async fn set_stock(
    State(s): State<AppState>,
    sku: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult {
    authorize(s.config.http.token.as_ref(), &headers)?;
    let sku = path_sku(sku)?;
    let body = body.map_err(|e| error(e.status(), e.body_text()))?;
    let b: SetBody = parse_body(&body, r#"{"quantity": N, "reason": "..."}"#)?;
    movement(
        &s,
        &headers,
        &sku,
        StockChange::To(b.quantity),
        &b.reason,
        "set",
    )
    .await
}

async fn adjust_stock(
    State(s): State<AppState>,
    sku: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult {
    authorize(s.config.http.token.as_ref(), &headers)?;
    let sku = path_sku(sku)?;
    let body = body.map_err(|e| error(e.status(), e.body_text()))?;
    let b: AdjustBody = parse_body(&body, r#"{"delta": N, "reason": "..."}"#)?;
    movement(
        &s,
        &headers,
        &sku,
        StockChange::By(b.delta),
        &b.reason,
        "adjust",
    )
    .await
}

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check_is_exact() {
        let t = Secret::new("0123456789abcdef");
        let mut h = HeaderMap::new();
        assert!(authorize(None, &h).is_ok(), "no token configured: open");
        let r = authorize(Some(&t), &h).unwrap_err().into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdeX".parse().unwrap(),
        );
        assert!(authorize(Some(&t), &h).is_err());
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().unwrap(),
        );
        assert!(authorize(Some(&t), &h).is_ok());
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcde".parse().unwrap(),
        );
        assert!(
            authorize(Some(&t), &h).is_err(),
            "a prefix is not the token"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }
}
