//! [`OrderEventConsumer`]: oa's events topic (`KAFKA_ORDER_EVENTS_TOPIC`) read back as typed
//! [`Envelope`]s, for services such as a risk engine.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use oa_events_core::EventPayload;
//! use oa_events_kafka::{FileOffsetStore, KafkaConfig, OrderEventConsumer, StartPosition};
//! use oa_events_kafka::config::AutoOffsetReset;
//!
//! let config = KafkaConfig::from_env()?; // KAFKA_BOOTSTRAP_SERVERS, security, topic
//! let store = Arc::new(FileOffsetStore::open("risk-offsets.json")?);
//! let start = StartPosition::Stored { otherwise: AutoOffsetReset::Earliest };
//! let mut events = OrderEventConsumer::start(config, store, start)?;
//! while let Some(item) = events.next().await {
//!     match item {
//!         Ok(event) => {
//!             if let EventPayload::OrderUpdate(update) = &event.envelope.data {
//!                 println!("{} {} {}", event.envelope.user_id, update.orderid, update.order_status);
//!             }
//!         }
//!         Err(undecodable) => eprintln!("{undecodable}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Delivery is at least once and in order per user (oa keys every record by user id, so one
//! user's events are on one partition). An event counts as processed when the caller asks for
//! the next one: only then is its offset saved, so after a crash the events since the last
//! save come again (the envelope `id` identifies a duplicate). A record that is not an oa
//! envelope is returned as an [`UndecodableRecord`] with its partition, offset and the
//! reason; it is never skipped silently and never stops the consumer.
//!
//! The consumer is also a [`Stream`] of the same items, for stream
//! combinators:
//!
//! ```no_run
//! # async fn run(events: oa_events_kafka::OrderEventConsumer) {
//! use futures_util::StreamExt;
//! let users = events.filter_map(|item| async move { item.ok() });
//! let mut users = std::pin::pin!(users.map(|event| event.envelope.user_id));
//! while let Some(user) = users.next().await {
//!     println!("an event of {user}");
//! }
//! # }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use oa_events_core::Envelope;
use tokio::sync::{mpsc, oneshot};

use crate::config::KafkaConfig;
use crate::error::ConfigError;
use crate::offsets::OffsetStore;
use crate::topic_consumer::{
    ConsumedRecord, ConsumerHandle, ConsumerMonitor, ConsumerOptions, Handled, Handling,
    RecordHandler, StartPosition, StopSignal, TopicConsumer,
};

/// An oa event read from the events topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedEvent {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The decoded envelope: id, timestamp, user and the typed payload
    /// ([`oa_events_core::EventPayload`]).
    pub envelope: Envelope,
}

/// A record of the events topic that is not an oa envelope (not JSON, an unknown
/// `event_type`, a payload that does not match the catalog, an unsupported version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record at offset {offset} of {topic}/{partition} is not an oa event envelope: {reason}")]
pub struct UndecodableRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Why it could not be decoded.
    pub reason: String,
    /// The record's value as read (`None` when it had none).
    pub value: Option<Vec<u8>>,
}

/// Decodes a record of the events topic.
pub fn decode_event(record: &ConsumedRecord) -> Result<ConsumedEvent, UndecodableRecord> {
    let undecodable = |reason: String| UndecodableRecord {
        topic: record.topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        reason,
        value: record.record.value.clone(),
    };
    let value = record
        .record
        .value
        .as_deref()
        .ok_or_else(|| undecodable("the record has no value".to_string()))?;
    let envelope =
        Envelope::from_json_slice(value).map_err(|error| undecodable(error.to_string()))?;
    Ok(ConsumedEvent {
        partition: record.partition,
        offset: record.offset,
        envelope,
    })
}

/// What one partition hands to the caller, with the acknowledgement it waits for.
struct Delivery {
    item: Result<ConsumedEvent, UndecodableRecord>,
    processed: oneshot::Sender<()>,
}

/// The handler that passes decoded records to [`OrderEventConsumer::next`].
struct Forward {
    deliveries: mpsc::Sender<Delivery>,
}

