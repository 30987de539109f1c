//! Domain types shared by every layer: provider names, listing references,
//! order items as the engine sees them, stock pushes, and Turkey time.
//!
//! Nothing here knows about a wire format; adapters translate into these.

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The four providers stoksync knows. The string form is used in config
/// tables, mapping files, idempotency keys and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    Bazaardan,
    Stokdurumu,
    Eticaret,
    Pazarsync,
}

impl ProviderName {
    pub const ALL: [ProviderName; 4] = [
        ProviderName::Bazaardan,
        ProviderName::Stokdurumu,
        ProviderName::Eticaret,
        ProviderName::Pazarsync,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::Bazaardan => "bazaardan",
            ProviderName::Stokdurumu => "stokdurumu",
            ProviderName::Eticaret => "eticaret",
            ProviderName::Pazarsync => "pazarsync",
        }
    }

    pub fn parse(s: &str) -> Option<ProviderName> {
        ProviderName::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::str::FromStr for ProviderName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ProviderName::parse(s).ok_or_else(|| {
            format!("unknown provider `{s}` (bazaardan, stokdurumu, eticaret, pazarsync)")
        })
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One place a SKU is sold: a provider's listing, optionally a variant of it.
/// `variant_id` is empty when the listing has no variants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ListingRef {
    pub provider: ProviderName,
    pub listing_id: String,
    pub variant_id: String,
}

impl fmt::Display for ListingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.variant_id.is_empty() {
            write!(f, "{}/{}", self.provider, self.listing_id)
        } else {
            write!(
                f,
                "{}/{}/{}",
                self.provider, self.listing_id, self.variant_id
            )
        }
    }
}

/// What an order item's status means for stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemEffect {
    /// The item holds its quantity (new, accepted, shipped, ...).
    Hold,
    /// The item gives its quantity back (cancelled; returned when restocking).
    Release,
}

/// One order line as reported by a provider, translated to the domain.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    /// Unique per provider, stable for the life of the line (e.g. BaZaaRDan's
    /// `order_item_id`). Used in idempotency keys.
    pub key: String,
    pub order_ref: String,
    pub listing_id: String,
    pub variant_id: String,
    /// The SKU the provider printed on the line, if any; used to learn links.
    pub sku_hint: Option<String>,
    pub quantity: i64,
    pub status: String,
    pub effect: ItemEffect,
    /// The provider's own change timestamp, as sent (used for change detection).
    pub updated_at: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// A line the adapter could not translate (fractional or negative quantity,
/// missing field). Kept and reported, never rounded or guessed.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub key: String,
    pub message: String,
}

/// What one poll of a provider returned.
#[derive(Debug, Clone, Default)]
pub struct OrderChanges {
    pub items: Vec<OrderItem>,
    pub anomalies: Vec<Anomaly>,
    /// The cursor to store with these items (provider-specific text).
    pub cursor: Option<String>,
    /// Orders whose detail was read, with their fingerprint, so the next
    /// poll reads only orders that are new or changed.
    pub orders: Vec<SeenOrder>,
    /// Stock counts the provider shows (stokdurumu): a count that differs
    /// from what stoksync last confirmed is a movement made by hand.
    pub external: Vec<ExternalCount>,
}

/// An order whose lines were read, and what it looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenOrder {
    pub order_ref: String,
    /// Changes whenever the order does (e.g. `updated_at|status`).
    pub fingerprint: String,
}

/// The stock a provider shows for a listing, read at `stamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCount {
    pub listing: ListingRef,
    pub observed: i64,
    /// Identifies the observation (the provider's change time); part of
    /// the movement's idempotency key.
    pub stamp: String,
    /// Our writes to the listing since its last confirmation that the
    /// provider carried out, from its own history. Filled by the engine
    /// when pushes of ours are unsettled (their answers were lost), so the
    /// count is not mistaken for a hand edit.
    pub trail: Option<Trail>,
}

/// One write of ours the provider carried out: what the listing showed
/// just before, and what we set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurWrite {
    pub tag: String,
    pub old: i64,
    pub new: i64,
}

/// Our writes to one listing that the provider carried out, oldest first,
/// read from the provider's own history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trail {
    pub writes: Vec<OurWrite>,
    /// The history reached back past the oldest write asked about, so a
    /// write missing from it was never carried out.
    pub complete: bool,
}

/// What a provider's answer to our write said the listing showed before
/// it (stokdurumu's `old_qty`): the base for telling hand edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revealed {
    pub listing: ListingRef,
    pub old: i64,
    pub new: i64,
    /// An earlier attempt of this same call may have been carried out (its
    /// answer was lost), so `old` may be our own write.
    pub resent: bool,
}

/// A push sent whose answer was not recorded: it may or may not have been
/// carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub qty: i64,
    pub tag: String,
    pub sent_at_ms: i64,
}

/// A listing as a provider's product list shows it (discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteListing {
    pub listing: ListingRef,
    /// The SKU the provider prints on it (stokdurumu/PazarSync `sku`, v2
    /// product `code` or variant `barcode`).
    pub sku: Option<String>,
    /// What it shows now; `None` when not a whole number.
    pub quantity: Option<i64>,
}

