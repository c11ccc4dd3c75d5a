//! Partition clients: a metadata request finds a partition's leader, whose client then serves
//! the partition's produce, fetch and list-offsets requests.

use std::collections::HashMap;
use std::sync::Arc;

use rskafka::client::Client;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use tokio::sync::Mutex;

use crate::config::KafkaConfig;
use crate::error::KafkaError;
use crate::topic_consumer::request_error;

/// The client of `partition` of `topic`, from a metadata request for its leader.
pub(crate) async fn partition_leader(
    client: &Client,
    config: &KafkaConfig,
    topic: &str,
    partition: i32,
    unknown_topic: UnknownTopicHandling,
) -> Result<PartitionClient, KafkaError> {
    client
        .partition_client(topic.to_string(), partition, unknown_topic)
        .await
        .map_err(|source| request_error(config, "metadata (partition leader)", topic, source))
}

/// The partition clients of one topic, each looked up on first use and kept.
#[derive(Debug)]
pub(crate) struct PartitionLeaders {
    topic: String,
    unknown_topic: UnknownTopicHandling,
    clients: Mutex<HashMap<i32, Arc<PartitionClient>>>,
}

impl PartitionLeaders {
    /// None looked up yet; `unknown_topic` says whether a lookup waits for a missing topic.
    pub(crate) fn new(topic: impl Into<String>, unknown_topic: UnknownTopicHandling) -> Self {
        PartitionLeaders {
            topic: topic.into(),
            unknown_topic,
            clients: Mutex::default(),
        }
    }

    /// The topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The client of `partition`, looked up through `client` when not known yet. Concurrent
    /// calls may look the same partition up twice; the first answer is kept.
    pub(crate) async fn get(
        &self,
        client: &Client,
        config: &KafkaConfig,
        partition: i32,
    ) -> Result<Arc<PartitionClient>, KafkaError> {
        if let Some(known) = self.clients.lock().await.get(&partition) {
            return Ok(Arc::clone(known));
        }
        let found = partition_leader(client, config, &self.topic, partition, self.unknown_topic);
        let found = Arc::new(found.await?);
        let mut clients = self.clients.lock().await;
        Ok(Arc::clone(clients.entry(partition).or_insert(found)))
    }

    /// Forgets every client (after a connection failure).
    pub(crate) async fn clear(&self) {
        self.clients.lock().await.clear();
    }
}
