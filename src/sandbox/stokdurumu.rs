//! A faithful fake of stokdurumu REST API v1 (stokdurumu-api.txt and
//! PROTOCOL.md): bearer key, a daily quota that counts every request and
//! answers 429 past it (days turn at 00:00 Turkey time), `GET /products`
//! paging (limit max 100), `POST /stock` (set/add/sub, answering old and
//! new quantity), `GET /stock?product_id=&limit=` (the product's movement
//! history, newest first, each with its reason), `{"error": ...}` shapes,
//! faults (before and after a request is carried out), and stock edited by
//! hand in the "panel".
//!
//! The history's shape is not in the seed (it only names the endpoint);
//! this fake answers `{"movements": [{"id", "product_id", "action", "qty",
//! "old_qty", "new_qty", "change_qty", "reason", "created_at"}], "meta":
//! {"total", "limit"}}`, the fields of the documented `POST /stock` answer.

use super::{Core, Counters, Fake, Fault};
use crate::domain::{ListingRef, ProviderName, format_turkey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

pub const BASE_PATH: &str = "/api/v1";

#[derive(Debug, Clone)]
pub struct Options {
    pub api_key: String,
    /// Requests a day before 429; `None` for Enterprise (unlimited).
    pub requests_per_day: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            api_key: "sk_sandbox".into(),
            requests_per_day: None,
        }
    }
}

/// One line of a product's movement history.
#[derive(Debug, Clone)]
struct Movement {
    id: u64,
    product_id: u64,
    action: String,
    qty: i64,
    old: i64,
    new: i64,
    reason: String,
    at: String,
}

/// A change made by hand in the panel: (product id, old, new).
pub type HandEdit = (u64, i64, i64);

#[derive(Debug, Clone)]
struct Product {
    sku: String,
    stock: i64,
    updated_at: String,
}

#[derive(Default)]
struct Data {
    products: BTreeMap<u64, Product>,
    next_id: u64,
    history: Vec<Movement>,
    hand_edits: Vec<HandEdit>,
}

impl Data {
    fn log(&mut self, product_id: u64, action: &str, qty: i64, old: i64, new: i64, reason: &str) {
        let id = self.history.len() as u64 + 1;
        self.history.push(Movement {
            id,
            product_id,
            action: action.to_string(),
            qty,
            old,
            new,
            reason: reason.to_string(),
            at: format_turkey(crate::clock::now_utc()),
        });
    }
}

struct Shared {
    opts: Options,
    data: Mutex<Data>,
    core: Core,
    /// How long each answer takes (see [`FakeStokdurumu::set_latency`]).
    latency: Mutex<std::time::Duration>,
}

