//! One simulated world, from one seed: the four fakes, a catalog, a ledger
//! file, a config, a schedule of customers, hand edits, ERP movements,
//! token revocations, "another tool" on the v2 site, and faults before and
//! after a provider applies a request; the real daemon run in incarnations
//! that are killed (as kill -9 would: every task dropped where it stands)
//! or stopped (as SIGTERM would), then one last incarnation that must
//! converge.

use crate::daemon::{self, End, Plan};
use crate::model::{self, Catalog, Checks};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;
use stoksync::config::{Config, Timing};
use stoksync::domain::{ListingRef, ProviderName};
use stoksync::ledger::{Database, Ledger, StockChange};
use stoksync::sandbox::{Fake, Fault, Lost, bazaardan, eticaret, pazarsync, stokdurumu};
use tokio::time::Instant;

/// Distinctive credentials: none may ever appear in a log line.
pub const SECRETS: [&str; 5] = [
    "bz-SECRET-9f3a",
    "sk_SECRET_51c2",
    "v2key-SECRET-77",
    "v2sec-SECRET-88",
    "ps-SECRET-6b0e",
];

/// The per-minute windows, shrunk so that many pass in a run of a second.
pub const WINDOW: Duration = Duration::from_millis(1000);
/// How long a request may take before the client gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(250);
/// A hang outlasts the client's timeout.
const HANG: Duration = Duration::from_millis(320);

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

/// Limits of one world: what the provider enforces, and what our config
/// says (a little lower, as the README advises for shared limits).
#[derive(Debug, Clone)]
pub struct Limits {
    pub bz: (u32, u32),
    pub v2: (u32, u32),
    pub ps: (u32, u32),
    pub ps_day: Option<u32>,
    pub sd_day: Option<u32>,
}

/// Everything drawn from the seed before the world starts.
#[derive(Debug, Clone)]
pub struct Setup {
    pub seed: u64,
    pub skus: Vec<(String, i64)>,
    /// A bundle (`SIM-KIT`) listed on every provider, made of the first
    /// SKUs (units each), in a third of the worlds.
    pub bundle: Option<Vec<(String, i64)>>,
    pub safety: i64,
    pub restock_returns: bool,
    pub poll_ms: u64,
    pub discovery_ms: u64,
    pub attempts: u32,
    pub limits: Limits,
    /// The day turns (00:00 Turkey time) during the run.
    pub near_midnight: bool,
    pub duration: Duration,
    pub lives: Vec<Plan>,
    pub events: Vec<(Duration, Event)>,
}

#[derive(Debug, Clone)]
pub enum Event {
    Order {
        provider: ProviderName,
        listing: usize,
        qty: i64,
    },
    /// The seller changes the quantity of a BaZaaRDan line still placed
    /// (the line's 2nd move may then be a hold, which once reused the 1st
    /// hold's key and lost the units).
    Requantity {
        pick: usize,
        qty: i64,
    },
    /// A placed order moves on without changing the units it holds.
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
    /// The ERP moves a SKU, through the ledger as the CLI does; `twice`:
    /// its answer was lost and it retries with the same key.
    Erp {
        sku: usize,
        change: StockChange,
        twice: bool,
    },
    /// PazarSync drops every token before it expires.
    Revoke,
    Fault {
        provider: ProviderName,
        push_only: bool,
        fault: Fault,
        times: usize,
    },
}

const ORDERING: [ProviderName; 3] = [
    ProviderName::Bazaardan,
    ProviderName::Eticaret,
    ProviderName::Pazarsync,
];

fn pick<T: Copy>(rng: &mut fastrand::Rng, xs: &[T]) -> T {
    xs[rng.usize(0..xs.len())]
}