/// Set `listing` to `quantity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockPush {
    pub listing: ListingRef,
    pub quantity: i64,
    /// Names this push where the provider keeps it (stokdurumu's reason,
    /// BaZaaRDan's `external_ref`); set when the push is noted as
    /// attempted, empty before.
    pub tag: String,
}

impl StockPush {
    pub fn new(listing: ListingRef, quantity: i64) -> StockPush {
        StockPush {
            listing,
            quantity,
            tag: String::new(),
        }
    }
}

/// How one push of one listing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The provider confirmed this quantity.
    Confirmed(i64),
    /// The provider refused it (4xx); not retried until the wanted value changes.
    Rejected(String),
    /// It may or may not have landed (5xx, timeout, rate limit); retried next cycle.
    Failed(String),
}

/// Turkey is UTC+03:00 all year (no DST since 2016). Provider timestamps
/// without a zone are in this offset (PROTOCOL.md, "Common to all four").
pub fn turkey() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("constant offset is valid")
}

/// `YYYY-MM-DD HH:MM:SS` in Turkey time.
pub fn format_turkey(t: DateTime<Utc>) -> String {
    t.with_timezone(&turkey())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The seller's time zone, as times shown to people name it. Turkey keeps
/// UTC+03:00 all year, so the fixed offset is the zone.
pub const SELLER_ZONE: &str = "Europe/Istanbul";

/// A moment as the status page and `status` show it, in the seller's time
/// with the zone named: `2026-12-02 09:15:03 +03:00 (Europe/Istanbul)`.
pub fn shown_time(t: DateTime<Utc>) -> String {
    format!(
        "{} ({SELLER_ZONE})",
        t.with_timezone(&turkey()).format("%Y-%m-%d %H:%M:%S %:z")
    )
}

/// A moment in RFC 3339 at Turkey's offset (`2026-12-02T09:15:03.120+03:00`),
/// for JSON: the same instant as in UTC, read as the seller reads clocks.
pub fn turkey_rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&turkey())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// An RFC 3339 stamp as [`shown_time`] shows it (as given when unparsable).
pub fn shown_stamp(stamp: &str) -> String {
    DateTime::parse_from_rfc3339(stamp)
        .map(|t| shown_time(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| stamp.to_string())
}

/// Parses `YYYY-MM-DD HH:MM:SS` (Turkey time) or an RFC 3339 timestamp.
pub fn parse_provider_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    naive
        .and_local_timezone(turkey())
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// The calendar day in Turkey at `t`; daily quotas reset when it changes.
pub fn turkey_day(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&turkey()).date_naive()
}

/// The next 00:00 Turkey time strictly after `t`.
pub fn next_turkey_midnight(t: DateTime<Utc>) -> DateTime<Utc> {
    let next_day = turkey_day(t) + ChronoDuration::days(1);
    next_day
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_local_timezone(turkey())
        .single()
        .expect("fixed offsets are unambiguous")
        .with_timezone(&Utc)
}

/// The last 00:00 Turkey time at or before `t`.
pub fn turkey_midnight_before(t: DateTime<Utc>) -> DateTime<Utc> {
    next_turkey_midnight(t) - ChronoDuration::days(1)
}

pub fn now_ms() -> i64 {
    crate::clock::now_ms()
}

pub fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_istanbul_with_the_zone_named() {
        let t = utc("2026-12-02T06:15:03.120Z");
        assert_eq!(
            shown_time(t),
            "2026-12-02 09:15:03 +03:00 (Europe/Istanbul)"
        );
        assert_eq!(turkey_rfc3339(t), "2026-12-02T09:15:03.120+03:00");
        assert_eq!(
            shown_stamp(&turkey_rfc3339(t)),
            shown_stamp("2026-12-02T06:15:03.120Z")
        );
        // Late evening UTC is already the next day in Istanbul.
        assert_eq!(
            shown_time(utc("2026-12-31T22:30:00Z")),
            "2027-01-01 01:30:00 +03:00 (Europe/Istanbul)"
        );
        assert_eq!(shown_stamp("not a time"), "not a time");
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn provider_times_without_zone_are_turkey_time() {
        let t = parse_provider_time("2026-05-08 18:30:00").unwrap();
        assert_eq!(t, utc("2026-05-08T15:30:00Z"));
        assert_eq!(format_turkey(t), "2026-05-08 18:30:00");
        assert_eq!(
            parse_provider_time("2023-09-16T10:15:00Z").unwrap(),
            utc("2023-09-16T10:15:00Z")
        );
        assert!(parse_provider_time("yesterday").is_none());
    }

    #[test]
    fn turkey_day_turns_at_21_utc() {
        let cases = [
            ("2026-05-08T20:59:59Z", "2026-05-08", "2026-05-08T21:00:00Z"),
            ("2026-05-08T21:00:00Z", "2026-05-09", "2026-05-09T21:00:00Z"),
            ("2026-12-31T22:00:00Z", "2027-01-01", "2027-01-01T21:00:00Z"),
        ];
        for (now, day, next) in cases {
            assert_eq!(turkey_day(utc(now)).to_string(), day, "{now}");
            assert_eq!(next_turkey_midnight(utc(now)), utc(next), "{now}");
        }
        assert_eq!(
            turkey_midnight_before(utc("2026-05-08T21:00:00Z")),
            utc("2026-05-08T21:00:00Z")
        );
    }
}
