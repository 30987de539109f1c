//! v2 e-commerce web service bodies, as on the wire (eticaret-v2-api.txt).
//! Every answer is `{"code", "message", "result"}`; `code` decides.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub result: Value,
}

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub list: Vec<Value>,
}

/// A row of `order/lists`.
#[derive(Debug, Deserialize)]
pub struct OrderRow {
    pub id: u64,
    #[serde(default)]
    pub code: Option<String>,
    pub status: Value,
    #[serde(rename = "createdAt", default)]
    pub created_at: Option<String>,
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

#[derive(Debug, Deserialize)]
pub struct OrderShow {
    pub order: OrderRow,
    #[serde(default)]
    pub products: Vec<Value>,
}

/// A product line of `order/show`.
#[derive(Debug, Deserialize)]
pub struct OrderLine {
    pub code: String,
    #[serde(default)]
    pub barcode: Option<String>,
    pub quantity: serde_json::Number,
}

/// A row of `product/lists`.
#[derive(Debug, Deserialize)]
pub struct ProductRow {
    pub code: String,
    #[serde(default)]
    pub quantity: Option<serde_json::Number>,
    #[serde(default)]
    pub variants: Vec<VariantRow>,
}

#[derive(Debug, Deserialize)]
pub struct VariantRow {
    pub barcode: String,
    #[serde(default)]
    pub quantity: Option<serde_json::Number>,
}

#[derive(Debug, Serialize)]
pub struct UpdateStocks {
    pub stocks: Vec<StockEntry>,
}

#[derive(Debug, Serialize)]
pub struct StockEntry {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<VariantStock>,
}

#[derive(Debug, Serialize)]
pub struct VariantStock {
    pub barcode: String,
    pub quantity: i64,
}

#[derive(Debug, Deserialize)]
pub struct UpdateResult {
    #[serde(default)]
    pub stocks: Vec<EntryResult>,
}

#[derive(Debug, Deserialize)]
pub struct EntryResult {
    pub code: String,
    pub status: i64,
    #[serde(default)]
    pub variants: Vec<VariantResult>,
}

#[derive(Debug, Deserialize)]
pub struct VariantResult {
    pub barcode: String,
    pub status: i64,
}

/// A whole number from a float-typed quantity; `None` when it has a
/// fractional part (PROTOCOL.md: reported, never rounded).
pub fn whole(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}
