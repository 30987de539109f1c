//! What one seed draws before its world starts: the catalog, each
//! provider's plan (its real per-minute window and daily quota), the
//! config, when the world starts on the calendar (some worlds cross 00:00
//! Turkey time), the schedule of customers, hand edits, ERP movements,
//! token revocations, "another tool" on the v2 site and faults (each aimed
//! at one endpoint, before or after the provider carries the request out),
//! and how each life of the daemon ends.
//!
//! Everything here is a function of the seed alone.

use std::time::Duration;
use stoksync::domain::ProviderName;
use stoksync::ledger::StockChange;
use stoksync::sandbox::{Fault, Lost};

/// Distinctive credentials: none may ever appear in a log line.
pub const SECRETS: [&str; 5] = [
    "bz-SECRET-9f3a",
    "sk_SECRET_51c2",
    "v2key-SECRET-77",
    "v2sec-SECRET-88",
    "ps-SECRET-6b0e",
];

/// The providers' per-minute window: real, never shrunk.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a request may take before the client gives up (the default
/// `request_timeout` is 30 s; the simulator's fakes answer at once unless
/// a fault holds them).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A hang outlasts the client's timeout.
const HANG: Duration = Duration::from_secs(12);
/// 2026-03-02 09:00 Turkey time, a Monday: where most worlds start.
const MORNING_MS: i64 = 1_772_431_200_000;
/// 2026-03-03 00:00 Turkey time: where quota days turn in the worlds that
/// cross midnight.
pub const MIDNIGHT_MS: i64 = 1_772_485_200_000;

/// The bundle's SKU, in the worlds that have one.
pub const KIT: &str = "SIM-KIT";

/// Every endpoint of each provider the daemon calls, as its fake names it
/// (a fault is aimed at one of these).
pub fn endpoints(p: ProviderName) -> &'static [&'static str] {
    match p {
        ProviderName::Bazaardan => &["orders.php", "order_detail.php", "stock_update.php"],
        ProviderName::Stokdurumu => &["products", "stock", "stock/history"],
        ProviderName::Eticaret => &[
            "order/lists",
            "order/show",
            "product/lists",
            "product/updateStocks",
        ],
        ProviderName::Pazarsync => &[
            "auth/token",
            "orders",
            "orders/{id}",
            "products",
            "products/{id}/stock",
            "stocks/batch",
        ],
    }
}

/// The fault kinds, before and after the provider carries a request out.
pub fn fault_kinds() -> Vec<Fault> {
    vec![
        Fault::ServerError,
        Fault::Hang(HANG),
        Fault::Malformed,
        Fault::RateLimited { retry_after_s: 5 },
        Fault::Drop,
        Fault::Lost(Lost::Drop),
        Fault::Lost(Lost::Hang(HANG)),
        Fault::Lost(Lost::Malformed),
        Fault::Lost(Lost::ServerError),
    ]
}

/// A provider's plan: what it enforces, and what our config says (a little
/// lower where a limit is shared, as README advises).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The provider's per-minute limit and ours.
    pub per_minute: Option<(u32, u32)>,
    pub per_day: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub bz: Plan,
    pub sd: Plan,
    pub v2: Plan,
    pub ps: Plan,
    /// Requests a minute "another tool" of the seller spends of the v2
    /// site's 25 (ours are configured below 25 by at least as many).
    pub v2_other_per_minute: u32,
}

impl Limits {
    pub fn of(&self, p: ProviderName) -> Plan {
        match p {
            ProviderName::Bazaardan => self.bz,
            ProviderName::Stokdurumu => self.sd,
            ProviderName::Eticaret => self.v2,
            ProviderName::Pazarsync => self.ps,
        }
    }
}

