//! [`ApiConfig`]: every setting of the REST layer, with OpenAlgo's defaults.
//!
//! A plain struct: the binary maps environment variables onto it (`API_KEY_PEPPER`,
//! `ORDER_RATE_LIMIT`, `SMART_ORDER_RATE_LIMIT`, `API_RATE_LIMIT`, `DATABASE_URL`, ...).

use std::path::PathBuf;
use std::time::Duration;

use oa_events_core::EnvVar;

use crate::ratelimit::RateSpec;
use crate::types::{Action, Exchange, Product};

/// Shortest accepted `API_KEY_PEPPER`, as in OpenAlgo.
pub(crate) const MIN_PEPPER_LEN: usize = 32;

/// Margin leverage, as OpenAlgo's sandbox chooses it (sandbox/fund_manager.py
/// `_get_leverage`): on the equity exchanges (NSE, BSE) by product (NRML as CNC), on the
/// F&O exchanges by instrument (futures; options by side), anything else 1x. Blocked margin
/// = quantity x price / leverage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leverage {
    /// NSE and BSE intraday (upstream `equity_mis_leverage`, default 5x).
    pub equity_mis: f64,
    /// NSE and BSE delivery and NRML (`equity_cnc_leverage`, default 1x).
    pub equity_cnc: f64,
    /// Futures on the F&O exchanges, any product (`futures_leverage`, default 10x).
    pub futures: f64,
    /// Options bought (`option_buy_leverage`, default 1x).
    pub option_buy: f64,
    /// Options sold (`option_sell_leverage`, default 1x).
    pub option_sell: f64,
}

impl Default for Leverage {
    fn default() -> Self {
        Leverage {
            equity_mis: 5.0,
            equity_cnc: 1.0,
            futures: 10.0,
            option_buy: 1.0,
            option_sell: 1.0,
        }
    }
}

/// The exchanges whose contracts are futures or options (upstream utils/constants.py
/// `FNO_EXCHANGES`, CRYPTO included).
const FNO_EXCHANGES: &[&str] = &["NFO", "BFO", "MCX", "CDS", "BCD", "NCDEX", "NCO", "CRYPTO"];

/// What upstream's `is_option` / `is_future` (utils/symbol_utils.py) make of a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instrument {
    Option,
    Future,
    Other,
}

fn instrument(exchange: Exchange, symbol: &str) -> Instrument {
    let exchange = exchange.as_str();
    if !FNO_EXCHANGES.contains(&exchange) {
        return Instrument::Other;
    }
    if symbol.ends_with("CE") || symbol.ends_with("PE") {
        Instrument::Option
    } else if exchange == "CRYPTO" || symbol.ends_with("FUT") {
        // CRYPTO: dated futures and perpetuals alike.
        Instrument::Future
    } else {
        Instrument::Other
    }
}

impl Leverage {
    /// The leverage of an order of `product` for `action` on `exchange:symbol`.
    pub fn of(&self, exchange: Exchange, symbol: &str, product: Product, action: Action) -> f64 {
        if matches!(exchange.as_str(), "NSE" | "BSE") {
            return match product {
                Product::Mis => self.equity_mis,
                Product::Cnc | Product::Nrml => self.equity_cnc,
            };
        }
        match (instrument(exchange, symbol), action) {
            (Instrument::Future, _) => self.futures,
            (Instrument::Option, Action::Buy) => self.option_buy,
            (Instrument::Option, Action::Sell) => self.option_sell,
            (Instrument::Other, _) => 1.0,
        }
    }

    /// True for futures and sold options on the F&O exchanges: the positions a broker's
    /// margin calculator charges SPAN on.
    pub(crate) fn charges_span(exchange: Exchange, symbol: &str, action: Action) -> bool {
        match instrument(exchange, symbol) {
            Instrument::Future => true,
            Instrument::Option => action == Action::Sell,
            Instrument::Other => false,
        }
    }

