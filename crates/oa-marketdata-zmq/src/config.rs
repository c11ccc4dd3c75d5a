//! [`MarketDataConfig`]: every setting of the market-data layer with its default. A plain
//! struct: the binary maps environment variables (named in each field's doc) onto it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use oa_events_core::{EnvReader, EnvVar};

/// Which feed adapter the server starts (`OA_FEED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedKind {
    /// The seeded random-walk market (default).
    #[default]
    Simulated,
    /// A recorded tick file.
    Replay,
    /// No bundled feed: only external publishers.
    None,
}

/// A feed kind that is not simulated, replay or none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a feed: expected simulated, replay or none")]
pub struct InvalidFeedKind {
    /// The rejected value.
    pub value: String,
}

impl FromStr for FeedKind {
    type Err = InvalidFeedKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "simulated" | "sim" | "simulator" => Ok(FeedKind::Simulated),
            "replay" => Ok(FeedKind::Replay),
            "none" | "off" | "" => Ok(FeedKind::None),
            _ => Err(InvalidFeedKind {
                value: text.to_string(),
            }),
        }
    }
}

/// Every setting of the market-data layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketDataConfig {
    /// `ZMQ_HOST` (127.0.0.1): where the bus SUB socket binds.
    pub zmq_host: String,
    /// `ZMQ_PORT` (5555); 0 picks a free port.
    pub zmq_port: u16,
    /// `OA_ZMQ_HWM` (100000): receive high-water mark of the bus and send HWM of bundled feeds.
    pub zmq_hwm: i32,
    /// `OA_ZMQ_MAX_FRAME_BYTES` (65536): larger frames are dropped as `oversized`.
    pub zmq_max_frame_bytes: usize,
    /// `OA_ZMQ_CHANNEL_CAPACITY` (65536): ticks buffered between the bus thread and the dispatcher.
    pub bus_channel_capacity: usize,
    /// `WEBSOCKET_HOST` (127.0.0.1).
    pub websocket_host: String,
    /// `WEBSOCKET_PORT` (8765); 0 picks a free port.
    pub websocket_port: u16,
    /// `WS_AUTH_GRACE_SECONDS` (15): unauthenticated connections are closed with 4401.
    pub ws_auth_grace: Duration,
    /// `WS_MAX_QUEUE` (1024): ticks per client send queue before conflation.
    pub ws_max_queue: usize,
    /// `WS_PING_INTERVAL` (20 s): protocol-level keepalive pings.
    pub ws_ping_interval: Duration,
    /// `WS_PING_TIMEOUT` (20 s): close a client silent this long after a ping was due.
    pub ws_ping_timeout: Duration,
    /// `MAX_SYMBOLS_PER_WEBSOCKET` (1000).
    pub max_symbols_per_websocket: usize,
    /// `MAX_WEBSOCKET_CONNECTIONS` (3): authenticated WebSocket connections per user; with the
    /// above, a user's instrument capacity.
    pub max_websocket_connections: usize,
    /// `OA_WS_MAX_MESSAGE_BYTES` (65536): largest client frame and message.
    pub ws_max_message_bytes: usize,
    /// `OA_WS_MAX_CONNECTIONS` (10000): WebSocket connections in total.
    pub ws_max_connections: usize,
    /// `OA_WS_MAX_CONNECTIONS_PER_IP` (100): WebSocket connections from one client IP.
    pub ws_max_connections_per_ip: usize,
    /// `OA_LOGIN_RATE_LIMIT` (10 per second): `authenticate` requests per client IP.
    pub login_rate_limit: oa_net::RateSpec,
    /// `OA_FEED` (simulated): simulated | replay | none.
    pub feed: FeedKind,
    /// `OA_FEED_SYMBOLS` (empty = the whole symbol master): `EXCHANGE:SYMBOL` list.
    pub feed_symbols: Vec<String>,
    /// `OA_FEED_TICKS_PER_SECOND` (50): simulated ticks per second across all symbols.
    pub feed_ticks_per_second: f64,
    /// `OA_FEED_SEED` (42): simulated market seed.
    pub feed_seed: u64,
    /// `OA_REPLAY_FILE` (required with OA_FEED=replay): JSON lines or `.csv`.
    pub replay_file: Option<PathBuf>,
    /// `OA_REPLAY_SPEED` (1.0): 1 = recorded pace, 0 = as fast as possible.
    pub replay_speed: f64,
    /// `OA_REPLAY_REPEAT` (false): start over at the end.
    pub replay_repeat: bool,
    /// `OA_SYMBOL_MASTER_CSV` (unset = bundled universe).
    pub symbol_master_csv: Option<PathBuf>,
}

