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