/// How one life of the daemon ends.
#[derive(Debug, Clone)]
pub enum How {
    /// SIGTERM: must end in `Ok`.
    Stop,
    /// kill -9 at its time.
    Kill,
    /// kill -9 the `nth` time the code reaches `point` (or at its time).
    Failpoint { point: &'static str, nth: u32 },
    /// kill -9 right after `provider` carries out its `nth` write of ours,
    /// before the answer reaches the daemon (or at its time).
    AfterWrite { provider: ProviderName, nth: u32 },
}

/// Where the code may be killed (see `src/failpoint.rs`).
pub const POINTS: [&str; 6] = [
    "push.noted",
    "push.answered",
    "push.recorded",
    "poll.answered",
    "poll.page",
    "http.logged_not_sent",
];

#[derive(Debug, Clone)]
pub struct Life {
    /// When (ms after the world's activity starts) it ends at the latest.
    pub until_ms: i64,
    pub how: How,
    /// The pause before the next life starts.
    pub restart_after_ms: i64,
}

#[derive(Debug, Clone)]
pub enum Event {
    Order {
        provider: ProviderName,
        listing: usize,
        qty: i64,
    },
    /// The seller changes the quantity of a BaZaaRDan line still placed.
    Requantity {
        pick: usize,
        qty: i64,
    },
    Ship {
        provider: ProviderName,
        pick: usize,
    },
    Cancel {
        provider: ProviderName,
        pick: usize,
    },
    Return {
        provider: ProviderName,
        pick: usize,
    },
    /// Someone edits a stokdurumu count in its panel.
    HandEdit {
        listing: usize,
        by: i64,
    },
    /// The ERP moves a SKU through the ledger, as the ERP API does;
    /// `twice`: its answer was lost and it retries with the same key.
    Erp {
        sku: usize,
        change: StockChange,
        twice: bool,
    },
    /// PazarSync drops every token before it expires.
    Revoke,
    /// Another tool of the seller reads the v2 site (spending its window).
    OtherTool,
    Fault {
        provider: ProviderName,
        endpoint: &'static str,
        fault: Fault,
        times: usize,
    },
}

/// Everything drawn from the seed before the world starts.
#[derive(Debug, Clone)]
pub struct Setup {
    pub seed: u64,
    /// When the world starts (Unix ms, on the simulated calendar).
    pub start_ms: i64,
    pub skus: Vec<(String, i64)>,
    /// `SIM-KIT`, listed on every provider, made of the first SKUs.
    pub bundle: Option<Vec<(String, i64)>>,
    pub safety: i64,
    pub restock_returns: bool,
    pub poll: Duration,
    pub discovery: Duration,
    pub attempts: u32,
    pub limits: Limits,
    /// PazarSync's token lifetime.
    pub token_life: Duration,
    pub backlog_after: Duration,
    /// How long customers and the rest act, after the first sync.
    pub activity: Duration,
    pub lives: Vec<Life>,
    pub events: Vec<(i64, Event)>,
    /// A world of thousands of SKUs: fewer events, sparser checks.
    pub big: bool,
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, xs: &[T]) -> T {
    xs[rng.usize(0..xs.len())]
}

const ORDERING: [ProviderName; 3] = [
    ProviderName::Bazaardan,
    ProviderName::Eticaret,
    ProviderName::Pazarsync,
];

impl Setup {
    /// The world of `seed`; `big` worlds list `big_skus` SKUs on every
    /// provider.
    pub fn draw(seed: u64, big_skus: Option<usize>) -> Setup {
        let mut rng = fastrand::Rng::with_seed(seed);
        let big = big_skus.is_some();
        let n = big_skus.unwrap_or_else(|| {
            if rng.u8(0..4) == 0 {
                rng.usize(12..=40)
            } else {
                rng.usize(2..=5)
            }
        });
        let skus = (0..n)
            .map(|i| (format!("SIM-{i}"), rng.i64(0..=12)))
            .collect();
        let bundle = (!big && rng.u8(0..3) == 0).then(|| {
            vec![
                ("SIM-0".to_string(), rng.i64(1..=3)),
                ("SIM-1".to_string(), rng.i64(1..=2)),
            ]
        });
        // Plans, from the seeds and PROTOCOL.md; ours a little under the
        // provider's where it is shared or unpublished.
        let limits = Limits {
            bz: Plan {
                per_minute: Some(pick(&mut rng, &[(60, 56), (120, 110), (600, 560)])),
                per_day: None,
            },
            sd: Plan {
                per_minute: None,
                per_day: if big {
                    pick(&mut rng, &[Some(50_000), None])
                } else {
                    pick(&mut rng, &[Some(500), Some(5_000), Some(50_000), None])
                },
            },
            v2: Plan {
                per_minute: Some(pick(&mut rng, &[(25, 22), (25, 20)])),
                per_day: None,
            },
            ps: match rng.u8(0..3) {
                0 => Plan {
                    per_minute: Some((60, 56)),
                    per_day: Some(10_000),
                },
                1 => Plan {
                    per_minute: Some((300, 280)),
                    per_day: Some(50_000),
                },
                _ => Plan {
                    per_minute: Some((1_000, 950)),
                    per_day: None,
                },
            },
            v2_other_per_minute: 0,
        };
        let mut limits = limits;
        let (site, ours) = limits.v2.per_minute.unwrap_or((25, 22));
        limits.v2_other_per_minute = rng.u32(0..=site - ours);
        let start_ms = if rng.u8(0..5) == 0 {
            // A few minutes before 00:00 Turkey time: the quota day turns
            // during the run.
            MIDNIGHT_MS - rng.i64(2..=20) * 60_000
        } else {
            MORNING_MS + (seed % 600) as i64 * 60_000
        };
        let poll = Duration::from_secs(pick(&mut rng, &[5, 10, 30, 30, 60]));
        let activity = if big {
            Duration::from_secs(10 * 60)
        } else {
            // Minutes in most worlds, an hour or two of a seller's day in
            // some (the soak runs many more of those).
            Duration::from_secs(if rng.u8(0..40) == 0 {
                pick(&mut rng, &[1800, 3600, 7200])
            } else {
                pick(&mut rng, &[120, 180, 300, 300, 600, 600, 900])
            })
        };
        let mut s = Setup {
            seed,
            start_ms,
            skus,
            bundle,
            safety: pick(&mut rng, &[0, 0, 1, 2]),
            restock_returns: rng.bool(),
            poll,
            discovery: Duration::from_secs(pick(&mut rng, &[120, 600, 3600])),
            attempts: rng.u32(3..=5),
            limits,
            token_life: Duration::from_secs(pick(&mut rng, &[3600, 3600, 45])),
            backlog_after: Duration::from_secs(pick(&mut rng, &[20, 60])),
            activity,
            lives: Vec::new(),
            events: Vec::new(),
            big,
        };
        s.lives = draw_lives(&mut rng, s.activity);
        s.events = draw_events(&mut rng, &s);
        s
    }

