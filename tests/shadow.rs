//! Shadow mode with the real binary against all four sandbox fakes: a
//! seeded mix of orders and hand edits while the daemon runs in shadow
//! mode, faults on every provider, a kill -9 and a restart. No fake ever
//! receives a stock write; the ledger takes every order once; the report
//! says, listing by listing, whether stoksync would lower, raise or leave
//! what each provider shows. Then `mode = "live"` converges with no
//! re-import and the ledger unchanged.

mod common;

use common::{Daemon, describe, wait_for};
use std::collections::BTreeMap;
use std::time::Duration;
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::sandbox::{Fake, Fault};
use tokio::process::Command;

const SKUS: usize = 8;
const START: i64 = 10;
const SAFETY: i64 = 1;

struct World {
    dir: tempfile::TempDir,
    http: std::net::SocketAddr,
    fakes: Vec<Box<dyn Fake>>,
    /// Per fake, per SKU index: its listing.
    listings: Vec<Vec<ListingRef>>,
}

fn sku(i: usize) -> String {
    format!("GOLGE-{i}")
}

impl World {
    fn config(&self, mode: &str) {
        let mut config = format!(
            "[ledger]\ndatabase = \"ledger.db\"\n[http]\nlisten = \"{}\"\n[sync]\nmode = \"{mode}\"\nsafety_stock = {SAFETY}\npoll_interval = \"200ms\"\ndiscovery_interval = \"300ms\"\norder_lookback = \"5m\"\nrequest_timeout = \"2s\"\nmax_attempts = 3\n",
            self.http
        );
        for f in &self.fakes {
            config.push_str(&f.config_table(true));
        }
        std::fs::write(self.dir.path().join("stoksync.toml"), config).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stoksync"));
        c.args(args)
            .env("STOKSYNC_CONFIG", self.dir.path().join("stoksync.toml"))
            .env("RUST_LOG", "stoksync=warn")
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        common::output(
            self.command(args),
            &format!("stoksync {args:?}"),
            Duration::from_secs(300),
        )
        .await
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn daemon(&self, args: &[&str]) -> Daemon {
        Daemon::spawn(self.command(args), &format!("stoksync {args:?}"))
    }

    async fn ledger(&self) -> BTreeMap<String, i64> {
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

    async fn report(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["shadow", "report", "--json"]).await).unwrap()
    }

    /// Stock writes each fake received.
    fn writes(&self) -> Vec<(ProviderName, usize)> {
        self.fakes
            .iter()
            .map(|f| {
                let c = f.counters();
                (
                    f.provider(),
                    c.by_endpoint.get(f.push_endpoint()).copied().unwrap_or(0),
                )
            })
            .collect()
    }
}