impl Shared {
    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeStokdurumu {
    /// `host:port` on loopback, or a name only [`super::InProcess`] knows.
    authority: String,
    app: Router,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakeStokdurumu {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeStokdurumu {
    pub async fn start(opts: Options) -> std::io::Result<FakeStokdurumu> {
        Self::start_on("127.0.0.1:0", opts).await
    }

    pub async fn start_on(addr: &str, opts: Options) -> std::io::Result<FakeStokdurumu> {
        let mut fake = Self::in_process(opts);
        let (addr, stop) = super::serve(addr, fake.app.clone(), "stokdurumu").await?;
        fake.authority = addr.to_string();
        fake.stop = stop;
        Ok(fake)
    }

    /// A fake served by no socket: requests reach it through
    /// [`super::InProcess`] (the simulator's transport), in virtual time.
    pub fn in_process(opts: Options) -> FakeStokdurumu {
        let shared = Arc::new(Shared {
            opts,
            data: Mutex::new(Data {
                next_id: 40,
                ..Data::default()
            }),
            core: Core::default(),
            latency: Mutex::new(std::time::Duration::ZERO),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        FakeStokdurumu {
            authority: "stokdurumu.invalid".into(),
            app,
            shared,
            stop: CancellationToken::new(),
        }
    }

    /// Every answer from now on takes `latency` (a real network's round
    /// trip; a timer, so virtual time in-process). Not in [`Options`]: the
    /// simulator builds those field by field.
    pub fn set_latency(&self, latency: std::time::Duration) {
        *self
            .shared
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = latency;
    }

    pub fn product_stock(&self, id: u64) -> Option<i64> {
        self.shared.data().products.get(&id).map(|p| p.stock)
    }

    /// Someone changes the stock by hand in the stokdurumu panel.
    pub fn set_by_hand(&self, id: u64, stock: i64) {
        let mut d = self.shared.data();
        let Some(p) = d.products.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut p.stock, stock);
        p.updated_at = format_turkey(crate::clock::now_utc());
        d.log(id, "set", stock, old, stock, "panelden elle düzeltme");
        d.hand_edits.push((id, old, stock));
        drop(d);
        self.shared.core.changed(&id.to_string());
    }

    /// Every stock change of a product, oldest first: (action, old, new,
    /// reason).
    pub fn movements_of(&self, id: u64) -> Vec<(String, i64, i64, String)> {
        self.shared
            .data()
            .history
            .iter()
            .filter(|m| m.product_id == id)
            .map(|m| (m.action.clone(), m.old, m.new, m.reason.clone()))
            .collect()
    }

    /// Every change made by hand so far, in order.
    pub fn hand_edits(&self) -> Vec<HandEdit> {
        self.shared.data().hand_edits.clone()
    }

    fn id(l: &ListingRef) -> Option<u64> {
        l.listing_id.parse().ok()
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _busy = s.core.enter();
    let latency = *s.latency.lock().unwrap_or_else(|e| e.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(path) = uri.path().strip_prefix(BASE_PATH) else {
        return err(StatusCode::NOT_FOUND, "Kayıt bulunamadı");
    };
    // GET /stock (a product's history) is named apart from POST /stock
    // (a push), so a fault can be aimed at either.
    let endpoint = match (&method, path.trim_start_matches('/')) {
        (&Method::GET, "stock") => "stock/history".to_string(),
        (_, p) => p.to_string(),
    };
    s.core.arrive(&endpoint);
    // Every request counts against the day, reads and refusals included.
    if s.core.over_daily_limit(s.opts.requests_per_day) {
        return err(StatusCode::TOO_MANY_REQUESTS, "Rate limit aşıldı");
    }
    let lost = match s.core.fault(&endpoint) {
        Ok(lost) => lost,
        Err(fault) => {
            if endpoint == "stock" && !matches!(fault, Fault::RateLimited { .. }) {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let id = v.get("product_id").and_then(Value::as_u64);
                s.core.unanswered(id.map(|id| id.to_string()));
            }
            return match fault {
                Fault::ServerError => err(StatusCode::INTERNAL_SERVER_ERROR, "Sunucu hatası"),
                Fault::Hang(d) => {
                    tokio::time::sleep(d).await;
                    err(StatusCode::INTERNAL_SERVER_ERROR, "Sunucu hatası")
                }
                Fault::Malformed => (StatusCode::OK, "<html>bakım</html>").into_response(),
                Fault::RateLimited { retry_after_s } => {
                    let mut r = err(StatusCode::TOO_MANY_REQUESTS, "Rate limit aşıldı");
                    r.headers_mut().insert(
                        "Retry-After",
                        retry_after_s.to_string().parse().expect("digits"),
                    );
                    r
                }
                Fault::Drop | Fault::Lost(_) => super::dropped(),
            };
        }
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", s.opts.api_key) {
        s.core.counters().auth_failures += 1;
        return err(StatusCode::UNAUTHORIZED, "Yetkisiz — API anahtarı gerekli");
    }
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let resp = match (method, endpoint.as_str()) {
        (Method::GET, "products") => products(&s, &query, lost.is_none()),
        (Method::POST, "stock") => stock(&s, &body, lost.is_none()),
        (Method::GET, "stock/history") => history(&s, &query),
        _ => err(StatusCode::NOT_FOUND, "Kayıt bulunamadı"),
    };
    match lost {
        Some(l) => s.core.lose(l).await,
        None => resp,
    }
}

/// `GET /stock?product_id=&limit=`: one product's movements, newest first.
fn history(s: &Shared, q: &HashMap<String, String>) -> Response {
    let Some(id) = q.get("product_id").and_then(|p| p.parse::<u64>().ok()) else {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "product_id zorunlu");
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        _ => return err(StatusCode::UNPROCESSABLE_ENTITY, "limit 1..100 olmalı"),
    };
    let d = s.data();
    if !d.products.contains_key(&id) {
        return err(StatusCode::NOT_FOUND, "Kayıt bulunamadı");
    }
    let mine: Vec<&Movement> = d.history.iter().filter(|m| m.product_id == id).collect();
    let rows: Vec<Value> = mine
        .iter()
        .rev()
        .take(limit)
        .map(|m| {
            json!({"id": m.id, "product_id": m.product_id, "action": m.action, "qty": m.qty,
                   "old_qty": m.old, "new_qty": m.new, "change_qty": m.new - m.old,
                   "reason": m.reason, "created_at": m.at})
        })
        .collect();
    axum::Json(json!({"movements": rows, "meta": {"total": mine.len(), "limit": limit}}))
        .into_response()
}

fn products(s: &Shared, q: &HashMap<String, String>, answered: bool) -> Response {
    let page = q.get("page").map_or(Some(1), |p| p.parse::<usize>().ok());
    let limit = q.get("limit").map_or(Some(20), |l| l.parse::<usize>().ok());
    let (Some(page), Some(limit)) = (page, limit) else {
        return err(StatusCode::BAD_REQUEST, "Geçersiz istek");
    };
    if page == 0 || !(1..=100).contains(&limit) {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "limit 1..100 olmalı");
    }
    let d = s.data();
    let rows: Vec<Value> = d
        .products
        .iter()
        .filter(|(_, p)| q.get("sku").is_none_or(|sku| *sku == p.sku))
        .skip((page - 1) * limit)
        .take(limit)
        .map(|(id, p)| {
            if answered {
                // What this page shows, the client now knows.
                s.core.shown(&id.to_string());
            }
            json!({
                "id": id, "name": "Ürün", "sku": p.sku, "category": "Genel", "price": "99.90",
                "stock_qty": p.stock, "min_stock": 1, "unit": "adet", "status": "active",
                "updated_at": p.updated_at
            })
        })
        .collect();
    let total = d.products.len();
    axum::Json(json!({
        "products": rows,
        "meta": {"total": total, "page": page, "limit": limit, "pages": total.div_ceil(limit)}
    }))
    .into_response()
}

fn stock(s: &Shared, body: &[u8], answered: bool) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return err(StatusCode::BAD_REQUEST, "Geçersiz istek");
    };
    let (Some(id), Some(action), Some(qty)) = (
        v.get("product_id").and_then(Value::as_u64),
        v.get("action").and_then(Value::as_str),
        v.get("qty").and_then(Value::as_i64),
    ) else {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "product_id, action ve qty zorunlu",
        );
    };
    if qty < 0 {
        return err(StatusCode::UNPROCESSABLE_ENTITY, "qty ≥ 0 olmalı");
    }
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or("");
    s.core.batch(1);
    let mut d = s.data();
    let Some(p) = d.products.get_mut(&id) else {
        return err(StatusCode::NOT_FOUND, "Kayıt bulunamadı");
    };
    let old = p.stock;
    let new = match action {
        "set" => qty,
        "add" => old + qty,
        "sub" => old - qty,
        _ => {
            return err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "action add/sub/set olmalı",
            );
        }
    };
    p.stock = new;
    p.updated_at = format_turkey(crate::clock::now_utc());
    d.log(id, action, qty, old, new, reason);
    drop(d);
    s.core.wrote(&id.to_string(), old, new, answered);
    axum::Json(json!({
        "success": true, "product_id": id, "action": action,
        "old_qty": old, "new_qty": new, "change_qty": new - old
    }))
    .into_response()
}

