//! [`EventDeadLetters`]: where the relay puts an event the broker refuses for good (larger than
//! the broker allows, or invalid for it): `<KAFKA_ORDER_EVENTS_TOPIC>.dlq`, instead of dropping
//! it.
//!
//! The dead letter names the event and the reason; it does not repeat the event (a record the
//! broker found too large would be refused again). The event itself stays in the outbox table
//! for `OA_OUTBOX_RETENTION_HOURS`, marked delivered.

use std::collections::HashMap;
use std::sync::Arc;

use oa_events_core::Envelope;
use rskafka::client::Client;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::json;

use crate::config::KafkaConfig;
use crate::error::KafkaError;
use crate::esb::{DLQ_REASON_HEADER, DLQ_TOPIC_HEADER, dlq_topic};
use crate::partitioner::partition_for_key;
use crate::producer::{connect, ensure_topic_with, envelope_record};

/// Producer of the events topic's dead-letter topic, with its own client.
pub struct EventDeadLetters {
    config: KafkaConfig,
    topic: String,
    partitions: i32,
    client: Client,
    partition_clients: HashMap<i32, Arc<PartitionClient>>,
}

impl std::fmt::Debug for EventDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDeadLetters")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl EventDeadLetters {
    /// Connects and checks (or creates, when `KAFKA_CREATE_TOPICS` allows) the dead-letter
    /// topic of `config.order_events_topic`.
    pub async fn connect(config: &KafkaConfig) -> Result<EventDeadLetters, KafkaError> {
        let topic = dlq_topic(&config.order_events_topic);
        let client = connect(config).await?;
        let info = ensure_topic_with(&client, config, &topic).await?;
        Ok(EventDeadLetters {
            config: config.clone(),
            topic,
            partitions: info.partitions,
            client,
            partition_clients: HashMap::new(),
        })
    }

    /// The dead-letter topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    async fn partition_client(
        &mut self,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, KafkaError> {
        if let Some(client) = self.partition_clients.get(&partition) {
            return Ok(Arc::clone(client));
        }
        let client = self
            .client
            .partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|source| KafkaError::Request {
                what: "metadata (partition leader)",
                topic: self.topic.clone(),
                brokers: self.config.bootstrap_list(),
                source,
            })?;
        let client = Arc::new(client);
        self.partition_clients
            .insert(partition, Arc::clone(&client));
        Ok(client)
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
            "topic": self.config.order_events_topic,
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
            self.config.order_events_topic.as_bytes().to_vec(),
        );
        let record = Record {
            key: original.key.clone(),
            value: Some(value.to_string().into_bytes()),
            headers,
            timestamp: chrono::Utc::now(),
        };
        let partition = partition_for_key(envelope.user_id.as_bytes(), self.partitions);
        let client = self.partition_client(partition).await?;
        let timeout = self.config.request_timeout;
        let produced = tokio::time::timeout(
            timeout,
            client.produce(vec![record], self.config.compression.to_rskafka()),
        )
        .await;
        match produced {
            Ok(Ok(_offsets)) => Ok(()),
            Ok(Err(source)) => Err(KafkaError::Request {
                what: "produce (dead letter)",
                topic: self.topic.clone(),
                brokers: self.config.bootstrap_list(),
                source,
            }),
            Err(_) => Err(KafkaError::Timeout {
                brokers: self.config.bootstrap_list(),
                what: "produce (dead letter)",
                after: timeout,
            }),
        }
    }
}