/// The report's verdict and numbers for each listing: (provider, listing)
/// -> (verdict, shows, would show).
fn verdicts(report: &serde_json::Value) -> BTreeMap<(String, String), (String, i64, i64)> {
    let mut out = BTreeMap::new();
    for p in report["providers"].as_array().unwrap() {
        let name = p["provider"].as_str().unwrap().to_string();
        for verdict in ["lower", "raise", "unknown"] {
            for r in p[verdict].as_array().unwrap() {
                out.insert(
                    (name.clone(), r["listing"].as_str().unwrap().to_string()),
                    (
                        verdict.to_string(),
                        r["shows"].as_i64().unwrap_or(-1),
                        r["would_show"].as_i64().unwrap_or(-1),
                    ),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn shadow_mode_never_writes_and_reports_what_it_would_push() {
    let fakes = common::four_fakes().await;
    let mut rng = fastrand::Rng::with_seed(0x5ad0);
    // What the seller's current tool left on each listing: some right,
    // some too high, some too low.
    let listings: Vec<Vec<ListingRef>> = fakes
        .iter()
        .map(|f| {
            (0..SKUS)
                .map(|i| f.add_product(&sku(i), START - SAFETY + rng.i64(-2..=2)))
                .collect()
        })
        .collect();
    let w = World {
        dir: tempfile::tempdir().unwrap(),
        http: common::free_port(),
        fakes,
        listings,
    };
    w.config("shadow");
    let mut csv = String::from("sku,quantity\n");
    let mut map = String::from("sku,provider,listing_id,variant_id\n");
    for i in 0..SKUS {
        csv.push_str(&format!("{},{START}\n", sku(i)));
        map.push_str(&format!(
            "{},bazaardan,{},\n",
            sku(i),
            w.listings[0][i].listing_id
        ));
    }
    std::fs::write(w.dir.path().join("stock.csv"), csv).unwrap();
    std::fs::write(w.dir.path().join("map.csv"), map).unwrap();
    let path = |n: &str| w.dir.path().join(n).to_str().unwrap().to_string();
    w.ok(&["stock", "import", &path("stock.csv")]).await;
    w.ok(&["mapping", "import", &path("map.csv")]).await;

    // Faults on every provider: polls and reads retried, nothing written.
    for f in &w.fakes {
        f.inject(Fault::ServerError, 2, None);
    }
    let mut daemon = w.daemon(&["run"]);
    let mut expected: BTreeMap<String, i64> = (0..SKUS).map(|i| (sku(i), START)).collect();
    let mut orders = 0;
    for round in 0..12 {
        let f = &w.fakes[rng.usize(0..4)];
        let i = rng.usize(0..SKUS);
        let l = &w.listings[w
            .fakes
            .iter()
            .position(|x| x.provider() == f.provider())
            .unwrap()][i];
        if f.provider() == ProviderName::Stokdurumu {
            // Someone edits the count in the stokdurumu panel.
            let now = f.stock(l).unwrap();
            assert!(f.set_by_hand(l, (now + rng.i64(-3..=3)).max(0)));
        } else {
            let qty = rng.i64(1..=2);
            if f.place_order(l, qty).is_some() {
                orders += 1;
                *expected.get_mut(&sku(i)).unwrap() -= qty;
            }
        }
        if round == 6 {
            // kill -9 in the middle of it, and back in shadow mode by flag.
            daemon.start_kill().unwrap();
            daemon.wait().await.unwrap();
            daemon = w.daemon(&["run", "--shadow"]);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // The ledger must come to START less what was ordered, whatever the
    // hand edits (not taken in shadow mode).
    assert!(orders > 0, "the seed placed orders");
    wait_for(
        Duration::from_secs(60),
        "the ledger to take every order",
        || async { w.ledger().await == expected },
    )
    .await;
    // And the report to have read what every provider with a product list
    // shows now.
    let want_report = |report: &serde_json::Value| {
        let got = verdicts(report);
        let mut ok = true;
        for (f, ls) in w.fakes.iter().zip(&w.listings) {
            for (i, l) in ls.iter().enumerate() {
                let would = (expected[&sku(i)] - SAFETY).max(0);
                let shows = f.stock(l).unwrap();
                let key = (f.provider().to_string(), l.to_string());
                let want = match f.provider() {
                    ProviderName::Bazaardan => Some(("unknown", -1)),
                    _ if shows > would => Some(("lower", shows)),
                    _ if shows < would => Some(("raise", shows)),
                    _ => None,
                };
                let have = got.get(&key).map(|(v, s, w)| (v.as_str(), *s, *w));
                ok &= match want {
                    None => have.is_none(),
                    Some((v, s)) => have == Some((v, s, would)),
                };
            }
        }
        ok
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let last = loop {
        let last = w.report().await;
        if want_report(&last) {
            break last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shadow report never matched the fakes:\n{last:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The oversell risk is named, with since when, in the report, in
    // `status` and on the status page.
    let text = w.ok(&["shadow", "report"]).await;
    assert!(text.contains("would be lowered"), "{text}");
    let status = w.ok(&["status"]).await;
    assert!(status.starts_with("mode: shadow"), "{status}");
    let page = reqwest::get(format!("http://{}/", w.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Shadow mode: nothing is pushed") && page.contains("would lower"),
        "{page}"
    );
    let lowered = last["providers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["lower"].as_array().unwrap().clone())
        .collect::<Vec<_>>();
    assert!(
        !lowered.is_empty(),
        "the seed leaves listings too high: {last:#}"
    );
    assert!(
        lowered.iter().all(|r| r["since"].is_string()),
        "{lowered:#?}"
    );

    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    assert_eq!(
        w.writes().iter().map(|(_, n)| n).sum::<usize>(),
        0,
        "a stock write in shadow mode: {:?}",
        w.writes()
    );
    assert_eq!(
        w.ledger().await,
        expected,
        "hand edits are not journaled in shadow mode"
    );
    // sync --once in shadow mode pushes nothing either.
    let out = w.ok(&["sync", "--once"]).await;
    assert!(out.contains("shadow mode: nothing pushed"), "{out}");
    assert_eq!(w.writes().iter().map(|(_, n)| n).sum::<usize>(), 0);

    // Live: no re-import; the same ledger; every listing converges.
    w.config("live");
    let out = w.run(&["sync", "--once"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        w.ledger().await,
        expected,
        "going live applies nothing twice"
    );
    for (f, ls) in w.fakes.iter().zip(&w.listings) {
        for (i, l) in ls.iter().enumerate() {
            assert_eq!(
                f.stock(l),
                Some((expected[&sku(i)] - SAFETY).max(0)),
                "{l} after going live"
            );
        }
    }
    let report = w.report().await;
    assert_eq!(report["mode"], "live");
}
