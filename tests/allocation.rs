//! What a seller decides per channel, end to end with the real binary
//! against all four sandbox fakes: a bundle sold on one provider lowers its
//! components on every provider (and its cancellation gives them back); a
//! `max_quantity` rule caps one provider and not the others; a provider
//! rule applies to that provider only; a `frozen` listing is never pushed;
//! `explain` tells an order, a rule and a refused push in plain words.

mod common;

use common::describe;
use futures_util::FutureExt;
use std::collections::BTreeMap;
use std::time::Duration;
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::sandbox::Fake;
use tokio::process::Command;

struct World {
    dir: tempfile::TempDir,
    http: std::net::SocketAddr,
    fakes: Vec<Box<dyn Fake>>,
    /// Per fake: SKU -> its listing.
    listings: Vec<BTreeMap<&'static str, ListingRef>>,
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

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn fake(&self, p: ProviderName) -> (&dyn Fake, &BTreeMap<&'static str, ListingRef>) {
        let i = self.fakes.iter().position(|f| f.provider() == p).unwrap();
        (self.fakes[i].as_ref(), &self.listings[i])
    }

    /// What every provider shows for `sku`.
    fn shown(&self, sku: &str) -> BTreeMap<ProviderName, Option<i64>> {
        self.fakes
            .iter()
            .zip(&self.listings)
            .map(|(f, ls)| (f.provider(), f.stock(&ls[sku])))
            .collect()
    }
}

fn each(bz: i64, sd: i64, et: i64, pz: i64) -> BTreeMap<ProviderName, Option<i64>> {
    BTreeMap::from([
        (ProviderName::Bazaardan, Some(bz)),
        (ProviderName::Stokdurumu, Some(sd)),
        (ProviderName::Eticaret, Some(et)),
        (ProviderName::Pazarsync, Some(pz)),
    ])
}

async fn world() -> World {
    let fakes = common::four_fakes().await;
    let dir = tempfile::tempdir().unwrap();
    // stokdurumu keeps one unit back of everything (a provider rule).
    let http = common::free_port();
    let mut config = format!(
        "[ledger]\ndatabase = \"ledger.db\"\n[sync]\npoll_interval = \"1s\"\norder_lookback = \"5m\"\nrequest_timeout = \"5s\"\n[http]\nlisten = \"{http}\"\n\n[rules.stokdurumu]\nsafety_stock = 1\n",
    );
    for f in &fakes {
        config.push_str(&f.config_table(true));
    }
    std::fs::write(dir.path().join("stoksync.toml"), &config).unwrap();
    // Every product on every provider, showing a value none of them should
    // keep (CANTA: 99, which only a frozen listing keeps).
    let listings = fakes
        .iter()
        .map(|f| {
            ["KALEM", "SILGI", "DEFTER", "CANTA", "SET"]
                .into_iter()
                .map(|s| (s, f.add_product(s, if s == "CANTA" { 99 } else { 1 })))
                .collect()
        })
        .collect();
    World {
        dir,
        http,
        fakes,
        listings,
    }
}

