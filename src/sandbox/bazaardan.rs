//! A faithful fake of BaZaaRDan Partner API v1 (bazaardan-*.txt and
//! PROTOCOL.md): HMAC signatures and the 300 s timestamp window checked,
//! `orders.php` paging with `updated_after`, `order_detail.php`,
//! `stock_update.php`, the documented error shapes and codes, a rate limit,
//! and injectable faults. Placing an order lowers the listing's stock as
//! the real marketplace does; cancelling it gives the stock back.

use super::{Core, Fault};
use crate::domain::{format_turkey, parse_provider_time};
use crate::providers::bazaardan::auth::signature;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The base path of the Partner API on the fake's host.
pub const BASE_PATH: &str = "/api/partner/v1";
/// PROTOCOL.md: timestamps more than 300 s from the server clock are refused.
const TIMESTAMP_WINDOW_S: i64 = 300;

#[derive(Debug, Clone)]
pub struct Options {
    pub client_id: String,
    pub client_secret: String,
    /// Requests per window before answering 429; `None` for no limit.
    pub requests_per_minute: Option<u32>,
    /// The window the limit counts in (60 s; shorter in the simulator).
    pub window: Duration,
    /// How long each answer takes (a real network's round trip).
    pub latency: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            requests_per_minute: Some(60),
            window: Duration::from_secs(60),
            latency: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
struct Listing {
    sku: String,
    stock: i64,
    /// Belongs to another seller: updates answer FORBIDDEN_SCOPE.
    foreign: bool,
}

#[derive(Debug, Clone)]
struct Item {
    order_no: String,
    product_id: u64,
    variant: Option<u64>,
    sku: String,
    quantity: i64,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Whether [`FakeBazaardan::change_quantity`] ever changed it.
    resized: bool,
}

pub use super::Counters;

#[derive(Default)]
struct Data {
    listings: BTreeMap<(u64, Option<u64>), Listing>,
    items: BTreeMap<u64, Item>,
    next_item: u64,
    next_product: u64,
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

/// A running fake. Dropping it stops the server.
pub struct FakeBazaardan {
    /// `host:port` on loopback, or a name only [`super::InProcess`] knows.
    authority: String,
    app: Router,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakeBazaardan {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeBazaardan {
    /// Starts on `127.0.0.1` with an OS-chosen port.
    pub async fn start(opts: Options) -> std::io::Result<FakeBazaardan> {
        Self::start_on("127.0.0.1:0", opts).await
    }

    pub async fn start_on(addr: &str, opts: Options) -> std::io::Result<FakeBazaardan> {
        let mut fake = Self::in_process(opts);
        let (addr, stop) = super::serve(addr, fake.app.clone(), "BaZaaRDan").await?;
        fake.authority = addr.to_string();
        fake.stop = stop;
        Ok(fake)
    }

    /// A fake served by no socket: requests reach it through
    /// [`super::InProcess`] (the simulator's transport), in virtual time.
    pub fn in_process(opts: Options) -> FakeBazaardan {
        let shared = Arc::new(Shared {
            core: Core::new(opts.window),
            opts,
            data: Mutex::new(Data {
                next_item: 1000,
                ..Data::default()
            }),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        FakeBazaardan {
            authority: "bazaardan.invalid".into(),
            app,
            shared,
            stop: CancellationToken::new(),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.authority)
    }

    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    pub fn add_listing(&self, product_id: u64, variant: Option<u64>, sku: &str, stock: i64) {
        self.shared.data().listings.insert(
            (product_id, variant),
            Listing {
                sku: sku.to_string(),
                stock,
                foreign: false,
            },
        );
    }

    /// A listing of another seller: stock updates to it are refused (403).
    pub fn add_foreign_listing(&self, product_id: u64, variant: Option<u64>, sku: &str) {
        self.shared.data().listings.insert(
            (product_id, variant),
            Listing {
                sku: sku.to_string(),
                stock: 0,
                foreign: true,
            },
        );
    }

    /// A customer orders `quantity` of a listing; returns the order item id.
    /// The product's SKU on the row is the listing's (empty if unlisted).
    pub fn place_order(&self, product_id: u64, variant: Option<u64>, quantity: i64) -> u64 {
        let mut d = self.shared.data();
        let sku = match d.listings.get_mut(&(product_id, variant)) {
            Some(l) => {
                l.stock = (l.stock - quantity).max(0);
                l.sku.clone()
            }
            None => String::new(),
        };
        let id = insert_item(&mut d, product_id, variant, &sku, quantity);
        drop(d);
        self.shared.core.changed(&key(product_id, variant));
        id
    }

    /// An order line for a product the fake has no listing for, printing `sku`.
    pub fn place_unlisted_order(&self, product_id: u64, sku: &str, quantity: i64) -> u64 {
        insert_item(&mut self.shared.data(), product_id, None, sku, quantity)
    }

    /// Moves an item to `status`; cancelling gives the stock back to the listing.
    pub fn set_status(&self, item_id: u64, status: &str) {
        self.change_status(item_id, status, true);
    }

    /// The seller changes the quantity of an order line still held (the
    /// customer added a unit, or one was out of stock): the listing's stock
    /// moves by the difference, and the line shows its new quantity.
    pub fn change_quantity(&self, item_id: u64, quantity: i64) {
        let mut d = self.shared.data();
        let Some(item) = d.items.get_mut(&item_id) else {
            return;
        };
        if item.status == "cancelled" || item.quantity == quantity {
            return;
        }
        let by = quantity - item.quantity;
        item.quantity = quantity;
        item.resized = true;
        item.updated_at = crate::clock::now_utc();
        let k = (item.product_id, item.variant);
        if let Some(l) = d.listings.get_mut(&k) {
            l.stock = (l.stock - by).max(0);
            drop(d);
            self.shared.core.changed(&key(k.0, k.1));
        }
    }

    /// As [`set_status`](Self::set_status), but within the same second as the
    /// item's last change: its `updated_at` text does not move.
    pub fn set_status_same_second(&self, item_id: u64, status: &str) {
        self.change_status(item_id, status, false);
    }

    fn change_status(&self, item_id: u64, status: &str, touch: bool) {
        let mut d = self.shared.data();
        let Some(item) = d.items.get_mut(&item_id) else {
            return;
        };
        let was = std::mem::replace(&mut item.status, status.to_string());
        if touch {
            item.updated_at = crate::clock::now_utc();
        }
        let (k, qty) = ((item.product_id, item.variant), item.quantity);
        if status == "cancelled"
            && was != "cancelled"
            && let Some(l) = d.listings.get_mut(&k)
        {
            l.stock += qty;
            drop(d);
            self.shared.core.changed(&key(k.0, k.1));
        }
    }

    pub fn listing_stock(&self, product_id: u64, variant: Option<u64>) -> Option<i64> {
        self.shared
            .data()
            .listings
            .get(&(product_id, variant))
            .map(|l| l.stock)
    }

    /// Every stock update carried out, in order: (`product` or
    /// `product/variant`, new stock).
    pub fn writes(&self) -> Vec<(String, i64)> {
        self.shared.core.writes()
    }

    /// Every listing: ((product_id, variant), sku, stock).
    pub fn listings(&self) -> Vec<((u64, Option<u64>), String, i64)> {
        self.shared
            .data()
            .listings
            .iter()
            .filter(|(_, l)| !l.foreign)
            .map(|(k, l)| (*k, l.sku.clone(), l.stock))
            .collect()
    }

    /// Every order item: (id, product, variant, quantity, status).
    pub fn items(&self) -> Vec<(u64, u64, Option<u64>, i64, String)> {
        self.shared
            .data()
            .items
            .iter()
            .map(|(id, i)| (*id, i.product_id, i.variant, i.quantity, i.status.clone()))
            .collect()
    }

    /// The order items whose quantity [`change_quantity`](Self::change_quantity) changed.
    pub fn resized_items(&self) -> Vec<u64> {
        let d = self.shared.data();
        d.items
            .iter()
            .filter(|(_, i)| i.resized)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Fails the next `times` requests (to `endpoint`, e.g. "stock_update.php", if given).
    pub fn inject(&self, fault: Fault, times: usize, endpoint: Option<&str>) {
        self.shared.core.faults.push(fault, times, endpoint);
    }

    pub fn clear_faults(&self) {
        self.shared.core.faults.clear();
    }

    pub fn counters(&self) -> Counters {
        self.shared.core.snapshot()
    }
}

/// How the fake names a listing to `Core`.
fn key(product_id: u64, variant: Option<u64>) -> String {
    match variant {
        Some(v) => format!("{product_id}/{v}"),
        None => product_id.to_string(),
    }
}

fn insert_item(
    d: &mut Data,
    product_id: u64,
    variant: Option<u64>,
    sku: &str,
    quantity: i64,
) -> u64 {
    d.next_item += 1;
    let id = d.next_item;
    let now = crate::clock::now_utc();
    d.items.insert(
        id,
        Item {
            order_no: format!("BD-{}{id:06}", now.format("%Y%m%d")),
            product_id,
            variant,
            sku: sku.to_string(),
            quantity,
            status: "accepted".into(),
            created_at: now,
            updated_at: now,
            resized: false,
        },
    );
    id
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"ok": false, "error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn rate_limited(retry_after_s: u64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "Too many requests",
    );
    r.headers_mut().insert(
        "Retry-After",
        retry_after_s
            .to_string()
            .parse()
            .expect("digits are a valid header"),
    );
    r
}

fn ok(data: Value) -> Response {
    axum::Json(json!({"ok": true, "data": data})).into_response()
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _busy = s.core.enter();
    if !s.opts.latency.is_zero() {
        tokio::time::sleep(s.opts.latency).await;
    }
    let Some(path) = uri.path().strip_prefix(BASE_PATH) else {
        s.core.arrive("?");
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown path");
    };
    let endpoint = path.trim_start_matches('/').to_string();
    let arrived = s.core.arrive(&endpoint);

    if s.core
        .over_minute_limit(arrived, s.opts.requests_per_minute)
    {
        return rate_limited(s.core.window_secs());
    }

    let lost = match s.core.fault(&endpoint) {
        Ok(lost) => lost,
        Err(fault) => {
            if endpoint == "stock_update.php" && !matches!(fault, Fault::RateLimited { .. }) {
                s.core.unanswered(written(&body));
            }
            return match fault {
                Fault::ServerError => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    "Injected failure",
                ),
                Fault::Hang(d) => {
                    tokio::time::sleep(d).await;
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "INTERNAL_ERROR",
                        "Injected hang",
                    )
                }
                Fault::Malformed => (StatusCode::OK, "{\"ok\": tru").into_response(),
                Fault::RateLimited { retry_after_s } => rate_limited(retry_after_s),
                Fault::Drop | Fault::Lost(_) => super::dropped(),
            };
        }
    };
    let resp = route(
        &s,
        &method,
        &uri,
        path,
        &endpoint,
        &headers,
        &body,
        lost.is_none(),
    );
    match lost {
        Some(l) => s.core.lose(l).await,
        None => resp,
    }
}

/// The listing a `stock_update.php` body sets (as `Core` names it).
fn written(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v.get("product_id")
        .and_then(Value::as_u64)
        .map(|p| key(p, v.get("variant_combination_id").and_then(Value::as_u64)))
        .into_iter()
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn route(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    path: &str,
    endpoint: &str,
    headers: &HeaderMap,
    body: &[u8],
    answered: bool,
) -> Response {
    // Authentication, exactly as PROTOCOL.md describes it.
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("X-BZ-CLIENT-ID") != s.opts.client_id {
        s.core.counters().auth_failures += 1;
        return error(StatusCode::UNAUTHORIZED, "UNKNOWN_CLIENT", "Unknown client");
    }
    let Ok(ts) = header("X-BZ-TIMESTAMP").parse::<i64>() else {
        s.core.counters().expired_timestamps += 1;
        s.core.counters().auth_failures += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "TIMESTAMP_EXPIRED",
            "Missing or bad timestamp",
        );
    };
    if (crate::clock::now_utc().timestamp() - ts).abs() > TIMESTAMP_WINDOW_S {
        s.core.counters().expired_timestamps += 1;
        s.core.counters().auth_failures += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "TIMESTAMP_EXPIRED",
            "Timestamp outside the allowed window",
        );
    }
    let signed_path = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let expected = signature(
        &s.opts.client_secret,
        method.as_str(),
        &signed_path,
        ts,
        body,
    );
    if header("X-BZ-SIGNATURE") != expected {
        s.core.counters().bad_signatures += 1;
        s.core.counters().auth_failures += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_SIGNATURE",
            "Signature mismatch",
        );
    }

