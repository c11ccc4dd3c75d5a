#![doc = include_str!("../README.md")]
//!
//! ```text
//! feed adapter ──PUB connect──▶ [SUB bind: bus thread] ──▶ dispatcher ──┬▶ price cache
//!  (simulated, replay, any                                               └▶ WebSocket proxy
//!   external ZeroMQ PUB)                                                     └▶ client send queues
//! ```
//!
//! Modules:
//!
//! - [`bus`]: the ZeroMQ bus (SUB bind side) and [`bus::Publisher`] for feed adapters;
//! - [`feed`]: the [`feed::FeedAdapter`] trait and the bundled simulated and replay feeds;
//! - `ws` (feature `ws`): the WebSocket proxy speaking the OpenAlgo streaming protocol;
//! - `config` and `service` (feature `ws`): `MarketDataConfig` and `start`, the entry point
//!   a server calls.
//!
//! The tick model, topic codec, symbol master and price cache come from
//! [`oa_marketdata_core`] and are re-exported at this crate's root.
//!
//! Metrics (via the `metrics` facade; install the recorder before `start`):
//! `oa_ticks_received_total`, `oa_ticks_malformed_total{reason}`, `oa_ticks_dropped_total{reason}`,
//! `oa_ticks_fanned_out_total`, `oa_ticks_conflated_total`, `oa_ws_clients`, `oa_ws_subscriptions`.

pub mod bus;
#[cfg(feature = "ws")]
pub mod config;
pub mod feed;
#[cfg(feature = "ws")]
pub mod service;
#[cfg(feature = "ws")]
pub mod ws;

pub use bus::{Bus, BusConfig, BusError, OrderRelay, Publisher, PublisherOptions};
#[cfg(feature = "ws")]
pub use config::{ENV_VARS, FeedKind, MarketDataConfig};
pub use feed::{FeedAdapter, FeedError, SubscriptionHint};
pub use oa_marketdata_core::{
    CacheUpdate, Depth, DepthLevel, EXCHANGES, Instrument, InvalidMode, PriceCache, PriceSnapshot,
    Quote, SymbolMaster, SymbolMasterError, SymbolSource, Tick, TickMode, Topic, TopicError,
};
#[cfg(feature = "ws")]
pub use service::{MarketData, MarketDataError, MarketDataStats, feed_instruments, start};
#[cfg(feature = "ws")]
pub use ws::{CLOSE_AUTH_TIMEOUT, CLOSE_KEY_REVOKED, CLOSE_PING_TIMEOUT, WsConfig, WsProxy};
