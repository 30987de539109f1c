//! Test harness: a temp folder with a config pointing at a BaZaaRDan fake,
//! and helpers that run the real `stoksync` binary.
#![allow(dead_code)]

pub mod pg;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;
use stoksync::sandbox::bazaardan::{FakeBazaardan, Options};
use tokio::process::{Child, Command};

pub const SECRET: &str = "s3cr3t-\"quoted\"-value";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub fake: FakeBazaardan,
    pub config: PathBuf,
    /// Where `run` serves HTTP (a port free when the test started).
    pub http: std::net::SocketAddr,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Config knobs tests vary.
pub struct Knobs {
    pub safety_stock: i64,
    pub requests_per_minute: u32,
    pub poll_interval: &'static str,
    pub secret: String,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            safety_stock: 0,
            requests_per_minute: 600,
            poll_interval: "200ms",
            secret: SECRET.to_string(),
        }
    }
}

impl Env {
    pub async fn new(knobs: Knobs) -> Env {
        Self::with_fake_limit(knobs, None).await
    }

    pub async fn with_fake_limit(knobs: Knobs, fake_rpm: Option<u32>) -> Env {
        let fake = FakeBazaardan::start(Options {
            client_id: "test-client".into(),
            client_secret: SECRET.into(),
            requests_per_minute: fake_rpm,
            ..Options::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stoksync.toml");
        let env = Env {
            dir,
            fake,
            config,
            http: free_port(),
        };
        env.write_config(&knobs);
        env
    }

    /// The secret goes through `${BZ_SECRET}` so a quote in it cannot break the TOML.
    pub fn write_config(&self, k: &Knobs) {
        std::fs::write(self.dir.path().join("secret"), &k.secret).unwrap();
        let text = format!(
            r#"[ledger]
database = "ledger.db"

[sync]
poll_interval = "{}"
safety_stock = {}
order_lookback = "5m"
request_timeout = "2s"
max_attempts = 4

[http]
listen = "{}"

[providers.bazaardan]
base_url = "{}"
client_id = "test-client"
client_secret = "${{BZ_SECRET}}"
requests_per_minute = {}
"#,
            k.poll_interval,
            k.safety_stock,
            self.http,
            self.fake.base_url(),
            k.requests_per_minute
        );
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let secret = std::fs::read_to_string(self.dir.path().join("secret")).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_stoksync"));
        c.args(args)
            .env("STOKSYNC_CONFIG", &self.config)
            .env("BZ_SECRET", secret)
            .env("RUST_LOG", "stoksync=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs `stoksync ARGS` to completion (bounded).
    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(120), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("stoksync {args:?} did not finish in 120 s"))
            .unwrap()
    }

    /// Runs and asserts exit code 0, returning stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "stoksync {args:?} failed: {}",
            describe(&out)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).spawn().unwrap()
    }

    pub async fn stock(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["stock", "list", "--json"]).await).unwrap()
    }

    pub async fn quantity(&self, sku: &str) -> Option<i64> {
        self.stock()
            .await
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["sku"] == sku)
            .map(|r| r["quantity"].as_i64().unwrap())
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The four sandbox fakes with their default options, in provider order
/// (BaZaaRDan, stokdurumu, v2, PazarSync).
pub async fn four_fakes() -> Vec<Box<dyn stoksync::sandbox::Fake>> {
    use stoksync::sandbox::{eticaret, pazarsync, stokdurumu};
    vec![
        Box::new(FakeBazaardan::start(Options::default()).await.unwrap()),
        Box::new(
            stokdurumu::FakeStokdurumu::start(Default::default())
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
    ]
}

/// An order line of the BaZaaRDan fake: (item, product, variant, quantity, status).
pub type FakeItem = (u64, u64, Option<u64>, i64, String);

/// What each `SKU-i` (listed as product `100 + i`) holds once the fake's
/// orders are applied to `start` units: every line not cancelled taken off.
pub fn expected_stock(
    items: &[FakeItem],
    listings: u64,
    start: i64,
) -> std::collections::HashMap<String, i64> {
    let mut expected: std::collections::HashMap<String, i64> =
        (0..listings).map(|i| (format!("SKU-{i}"), start)).collect();
    for (_, product, _, qty, status) in items {
        if status != "cancelled" {
            *expected.get_mut(&format!("SKU-{}", product - 100)).unwrap() -= qty;
        }
    }
    expected
}

/// Per line: a held line moved its quantity once; a cancelled line either
/// never moved stock or moved it out and back exactly once; no movement of
/// a line the fake does not have. `movements` are those keyed
/// `bazaardan/item/<id>/...`.
pub fn assert_each_line_moved_once(items: &[FakeItem], movements: &[stoksync::ledger::Movement]) {
    let mut per_item: std::collections::HashMap<u64, Vec<i64>> = Default::default();
    for m in movements {
        let id: u64 = m
            .idempotency_key
            .split('/')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        per_item.entry(id).or_default().push(m.delta);
    }
    for (id, _, _, qty, status) in items {
        let deltas = per_item.remove(id).unwrap_or_default();
        if status == "cancelled" {
            assert!(
                deltas.is_empty() || deltas == vec![-qty, *qty],
                "item {id}: {deltas:?}"
            );
        } else {
            assert_eq!(deltas, vec![-qty], "item {id}");
        }
    }
    assert!(
        per_item.is_empty(),
        "movements for unknown items: {per_item:?}"
    );
}
