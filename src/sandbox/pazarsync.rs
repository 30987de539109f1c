//! A faithful fake of the PazarSync API (pazarsync-api.txt and PROTOCOL.md):
//! OAuth2 client credentials with expiring (and revocable) tokens,
//! `X-RateLimit-*` headers on every answer and 429 past the per-minute
//! limit, `from_date` filtering on `created_at`, order details, single and
//! batch stock updates with per-item `errors`.

use super::{Core, Counters, Fake, Fault};
use crate::domain::{ListingRef, ProviderName, parse_provider_time};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long past its expiry the fake still takes a token: none. A token
/// issued with `expires_in: N` works strictly before N seconds after it was
/// issued (by tokio's clock, which the simulator pauses), and a request
/// arriving later is refused and counted in `Counters::expired_tokens`.
pub const TOKEN_GRACE: Duration = Duration::ZERO;

#[derive(Debug, Clone)]
pub struct Options {
    pub client_id: String,
    pub client_secret: String,
    pub requests_per_minute: Option<u32>,
    /// Requests a day (days turn at 00:00 Turkey time); `None`: unlimited.
    pub requests_per_day: Option<u32>,
    pub token_lifetime: Duration,
    /// The window the per-minute limit counts in (60 s; shorter in the
    /// simulator).
    pub window: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            requests_per_minute: Some(60),
            requests_per_day: None,
            token_lifetime: Duration::from_secs(3600),
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
struct Product {
    sku: String,
    stock: i64,
}

#[derive(Debug, Clone)]
struct Order {
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// (item id, product id, sku, quantity)
    items: Vec<(String, String, String, i64)>,
}

#[derive(Default)]
struct Data {
    products: BTreeMap<String, Product>,
    orders: BTreeMap<String, Order>,
    /// Every token issued and not revoked, with when it expires; kept past
    /// that, so a late use is told apart from an unknown or revoked token.
    /// Token -> when it expires (Unix ms, by the calendar: the
    /// simulator's worlds outlive a runtime and its clock).
    tokens: HashMap<String, i64>,
    next: u64,
}

struct Shared {
    opts: Options,
    data: Mutex<Data>,
    core: Core,
}

impl Shared {
    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakePazarsync {
    /// `host:port` on loopback, or a name only [`super::InProcess`] knows.
    authority: String,
    app: Router,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakePazarsync {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The order number PazarSync shows the seller, beside its id: the seed's
/// example is id `ord_789012`, number `ORD123456`, so the number is `ORD`
/// and digits, never the id with a prefix (`ORDord_500001`).
fn order_number(id: &str) -> String {
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    format!("ORD{digits}")
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl FakePazarsync {
    pub async fn start(opts: Options) -> std::io::Result<FakePazarsync> {
        Self::start_on("127.0.0.1:0", opts).await
    }

    pub async fn start_on(addr: &str, opts: Options) -> std::io::Result<FakePazarsync> {
        let mut fake = Self::in_process(opts);
        let (addr, stop) = super::serve(addr, fake.app.clone(), "pazarsync").await?;
        fake.authority = addr.to_string();
        fake.stop = stop;
        Ok(fake)
    }

    /// A fake served by no socket: requests reach it through
    /// [`super::InProcess`] (the simulator's transport), in virtual time.
    pub fn in_process(opts: Options) -> FakePazarsync {
        let shared = Arc::new(Shared {
            core: Core::new(opts.window),
            opts,
            data: Mutex::new(Data::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        FakePazarsync {
            authority: "pazarsync.invalid".into(),
            app,
            shared,
            stop: CancellationToken::new(),
        }
    }

    /// Every token issued so far stops working (as a server may do before
    /// `expires_in`).
    pub fn revoke_tokens(&self) {
        self.shared.data().tokens.clear();
    }

    pub fn set_status(&self, id: &str, status: &str) {
        let mut d = self.shared.data();
        let Some(o) = d.orders.get_mut(id) else {
            return;
        };
        let was = std::mem::replace(&mut o.status, status.to_string());
        o.updated_at = crate::clock::now_utc();
        let items = o.items.clone();
        if status == "cancelled" && was != "cancelled" {
            for (_, pid, _, q) in items {
                if let Some(p) = d.products.get_mut(&pid) {
                    p.stock += q;
                }
                self.shared.core.changed(&pid);
            }
        }
    }

    /// Every order: (id, status, items (item id, product id, sku, quantity)).
    #[allow(clippy::type_complexity)]
    pub fn orders(&self) -> Vec<(String, String, Vec<(String, String, String, i64)>)> {
        self.shared
            .data()
            .orders
            .iter()
            .map(|(id, o)| (id.clone(), o.status.clone(), o.items.clone()))
            .collect()
    }

    /// Moves an order's creation time back (for late changes of old orders).
    pub fn backdate(&self, id: &str, by: Duration) {
        if let Some(o) = self.shared.data().orders.get_mut(id) {
            o.created_at -= chrono::Duration::from_std(by).unwrap_or_default();
        }
    }
}

fn err(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _busy = s.core.enter();
    let path = uri.path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let endpoint = match parts.as_slice() {
        ["api", "auth", "token"] => "auth/token".to_string(),
        ["api", "v1", "orders", _] => "orders/{id}".to_string(),
        ["api", "v1", "products", _, "stock"] => "products/{id}/stock".to_string(),
        ["api", "v1", rest @ ..] => rest.join("/"),
        _ => path.clone(),
    };
    let at = s.core.arrive(&endpoint);
    let over = s.core.over_minute_limit(at, s.opts.requests_per_minute)
        || s.core.over_daily_limit(s.opts.requests_per_day);
    let mut resp = if over {
        let mut r = err(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
        );
        r.headers_mut()
            .insert("Retry-After", s.core.window_secs().into());
        r
    } else {
        match s.core.fault(&endpoint) {
            Err(fault) => {
                if !matches!(fault, Fault::RateLimited { .. }) {
                    s.core.unanswered(written(&endpoint, &parts, &body));
                }
                fault_answer(&s, fault).await
            }
            Ok(lost) => {
                let r = route(
                    &s,
                    &endpoint,
                    &parts,
                    method,
                    &uri,
                    &headers,
                    &body,
                    lost.is_none(),
                );
                match lost {
                    Some(l) => s.core.lose(l).await,
                    None => r,
                }
            }
        }
    };
    // Every answer carries the limit headers.
    if let Some(limit) = s.opts.requests_per_minute {
        let used = s
            .core
            .arrivals
            .in_last(crate::clock::now_ms(), s.core.window);
        let h = resp.headers_mut();
        h.insert("X-RateLimit-Limit", limit.into());
        h.insert(
            "X-RateLimit-Remaining",
            (limit as usize).saturating_sub(used).into(),
        );
        let reset = crate::clock::now_utc().timestamp() + s.core.window_secs() as i64;
        h.insert("X-RateLimit-Reset", reset.into());
    }
    resp
}

/// The answer to a request a fault hits before it is carried out.
/// The listings a push sets (product ids), for the writes among the
/// endpoints; none for a read.
fn written(endpoint: &str, parts: &[&str], body: &[u8]) -> Vec<String> {
    match endpoint {
        "products/{id}/stock" => parts.get(3).map(|id| id.to_string()).into_iter().collect(),
        "stocks/batch" => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            v.get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| i.get("product_id").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        }
        _ => Vec::new(),
    }
}

async fn fault_answer(s: &Shared, fault: Fault) -> Response {
    match fault {
        Fault::ServerError => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Injected",
        ),
        Fault::Hang(d) => {
            tokio::time::sleep(d).await;
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Injected hang",
            )
        }
        Fault::Malformed => (StatusCode::OK, "{\"data\": [").into_response(),
        Fault::RateLimited { retry_after_s } => {
            let mut r = err(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            );
            r.headers_mut().insert(
                "Retry-After",
                retry_after_s.max(1).min(s.core.window_secs()).into(),
            );
            r
        }
        Fault::Drop | Fault::Lost(_) => super::dropped(),
    }
}

#[allow(clippy::too_many_arguments)]
fn route(
    s: &Shared,
    endpoint: &str,
    parts: &[&str],
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    answered: bool,
) -> Response {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if endpoint == "auth/token" {
        s.core.counters().token_fetches += 1;
        if method != Method::POST
            || v["client_id"] != s.opts.client_id.as_str()
            || v["client_secret"] != s.opts.client_secret.as_str()
            || v["grant_type"] != "client_credentials"
        {
            s.core.counters().auth_failures += 1;
            return err(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Invalid client credentials",
            );
        }
        let token = format!("tok_{:016x}", fastrand::u64(..));
        s.data().tokens.insert(
            token.clone(),
            crate::clock::now_ms() + s.opts.token_lifetime.as_millis() as i64,
        );
        return axum::Json(json!({"access_token": token, "token_type": "bearer",
                                 "expires_in": s.opts.token_lifetime.as_secs()}))
        .into_response();
    }
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let now = crate::clock::now_ms();
    let expiry = s.data().tokens.get(bearer).copied();
    let valid = expiry.is_some_and(|exp| now < exp + TOKEN_GRACE.as_millis() as i64);
    if !valid {
        let mut c = s.core.counters();
        c.auth_failures += 1;
        if let Some(exp) = expiry {
            c.expired_tokens += 1;
            if c.expired_token_examples.len() < 10 {
                c.expired_token_examples.push(format!(
                    "{method} {endpoint} with a token {:.3} s past its expiry ({} s tokens)",
                    (now - exp) as f64 / 1000.0,
                    s.opts.token_lifetime.as_secs()
                ));
            }
        }
        drop(c);
        return err(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Token invalid or expired",
        );
    }
    let q: HashMap<String, String> = Query::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let limit = q
        .get("limit")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(20);
    if limit == 0 || limit > 100 {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "limit must be 1..100",
        );
    }
    let paged = |rows: Vec<Value>| {
        let total = rows.len();
        let data: Vec<Value> = rows
            .into_iter()
            .skip((page - 1) * limit)
            .take(limit)
            .collect();
        axum::Json(json!({"data": data, "meta": {"current_page": page,
            "total_pages": total.div_ceil(limit), "total_items": total, "items_per_page": limit}}))
        .into_response()
    };
    let mut d = s.data();
    match (method, endpoint) {
        (Method::GET, "products") => {
            if answered {
                // What this page shows, the client now knows.
                for id in d.products.keys().skip((page - 1) * limit).take(limit) {
                    s.core.shown(id);
                }
            }
            paged(
                d.products
                    .iter()
                    .map(|(id, p)| {
                        json!({"id": id, "sku": p.sku, "name": "Ürün", "stock": p.stock,
                                      "price": 10.0, "status": "active"})
                    })
                    .collect(),
            )
        }
        (Method::GET, "orders") => {
            let from = q.get("from_date").map(|f| parse_provider_time(f));
            if let Some(None) = from {
                return err(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "from_date must be ISO 8601",
                );
            }
            let from = from.flatten();
            let mut rows: Vec<(&String, &Order)> = d
                .orders
                .iter()
                .filter(|(_, o)| from.is_none_or(|f| o.created_at >= f))
                .collect();
            rows.sort_by_key(|(id, o)| (o.created_at, (*id).clone()));
            paged(
                rows.iter()
                    .map(|(id, o)| {
                        json!({"id": id, "order_number": order_number(id), "marketplace": "web",
                        "status": o.status, "items_count": o.items.len(),
                        "created_at": iso(o.created_at), "updated_at": iso(o.updated_at)})
                    })
                    .collect(),
            )
        }
        (Method::GET, "orders/{id}") => match d.orders.get(parts[3]) {
            None => err(StatusCode::NOT_FOUND, "not_found", "Order not found"),
            Some(o) => {
                for (iid, pid, _, _) in &o.items {
                    s.core.served(
                        &format!("{}/{iid}", parts[3]),
                        &o.status,
                        matches!(o.status.as_str(), "cancelled" | "returned"),
                        pid,
                    );
                }
                axum::Json(json!({
                "id": parts[3], "order_number": order_number(parts[3]), "status": o.status,
                "items": o.items.iter().map(|(iid, pid, sku, q)| json!({"id": iid, "product_id": pid,
                    "sku": sku, "name": "Ürün", "quantity": q})).collect::<Vec<_>>(),
                "created_at": iso(o.created_at), "updated_at": iso(o.updated_at)
            }))
            .into_response()
            }
        },
        (Method::PUT, "products/{id}/stock") => {
            s.core.batch(1);
            let Some(stock) = v.get("stock").and_then(Value::as_i64).filter(|s| *s >= 0) else {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_error",
                    "stock must be a non-negative integer",
                );
            };
            match d.products.get_mut(parts[3]) {
                None => err(StatusCode::NOT_FOUND, "not_found", "Product not found"),
                Some(p) => {
                    let old = std::mem::replace(&mut p.stock, stock);
                    let r = axum::Json(json!({"id": parts[3], "sku": p.sku, "stock": stock,
                                      "updated_at": iso(crate::clock::now_utc())}))
                    .into_response();
                    drop(d);
                    s.core.wrote(parts[3], old, stock, answered);
                    r
                }
            }
        }
        (Method::POST, "stocks/batch") => {
            let Some(items) = v.get("items").and_then(Value::as_array) else {
                return err(StatusCode::BAD_REQUEST, "bad_request", "items is required");
            };
            s.core.batch(items.len());
            if items.len() > 100 {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_error",
                    "at most 100 items",
                );
            }
            let (mut updated, mut errors, mut writes) = (0, Vec::new(), Vec::new());
            for it in items {
                let stock = it.get("stock").and_then(Value::as_i64).filter(|s| *s >= 0);
                let id = it
                    .get("product_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        let sku = it.get("sku").and_then(Value::as_str)?;
                        d.products
                            .iter()
                            .find(|(_, p)| p.sku == sku)
                            .map(|(id, _)| id.clone())
                    });
                match (id.clone().and_then(|id| d.products.get_mut(&id)), stock) {
                    (Some(p), Some(st)) => {
                        let old = std::mem::replace(&mut p.stock, st);
                        writes.push((id.unwrap_or_default(), old, st));
                        updated += 1;
                    }
                    (p, _) => {
                        let mut e = json!({"message": if p.is_none() { "Product not found" } else { "Invalid stock" }});
                        if let Some(pid) = it.get("product_id") {
                            e["product_id"] = pid.clone();
                        } else if let Some(sku) = it.get("sku") {
                            e["sku"] = sku.clone();
                        }
                        errors.push(e);
                    }
                }
            }
            drop(d);
            for (id, old, new) in writes {
                s.core.wrote(&id, old, new, answered);
            }
            axum::Json(json!({"updated": updated, "failed": errors.len(), "errors": errors}))
                .into_response()
        }
        _ => err(StatusCode::NOT_FOUND, "not_found", "Unknown endpoint"),
    }
}

impl Fake for FakePazarsync {
    fn excuse(&self, l: &crate::domain::ListingRef) {
        self.shared.core.excuse(&super::listing_key(l));
    }