impl RecordHandler for Forward {
    fn handle<'a>(&'a self, record: &'a ConsumedRecord, stop: &'a mut StopSignal) -> Handling<'a> {
        Box::pin(async move {
            let (processed, acknowledged) = oneshot::channel();
            let delivery = Delivery {
                item: decode_event(record),
                processed,
            };
            tokio::select! {
                sent = self.deliveries.send(delivery) => {
                    if sent.is_err() {
                        return Ok(Handled::Stopped); // the caller dropped the consumer
                    }
                }
                () = stop.stopped() => return Ok(Handled::Stopped),
            }
            // An acknowledgement sent just before a shutdown still counts.
            tokio::select! {
                biased;
                acknowledged = acknowledged => Ok(if acknowledged.is_ok() {
                    Handled::Processed
                } else {
                    Handled::Stopped
                }),
                () = stop.stopped() => Ok(Handled::Stopped),
            }
        })
    }
}

/// Reads oa's events topic: every partition, typed envelopes, offsets in an
/// [`OffsetStore`], start position chosen by the caller (module docs for an example).
#[derive(Debug)]
pub struct OrderEventConsumer {
    deliveries: mpsc::Receiver<Delivery>,
    /// Acknowledges the event returned last, when the next one is asked for.
    returned: Option<oneshot::Sender<()>>,
    handle: ConsumerHandle,
}

/// The consumer as a [`Stream`] of events: the same items, order and acknowledgement as
/// [`OrderEventConsumer::next`] (polling for the next item marks the one returned before as
/// processed), so stream combinators (`filter_map`, `take`, `chunks`, ...) apply.
impl Stream for OrderEventConsumer {
    type Item = Result<ConsumedEvent, UndecodableRecord>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(processed) = this.returned.take() {
            let _ = processed.send(());
        }
        match this.deliveries.poll_recv(cx) {
            Poll::Ready(Some(delivery)) => {
                this.returned = Some(delivery.processed);
                Poll::Ready(Some(delivery.item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("item", &self.item)
            .finish_non_exhaustive()
    }
}

impl OrderEventConsumer {
    /// Starts reading `config.order_events_topic` (`KAFKA_ORDER_EVENTS_TOPIC`) with the
    /// brokers and TLS/SASL settings of `config`, keeping offsets in `store`, from `start`.
    /// Must be called within a Tokio runtime; fails only on an invalid `config`. Broker
    /// problems are logged (tracing) and retried.
    pub fn start(
        config: KafkaConfig,
        store: Arc<dyn OffsetStore>,
        start: StartPosition,
    ) -> Result<Self, ConfigError> {
        let topic = config.order_events_topic.clone();
        let options = ConsumerOptions {
            name: "order events".to_string(),
            ..ConsumerOptions::default()
        };
        Self::from_consumer(
            TopicConsumer::new(config, topic, store)
                .start_at(start)
                .with_options(options),
        )
    }

    /// Starts `consumer` (any topic carrying oa envelopes, any tuning) as a typed consumer.
    pub fn from_consumer(consumer: TopicConsumer) -> Result<Self, ConfigError> {
        // One slot per partition would do; a few more let partitions run ahead a little.
        let (sender, deliveries) = mpsc::channel(64);
        let handle = consumer.spawn(Arc::new(Forward { deliveries: sender }))?;
        Ok(OrderEventConsumer {
            deliveries,
            returned: None,
            handle,
        })
    }

    /// The next event, in order per partition (per user); waits for one. Asking for it marks
    /// the event returned before as processed (its offset is saved soon after). `None` only
    /// once the consumer has stopped.
    pub async fn next(&mut self) -> Option<Result<ConsumedEvent, UndecodableRecord>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The consumer's counters (records, failures, partitions resumed from the earliest
    /// offset).
    pub fn monitor(&self) -> ConsumerMonitor {
        self.handle.monitor()
    }

    /// Marks the event returned last as processed and stops, saving offsets (up to
    /// `timeout`).
    pub async fn shutdown(mut self, timeout: Duration) {
        if let Some(processed) = self.returned.take() {
            let _ = processed.send(());
        }
        // Let the partition that waited for this acknowledgement record it before stopping.
        tokio::task::yield_now().await;
        self.handle.shutdown(timeout).await;
    }
}
