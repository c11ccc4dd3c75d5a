//! The trait every event transport implements.

use std::future::Future;
use std::sync::Arc;

use crate::envelope::Envelope;

/// What a sink's queue does when it is full. Either way the loss is counted
/// (`oa_events_dropped_total{sink,reason="queue_full"}`) and logged, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Discard the oldest queued event to make room: right for live views, where the newest
    /// state matters most.
    #[default]
    DropOldest,
    /// Keep the queue and discard the new event: right for sinks that hold a durable copy
    /// elsewhere (a transactional outbox) and only use the queue as a wake-up.
    DropNewest,
}

/// A sink failed to deliver a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink {sink} could not deliver {count} event(s): {reason}")]
pub struct SinkError {
    /// The sink's name.
    pub sink: &'static str,
    /// How many events of the batch were not delivered.
    pub count: usize,
    /// Why, for logs.
    pub reason: String,
}

/// A transport that delivers envelopes (Socket.IO, Kafka, ...).
///
/// The publisher gives each sink its own bounded queue and task; [`EventSink::deliver`] is
/// called from that task only, one batch at a time, in publish order, so a sink sees each
/// user's events in order.
pub trait EventSink: Send + Sync + 'static {
    /// Short name used in metrics and logs (`socketio`, `kafka`).
    fn name(&self) -> &'static str;

    /// What the queue does when full.
    fn overflow_policy(&self) -> OverflowPolicy {
        OverflowPolicy::DropOldest
    }

    /// Delivers a batch. An error is logged and its events counted as dropped
    /// (`reason="delivery_failed"`); sinks that must not lose events retry inside.
    fn deliver(
        &self,
        batch: &[Arc<Envelope>],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}
