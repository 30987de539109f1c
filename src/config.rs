//! Configuration: one TOML file, parsed once into typed, validated settings.
//!
//! Two stages. `Raw*` structs mirror the file exactly (`deny_unknown_fields`,
//! string values kept with their byte span so errors can name a line).
//! [`Config::load`] then substitutes `${VAR}` from the environment (after
//! parsing, so a secret containing quotes cannot break the TOML), parses
//! durations and URLs, applies defaults, and returns [`Config`].

use crate::domain::ProviderName;
use crate::ledger::Database;
use crate::rules::{ConfigLevel, Field};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A configuration error, naming the file, the key and (when known) the line.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
    /// Further errors of the same kind found in the same pass (every unset
    /// `${VAR}`), each on a line of its own after this one.
    pub also: Vec<ConfigError>,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut out = self.render_one();
        for e in &self.also {
            out.push('\n');
            out.push_str(&e.render_one());
        }
        out
    }

    fn render_one(&self) -> String {
        let mut out = self.file.display().to_string();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        out.push_str(": ");
        if let Some(key) = &self.key {
            out.push_str(&format!("`{key}`: "));
        }
        out.push_str(&self.message);
        out
    }
}

/// A credential. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

type Str = Spanned<String>;

/// A credential as written. Only a string is kept: any other value is
/// dropped while the file is parsed, because serde's own error ("invalid
/// type: integer `987654321`, expected a string") would print it.
enum RawSecret {
    Text(String),
    NotText,
}

type SecretStr = Spanned<RawSecret>;

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawSecretVisitor)
    }
}

struct RawSecretVisitor;

impl<'de> serde::de::Visitor<'de> for RawSecretVisitor {
    type Value = RawSecret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E>(self, v: &str) -> Result<RawSecret, E> {
        Ok(RawSecret::Text(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawSecret, E> {
        Ok(RawSecret::Text(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_i64<E>(self, _: i64) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_u64<E>(self, _: u64) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_i128<E>(self, _: i128) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_u128<E>(self, _: u128) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_f64<E>(self, _: f64) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_unit<E>(self) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_none<E>(self) -> Result<RawSecret, E> {
        Ok(RawSecret::NotText)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<RawSecret, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(RawSecret::NotText)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<RawSecret, A::Error> {
        while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(RawSecret::NotText)
    }
    /// Tables, and datetimes (which the toml crate hands over as a map).
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<RawSecret, A::Error> {
        while a
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(RawSecret::NotText)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ledger: Option<RawLedger>,
    database: Option<RawDatabase>,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    providers: RawProviders,
    #[serde(default)]
    rules: std::collections::BTreeMap<String, Spanned<RawRules>>,
    #[serde(default)]
    alerts: RawAlerts,
}

/// `[alerts]`: where alerts go and when they fire (see `crate::alerts`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    /// A secret: a webhook URL often carries a token.
    webhook: Option<SecretStr>,
    command: Option<Spanned<Vec<Str>>>,
    timeout: Option<Str>,
    retries: Option<Spanned<u32>>,
    stall_after: Option<Str>,
    backlog_after: Option<Str>,
}

/// `[rules.<provider>]`: that provider's allocation rules (see `rules`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    safety_stock: Option<Spanned<i64>>,
    zero_below: Option<Spanned<i64>>,
    percent: Option<Spanned<i64>>,
    max_quantity: Option<Spanned<i64>>,
    frozen: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    database: Str,
}

/// `[database]`: where the ledger lives, and the active lease of a pair.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<Str>,
    password_file: Option<Str>,
    lease_ttl: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    poll_interval: Option<Str>,
    safety_stock: Option<Spanned<i64>>,
    restock_returns: Option<bool>,
    order_lookback: Option<Str>,
    request_timeout: Option<Str>,
    max_attempts: Option<Spanned<u32>>,
    discovery_interval: Option<Str>,
    mode: Option<Str>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Str>,
    token: Option<SecretStr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProviders {
    bazaardan: Option<RawBazaardan>,
    stokdurumu: Option<RawStokdurumu>,
    eticaret: Option<RawEticaret>,
    pazarsync: Option<RawPazarsync>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBazaardan {
    base_url: Str,
    client_id: Str,
    client_secret: SecretStr,
    requests_per_minute: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStokdurumu {
    base_url: Str,
    api_key: SecretStr,
    requests_per_day: Option<Spanned<RawDaily>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEticaret {
    base_url: Str,
    api_key: SecretStr,
    api_secret: SecretStr,
    requests_per_minute: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPazarsync {
    base_url: Str,
    client_id: Str,
    client_secret: SecretStr,
    requests_per_minute: Option<Spanned<u32>>,
    requests_per_day: Option<Spanned<RawDaily>>,
}

/// A daily quota: a number, or the word `"unlimited"` (Enterprise plans).
#[derive(Deserialize)]
#[serde(untagged, expecting = "a number of requests or \"unlimited\"")]
enum RawDaily {
    Count(u32),
    Word(String),
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub database: Database,
    /// `[database] lease_ttl`: how long the active daemon's lease lasts
    /// unrenewed; a standby takes over within it when the active one dies.
    pub lease_ttl: Duration,
    pub sync: SyncSettings,
    pub http: HttpSettings,
    pub bazaardan: Option<BazaardanConfig>,
    pub stokdurumu: Option<StokdurumuConfig>,
    pub eticaret: Option<EticaretConfig>,
    pub pazarsync: Option<PazarsyncConfig>,
    pub alerts: AlertSettings,
}

/// `[alerts]`: where alerts are delivered and when they fire.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// POSTed the alert's JSON. A secret: it often carries a token.
    pub webhook: Option<Secret>,
    /// Program and arguments, run with the alert's JSON on standard input.
    pub command: Option<Vec<String>>,
    /// Time limit of one delivery attempt (a webhook request, a command run).
    pub timeout: Duration,
    /// Attempts after the first before an alert is logged and dropped.
    pub retries: u32,
    /// No successful poll for this long is a stall; `None`: the daemon's
    /// own stall threshold (`crate::engine::stall_after`).
    pub stall_after: Option<Duration>,
    /// Listings waiting to be pushed for this long are a backlog alert.
    pub backlog_after: Duration,
}

pub const DEFAULT_ALERT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_ALERT_RETRIES: u32 = 5;
pub const DEFAULT_BACKLOG_AFTER: Duration = Duration::from_secs(600);

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook: None,
            command: None,
            timeout: DEFAULT_ALERT_TIMEOUT,
            retries: DEFAULT_ALERT_RETRIES,
            stall_after: None,
            backlog_after: DEFAULT_BACKLOG_AFTER,
        }
    }
}

/// `[http]`: health, metrics, the status page and the ERP API.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `None` when `listen = "off"`.
    pub listen: Option<std::net::SocketAddr>,
    /// Bearer token for `/v1/*`; required when `listen` is not loopback.
    pub token: Option<Secret>,
}

/// `[database] lease_ttl` unless set.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// The port used when `http.listen` names only an address.
pub const DEFAULT_HTTP_PORT: u16 = 8787;

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: Some(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                DEFAULT_HTTP_PORT,
            ))),
            token: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub poll_interval: Duration,
    /// `[sync] safety_stock` and `[rules.<provider>]`.
    pub rules: crate::rules::Rules,
    /// `live` pushes; `shadow` polls, applies and plans, never pushes.
    pub mode: Mode,
    pub restock_returns: bool,
    pub order_lookback: Duration,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub discovery_interval: Duration,
    /// Protocol windows and retry pacing. Not in the config file: the
    /// providers fix them. Only the simulator shrinks them, so that many
    /// windows pass in a test that lasts a second.
    pub timing: Timing,
}

/// `[sync] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Polls, applies, pushes.
    #[default]
    Live,
    /// Polls, applies orders and plans exactly as live, but never pushes:
    /// beside the tool a seller uses today, it records what it would push
    /// (`shadow report`).
    Shadow,
}

/// Time constants the limiter and the retry loop work with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The providers' per-minute windows: "25 requests in any 60 s" (v2
    /// seed §3), PazarSync and BaZaaRDan likewise per minute.
    pub rate_window: Duration,
    /// Added to the window by our limiter: two requests we send a window
    /// apart may arrive a little closer (network jitter).
    pub rate_margin: Duration,
    /// First retry delay, and the most any retry waits (full jitter).
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            rate_window: Duration::from_secs(60),
            rate_margin: Duration::from_millis(500),
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(10),
        }
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            poll_interval: DEFAULT_POLL_INTERVAL,
            rules: crate::rules::Rules::default(),
            mode: Mode::Live,
            restock_returns: false,
            order_lookback: DEFAULT_ORDER_LOOKBACK,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
            timing: Timing::default(),
        }
    }
}

