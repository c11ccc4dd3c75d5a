//! # oa-marketdata-zmq
//!
//! oa's market-data layer (layer 2 of docs/architecture.md):
//!
//! ```text
//! feed adapter ──PUB connect──▶ [SUB bind: bus thread] ──▶ dispatcher ──┬▶ price cache
//!  (simulated, replay, any                                               └▶ WebSocket proxy
//!   external ZeroMQ PUB)                                                     └▶ client outboxes
//! ```
//!
//! - [`tick`]: the tick model with the exact payload fields of the bus contract (docs/marketdata.md);
//! - [`topic`]: the bus topic codec `{EXCHANGE}_{SYMBOL}_{MODE}`;
//! - [`bus`]: the ZeroMQ bus (SUB bind side) and [`bus::Publisher`] for feed adapters;
//! - [`feed`]: the [`feed::FeedAdapter`] trait and the bundled simulated and replay feeds;
//! - [`symbols`]: the symbol master (OpenAlgo "master contract");
//! - [`price_cache`]: the latest LTP / quote / depth per instrument, lock-free reads;
//! - [`ws`]: the WebSocket proxy speaking the OpenAlgo streaming protocol (docs/marketdata.md);
//! - [`config`] and [`service`]: [`MarketDataConfig`] and [`start`], the entry point a
//!   server calls.
//!
//! A feed-adapter process needs only [`Publisher`] and [`Tick`]:
//!
//! ```no_run
//! use oa_marketdata_zmq::{Publisher, PublisherOptions, Tick};
//!
//! # fn main() -> Result<(), oa_marketdata_zmq::BusError> {
//! let mut publisher = Publisher::connect("tcp://127.0.0.1:5555", PublisherOptions::default())?;
//! publisher.publish(&Tick::ltp("NSE", "SBIN", 812.5))?;
//! # Ok(()) }
//! ```
//!
//! Metrics (via the `metrics` facade; install the recorder before [`start`]):
//! `oa_ticks_received_total`, `oa_ticks_malformed_total{reason}`, `oa_ticks_dropped_total{reason}`,
//! `oa_ticks_fanned_out_total`, `oa_ticks_conflated_total`, `oa_ws_clients`, `oa_ws_subscriptions`.

pub mod bus;
pub mod config;
pub mod feed;
pub mod price_cache;
pub mod service;
pub mod symbols;
pub mod tick;
pub mod topic;
pub mod ws;

pub use bus::{Bus, BusConfig, BusError, Publisher, PublisherOptions};
pub use config::{ENV_VARS, FeedKind, MarketDataConfig};
pub use feed::{FeedAdapter, FeedError, SubscriptionHint};
pub use price_cache::{CacheUpdate, PriceCache, PriceSnapshot};
pub use service::{MarketData, MarketDataError, MarketDataStats, start};
pub use symbols::{EXCHANGES, Instrument, SymbolMaster, SymbolMasterError, SymbolSource};
pub use tick::{Depth, DepthLevel, InvalidMode, Mode, Quote, Tick};
pub use topic::{Topic, TopicError};
pub use ws::{CLOSE_AUTH_TIMEOUT, CLOSE_KEY_REVOKED, CLOSE_PING_TIMEOUT, WsConfig, WsProxy};