impl Setup {
    pub fn draw(seed: u64) -> Setup {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = rng.usize(2..=5);
        let skus = (0..n)
            .map(|i| (format!("SIM-{i}"), rng.i64(0..=12)))
            .collect();
        let limits = Limits {
            bz: pick(&mut rng, &[(60, 56), (24, 21), (12, 10)]),
            v2: pick(&mut rng, &[(25, 22), (25, 18), (8, 6)]),
            ps: pick(&mut rng, &[(60, 56), (16, 14)]),
            ps_day: pick(&mut rng, &[None, Some(400), Some(60)]),
            sd_day: pick(&mut rng, &[None, None, Some(500), Some(50)]),
        };
        let near_midnight = rng.u8(0..5) == 0;
        let duration = Duration::from_millis(rng.u64(150..=350));
        let lives = daemon::draw_lives(&mut rng, duration);
        // Drawn apart, so the worlds without a bundle stay the worlds
        // their seeds always were.
        let mut kit = fastrand::Rng::with_seed(seed ^ 0xb0d1_e5e7);
        let bundle = (kit.u8(0..3) == 0).then(|| {
            vec![
                ("SIM-0".to_string(), kit.i64(1..=3)),
                ("SIM-1".to_string(), kit.i64(1..=2)),
            ]
        });
        let mut s = Setup {
            seed,
            skus,
            bundle,
            safety: pick(&mut rng, &[0, 0, 1, 2]),
            restock_returns: rng.bool(),
            poll_ms: rng.u64(15..=50),
            discovery_ms: rng.u64(150..=600),
            attempts: rng.u32(3..=4),
            limits,
            near_midnight,
            duration,
            lives,
            events: Vec::new(),
        };
        s.events = draw_events(&mut rng, &s);
        s
    }

    pub fn has_daily_quota(&self) -> bool {
        self.limits.ps_day.is_some() || self.limits.sd_day.is_some()
    }

    fn config_text(&self, db: &std::path::Path, f: &Fakes) -> String {
        let day = |d: Option<u32>| d.map_or("\"unlimited\"".to_string(), |n| n.to_string());
        format!(
            r#"[ledger]
database = "{db}"

[http]
listen = "off"

[sync]
poll_interval = "{poll}ms"
safety_stock = {safety}
restock_returns = {rr}
order_lookback = "5m"
request_timeout = "{timeout}ms"
max_attempts = {attempts}
discovery_interval = "{disc}ms"

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
            poll = self.poll_ms,
            safety = self.safety,
            rr = self.restock_returns,
            timeout = REQUEST_TIMEOUT.as_millis(),
            attempts = self.attempts,
            disc = self.discovery_ms,
            bz = f.bz.base_url(),
            sd = f.sd.base_url(),
            v2 = f.v2.base_url(),
            ps = f.ps.base_url(),
            s0 = SECRETS[0],
            s1 = SECRETS[1],
            s2 = SECRETS[2],
            s3 = SECRETS[3],
            s4 = SECRETS[4],
            bzl = self.limits.bz.1,
            v2l = self.limits.v2.1,
            psl = self.limits.ps.1,
            sdd = day(self.limits.sd_day),
            psd = day(self.limits.ps_day),
        )
    }
}

fn draw_fault(rng: &mut fastrand::Rng) -> Fault {
    match rng.u8(0..10) {
        0 => Fault::ServerError,
        1 => Fault::Hang(HANG),
        2 => Fault::Malformed,
        3 => Fault::RateLimited { retry_after_s: 1 },
        4 => Fault::Drop,
        5 => Fault::Lost(Lost::Drop),
        6 => Fault::Lost(Lost::Hang(HANG)),
        7 => Fault::Lost(Lost::Malformed),
        _ => Fault::Lost(Lost::ServerError),
    }
}

