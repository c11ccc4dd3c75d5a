//! The ESB consumer: commands from external systems on `KAFKA_ESB_EVENTS_TOPIC`
//! (docs/esb.md).
//!
//! ```text
//! ESB topic ─▶ TopicConsumer (one task per partition, short max-wait; crate::topic_consumer)
//!     ─▶ verify the oa_signature header (esb_auth) ── unauthenticated ──▶ <topic>.dlq
//!     ─▶ parse the envelope, check its timestamp ── invalid / expired ──▶ <topic>.dlq
//!     └▶ CommandExecutor::execute (user allowed? rate limit; idempotent by id; result +
//!        offset stored atomically)
//!          └─ rejected (unauthenticated user, rate limited, invalid data) ──▶ <topic>.dlq
//!   every dead letter is then recorded with CommandExecutor::reject (offset stored)
//! ```
//!
//! The partitions are read by [`TopicConsumer`], like any other topic. rskafka has no
//! consumer groups: offsets live in the executor's store, keyed by (`KAFKA_CONSUMER_GROUP`,
//! topic, partition), and are written in the same transaction as the command's result (the
//! handler answers [`Handled::Committed`]). This crate does not know what a command does: the server implements
//! [`CommandExecutor`] with its order service.
//!
//! A record is dead-lettered before its offset is stored, so a crash never loses a dead
//! letter (it may write one twice). A failure of the executor's store retries the same record
//! with back-off; the partition never moves past a record that was neither executed nor
//! dead-lettered, and a bad record never stalls it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
pub use oa_events_core::EsbPosition;
use oa_events_core::catalog::{ESB_ACKNOWLEDGMENT, ESB_COMMANDS};
use oa_events_core::envelope::ENVELOPE_VERSION;
use rskafka::record::Record;
use serde_json::{Map, Value};

use crate::config::KafkaConfig;
use crate::dead_letter::DeadLetterTopic;
use crate::error::{ConfigError, KafkaError};
use crate::esb_auth::{EsbSecurity, Refusal, SIGNATURE_HEADER};
use crate::offsets::OffsetStore;
use crate::partitioner::partition_for_key;
use crate::producer::TopicInfo;
use crate::topic_consumer::{
    ConsumedRecord, ConsumerHandle, ConsumerMonitor, ConsumerOptions, Handled, Handling,
    RecordHandler, StartPosition, StopSignal, TopicConsumer, retry_backoff, sleep_unless_stopped,
};

/// Longest accepted command `id`.
pub const MAX_ID_LEN: usize = 200;

/// Header names of a dead letter: why, as `<code>: <explanation>`.
pub const DLQ_REASON_HEADER: &str = "oa_dlq_reason";
/// The dead letter's [`DeadLetterCode`] alone (`unauthenticated`, `expired`, ...).
pub const DLQ_CODE_HEADER: &str = "oa_dlq_code";
/// The inbound topic of a dead letter.
pub const DLQ_TOPIC_HEADER: &str = "oa_dlq_topic";
/// The inbound partition of a dead letter (decimal).
pub const DLQ_PARTITION_HEADER: &str = "oa_dlq_partition";
/// The inbound offset of a dead letter (decimal).
pub const DLQ_OFFSET_HEADER: &str = "oa_dlq_offset";

/// The dead-letter topic of an inbound topic: `<topic>.dlq`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Why a record was dead-lettered: the `oa_dlq_code` header, and the start of
/// `oa_dlq_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterCode {
    /// Not a readable command: not JSON, a missing or mistyped field, an unknown
    /// `event_type`, a signed command without `timestamp`, or `data` that fails the REST
    /// validation.
    Invalid,
    /// No signature, a malformed one, an unknown key id or a wrong signature; or a user that
    /// does not exist, is disabled (no active API key) or has not allowed ESB control.
    Unauthenticated,
    /// The command's `timestamp` is older than `KAFKA_ESB_MAX_AGE_SECONDS` or too far ahead.
    Expired,
    /// The user's rate limit of this kind of command is exhausted (the REST limits).
    RateLimited,
    /// An `order_acknowledgment` whose `data` is larger than allowed.
    TooLarge,
}

