//! # oa-events-core
//!
//! The transport-independent heart of oa's event layer:
//!
//! - [`catalog`]: one typed struct per order event or notification, with the exact payload
//!   keys OpenAlgo clients expect, and [`EventPayload`], the closed set of them;
//! - [`envelope`]: the [`Envelope`] every transport carries (id, type, time, user, data) and
//!   its CloudEvents attribute mapping;
//! - [`publisher`]: [`EventPublisher`], the cheap clonable handle services call, which hands
//!   each event to every configured [`EventSink`] through a bounded queue drained by the
//!   sink's own task, and to in-process subscribers;
//! - [`mode`]: [`EventMode`] (`ORDER_EVENT_MODE` = SOCKETIO | KAFKA | BOTH);
//! - [`auth`]: [`ApiKeyVerifier`], the small trait through which transports that accept
//!   clients (WebSocket, Socket.IO) check API keys without depending on the REST layer.
//!
//! This crate performs no network I/O.
//!
//! ```
//! use oa_events_core::{catalog::OrderNotification, Event, EventPublisher};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let publisher = EventPublisher::builder().build();
//! let mut tap = publisher.subscribe();
//! publisher.publish(Event::for_user(
//!     "user123",
//!     OrderNotification::info("SBIN", "Positions Already Matched. No Action needed."),
//! ));
//! let envelope = tap.recv().await.unwrap();
//! assert_eq!(envelope.event_type(), "order_notification");
//! # }
//! ```

pub mod auth;
pub mod catalog;
pub mod envelope;
pub mod mode;
pub mod number;
pub mod publisher;
pub mod schema;
pub mod sink;

pub use auth::{ApiKeyVerifier, AuthenticatedUser, VerifierError};
pub use catalog::{Audience, CatalogEvent, EventPayload};
pub use envelope::{Envelope, EnvelopeError, Event};
pub use mode::{EventMode, InvalidEventMode};
pub use publisher::{EventPublisher, PublisherBuilder, SinkOptions, SinkStats};
pub use sink::{EventSink, OverflowPolicy, SinkError};