#[tokio::test]
async fn bundles_rules_and_frozen_listings_across_four_providers() {
    let w = world().await;
    let stock = w.file(
        "stock.csv",
        "sku,quantity\nKALEM,20\nSILGI,10\nDEFTER,30\nCANTA,8\n",
    );
    w.ok(&["stock", "import", &stock]).await;
    // A pencil set: two pencils and an eraser.
    let bundles = w.file(
        "bundles.csv",
        "bundle_sku,component_sku,quantity\nSET,KALEM,2\nSET,SILGI,1\n",
    );
    let out = w.ok(&["bundle", "import", &bundles]).await;
    assert!(out.contains("1 bundle(s)"), "{out}");
    // BaZaaRDan has no product list: its links come from a mapping file,
    // the bundle's among them.
    let (_, bz) = w.fake(ProviderName::Bazaardan);
    let mut map = String::from("sku,provider,listing_id,variant_id\n");
    for (sku, l) in bz {
        map.push_str(&format!("{sku},bazaardan,{},\n", l.listing_id));
    }
    let map = w.file("map.csv", &map);
    w.ok(&["mapping", "import", &map]).await;
    // DEFTER is capped at 4 on PazarSync only; CANTA frozen on v2 only.
    let rules = w.file(
        "rules.csv",
        "sku,provider,safety_stock,max_quantity,percent,zero_below,frozen\nDEFTER,pazarsync,,4,,,\nCANTA,eticaret,,,,,true\n",
    );
    let out = w.ok(&["rules", "import", &rules]).await;
    assert!(out.contains("2 SKU rule(s) set"), "{out}");
    // A bad file changes nothing and names its rows: a CSV-level error and
    // a SKU the ledger does not know.
    let bad = w.file(
        "bad-rules.csv",
        "sku,provider,safety_stock,max_quantity,percent,zero_below,frozen\nKALEM,eticaret,,,150,,\nYOK,eticaret,,1,,,\n",
    );
    let out = w.run(&["rules", "import", &bad]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("percent"), "{err}");
    let bad = w.file(
        "bad-rules2.csv",
        "sku,provider,safety_stock,max_quantity,percent,zero_below,frozen\nKALEM,eticaret,,3,,,\nYOK,eticaret,,1,,,\n",
    );
    let out = w.run(&["rules", "import", &bad]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("`YOK`"), "{err}");
    let listed: serde_json::Value =
        serde_json::from_str(&w.ok(&["rules", "list", "--json"]).await).unwrap();
    let skus: Vec<(&str, &str)> = listed["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["sku"].as_str().unwrap(), r["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        skus.len(),
        2,
        "nothing of the bad files was written: {listed:#}"
    );
    assert!(
        skus[0].1.ends_with("rules.csv line 3") && skus[0].0 == "CANTA",
        "{skus:?}"
    );
    assert_eq!(listed["providers"]["stokdurumu"]["safety_stock"], 1);
    let out = w.ok(&["bundle", "list"]).await;
    assert!(out.contains("SET\tKALEM x2 + SILGI x1\tmakes 10"), "{out}");

    w.ok(&["sync", "--once"]).await;
    assert_eq!(w.shown("KALEM"), each(20, 19, 20, 20));
    // The set: min(20 / 2, 10 / 1) = 10 (stokdurumu keeps one back).
    assert_eq!(w.shown("SET"), each(10, 9, 10, 10));
    assert_eq!(
        w.shown("DEFTER"),
        each(30, 29, 30, 4),
        "capped on PazarSync only"
    );
    assert_eq!(
        w.shown("CANTA"),
        each(8, 7, 99, 8),
        "frozen on v2: never pushed"
    );

    // Three sets sold on BaZaaRDan: 6 pencils and 3 erasers leave stock.
    let (bz_fake, bz) = w.fake(ProviderName::Bazaardan);
    let order = bz_fake.place_order(&bz["SET"], 3).unwrap();
    w.ok(&["sync", "--once"]).await;
    let ledger: serde_json::Value =
        serde_json::from_str(&w.ok(&["stock", "list", "--json"]).await).unwrap();
    let ledger: BTreeMap<&str, i64> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["sku"].as_str().unwrap(), r["quantity"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        ledger,
        BTreeMap::from([("CANTA", 8), ("DEFTER", 30), ("KALEM", 14), ("SILGI", 7)]),
        "the components moved, and the bundle has no stock row"
    );
    assert_eq!(w.shown("KALEM"), each(14, 13, 14, 14));
    assert_eq!(w.shown("SILGI"), each(7, 6, 7, 7));
    assert_eq!(w.shown("SET"), each(7, 6, 7, 7));
    let history = w.ok(&["stock", "history", "KALEM"]).await;
    assert!(
        history.contains("bundle SET") && history.contains("-6"),
        "the component's history shows the bundle order: {history}"
    );
    // Applied once: another cycle moves nothing.
    w.ok(&["sync", "--once"]).await;
    assert_eq!(w.shown("KALEM"), each(14, 13, 14, 14));

    // Cancelled: every unit comes back.
    bz_fake.cancel_order(&order);
    w.ok(&["sync", "--once"]).await;
    assert_eq!(w.shown("KALEM"), each(20, 19, 20, 20));
    assert_eq!(w.shown("SILGI"), each(10, 9, 10, 10));
    assert_eq!(w.shown("SET"), each(10, 9, 10, 10));
    assert_eq!(w.shown("CANTA"), each(8, 7, 99, 8), "still frozen");

    // A bundle has no stock of its own to set.
    let out = w
        .run(&["stock", "set", "SET", "5", "--reason", "count"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a bundle"),
        "{}",
        describe(&out)
    );

    // explain of a SKU touched by an order, a rule and a refused push.
    let (et_fake, et) = w.fake(ProviderName::Eticaret);
    et_fake.place_order(&et["DEFTER"], 2).unwrap();
    // A second DEFTER listing on BaZaaRDan that does not exist there: the
    // push is refused (NOT_FOUND).
    let bad = w.file(
        "bad.csv",
        "sku,provider,listing_id,variant_id\nDEFTER,bazaardan,999999,\n",
    );
    w.ok(&["mapping", "import", &bad]).await;
    let out = w.run(&["sync", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "a refusal: {}", describe(&out));
    assert_eq!(w.shown("DEFTER"), each(28, 27, 28, 4));
    let text = w.ok(&["explain", "DEFTER"]).await;
    for needle in [
        "DEFTER: 28 in the ledger",
        "by order",
        "on eticaret",
        "rules.csv line 2: 28 -> 4",
        "max_quantity 4 from ",
        "safety_stock 1 from config line 11 (`rules.stokdurumu.safety_stock`): 28 -> 27",
        "bazaardan/999999 (mapping)",
        "bazaardan refused the value 28",
        "in step",
    ] {
        assert!(
            text.contains(needle),
            "explain should say {needle:?}:\n{text}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&w.ok(&["explain", "DEFTER", "--json"]).await).unwrap();
    let states: Vec<&str> = json["listings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "refused").count(),
        1,
        "{json:#}"
    );
    let set = w.ok(&["explain", "SET"]).await;
    for needle in [
        "SET is a bundle",
        "KALEM: 20 / 2 = 10",
        "SILGI: 10 / 1 = 10",
        "the fewest is 10",
    ] {
        assert!(
            set.contains(needle),
            "explain SET should say {needle:?}:\n{set}"
        );
    }
    let canta = w.ok(&["explain", "CANTA"]).await;
    assert!(canta.contains("rules.csv line 3: never pushed"), "{canta}");
    let out = w.run(&["explain", "NOPE"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SKU `NOPE`"));

    // The same on the status page, beside the running daemon.
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_stoksync"));
    daemon
        .arg("run")
        .env("RUST_LOG", "warn")
        .env("STOKSYNC_CONFIG", w.dir.path().join("stoksync.toml"));
    let mut daemon = common::Daemon::spawn(daemon, "stoksync run");
    let base = format!("http://{}", w.http);
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let r = client.get(path).send().await.ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        }
    };
    common::wait_for(Duration::from_secs(30), "the status page", || {
        get(format!("{base}/readyz")).map(|r| r.is_some_and(|(c, _)| c == 200))
    })
    .await;
    let (code, page) = get(format!("{base}/")).await.unwrap();
    assert_eq!(code, 200);
    assert!(
        page.contains("href=\"/sku/KALEM\""),
        "SKUs link to explain: {page}"
    );
    let (code, page) = get(format!("{base}/sku/SET")).await.unwrap();
    assert_eq!(code, 200, "{page}");
    for needle in ["A bundle", "KALEM", "The fewest is 10", "in step"] {
        assert!(page.contains(needle), "/sku/SET lacks {needle:?}:\n{page}");
    }
    let (code, page) = get(format!("{base}/sku/DEFTER?format=json")).await.unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&page).unwrap();
    assert_eq!(v["ledger_quantity"], 28, "{v:#}");
    let (code, _) = get(format!("{base}/sku/NOPE")).await.unwrap();
    assert_eq!(code, 404);
    let pid = daemon.id().unwrap().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