impl DeadLetterCode {
    /// Every code, for documentation and tests.
    pub const ALL: [DeadLetterCode; 5] = [
        DeadLetterCode::Invalid,
        DeadLetterCode::Unauthenticated,
        DeadLetterCode::Expired,
        DeadLetterCode::RateLimited,
        DeadLetterCode::TooLarge,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterCode::Invalid => "invalid",
            DeadLetterCode::Unauthenticated => "unauthenticated",
            DeadLetterCode::Expired => "expired",
            DeadLetterCode::RateLimited => "rate_limited",
            DeadLetterCode::TooLarge => "too_large",
        }
    }
}

impl std::fmt::Display for DeadLetterCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A well-formed inbound envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct EsbMessage {
    /// The command id: results carry it as `correlation_id`; a processed id is never
    /// executed again.
    pub id: String,
    /// One of [`ESB_COMMANDS`] or [`ESB_ACKNOWLEDGMENT`].
    pub event_type: String,
    /// The user the command runs as (its existence is the executor's to check).
    pub user_id: String,
    /// The sender's `source`, when given.
    pub source: Option<String>,
    /// The sender's `timestamp`, when given.
    pub timestamp: Option<String>,
    /// The REST body without `apikey` (any object for an acknowledgment).
    pub data: Map<String, Value>,
}

impl EsbMessage {
    /// True for `order_acknowledgment`, which has no effect on orders.
    pub fn is_acknowledgment(&self) -> bool {
        self.event_type == ESB_ACKNOWLEDGMENT
    }
}

fn optional_string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("\"{key}\" must be a string, got {other}")),
    }
}

/// Reads an inbound record value. The error is the reason written to the dead letter.
pub fn parse_message(value: &[u8]) -> Result<EsbMessage, String> {
    let object = match serde_json::from_slice::<Value>(value) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err("the record value must be a JSON object".to_string()),
        Err(error) => return Err(format!("the record value is not JSON: {error}")),
    };
    let id = optional_string(&object, "id")?
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| "\"id\" is required (a unique command id, e.g. a UUID)".to_string())?;
    if id.len() > MAX_ID_LEN {
        return Err(format!("\"id\" is longer than {MAX_ID_LEN} characters"));
    }
    let allowed = || {
        let mut names = ESB_COMMANDS.to_vec();
        names.push(ESB_ACKNOWLEDGMENT);
        names.join(", ")
    };
    let event_type = optional_string(&object, "event_type")?
        .ok_or_else(|| format!("\"event_type\" is required; allowed values: {}", allowed()))?;
    if event_type != ESB_ACKNOWLEDGMENT && !ESB_COMMANDS.contains(&event_type.as_str()) {
        return Err(format!(
            "unknown event_type {event_type:?}; allowed values: {}",
            allowed()
        ));
    }
    let user_id = optional_string(&object, "user_id")?
        .filter(|user| !user.trim().is_empty())
        .ok_or_else(|| "\"user_id\" is required (an existing oa user)".to_string())?;
    if let Some(version) = optional_string(&object, "version")?
        && version != ENVELOPE_VERSION
    {
        return Err(format!(
            "unsupported version {version:?}; allowed values: {ENVELOPE_VERSION}"
        ));
    }
    let data = match object.get("data") {
        Some(Value::Object(data)) => data.clone(),
        Some(_) => return Err("\"data\" must be a JSON object".to_string()),
        None => return Err("\"data\" is required (the REST body without apikey)".to_string()),
    };
    Ok(EsbMessage {
        id,
        event_type,
        user_id,
        source: optional_string(&object, "source")?,
        timestamp: optional_string(&object, "timestamp")?,
        data,
    })
}

/// What [`CommandExecutor::execute`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// Executed (or recorded, for an acknowledgment); the result and the next offset are
    /// stored. `status` is the result's "success" or "error".
    Executed {
        /// "success" or "error".
        status: String,
    },
    /// The id was processed before: nothing executed again; the next offset is stored.
    Duplicate,
    /// Not executed and nothing stored (user not allowed, rate limited, invalid data): the
    /// consumer dead-letters the record, then calls [`CommandExecutor::reject`].
    Rejected {
        /// The dead letter's code.
        code: DeadLetterCode,
        /// Why, for the dead letter.
        reason: String,
    },
}