impl Fake for FakeStokdurumu {
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
                    provider: ProviderName::Stokdurumu,
                    listing_id: id.to_string(),
                    variant_id: String::new(),
                },
                sku: p.sku.clone(),
                stock: p.stock,
            })
            .collect()
    }

    fn provider(&self) -> ProviderName {
        ProviderName::Stokdurumu
    }

    fn base_url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.authority)
    }

    fn config_table(&self, good: bool) -> String {
        format!(
            "[providers.stokdurumu]\nbase_url = \"{}\"\napi_key = \"{}\"\nrequests_per_day = {}\n",
            self.base_url(),
            if good {
                self.shared.opts.api_key.as_str()
            } else {
                "sk_wrong"
            },
            self.shared
                .opts
                .requests_per_day
                .map_or("\"unlimited\"".to_string(), |n| n.to_string())
        )
    }

    fn add_product(&self, sku: &str, stock: i64) -> ListingRef {
        let mut d = self.shared.data();
        d.next_id += 1;
        let id = d.next_id;
        d.products.insert(
            id,
            Product {
                sku: sku.to_string(),
                stock,
                updated_at: format_turkey(crate::clock::now_utc()),
            },
        );
        ListingRef {
            provider: ProviderName::Stokdurumu,
            listing_id: id.to_string(),
            variant_id: String::new(),
        }
    }

    fn place_order(&self, _: &ListingRef, _: i64) -> Option<String> {
        None
    }

    fn cancel_order(&self, _: &str) {}

    fn stock(&self, l: &ListingRef) -> Option<i64> {
        self.product_stock(Self::id(l)?)
    }

    fn set_by_hand(&self, l: &ListingRef, stock: i64) -> bool {
        match Self::id(l) {
            Some(id) if self.product_stock(id).is_some() => {
                FakeStokdurumu::set_by_hand(self, id, stock);
                true
            }
            _ => false,
        }
    }

    fn inject(&self, fault: Fault, times: usize, endpoint: Option<&str>) {
        self.shared.core.faults.push(fault, times, endpoint);
    }

    fn push_endpoint(&self) -> &'static str {
        "stock"
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
