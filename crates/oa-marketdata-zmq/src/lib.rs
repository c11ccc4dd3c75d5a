//! # oa-marketdata-zmq
//!
//! oa's market-data layer (layer 2 of DESIGN.md):
//!
//! ```text
//! feed adapter ──PUB connect──▶ [SUB bind: bus] ──▶ price cache
//!                                                └─▶ WebSocket proxy ──▶ each client's outbox
//! ```
//!
//! - [`tick`]: the tick model with the exact payload fields of PROTOCOLS.md section 4;
//! - [`symbols`]: the symbol master (OpenAlgo "master contract");
//! - [`topic`]: the bus topic codec `{EXCHANGE}_{SYMBOL}_{MODE}`;
//! - [`bus`]: the ZeroMQ bus (SUB bind side, [`bus::Publisher`] for feed adapters);
//! - [`price_cache`]: the latest LTP / quote / depth per instrument, lock-free reads.

pub mod bus;
pub mod price_cache;
pub mod symbols;
pub mod tick;
pub mod topic;

pub use bus::{Bus, BusConfig, BusError, Publisher, PublisherOptions};
pub use price_cache::{PriceCache, PriceSnapshot};
pub use symbols::{EXCHANGES, Instrument, SymbolMaster, SymbolMasterError, SymbolSource};
pub use tick::{Depth, DepthLevel, InvalidMode, Mode, Quote, Tick};
pub use topic::{Topic, TopicError};
