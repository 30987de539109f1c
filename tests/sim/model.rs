//! The model, written apart from the code under test: what the ledger must
//! hold and what every listing must show, computed only from what the world
//! did and what the fakes recorded (the orders customers placed and what
//! became of them, the counts edited by hand in the stokdurumu panel, the
//! ERP's calls and their answers) — never from the daemon's journal or
//! ledger. The daemon's ledger is read only to be checked against it.

use crate::world::{KIT, Setup};
use std::collections::BTreeMap;
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::sandbox::{Fake, bazaardan, eticaret, pazarsync, stokdurumu};

use std::sync::Arc;

pub struct Fakes {
    pub bz: Arc<bazaardan::FakeBazaardan>,
    pub sd: Arc<stokdurumu::FakeStokdurumu>,
    pub v2: Arc<eticaret::FakeEticaret>,
    pub ps: Arc<pazarsync::FakePazarsync>,
}

impl Fakes {
    pub fn all(&self) -> [&dyn Fake; 4] {
        [&*self.bz, &*self.sd, &*self.v2, &*self.ps]
    }

    pub fn get(&self, p: ProviderName) -> &dyn Fake {
        match p {
            ProviderName::Bazaardan => &*self.bz,
            ProviderName::Stokdurumu => &*self.sd,
            ProviderName::Eticaret => &*self.v2,
            ProviderName::Pazarsync => &*self.ps,
        }
    }
}

/// Every listing of the world and its SKU, in the order they were made,
/// and the bundles (SKU -> parts, units each).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    listings: Vec<(ListingRef, String)>,
    by_key: BTreeMap<(ProviderName, String, String), usize>,
    bundles: BTreeMap<String, Vec<(String, i64)>>,
    skus: Vec<String>,
}

impl Catalog {
    pub fn add(&mut self, l: ListingRef, sku: &str) {
        self.by_key.insert(
            (l.provider, l.listing_id.clone(), l.variant_id.clone()),
            self.listings.len(),
        );
        if !self.skus.iter().any(|s| s == sku) && !self.bundles.contains_key(sku) && sku != KIT {
            self.skus.push(sku.to_string());
        }
        self.listings.push((l, sku.to_string()));
    }

    pub fn bundle(&mut self, sku: &str, parts: &[(String, i64)]) {
        self.bundles.insert(sku.to_string(), parts.to_vec());
    }

    /// What `sku` makes of the stock `have`: its own quantity, or for a
    /// bundle the fewest whole bundles its parts make.
    pub fn available(&self, sku: &str, have: &BTreeMap<String, i64>) -> Option<i64> {
        match self.bundles.get(sku) {
            None => have.get(sku).copied(),
            Some(parts) => parts
                .iter()
                .map(|(p, n)| have.get(p).map(|q| q.max(&0) / n))
                .try_fold(i64::MAX, |m, q| q.map(|q| m.min(q))),
        }
    }

    /// What a listing of `sku` must show of the stock `have`.
    pub fn wanted(&self, s: &Setup, sku: &str, have: &BTreeMap<String, i64>) -> Option<i64> {
        self.available(sku, have).map(|q| (q - s.safety).max(0))
    }

    pub fn of(&self, p: ProviderName) -> impl Iterator<Item = (&ListingRef, &str)> {
        self.listings
            .iter()
            .filter(move |(l, _)| l.provider == p)
            .map(|(l, s)| (l, s.as_str()))
    }

    pub fn all(&self) -> impl Iterator<Item = (&ListingRef, &str)> {
        self.listings.iter().map(|(l, s)| (l, s.as_str()))
    }

    pub fn len(&self) -> usize {
        self.listings.len()
    }

    /// The SKUs with stock (not bundles), in the order they were made.
    pub fn skus(&self) -> &[String] {
        &self.skus
    }

    pub fn sku(&self, p: ProviderName, listing_id: &str, variant_id: &str) -> Option<&str> {
        self.by_key
            .get(&(p, listing_id.to_string(), variant_id.to_string()))
            .map(|i| self.listings[*i].1.as_str())
    }

    /// The SKUs whose stock `sku`'s listings show: itself, or its parts.
    pub fn parts_of(&self, sku: &str) -> Vec<(String, i64)> {
        match self.bundles.get(sku) {
            Some(parts) => parts.clone(),
            None => vec![(sku.to_string(), 1)],
        }
    }

