//! Settings of the market-data layer (`oa-marketdata-zmq`) beyond the shared addresses:
//! WebSocket limits and keepalive, bus tuning, the bundled feed and the symbol master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use oa_marketdata_zmq::{FeedKind, MarketDataConfig};

use super::Checker;

/// Market-data settings as given.
#[derive(Debug, Clone, Args)]
pub struct RawMarketDataConfig {
    /// Seconds a WebSocket client may stay unauthenticated before it is closed with 4401.
    #[arg(long, env = "WS_AUTH_GRACE_SECONDS", default_value = "15")]
    pub ws_auth_grace_seconds: String,
    /// Ticks queued per WebSocket client before newer ticks replace older ones (conflation).
    #[arg(long, env = "WS_MAX_QUEUE", default_value = "1024")]
    pub ws_max_queue: String,
    /// Seconds between protocol-level WebSocket pings.
    #[arg(long, env = "WS_PING_INTERVAL", default_value = "20")]
    pub ws_ping_interval: String,
    /// Seconds without a pong before a WebSocket client is closed.
    #[arg(long, env = "WS_PING_TIMEOUT", default_value = "20")]
    pub ws_ping_timeout: String,
    /// Symbols one WebSocket connection may subscribe.
    #[arg(long, env = "MAX_SYMBOLS_PER_WEBSOCKET", default_value = "1000")]
    pub max_symbols_per_websocket: String,
    /// WebSocket connections per user.
    #[arg(long, env = "MAX_WEBSOCKET_CONNECTIONS", default_value = "3")]
    pub max_websocket_connections: String,
    /// Largest client WebSocket frame, bytes.
    #[arg(long, env = "OA_WS_MAX_MESSAGE_BYTES", default_value = "65536")]
    pub ws_max_message_bytes: String,
    /// Receive high-water mark of the ZMQ bus (and send HWM of the bundled feeds).
    #[arg(long, env = "OA_ZMQ_HWM", default_value = "100000")]
    pub zmq_hwm: String,
    /// Largest ZMQ frame accepted; larger ones are dropped and counted as oversized.
    #[arg(long, env = "OA_ZMQ_MAX_FRAME_BYTES", default_value = "65536")]
    pub zmq_max_frame_bytes: String,
    /// Bundled feed: simulated, replay or none (external publishers only).
    #[arg(long, env = "OA_FEED", default_value = "simulated")]
    pub feed: String,
    /// Symbols of the simulated feed, EXCHANGE:SYMBOL comma list (empty: the whole master).
    #[arg(long, env = "OA_FEED_SYMBOLS", default_value = "")]
    pub feed_symbols: String,
    /// Simulated ticks per second across all symbols.
    #[arg(long, env = "OA_FEED_TICKS_PER_SECOND", default_value = "50")]
    pub feed_ticks_per_second: String,
    /// Seed of the simulated market (same seed, same prices).
    #[arg(long, env = "OA_FEED_SEED", default_value = "42")]
    pub feed_seed: String,
    /// Tick file for OA_FEED=replay (JSON lines, or .csv).
    #[arg(long, env = "OA_REPLAY_FILE")]
    pub replay_file: Option<String>,
    /// Replay speed: 1 = recorded pace, 10 = ten times faster, 0 = as fast as possible.
    #[arg(long, env = "OA_REPLAY_SPEED", default_value = "1")]
    pub replay_speed: String,
    /// Start the replay over at the end of the file: true or false.
    #[arg(long, env = "OA_REPLAY_REPEAT", default_value = "false")]
    pub replay_repeat: String,
    /// Symbol master CSV (exchange,symbol,name,lot_size,tick_size,...); unset: bundled universe.
    #[arg(long, env = "OA_SYMBOL_MASTER_CSV")]
    pub symbol_master_csv: Option<String>,
}

