//! Settings of the market-data layer (`oa-marketdata-zmq`) beyond the shared addresses.
//!
//! The library owns their names, defaults and parsing (`MarketDataConfig::from_lookup`, the
//! same code a standalone feed service uses); this module only exposes them as flags and
//! environment variables, so `oa-server --help` lists them. Unset values keep the library's
//! defaults (listed in `.sample.env`).

use std::net::SocketAddr;

use clap::Args;
use oa_marketdata_zmq::MarketDataConfig;

use super::Checker;

/// Market-data settings as given (unset = the library default).
#[derive(Debug, Clone, Args)]
pub struct RawMarketDataConfig {
    /// Seconds a WebSocket client may stay unauthenticated before it is closed with 4401 [15].
    #[arg(long, env = "WS_AUTH_GRACE_SECONDS")]
    pub ws_auth_grace_seconds: Option<String>,
    /// Ticks queued per WebSocket client before newer ticks replace older ones [1024].
    #[arg(long, env = "WS_MAX_QUEUE")]
    pub ws_max_queue: Option<String>,
    /// Seconds between protocol-level WebSocket pings [20].
    #[arg(long, env = "WS_PING_INTERVAL")]
    pub ws_ping_interval: Option<String>,
    /// Seconds without a pong before a WebSocket client is closed [20].
    #[arg(long, env = "WS_PING_TIMEOUT")]
    pub ws_ping_timeout: Option<String>,
    /// Symbols one WebSocket connection may subscribe [1000].
    #[arg(long, env = "MAX_SYMBOLS_PER_WEBSOCKET")]
    pub max_symbols_per_websocket: Option<String>,
    /// Authenticated WebSocket connections per user [3].
    #[arg(long, env = "MAX_WEBSOCKET_CONNECTIONS")]
    pub max_websocket_connections: Option<String>,
    /// Largest client WebSocket frame and message, bytes [65536].
    #[arg(long, env = "OA_WS_MAX_MESSAGE_BYTES")]
    pub ws_max_message_bytes: Option<String>,
    /// WebSocket connections in total; more are refused with 503 [10000].
    #[arg(long, env = "OA_WS_MAX_CONNECTIONS")]
    pub ws_max_connections: Option<String>,
    /// WebSocket connections from one client IP; more are refused with 503 [100].
    #[arg(long, env = "OA_WS_MAX_CONNECTIONS_PER_IP")]
    pub ws_max_connections_per_ip: Option<String>,
    /// WebSocket and Socket.IO login attempts per client IP ["10 per second"].
    #[arg(long, env = "OA_LOGIN_RATE_LIMIT")]
    pub login_rate_limit: Option<String>,
    /// Receive high-water mark of the ZMQ bus and send HWM of the bundled feeds [100000].
    #[arg(long, env = "OA_ZMQ_HWM")]
    pub zmq_hwm: Option<String>,
    /// Largest ZMQ frame accepted; larger ones are dropped and counted [65536].
    #[arg(long, env = "OA_ZMQ_MAX_FRAME_BYTES")]
    pub zmq_max_frame_bytes: Option<String>,
    /// Ticks buffered between the bus thread and the dispatcher [65536].
    #[arg(long, env = "OA_ZMQ_CHANNEL_CAPACITY")]
    pub zmq_channel_capacity: Option<String>,
    /// Bundled feed: simulated, replay or none [simulated].
    #[arg(long, env = "OA_FEED")]
    pub feed: Option<String>,
    /// Symbols of the simulated feed, EXCHANGE:SYMBOL comma list [all of the symbol master].
    #[arg(long, env = "OA_FEED_SYMBOLS")]
    pub feed_symbols: Option<String>,
    /// Simulated ticks per second across all symbols [50].
    #[arg(long, env = "OA_FEED_TICKS_PER_SECOND")]
    pub feed_ticks_per_second: Option<String>,
    /// Seed of the simulated market [42].
    #[arg(long, env = "OA_FEED_SEED")]
    pub feed_seed: Option<String>,
    /// Tick file for OA_FEED=replay (JSON lines, or .csv).
    #[arg(long, env = "OA_REPLAY_FILE")]
    pub replay_file: Option<String>,
    /// Replay speed: 1 = recorded pace, 0 = as fast as possible [1].
    #[arg(long, env = "OA_REPLAY_SPEED")]
    pub replay_speed: Option<String>,
    /// Start the replay over at the end of the file [false].
    #[arg(long, env = "OA_REPLAY_REPEAT")]
    pub replay_repeat: Option<String>,
    /// Symbol master CSV; unset: the bundled universe.
    #[arg(long, env = "OA_SYMBOL_MASTER_CSV")]
    pub symbol_master_csv: Option<String>,
}