    /// The listings whose shown value depends on the stock of `part`.
    pub fn depending_on(&self, part: &str) -> Vec<(&ListingRef, &str)> {
        self.listings
            .iter()
            .filter(|(_, s)| {
                s == part
                    || self
                        .bundles
                        .get(s)
                        .is_some_and(|ps| ps.iter().any(|(p, _)| p == part))
            })
            .map(|(l, s)| (l, s.as_str()))
            .collect()
    }
}

/// Whether a line in `status` holds its units (PROTOCOL.md, per provider).
fn holds(p: ProviderName, status: &str, restock_returns: bool) -> bool {
    let returned = !restock_returns;
    match p {
        ProviderName::Eticaret => match status {
            "5" => false,
            "4" => returned,
            _ => true,
        },
        _ => match status {
            "cancelled" => false,
            "returned" => returned,
            _ => true,
        },
    }
}

/// One order line as the fakes hold it, per SKU it moves: its journal key
/// prefix (`provider/item/KEY/`), the SKU, the units it holds now (0 once
/// released), and the listing it was placed on.
#[derive(Debug, Clone)]
pub struct Line {
    pub prefix: String,
    pub sku: String,
    pub holds: i64,
}

/// Every order line of every fake, expanded to the SKUs it moves.
pub fn lines(s: &Setup, f: &Fakes, c: &Catalog) -> Vec<Line> {
    let mut out = Vec::new();
    let mut add = |p: ProviderName, key: String, sku: Option<&str>, qty: i64, status: &str| {
        let Some(sku) = sku else { return };
        let held = holds(p, status, s.restock_returns);
        for (part, n) in c.parts_of(sku) {
            out.push(Line {
                prefix: format!("{p}/item/{key}/"),
                sku: part,
                holds: if held { qty * n } else { 0 },
            });
        }
    };
    for (id, product, variant, qty, status) in f.bz.items() {
        let variant = variant.map(|v| v.to_string()).unwrap_or_default();
        let sku = c.sku(ProviderName::Bazaardan, &product.to_string(), &variant);
        add(ProviderName::Bazaardan, id.to_string(), sku, qty, &status);
    }
    for (id, status, ls) in f.v2.orders() {
        for (n, (code, barcode, qty)) in ls.into_iter().enumerate() {
            let variant = if barcode == code {
                String::new()
            } else {
                barcode
            };
            let sku = c
                .sku(ProviderName::Eticaret, &code, &variant)
                .or_else(|| c.sku(ProviderName::Eticaret, &code, ""));
            add(
                ProviderName::Eticaret,
                format!("{id}/{}", n + 1),
                sku,
                qty as i64,
                &status.to_string(),
            );
        }
    }
    for (id, status, items) in f.ps.orders() {
        for (iid, pid, _, qty) in items {
            let sku = c.sku(ProviderName::Pazarsync, &pid, "");
            add(
                ProviderName::Pazarsync,
                format!("{id}/{iid}"),
                sku,
                qty,
                &status,
            );
        }
    }
    out
}

/// Units edited by hand in the stokdurumu panel, per SKU.
pub fn hand_edits(f: &Fakes, c: &Catalog) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (id, old, new) in f.sd.hand_edits() {
        // A change by hand on a bundle's listing moves no stock (a bundle
        // has none of its own): the daemon pushes the bundle's value back.
        if let Some(sku) = c
            .sku(ProviderName::Stokdurumu, &id.to_string(), "")
            .filter(|s| !c.bundles.contains_key(*s))
        {
            *out.entry(sku.to_string()).or_default() += new - old;
        }
    }
    out
}

/// What every SKU must hold now: the first count, what the ERP's answers
/// say its calls moved, the hand edits, less the units every order line
/// holds. The world's own records only.
pub fn expected(
    s: &Setup,
    f: &Fakes,
    c: &Catalog,
    erp: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    let mut want: BTreeMap<String, i64> = s.skus.iter().cloned().collect();
    for (sku, d) in erp {
        *want.entry(sku.clone()).or_default() += d;
    }
    for (sku, d) in hand_edits(f, c) {
        *want.entry(sku).or_default() += d;
    }
    for l in lines(s, f, c) {
        *want.entry(l.sku).or_default() -= l.holds;
    }
    want
}