fn draw_events(rng: &mut fastrand::Rng, s: &Setup) -> Vec<(Duration, Event)> {
    let mut out = Vec::new();
    let mut t = Duration::ZERO;
    let calm = rng.u8(0..4) == 0;
    loop {
        t += Duration::from_millis(rng.u64(2..=25));
        if t >= s.duration {
            break;
        }
        let e = match rng.u8(0..100) {
            0..=29 => Event::Order {
                provider: pick(rng, &ORDERING),
                listing: rng.usize(..),
                qty: rng.i64(1..=3),
            },
            30..=31 => match pick(rng, &ORDERING) {
                ProviderName::Bazaardan => Event::Requantity {
                    pick: rng.usize(..),
                    qty: rng.i64(1..=4),
                },
                provider => Event::Ship {
                    provider,
                    pick: rng.usize(..),
                },
            },
            32..=39 => Event::Ship {
                provider: pick(rng, &ORDERING),
                pick: rng.usize(..),
            },
            40..=49 => Event::Cancel {
                provider: pick(rng, &ORDERING),
                pick: rng.usize(..),
            },
            50..=54 => Event::Return {
                provider: pick(rng, &ORDERING),
                pick: rng.usize(..),
            },
            55..=67 => Event::HandEdit {
                listing: rng.usize(..),
                by: pick(rng, &[-3, -2, -1, 1, 2, 4]),
            },
            68..=75 => Event::Erp {
                sku: rng.usize(..),
                change: if rng.u8(0..4) == 0 {
                    StockChange::To(rng.i64(0..=15))
                } else {
                    StockChange::By(pick(rng, &[-2, -1, 1, 3, 5]))
                },
                twice: rng.u8(0..4) == 0,
            },
            76..=78 => Event::Revoke,
            _ if calm => continue,
            _ => Event::Fault {
                provider: pick(rng, &ProviderName::ALL),
                push_only: rng.bool(),
                fault: draw_fault(rng),
                times: rng.usize(1..=3),
            },
        };
        out.push((t, e));
    }
    out
}

/// What happened, for the report.
#[derive(Debug, Default)]
pub struct Stats {
    pub incarnations: usize,
    pub kills: usize,
    pub stops: usize,
    pub events: usize,
    pub orders: usize,
    pub requests: usize,
    pub lost_answers: usize,
    pub hand_edits: usize,
}

/// Placed orders of one provider, with what happened to them, so events
/// pick a sensible order to move.
#[derive(Default)]
struct Orders {
    placed: Vec<String>,
    shipped: Vec<String>,
}

