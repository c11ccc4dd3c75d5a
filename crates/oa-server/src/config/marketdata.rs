//! Settings of the market-data layer (`oa-marketdata-zmq`, its `ENV_VARS`).
//!
//! The library owns their parsing (`MarketDataConfig::from_lookup`, the same code a
//! standalone feed service uses); the addresses are checked with the server's own.

use std::net::SocketAddr;

use oa_marketdata_zmq::MarketDataConfig;

use super::Checker;

/// Parses the settings with the library's parser; the addresses come from the shared
/// settings (already checked there).
pub(super) fn validate(
    check: &mut Checker,
    websocket: Option<SocketAddr>,
    zmq: Option<SocketAddr>,
) -> Option<MarketDataConfig> {
    let raw = check.raw;
    let mut config = match MarketDataConfig::from_lookup(|name| raw.get(name)) {
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
