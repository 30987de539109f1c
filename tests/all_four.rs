//! All four providers at once, with the real binary: stock imported, orders
//! on three marketplaces, a cancellation, a hand-made stokdurumu movement,
//! an ERP adjust. After `sync --once` every listing on every provider shows
//! the ledger quantity, the ledger equals the expected sum, no fake counted
//! a limit violation, and v2 used no more requests than the minimum plus
//! polling.

mod common;

use common::describe;
use std::collections::BTreeMap;
use std::time::Duration;
use stoksync::domain::ListingRef;
use stoksync::sandbox::{Fake, bazaardan, eticaret, pazarsync, stokdurumu};
use tokio::process::Command;

const SKUS: usize = 40;
const START: i64 = 50;

struct World {
    dir: tempfile::TempDir,
    fakes: Vec<Box<dyn Fake>>,
}

impl World {
    async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stoksync"));
        c.args(args)
            .env("STOKSYNC_CONFIG", self.dir.path().join("stoksync.toml"))
            .env("RUST_LOG", "stoksync=info");
        common::output(c, &format!("stoksync {args:?}"), Duration::from_secs(300)).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    async fn stock(&self) -> BTreeMap<String, i64> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["stock", "list", "--json"]).await).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["sku"].as_str().unwrap().to_string(),
                    r["quantity"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn four_providers_converge_on_one_ledger() {
    let fakes: Vec<Box<dyn Fake>> = vec![
        Box::new(
            bazaardan::FakeBazaardan::start(Default::default())
                .await
                .unwrap(),
        ),
        Box::new(
            stokdurumu::FakeStokdurumu::start(stokdurumu::Options {
                requests_per_day: Some(500),
                ..Default::default()
            })
            .await
            .unwrap(),
        ),
        Box::new(
            eticaret::FakeEticaret::start(Default::default())
                .await
                .unwrap(),
        ),
        Box::new(
            pazarsync::FakePazarsync::start(Default::default())
                .await
                .unwrap(),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from(
        "[ledger]\ndatabase = \"ledger.db\"\n[sync]\npoll_interval = \"1s\"\norder_lookback = \"5m\"\nrequest_timeout = \"5s\"\n",
    );
    for f in &fakes {
        config.push_str(&f.config_table(true));
    }
    std::fs::write(dir.path().join("stoksync.toml"), &config).unwrap();
    let w = World { dir, fakes };

    // The ERP's count, and the same SKUs on every provider; some listings
    // already show the right number (they must not be pushed), others not.
    let skus: Vec<String> = (0..SKUS).map(|i| format!("SKU-{i:02}")).collect();
    let mut csv = String::from("sku,quantity\n");
    for s in &skus {
        csv.push_str(&format!("{s},{START}\n"));
    }
    std::fs::write(w.dir.path().join("stock.csv"), csv).unwrap();
    w.ok(&[
        "stock",
        "import",
        w.dir.path().join("stock.csv").to_str().unwrap(),
    ])
    .await;
    let mut listings: Vec<Vec<ListingRef>> = Vec::new();
    let mut map = String::from("sku,provider,listing_id,variant_id\n");
    for f in &w.fakes {
        let ls: Vec<ListingRef> = skus
            .iter()
            .enumerate()
            .map(|(i, s)| f.add_product(s, if i % 2 == 0 { START } else { 0 }))
            .collect();
        if f.provider() == stoksync::domain::ProviderName::Bazaardan {
            // No product list: the operator's mapping links BaZaaRDan.
            for (s, l) in skus.iter().zip(&ls) {
                map.push_str(&format!("{s},bazaardan,{},\n", l.listing_id));
            }
        }
        listings.push(ls);
    }
    std::fs::write(w.dir.path().join("map.csv"), map).unwrap();
    w.ok(&[
        "mapping",
        "import",
        w.dir.path().join("map.csv").to_str().unwrap(),
    ])
    .await;

    // First cycle: discovery links stokdurumu, v2 and PazarSync by SKU.
    w.ok(&["sync", "--once"]).await;
    let first: Vec<usize> = w.fakes.iter().map(|f| f.counters().requests).collect();
    for (f, ls) in w.fakes.iter().zip(&listings) {
        for l in ls {
            assert_eq!(f.stock(l), Some(START), "{l} after the first cycle");
        }
    }

    // Then the day happens.
    let (bz, sd, et, pz) = (&w.fakes[0], &w.fakes[1], &w.fakes[2], &w.fakes[3]);
    let mut expected: BTreeMap<String, i64> = skus.iter().map(|s| (s.clone(), START)).collect();
    bz.place_order(&listings[0][1], 2).unwrap();
    *expected.get_mut("SKU-01").unwrap() -= 2;
    et.place_order(&listings[2][2], 3).unwrap();
    *expected.get_mut("SKU-02").unwrap() -= 3;
    let et_b = et.place_order(&listings[2][5], 4).unwrap();
    et.cancel_order(&et_b);
    pz.place_order(&listings[3][7], 1).unwrap();
    pz.place_order(&listings[3][8], 5).unwrap();
    *expected.get_mut("SKU-07").unwrap() -= 1;
    *expected.get_mut("SKU-08").unwrap() -= 5;
    // Sold 4 by hand in the stokdurumu panel.
    assert!(sd.set_by_hand(&listings[1][3], START - 4));
    *expected.get_mut("SKU-03").unwrap() -= 4;
    // The ERP counts 10 more of SKU-09.
    w.ok(&["stock", "adjust", "SKU-09", "10", "--reason", "delivery"])
        .await;
    *expected.get_mut("SKU-09").unwrap() += 10;

    let out = w.run(&["sync", "--once"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(w.stock().await, expected, "the ledger is the expected sum");
    for (f, ls) in w.fakes.iter().zip(&listings) {
        for (s, l) in skus.iter().zip(ls) {
            assert_eq!(
                f.stock(l),
                Some(expected[s]),
                "{l} ({s}) shows the ledger quantity"
            );
        }
    }
    // A second run has nothing to apply twice.
    w.ok(&["sync", "--once"]).await;
    assert_eq!(w.stock().await, expected, "nothing applied twice");

    let mut report = String::new();
    for (f, first) in w.fakes.iter().zip(first) {
        let c = f.counters();
        assert_eq!(c.limit_violations, 0, "{}: {c:?}", f.provider());
        assert_eq!(c.auth_failures, 0, "{}: {c:?}", f.provider());
        report.push_str(&format!(
            "{}: {} requests ({} in the first cycle) {:?}\n",
            f.provider(),
            c.requests,
            first,
            c.by_endpoint
        ));
    }
    // v2: per cycle one product list page (40 products), one order list
    // page; order/show once per new or changed order (2); updateStocks once
    // for the 20 stale listings, then once for the 4 changed codes.
    let v2 = et.counters().by_endpoint;
    assert_eq!(v2["product/lists"], 3, "{v2:?}");
    assert_eq!(v2["order/lists"], 3, "{v2:?}");
    assert_eq!(v2["order/show"], 2, "{v2:?}");
    assert_eq!(v2["product/updateStocks"], 2, "{v2:?}");
    assert_eq!(et.counters().requests, 10);
    println!("all-four request counts:\n{report}");
}
