//! Connecting, topic administration, and [`KafkaProducer`]: envelopes -> records -> one
//! produce request per partition batch, acks=all.
//!
//! Each producer owns its own rskafka [`Client`]: a client must never be shared between a
//! long-polling fetch and produce, or the fetch's wait delays every produce.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use oa_events_core::Envelope;
use rskafka::BackoffConfig;
use rskafka::client::Client;
use rskafka::client::error::ProtocolError;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::task::JoinSet;

use crate::config::KafkaConfig;
use crate::error::{KafkaError, RsKafkaError};
use crate::partition_leaders::PartitionLeaders;
use crate::partitioner::partition_for_key;
use crate::topic_consumer::request_error;

/// Bytes a record adds to a batch beyond its key, value and header bytes (varint lengths,
/// deltas, attributes): an estimate used only to split batches.
const RECORD_OVERHEAD: usize = 24;

/// What [`ensure_topic`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// Its partition count.
    pub partitions: i32,
    /// True when this call created it.
    pub created: bool,
}

/// Runs `future` with the config's request timeout.
async fn bounded<T>(
    config: &KafkaConfig,
    what: &'static str,
    future: impl Future<Output = Result<T, KafkaError>>,
) -> Result<T, KafkaError> {
    match tokio::time::timeout(config.request_timeout, future).await {
        Ok(result) => result,
        Err(_) => Err(KafkaError::Timeout {
            brokers: config.bootstrap_list(),
            what,
            after: config.request_timeout,
        }),
    }
}

/// A new rskafka client for `config` (built by [`crate::client_builder`], so with its TLS
/// and SASL settings). Internal retries stop at the request timeout so that failures reach
/// the caller, which owns the retry policy.
///
/// With TLS or SASL configured, one attempt without retries comes first: when the brokers
/// refuse the login or the certificate, that fails at once with [`KafkaError::Refused`]
/// naming the cause, instead of retrying a refusal until the timeout.
pub async fn connect(config: &KafkaConfig) -> Result<Client, KafkaError> {
    config.validate()?;
    let backoff = BackoffConfig {
        init_backoff: config.retry_backoff,
        max_backoff: config.retry_backoff_max.min(Duration::from_secs(1)),
        base: 2.0,
        deadline: Some(config.request_timeout),
    };
    if config.security.protocol != crate::SecurityProtocol::Plaintext {
        let single_attempt = BackoffConfig {
            deadline: Some(Duration::ZERO),
            ..backoff.clone()
        };
        let probe = bounded(config, "metadata (connect)", async {
            build_client(config, single_attempt).await
        })
        .await;
        if let Err(KafkaError::Connect { source, .. }) = &probe
            && let Some(reason) =
                crate::security::explain_refusal(&config.security, &source.to_string())
        {
            return Err(KafkaError::Refused {
                brokers: config.bootstrap_list(),
                protocol: config.security.protocol,
                reason,
            });
        }
        // Accepted (or failing for another reason): the client for real use gets the normal
        // retry policy, which the probe's client does not have.
    }
    bounded(config, "metadata (connect)", build_client(config, backoff)).await
}

async fn build_client(config: &KafkaConfig, backoff: BackoffConfig) -> Result<Client, KafkaError> {
    crate::security::client_builder(config)
        .backoff_config(backoff)
        .build()
        .await
        .map_err(|source| KafkaError::Connect {
            brokers: config.bootstrap_list(),
            source,
        })
}

/// Checks that `topic` exists, creating it when `config.topic_creation.create_missing`
/// allows; otherwise fails with [`KafkaError::TopicMissing`] naming the topic and brokers.
/// Bounded by the request timeout (per request).
pub async fn ensure_topic(config: &KafkaConfig, topic: &str) -> Result<TopicInfo, KafkaError> {
    let client = connect(config).await?;
    ensure_topic_with(&client, config, topic).await
}

async fn topic_partitions(
    client: &Client,
    config: &KafkaConfig,
    topic: &str,
) -> Result<Option<i32>, KafkaError> {
    let topics = bounded(config, "metadata (list topics)", async {
        client
            .list_topics()
            .await
            .map_err(|source| request_error(config, "metadata", topic, source))
    })
    .await?;
    Ok(topics
        .into_iter()
        .find(|candidate| candidate.name == topic)
        .map(|found| found.partitions.len() as i32)
        .filter(|partitions| *partitions > 0))
}