    fn settings(&self) -> [(&'static str, f64); 5] {
        [
            ("leverage.equity_mis", self.equity_mis),
            ("leverage.equity_cnc", self.equity_cnc),
            ("leverage.futures", self.futures),
            ("leverage.option_buy", self.option_buy),
            ("leverage.option_sell", self.option_sell),
        ]
    }
}

/// Every environment variable of the REST layer, with its default and help. `oa-server`
/// builds its flags from this table and parses them into an [`ApiConfig`]; its tests check
/// that these defaults give `ApiConfig::default()`.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar::secret(
        "API_KEY_PEPPER",
        "server-side secret mixed into API-key hashes (at least 32 characters)",
    ),
    EnvVar::new(
        "DATABASE_URL",
        DEFAULT_DATABASE_URL,
        "where the store lives: sqlite:///relative/path.db, sqlite:////absolute/path.db, or PostgreSQL postgres://user:password@host:port/database",
    ),
    EnvVar::new(
        "ORDER_RATE_LIMIT",
        "10 per second",
        "rate limit of order endpoints per client IP (\"10 per second\", \"600 per minute\", \"5/second\")",
    ),
    EnvVar::new(
        "SMART_ORDER_RATE_LIMIT",
        "10 per second",
        "rate limit of placesmartorder per client IP",
    ),
    EnvVar::new(
        "API_RATE_LIMIT",
        "50 per second",
        "rate limit of every other endpoint per client IP",
    ),
    EnvVar::new(
        "OA_SANDBOX_STARTING_FUNDS",
        "10000000",
        "virtual funds of each sandbox and simulator account",
    ),
    EnvVar::new(
        "OA_SIMULATOR_ACK_LATENCY_MS",
        "0",
        "simulator broker: delay before acknowledging an order action, in milliseconds",
    ),
    EnvVar::new(
        "OA_SIMULATOR_REJECTION_RATE",
        "0",
        "simulator broker: fraction of new orders rejected (0 to 1), for fault tests",
    ),
    EnvVar::new(
        "OA_DEFAULT_USER",
        "admin",
        "user created on first start when the store has none; its key is printed once",
    ),
    EnvVar::new(
        "OA_DEFAULT_ANALYZE_MODE",
        "false",
        "whether new users start in analyzer (sandbox) mode: true or false",
    ),
    EnvVar::new(
        "OA_STORE_SYNC",
        "full",
        "store commit durability: full (an acknowledged order survives a power loss) or normal (survives a process crash only; faster on slow disks)",
    ),
    EnvVar::new(
        "OA_HISTORY_RECORDING",
        "true",
        "record 1-minute bars from every tick into the store (served by history): true or false",
    ),
    EnvVar::new(
        "OA_HISTORY_RETENTION_DAYS",
        "30",
        "days of 1-minute bars kept; older bars are deleted every hour (0 keeps them forever)",
    ),
    EnvVar::new(
        "OA_MARKET_CALENDAR",
        "",
        "exchange calendar file (JSON) for market/holidays and market/timings; empty: the bundled calendar",
    ),
    EnvVar::new(
        "OA_HISTORY_BACKFILL_DAYS",
        "5",
        "with the simulated feed: trading days of 1-minute bars generated at start for instruments without history (0: none)",
    ),
];

/// Settings of the candle history (`history`, `ticker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Record 1-minute bars from every tick (`OA_HISTORY_RECORDING`).
    pub recording: bool,
    /// Days of bars kept, 0 for ever (`OA_HISTORY_RETENTION_DAYS`).
    pub retention_days: u32,
    /// Trading days the simulated feed backfills at start (`OA_HISTORY_BACKFILL_DAYS`); the
    /// server acts on it, the library only carries it.
    pub backfill_days: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            recording: true,
            retention_days: 30,
            backfill_days: 5,
        }
    }
}

/// Default of `DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:///db/oa.db";

/// Fault injection for the `simulator` broker (the live-mode stand-in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatorConfig {
    /// Delay before the simulated broker acknowledges an order action (default 0).
    pub ack_latency: Duration,
    /// Fraction of new orders the simulated broker rejects, 0.0..=1.0 (default 0).
    pub rejection_rate: f64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            ack_latency: Duration::ZERO,
            rejection_rate: 0.0,
        }
    }
}