    pub fn config_text(
        &self,
        db: &std::path::Path,
        base: &dyn Fn(ProviderName) -> String,
    ) -> String {
        let day = |d: Option<u32>| d.map_or("\"unlimited\"".to_string(), |n| n.to_string());
        let ours = |p: Plan| p.per_minute.map_or(0, |m| m.1);
        format!(
            r#"[ledger]
database = "{db}"

[http]
listen = "off"

[sync]
poll_interval = "{poll}s"
safety_stock = {safety}
restock_returns = {rr}
order_lookback = "5m"
request_timeout = "{timeout}s"
max_attempts = {attempts}
discovery_interval = "{disc}s"

[alerts]
backlog_after = "{backlog}s"

[providers.bazaardan]
base_url = "{bz}"
client_id = "sim-client"
client_secret = "{s0}"
requests_per_minute = {bzl}

[providers.stokdurumu]
base_url = "{sd}"
api_key = "{s1}"
requests_per_day = {sdd}

[providers.eticaret]
base_url = "{v2}"
api_key = "{s2}"
api_secret = "{s3}"
requests_per_minute = {v2l}

[providers.pazarsync]
base_url = "{ps}"
client_id = "sim-client"
client_secret = "{s4}"
requests_per_minute = {psl}
requests_per_day = {psd}
"#,
            db = db.display(),
            poll = self.poll.as_secs(),
            safety = self.safety,
            rr = self.restock_returns,
            timeout = REQUEST_TIMEOUT.as_secs(),
            attempts = self.attempts,
            disc = self.discovery.as_secs(),
            backlog = self.backlog_after.as_secs(),
            bz = base(ProviderName::Bazaardan),
            sd = base(ProviderName::Stokdurumu),
            v2 = base(ProviderName::Eticaret),
            ps = base(ProviderName::Pazarsync),
            s0 = SECRETS[0],
            s1 = SECRETS[1],
            s2 = SECRETS[2],
            s3 = SECRETS[3],
            s4 = SECRETS[4],
            bzl = ours(self.limits.bz),
            v2l = ours(self.limits.v2),
            psl = ours(self.limits.ps),
            sdd = day(self.limits.sd.per_day),
            psd = day(self.limits.ps.per_day),
        )
    }
}

fn draw_lives(rng: &mut fastrand::Rng, activity: Duration) -> Vec<Life> {
    let n = rng.usize(0..=3);
    let span = activity.as_millis() as i64;
    let mut ends: Vec<i64> = (0..n).map(|_| rng.i64(1_000..=span.max(1_001))).collect();
    ends.sort();
    ends.into_iter()
        .map(|until_ms| Life {
            until_ms,
            how: match rng.u8(0..20) {
                0..=5 => How::Stop,
                6..=9 => How::Kill,
                10..=15 => How::Failpoint {
                    point: POINTS[rng.usize(0..POINTS.len())],
                    nth: rng.u32(1..=6),
                },
                _ => How::AfterWrite {
                    provider: ProviderName::ALL[rng.usize(0..4)],
                    nth: rng.u32(1..=4),
                },
            },
            // Restarts come within seconds, often within the same one.
            restart_after_ms: pick(rng, &[0, 0, 300, 2_000, 15_000]),
        })
        .collect()
}

fn draw_fault(rng: &mut fastrand::Rng) -> Fault {
    let kinds = fault_kinds();
    kinds[rng.usize(0..kinds.len())].clone()
}

fn draw_events(rng: &mut fastrand::Rng, s: &Setup) -> Vec<(i64, Event)> {
    let mut out = Vec::new();
    let span = s.activity.as_millis() as i64;
    let count = if s.big {
        rng.usize(20..=40)
    } else {
        rng.usize(15..=60)
    };
    let calm = rng.u8(0..4) == 0;
    let mean_gap = (span / count as i64).max(50);
    let mut t = 0;
    loop {
        t += rng.i64(1..=2 * mean_gap);
        if t >= span {
            break;
        }
        let e = match rng.u8(0..100) {
            0..=29 => Event::Order {
                provider: pick(rng, &ORDERING),
                listing: rng.usize(..),
                qty: rng.i64(1..=3),
            },
            30..=31 => Event::Requantity {
                pick: rng.usize(..),
                qty: rng.i64(1..=4),
            },
            32..=39 => Event::Ship {
                provider: pick(rng, &ORDERING),
                pick: rng.usize(..),
            },
            40..=47 => Event::Cancel {
                provider: pick(rng, &ORDERING),
                pick: rng.usize(..),
            },
            48..=51 => Event::Return {
                provider: pick(rng, &ORDERING),
                pick: rng.usize(..),
            },
            52..=61 => Event::HandEdit {
                listing: rng.usize(..),
                by: pick(rng, &[-3, -2, -1, 1, 2, 4]),
            },
            62..=69 => Event::Erp {
                sku: rng.usize(..),
                change: if rng.u8(0..4) == 0 {
                    StockChange::To(rng.i64(0..=15))
                } else {
                    StockChange::By(pick(rng, &[-2, -1, 1, 3, 5]))
                },
                twice: rng.u8(0..4) == 0,
            },
            70..=71 => Event::Revoke,
            _ if calm => continue,
            _ => {
                let provider = pick(rng, &ProviderName::ALL);
                let eps = endpoints(provider);
                Event::Fault {
                    provider,
                    endpoint: eps[rng.usize(0..eps.len())],
                    fault: draw_fault(rng),
                    times: rng.usize(1..=3),
                }
            }
        };
        out.push((t, e));
    }
    // Another tool spends its share of the v2 site's window, all along.
    if s.limits.v2_other_per_minute > 0 {
        let every = 60_000 / i64::from(s.limits.v2_other_per_minute);
        let mut t = rng.i64(0..every);
        while t < span {
            out.push((t, Event::OtherTool));
            t += every;
        }
        out.sort_by_key(|(t, _)| *t);
    }
    out
}
