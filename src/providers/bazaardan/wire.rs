//! BaZaaRDan wire types, exactly as on the wire (bazaardan-*.txt).

use serde::{Deserialize, Serialize};

/// Every answer: `{"ok": true, "data": ...}` or `{"ok": false, "error": {...}}`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub ok: bool,
    pub data: Option<T>,
    pub error: Option<ApiError>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// `GET /orders.php` data. Rows stay raw so one bad row is an anomaly, not
/// a failed page.
#[derive(Debug, Deserialize)]
pub struct OrdersData {
    pub orders: Vec<serde_json::Value>,
    pub pagination: Pagination,
}

#[derive(Debug, Deserialize)]
pub struct Pagination {
    pub has_more: bool,
}

/// One order item row (list row, and the detail's item fields).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrderRow {
    pub order_item_id: u64,
    #[serde(default)]
    pub order_no: String,
    pub status: String,
    /// Kept raw: a fractional or negative quantity is reported, not rounded.
    pub quantity: serde_json::Value,
    #[serde(default)]
    pub created_at: Option<String>,
    pub updated_at: String,
    pub product: ProductRef,
    /// Only in `order_detail.php`.
    #[serde(default)]
    pub variant_combination_id: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProductRef {
    pub product_id: u64,
    #[serde(default)]
    pub sku: Option<String>,
}

/// `POST /stock_update.php` body. Field order is the seed's; the signature
/// covers the exact bytes sent.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StockUpdate {
    pub product_id: u64,
    pub variant_combination_id: Option<u64>,
    pub stock: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StockUpdated {
    pub product_id: u64,
    #[serde(default)]
    pub variant_combination_id: Option<u64>,
    #[serde(default)]
    pub old_stock: Option<i64>,
    pub new_stock: i64,
    #[serde(default)]
    pub updated: bool,
}