impl Default for MarketDataConfig {
    fn default() -> Self {
        MarketDataConfig {
            zmq_host: "127.0.0.1".to_string(),
            zmq_port: 5555,
            zmq_hwm: crate::bus::DEFAULT_HWM,
            zmq_max_frame_bytes: crate::bus::DEFAULT_MAX_FRAME_BYTES,
            bus_channel_capacity: 65_536,
            websocket_host: "127.0.0.1".to_string(),
            websocket_port: 8765,
            ws_auth_grace: Duration::from_secs(15),
            ws_max_queue: 1024,
            ws_ping_interval: Duration::from_secs(20),
            ws_ping_timeout: Duration::from_secs(20),
            max_symbols_per_websocket: 1000,
            max_websocket_connections: 3,
            ws_max_message_bytes: 64 * 1024,
            ws_max_connections: crate::ws::DEFAULT_CONNECTION_LIMITS.max_total,
            ws_max_connections_per_ip: crate::ws::DEFAULT_CONNECTION_LIMITS.max_per_ip,
            login_rate_limit: crate::ws::DEFAULT_LOGIN_RATE,
            feed: FeedKind::Simulated,
            feed_symbols: Vec::new(),
            feed_ticks_per_second: 50.0,
            feed_seed: 42,
            replay_file: None,
            replay_speed: 1.0,
            replay_repeat: false,
            symbol_master_csv: None,
        }
    }
}

impl MarketDataConfig {
    /// Ephemeral ports on loopback, no feed: for tests.
    pub fn ephemeral() -> Self {
        MarketDataConfig {
            zmq_port: 0,
            websocket_port: 0,
            feed: FeedKind::None,
            ..MarketDataConfig::default()
        }
    }

    /// The WebSocket listen address.
    pub fn websocket_addr(&self) -> Result<SocketAddr, crate::MarketDataError> {
        let ip: IpAddr = match self.websocket_host.as_str() {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            host => host.parse().map_err(|_| crate::MarketDataError::Config {
                setting: "WEBSOCKET_HOST",
                message: format!("{host:?} is not an IP address (use 127.0.0.1, 0.0.0.0 or ::)"),
            })?,
        };
        Ok(SocketAddr::new(ip, self.websocket_port))
    }

    /// The bus bind endpoint.
    pub fn zmq_endpoint(&self) -> String {
        crate::bus::tcp_endpoint(&self.zmq_host, self.zmq_port)
    }
}