/// `postgres`: the URL of an empty PostgreSQL database to keep the ledger
/// in (every life reopens it); `None`: a SQLite file in the world's folder.
pub async fn run(
    setup: &Setup,
    shift: Arc<AtomicI64>,
    verbose: bool,
    postgres: Option<String>,
) -> Result<Stats, String> {
    let l = &setup.limits;
    let fakes = Fakes {
        bz: Arc::new(
            bazaardan::FakeBazaardan::start(bazaardan::Options {
                client_id: "sim-client".into(),
                client_secret: SECRETS[0].into(),
                requests_per_minute: Some(l.bz.0),
                window: WINDOW,
                latency: Duration::ZERO,
            })
            .await
            .map_err(|e| e.to_string())?,
        ),
        sd: Arc::new(
            stokdurumu::FakeStokdurumu::start(stokdurumu::Options {
                api_key: SECRETS[1].into(),
                requests_per_day: l.sd_day,
            })
            .await
            .map_err(|e| e.to_string())?,
        ),
        v2: Arc::new(
            eticaret::FakeEticaret::start(eticaret::Options {
                api_key: SECRETS[2].into(),
                api_secret: SECRETS[3].into(),
                requests_per_minute: Some(l.v2.0),
                window: WINDOW,
            })
            .await
            .map_err(|e| e.to_string())?,
        ),
        ps: Arc::new(
            pazarsync::FakePazarsync::start(pazarsync::Options {
                client_id: "sim-client".into(),
                client_secret: SECRETS[4].into(),
                requests_per_minute: Some(l.ps.0),
                requests_per_day: l.ps_day,
                token_lifetime: Duration::from_secs(3600),
                window: WINDOW,
            })
            .await
            .map_err(|e| e.to_string())?,
        ),
    };

    // The catalog: every SKU on every provider, each showing a stale count.
    let mut rng = fastrand::Rng::with_seed(setup.seed ^ 0x5eed);
    let mut catalog = Catalog::default();
    for (sku, qty) in &setup.skus {
        for f in fakes.all() {
            let shows = (qty + rng.i64(-3..=3)).max(0);
            let listing = f.add_product(sku, shows);
            catalog.add(listing, sku);
        }
    }
    if let Some(parts) = &setup.bundle {
        catalog.bundle(model::KIT, parts);
        for f in fakes.all() {
            let listing = f.add_product(model::KIT, rng.i64(0..=6));
            catalog.add(listing, model::KIT);
        }
    }

    let dir = tempfile::Builder::new()
        .prefix("stoksync-sim-")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .map_err(|e| e.to_string())?;
    let mut dir = dir;
    if verbose {
        dir.disable_cleanup(true);
        eprintln!(
            "sim: the world's files are kept in {}",
            dir.path().display()
        );
    }
    let db = dir.path().join("ledger.db");
    let database = match postgres {
        Some(url) => Database::Postgres {
            url,
            password: None,
        },
        None => Database::Sqlite(db.clone()),
    };
    let admin = Ledger::connect(&database)
        .await
        .map_err(|e| e.to_string())?;
    admin
        .import_stock(&setup.skus, "sim", "initial count")
        .await
        .map_err(|e| e.to_string())?;
    if let Some(parts) = &setup.bundle {
        let rows: Vec<stoksync::ledger::BundleRow> = parts
            .iter()
            .enumerate()
            .map(|(i, (sku, n))| stoksync::ledger::BundleRow {
                line: i + 2,
                bundle: model::KIT.to_string(),
                component: sku.clone(),
                quantity: *n,
            })
            .collect();
        admin
            .import_bundles(&rows, "sim-bundles.csv")
            .await
            .map_err(|e| e.to_string())?;
    }
    // BaZaaRDan has no product list: its listings are linked by mapping.
    let maps: Vec<(String, ListingRef)> = catalog
        .of(ProviderName::Bazaardan)
        .map(|(l, sku)| (sku.to_string(), l.clone()))
        .collect();
    admin
        .import_mappings(&maps)
        .await
        .map_err(|e| e.to_string())?;
    // stoksync starts now: orders from before the count above are in it
    // (providers stamp orders to the second: a second of slack).
    for p in ProviderName::ALL {
        admin
            .epoch(p, stoksync::domain::now_ms() - 2_000)
            .await
            .map_err(|e| e.to_string())?;
    }

    let text = setup.config_text(&db, &fakes);
    let mut config =
        Config::parse(&text, &dir.path().join("sim.toml"), &|_| None).map_err(|e| e.to_string())?;
    config.database = database;
    config.sync.timing = Timing {
        rate_window: WINDOW,
        rate_margin: Duration::from_millis(60),
        retry_base: Duration::from_millis(5),
        retry_cap: Duration::from_millis(40),
    };
    let config = Arc::new(config);

    let mut checks = Checks::default();
    let mut stats = Stats::default();

    // The seller's first sync: stoksync links every listing and sets it to
    // the ledger before the world starts moving (a hand edit made before
    // stoksync ever saw a listing is not a movement: there is nothing to
    // measure it from).
    let mut d = daemon::spawn(config.clone(), shift.clone(), Plan::last(), &fakes, 100);
    let synced = model::converge(
        setup,
        &fakes,
        &catalog,
        &admin,
        &[],
        Duration::from_secs(20),
    )
    .await;
    d.stop();
    let end = d.finish(Instant::now()).await;
    checks.incarnation(100, &end, &d);
    if let Err(why) = synced {
        return Err(format!("the first sync did not converge: {why}"));
    }
    let start = Instant::now();
    let events = {
        let (fakes, catalog, admin) = (
            Fakes {
                bz: fakes.bz.clone(),
                sd: fakes.sd.clone(),
                v2: fakes.v2.clone(),
                ps: fakes.ps.clone(),
            },
            catalog.clone(),
            admin.clone(),
        );
        let events = setup.events.clone();
        tokio::spawn(async move {
            let mut erp = Vec::new();
            let mut orders: [Orders; 3] = Default::default();
            let mut n = 0;
            for (at, e) in events {
                tokio::time::sleep_until(start + at).await;
                apply(&e, &fakes, &catalog, &admin, &mut orders, &mut erp, n).await;
                n += 1;
            }
            (n, erp)
        })
    };

    // The daemon's lives during the run.
    for (i, plan) in setup.lives.iter().enumerate() {
        stats.incarnations += 1;
        let mut d = daemon::spawn(config.clone(), shift.clone(), plan.clone(), &fakes, i);
        let end = d.finish(start).await;
        checks.incarnation(i, &end, &d);
        match end {
            End::Killed => {
                stats.kills += 1;
                daemon::after_kill(&fakes).await;
            }
            End::Stopped(_) => stats.stops += 1,
            End::Failed(e) => return Err(format!("life {i} failed to start: {e}")),
        }
        if let Some(pause) = plan.restart_after {
            tokio::time::sleep(pause).await;
        }
    }
    let (n_events, erp) = events
        .await
        .map_err(|e| format!("the world's events: {e}"))?;
    stats.events = n_events;

    // Quiet: no more faults, no more customers. If a daily quota may be
    // spent, the day turns first.
    for f in fakes.all() {
        f.clear_faults();
        f.set_tripwire(None);
    }
    if setup.has_daily_quota() {
        model::jump_past_midnight(&shift);
    }
    // The last life discovers once, as in production (hourly): a tiny
    // daily quota is not spent on product lists while it converges.
    let mut calm = (*config).clone();
    calm.sync.discovery_interval = Duration::from_secs(3600);
    let mut last = daemon::spawn(Arc::new(calm), shift.clone(), Plan::last(), &fakes, 99);
    let converged = model::converge(
        setup,
        &fakes,
        &catalog,
        &admin,
        &erp,
        Duration::from_secs(20),
    )
    .await;
    last.stop();
    let end = last.finish(start).await;
    checks.incarnation(setup.lives.len(), &end, &last);
    stats.incarnations += 1;
    stats.stops += 1;
    if verbose {
        for (i, l) in checks.logs.iter().enumerate() {
            eprintln!("----- log of life {i} -----\n{l}");
        }
    }
    if verbose {
        for f in fakes.all() {
            let log = admin
                .request_times_since(f.provider(), 0)
                .await
                .unwrap_or_default();
            let arrived = f.arrivals_ms();
            let t0 = log
                .first()
                .copied()
                .unwrap_or(0)
                .min(arrived.first().copied().unwrap_or(0));
            let rel = |v: &[i64]| v.iter().map(|t| t - t0).collect::<Vec<_>>();
            eprintln!("{}: granted {:?}", f.provider(), rel(&log));
            eprintln!("{}: arrived {:?}", f.provider(), rel(&arrived));
        }
        for (l, sku) in catalog.of(ProviderName::Stokdurumu) {
            let id: u64 = l.listing_id.parse().unwrap_or(0);
            eprintln!("stokdurumu/{id} ({sku}) history:");
            for m in fakes.sd.movements_of(id) {
                eprintln!("  {m:?}");
            }
        }
    }
    if let Err(why) = converged {
        checks.fail(format!("did not converge: {why}"));
    }
    checks.final_state(setup, &fakes, &catalog, &admin).await;
    for f in fakes.all() {
        let c = f.counters();
        stats.requests += c.requests;
        stats.lost_answers += c.lost_answers;
    }
    stats.orders = catalog.orders(&fakes);
    stats.hand_edits = fakes.sd.hand_edits().len();
    admin.close().await;
    checks.verdict().map(|()| stats)
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    e: &Event,
    f: &Fakes,
    catalog: &Catalog,
    admin: &Ledger,
    orders: &mut [Orders; 3],
    erp: &mut Vec<model::Erp>,
    n: usize,
) {
    let slot = |p: ProviderName| ORDERING.iter().position(|x| *x == p).unwrap_or(0);
    match e {
        Event::Order {
            provider,
            listing,
            qty,
        } => {
            let ls: Vec<&ListingRef> = catalog.of(*provider).map(|(l, _)| l).collect();
            let l = ls[listing % ls.len()];
            if let Some(id) = f.get(*provider).place_order(l, *qty) {
                orders[slot(*provider)].placed.push(id);
            }
        }
        Event::Requantity { pick, qty } => {
            let o = &orders[slot(ProviderName::Bazaardan)];
            if o.placed.is_empty() {
                return;
            }
            let id = &o.placed[pick % o.placed.len()];
            f.bz.change_quantity(id.parse().unwrap_or(0), *qty);
        }
        Event::Ship { provider, pick } => {
            let o = &mut orders[slot(*provider)];
            if o.placed.is_empty() {
                return;
            }
            let id = o.placed.remove(pick % o.placed.len());
            match provider {
                ProviderName::Bazaardan => f.bz.set_status(id.parse().unwrap_or(0), "shipped"),
                ProviderName::Eticaret => f.v2.set_status(id.parse().unwrap_or(0), 3),
                _ => f.ps.set_status(&id, "shipped"),
            }
            o.shipped.push(id);
        }
        Event::Cancel { provider, pick } => {
            let o = &mut orders[slot(*provider)];
            let from_shipped = o.placed.is_empty();
            let list = if from_shipped {
                &mut o.shipped
            } else {
                &mut o.placed
            };
            if list.is_empty() {
                return;
            }
            let id = list.remove(pick % list.len());
            f.get(*provider).cancel_order(&id);
        }
        Event::Return { provider, pick } => {
            let o = &mut orders[slot(*provider)];
            if o.shipped.is_empty() {
                return;
            }
            let id = o.shipped.remove(pick % o.shipped.len());
            match provider {
                ProviderName::Bazaardan => f.bz.set_status(id.parse().unwrap_or(0), "returned"),
                ProviderName::Eticaret => f.v2.set_status(id.parse().unwrap_or(0), 4),
                _ => f.ps.set_status(&id, "returned"),
            }
        }
        Event::HandEdit { listing, by } => {
            let ls: Vec<&ListingRef> = catalog
                .of(ProviderName::Stokdurumu)
                .map(|(l, _)| l)
                .collect();
            let l = ls[listing % ls.len()];
            let id: u64 = l.listing_id.parse().unwrap_or(0);
            if let Some(now) = f.sd.product_stock(id) {
                f.sd.set_by_hand(id, (now + by).max(0));
            }
        }
        Event::Erp { sku, change, twice } => {
            let skus = catalog.skus();
            let sku = &skus[sku % skus.len()];
            let key = format!("erp/sim/{n}");
            let mut applied = false;
            for _ in 0..(1 + usize::from(*twice)) {
                match admin.erp_movement(sku, *change, "sim", &key).await {
                    Ok(o) => applied |= o.applied,
                    Err(e) => eprintln!("sim: ERP movement refused: {e}"),
                }
            }
            if applied {
                erp.push(model::Erp {
                    key,
                    sku: sku.clone(),
                    change: *change,
                });
            }
        }
        Event::Revoke => f.ps.revoke_tokens(),
        Event::Fault {
            provider,
            push_only,
            fault,
            times,
        } => {
            let fake = f.get(*provider);
            let endpoint = push_only.then(|| fake.push_endpoint());
            fake.inject(fault.clone(), *times, endpoint);
        }
    }
}
