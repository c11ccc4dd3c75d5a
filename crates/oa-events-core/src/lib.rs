#![doc = include_str!("../README.md")]
//!
//! Modules:
//!
//! - [`catalog`]: one typed struct per order event or notification, with the exact payload
//!   keys OpenAlgo clients expect, and [`EventPayload`], the closed set of them;
//! - [`envelope`]: the [`Envelope`] every transport carries (id, type, time, user, data) and
//!   its CloudEvents attribute mapping;
//! - [`publisher`]: [`EventPublisher`], the cheap clonable handle services call, which hands
//!   each event to every configured [`EventSink`] through a bounded queue drained by the
//!   sink's own task, and to in-process subscribers;
//! - [`mode`]: [`EventMode`] (`ORDER_EVENT_MODE` = SOCKETIO | KAFKA | BOTH);
//! - [`esb`]: [`EsbPosition`], where an ESB command record was read (its offset's key);
//! - [`auth`]: [`ApiKeyVerifier`], the small trait through which transports that accept
//!   clients (WebSocket, Socket.IO) check API keys without depending on the REST layer;
//! - [`env_var`]: [`EnvVar`], an entry of the `ENV_VARS` table in which each layer lists its
//!   environment variables, defaults and help texts, and [`EnvReader`], which reads them.

pub mod auth;
pub mod catalog;
pub mod env_var;
pub mod envelope;
pub mod esb;
pub mod mode;
pub mod number;
pub mod publisher;
pub mod schema;
pub mod sink;
pub mod spelling;

pub use auth::{ApiKeyVerifier, AuthenticatedUser, VerifierError};
pub use catalog::{Audience, CatalogEvent, EventPayload};
pub use env_var::{EnvReader, EnvVar};
pub use envelope::{Envelope, EnvelopeError, Event};
pub use esb::EsbPosition;
pub use mode::{EventMode, InvalidEventMode};
pub use publisher::{EventPublisher, PublisherBuilder, SinkOptions, SinkStats};
pub use sink::{EventSink, OverflowPolicy, SinkError};