/// 30 s: often enough that a sale shows everywhere within a minute, rare
/// enough to leave most of a 60/min budget for pushes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// 5 min of overlap when polling: covers provider clocks that stamp a change
/// a little late and offset pagination that shifts while we page.
pub const DEFAULT_ORDER_LOOKBACK: Duration = Duration::from_secs(300);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Product lists are read at start and then hourly: new listings link within
/// the hour at a cost of a few requests (stokdurumu's Free plan included).
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(3600);
/// PROTOCOL.md: BaZaaRDan publishes no limit; 60/min is the agreed default.
pub const BAZAARDAN_DEFAULT_RPM: u32 = 60;
/// The v2 limit is 25 per 60 s for the whole site, shared with other tools
/// (seed §3); the default leaves 3 for them.
pub const ETICARET_SITE_LIMIT: u32 = 25;
pub const ETICARET_DEFAULT_RPM: u32 = 22;
/// stokdurumu Free plan: 500 requests a day (seed, plan table).
pub const STOKDURUMU_DEFAULT_PER_DAY: u32 = 500;
/// PazarSync Temel plan: 60/min, 10 000/day (seed, Hız Sınırlaması).
pub const PAZARSYNC_DEFAULT_RPM: u32 = 60;
pub const PAZARSYNC_DEFAULT_PER_DAY: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct BazaardanConfig {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub requests_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct StokdurumuConfig {
    pub base_url: String,
    pub api_key: Secret,
    /// `None` is unlimited.
    pub requests_per_day: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct EticaretConfig {
    pub base_url: String,
    pub api_key: Secret,
    pub api_secret: Secret,
    pub requests_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct PazarsyncConfig {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub requests_per_minute: u32,
    /// `None` is unlimited.
    pub requests_per_day: Option<u32>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
            also: Vec::new(),
        })?;
        Config::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses `text` (read from `file`); `env` looks up `${VAR}` values.
    pub fn parse(
        text: &str,
        file: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let key = e.span().and_then(|s| key_at(text, s));
            let mut message = e.message().trim().to_string();
            if key.as_deref().is_some_and(is_duration_key) && message.starts_with("invalid type") {
                message.push_str("; write a duration in quotes, e.g. \"30s\", \"5m\"");
            }
            ConfigError {
                file: file.to_path_buf(),
                line,
                key,
                message,
                also: Vec::new(),
            }
        })?;
        let cx = Cx { text, file, env };
        let mut unset = unset_variables(text, env)
            .into_iter()
            .map(|(span, key, name)| {
                cx.err(
                    span,
                    &key,
                    format!("environment variable `{name}` is not set"),
                )
            });
        if let Some(mut first) = unset.next() {
            first.also = unset.collect();
            return Err(first);
        }
        let base_dir = file.parent().unwrap_or(Path::new("."));

        let (database, lease_ttl) = Self::database(&cx, &raw, base_dir)?;

        let s = &raw.sync;
        let mut sync = SyncSettings::default();
        if let Some(v) = &s.poll_interval {
            sync.poll_interval = cx.duration(v, "sync.poll_interval")?;
        }
        if let Some(v) = &s.order_lookback {
            sync.order_lookback = cx.duration(v, "sync.order_lookback")?;
        }
        if let Some(v) = &s.discovery_interval {
            sync.discovery_interval = cx.duration(v, "sync.discovery_interval")?;
        }
        if let Some(v) = &s.request_timeout {
            sync.request_timeout = cx.duration(v, "sync.request_timeout")?;
        }
        if let Some(v) = &s.safety_stock {
            if *v.get_ref() < 0 {
                return Err(cx.err(v.span(), "sync.safety_stock", "must be 0 or more"));
            }
            let base = &mut sync.rules.base;
            base.set.set(Field::SafetyStock, Some(*v.get_ref()));
            base.lines[Field::SafetyStock as usize] = line_of(text, v.span().start);
        }
        for (name, table) in &raw.rules {
            let key = format!("rules.{name}");
            let Some(provider) = ProviderName::parse(name) else {
                return Err(cx.err(
                    table.span(),
                    &key,
                    format!(
                        "`{name}` is not a provider; write one of [rules.bazaardan], [rules.stokdurumu], [rules.eticaret], [rules.pazarsync]"
                    ),
                ));
            };
            let t = table.get_ref();
            let mut level = ConfigLevel::default();
            let frozen = t
                .frozen
                .as_ref()
                .map(|v| Spanned::new(v.span(), i64::from(*v.get_ref())));
            let fields = [
                (Field::SafetyStock, t.safety_stock.as_ref()),
                (Field::ZeroBelow, t.zero_below.as_ref()),
                (Field::Percent, t.percent.as_ref()),
                (Field::MaxQuantity, t.max_quantity.as_ref()),
                (Field::Frozen, frozen.as_ref()),
            ];
            for (f, v) in fields {
                let Some(v) = v else { continue };
                f.check(*v.get_ref())
                    .map_err(|m| cx.err(v.span(), &format!("{key}.{f}"), m))?;
                level.set.set(f, Some(*v.get_ref()));
                level.lines[f as usize] = line_of(text, v.span().start);
            }
            sync.rules.providers.insert(provider, level);
        }
        if let Some(v) = &s.max_attempts {
            if *v.get_ref() == 0 {
                return Err(cx.err(v.span(), "sync.max_attempts", "must be at least 1"));
            }
            sync.max_attempts = *v.get_ref();
        }
        sync.restock_returns = s.restock_returns.unwrap_or(false);
        if let Some(v) = &s.mode {
            sync.mode = match cx.string(v, "sync.mode")?.as_str() {
                "live" => Mode::Live,
                "shadow" => Mode::Shadow,
                other => {
                    return Err(cx.err(
                        v.span(),
                        "sync.mode",
                        format!("`{other}` is not a mode; write \"live\" or \"shadow\""),
                    ));
                }
            };
        }

        let mut http = HttpSettings::default();
        if let Some(v) = &raw.http.token {
            let t = cx.secret(v, "http.token")?;
            if t.expose().len() < 16 {
                return Err(cx.err(
                    v.span(),
                    "http.token",
                    "must be at least 16 characters (it guards stock changes)",
                ));
            }
            http.token = Some(t);
        }
        if let Some(v) = &raw.http.listen {
            let s = cx.string(v, "http.listen")?;
            let s = s.trim();
            http.listen = if s == "off" {
                None
            } else if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
                Some(addr)
            } else if let Ok(ip) = s.parse::<std::net::IpAddr>() {
                Some(std::net::SocketAddr::new(ip, DEFAULT_HTTP_PORT))
            } else {
                return Err(cx.err(
                    v.span(),
                    "http.listen",
                    format!(
                        "`{s}` is not an address; write e.g. \"127.0.0.1:8787\", \"0.0.0.0:8787\" or \"off\""
                    ),
                ));
            };
            if let Some(addr) = http.listen
                && !addr.ip().is_loopback()
                && http.token.is_none()
            {
                return Err(cx.err(
                    v.span(),
                    "http.listen",
                    format!(
                        "{addr} is reachable beyond this host: set `http.token` (a bearer token for the ERP API, e.g. \"${{cred:http_token}}\") or listen on 127.0.0.1"
                    ),
                ));
            }
        }

        let alerts = Self::alerts(&cx, &raw.alerts)?;

        let p = &raw.providers;
        let bazaardan = match &p.bazaardan {
            None => None,
            Some(b) => Some(BazaardanConfig {
                base_url: cx.url(&b.base_url, "providers.bazaardan.base_url")?,
                client_id: cx.string(&b.client_id, "providers.bazaardan.client_id")?,
                client_secret: cx.secret(&b.client_secret, "providers.bazaardan.client_secret")?,
                requests_per_minute: cx.rate(
                    &b.requests_per_minute,
                    "providers.bazaardan.requests_per_minute",
                    BAZAARDAN_DEFAULT_RPM,
                    None,
                )?,
            }),
        };
        let stokdurumu = match &p.stokdurumu {
            None => None,
            Some(s) => Some(StokdurumuConfig {
                base_url: cx.url(&s.base_url, "providers.stokdurumu.base_url")?,
                api_key: cx.secret(&s.api_key, "providers.stokdurumu.api_key")?,
                requests_per_day: cx.daily(
                    &s.requests_per_day,
                    "providers.stokdurumu.requests_per_day",
                    STOKDURUMU_DEFAULT_PER_DAY,
                )?,
            }),
        };
        let eticaret = match &p.eticaret {
            None => None,
            Some(e) => Some(EticaretConfig {
                base_url: cx.url(&e.base_url, "providers.eticaret.base_url")?,
                api_key: cx.secret(&e.api_key, "providers.eticaret.api_key")?,
                api_secret: cx.secret(&e.api_secret, "providers.eticaret.api_secret")?,
                requests_per_minute: cx.rate(
                    &e.requests_per_minute,
                    "providers.eticaret.requests_per_minute",
                    ETICARET_DEFAULT_RPM,
                    Some(ETICARET_SITE_LIMIT),
                )?,
            }),
        };
        let pazarsync = match &p.pazarsync {
            None => None,
            Some(z) => Some(PazarsyncConfig {
                base_url: cx.url(&z.base_url, "providers.pazarsync.base_url")?,
                client_id: cx.string(&z.client_id, "providers.pazarsync.client_id")?,
                client_secret: cx.secret(&z.client_secret, "providers.pazarsync.client_secret")?,
                requests_per_minute: cx.rate(
                    &z.requests_per_minute,
                    "providers.pazarsync.requests_per_minute",
                    PAZARSYNC_DEFAULT_RPM,
                    None,
                )?,
                requests_per_day: cx.daily(
                    &z.requests_per_day,
                    "providers.pazarsync.requests_per_day",
                    PAZARSYNC_DEFAULT_PER_DAY,
                )?,
            }),
        };

        Ok(Config {
            file: file.to_path_buf(),
            database,
            lease_ttl,
            sync,
            http,
            bazaardan,
            stokdurumu,
            eticaret,
            pazarsync,
            alerts,
        })
    }

    /// `[database] url` (or its shorthand `[ledger] database`, a SQLite
    /// file), the password file, and the lease's length.
    fn database(
        cx: &Cx<'_>,
        raw: &RawConfig,
        base_dir: &Path,
    ) -> Result<(Database, Duration), ConfigError> {
        let beside = |p: PathBuf| if p.is_relative() { base_dir.join(p) } else { p };
        let d = raw.database.as_ref();
        let lease_ttl = match d.and_then(|d| d.lease_ttl.as_ref()) {
            Some(v) => {
                let ttl = cx.duration(v, "database.lease_ttl")?;
                if ttl < Duration::from_secs(2) {
                    return Err(cx.err(
                        v.span(),
                        "database.lease_ttl",
                        "must be at least 2s (the active daemon renews it three times per lease)",
                    ));
                }
                ttl
            }
            None => DEFAULT_LEASE_TTL,
        };
        let url = d.and_then(|d| d.url.as_ref());
        let database = match (&raw.ledger, url) {
            (Some(l), Some(u)) => {
                return Err(cx.err(
                    u.span(),
                    "database.url",
                    format!(
                        "both `database.url` and `ledger.database` (line {}) name the ledger: keep one",
                        line_of(cx.text, l.database.span().start)
                    ),
                ));
            }
            (Some(l), None) => Database::Sqlite(beside(PathBuf::from(
                cx.string(&l.database, "ledger.database")?,
            ))),
            (None, Some(u)) => {
                let s = cx.string(u, "database.url")?;
                let s = s.trim();
                if let Some(path) = s
                    .strip_prefix("sqlite://")
                    .or_else(|| s.strip_prefix("sqlite:"))
                {
                    if path.is_empty() {
                        return Err(cx.err(u.span(), "database.url", "names no SQLite file: write e.g. \"sqlite:///var/lib/stoksync/ledger.db\""));
                    }
                    Database::Sqlite(beside(PathBuf::from(path)))
                } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                    let parsed = url::Url::parse(s).map_err(|e| {
                        cx.err(u.span(), "database.url", format!("is not a URL: {e}"))
                    })?;
                    if parsed.password().is_some() {
                        return Err(cx.err(
                            u.span(),
                            "database.url",
                            "carries a password: put it in `database.password_file`, PGPASSWORD or ~/.pgpass, never in the config",
                        ));
                    }
                    if parsed.host_str().is_none_or(str::is_empty) {
                        return Err(cx.err(u.span(), "database.url", "names no host"));
                    }
                    let password = match d.and_then(|d| d.password_file.as_ref()) {
                        Some(f) => {
                            let path =
                                beside(PathBuf::from(cx.string(f, "database.password_file")?));
                            let text = std::fs::read_to_string(&path).map_err(|e| {
                                cx.err(
                                    f.span(),
                                    "database.password_file",
                                    format!("cannot read {}: {e}", path.display()),
                                )
                            })?;
                            let pw = text.lines().next().unwrap_or("").trim_end_matches('\r');
                            if pw.is_empty() {
                                return Err(cx.err(
                                    f.span(),
                                    "database.password_file",
                                    format!("{} is empty", path.display()),
                                ));
                            }
                            Some(Secret::new(pw))
                        }
                        None => None,
                    };
                    Database::Postgres {
                        url: s.to_string(),
                        password,
                    }
                } else {
                    return Err(cx.err(
                        u.span(),
                        "database.url",
                        format!("`{s}` is neither sqlite:// nor postgres://"),
                    ));
                }
            }
            (None, None) => {
                return Err(ConfigError {
                    file: cx.file.to_path_buf(),
                    line: Some(1),
                    key: Some("database.url".into()),
                    message: "no ledger named: add `[database] url = \"sqlite:///var/lib/stoksync/ledger.db\"` (or `[ledger] database = \"ledger.db\"`)".into(),
                    also: Vec::new(),
                });
            }
        };
        if matches!(database, Database::Sqlite(_))
            && let Some(f) = d.and_then(|d| d.password_file.as_ref())
        {
            return Err(cx.err(
                f.span(),
                "database.password_file",
                "a SQLite ledger has no password",
            ));
        }
        Ok((database, lease_ttl))
    }

    fn alerts(cx: &Cx<'_>, a: &RawAlerts) -> Result<AlertSettings, ConfigError> {
        let mut out = AlertSettings::default();
        if let Some(v) = &a.webhook {
            let url = cx.secret(v, "alerts.webhook")?;
            // Never echo the URL: it may carry a token.
            let parsed = reqwest::Url::parse(url.expose().trim()).map_err(|e| {
                cx.err(
                    v.span(),
                    "alerts.webhook",
                    format!("is not a URL ({e}); its value is not shown"),
                )
            })?;
            if parsed.scheme() != "http" && parsed.scheme() != "https" {
                return Err(cx.err(
                    v.span(),
                    "alerts.webhook",
                    "must start with http:// or https://",
                ));
            }
            out.webhook = Some(Secret(url.expose().trim().to_string()));
        }
        if let Some(v) = &a.command {
            let mut argv = Vec::new();
            for s in v.get_ref() {
                argv.push(cx.string(s, "alerts.command")?);
            }
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(cx.err(
                    v.span(),
                    "alerts.command",
                    "must name a program, then its arguments, e.g. [\"/usr/local/bin/page-me\", \"--team\", \"stock\"]",
                ));
            }
            out.command = Some(argv);
        }
        if let Some(v) = &a.timeout {
            out.timeout = cx.duration(v, "alerts.timeout")?;
        }
        if let Some(v) = &a.retries {
            out.retries = *v.get_ref();
        }
        if let Some(v) = &a.stall_after {
            out.stall_after = Some(cx.duration(v, "alerts.stall_after")?);
        }
        if let Some(v) = &a.backlog_after {
            out.backlog_after = cx.duration(v, "alerts.backlog_after")?;
        }
        Ok(out)
    }

    /// Every secret of the file, to keep out of what leaves the process
    /// beyond the providers (alert payloads).
    pub fn secrets(&self) -> Vec<&Secret> {
        let mut out: Vec<&Secret> = Vec::new();
        out.extend(self.http.token.as_ref());
        out.extend(self.alerts.webhook.as_ref());
        if let Some(b) = &self.bazaardan {
            out.push(&b.client_secret);
        }
        if let Some(s) = &self.stokdurumu {
            out.push(&s.api_key);
        }
        if let Some(e) = &self.eticaret {
            out.push(&e.api_key);
            out.push(&e.api_secret);
        }
        if let Some(z) = &self.pazarsync {
            out.push(&z.client_secret);
        }
        out.retain(|s| !s.expose().is_empty());
        out
    }

    /// The providers that have a table in the file, in a fixed order.
    pub fn enabled_providers(&self) -> Vec<ProviderName> {
        let mut out = Vec::new();
        if self.bazaardan.is_some() {
            out.push(ProviderName::Bazaardan);
        }
        if self.stokdurumu.is_some() {
            out.push(ProviderName::Stokdurumu);
        }
        if self.eticaret.is_some() {
            out.push(ProviderName::Eticaret);
        }
        if self.pazarsync.is_some() {
            out.push(ProviderName::Pazarsync);
        }
        out
    }
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Cx<'_> {
    fn err(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line_of(self.text, span.start)),
            key: Some(key.to_string()),
            message: message.into(),
            also: Vec::new(),
        }
    }

    /// The string with `${VAR}` substituted.
    fn string(&self, v: &Str, key: &str) -> Result<String, ConfigError> {
        substitute(v.get_ref(), self.env).map_err(|m| self.err(v.span(), key, m))
    }

    /// A credential with `${VAR}` substituted. No error shows its text.
    fn secret(&self, v: &SecretStr, key: &str) -> Result<Secret, ConfigError> {
        match v.get_ref() {
            RawSecret::Text(s) => expand(s, self.env, Quote::Never)
                .map(Secret)
                .map_err(|m| self.err(v.span(), key, m)),
            RawSecret::NotText => Err(self.err(
                v.span(),
                key,
                "must be a string (write it in quotes, or better \"${VAR}\"); its value is not shown",
            )),
        }
    }

    fn duration(&self, v: &Str, key: &str) -> Result<Duration, ConfigError> {
        let s = self.string(v, key)?;
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            self.err(
                v.span(),
                key,
                format!("`{s}` is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\""),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(v.span(), key, "must be longer than zero"));
        }
        Ok(d)
    }

    fn url(&self, v: &Str, key: &str) -> Result<String, ConfigError> {
        let s = self.string(v, key)?;
        let s = s.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&s)
            .map_err(|e| self.err(v.span(), key, format!("`{s}` is not a URL ({e})")))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(self.err(
                v.span(),
                key,
                format!("`{s}` must start with http:// or https://"),
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(self.err(v.span(), key, "must not carry a query or fragment"));
        }
        Ok(s)
    }

    fn rate(
        &self,
        v: &Option<Spanned<u32>>,
        key: &str,
        default: u32,
        max: Option<u32>,
    ) -> Result<u32, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if n == 0 {
            return Err(self.err(v.span(), key, "must be at least 1"));
        }
        if let Some(max) = max
            && n > max
        {
            return Err(self.err(
                v.span(),
                key,
                format!("{n} is above the provider's limit of {max} per minute"),
            ));
        }
        Ok(n)
    }

    fn daily(
        &self,
        v: &Option<Spanned<RawDaily>>,
        key: &str,
        default: u32,
    ) -> Result<Option<u32>, ConfigError> {
        match v.as_ref().map(|s| (s.span(), s.get_ref())) {
            None => Ok(Some(default)),
            Some((span, RawDaily::Count(0))) => Err(self.err(
                span,
                key,
                "must be at least 1 (write \"unlimited\" for plans without a daily quota)",
            )),
            Some((_, RawDaily::Count(n))) => Ok(Some(*n)),
            Some((_, RawDaily::Word(w))) if w == "unlimited" => Ok(None),
            Some((span, RawDaily::Word(w))) => Err(self.err(
                span,
                key,
                format!("`{w}` is neither a number nor \"unlimited\""),
            )),
        }
    }
}

