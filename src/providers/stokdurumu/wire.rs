//! stokdurumu REST API v1 bodies, as on the wire (stokdurumu-api.txt).

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct ProductsPage {
    pub products: Vec<serde_json::Value>,
    pub meta: Meta,
}

#[derive(Debug, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub pages: u32,
}

/// One product; kept loose so one odd row does not fail the page.
#[derive(Debug, Deserialize)]
pub struct Product {
    pub id: u64,
    #[serde(default)]
    pub sku: Option<String>,
    pub stock_qty: serde_json::Number,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StockChange<'a> {
    pub product_id: u64,
    pub action: &'a str,
    pub qty: i64,
    pub reason: &'a str,
}

#[derive(Debug, Deserialize)]
pub struct StockChanged {
    #[serde(default)]
    pub success: Option<bool>,
    pub old_qty: serde_json::Number,
    pub new_qty: serde_json::Number,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// One line of a product's stock history (`GET /stock?product_id=&limit=`).
/// The seed names the endpoint but not its answer, so this takes the
/// fields of the documented `POST /stock` answer and lets every one be
/// missing; a line without both quantities is of no use and skipped.
#[derive(Debug, Deserialize)]
pub struct HistoryLine {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub old_qty: Option<serde_json::Number>,
    #[serde(default)]
    pub new_qty: Option<serde_json::Number>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The lines of a history answer: a bare array, or the first array under
/// one of the names such an answer uses.
pub fn history_lines(v: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    if let Some(a) = v.as_array() {
        return Some(a);
    }
    ["movements", "history", "data", "items", "stock", "logs"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_array))
}