/// Every setting of the REST layer. `ApiConfig::default()` is OpenAlgo's defaults except the
/// pepper, which has none and must be set.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// `DATABASE_URL`: `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`
    /// (default [`DEFAULT_DATABASE_URL`]), or `postgres://user:password@host:port/database`
    /// (`postgresql://` too) for the PostgreSQL store.
    pub database_url: String,
    /// `API_KEY_PEPPER`: secret mixed into every API-key hash; at least 32 characters.
    pub api_key_pepper: String,
    /// `ORDER_RATE_LIMIT` (default "10 per second"): order endpoints.
    pub order_rate_limit: String,
    /// `SMART_ORDER_RATE_LIMIT` (default "10 per second"): placesmartorder.
    pub smart_order_rate_limit: String,
    /// `API_RATE_LIMIT` (default "50 per second"): every other endpoint.
    pub api_rate_limit: String,
    /// Virtual funds of each sandbox and simulator account (default 1 crore = 10,000,000).
    pub starting_funds: f64,
    /// Margin leverage per product.
    pub leverage: Leverage,
    /// Fault injection of the simulator broker.
    pub simulator: SimulatorConfig,
    /// Largest accepted request body in bytes (default 64 KiB); larger ones get 413.
    pub body_limit_bytes: usize,
    /// Verified API keys remembered (default 10,000).
    pub key_cache_capacity: usize,
    /// How long a verified key is remembered (default 5 minutes). Revocation clears it at once.
    pub key_cache_ttl: Duration,
    /// When true, the envelopes of each order action are written to the `outbox` table in the
    /// same transaction as the order change (for the Kafka relay). Default false.
    pub durable_outbox: bool,
    /// The user created on first start when the store has none (default "admin").
    pub default_user: String,
    /// Whether users start in analyzer (sandbox) mode (default false: live, as upstream).
    pub default_analyze_mode: bool,
    /// Most pending commands of the order engine's queue (default 8192).
    pub engine_queue_capacity: usize,
    /// `OA_STORE_SYNC`: how hard a commit waits for the disk (default `full`: an
    /// acknowledged order survives a power loss; `normal` survives a process crash only).
    pub store_sync: crate::store::StoreSync,
    /// Candle history: recording, retention, backfill.
    pub history: HistoryConfig,
    /// `OA_MARKET_CALENDAR`: the exchange calendar file of `market/holidays` and
    /// `market/timings`; `None` (default): the bundled calendar.
    pub market_calendar: Option<PathBuf>,
    /// Start the order engine as a standby `core`: writes are refused until it leads
    /// ([`crate::leadership`]). Default false.
    pub standby: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            database_url: DEFAULT_DATABASE_URL.to_string(),
            api_key_pepper: String::new(),
            order_rate_limit: "10 per second".to_string(),
            smart_order_rate_limit: "10 per second".to_string(),
            api_rate_limit: "50 per second".to_string(),
            starting_funds: 10_000_000.0,
            leverage: Leverage::default(),
            simulator: SimulatorConfig::default(),
            body_limit_bytes: 64 * 1024,
            key_cache_capacity: 10_000,
            key_cache_ttl: Duration::from_secs(300),
            durable_outbox: false,
            default_user: "admin".to_string(),
            default_analyze_mode: false,
            engine_queue_capacity: 8192,
            store_sync: crate::store::StoreSync::Full,
            history: HistoryConfig::default(),
            market_calendar: None,
            standby: false,
        }
    }
}

/// A setting that cannot be used. The message names the setting and what is expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The pepper is shorter than `MIN_PEPPER_LEN`.
    #[error("API_KEY_PEPPER must be at least {MIN_PEPPER_LEN} characters (got {0})")]
    PepperTooShort(usize),
    /// `DATABASE_URL` is not a supported SQLite URL.
    #[error(
        "DATABASE_URL {url:?} is not supported: {reason}; expected sqlite:///relative/path.db, sqlite:////absolute/path.db or postgres://user:password@host:port/database"
    )]
    DatabaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A rate-limit string could not be parsed.
    #[error(
        "{setting}={value:?} is not a valid rate limit: {reason} (expected e.g. \"10 per second\", \"100 per minute\", \"5/second\")"
    )]
    RateLimit {
        /// The setting name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `OA_MARKET_CALENDAR` names a file that cannot be read or is not a calendar.
    #[error("OA_MARKET_CALENDAR: {0}")]
    MarketCalendar(String),
    /// A numeric setting is out of range.
    #[error("{setting} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The setting name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
}

/// The three parsed rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Order endpoints.
    pub order: RateSpec,
    /// placesmartorder.
    pub smart_order: RateSpec,
    /// Everything else.
    pub api: RateSpec,
}

