//! A faithful fake of the v2 e-commerce web service (eticaret-v2-api.txt
//! and PROTOCOL.md): `apikey`/`apisecret` headers, `{"code", "message",
//! "result"}` answers where `code` decides (HTTP 200 even for errors), 25
//! requests in any 60 s for the whole site (`AUTH004` past it),
//! `order/lists` sorted and paged by row offset, `order/show`,
//! `product/lists` (50 a page), `product/updateStocks` (30 entries, per-entry
//! and per-variant statuses), float quantities.

use super::{Core, Counters, Fake, Fault};
use crate::domain::{ListingRef, ProviderName, format_turkey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

pub const BASE_PATH: &str = "/api/v2";
/// The seed: 25 requests a minute for the whole site.
pub const SITE_LIMIT: u32 = 25;

#[derive(Debug, Clone)]
pub struct Options {
    pub api_key: String,
    pub api_secret: String,
    pub requests_per_minute: Option<u32>,
    /// The window the limit counts in (60 s; shorter in the simulator).
    pub window: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            api_key: "sandbox-key".into(),
            api_secret: "sandbox-secret".into(),
            requests_per_minute: Some(SITE_LIMIT),
            window: std::time::Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
struct Product {
    barcode: String,
    quantity: f64,
    /// (barcode, quantity)
    variants: Vec<(String, f64)>,
}

#[derive(Debug, Clone)]
struct Order {
    status: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// (product code, barcode, quantity)
    lines: Vec<(String, String, f64)>,
}

#[derive(Default)]
struct Data {
    products: BTreeMap<String, Product>,
    orders: BTreeMap<u64, Order>,
    next_order: u64,
    next_product: u64,
    /// Listings an order or a cancellation moved, not yet told to `Core`.
    touched: Vec<String>,
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

    /// Tells `Core` which listings orders moved since the last call.
    fn settle_touched(&self) {
        let touched = std::mem::take(&mut self.data().touched);
        for l in touched {
            self.core.changed(&l);
        }
    }
}

pub struct FakeEticaret {
    /// `host:port` on loopback, or a name only [`super::InProcess`] knows.
    authority: String,
    app: Router,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakeEticaret {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeEticaret {
    pub async fn start(opts: Options) -> std::io::Result<FakeEticaret> {
        Self::start_on("127.0.0.1:0", opts).await
    }

    pub async fn start_on(addr: &str, opts: Options) -> std::io::Result<FakeEticaret> {
        let mut fake = Self::in_process(opts);
        let (addr, stop) = super::serve(addr, fake.app.clone(), "eticaret").await?;
        fake.authority = addr.to_string();
        fake.stop = stop;
        Ok(fake)
    }

    /// A fake served by no socket: requests reach it through
    /// [`super::InProcess`] (the simulator's transport), in virtual time.
    pub fn in_process(opts: Options) -> FakeEticaret {
        let shared = Arc::new(Shared {
            core: Core::new(opts.window),
            opts,
            data: Mutex::new(Data {
                next_order: 7000,
                ..Data::default()
            }),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        FakeEticaret {
            authority: "eticaret.invalid".into(),
            app,
            shared,
            stop: CancellationToken::new(),
        }
    }

    /// A product with variants: `(barcode, quantity)` each. Returns the
    /// listings (one a variant).
    pub fn add_variant_product(&self, code: &str, variants: &[(&str, i64)]) -> Vec<ListingRef> {
        self.shared.data().products.insert(
            code.to_string(),
            Product {
                barcode: format!("869{code}"),
                quantity: variants.iter().map(|v| v.1 as f64).sum(),
                variants: variants
                    .iter()
                    .map(|(b, q)| (b.to_string(), *q as f64))
                    .collect(),
            },
        );
        variants.iter().map(|(b, _)| listing(code, b)).collect()
    }

    /// An order with any lines (product code, barcode, quantity — floats,
    /// as the API types them). Stock goes down as on the real site.
    pub fn place_lines(&self, lines: &[(&str, &str, f64)]) -> u64 {
        let mut d = self.shared.data();
        d.next_order += 1;
        let id = d.next_order;
        for (code, barcode, q) in lines {
            move_stock(&mut d, code, barcode, -q);
        }
        let now = crate::clock::now_utc();
        d.orders.insert(
            id,
            Order {
                status: 1,
                created_at: now,
                updated_at: now,
                lines: lines
                    .iter()
                    .map(|(c, b, q)| (c.to_string(), b.to_string(), *q))
                    .collect(),
            },
        );
        drop(d);
        self.shared.settle_touched();
        id
    }

    /// Moves an order to a status (5 cancels and gives the stock back).
    pub fn set_status(&self, id: u64, status: i64) {
        let mut d = self.shared.data();
        let Some(o) = d.orders.get_mut(&id) else {
            return;
        };
        let was = std::mem::replace(&mut o.status, status);
        o.updated_at = crate::clock::now_utc();
        let lines = o.lines.clone();
        if status == 5 && was != 5 {
            for (code, barcode, q) in lines {
                move_stock(&mut d, &code, &barcode, q);
            }
        }
        drop(d);
        self.shared.settle_touched();
    }

    /// Every order: (id, status, lines (code, barcode, quantity)).
    #[allow(clippy::type_complexity)]
    pub fn orders(&self) -> Vec<(u64, i64, Vec<(String, String, f64)>)> {
        self.shared
            .data()
            .orders
            .iter()
            .map(|(id, o)| (*id, o.status, o.lines.clone()))
            .collect()
    }
}

fn listing(code: &str, barcode: &str) -> ListingRef {
    ListingRef {
        provider: ProviderName::Eticaret,
        listing_id: code.to_string(),
        variant_id: barcode.to_string(),
    }
}

fn move_stock(d: &mut Data, code: &str, barcode: &str, by: f64) {
    d.touched.push(
        if d.products
            .get(code)
            .is_some_and(|p| p.variants.iter().any(|v| v.0 == barcode))
        {
            format!("{code}/{barcode}")
        } else {
            code.to_string()
        },
    );
    if let Some(p) = d.products.get_mut(code) {
        if let Some(v) = p.variants.iter_mut().find(|v| v.0 == barcode) {
            v.1 = (v.1 + by).max(0.0);
            p.quantity = p.variants.iter().map(|v| v.1).sum();
        } else {
            p.quantity = (p.quantity + by).max(0.0);
        }
    }
}

fn answer(code: &str, message: &str, result: Value) -> Response {
    axum::Json(json!({"code": code, "message": message, "result": result})).into_response()
}

fn num(q: f64) -> Value {
    if q.fract() == 0.0 {
        json!(q as i64)
    } else {
        json!(q)
    }
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _busy = s.core.enter();
    let Some(path) = uri.path().strip_prefix(BASE_PATH) else {
        return answer("AUTH005", "Geçersiz metot", Value::Null);
    };
    let path = path.trim_start_matches('/').to_string();
    let endpoint = match path.split('/').take(2).collect::<Vec<_>>().join("/") {
        e if e.starts_with("order/show") => "order/show".to_string(),
        e => e,
    };
    let at = s.core.arrive(&endpoint);
    if s.core.over_minute_limit(at, s.opts.requests_per_minute) {
        return answer("AUTH004", "Dakikalık erişim limiti aşıldı", Value::Null);
    }
    let lost = match s.core.fault(&endpoint) {
        Ok(lost) => lost,
        Err(fault) => {
            if endpoint == "product/updateStocks" && !matches!(fault, Fault::RateLimited { .. }) {
                s.core.unanswered(written(&body));
            }
            return match fault {
                Fault::ServerError => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
                }
                Fault::Hang(d) => {
                    tokio::time::sleep(d).await;
                    (StatusCode::GATEWAY_TIMEOUT, "timeout").into_response()
                }
                Fault::Malformed => (StatusCode::OK, "{\"code\": \"SUCC").into_response(),
                // Another tool on the same site used the window up.
                Fault::RateLimited { .. } => {
                    answer("AUTH004", "Dakikalık erişim limiti aşıldı", Value::Null)
                }
                Fault::Drop | Fault::Lost(_) => super::dropped(),
            };
        }
    };
    let resp = route(
        &s,
        &method,
        &path,
        &endpoint,
        &uri,
        &headers,
        &body,
        lost.is_none(),
    );
    match lost {
        Some(l) => s.core.lose(l).await,
        None => resp,
    }
}

#[allow(clippy::too_many_arguments)]
fn route(
    s: &Shared,
    method: &Method,
    path: &str,
    endpoint: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    answered: bool,
) -> Response {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if h("apikey") != s.opts.api_key || h("apisecret") != s.opts.api_secret {
        s.core.counters().auth_failures += 1;
        return answer("AUTH002", "Geçersiz web servis kullanıcısı", Value::Null);
    }
    let q: HashMap<String, String> = Query::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
    let int = |k: &str, def: u64| q.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(def);
    match (method.clone(), endpoint) {
        (Method::GET, "auth") => answer("SUCCESS", "Erişim başarılı", Value::Null),
        (Method::GET, "order/lists") => {
            let (start, size) = (
                int("pageStart", 0) as usize,
                int("pageSize", 0).min(100) as usize,
            );
            let d = s.data();
            let mut rows: Vec<(&u64, &Order)> = d
                .orders
                .iter()
                .filter(|(_, o)| {
                    q.get("status")
                        .is_none_or(|st| *st == "0" || *st == o.status.to_string())
                })
                .collect();
            match q.get("orderBy").map(String::as_str) {
                Some("updatedAt") => rows.sort_by_key(|(id, o)| (o.updated_at, **id)),
                Some("createdAt") => rows.sort_by_key(|(id, o)| (o.created_at, **id)),
                _ => {}
            }
            if q.get("sort").map(String::as_str) == Some("desc") {
                rows.reverse();
            }
            let list: Vec<Value> = rows
                .iter()
                .skip(start)
                .take(size)
                .map(|(id, o)| {
                    json!({"id": id, "code": format!("SIP{id}"), "dealerId": 0, "shipmentFirmId": 1,
                           "status": o.status, "createdAt": format_turkey(o.created_at),
                           "updatedAt": format_turkey(o.updated_at)})
                })
                .collect();
            let n = list.len();
            answer(
                "SUCCESS",
                "İşlem başarılı",
                json!({"total": rows.len(), "pageSize": n, "list": list}),
            )
        }
        (Method::GET, "order/show") => {
            let id = path.rsplit('/').next().and_then(|i| i.parse::<u64>().ok());
            let d = s.data();
            let Some((id, o)) = id.and_then(|id| d.orders.get(&id).map(|o| (id, o))) else {
                return answer("ORDERSHOW001", "Hatalı sipariş ID", Value::Null);
            };
            for (n, (code, barcode, _)) in o.lines.iter().enumerate() {
                let variant = d
                    .products
                    .get(code)
                    .is_some_and(|p| p.variants.iter().any(|v| &v.0 == barcode));
                let listing = if variant {
                    format!("{code}/{barcode}")
                } else {
                    code.clone()
                };
                s.core.served(
                    &format!("{id}/{n}"),
                    &o.status.to_string(),
                    matches!(o.status, 4 | 5),
                    &listing,
                );
            }
            let products: Vec<Value> = o
                .lines
                .iter()
                .map(|(code, barcode, qty)| {
                    json!({"code": code, "name": "Ürün", "barcode": barcode, "variants": [],
                           "tax": 20, "categoryId": 3, "quantity": num(*qty), "price": 100.0,
                           "totalPrice": 100.0 * qty})
                })
                .collect();
            answer(
                "SUCCESS",
                "İşlem başarılı",
                json!({
                    "order": {"id": id, "code": format!("SIP{id}"), "status": o.status,
                              "createdAt": format_turkey(o.created_at), "updatedAt": format_turkey(o.updated_at),
                              "platform": "web"},
                    "customer": {"name": "Ayşe Yılmaz"},
                    "summary": {"total": 0.0},
                    "products": products
                }),
            )
        }
        (Method::GET, "product/lists") => {
            let (start, size) = (
                int("pageStart", 0) as usize,
                int("pageSize", 0).min(50) as usize,
            );
            let d = s.data();
            let rows: Vec<(&String, &Product)> = d
                .products
                .iter()
                .filter(|(c, _)| q.get("code").is_none_or(|x| x == *c))
                .collect();
            let list: Vec<Value> = rows
                .iter()
                .skip(start)
                .take(size)
                .map(|(code, p)| {
                    if answered {
                        // What this page shows, the client now knows.
                        s.core.shown(code);
                        for (b, _) in &p.variants {
                            s.core.shown(&format!("{code}/{b}"));
                        }
                    }
                    json!({"code": code, "name": "Ürün", "status": 1, "barcode": p.barcode,
                           "quantity": num(p.quantity), "unit": 0,
                           "variants": p.variants.iter().map(|(b, q)| json!({"value1": "S", "barcode": b, "quantity": num(*q), "priceStatus": 0, "price": 0})).collect::<Vec<_>>()})
                })
                .collect();
            let n = list.len();
            answer(
                "SUCCESS",
                "İşlem başarılı",
                json!({"total": rows.len(), "pageSize": n, "list": list}),
            )
        }
        (Method::POST, "product/updateStocks") => update_stocks(s, body, answered),
        _ => answer("AUTH005", "Geçersiz metot", Value::Null),
    }
}

/// The listings an `updateStocks` body sets (as `Core` names them: a code,
/// or `code/barcode` for a variant).
fn written(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut out = Vec::new();
    for e in v
        .get("stocks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(code) = e.get("code").and_then(Value::as_str) else {
            continue;
        };
        let variants = e.get("variants").and_then(Value::as_array);
        match variants.filter(|v| !v.is_empty()) {
            None => out.push(code.to_string()),
            Some(vs) => out.extend(
                vs.iter()
                    .filter_map(|v| v.get("barcode").and_then(Value::as_str))
                    .map(|b| format!("{code}/{b}")),
            ),
        }
    }
    out
}

fn update_stocks(s: &Shared, body: &[u8], answered: bool) -> Response {
    let Some(stocks) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("stocks").and_then(Value::as_array).cloned())
    else {
        return answer(
            "PRODUCTUPDATESTOCK001",
            "Zorunlu alanlar eksik",
            Value::Null,
        );
    };
    s.core.batch(stocks.len());
    if stocks.len() > 30 {
        return answer("PRODUCTUPDATESTOCK004", "Ürün limiti aşıldı.", Value::Null);
    }
    let mut d = s.data();
    let mut results = Vec::new();
    let mut writes = Vec::new();
    for e in &stocks {
        let Some(code) = e.get("code").and_then(Value::as_str) else {
            return answer(
                "PRODUCTUPDATESTOCK002",
                "Zorunlu stok alanları eksik",
                Value::Null,
            );
        };
        let variants = e
            .get("variants")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let qty = e.get("quantity").and_then(Value::as_f64);
        if qty.is_none() && variants.is_empty() {
            return answer(
                "PRODUCTUPDATESTOCK002",
                "Zorunlu stok alanları eksik",
                Value::Null,
            );
        }
        let Some(p) = d.products.get_mut(code) else {
            results.push(json!({"code": code, "status": 2, "variants": []}));
            continue;
        };
        let mut vres = Vec::new();
        for v in &variants {
            let (Some(b), Some(q)) = (
                v.get("barcode").and_then(Value::as_str),
                v.get("quantity").and_then(Value::as_f64),
            ) else {
                return answer(
                    "PRODUCTUPDATESTOCK003",
                    "Zorunlu varyant alanları eksik",
                    Value::Null,
                );
            };
            match p.variants.iter_mut().find(|x| x.0 == b) {
                Some(x) => {
                    let old = std::mem::replace(&mut x.1, q);
                    writes.push((format!("{code}/{b}"), old as i64, q as i64));
                    vres.push(json!({"barcode": b, "status": 1}));
                }
                None => vres.push(json!({"barcode": b, "status": 2})),
            }
        }
        if variants.is_empty() {
            let old = p.quantity;
            p.quantity = qty.unwrap_or(p.quantity);
            writes.push((code.to_string(), old as i64, p.quantity as i64));
            results.push(json!({"code": code, "status": 1, "variants": []}));
        } else {
            p.quantity = p.variants.iter().map(|v| v.1).sum();
            let all_ok = vres.iter().all(|v| v["status"] == 1);
            results.push(
                json!({"code": code, "status": if all_ok { 1 } else { 3 }, "variants": vres}),
            );
        }
    }
    drop(d);
    for (l, old, new) in writes {
        s.core.wrote(&l, old, new, answered);
    }
    answer(
        "SUCCESS",
        "İşlem başarılı. Result parameteresindeki değerleri kontrol edin.",
        json!({"stocks": results}),
    )
}

impl Fake for FakeEticaret {
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
        let d = self.shared.data();
        let mut out = Vec::new();
        for (code, p) in &d.products {
            if p.variants.is_empty() {
                out.push(super::FakeListing {
                    listing: listing(code, ""),
                    sku: code.clone(),
                    stock: p.quantity as i64,
                });
            }
            for (barcode, q) in &p.variants {
                out.push(super::FakeListing {
                    listing: listing(code, barcode),
                    sku: barcode.clone(),
                    stock: *q as i64,
                });
            }
        }
        out
    }

    fn provider(&self) -> ProviderName {
        ProviderName::Eticaret
    }

    fn base_url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.authority)
    }

    fn config_table(&self, good: bool) -> String {
        format!(
            "[providers.eticaret]\nbase_url = \"{}\"\napi_key = \"{}\"\napi_secret = \"{}\"\nrequests_per_minute = 22\n",
            self.base_url(),
            self.shared.opts.api_key,
            if good {
                self.shared.opts.api_secret.as_str()
            } else {
                "wrong"
            }
        )
    }

    /// A product without variants; its `code` is the SKU.
    fn add_product(&self, sku: &str, stock: i64) -> ListingRef {
        let mut d = self.shared.data();
        d.next_product += 1;
        let barcode = format!("8690000{:05}", d.next_product);
        d.products.insert(
            sku.to_string(),
            Product {
                barcode,
                quantity: stock as f64,
                variants: Vec::new(),
            },
        );
        listing(sku, "")
    }

    fn place_order(&self, l: &ListingRef, quantity: i64) -> Option<String> {
        let barcode = if l.variant_id.is_empty() {
            self.shared
                .data()
                .products
                .get(&l.listing_id)?
                .barcode
                .clone()
        } else {
            l.variant_id.clone()
        };
        Some(
            self.place_lines(&[(&l.listing_id, &barcode, quantity as f64)])
                .to_string(),
        )
    }

    fn cancel_order(&self, order: &str) {
        if let Ok(id) = order.parse() {
            self.set_status(id, 5);
        }
    }

    fn stock(&self, l: &ListingRef) -> Option<i64> {
        let d = self.shared.data();
        let p = d.products.get(&l.listing_id)?;
        let q = if l.variant_id.is_empty() {
            p.quantity
        } else {
            p.variants.iter().find(|v| v.0 == l.variant_id)?.1
        };
        Some(q as i64)
    }

    fn inject(&self, fault: Fault, times: usize, endpoint: Option<&str>) {
        self.shared.core.faults.push(fault, times, endpoint);
    }

    fn push_endpoint(&self) -> &'static str {
        "product/updateStocks"
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