/// The executor's store failed; the consumer retries the same record after a back-off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ESB command executor failed: {0}")]
pub struct ExecutorError(pub String);

/// Runs commands and keeps the consumer's offsets, in the server's store.
///
/// As the consumer's [`OffsetStore`] it keeps the offsets of `KAFKA_CONSUMER_GROUP`; the
/// consumer only reads and resets them there, because each command's offset is written by
/// [`CommandExecutor::execute`] or [`CommandExecutor::reject`] in the transaction of its
/// result. Its [`OffsetStore::save_start`] must never move a stored offset backwards
/// (commands produced while oa is down before its first command are not skipped by a later
/// `latest` reset).
pub trait CommandExecutor: OffsetStore {
    /// Executes `message` at most once per id and stores, atomically with its result, the
    /// offset after `position`. Must store nothing when it returns
    /// [`Execution::Rejected`].
    fn execute<'a>(
        &'a self,
        message: &'a EsbMessage,
        position: &'a EsbPosition,
    ) -> BoxFuture<'a, Result<Execution, ExecutorError>>;

    /// Records a record that was dead-lettered (`message` is `None` when it could not be
    /// read or was not authenticated) and stores the offset after `position`. For a
    /// readable, authenticated command of a user who allows ESB control the executor also
    /// records the id and publishes its error result; for
    /// [`DeadLetterCode::Unauthenticated`] it records nothing but the offset.
    fn reject<'a>(
        &'a self,
        message: Option<&'a EsbMessage>,
        code: DeadLetterCode,
        reason: &'a str,
        position: &'a EsbPosition,
    ) -> BoxFuture<'a, Result<(), ExecutorError>>;
}

/// Consumer tuning that is not an OpenAlgo setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsbOptions {
    /// How long one fetch waits for new records. Brokers such as tansu wait the whole time,
    /// so this is also the consumer's added latency when idle.
    pub fetch_max_wait: Duration,
    /// Most bytes one fetch returns.
    pub fetch_max_bytes: i32,
}

impl Default for EsbOptions {
    fn default() -> Self {
        EsbOptions {
            fetch_max_wait: Duration::from_millis(100),
            fetch_max_bytes: 1 << 20,
        }
    }
}

/// Counters of the consumer, for `/health` and tests.
#[derive(Debug, Default)]
struct Counters {
    executed: AtomicU64,
    duplicates: AtomicU64,
    dead_lettered: AtomicU64,
    failures: AtomicU64,
}

/// A snapshot of the consumer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EsbStats {
    /// Commands executed (or acknowledgments recorded).
    pub executed: u64,
    /// Replayed ids that were not executed again.
    pub duplicates: u64,
    /// Records written to the dead-letter topic.
    pub dead_lettered: u64,
    /// Broker or store failures (each retried).
    pub failures: u64,
}

/// The ESB's [`RecordHandler`]: authenticates, executes or dead-letters each command.
struct EsbHandler {
    config: KafkaConfig,
    security: EsbSecurity,
    executor: Arc<dyn CommandExecutor>,
    counters: Counters,
    /// The dead-letter producer of the current session (connected with it).
    dead_letters: tokio::sync::RwLock<Option<Arc<DeadLetterTopic>>>,
}

/// The running consumer; stop it with [`EsbConsumer::shutdown`].
pub struct EsbConsumer {
    handler: Arc<EsbHandler>,
    consumer: ConsumerHandle,
}