    fn timed_writes(&self) -> Vec<(i64, String, i64, i64)> {
        self.shared.core.timed_writes()
    }

    fn router(&self) -> Router {
        self.app.clone()
    }

    fn clear_faults(&self) {
        self.shared.core.faults.clear();
    }

    fn listings(&self) -> Vec<super::FakeListing> {
        self.shared
            .data()
            .products
            .iter()
            .map(|(id, p)| super::FakeListing {
                listing: ListingRef {
                    provider: ProviderName::Pazarsync,
                    listing_id: id.clone(),
                    variant_id: String::new(),
                },
                sku: p.sku.clone(),
                stock: p.stock,
            })
            .collect()
    }

    fn provider(&self) -> ProviderName {
        ProviderName::Pazarsync
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.authority)
    }

    fn config_table(&self, good: bool) -> String {
        format!(
            "[providers.pazarsync]\nbase_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrequests_per_minute = {}\nrequests_per_day = 10000\n",
            self.base_url(),
            self.shared.opts.client_id,
            if good {
                self.shared.opts.client_secret.as_str()
            } else {
                "wrong"
            },
            self.shared.opts.requests_per_minute.unwrap_or(1000)
        )
    }

    fn add_product(&self, sku: &str, stock: i64) -> ListingRef {
        let mut d = self.shared.data();
        d.next += 1;
        let id = format!("prod_{}", 100_000 + d.next);
        d.products.insert(
            id.clone(),
            Product {
                sku: sku.to_string(),
                stock,
            },
        );
        ListingRef {
            provider: ProviderName::Pazarsync,
            listing_id: id,
            variant_id: String::new(),
        }
    }

