//! PazarSync API bodies, as on the wire (pazarsync-api.txt).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize)]
pub struct TokenRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub grant_type: &'a str,
}

#[derive(Deserialize)]
pub struct TokenReply {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct ListPage {
    pub data: Vec<Value>,
    pub meta: Meta,
}

#[derive(Debug, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub total_pages: u64,
}

/// A row of `GET /api/v1/orders` (no items).
#[derive(Debug, Deserialize)]
pub struct OrderRow {
    pub id: String,
    #[serde(default)]
    pub order_number: Option<String>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize)]
pub struct OrderDetail {
    pub id: String,
    #[serde(default)]
    pub order_number: Option<String>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub items: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct OrderItem {
    #[serde(default)]
    pub id: Option<String>,
    pub product_id: String,
    #[serde(default)]
    pub sku: Option<String>,
    pub quantity: serde_json::Number,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    pub id: String,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub stock: Option<serde_json::Number>,
}

#[derive(Serialize)]
pub struct SetStock {
    pub stock: i64,
}

#[derive(Debug, Deserialize)]
pub struct StockSet {
    pub id: String,
    pub stock: i64,
}

#[derive(Serialize)]
pub struct Batch {
    pub items: Vec<BatchItem>,
}

#[derive(Serialize)]
pub struct BatchItem {
    pub product_id: String,
    pub stock: i64,
}

#[derive(Debug, Deserialize)]
pub struct BatchReply {
    #[serde(default)]
    pub updated: Option<u64>,
    #[serde(default)]
    pub errors: Vec<BatchError>,
}

#[derive(Debug, Deserialize)]
pub struct BatchError {
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}