/// The dotted key whose key or value covers `span` (`sync.safety_stock`),
/// so a type error from the TOML parser names the key as our own checks do.
/// `None` when the text is not TOML or the span is not in a key's entry.
fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    // A `[table]`'s own span is its header, not its body, so every entry is
    // visited: the innermost entry whose key or value covers `span` wins.
    fn find(table: &toml::de::DeTable<'_>, span: &std::ops::Range<usize>) -> Option<Vec<String>> {
        let covers = |r: std::ops::Range<usize>| r.start <= span.start && span.end <= r.end;
        for (k, v) in table {
            let inner = match v.get_ref() {
                toml::de::DeValue::Table(t) => find(t, span),
                _ => None,
            };
            let here = inner.is_some() || covers(k.span()) || covers(v.span());
            if here {
                let mut path = vec![k.get_ref().to_string()];
                path.extend(inner.unwrap_or_default());
                return Some(path);
            }
        }
        None
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    find(doc.get_ref(), &span).map(|p| p.join("."))
}

/// The keys whose value is a duration string (`"30s"`).
fn is_duration_key(key: &str) -> bool {
    matches!(
        key,
        "sync.poll_interval"
            | "sync.order_lookback"
            | "sync.request_timeout"
            | "sync.discovery_interval"
            | "alerts.timeout"
            | "alerts.stall_after"
            | "alerts.backlog_after"
    )
}

