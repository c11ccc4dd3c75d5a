//! [`MarketDataConfig`]: every setting of the market-data layer with its default. A plain
//! struct: the binary maps environment variables (named in each field's doc) onto it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Which feed adapter the server starts (`FEED`).
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
#[error("invalid FEED {value:?}: expected simulated, replay or none")]
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
    /// `ZMQ_HWM` (100000): receive high-water mark of the bus and send HWM of bundled feeds.
    pub zmq_hwm: i32,
    /// `ZMQ_MAX_FRAME_BYTES` (65536): larger frames are dropped as `oversized`.
    pub zmq_max_frame_bytes: usize,
    /// `ZMQ_CHANNEL_CAPACITY` (65536): ticks buffered between the bus thread and the dispatcher.
    pub bus_channel_capacity: usize,
    /// `WEBSOCKET_HOST` (127.0.0.1).
    pub websocket_host: String,
    /// `WEBSOCKET_PORT` (8765); 0 picks a free port.
    pub websocket_port: u16,
    /// `WS_AUTH_GRACE_SECONDS` (15): unauthenticated connections are closed with 4401.
    pub ws_auth_grace: Duration,
    /// `WS_MAX_QUEUE` (1024): ticks per client outbox before conflation.
    pub ws_max_queue: usize,
    /// `WS_PING_INTERVAL` (20 s): protocol-level keepalive pings.
    pub ws_ping_interval: Duration,
    /// `WS_PING_TIMEOUT` (20 s): close a client silent this long after a ping was due.
    pub ws_ping_timeout: Duration,
    /// `MAX_SYMBOLS_PER_WEBSOCKET` (1000).
    pub max_symbols_per_websocket: usize,
    /// `MAX_WEBSOCKET_CONNECTIONS` (3): with the above, a user's instrument capacity.
    pub max_websocket_connections: usize,
    /// `WS_MAX_MESSAGE_BYTES` (65536): largest client frame.
    pub ws_max_message_bytes: usize,
    /// `FEED` (simulated): simulated | replay | none.
    pub feed: FeedKind,
    /// `FEED_SYMBOLS` (empty = the whole symbol master): `EXCHANGE:SYMBOL` list.
    pub feed_symbols: Vec<String>,
    /// `FEED_TICKS_PER_SECOND` (50): simulated ticks per second across all symbols.
    pub feed_ticks_per_second: f64,
    /// `FEED_SEED` (42): simulated market seed.
    pub feed_seed: u64,
    /// `REPLAY_FILE` (required with FEED=replay): JSON lines or `.csv`.
    pub replay_file: Option<PathBuf>,
    /// `REPLAY_SPEED` (1.0): 1 = recorded pace, 0 = as fast as possible.
    pub replay_speed: f64,
    /// `REPLAY_REPEAT` (false): start over at the end.
    pub replay_repeat: bool,
    /// `SYMBOL_MASTER_CSV` (unset = bundled universe).
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

#[cfg(test)]
mod tests {
    use super::*;

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