impl ApiConfig {
    /// Checks every setting, returning the parsed rate limits and database path.
    pub fn validate(&self) -> Result<(RateLimits, crate::store::StoreLocation), ConfigError> {
        let pepper_len = self.api_key_pepper.chars().count();
        if pepper_len < MIN_PEPPER_LEN {
            return Err(ConfigError::PepperTooShort(pepper_len));
        }
        let limits = RateLimits {
            order: crate::ratelimit::parse_setting("ORDER_RATE_LIMIT", &self.order_rate_limit)?,
            smart_order: crate::ratelimit::parse_setting(
                "SMART_ORDER_RATE_LIMIT",
                &self.smart_order_rate_limit,
            )?,
            api: crate::ratelimit::parse_setting("API_RATE_LIMIT", &self.api_rate_limit)?,
        };
        if !(self.starting_funds.is_finite() && self.starting_funds > 0.0) {
            return Err(ConfigError::OutOfRange {
                setting: "starting_funds",
                value: self.starting_funds.to_string(),
                expected: "a positive amount",
            });
        }
        for (setting, value) in self.leverage.settings() {
            if !(value.is_finite() && value >= 1.0) {
                return Err(ConfigError::OutOfRange {
                    setting,
                    value: value.to_string(),
                    expected: "a leverage of at least 1",
                });
            }
        }
        let rate = self.simulator.rejection_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(ConfigError::OutOfRange {
                setting: "simulator.rejection_rate",
                value: rate.to_string(),
                expected: "a fraction between 0 and 1",
            });
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::OutOfRange {
                setting: "body_limit_bytes",
                value: self.body_limit_bytes.to_string(),
                expected: "at least 1024 bytes",
            });
        }
        let location = parse_database_url(&self.database_url)?;
        Ok((limits, location))
    }
}

/// Parses OpenAlgo's `DATABASE_URL`: `sqlite:///db/openalgo.db` is the relative path
/// `db/openalgo.db`; `sqlite:////abs/path.db` is the absolute path `/abs/path.db`;
/// `postgres://...` (or `postgresql://...`, libpq's URL form) is a PostgreSQL database.
pub fn parse_database_url(url: &str) -> Result<crate::store::StoreLocation, ConfigError> {
    let error = |reason: &str| ConfigError::DatabaseUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(error("missing scheme"));
    };
    if scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql") {
        if rest.is_empty() || rest.starts_with('/') && rest.len() == 1 {
            return Err(error("a PostgreSQL URL needs a host or a database"));
        }
        return Ok(crate::store::StoreLocation::Postgres(url.to_string()));
    }
    if !scheme.eq_ignore_ascii_case("sqlite") {
        return Err(error(&format!(
            "scheme {scheme:?} is not supported (only sqlite and postgres)"
        )));
    }
    // SQLAlchemy form: sqlite:// + "/" + path, where the path is absolute when it starts
    // with another "/".
    let Some(path) = rest.strip_prefix('/') else {
        return Err(error("expected three slashes after sqlite:"));
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(error(
            "a file path is required (in-memory databases are not supported)",
        ));
    }
    Ok(crate::store::StoreLocation::Sqlite(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_follow_sqlalchemy() {
        assert_eq!(
            parse_database_url("sqlite:///db/openalgo.db").unwrap(),
            crate::store::StoreLocation::Sqlite(PathBuf::from("db/openalgo.db"))
        );
        assert_eq!(
            parse_database_url("sqlite:////var/lib/oa.db").unwrap(),
            crate::store::StoreLocation::Sqlite(PathBuf::from("/var/lib/oa.db"))
        );
        assert_eq!(
            parse_database_url("postgresql://localhost/oa").unwrap(),
            crate::store::StoreLocation::Postgres("postgresql://localhost/oa".to_string())
        );
        assert!(matches!(
            parse_database_url("postgres://oa:pw@db:5432/oa?sslmode=disable").unwrap(),
            crate::store::StoreLocation::Postgres(_)
        ));
        assert!(parse_database_url("postgres://").is_err());
        let error = parse_database_url("mysql://localhost/oa")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("mysql")
                && error.contains("sqlite:///")
                && error.contains("postgres://"),
            "{error}"
        );
        assert!(parse_database_url("db/openalgo.db").is_err());
        assert!(parse_database_url("sqlite:///").is_err());
    }

    #[test]
    fn validate_checks_the_pepper_and_ranges() {
        let mut config = ApiConfig::default();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::PepperTooShort(0))
        ));
        config.api_key_pepper = "p".repeat(32);
        assert!(config.validate().is_ok());
        config.simulator.rejection_rate = 2.0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("rejection_rate")
        );
        config.simulator.rejection_rate = 0.0;
        config.api_rate_limit = "lots".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("API_RATE_LIMIT")
        );
    }
}