/// Every `${NAME}` in the file whose variable is not set, in file order,
/// with the span and dotted key of its value: a new deployment learns of
/// all its missing variables at once, not one per try. (`${cred:...}` and
/// malformed references are reported where the value is expanded.)
fn unset_variables(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(std::ops::Range<usize>, String, String)> {
    type Found = Vec<(std::ops::Range<usize>, String, String)>;
    fn visit(
        v: &Spanned<toml::de::DeValue<'_>>,
        path: &mut Vec<String>,
        env: &dyn Fn(&str) -> Option<String>,
        out: &mut Found,
    ) {
        match v.get_ref() {
            toml::de::DeValue::String(s) => {
                for name in variable_names(s) {
                    if env(name).is_none() {
                        out.push((v.span(), path.join("."), name.to_string()));
                    }
                }
            }
            toml::de::DeValue::Table(t) => {
                for (k, v) in t {
                    path.push(k.get_ref().to_string());
                    visit(v, path, env, out);
                    path.pop();
                }
            }
            toml::de::DeValue::Array(a) => {
                for item in a.iter() {
                    visit(item, path, env, out);
                }
            }
            _ => {}
        }
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return Vec::new();
    };
    let mut out = Found::new();
    let mut path = Vec::new();
    for (k, v) in doc.get_ref() {
        path.push(k.get_ref().to_string());
        visit(v, &mut path, env, &mut out);
        path.pop();
    }
    out.sort_by_key(|(span, _, _)| span.start);
    out
}

/// The names of the well-formed `${NAME}` references in `s`, as `expand`
/// reads them (`$$` is a literal `$`; `${cred:...}` is not a variable).
fn variable_names(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else { break };
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                out.push(name);
            }
            rest = &tail[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// `${cred:NAME}`: the file NAME in `$CREDENTIALS_DIRECTORY`, where
/// systemd's `LoadCredential=` puts secrets; one trailing newline is dropped.
fn credential(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    quote: Quote,
) -> Result<String, String> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        return Err(match quote {
            Quote::Allowed => format!("`${{cred:{name}}}` is not a valid credential name"),
            Quote::Never => format!(
                "a `${{cred:...}}` in it is not a valid credential name (letters, digits, `_`, `-`, `.`); {HIDDEN}"
            ),
        });
    }
    let dir = env("CREDENTIALS_DIRECTORY").ok_or_else(|| {
        format!(
            "`${{cred:{name}}}` needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=)"
        )
    })?;
    let path = Path::new(&dir).join(name);
    let mut value = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read credential `{name}` from {}: {e}",
            path.display()
        )
    })?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(format!(
            "credential `{name}` in {} is empty",
            path.display()
        ));
    }
    Ok(value)
}