impl std::fmt::Debug for EsbConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsbConsumer")
            .field("topic", &self.handler.config.esb_events_topic)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EsbConsumer {
    /// Starts consuming `config.esb_events_topic` in the background, authenticating each
    /// command as `security` says. Connection problems are logged and retried; they never
    /// stop the caller. The topic and its `.dlq` are created when `KAFKA_CREATE_TOPICS`
    /// allows. Refuses to start when `security` is disabled (no keys, no trust flag).
    pub fn spawn(
        config: KafkaConfig,
        security: EsbSecurity,
        executor: Arc<dyn CommandExecutor>,
        options: EsbOptions,
    ) -> Result<EsbConsumer, ConfigError> {
        config.validate()?;
        if let Some(reason) = security.disabled_reason() {
            return Err(ConfigError::new(
                "KAFKA_ESB_SIGNING_KEYS",
                "",
                reason.to_string(),
            ));
        }
        let offsets: Arc<dyn OffsetStore> = executor.clone();
        let topic = TopicConsumer::new(config.clone(), config.esb_events_topic.clone(), offsets)
            .start_at(StartPosition::Stored {
                otherwise: config.auto_offset_reset,
            })
            .with_options(ConsumerOptions {
                name: "ESB".to_string(),
                fetch_max_wait: options.fetch_max_wait,
                fetch_max_bytes: options.fetch_max_bytes,
                ..ConsumerOptions::default()
            });
        let handler = Arc::new(EsbHandler {
            config,
            security,
            executor,
            counters: Counters::default(),
            dead_letters: tokio::sync::RwLock::new(None),
        });
        let consumer = topic.spawn(Arc::clone(&handler) as Arc<dyn RecordHandler>)?;
        Ok(EsbConsumer { handler, consumer })
    }

    /// The counters so far.
    pub fn stats(&self) -> EsbStats {
        self.monitor().stats()
    }

    /// A handle that reads the counters after the consumer is moved (for `/health`).
    pub fn monitor(&self) -> EsbMonitor {
        EsbMonitor {
            handler: Arc::clone(&self.handler),
            consumer: self.consumer.monitor(),
        }
    }

    /// Stops fetching; a command being executed finishes first (up to `timeout`, then it is
    /// abandoned: its id is marked started, so it is reported, never run again).
    pub async fn shutdown(self, timeout: Duration) {
        self.consumer.shutdown(timeout).await;
    }
}

/// Reads a running consumer's counters.
#[derive(Clone)]
pub struct EsbMonitor {
    handler: Arc<EsbHandler>,
    consumer: ConsumerMonitor,
}

impl std::fmt::Debug for EsbMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsbMonitor")
            .field("stats", &self.stats())
            .finish()
    }
}

impl EsbMonitor {
    /// The counters so far.
    pub fn stats(&self) -> EsbStats {
        let counters = &self.handler.counters;
        EsbStats {
            executed: counters.executed.load(Ordering::Relaxed),
            duplicates: counters.duplicates.load(Ordering::Relaxed),
            dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
            failures: counters.failures.load(Ordering::Relaxed) + self.consumer.stats().failures,
        }
    }
}

impl RecordHandler for EsbHandler {
    fn handle<'a>(&'a self, record: &'a ConsumedRecord, stop: &'a mut StopSignal) -> Handling<'a> {
        Box::pin(async move {
            let dlq = self.dead_letters.read().await.clone().ok_or_else(|| {
                KafkaError::Internal("the ESB dead-letter producer is not connected".to_string())
            })?;
            let position = EsbPosition {
                group: self.config.consumer_group.clone(),
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
            };
            // Every finished record has its offset stored by the executor, in the
            // transaction of its result.
            Ok(
                if handle_record(self, &dlq, record, &position, stop).await? {
                    Handled::Committed
                } else {
                    Handled::Stopped
                },
            )
        })
    }

    fn connected<'a>(&'a self, topic: &'a TopicInfo) -> BoxFuture<'a, Result<(), KafkaError>> {
        Box::pin(async move {
            // Its own client: fetches long-poll, so they never share a client with produce.
            let dlq = DeadLetterTopic::connect(&self.config, dlq_topic(&topic.name)).await?;
            tracing::info!(topic = %topic.name, dlq = %dlq.name(), "ESB dead-letter producer connected");
            *self.dead_letters.write().await = Some(Arc::new(dlq));
            Ok(())
        })
    }

    fn partition_started(&self, partition: i32, next_offset: i64) {
        tracing::debug!(
            topic = %self.config.esb_events_topic,
            partition,
            next = next_offset,
            "ESB partition consumer started"
        );
    }
}

