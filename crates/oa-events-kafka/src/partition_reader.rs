//! [`PartitionReader`]: reads a range of one partition on demand, and a partition's bounds.
//! An oa edge reads back with it the events a reconnecting client missed, wherever it was
//! connected before (docs/scaling.md).
//!
//! The connection is opened on first use and opened again after a failure; every request
//! is bounded by `KAFKA_REQUEST_TIMEOUT_MS`. Nothing is retried here: the caller decides.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use tokio::sync::Mutex;

use crate::config::KafkaConfig;
use crate::error::KafkaError;
use crate::partition_leaders::PartitionLeaders;
use crate::producer::{TopicInfo, connect, ensure_topic_with};
use crate::topic_consumer::{ConsumedRecord, bounded, request_error};

/// The offsets a partition holds: `earliest..high_watermark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionBounds {
    /// The oldest offset still retained.
    pub earliest: i64,
    /// The offset the next produced record gets.
    pub high_watermark: i64,
}

/// Most bytes one fetch of [`PartitionReader::scan`] returns.
const FETCH_MAX_BYTES: i32 = 1 << 20;

/// Reads one topic's partitions on demand. Cheap to share (`Arc`); calls may overlap.
pub struct PartitionReader {
    config: KafkaConfig,
    /// Connected on first use.
    client: Mutex<Option<Arc<Client>>>,
    leaders: PartitionLeaders,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionReader")
            .field("topic", &self.topic())
            .field("brokers", &self.config.bootstrap_list())
            .finish_non_exhaustive()
    }
}

impl PartitionReader {
    /// A reader of `topic` with the brokers and security of `config`; connects on first use.
    pub fn new(config: KafkaConfig, topic: impl Into<String>) -> Self {
        PartitionReader {
            config,
            client: Mutex::default(),
            leaders: PartitionLeaders::new(topic, UnknownTopicHandling::Error),
        }
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        self.leaders.topic()
    }

    async fn client(&self) -> Result<Arc<Client>, KafkaError> {
        let mut connected = self.client.lock().await;
        if let Some(client) = &*connected {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(connect(&self.config).await?);
        *connected = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn partition(&self, partition: i32) -> Result<Arc<PartitionClient>, KafkaError> {
        let client = self.client().await?;
        let leader = self.leaders.get(&client, &self.config, partition);
        bounded(
            &self.config,
            Duration::ZERO,
            "metadata (partition leader)",
            leader,
        )
        .await
    }

    /// Forgets the connection after a failure: the next call connects again.
    async fn forget(&self) {
        *self.client.lock().await = None;
        self.leaders.clear().await;
    }

    async fn forgetting_on_error<T>(&self, result: Result<T, KafkaError>) -> Result<T, KafkaError> {
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    /// The topic's partition count (the topic must exist; it is created when
    /// `KAFKA_CREATE_TOPICS` allows).
    pub async fn topic_info(&self) -> Result<TopicInfo, KafkaError> {
        let result = async {
            let client = self.client().await?;
            ensure_topic_with(&client, &self.config, self.topic()).await
        }
        .await;
        self.forgetting_on_error(result).await
    }

    /// The offsets `partition` holds now.
    pub async fn bounds(&self, partition: i32) -> Result<PartitionBounds, KafkaError> {
        let result = async {
            let client = self.partition(partition).await?;
            let earliest = self.earliest(&client).await?;
            let (_, high_watermark) = self.fetch(&client, earliest, 1).await?;
            Ok(PartitionBounds {
                earliest,
                high_watermark: high_watermark.max(earliest),
            })
        }
        .await;
        self.forgetting_on_error(result).await
    }

    /// Hands `visit` every record of `partition` at offsets `from..until` that is still
    /// retained, in offset order, and returns the partition's earliest offset (the part of
    /// the range before it is gone). Stops early at the partition's end.
    pub async fn scan(
        &self,
        partition: i32,
        from: i64,
        until: i64,
        mut visit: impl FnMut(ConsumedRecord) + Send,
    ) -> Result<i64, KafkaError> {
        let result = async {
            let client = self.partition(partition).await?;
            let earliest = self.earliest(&client).await?;
            let topic: Arc<str> = Arc::from(self.topic());
            let mut next = from.max(earliest);
            while next < until {
                let (records, high_watermark) = self.fetch(&client, next, FETCH_MAX_BYTES).await?;
                let mut advanced = false;
                for record in records {
                    // A fetch returns whole batches: the first may start before `next`.
                    if record.offset < next || record.offset >= until {
                        continue;
                    }
                    next = record.offset + 1;
                    advanced = true;
                    visit(ConsumedRecord {
                        topic: Arc::clone(&topic),
                        partition,
                        offset: record.offset,
                        high_watermark,
                        record: record.record,
                    });
                }
                if !advanced || next >= high_watermark {
                    break;
                }
            }
            Ok(earliest)
        }
        .await;
        self.forgetting_on_error(result).await
    }

    async fn earliest(&self, client: &PartitionClient) -> Result<i64, KafkaError> {
        bounded(&self.config, Duration::ZERO, "list offsets", async {
            client
                .get_offset(OffsetAt::Earliest)
                .await
                .map_err(|source| request_error(&self.config, "list offsets", self.topic(), source))
        })
        .await
    }

    /// One fetch at `offset` that does not wait for new records.
    async fn fetch(
        &self,
        client: &PartitionClient,
        offset: i64,
        max_bytes: i32,
    ) -> Result<(Vec<rskafka::record::RecordAndOffset>, i64), KafkaError> {
        bounded(&self.config, Duration::ZERO, "fetch", async {
            client
                .fetch_records(offset, 1..max_bytes.max(2), 0)
                .await
                .map_err(|source| request_error(&self.config, "fetch", self.topic(), source))
        })
        .await
    }
}