/// Replaces every `${NAME}` with the variable's value and `${cred:NAME}`
/// with a systemd credential. `$$` is a literal `$`.
fn substitute(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    expand(s, env, Quote::Allowed)
}

/// Whether an error may quote a malformed `${...}`. In a secret written
/// literally, the text between the braces is part of the secret.
#[derive(Clone, Copy)]
enum Quote {
    Allowed,
    Never,
}

/// The end of every error about a secret's text.
const HIDDEN: &str = "write `$$` for a literal `$`; its value is not shown";

fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>, quote: Quote) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or_else(|| match quote {
                Quote::Allowed => "`${` without a closing `}`".to_string(),
                Quote::Never => format!("a `${{` in it has no closing `}}`; {HIDDEN}"),
            })?;
            let name = &tail[..end];
            if let Some(cred) = name.strip_prefix("cred:") {
                out.push_str(&credential(cred, env, quote)?);
                rest = &tail[end + 1..];
                continue;
            }
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(match quote {
                    Quote::Allowed => format!("`${{{name}}}` is not a valid variable name"),
                    Quote::Never => format!(
                        "a `${{...}}` in it is not a valid variable name (letters, digits, `_`, not starting with a digit); {HIDDEN}"
                    ),
                });
            }
            let value =
                env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BZ_SECRET" => Some(r#"s3"cr'et\"#.to_string()),
            "HOST" => Some("example.test".to_string()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/stoksync/stoksync.toml"), &env)
    }

    const MINIMAL: &str = "[ledger]\ndatabase = \"ledger.db\"\n";

    #[test]
    fn the_example_config_parses_and_enables_all_four_providers() {
        let text = include_str!("../config.example.toml");
        let all_set = |_: &str| Some("value".to_string());
        let cfg = Config::parse(text, Path::new("config.example.toml"), &all_set)
            .unwrap_or_else(|e| panic!("config.example.toml: {e}"));
        assert_eq!(cfg.enabled_providers(), ProviderName::ALL.to_vec());
        assert_eq!(cfg.sync.poll_interval, Duration::from_secs(30));
        // Its [alerts] shows the keys; nothing is sent anywhere.
        assert!(cfg.alerts.webhook.is_none() && cfg.alerts.command.is_none());
        assert_eq!(cfg.alerts.timeout, DEFAULT_ALERT_TIMEOUT);
        assert_eq!(cfg.alerts.backlog_after, DEFAULT_BACKLOG_AFTER);
        // Its rules show the keys and change nothing.
        let rules = &cfg.sync.rules;
        assert!(rules.providers.contains_key(&ProviderName::Eticaret));
        for p in ProviderName::ALL {
            let l = rules.limits(p, None);
            assert_eq!(crate::rules::show(17, &l), 17, "{p}: {l:?}");
            assert!(!l.frozen);
        }
    }

    #[test]
    fn defaults_apply_and_relative_database_is_beside_the_file() {
        let cfg = parse(MINIMAL).unwrap();
        assert_eq!(
            cfg.database,
            Database::Sqlite(PathBuf::from("/etc/stoksync/ledger.db"))
        );
        assert_eq!(cfg.sync.rules.safety_stock(), 0);
        assert!(!cfg.sync.restock_returns);
        assert_eq!(cfg.sync.order_lookback, DEFAULT_ORDER_LOOKBACK);
        assert!(cfg.enabled_providers().is_empty());
    }

    #[test]
    fn env_substitution_happens_after_parsing_and_keeps_quotes() {
        let cfg = parse(&format!(
            "{MINIMAL}[providers.bazaardan]\nbase_url = \"https://${{HOST}}/api/partner/v1/\"\nclient_id = \"id\"\nclient_secret = \"${{BZ_SECRET}}\"\n"
        ))
        .unwrap();
        let b = cfg.bazaardan.unwrap();
        assert_eq!(b.base_url, "https://example.test/api/partner/v1");
        assert_eq!(b.client_secret.expose(), r#"s3"cr'et\"#);
        assert_eq!(b.requests_per_minute, 60);
        let debug = format!("{b:?}");
        assert!(!debug.contains("s3"), "secret leaked in Debug: {debug}");
    }

    #[test]
    fn provider_rules_are_read_with_the_line_of_each_key() {
        let cfg = parse(&format!(
            "{MINIMAL}[sync]\nsafety_stock = 2\n[rules.eticaret]\nmax_quantity = 5\npercent = 50\n[rules.stokdurumu]\nfrozen = true\nzero_below = 1\n"
        ))
        .unwrap();
        let r = &cfg.sync.rules;
        assert_eq!(r.safety_stock(), 2);
        assert_eq!(r.base.lines[Field::SafetyStock as usize], 4);
        let e = &r.providers[&ProviderName::Eticaret];
        assert_eq!(e.set.get(Field::MaxQuantity), Some(5));
        assert_eq!(e.set.get(Field::Percent), Some(50));
        assert_eq!(e.set.get(Field::SafetyStock), None);
        assert_eq!(e.lines[Field::Percent as usize], 7);
        let lim = r.limits(ProviderName::Stokdurumu, None);
        assert!(lim.frozen);
        assert_eq!((lim.zero_below, lim.safety_stock), (Some(1), 2));
        assert!(!r.limits(ProviderName::Pazarsync, None).frozen);
    }

    #[test]
    fn bad_rules_name_the_key_and_the_line() {
        let cases: &[(&str, &str, usize)] = &[
            ("[rules.etsy]\nmax_quantity = 5\n", "rules.etsy", 4),
            (
                "[rules.eticaret]\npercent = 101\n",
                "rules.eticaret.percent",
                5,
            ),
            (
                "[rules.eticaret]\nmax_quantity = -1\n",
                "rules.eticaret.max_quantity",
                5,
            ),
            (
                "[rules.pazarsync]\nzero_below = -2\n",
                "rules.pazarsync.zero_below",
                5,
            ),
            ("[rules.pazarsync]\nfrozen = \"yes\"\n", "invalid type", 5),
            ("[rules.pazarsync]\nmax_qty = 1\n", "max_qty", 5),
        ];
        for (rules, needle, line) in cases {
            let text = format!("{MINIMAL}\n{rules}");
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{err:?} should name {needle}");
            assert!(
                err.contains(&format!("stoksync.toml:{line}:")),
                "{err:?} should name line {line}"
            );
        }
    }

    #[test]
    fn the_database_is_a_sqlite_file_or_a_postgres_url_without_a_password() {
        let cfg = parse("[database]\nurl = \"sqlite:///var/lib/s/l.db\"\n").unwrap();
        assert_eq!(
            cfg.database,
            Database::Sqlite(PathBuf::from("/var/lib/s/l.db"))
        );
        assert_eq!(cfg.lease_ttl, DEFAULT_LEASE_TTL);
        let cfg = parse("[database]\nurl = \"sqlite:l.db\"\nlease_ttl = \"5s\"\n").unwrap();
        assert_eq!(
            cfg.database,
            Database::Sqlite(PathBuf::from("/etc/stoksync/l.db"))
        );
        assert_eq!(cfg.lease_ttl, Duration::from_secs(5));
        let cfg = parse("[database]\nurl = \"postgres://s@db:5432/s\"\n").unwrap();
        assert_eq!(
            cfg.database,
            Database::Postgres {
                url: "postgres://s@db:5432/s".into(),
                password: None
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let cfg = parse(&format!(
            "[database]\nurl = \"postgres://s@db/s\"\npassword_file = \"{}\"\n",
            pw.display()
        ))
        .unwrap();
        let Database::Postgres { password, .. } = &cfg.database else {
            panic!()
        };
        assert_eq!(password.as_ref().map(Secret::expose), Some("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"), "never in Debug");
        for (text, key, says) in [
            (
                "[database]\nurl = \"postgres://s:hunter2@db/s\"\n",
                "database.url",
                "carries a password",
            ),
            (
                "[database]\nurl = \"mysql://db/s\"\n",
                "database.url",
                "neither",
            ),
            (
                "[database]\nurl = \"sqlite:x.db\"\nlease_ttl = \"1s\"\n",
                "database.lease_ttl",
                "at least 2s",
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[database]\nurl = \"sqlite:y.db\"\n",
                "database.url",
                "keep one",
            ),
            (
                "[database]\nurl = \"postgres://s@db/s\"\npassword_file = \"/nonexistent/pw\"\n",
                "database.password_file",
                "cannot read",
            ),
            (
                "[database]\nurl = \"sqlite:x.db\"\npassword_file = \"/pw\"\n",
                "database.password_file",
                "no password",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let cases: &[(&str, &str, usize)] = &[
            (
                "[ledger]\ndatabase = \"x.db\"\n[sync]\npoll_intervall = \"30s\"\n",
                "poll_intervall",
                4,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[sync]\npoll_interval = \"soon\"\n",
                "sync.poll_interval",
                4,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[sync]\nsafety_stock = \"two\"\n",
                "invalid type",
                4,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[sync]\nsafety_stock = -1\n",
                "sync.safety_stock",
                4,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n\n[providers.bazaardan]\nbase_url = \"ftp://x\"\nclient_id = \"a\"\nclient_secret = \"b\"\n",
                "providers.bazaardan.base_url",
                5,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[providers.bazaardan]\nbase_url = \"https://x\"\nclient_id = \"a\"\n",
                "client_secret",
                3,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[providers.bazaardan]\nbase_url = \"https://x\"\nclient_id = \"a\"\nclient_secret = \"${NOPE_UNSET}\"\n",
                "NOPE_UNSET",
                6,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[providers.eticaret]\nbase_url = \"https://x\"\napi_key = \"a\"\napi_secret = \"b\"\nrequests_per_minute = 30\n",
                "providers.eticaret.requests_per_minute",
                7,
            ),
            (
                "[ledger]\ndatabase = \"x.db\"\n[providers.stokdurumu]\nbase_url = \"https://x\"\napi_key = \"a\"\nrequests_per_day = \"lots\"\n",
                "providers.stokdurumu.requests_per_day",
                6,
            ),
            ("[sync]\npoll_interval = \"30s\"\n", "ledger", 1),
        ];
        for (text, needle, line) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{err:?} should name {needle}");
            assert!(
                err.contains(&format!("stoksync.toml:{line}:")),
                "{err:?} should name line {line}"
            );
        }
    }

    #[test]
    fn alerts_keys_default_and_bad_ones_name_the_key_and_the_line() {
        let cfg = parse("[ledger]\ndatabase = \"x.db\"\n").unwrap();
        assert!(cfg.alerts.webhook.is_none() && cfg.alerts.command.is_none());
        assert_eq!(cfg.alerts.timeout, DEFAULT_ALERT_TIMEOUT);
        assert_eq!(cfg.alerts.retries, DEFAULT_ALERT_RETRIES);
        assert_eq!(cfg.alerts.stall_after, None);
        assert_eq!(cfg.alerts.backlog_after, Duration::from_secs(600));
        let cfg = parse(
            "[ledger]\ndatabase = \"x.db\"\n[alerts]\nwebhook = \"https://hooks.example/T0KEN\"\ncommand = [\"/bin/pager\", \"--to\", \"ops\"]\ntimeout = \"3s\"\nretries = 0\nstall_after = \"2m\"\nbacklog_after = \"1h\"\n",
        )
        .unwrap();
        assert_eq!(
            cfg.alerts.webhook.as_ref().unwrap().expose(),
            "https://hooks.example/T0KEN"
        );
        assert!(
            !format!("{cfg:?}").contains("T0KEN"),
            "the webhook is a secret"
        );
        assert_eq!(
            cfg.alerts.command.as_deref().unwrap(),
            ["/bin/pager", "--to", "ops"]
        );
        assert_eq!(cfg.alerts.timeout, Duration::from_secs(3));
        assert_eq!(cfg.alerts.retries, 0);
        assert_eq!(cfg.alerts.stall_after, Some(Duration::from_secs(120)));
        assert_eq!(cfg.alerts.backlog_after, Duration::from_secs(3600));
        let head = "[ledger]\ndatabase = \"x.db\"\n[alerts]\n";
        let cases: &[(&str, &str)] = &[
            ("webhook = \"ftp://h/T0KEN\"\n", "alerts.webhook"),
            ("webhook = \"no url T0KEN\"\n", "alerts.webhook"),
            ("command = []\n", "alerts.command"),
            ("command = \"/bin/pager\"\n", "alerts.command"),
            ("timeout = \"soon\"\n", "alerts.timeout"),
            ("timeout = 5\n", "alerts.timeout"),
            ("retries = -1\n", "alerts.retries"),
            ("stall_after = \"0s\"\n", "alerts.stall_after"),
            ("backlog_after = \"later\"\n", "alerts.backlog_after"),
            ("webhok = \"https://x\"\n", "webhok"),
        ];
        for (line, key) in cases {
            let text = format!("{head}{line}");
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(key), "{err:?} should name {key}");
            assert!(
                err.contains("stoksync.toml:4:"),
                "{err:?} should name line 4"
            );
            assert!(!err.contains("T0KEN"), "{err:?} shows the webhook");
        }
    }

    #[test]
    fn unset_variable_error_names_variable_and_key() {
        let err = parse(&format!(
            "{MINIMAL}[providers.stokdurumu]\nbase_url = \"https://x\"\napi_key = \"${{SD_KEY}}\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SD_KEY") && err.contains("providers.stokdurumu.api_key"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_not_only_the_line() {
        let cases: &[(&str, &str, usize)] = &[
            ("[sync]\npoll_interval = 5\n", "`sync.poll_interval`", 4),
            ("[sync]\norder_lookback = 300\n", "`sync.order_lookback`", 4),
            (
                "[sync]\nrestock_returns = \"yes\"\n",
                "`sync.restock_returns`",
                4,
            ),
            ("[http]\nlisten = 8787\n", "`http.listen`", 4),
            (
                "[providers.bazaardan]\nbase_url = \"https://x\"\nclient_id = 42\nclient_secret = \"b\"\n",
                "`providers.bazaardan.client_id`",
                5,
            ),
        ];
        for (tail, key, line) in cases {
            let text = format!("{MINIMAL}{tail}");
            let err = parse(&text).expect_err(&text).to_string();
            assert!(
                err.contains(&format!("stoksync.toml:{line}: {key}: invalid type")),
                "{err:?} should name {key} on line {line}"
            );
        }
        // Dotted keys and inline tables too.
        for text in [
            "ledger.database = \"x.db\"\nsync.poll_interval = 5\n",
            "ledger = { database = \"x.db\" }\nsync = { poll_interval = 5 }\n",
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(
                err.contains("stoksync.toml:2: `sync.poll_interval`: invalid type")
                    && err.contains("e.g. \"30s\""),
                "{err}"
            );
        }
    }

    #[test]
    fn every_unset_variable_is_reported_at_once() {
        let text = format!(
            "{MINIMAL}[providers.bazaardan]\nbase_url = \"https://${{NO_HOST}}/api\"\nclient_id = \"${{BZ_SECRET}}\"\nclient_secret = \"${{NO_BZ}}-$${{LITERAL}}\"\n[providers.eticaret]\nbase_url = \"https://x\"\napi_key = \"${{NO_KEY}}${{NO_KEY2}}\"\napi_secret = \"${{cred:x}}\"\n"
        );
        let err = parse(&text).unwrap_err();
        let shown = err.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 4, "{shown}");
        for (line, (no, key, name)) in lines.iter().zip([
            (4, "providers.bazaardan.base_url", "NO_HOST"),
            (6, "providers.bazaardan.client_secret", "NO_BZ"),
            (9, "providers.eticaret.api_key", "NO_KEY"),
            (9, "providers.eticaret.api_key", "NO_KEY2"),
        ]) {
            assert!(
                line.contains(&format!(
                    "stoksync.toml:{no}: `{key}`: environment variable `{name}` is not set"
                )),
                "{line:?} in {shown}"
            );
        }
        assert!(!shown.contains("LITERAL"), "`$$` is a literal `$`: {shown}");
    }

    #[test]
    fn daily_quota_accepts_unlimited() {
        let cfg = parse(&format!(
            "{MINIMAL}[providers.pazarsync]\nbase_url = \"https://x\"\nclient_id = \"a\"\nclient_secret = \"b\"\nrequests_per_day = \"unlimited\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.pazarsync.unwrap().requests_per_day, None);
    }

    #[test]
    fn substitution_rules() {
        assert_eq!(substitute("a$$b", &env).unwrap(), "a$b");
        assert_eq!(substitute("cost $5", &env).unwrap(), "cost $5");
        assert!(substitute("${HOST", &env).is_err());
        assert!(substitute("${1X}", &env).is_err());
    }

    #[test]
    fn credentials_come_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bz_secret"), "s3cr\"et\n").unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        assert_eq!(substitute("${cred:bz_secret}", &env).unwrap(), "s3cr\"et");
        let e = substitute("${cred:missing}", &env).unwrap_err();
        assert!(e.contains("cannot read credential `missing`"), "{e}");
        assert!(substitute("${cred:../etc}", &env).is_err());
        let none = |_: &str| None;
        let e = substitute("${cred:bz_secret}", &none).unwrap_err();
        assert!(e.contains("CREDENTIALS_DIRECTORY"), "{e}");
    }

    /// Every key whose value is a credential.
    const SECRET_KEYS: &[&str] = &[
        "providers.bazaardan.client_secret",
        "providers.stokdurumu.api_key",
        "providers.eticaret.api_key",
        "providers.eticaret.api_secret",
        "providers.pazarsync.client_secret",
        "http.token",
    ];

    /// A valid config with every provider, where `key` is set to the TOML
    /// text `value`; returns the text and the line of `key`.
    fn config_with(key: &str, value: &str) -> (String, usize) {
        let tables: &[(&str, &[(&str, &str)])] = &[
            ("ledger", &[("database", "\"x.db\"")]),
            ("http", &[("token", "\"0123456789abcdef\"")]),
            (
                "providers.bazaardan",
                &[
                    ("base_url", "\"https://b.test\""),
                    ("client_id", "\"id\""),
                    ("client_secret", "\"s\""),
                ],
            ),
            (
                "providers.stokdurumu",
                &[("base_url", "\"https://s.test\""), ("api_key", "\"k\"")],
            ),
            (
                "providers.eticaret",
                &[
                    ("base_url", "\"https://e.test\""),
                    ("api_key", "\"k\""),
                    ("api_secret", "\"s\""),
                ],
            ),
            (
                "providers.pazarsync",
                &[
                    ("base_url", "\"https://p.test\""),
                    ("client_id", "\"id\""),
                    ("client_secret", "\"s\""),
                ],
            ),
        ];
        let mut lines = Vec::new();
        let mut at = None;
        for (table, fields) in tables {
            lines.push(format!("[{table}]"));
            for (field, default) in *fields {
                if format!("{table}.{field}") == key {
                    lines.push(format!("{field} = {value}"));
                    at = Some(lines.len());
                } else {
                    lines.push(format!("{field} = {default}"));
                }
            }
        }
        (lines.join("\n") + "\n", at.expect("a known secret key"))
    }

    #[test]
    fn a_secret_that_is_not_a_string_is_named_by_key_and_never_shown() {
        let (ok, _) = config_with("http.token", "\"0123456789abcdef\"");
        parse(&ok).expect("the base config is valid");
        // Each TOML type, with the parts of its text that must not appear.
        let values: &[(&str, &[&str])] = &[
            ("987654321", &["987654321"]),
            ("12345.678", &["12345", ".678"]),
            ("true", &["boolean", "`true`"]),
            ("[111222333]", &["111222333", "sequence", "array"]),
            ("{x = 444555666}", &["444555666", "map", "table"]),
            ("1979-05-27T07:32:00Z", &["1979", "07:32", "datetime"]),
        ];
        for key in SECRET_KEYS {
            for (value, hidden) in values {
                let (text, line) = config_with(key, value);
                let err = parse(&text).expect_err(&text).to_string();
                assert!(
                    err.contains(&format!("stoksync.toml:{line}: `{key}`: must be a string")),
                    "{key} = {value}: {err:?} should name the key and line {line}"
                );
                assert!(err.contains("not shown"), "{err:?}");
                assert!(!err.contains("invalid type"), "{key} = {value}: {err:?}");
                for h in *hidden {
                    assert!(!err.contains(h), "{key} = {value}: {err:?} shows {h:?}");
                }
            }
        }
    }

    #[test]
    fn a_malformed_reference_in_a_secret_is_not_echoed() {
        // A literal secret that happens to contain `${`: the text around and
        // inside it is part of the secret.
        for value in [r#""pa55${w0-rd}x""#, r#""pa55${cred:../w0rd}x""#] {
            for key in SECRET_KEYS {
                let (text, line) = config_with(key, value);
                let err = parse(&text).expect_err(&text).to_string();
                assert!(
                    err.contains(&format!("stoksync.toml:{line}: `{key}`")),
                    "{err:?}"
                );
                assert!(
                    !err.contains("w0") && !err.contains("pa55"),
                    "{key} = {value}: {err:?}"
                );
                assert!(
                    err.contains("$$"),
                    "says how to write a literal `$`: {err:?}"
                );
            }
        }
        // Elsewhere the reference is quoted, to help find it.
        let (text, _) = config_with("providers.bazaardan.client_secret", "\"s\"");
        let text = text.replace("client_id = \"id\"", "client_id = \"${w0-rd}\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("${w0-rd}"), "{err:?}");
    }

    #[test]
    fn http_beyond_loopback_needs_a_token() {
        let env = |_: &str| None;
        let base = "[ledger]\ndatabase = \"x.db\"\n";
        let c = Config::parse(base, Path::new("s.toml"), &env).unwrap();
        assert_eq!(c.http.listen.unwrap().to_string(), "127.0.0.1:8787");
        let text = format!("{base}[http]\nlisten = \"0.0.0.0:9000\"\n");
        let e = Config::parse(&text, Path::new("s.toml"), &env).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("http.listen"));
        assert!(e.to_string().contains("http.token"), "{e}");
        let text =
            format!("{base}[http]\nlisten = \"0.0.0.0:9000\"\ntoken = \"0123456789abcdef-long\"\n");
        let c = Config::parse(&text, Path::new("s.toml"), &env).unwrap();
        assert_eq!(c.http.listen.unwrap().port(), 9000);
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let text = format!("{base}[http]\nlisten = \"off\"\n");
        assert!(
            Config::parse(&text, Path::new("s.toml"), &env)
                .unwrap()
                .http
                .listen
                .is_none()
        );
        let text = format!("{base}[http]\nlisten = \"::1\"\n");
        assert_eq!(
            Config::parse(&text, Path::new("s.toml"), &env)
                .unwrap()
                .http
                .listen
                .unwrap()
                .to_string(),
            "[::1]:8787"
        );
    }
}