/// Sleeps the back-off for an executor failure; true when stopped meanwhile.
async fn pause(
    handler: &EsbHandler,
    stop: &mut StopSignal,
    attempt: &mut u32,
    error: &ExecutorError,
) -> bool {
    handler.counters.failures.fetch_add(1, Ordering::Relaxed);
    let wait = retry_backoff(&handler.config, *attempt);
    *attempt = attempt.saturating_add(1);
    tracing::error!(%error, retry_in = ?wait, "ESB executor failed; retrying the same record");
    sleep_unless_stopped(wait, stop).await
}

/// A record refused before execution, with what could be read of it.
struct Screened {
    code: DeadLetterCode,
    reason: String,
    /// The command, when it was authenticated and readable (the executor may then answer it).
    message: Option<EsbMessage>,
}

/// Authenticates and reads a record: signature first (nothing of an unauthenticated record
/// is read), then the envelope, then its timestamp.
fn screen(security: &EsbSecurity, record: &Record) -> Result<EsbMessage, Box<Screened>> {
    let value = record.value.as_deref().unwrap_or_default();
    let header = record.headers.get(SIGNATURE_HEADER).map(Vec::as_slice);
    let refused = |refusal: Refusal, message: Option<EsbMessage>| {
        Box::new(match refusal {
            Refusal::Unauthenticated(error) => Screened {
                code: DeadLetterCode::Unauthenticated,
                reason: error.to_string(),
                message: None,
            },
            // Unreadable like a malformed envelope: not answered.
            Refusal::Invalid(reason) => Screened {
                code: DeadLetterCode::Invalid,
                reason,
                message: None,
            },
            Refusal::Expired(reason) => Screened {
                code: DeadLetterCode::Expired,
                reason,
                message,
            },
        })
    };
    security
        .authenticate(header, value)
        .map_err(|refusal| refused(refusal, None))?;
    let message = parse_message(value).map_err(|reason| {
        Box::new(Screened {
            code: DeadLetterCode::Invalid,
            reason,
            message: None,
        })
    })?;
    match security.check_freshness(message.timestamp.as_deref(), chrono::Utc::now()) {
        Ok(()) => Ok(message),
        Err(refusal) => Err(refused(refusal, Some(message))),
    }
}

/// Processes one record until it is executed, a duplicate, or dead-lettered and recorded.
/// Returns false when stopped before it was done (it is read again after a restart).
async fn handle_record(
    handler: &EsbHandler,
    dlq: &DeadLetterTopic,
    record: &ConsumedRecord,
    position: &EsbPosition,
    stop: &mut StopSignal,
) -> Result<bool, KafkaError> {
    let screened = screen(&handler.security, &record.record);
    let mut attempt = 0;
    let (code, reason, message) = loop {
        let message = match &screened {
            Err(refused) => {
                break (
                    refused.code,
                    refused.reason.clone(),
                    refused.message.as_ref(),
                );
            }
            Ok(message) => message,
        };
        match handler.executor.execute(message, position).await {
            Ok(Execution::Executed { status }) => {
                handler.counters.executed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("oa_esb_records_total", "outcome" => "executed").increment(1);
                tracing::info!(
                    id = message.id,
                    event_type = message.event_type,
                    user_id = message.user_id,
                    status,
                    partition = position.partition,
                    offset = position.offset,
                    "ESB command processed"
                );
                return Ok(true);
            }
            Ok(Execution::Duplicate) => {
                handler.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("oa_esb_records_total", "outcome" => "duplicate").increment(1);
                tracing::info!(
                    id = message.id,
                    "ESB command already processed; not executed again"
                );
                return Ok(true);
            }
            Ok(Execution::Rejected { code, reason }) => {
                // A user who may not be traded over the ESB is not answered either.
                let answerable = code != DeadLetterCode::Unauthenticated;
                break (code, reason, answerable.then_some(message));
            }
            Err(error) => {
                if pause(handler, stop, &mut attempt, &error).await {
                    return Ok(false);
                }
            }
        }
    };
    send_dead_letter(dlq, &record.record, code, &reason, position).await?;
    handler
        .counters
        .dead_lettered
        .fetch_add(1, Ordering::Relaxed);
    metrics::counter!("oa_esb_records_total", "outcome" => "dead_lettered").increment(1);
    metrics::counter!("oa_esb_dead_letters_total", "code" => code.as_str()).increment(1);
    tracing::warn!(
        code = code.as_str(),
        reason,
        partition = position.partition,
        offset = position.offset,
        "ESB record dead-lettered"
    );
    loop {
        match handler
            .executor
            .reject(message, code, &reason, position)
            .await
        {
            Ok(()) => return Ok(true),
            Err(error) => {
                if pause(handler, stop, &mut attempt, &error).await {
                    return Ok(false);
                }
            }
        }
    }
}