    let query: HashMap<String, String> = Query::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    match (method.clone(), endpoint) {
        (Method::GET, "orders.php") => orders(s, &query),
        (Method::GET, "order_detail.php") => order_detail(s, &query),
        (Method::POST, "stock_update.php") => {
            s.core.batch(1);
            stock_update(s, body, answered)
        }
        _ => error(StatusCode::NOT_FOUND, "NOT_FOUND", "Unknown endpoint"),
    }
}

fn item_json(id: u64, i: &Item, detail: bool) -> Value {
    let mut v = json!({
        "order_item_id": id,
        "order_no": i.order_no,
        "status": i.status,
        "payment_status": "paid",
        "currency": "TRY",
        "unit_price": 1499.90,
        "quantity": i.quantity,
        "created_at": format_turkey(i.created_at),
        "updated_at": format_turkey(i.updated_at),
        "product": {"product_id": i.product_id, "title": "Örnek Ürün", "sku": i.sku},
        "customer": {"city": "İstanbul", "district": "Kadıköy"}
    });
    if detail {
        v["variant_combination_id"] = json!(i.variant);
    }
    v
}

fn orders(s: &Shared, q: &HashMap<String, String>) -> Response {
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 50,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "limit must be 1..100",
            );
        }
    };
    let Ok(offset) = q.get("offset").map_or(Ok(0), |o| o.parse::<usize>()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            "offset must be a number",
        );
    };
    let after = match q.get("updated_after") {
        None => None,
        Some(t) => match parse_provider_time(t) {
            Some(t) => Some(t),
            None => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "VALIDATION_ERROR",
                    "updated_after must be YYYY-MM-DD HH:MM:SS",
                );
            }
        },
    };
    let d = s.data();
    let mut rows: Vec<(u64, &Item)> = d
        .items
        .iter()
        .filter(|(_, i)| q.get("status").is_none_or(|st| *st == i.status))
        // Second resolution, strictly later, as the real API compares.
        .filter(|(_, i)| after.is_none_or(|a| i.updated_at.timestamp() > a.timestamp()))
        .map(|(id, i)| (*id, i))
        .collect();
    rows.sort_by_key(|(id, i)| (i.updated_at.timestamp(), *id));
    let total = rows.len();
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(id, i)| {
            serve(s, *id, i);
            item_json(*id, i, false)
        })
        .collect();
    let returned = page.len();
    ok(json!({
        "orders": page,
        "pagination": {"limit": limit, "offset": offset, "returned": returned, "has_more": offset + returned < total}
    }))
}

