//! Test harness: a temp folder with a config pointing at a BaZaaRDan fake,
//! and helpers that run the real `stoksync` binary.
#![allow(dead_code)]

pub mod log;
pub mod pg;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
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

    /// `stoksync ARGS` with this environment, to run through [`output`] or
    /// [`Daemon::spawn`] (which check its log for ledger errors).
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

    /// Runs `stoksync ARGS` to completion (bounded); fails the test if it
    /// logged a ledger database error.
    pub async fn run(&self, args: &[&str]) -> Output {
        output(
            self.command(args),
            &format!("stoksync {args:?}"),
            Duration::from_secs(120),
        )
        .await
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

    /// Starts `stoksync ARGS` (a daemon): checked for ledger database
    /// errors when it is dropped or waited for.
    pub fn spawn(&self, args: &[&str]) -> Daemon {
        Daemon::spawn(self.command(args), &format!("stoksync {args:?}"))
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

/// Runs a command of the binary to completion within `limit`; fails the
/// test if it logged (stdout or stderr) a ledger database error.
pub async fn output(cmd: Command, what: &str, limit: Duration) -> Output {
    output_allowing(cmd, what, limit, &log::Allowed::default()).await
}

/// [`output`], with the ledger errors the test provokes on purpose.
pub async fn output_allowing(
    mut cmd: Command,
    what: &str,
    limit: Duration,
    allowed: &log::Allowed,
) -> Output {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    log::assert_no_ledger_errors(what, &text, allowed);
    out
}

/// A stoksync process a test starts and lets run (a daemon): its stdout
/// and stderr go to files (a pipe nobody reads fills up and stalls it).
/// When it is dropped, it is killed and its log is checked, as when it is
/// waited for with [`Daemon::wait_with_output`]: a ledger database error
/// in it fails the test (tests/common/log.rs), with no test having to
/// remember to look. Derefs to its `Child` (`id`, `wait`, `start_kill`).
pub struct Daemon {
    child: Option<Child>,
    what: String,
    stdout: PathBuf,
    stderr: PathBuf,
    allowed: log::Allowed,
    /// Holds the two files unless the caller named where the log goes.
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts `cmd`, its output in files of a folder of its own.
    pub fn spawn(cmd: Command, what: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut d = Daemon::spawn_logging_to(cmd, what, &stdout, &stderr);
        d._dir = Some(dir);
        d
    }

    /// Starts `cmd` with its stdout and stderr appended to these files
    /// (which the test may read meanwhile).
    pub fn spawn_logging_to(
        mut cmd: Command,
        what: &str,
        stdout: &std::path::Path,
        stderr: &std::path::Path,
    ) -> Daemon {
        let append = |p: &std::path::Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let child = cmd
            .stdout(append(stdout))
            .stderr(append(stderr))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Daemon {
            child: Some(child),
            what: what.to_string(),
            stdout: stdout.to_path_buf(),
            stderr: stderr.to_path_buf(),
            allowed: log::Allowed::default(),
            _dir: None,
        }
    }

    /// Lines of its log containing `pattern` are expected of this test
    /// (it provokes them), for the reason given.
    pub fn allow(&mut self, pattern: &str, why: &str) {
        self.allowed.allow(pattern, why);
    }

    /// What it logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for it to end (the test stopped it), checks its log, and
    /// returns its output.
    pub async fn wait_with_output(mut self) -> std::io::Result<Output> {
        let mut child = self.child.take().expect("not waited for yet");
        let status = child.wait().await?;
        let out = Output {
            status,
            stdout: std::fs::read(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read(&self.stderr).unwrap_or_default(),
        };
        self.check();
        Ok(out)
    }

    fn check(&self) {
        let text = format!(
            "{}\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            self.log()
        );
        log::assert_no_ledger_errors(&self.what, &text, &self.allowed);
    }
}

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child.as_ref().expect("not waited for yet")
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("not waited for yet")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Stopped first, so its log is whole (and nothing it writes after
        // the check goes unread).
        let _ = child.start_kill();
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !std::thread::panicking() {
            self.check();
        }
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
