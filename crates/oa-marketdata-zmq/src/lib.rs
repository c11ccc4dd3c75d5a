//! # oa-marketdata-zmq
//!
//! oa's market-data layer: the tick model and topic codec, the ZeroMQ PUB/SUB bus, feed
//! adapters, the symbol master, the price cache and the WebSocket streaming proxy.
//!
//! Not built yet: see the "Market data" issue. Nothing in this crate is functional today.
