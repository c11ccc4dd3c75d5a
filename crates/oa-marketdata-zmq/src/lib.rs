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
//! - [`price_cache`]: the latest LTP / quote / depth per instrument, lock-free reads.

pub mod price_cache;
pub mod symbols;
pub mod tick;

pub use price_cache::{PriceCache, PriceSnapshot};
pub use symbols::{EXCHANGES, Instrument, SymbolMaster, SymbolMasterError, SymbolSource};
pub use tick::{Depth, DepthLevel, InvalidMode, Mode, Quote, Tick};
