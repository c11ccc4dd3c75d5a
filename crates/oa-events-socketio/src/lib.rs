#![doc = include_str!("../README.md")]
//!
//! The Socket.IO sink of oa's event layer (mode SOCKETIO, the default, and BOTH): a
//! socketioxide layer mounted on the HTTP server at `/socket.io/` (Socket.IO v5 over
//! Engine.IO 4, long-polling and websocket with upgrade) and an
//! [`EventSink`](oa_events_core::EventSink) that delivers catalog events to authenticated
//! clients.
//!
//! - **Authentication**: a client connects with `auth: {"apikey": "..."}`; the key is checked
//!   through an [`ApiKeyVerifier`](oa_events_core::ApiKeyVerifier). A missing or invalid key
//!   is refused with a `connect_error` whose message says why ([`ConnectRefused`]).
//! - **Isolation**: an accepted client joins the room named by its user id and receives only
//!   its user's events, plus system-wide ones (`master_contract_download`).
//! - **Payload**: the event name is the catalog name; the payload is the catalog object with
//!   two extra keys, `event_id` (the envelope id, UUIDv7) and `seq` (per-user, +1 per event).
//! - **Replay**: a client reconnecting with `auth: {"apikey": "...", "offset": <last seq>}`
//!   receives what it missed, in order, from a bounded per-user buffer; what is no longer
//!   buffered is announced with a [`REPLAY_GAP_EVENT`] first.
//! - **Back-pressure**: per-socket buffers are bounded; a socket that does not read is skipped
//!   (never awaited) and catches up from the replay buffer later, or gets `replay_gap`; the
//!   loss is counted in `oa_events_dropped_total{sink="socketio",reason="slow_client"}`.
//! - **Bounds**: websocket frames and polling bodies up to `max_payload`; Engine.IO sessions
//!   capped in total and per client IP ([`mount`]); handshakes rate-limited per client IP; the
//!   replay buffer bounded in events and bytes; `password_change` ends the user's sessions.
//! - **Edges** ([`SocketIoSink::fed_by_log`]): fed from a partitioned log (the order-events
//!   topic) instead of a publisher, each event's `seq` is its log position
//!   ([`LogPosition`]: increasing per user, not +1), so a client can resume on any edge;
//!   what it missed beyond the edge's buffer is read back from the log ([`EventLog`]).

mod config;
mod guard;
mod handshake;
mod log;
mod sink;
mod stream;

pub use config::{ConfigError, ENV_VARS, SocketIoConfig};
pub use guard::mount;
pub use handshake::{ConnectRefused, Handshake};
pub use log::{
    EventLog, LogEndFuture, LogError, LogPosition, LogQuery, LogRead, LogReadFuture,
    MAX_LOG_PARTITIONS,
};
pub use sink::{SINK_NAME, SocketIoSink, SocketIoStats};
pub use socketioxide::SocketIo;
pub use socketioxide::layer::SocketIoLayer;
pub use stream::{REPLAY_GAP_EVENT, ReplayGap};
