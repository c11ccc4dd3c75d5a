#![doc = include_str!("../README.md")]
//!
//! Modules:
//!
//! - [`tick`]: the tick model with the exact payload fields of the bus contract;
//! - [`topic`]: the bus topic codec `{EXCHANGE}_{SYMBOL}_{MODE}`;
//! - [`symbols`]: the symbol master (OpenAlgo "master contract");
//! - [`price_cache`]: the latest LTP / quote / depth per instrument, lock-free reads.

pub mod backfill;
pub mod candles;
pub mod option_universe;
pub mod options;
pub mod price_cache;
pub mod symbols;
pub mod tick;
pub mod topic;

pub use price_cache::{CacheUpdate, PriceCache, PriceSnapshot};
pub use symbols::{EXCHANGES, Instrument, SymbolMaster, SymbolMasterError, SymbolSource};
pub use tick::{Depth, DepthLevel, InvalidMode, Quote, Tick, TickMode};
pub use topic::{Topic, TopicError};