    fn place_order(&self, l: &ListingRef, quantity: i64) -> Option<String> {
        let mut d = self.shared.data();
        d.next += 1;
        let id = format!("ord_{}", 500_000 + d.next);
        let p = d.products.get_mut(&l.listing_id)?;
        p.stock = (p.stock - quantity).max(0);
        let sku = p.sku.clone();
        let now = crate::clock::now_utc();
        d.orders.insert(
            id.clone(),
            Order {
                status: "processing".into(),
                created_at: now,
                updated_at: now,
                items: vec![("item_1".into(), l.listing_id.clone(), sku, quantity)],
            },
        );
        drop(d);
        self.shared.core.changed(&l.listing_id);
        Some(id)
    }

    fn cancel_order(&self, order: &str) {
        self.set_status(order, "cancelled");
    }

    fn stock(&self, l: &ListingRef) -> Option<i64> {
        self.shared
            .data()
            .products
            .get(&l.listing_id)
            .map(|p| p.stock)
    }

    fn inject(&self, fault: Fault, times: usize, endpoint: Option<&str>) {
        self.shared.core.faults.push(fault, times, endpoint);
    }

    fn push_endpoint(&self) -> &'static str {
        "stocks/batch"
    }

    fn counters(&self) -> Counters {
        self.shared.core.snapshot()
    }

    fn forget_answers(&self) {
        self.shared.core.forget_answers();
    }

    fn set_tripwire(&self, wire: Option<super::Tripwire>) {
        self.shared.core.set_tripwire(wire);
    }

    fn busy(&self) -> usize {
        self.shared.core.busy()
    }

    fn arrivals_ms(&self) -> Vec<i64> {
        self.shared.core.arrivals.walls()
    }
}