impl RawMarketDataConfig {
    /// The value given for the variable `name`, if any.
    fn get(&self, name: &str) -> Option<String> {
        let value = match name {
            "WS_AUTH_GRACE_SECONDS" => &self.ws_auth_grace_seconds,
            "WS_MAX_QUEUE" => &self.ws_max_queue,
            "WS_PING_INTERVAL" => &self.ws_ping_interval,
            "WS_PING_TIMEOUT" => &self.ws_ping_timeout,
            "MAX_SYMBOLS_PER_WEBSOCKET" => &self.max_symbols_per_websocket,
            "MAX_WEBSOCKET_CONNECTIONS" => &self.max_websocket_connections,
            "OA_WS_MAX_MESSAGE_BYTES" => &self.ws_max_message_bytes,
            "OA_WS_MAX_CONNECTIONS" => &self.ws_max_connections,
            "OA_WS_MAX_CONNECTIONS_PER_IP" => &self.ws_max_connections_per_ip,
            "OA_LOGIN_RATE_LIMIT" => &self.login_rate_limit,
            "OA_ZMQ_HWM" => &self.zmq_hwm,
            "OA_ZMQ_MAX_FRAME_BYTES" => &self.zmq_max_frame_bytes,
            "OA_ZMQ_CHANNEL_CAPACITY" => &self.zmq_channel_capacity,
            "OA_FEED" => &self.feed,
            "OA_FEED_SYMBOLS" => &self.feed_symbols,
            "OA_FEED_TICKS_PER_SECOND" => &self.feed_ticks_per_second,
            "OA_FEED_SEED" => &self.feed_seed,
            "OA_REPLAY_FILE" => &self.replay_file,
            "OA_REPLAY_SPEED" => &self.replay_speed,
            "OA_REPLAY_REPEAT" => &self.replay_repeat,
            "OA_SYMBOL_MASTER_CSV" => &self.symbol_master_csv,
            _ => return None,
        };
        value.clone()
    }

    /// Parses the settings with the library's parser; the addresses come from the shared
    /// settings (already checked there).
    pub(super) fn validate(
        &self,
        check: &mut Checker,
        websocket: Option<SocketAddr>,
        zmq: Option<SocketAddr>,
    ) -> Option<MarketDataConfig> {
        let mut config = match MarketDataConfig::from_lookup(|name| self.get(name)) {
            Ok(config) => config,
            Err(error) => {
                check.problems.push(error.to_string());
                return None;
            }
        };
        let (websocket, zmq) = (websocket?, zmq?);
        config.websocket_host = websocket.ip().to_string();
        config.websocket_port = websocket.port();
        config.zmq_host = zmq.ip().to_string();
        config.zmq_port = zmq.port();
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_variable_has_a_flag() {
        let raw = RawMarketDataConfig {
            ws_auth_grace_seconds: Some("1".into()),
            ws_max_queue: Some("1".into()),
            ws_ping_interval: Some("1".into()),
            ws_ping_timeout: Some("1".into()),
            max_symbols_per_websocket: Some("1".into()),
            max_websocket_connections: Some("1".into()),
            ws_max_message_bytes: Some("1".into()),
            ws_max_connections: Some("1".into()),
            ws_max_connections_per_ip: Some("1".into()),
            login_rate_limit: Some("1 per second".into()),
            zmq_hwm: Some("1".into()),
            zmq_max_frame_bytes: Some("1".into()),
            zmq_channel_capacity: Some("1".into()),
            feed: Some("none".into()),
            feed_symbols: Some("NSE:SBIN".into()),
            feed_ticks_per_second: Some("1".into()),
            feed_seed: Some("1".into()),
            replay_file: Some("x".into()),
            replay_speed: Some("1".into()),
            replay_repeat: Some("true".into()),
            symbol_master_csv: Some("x".into()),
        };
        // The addresses are shared settings; every other variable maps to a flag.
        for (name, _, _) in oa_marketdata_zmq::config::ENV_VARS {
            if name.is_empty()
                || matches!(
                    *name,
                    "ZMQ_HOST" | "ZMQ_PORT" | "WEBSOCKET_HOST" | "WEBSOCKET_PORT"
                )
            {
                continue;
            }
            assert!(raw.get(name).is_some(), "{name} has no flag in oa-server");
        }
    }
}
