#![doc = include_str!("../README.md")]
//!
//! Modules:
//!
//! - [`rate`]: rates in flask-limiter syntax (`"10 per second"`);
//! - [`connections`]: a global and a per-IP cap on open connections, counted in /metrics;
//! - [`login`]: a per-IP rate limit on login attempts (API-key checks);
//! - [`serve`](mod@serve): HTTP serving with a header-read timeout, an idle keep-alive timeout, connection
//!   caps and TCP_NODELAY.

pub mod connections;
pub mod login;
pub mod rate;
pub mod serve;

pub use connections::{ConnectionLimiter, ConnectionLimits, ConnectionPermit, ConnectionRefused};
pub use login::LoginLimiter;
pub use rate::RateSpec;
pub use serve::{ServeOptions, serve};