/// Writes the original record (key, value, headers) to the dead-letter topic `dlq`, with
/// the reason headers.
async fn send_dead_letter(
    dlq: &DeadLetterTopic,
    original: &Record,
    code: DeadLetterCode,
    reason: &str,
    position: &EsbPosition,
) -> Result<(), KafkaError> {
    let mut headers = original.headers.clone();
    headers.insert(
        DLQ_REASON_HEADER.to_string(),
        format!("{code}: {reason}").into_bytes(),
    );
    headers.insert(
        DLQ_CODE_HEADER.to_string(),
        code.as_str().as_bytes().to_vec(),
    );
    headers.insert(
        DLQ_TOPIC_HEADER.to_string(),
        position.topic.as_bytes().to_vec(),
    );
    headers.insert(
        DLQ_PARTITION_HEADER.to_string(),
        position.partition.to_string().into_bytes(),
    );
    headers.insert(
        DLQ_OFFSET_HEADER.to_string(),
        position.offset.to_string().into_bytes(),
    );
    let partition = original
        .key
        .as_deref()
        .map_or(0, |key| partition_for_key(key, dlq.partitions()));
    let record = Record {
        key: original.key.clone(),
        value: original.value.clone(),
        headers,
        timestamp: chrono::Utc::now(),
    };
    dlq.write(partition, record).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_command() {
        let message = parse_message(
            br#"{"id":"c1","event_type":"place_order","timestamp":"t","user_id":"u","source":"esb","version":"1.0","data":{"symbol":"SBIN"}}"#,
        )
        .unwrap();
        assert_eq!(message.id, "c1");
        assert_eq!(message.event_type, "place_order");
        assert_eq!(message.user_id, "u");
        assert_eq!(message.source.as_deref(), Some("esb"));
        assert_eq!(message.data["symbol"], "SBIN");
        assert!(!message.is_acknowledgment());
    }

    #[test]
    fn reasons_name_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not JSON"),
            (b"[1]", "JSON object"),
            (
                br#"{"event_type":"place_order","user_id":"u","data":{}}"#,
                "\"id\" is required",
            ),
            (
                br#"{"id":"1","event_type":"buy","user_id":"u","data":{}}"#,
                "unknown event_type \"buy\"; allowed values: place_order",
            ),
            (
                br#"{"id":"1","event_type":"place_order","data":{}}"#,
                "\"user_id\" is required",
            ),
            (
                br#"{"id":"1","event_type":"place_order","user_id":"u"}"#,
                "\"data\" is required",
            ),
            (
                br#"{"id":"1","event_type":"place_order","user_id":"u","data":[]}"#,
                "\"data\" must be",
            ),
            (
                br#"{"id":"1","event_type":"place_order","user_id":"u","version":"2","data":{}}"#,
                "unsupported version",
            ),
            (
                br#"{"id":7,"event_type":"place_order","user_id":"u","data":{}}"#,
                "\"id\" must be a string",
            ),
        ];
        for (input, expected) in cases {
            let reason = parse_message(input).unwrap_err();
            assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
        }
    }

    #[test]
    fn acknowledgment_is_recognised() {
        let message = parse_message(
            br#"{"id":"a","event_type":"order_acknowledgment","user_id":"u","data":{"orderid":"1"}}"#,
        )
        .unwrap();
        assert!(message.is_acknowledgment());
        assert_eq!(dlq_topic("t"), "t.dlq");
    }
}