impl RawMarketDataConfig {
    /// Checks every market-data setting; the addresses come from the shared settings.
    pub(super) fn validate(
        &self,
        check: &mut Checker,
        websocket: Option<SocketAddr>,
        zmq: Option<SocketAddr>,
    ) -> Option<MarketDataConfig> {
        let seconds = |check: &mut Checker, var: &str, value: &str| {
            check
                .positive(var, value)
                .map(|seconds| Duration::from_secs(seconds as u64))
        };
        let ws_auth_grace = seconds(check, "WS_AUTH_GRACE_SECONDS", &self.ws_auth_grace_seconds);
        let ws_ping_interval = seconds(check, "WS_PING_INTERVAL", &self.ws_ping_interval);
        let ws_ping_timeout = seconds(check, "WS_PING_TIMEOUT", &self.ws_ping_timeout);
        let ws_max_queue = check.positive("WS_MAX_QUEUE", &self.ws_max_queue);
        let max_symbols =
            check.positive("MAX_SYMBOLS_PER_WEBSOCKET", &self.max_symbols_per_websocket);
        let max_connections =
            check.positive("MAX_WEBSOCKET_CONNECTIONS", &self.max_websocket_connections);
        let ws_max_message_bytes =
            check.positive("OA_WS_MAX_MESSAGE_BYTES", &self.ws_max_message_bytes);
        let zmq_hwm = check
            .positive("OA_ZMQ_HWM", &self.zmq_hwm)
            .and_then(|hwm| i32::try_from(hwm).ok());
        let zmq_max_frame_bytes =
            check.positive("OA_ZMQ_MAX_FRAME_BYTES", &self.zmq_max_frame_bytes);
        let feed = match self.feed.parse::<FeedKind>() {
            Ok(feed) => Some(feed),
            Err(_) => {
                check.problems.push(format!(
                    "OA_FEED={:?} is not valid; allowed values: simulated, replay, none",
                    self.feed
                ));
                None
            }
        };
        let feed_symbols: Vec<String> = self
            .feed_symbols
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        for name in &feed_symbols {
            if !name.contains(':') {
                check.problems.push(format!(
                    "OA_FEED_SYMBOLS entry {name:?} is not valid: expected EXCHANGE:SYMBOL, e.g. NSE:SBIN"
                ));
            }
        }
        let feed_ticks_per_second = check
            .number::<f64>(
                "OA_FEED_TICKS_PER_SECOND",
                &self.feed_ticks_per_second,
                "a positive rate",
            )
            .filter(|rate| {
                let ok = rate.is_finite() && *rate > 0.0;
                if !ok {
                    check.problems.push(format!(
                        "OA_FEED_TICKS_PER_SECOND={:?} is not valid: expected a positive rate",
                        self.feed_ticks_per_second
                    ));
                }
                ok
            });
        let feed_seed = check.number::<u64>("OA_FEED_SEED", &self.feed_seed, "a whole number");
        let replay_speed = check
            .number::<f64>("OA_REPLAY_SPEED", &self.replay_speed, "a speed factor >= 0")
            .filter(|speed| {
                let ok = speed.is_finite() && *speed >= 0.0;
                if !ok {
                    check.problems.push(format!(
                        "OA_REPLAY_SPEED={:?} is not valid: expected a speed factor >= 0",
                        self.replay_speed
                    ));
                }
                ok
            });
        let replay_repeat = check.boolean("OA_REPLAY_REPEAT", &self.replay_repeat);
        let replay_file = self.replay_file.as_ref().map(PathBuf::from);
        if feed == Some(FeedKind::Replay) {
            match &replay_file {
                None => check.problems.push(
                    "OA_REPLAY_FILE is required when OA_FEED=replay: a JSON-lines or .csv tick file"
                        .to_string(),
                ),
                Some(path) if !path.is_file() => check.problems.push(format!(
                    "OA_REPLAY_FILE={:?} is not a readable file",
                    path.display().to_string()
                )),
                Some(_) => {}
            }
        }
        let symbol_master_csv = self.symbol_master_csv.as_ref().map(PathBuf::from);
        if let Some(path) = &symbol_master_csv
            && !path.is_file()
        {
            check.problems.push(format!(
                "OA_SYMBOL_MASTER_CSV={:?} is not a readable file",
                path.display().to_string()
            ));
        }
        let (websocket, zmq) = (websocket?, zmq?);
        Some(MarketDataConfig {
            zmq_host: zmq.ip().to_string(),
            zmq_port: zmq.port(),
            zmq_hwm: zmq_hwm?,
            zmq_max_frame_bytes: zmq_max_frame_bytes?,
            websocket_host: websocket.ip().to_string(),
            websocket_port: websocket.port(),
            ws_auth_grace: ws_auth_grace?,
            ws_max_queue: ws_max_queue?,
            ws_ping_interval: ws_ping_interval?,
            ws_ping_timeout: ws_ping_timeout?,
            max_symbols_per_websocket: max_symbols?,
            max_websocket_connections: max_connections?,
            ws_max_message_bytes: ws_max_message_bytes?,
            feed: feed?,
            feed_symbols,
            feed_ticks_per_second: feed_ticks_per_second?,
            feed_seed: feed_seed?,
            replay_file,
            replay_speed: replay_speed?,
            replay_repeat: replay_repeat?,
            symbol_master_csv,
            ..MarketDataConfig::default()
        })
    }
}
