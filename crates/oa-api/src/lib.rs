//! # oa-api
//!
//! oa's REST API v1: routes, API-key auth, rate limits, the order service, the sandbox and
//! simulator brokers, and the SQLite store.
//!
//! Not built yet: see the "REST API v1" issue. Nothing in this crate is functional today.