/// Every environment variable [`MarketDataConfig::from_lookup`] reads, with its default and
/// help: `MarketDataConfig::default()` is what these defaults parse to (a test checks it), and
/// `oa-server` builds its flags from this table.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar::new(
        "ZMQ_HOST",
        "127.0.0.1",
        "market-data bus (ZeroMQ SUB) bind host",
    ),
    EnvVar::new(
        "ZMQ_PORT",
        "5555",
        "market-data bus bind port (0 = a free port)",
    ),
    EnvVar::new(
        "OA_ZMQ_HWM",
        "100000",
        "ZeroMQ high-water mark of the bus and the bundled feeds",
    ),
    EnvVar::new(
        "OA_ZMQ_MAX_FRAME_BYTES",
        "65536",
        "larger bus frames are dropped as oversized",
    ),
    EnvVar::new(
        "OA_ZMQ_CHANNEL_CAPACITY",
        "65536",
        "ticks buffered between the bus thread and the dispatcher",
    ),
    EnvVar::new(
        "WEBSOCKET_HOST",
        "127.0.0.1",
        "WebSocket market-data listen IP",
    ),
    EnvVar::new(
        "WEBSOCKET_PORT",
        "8765",
        "WebSocket market-data port (0 = a free port)",
    ),
    EnvVar::new(
        "WS_AUTH_GRACE_SECONDS",
        "15",
        "close unauthenticated WebSocket clients (4401) after this",
    ),
    EnvVar::new(
        "WS_MAX_QUEUE",
        "1024",
        "ticks per WebSocket client before conflation",
    ),
    EnvVar::new(
        "WS_PING_INTERVAL",
        "20",
        "seconds between WebSocket keepalive pings",
    ),
    EnvVar::new(
        "WS_PING_TIMEOUT",
        "20",
        "seconds of silence after a due ping before closing",
    ),
    EnvVar::new(
        "MAX_SYMBOLS_PER_WEBSOCKET",
        "1000",
        "with MAX_WEBSOCKET_CONNECTIONS: a user's instrument capacity",
    ),
    EnvVar::new(
        "MAX_WEBSOCKET_CONNECTIONS",
        "3",
        "authenticated WebSocket connections per user (times MAX_SYMBOLS_PER_WEBSOCKET: the user's instrument capacity)",
    ),
    EnvVar::new(
        "OA_WS_MAX_MESSAGE_BYTES",
        "65536",
        "largest WebSocket frame and message accepted from a client",
    ),
    EnvVar::new(
        "OA_WS_MAX_CONNECTIONS",
        "10000",
        "WebSocket connections in total; more are refused with 503",
    ),
    EnvVar::new(
        "OA_WS_MAX_CONNECTIONS_PER_IP",
        "100",
        "WebSocket connections from one client IP; more are refused with 503",
    ),
    EnvVar::new(
        "OA_LOGIN_RATE_LIMIT",
        "10 per second",
        "WebSocket and Socket.IO login attempts per client IP",
    ),
    EnvVar::new(
        "OA_FEED",
        "simulated",
        "bundled feed: simulated, replay or none",
    ),
    EnvVar::new(
        "OA_FEED_SYMBOLS",
        "",
        "EXCHANGE:SYMBOL list for the simulated feed (empty = symbol master)",
    ),
    EnvVar::new(
        "OA_FEED_TICKS_PER_SECOND",
        "50",
        "simulated ticks per second, all symbols together",
    ),
    EnvVar::new(
        "OA_FEED_SEED",
        "42",
        "simulated market seed (same seed, same prices)",
    ),
    EnvVar::new(
        "OA_REPLAY_FILE",
        "",
        "tick file for OA_FEED=replay (JSON lines, or .csv)",
    ),
    EnvVar::new(
        "OA_REPLAY_SPEED",
        "1",
        "replay speed factor (0 = as fast as possible)",
    ),
    EnvVar::new("OA_REPLAY_REPEAT", "false", "replay the file in a loop"),
    EnvVar::new(
        "OA_SYMBOL_MASTER_CSV",
        "",
        "symbol master CSV (empty = the bundled universe)",
    ),
];

fn parse_setting<T: FromStr>(
    setting: &'static str,
    value: &str,
    expected: &str,
) -> Result<T, crate::MarketDataError> {
    value
        .trim()
        .parse()
        .map_err(|_| crate::MarketDataError::Config {
            setting,
            message: format!("{value:?} is not {expected}"),
        })
}

fn parse_bool(setting: &'static str, value: &str) -> Result<bool, crate::MarketDataError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(crate::MarketDataError::Config {
            setting,
            message: format!("{value:?} is not a boolean (true or false)"),
        }),
    }
}

/// `value` as seconds (fractions allowed).
fn parse_seconds(setting: &'static str, value: &str) -> Result<Duration, crate::MarketDataError> {
    parse_setting::<f64>(setting, value, "a number of seconds").and_then(|secs| {
        Duration::try_from_secs_f64(secs).map_err(|_| crate::MarketDataError::Config {
            setting,
            message: format!("{value:?} is not a number of seconds >= 0"),
        })
    })
}

/// `value` as a connection count of at least 1.
fn parse_connections(setting: &'static str, value: &str) -> Result<usize, crate::MarketDataError> {
    let expected = "a connection count";
    parse_setting::<usize>(setting, value, expected).and_then(|count| {
        if count == 0 {
            Err(crate::MarketDataError::Config {
                setting,
                message: format!("{value:?} is not {expected} (at least 1)"),
            })
        } else {
            Ok(count)
        }
    })
}

/// `value` as a WebSocket message size of at least 1024 bytes.
fn parse_message_bytes(
    setting: &'static str,
    value: &str,
) -> Result<usize, crate::MarketDataError> {
    let bytes = parse_setting(setting, value, "a size in bytes")?;
    if bytes < 1024 {
        return Err(crate::MarketDataError::Config {
            setting,
            message: format!("{value:?} is too small: expected at least 1024 bytes"),
        });
    }
    Ok(bytes)
}

/// `value` as a positive, finite tick rate.
fn parse_tick_rate(setting: &'static str, value: &str) -> Result<f64, crate::MarketDataError> {
    let expected = "a positive number of ticks per second";
    parse_setting::<f64>(setting, value, expected).and_then(|rate| {
        if rate.is_finite() && rate > 0.0 {
            Ok(rate)
        } else {
            Err(crate::MarketDataError::Config {
                setting,
                message: format!("{value:?} is not {expected}"),
            })
        }
    })
}