/// Tells the no-op check what the client is shown of a line: its status
/// and, for a line whose quantity changed, its quantity (a new quantity
/// moved the marketplace's stock as a cancellation does).
fn serve(s: &Shared, id: u64, i: &Item) {
    s.core.served(
        &id.to_string(),
        &format!("{} x{}", i.status, i.quantity),
        i.resized || matches!(i.status.as_str(), "cancelled" | "returned"),
        &key(i.product_id, i.variant),
    );
}

fn order_detail(s: &Shared, q: &HashMap<String, String>) -> Response {
    let Some(id) = q.get("order_item_id").and_then(|i| i.parse::<u64>().ok()) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            "order_item_id is required",
        );
    };
    match s.data().items.get(&id) {
        Some(i) => {
            serve(s, id, i);
            ok(item_json(id, i, true))
        }
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "Order item not found"),
    }
}

fn stock_update(s: &Shared, body: &[u8], answered: bool) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            "Body must be JSON",
        );
    };
    let Some(product_id) = v.get("product_id").and_then(Value::as_u64) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            "product_id is required",
        );
    };
    let variant = match v.get("variant_combination_id") {
        None | Some(Value::Null) => None,
        Some(x) => match x.as_u64() {
            Some(x) => Some(x),
            None => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "VALIDATION_ERROR",
                    "variant_combination_id must be an integer",
                );
            }
        },
    };
    let Some(stock) = v.get("stock").and_then(Value::as_i64).filter(|s| *s >= 0) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            "stock must be a non-negative integer",
        );
    };
    let mut d = s.data();
    let Some(listing) = d.listings.get_mut(&(product_id, variant)) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Product or variant not found",
        );
    };
    if listing.foreign {
        return error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN_SCOPE",
            "The product belongs to another seller",
        );
    }
    let old = std::mem::replace(&mut listing.stock, stock);
    drop(d);
    s.core
        .wrote(&key(product_id, variant), old, stock, answered);
    ok(json!({
        "product_id": product_id,
        "variant_combination_id": variant,
        "old_stock": old,
        "new_stock": stock,
        "updated": true,
        "external_ref": v.get("external_ref").cloned().unwrap_or(Value::Null),
        "updated_at": format_turkey(crate::clock::now_utc()),
    }))
}

