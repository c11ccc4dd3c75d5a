//! [`EventDeadLetters`]: where the relay puts an event the broker refuses for good (larger than
//! the broker allows, or invalid for it): `<KAFKA_ORDER_EVENTS_TOPIC>.dlq`, instead of dropping
//! it.
//!
//! The dead letter names the event and the reason; it does not repeat the event (a record the
//! broker found too large would be refused again). The event itself stays in the outbox table
//! for `OA_OUTBOX_RETENTION_HOURS`, marked delivered.

use std::time::Duration;

use oa_events_core::Envelope;
use rskafka::client::Client;
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::record::Record;
use serde_json::json;

use crate::config::KafkaConfig;
use crate::error::KafkaError;
use crate::esb::{DLQ_REASON_HEADER, DLQ_TOPIC_HEADER, dlq_topic};
use crate::partition_leaders::PartitionLeaders;
use crate::partitioner::partition_for_key;
use crate::producer::{connect, ensure_topic_with, envelope_record};
use crate::topic_consumer::{bounded, request_error};

/// A dead-letter topic with a client of its own: writes one record at a time, each within
/// `KAFKA_REQUEST_TIMEOUT_MS`. Partition leaders are looked up on first use and kept.
pub(crate) struct DeadLetterTopic {
    config: KafkaConfig,
    partitions: i32,
    client: Client,
    leaders: PartitionLeaders,
}

impl std::fmt::Debug for DeadLetterTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} partitions)", self.name(), self.partitions)
    }
}

impl DeadLetterTopic {
    /// Connects and checks (or creates, when `KAFKA_CREATE_TOPICS` allows) the topic `name`.
    pub(crate) async fn connect(config: &KafkaConfig, name: String) -> Result<Self, KafkaError> {
        let client = connect(config).await?;
        let info = ensure_topic_with(&client, config, &name).await?;
        Ok(DeadLetterTopic {
            config: config.clone(),
            partitions: info.partitions,
            client,
            leaders: PartitionLeaders::new(name, UnknownTopicHandling::Retry),
        })
    }

    /// The topic's name.
    pub(crate) fn name(&self) -> &str {
        self.leaders.topic()
    }

    /// The topic's partition count, as found when connecting.
    pub(crate) fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Writes `record` to `partition` and waits for the acknowledgement.
    pub(crate) async fn write(&self, partition: i32, record: Record) -> Result<(), KafkaError> {
        let leader = self
            .leaders
            .get(&self.client, &self.config, partition)
            .await?;
        let what = "produce (dead letter)";
        bounded(&self.config, Duration::ZERO, what, async {
            leader
                .produce(vec![record], self.config.compression.to_rskafka())
                .await
                .map(|_offsets| ())
                .map_err(|source| request_error(&self.config, what, self.name(), source))
        })
        .await
    }
}

/// Producer of the events topic's dead-letter topic, with its own client.
#[derive(Debug)]
pub struct EventDeadLetters {
    /// `KAFKA_ORDER_EVENTS_TOPIC`, named in every dead letter.
    events_topic: String,
    topic: DeadLetterTopic,
}

impl EventDeadLetters {
    /// Connects and checks (or creates, when `KAFKA_CREATE_TOPICS` allows) the dead-letter
    /// topic of `config.order_events_topic`.
    pub async fn connect(config: &KafkaConfig) -> Result<EventDeadLetters, KafkaError> {
        let topic = DeadLetterTopic::connect(config, dlq_topic(&config.order_events_topic)).await?;
        Ok(EventDeadLetters {
            events_topic: config.order_events_topic.clone(),
            topic,
        })
    }

    /// The dead-letter topic's name.
    pub fn topic(&self) -> &str {
        self.topic.name()
    }

    /// Writes one dead letter for `envelope` (key = its user, value = its id, type, user,
    /// time, size and `reason`; headers `ce_id`, `ce_type`, `oa_dlq_reason`, `oa_dlq_topic`)
    /// and waits for the acknowledgement.
    pub async fn send(&mut self, envelope: &Envelope, reason: &str) -> Result<(), KafkaError> {
        let original = envelope_record(envelope);
        let size = original.approximate_size();
        let value = json!({
            "id": envelope.id.to_string(),
            "event_type": envelope.event_type(),
            "user_id": envelope.user_id,
            "timestamp": envelope.timestamp_rfc3339(),
            "topic": self.events_topic,
            "record_bytes": size,
            "reason": reason,
        });
        let mut headers = std::collections::BTreeMap::new();
        for name in ["ce_id", "ce_type"] {
            if let Some(value) = original.headers.get(name) {
                headers.insert(name.to_string(), value.clone());
            }
        }
        headers.insert(DLQ_REASON_HEADER.to_string(), reason.as_bytes().to_vec());
        headers.insert(
            DLQ_TOPIC_HEADER.to_string(),
            self.events_topic.as_bytes().to_vec(),
        );
        let record = Record {
            key: original.key.clone(),
            value: Some(value.to_string().into_bytes()),
            headers,
            timestamp: chrono::Utc::now(),
        };
        let partition = partition_for_key(envelope.user_id.as_bytes(), self.topic.partitions());
        self.topic.write(partition, record).await
    }
}