/// [`ensure_topic`] with an existing client.
pub async fn ensure_topic_with(
    client: &Client,
    config: &KafkaConfig,
    topic: &str,
) -> Result<TopicInfo, KafkaError> {
    if let Some(partitions) = topic_partitions(client, config, topic).await? {
        return Ok(TopicInfo {
            name: topic.to_string(),
            partitions,
            created: false,
        });
    }
    let creation = config.topic_creation;
    if !creation.create_missing {
        return Err(KafkaError::TopicMissing {
            topic: topic.to_string(),
            brokers: config.bootstrap_list(),
        });
    }
    tracing::info!(
        topic,
        partitions = creation.partitions,
        replication_factor = creation.replication_factor,
        brokers = %config.bootstrap_list(),
        "creating Kafka topic"
    );
    let controller = client
        .controller_client()
        .map_err(|source| KafkaError::CreateTopic {
            topic: topic.to_string(),
            brokers: config.bootstrap_list(),
            source,
        })?;
    let timeout_ms = i32::try_from(config.request_timeout.as_millis()).unwrap_or(i32::MAX);
    let created = bounded(config, "create topic", async {
        controller
            .create_topic(
                topic,
                creation.partitions,
                creation.replication_factor,
                timeout_ms,
            )
            .await
            .map_err(|source| KafkaError::CreateTopic {
                topic: topic.to_string(),
                brokers: config.bootstrap_list(),
                source,
            })
    })
    .await;
    // Another process may have created it meanwhile: that is success too.
    let raced = matches!(
        &created,
        Err(KafkaError::CreateTopic {
            source: RsKafkaError::ServerError {
                protocol_error: ProtocolError::TopicAlreadyExists,
                ..
            },
            ..
        })
    );
    if !raced {
        created?;
    }
    // Metadata may lag the creation briefly.
    for _ in 0..50 {
        if let Some(partitions) = topic_partitions(client, config, topic).await? {
            return Ok(TopicInfo {
                name: topic.to_string(),
                partitions,
                created: !raced,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(KafkaError::TopicMissing {
        topic: topic.to_string(),
        brokers: config.bootstrap_list(),
    })
}

/// The Kafka record of an envelope: key = user id (`admin` for system events), value = the
/// JSON envelope, CloudEvents binary-mode headers, timestamp = the event's time.
pub fn envelope_record(envelope: &Envelope) -> Record {
    Record {
        key: Some(envelope.user_id.as_bytes().to_vec()),
        value: Some(envelope_json(envelope)),
        headers: envelope
            .cloudevents_headers()
            .into_iter()
            .map(|(name, value)| (name.to_string(), value.into_bytes()))
            .collect(),
        // Kafka timestamps are milliseconds. Truncate here: rskafka computes each record's
        // delta from the full-precision difference, which could land one millisecond early.
        timestamp: chrono::DateTime::from_timestamp_millis(envelope.timestamp.timestamp_millis())
            .unwrap_or(envelope.timestamp),
    }
}

/// [`Envelope::to_json_bytes`] into a buffer sized for a typical envelope up front, which
/// saves the chain of reallocations of a growing `Vec` on this hot path.
fn envelope_json(envelope: &Envelope) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(512);
    match serde_json::to_writer(&mut buffer, envelope) {
        Ok(()) => buffer,
        Err(_) => envelope.to_json_bytes(),
    }
}

/// The outcome of sending a set of events.
#[derive(Debug, Default)]
pub struct SendOutcome {
    /// Sequence numbers the broker acknowledged.
    pub acked: Vec<i64>,
    /// Sequence numbers the broker rejected for good (a record too large or invalid), with
    /// the reason. The relay sends them to the dead-letter topic instead.
    pub rejected: Vec<(i64, String)>,
    /// The first error that stopped a partition; its remaining events were not sent and
    /// must be retried later, in order.
    pub error: Option<KafkaError>,
}

/// Produces envelopes to the order-events topic.
///
/// Events are grouped by partition (murmur2 of the key, as the Java client), each group is
/// cut into batches of at most `batch_size` bytes, and batches of one partition are sent one
/// after the other (the next only after the previous was acknowledged) while partitions
/// proceed in parallel. A user's events therefore reach their partition in order, even
/// across retries.
pub struct KafkaProducer {
    config: Arc<KafkaConfig>,
    client: Client,
    topic: TopicInfo,
    leaders: PartitionLeaders,
}

impl std::fmt::Debug for KafkaProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProducer")
            .field("brokers", &self.config.bootstrap_servers)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaProducer {
    /// Connects to the bootstrap servers and checks (or creates, when allowed) the
    /// order-events topic.
    pub async fn connect(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let client = connect(config).await?;
        let topic = ensure_topic_with(&client, config, &config.order_events_topic).await?;
        Ok(KafkaProducer {
            config: Arc::new(config.clone()),
            client,
            topic,
            leaders: PartitionLeaders::new(&config.order_events_topic, UnknownTopicHandling::Retry),
        })
    }

    /// The topic and its partition count, as found when connecting.
    pub fn topic(&self) -> &TopicInfo {
        &self.topic
    }

    /// The partition an envelope goes to.
    pub fn partition_of(&self, envelope: &Envelope) -> i32 {
        partition_for_key(envelope.user_id.as_bytes(), self.topic.partitions)
    }

    async fn partition_client(&self, partition: i32) -> Result<Arc<PartitionClient>, KafkaError> {
        let leader = self.leaders.get(&self.client, &self.config, partition);
        bounded(&self.config, "metadata (partition leader)", leader).await
    }

    /// Sends envelopes in order and waits for every acknowledgement; stops at the first
    /// error. Convenience for services without an outbox.
    pub async fn send(&mut self, envelopes: &[Arc<Envelope>]) -> Result<(), KafkaError> {
        let rows: Vec<(i64, Arc<Envelope>)> = envelopes
            .iter()
            .enumerate()
            .map(|(index, envelope)| (index as i64, Arc::clone(envelope)))
            .collect();
        let outcome = self.send_rows(rows).await;
        match outcome.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Sends `(seq, envelope)` rows, given in outbox order, and reports which were
    /// acknowledged, which were rejected for good, and the error that stopped the rest.
    pub async fn send_rows(&mut self, rows: Vec<(i64, Arc<Envelope>)>) -> SendOutcome {
        let mut groups: BTreeMap<i32, Vec<(i64, Arc<Envelope>)>> = BTreeMap::new();
        for (seq, envelope) in rows {
            let partition = self.partition_of(&envelope);
            groups.entry(partition).or_default().push((seq, envelope));
        }
        let mut outcome = SendOutcome::default();
        let mut work = Vec::with_capacity(groups.len());
        for (partition, group) in groups {
            match self.partition_client(partition).await {
                Ok(client) => work.push((client, group)),
                Err(error) => {
                    outcome.error.get_or_insert(error);
                }
            }
        }
        // One task per partition: record encoding and compression use every worker thread.
        // Dropping the set (the relay stopping) aborts the sends still in flight.
        let mut tasks = JoinSet::new();
        for (client, group) in work {
            let config = Arc::clone(&self.config);
            tasks.spawn(async move { send_partition(&config, &client, &group).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => {
                    outcome.acked.extend(result.acked);
                    outcome.rejected.extend(result.rejected);
                    if let Some(error) = result.error {
                        outcome.error.get_or_insert(error);
                    }
                }
                Err(error) => {
                    // A panicked send: its rows stay pending and are retried.
                    outcome
                        .error
                        .get_or_insert(KafkaError::Internal(error.to_string()));
                }
            }
        }
        outcome
    }
}

/// True for broker errors that say this record (or batch) can never be accepted.
fn is_rejection(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::Request {
            source: RsKafkaError::ServerError {
                protocol_error: ProtocolError::MessageTooLarge
                    | ProtocolError::RecordListTooLarge
                    | ProtocolError::InvalidRecord,
                ..
            },
            ..
        }
    )
}

async fn produce(
    config: &KafkaConfig,
    client: &PartitionClient,
    records: Vec<Record>,
) -> Result<(), KafkaError> {
    bounded(config, "produce", async {
        client
            .produce(records, config.compression.to_rskafka())
            .await
            .map(|_offsets| ())
            .map_err(|source| request_error(config, "produce", client.topic(), source))
    })
    .await
}

/// Sends one partition's rows batch after batch; stops at the first failure.
async fn send_partition(
    config: &KafkaConfig,
    client: &PartitionClient,
    group: &[(i64, Arc<Envelope>)],
) -> SendOutcome {
    let mut outcome = SendOutcome::default();
    let mut records: Vec<Record> = group
        .iter()
        .map(|(_, envelope)| envelope_record(envelope))
        .collect();
    let mut start = 0;
    while start < group.len() {
        // Cut the next batch: at least one record, at most batch_size bytes.
        let mut end = start;
        let mut bytes = 0;
        while end < group.len() {
            let size = records[end - start].approximate_size() + RECORD_OVERHEAD;
            if end > start && bytes + size > config.batch_size {
                break;
            }
            bytes += size;
            end += 1;
        }
        let batch: Vec<Record> = records.drain(..end - start).collect();
        let rows = &group[start..end];
        match produce(config, client, batch).await {
            Ok(()) => outcome.acked.extend(rows.iter().map(|(seq, _)| *seq)),
            Err(error) if is_rejection(&error) => {
                // Find the offending record(s): send the batch one record at a time.
                for (seq, envelope) in rows {
                    match produce(config, client, vec![envelope_record(envelope)]).await {
                        Ok(()) => outcome.acked.push(*seq),
                        Err(error) if is_rejection(&error) => {
                            tracing::warn!(
                                event_id = %envelope.id,
                                event_type = envelope.event_type(),
                                %error,
                                "Kafka rejected an event for good"
                            );
                            outcome.rejected.push((*seq, error.to_string()));
                        }
                        Err(error) => {
                            outcome.error = Some(error);
                            return outcome;
                        }
                    }
                }
            }
            Err(error) => {
                outcome.error = Some(error);
                return outcome;
            }
        }
        start = end;
    }
    outcome
}
