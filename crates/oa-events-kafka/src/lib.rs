#![doc = include_str!("../README.md")]
//!
//! Modules and main types:
//!
//! - [`KafkaConfig`]: every `KAFKA_*` setting, plus topic creation and retry settings, with
//!   clear errors for bad values;
//! - [`security`]: TLS and SASL for every connection ([`client_builder`] is the only way a
//!   client is built);
//! - [`ensure_topic`]: the start-up check (topic exists, or is created when
//!   `KAFKA_CREATE_TOPICS` allows; otherwise an error naming the topic and the brokers);
//! - [`KafkaProducer`]: envelopes -> records (key = user id, value = JSON envelope,
//!   CloudEvents headers), partition = murmur2(key) like the Java client, batches of at
//!   most `KAFKA_PRODUCER_BATCH_SIZE` bytes, configured compression, acks=all;
//! - [`Outbox`]: the durable store of events awaiting Kafka (the server's SQLite store
//!   implements it; [`MemoryOutbox`] is a non-durable one);
//! - [`KafkaRelay`]: drains the outbox in order, retries until the broker acknowledges, marks
//!   rows delivered; [`KafkaSink`] is the [`oa_events_core::EventSink`] that feeds it.
//!
//! - [`EsbConsumer`]: consumes commands from external systems on `KAFKA_ESB_EVENTS_TOPIC`,
//!   runs them through a [`CommandExecutor`] the server provides (at most once per command
//!   id, offsets kept in the server's store) and dead-letters what it cannot process to
//!   `<topic>.dlq` (docs/esb.md). [`esb_auth`] authenticates each command (HMAC-SHA256
//!   signatures, `KAFKA_ESB_SIGNING_KEYS`) and gives producers [`esb_auth::sign`].
//!
//! - [`TopicConsumer`]: reads every partition of one topic (rskafka's stream consumer) into
//!   a [`RecordHandler`], with offsets in an [`OffsetStore`] ([`FileOffsetStore`],
//!   [`MemoryOffsetStore`], `SqliteOffsetStore` with the `sqlite` feature) and a start
//!   position the caller chooses ([`StartPosition`]); the ESB consumer runs on it.
//! - [`OrderEventConsumer`]: oa's events topic read back as typed envelopes, for other
//!   services (a risk engine; `examples/risk_service.rs`). Undecodable records come back as
//!   [`UndecodableRecord`] errors.
//! - [`PartitionReader`]: reads a range of one partition on demand (an oa edge reading back
//!   what a reconnecting client missed).
//!
//! Delivery promise: at least once, per-user order kept (one key -> one partition, one
//! in-flight batch per partition), duplicates only with the same envelope `id`.
//! See docs/kafka.md for the wire contract and operations.

pub mod config;
pub mod dead_letter;
pub mod error;
pub mod esb;
pub mod esb_auth;
pub mod offsets;
pub mod order_events;
pub mod outbox;
mod partition_leaders;
pub mod partition_reader;
pub mod partitioner;
pub mod producer;
pub mod relay;
pub mod security;
pub mod topic_consumer;

pub use config::{Acks, AutoOffsetReset, Compression, KafkaConfig, TopicCreation};
pub use error::{ConfigError, KafkaError};
pub use esb::{
    CommandExecutor, DeadLetterCode, EsbConsumer, EsbMessage, EsbMonitor, EsbOptions, EsbPosition,
    EsbStats, Execution, ExecutorError,
};
pub use esb_auth::{EsbAuth, EsbSecurity, SigningKeys};
#[cfg(feature = "sqlite")]
pub use offsets::SqliteOffsetStore;
pub use offsets::{
    FileOffsetStore, MemoryOffsetStore, OffsetFuture, OffsetStore, OffsetStoreError, TopicPartition,
};
pub use order_events::{ConsumedEvent, OrderEventConsumer, UndecodableRecord, decode_event};
pub use outbox::{MemoryOutbox, Outbox, OutboxError, OutboxRecord};
pub use partition_reader::{PartitionBounds, PartitionReader};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{
    KafkaProducer, SendOutcome, TopicInfo, connect, ensure_topic, ensure_topic_with,
    envelope_record,
};
pub use relay::{KafkaRelay, KafkaSink, OUTBOX_SINK_NAME, RELAY_SINK_LABEL, RelayStats};
pub use security::{
    EndpointIdentification, SaslLogin, SaslMechanism, Secret, SecurityConfig, SecurityProtocol,
    TlsSettings, client_builder,
};
pub use topic_consumer::{
    ConsumedRecord, ConsumerHandle, ConsumerMonitor, ConsumerOptions, ConsumerStats, Handled,
    Handling, RecordHandler, StartPosition, StopSignal, TopicConsumer,
};

/// The rskafka version this crate is built on, re-exported for callers that need its types
/// (for example a consumer built from [`connect`]'s client).
pub use rskafka;