/// `value` trimmed, as text.
fn trimmed(_: &'static str, value: &str) -> Result<String, crate::MarketDataError> {
    Ok(value.trim().to_string())
}

/// `value` as a comma list, blank entries left out.
fn comma_list(_: &'static str, value: &str) -> Result<Vec<String>, crate::MarketDataError> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect())
}

/// `value` trimmed, as a path.
fn path(_: &'static str, value: &str) -> Result<Option<PathBuf>, crate::MarketDataError> {
    Ok(Some(PathBuf::from(value.trim())))
}

/// Reads a value with [`FromStr`]; `expected` describes a valid one in errors.
fn parsed<T: FromStr>(
    expected: &str,
) -> impl FnOnce(&'static str, &str) -> Result<T, crate::MarketDataError> + '_ {
    move |setting, value| parse_setting(setting, value, expected)
}

impl MarketDataConfig {
    /// Builds the config from variables named as in [`ENV_VARS`], looked up with `lookup`
    /// (for example `|name| std::env::var(name).ok()`); unset or empty ones keep their
    /// default. Errors name the variable and the allowed values.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::MarketDataError> {
        let env = EnvReader::new(lookup);
        let mut config = MarketDataConfig::default();
        let port = "a port number (0-65535)";
        env.set(&mut config.zmq_host, "ZMQ_HOST", trimmed)?;
        env.set(&mut config.zmq_port, "ZMQ_PORT", parsed(port))?;
        env.set(&mut config.zmq_hwm, "OA_ZMQ_HWM", parsed("a message count"))?;
        env.set(
            &mut config.zmq_max_frame_bytes,
            "OA_ZMQ_MAX_FRAME_BYTES",
            parsed("a size in bytes"),
        )?;
        env.set(
            &mut config.bus_channel_capacity,
            "OA_ZMQ_CHANNEL_CAPACITY",
            parsed("a tick count"),
        )?;
        env.set(&mut config.websocket_host, "WEBSOCKET_HOST", trimmed)?;
        env.set(&mut config.websocket_port, "WEBSOCKET_PORT", parsed(port))?;
        env.set(
            &mut config.ws_auth_grace,
            "WS_AUTH_GRACE_SECONDS",
            parse_seconds,
        )?;
        env.set(
            &mut config.ws_max_queue,
            "WS_MAX_QUEUE",
            parsed("a tick count"),
        )?;
        env.set(
            &mut config.ws_ping_interval,
            "WS_PING_INTERVAL",
            parse_seconds,
        )?;
        env.set(
            &mut config.ws_ping_timeout,
            "WS_PING_TIMEOUT",
            parse_seconds,
        )?;
        env.set(
            &mut config.max_symbols_per_websocket,
            "MAX_SYMBOLS_PER_WEBSOCKET",
            parsed("a symbol count"),
        )?;
        env.set(
            &mut config.max_websocket_connections,
            "MAX_WEBSOCKET_CONNECTIONS",
            parse_connections,
        )?;
        env.set(
            &mut config.ws_max_message_bytes,
            "OA_WS_MAX_MESSAGE_BYTES",
            parse_message_bytes,
        )?;
        env.set(
            &mut config.ws_max_connections,
            "OA_WS_MAX_CONNECTIONS",
            parse_connections,
        )?;
        env.set(
            &mut config.ws_max_connections_per_ip,
            "OA_WS_MAX_CONNECTIONS_PER_IP",
            parse_connections,
        )?;
        env.set(
            &mut config.login_rate_limit,
            "OA_LOGIN_RATE_LIMIT",
            |setting, value| {
                oa_net::RateSpec::parse(value).map_err(|reason| crate::MarketDataError::Config {
                    setting,
                    message: format!("{value:?} is not a rate such as \"10 per second\": {reason}"),
                })
            },
        )?;
        env.set(&mut config.feed, "OA_FEED", |setting, value| {
            value
                .parse()
                .map_err(|error: InvalidFeedKind| crate::MarketDataError::Config {
                    setting,
                    message: error.to_string(),
                })
        })?;
        env.set(&mut config.feed_symbols, "OA_FEED_SYMBOLS", comma_list)?;
        env.set(
            &mut config.feed_ticks_per_second,
            "OA_FEED_TICKS_PER_SECOND",
            parse_tick_rate,
        )?;
        env.set(
            &mut config.feed_seed,
            "OA_FEED_SEED",
            parsed("an unsigned integer"),
        )?;
        env.set(&mut config.replay_file, "OA_REPLAY_FILE", path)?;
        let speed = "a speed factor >= 0 (1 = recorded pace)";
        env.set(&mut config.replay_speed, "OA_REPLAY_SPEED", parsed(speed))?;
        env.set(&mut config.replay_repeat, "OA_REPLAY_REPEAT", parse_bool)?;
        env.set(&mut config.symbol_master_csv, "OA_SYMBOL_MASTER_CSV", path)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lookup_reads_every_variable_and_names_bad_ones() {
        use std::collections::HashMap;
        let env: HashMap<&str, &str> = HashMap::from([
            ("ZMQ_PORT", "0"),
            ("WEBSOCKET_PORT", "9000"),
            ("WS_AUTH_GRACE_SECONDS", "2.5"),
            ("MAX_WEBSOCKET_CONNECTIONS", "5"),
            ("OA_FEED", "replay"),
            ("OA_FEED_SYMBOLS", "NSE:SBIN, NSE_INDEX:NIFTY"),
            ("OA_REPLAY_FILE", "/tmp/ticks.jsonl"),
            ("OA_REPLAY_REPEAT", "true"),
            ("WS_PING_INTERVAL", ""),
        ]);
        let config =
            MarketDataConfig::from_lookup(|name| env.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(config.zmq_port, 0);
        assert_eq!(config.websocket_port, 9000);
        assert_eq!(config.ws_auth_grace, Duration::from_millis(2500));
        assert_eq!(config.max_websocket_connections, 5);
        assert_eq!(config.feed, FeedKind::Replay);
        assert_eq!(config.feed_symbols, ["NSE:SBIN", "NSE_INDEX:NIFTY"]);
        assert!(config.replay_repeat);
        assert_eq!(config.ws_ping_interval, Duration::from_secs(20));
        assert_eq!(
            MarketDataConfig::from_lookup(|_| None).unwrap(),
            MarketDataConfig::default()
        );
        for (name, value) in [
            ("ZMQ_PORT", "70000"),
            ("OA_FEED", "kafka"),
            ("WS_PING_TIMEOUT", "-1"),
            ("OA_FEED_TICKS_PER_SECOND", "0"),
            ("OA_REPLAY_REPEAT", "maybe"),
            ("OA_WS_MAX_CONNECTIONS_PER_IP", "0"),
            ("OA_LOGIN_RATE_LIMIT", "10 per fortnight"),
            ("MAX_WEBSOCKET_CONNECTIONS", "0"),
        ] {
            let error = MarketDataConfig::from_lookup(|n| (n == name).then(|| value.to_string()))
                .unwrap_err()
                .to_string();
            assert!(error.contains(name), "{error}");
        }
        assert_eq!(ENV_VARS.len(), 25);
    }

    #[test]
    fn the_defaults_are_what_env_vars_says() {
        let table_default =
            |name: &str| oa_events_core::env_var::default_of(ENV_VARS, name).map(str::to_string);
        assert_eq!(
            MarketDataConfig::from_lookup(table_default).unwrap(),
            MarketDataConfig::default()
        );
    }

    #[test]
    fn feed_kind_parses_and_names_allowed_values() {
        assert_eq!(
            "Simulated".parse::<FeedKind>().unwrap(),
            FeedKind::Simulated
        );
        assert_eq!("replay".parse::<FeedKind>().unwrap(), FeedKind::Replay);
        assert_eq!("NONE".parse::<FeedKind>().unwrap(), FeedKind::None);
        let error = "kafka".parse::<FeedKind>().unwrap_err().to_string();
        assert!(error.contains("simulated, replay or none"), "{error}");
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let config = MarketDataConfig::default();
        assert_eq!(config.zmq_endpoint(), "tcp://127.0.0.1:5555");
        assert_eq!(
            config.websocket_addr().unwrap(),
            "127.0.0.1:8765".parse().unwrap()
        );
        assert_eq!(config.ws_auth_grace, Duration::from_secs(15));
        assert_eq!(
            config.max_symbols_per_websocket * config.max_websocket_connections,
            3000
        );
        assert_eq!(
            MarketDataConfig::ephemeral().zmq_endpoint(),
            "tcp://127.0.0.1:*"
        );
        let bad = MarketDataConfig {
            websocket_host: "example.com".into(),
            ..MarketDataConfig::default()
        };
        assert!(
            bad.websocket_addr()
                .unwrap_err()
                .to_string()
                .contains("WEBSOCKET_HOST")
        );
    }
}