impl super::Fake for FakeBazaardan {
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
        FakeBazaardan::clear_faults(self);
    }

    fn listings(&self) -> Vec<super::FakeListing> {
        FakeBazaardan::listings(self)
            .into_iter()
            .map(|((id, variant), sku, stock)| super::FakeListing {
                listing: crate::domain::ListingRef {
                    provider: crate::domain::ProviderName::Bazaardan,
                    listing_id: id.to_string(),
                    variant_id: variant.map(|v| v.to_string()).unwrap_or_default(),
                },
                sku,
                stock,
            })
            .collect()
    }

    fn provider(&self) -> crate::domain::ProviderName {
        crate::domain::ProviderName::Bazaardan
    }

    fn base_url(&self) -> String {
        FakeBazaardan::base_url(self)
    }

    fn config_table(&self, good: bool) -> String {
        format!(
            "[providers.bazaardan]\nbase_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nrequests_per_minute = {}\n",
            self.base_url(),
            self.shared.opts.client_id,
            if good {
                self.shared.opts.client_secret.as_str()
            } else {
                "wrong-secret"
            },
            // The fake's own limit, so a client keeps under it (600 when
            // the fake has none).
            self.shared.opts.requests_per_minute.unwrap_or(600)
        )
    }

    fn add_product(&self, sku: &str, stock: i64) -> crate::domain::ListingRef {
        let id = {
            let mut d = self.shared.data();
            d.next_product += 1;
            5000 + d.next_product
        };
        FakeBazaardan::add_listing(self, id, None, sku, stock);
        crate::domain::ListingRef {
            provider: crate::domain::ProviderName::Bazaardan,
            listing_id: id.to_string(),
            variant_id: String::new(),
        }
    }

    fn place_order(&self, l: &crate::domain::ListingRef, quantity: i64) -> Option<String> {
        let product = l.listing_id.parse().ok()?;
        let variant = l.variant_id.parse().ok();
        Some(FakeBazaardan::place_order(self, product, variant, quantity).to_string())
    }

    fn cancel_order(&self, order: &str) {
        if let Ok(id) = order.parse() {
            self.set_status(id, "cancelled");
        }
    }

    fn stock(&self, l: &crate::domain::ListingRef) -> Option<i64> {
        self.listing_stock(l.listing_id.parse().ok()?, l.variant_id.parse().ok())
    }

    fn inject(&self, fault: Fault, times: usize, endpoint: Option<&str>) {
        FakeBazaardan::inject(self, fault, times, endpoint);
    }

    fn push_endpoint(&self) -> &'static str {
        "stock_update.php"
    }

    fn counters(&self) -> Counters {
        FakeBazaardan::counters(self)
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
