//! The ESB consumer: commands from external systems on `KAFKA_ESB_EVENTS_TOPIC`
//! (docs/esb.md).
//!
//! ```text
//! ESB topic ─▶ one task per partition: fetch (own client, short max-wait)
//!     ─▶ verify the oa_signature header (esb_auth) ── unauthenticated ──▶ <topic>.dlq
//!     ─▶ parse the envelope, check its timestamp ── invalid / expired ──▶ <topic>.dlq
//!     └▶ CommandExecutor::execute (user allowed? rate limit; idempotent by id; result +
//!        offset stored atomically)
//!          └─ rejected (unauthenticated user, rate limited, invalid data) ──▶ <topic>.dlq
//!   every dead letter is then recorded with CommandExecutor::reject (offset stored)
//! ```
//!
//! rskafka has no consumer groups: offsets live in the executor's store, keyed by
//! (`KAFKA_CONSUMER_GROUP`, topic, partition), and are written in the same transaction as the
//! command's result. This crate does not know what a command does: the server implements
//! [`CommandExecutor`] with its order service.
//!
//! A record is dead-lettered before its offset is stored, so a crash never loses a dead
//! letter (it may write one twice). A failure of the executor's store retries the same record
//! with back-off; the partition never moves past a record that was neither executed nor
//! dead-lettered, and a bad record never stalls it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use oa_events_core::catalog::{ESB_ACKNOWLEDGMENT, ESB_COMMANDS};
use oa_events_core::envelope::ENVELOPE_VERSION;
use rskafka::client::Client;
use rskafka::client::error::ProtocolError;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{AutoOffsetReset, KafkaConfig};
use crate::error::{ConfigError, KafkaError, RsKafkaError};
use crate::esb_auth::{EsbSecurity, Refusal, SIGNATURE_HEADER};
use crate::partitioner::partition_for_key;
use crate::producer::{connect, ensure_topic_with};

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

/// Where a record was read: the key of a stored offset plus the record's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsbPosition {
    /// `KAFKA_CONSUMER_GROUP`.
    pub group: String,
    /// The inbound topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

impl EsbPosition {
    /// The offset to store once this record is done: where the next read starts.
    pub fn next_offset(&self) -> i64 {
        self.offset + 1
    }
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
pub trait CommandExecutor: Send + Sync + 'static {
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

    /// The stored next offset of (group, topic, partition), if any.
    fn stored_offset<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, Result<Option<i64>, ExecutorError>>;

    /// Replaces the stored offset of a partition, even with a smaller one: after the broker
    /// reported the stored offset out of range (retention, a recreated topic) and the
    /// consumer restarted the partition from its earliest retained record.
    fn reset_offset<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
        offset: i64,
    ) -> BoxFuture<'a, Result<(), ExecutorError>>;

    /// Stores the starting offset of a partition that had none (resolved through
    /// `KAFKA_CONSUMER_AUTO_OFFSET_RESET`), so that commands produced while oa is down
    /// before its first command are not skipped by a later `latest` reset. Never moves a
    /// stored offset backwards.
    fn store_start_offset<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
        partition: i32,
        offset: i64,
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

struct Shared {
    config: KafkaConfig,
    security: EsbSecurity,
    options: EsbOptions,
    executor: Arc<dyn CommandExecutor>,
    counters: Counters,
}

impl Shared {
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.retry_backoff.max(Duration::from_millis(10));
        base.saturating_mul(1 << attempt.min(10))
            .min(self.config.retry_backoff_max.max(base))
    }
}

/// The running consumer; stop it with [`EsbConsumer::shutdown`].
pub struct EsbConsumer {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EsbConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsbConsumer")
            .field("topic", &self.shared.config.esb_events_topic)
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
        let shared = Arc::new(Shared {
            config,
            security,
            options,
            executor,
            counters: Counters::default(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(Arc::clone(&shared), stopped));
        Ok(EsbConsumer { shared, stop, task })
    }

    /// The counters so far.
    pub fn stats(&self) -> EsbStats {
        self.monitor().stats()
    }

    /// A handle that reads the counters after the consumer is moved (for `/health`).
    pub fn monitor(&self) -> EsbMonitor {
        EsbMonitor {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops fetching; a command being executed finishes first (up to `timeout`, then it is
    /// abandoned: its id is marked started, so it is reported, never run again).
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            tracing::warn!("ESB consumer did not stop within {timeout:?}; aborting it");
            task.abort();
        }
    }
}

/// Reads a running consumer's counters.
#[derive(Clone)]
pub struct EsbMonitor {
    shared: Arc<Shared>,
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
        let counters = &self.shared.counters;
        EsbStats {
            executed: counters.executed.load(Ordering::Relaxed),
            duplicates: counters.duplicates.load(Ordering::Relaxed),
            dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
            failures: counters.failures.load(Ordering::Relaxed),
        }
    }
}

/// Connects, starts one task per partition, and starts over after any broker failure.
async fn supervise(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut attempt = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let error = match run_once(&shared, stop.clone()).await {
            Ok(()) => return,
            Err(error) => error,
        };
        shared.counters.failures.fetch_add(1, Ordering::Relaxed);
        let wait = shared.backoff(attempt);
        attempt = attempt.saturating_add(1);
        tracing::error!(%error, retry_in = ?wait, topic = %shared.config.esb_events_topic, "ESB consumer failed; reconnecting");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// One connected session: returns `Ok` when stopped, the first error otherwise.
async fn run_once(shared: &Arc<Shared>, stop: watch::Receiver<bool>) -> Result<(), KafkaError> {
    let config = &shared.config;
    let topic = config.esb_events_topic.clone();
    // Two clients: fetches long-poll, so they never share a client with produce.
    let fetch_client = connect(config).await?;
    let info = ensure_topic_with(&fetch_client, config, &topic).await?;
    let dlq = Arc::new(DeadLetters::connect(config, &dlq_topic(&topic)).await?);
    tracing::info!(topic, partitions = info.partitions, dlq = %dlq.topic, "ESB consumer connected");
    // A partition that fails stops its siblings gracefully (each finishes the record in
    // hand: aborting one mid-command would leave its outcome unknown), then all reconnect.
    let (session_stop, session) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for partition in 0..info.partitions {
        let client = fetch_client
            .partition_client(topic.clone(), partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|source| {
                request_error(config, "metadata (partition leader)", &topic, source)
            })?;
        tasks.spawn(consume_partition(
            Arc::clone(shared),
            client,
            Arc::clone(&dlq),
            session.clone(),
        ));
    }
    let mut stop = stop;
    let mut first_error = None;
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                let error = match joined {
                    None => break,
                    Some(Ok(Ok(()))) => continue,
                    Some(Ok(Err(error))) => error,
                    Some(Err(error)) => KafkaError::Internal(error.to_string()),
                };
                first_error.get_or_insert(error);
                let _ = session_stop.send(true);
            }
            _ = stop.wait_for(|stop| *stop), if !*session_stop.borrow() => {
                let _ = session_stop.send(true);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn request_error(
    config: &KafkaConfig,
    what: &'static str,
    topic: &str,
    source: RsKafkaError,
) -> KafkaError {
    KafkaError::Request {
        what,
        topic: topic.to_string(),
        brokers: config.bootstrap_list(),
        source,
    }
}

async fn bounded<T>(
    config: &KafkaConfig,
    extra: Duration,
    what: &'static str,
    future: impl std::future::Future<Output = Result<T, KafkaError>>,
) -> Result<T, KafkaError> {
    let after = config.request_timeout + extra;
    match tokio::time::timeout(after, future).await {
        Ok(result) => result,
        Err(_) => Err(KafkaError::Timeout {
            brokers: config.bootstrap_list(),
            what,
            after,
        }),
    }
}

/// The start position of a partition without a stored offset
/// (`KAFKA_CONSUMER_AUTO_OFFSET_RESET`).
async fn reset_offset(config: &KafkaConfig, client: &PartitionClient) -> Result<i64, KafkaError> {
    let at = match config.auto_offset_reset {
        AutoOffsetReset::Earliest => OffsetAt::Earliest,
        AutoOffsetReset::Latest => OffsetAt::Latest,
    };
    list_offset(config, client, at).await
}

async fn list_offset(
    config: &KafkaConfig,
    client: &PartitionClient,
    at: OffsetAt,
) -> Result<i64, KafkaError> {
    bounded(config, Duration::ZERO, "list offsets", async {
        client
            .get_offset(at)
            .await
            .map_err(|source| request_error(config, "list offsets", client.topic(), source))
    })
    .await
}

/// Reads one partition from its stored offset (or the reset position) until stopped.
async fn consume_partition(
    shared: Arc<Shared>,
    client: PartitionClient,
    dlq: Arc<DeadLetters>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), KafkaError> {
    let config = &shared.config;
    let topic = client.topic().to_string();
    let partition = client.partition();
    let group = config.consumer_group.clone();
    let mut next = {
        let mut attempt = 0;
        loop {
            match shared
                .executor
                .stored_offset(&group, &topic, partition)
                .await
            {
                Ok(Some(offset)) => break offset,
                Ok(None) => {
                    let offset = reset_offset(config, &client).await?;
                    shared
                        .executor
                        .store_start_offset(&group, &topic, partition, offset)
                        .await
                        .map_err(|error| {
                            KafkaError::Internal(format!(
                                "storing the ESB start offset of {topic}/{partition}: {error}"
                            ))
                        })?;
                    break offset;
                }
                Err(error) => {
                    if pause(&shared, &mut stop, &mut attempt, &error).await {
                        return Ok(());
                    }
                }
            }
        }
    };
    tracing::debug!(topic, partition, next, "ESB partition consumer started");
    let max_wait_ms = i32::try_from(shared.options.fetch_max_wait.as_millis()).unwrap_or(100);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let fetched = tokio::select! {
            fetched = bounded(config, shared.options.fetch_max_wait, "fetch", async {
                client
                    .fetch_records(next, 1..shared.options.fetch_max_bytes, max_wait_ms)
                    .await
                    .map_err(|source| request_error(config, "fetch", &topic, source))
            }) => fetched,
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        // A stored offset the partition does not have (records removed by retention, or
        // the topic deleted and recreated) restarts the partition at its earliest retained
        // record: re-reading processed commands is harmless (their ids are known), skipping
        // unprocessed ones is not. Kafka answers OffsetOutOfRange; brokers such as tansu
        // answer nothing and report a high watermark below the offset.
        let out_of_range = match &fetched {
            Ok((records, high_watermark)) => records.is_empty() && next > *high_watermark,
            Err(KafkaError::Request {
                source:
                    RsKafkaError::ServerError {
                        protocol_error: ProtocolError::OffsetOutOfRange,
                        ..
                    },
                ..
            }) => true,
            Err(_) => false,
        };
        if out_of_range {
            let earliest = list_offset(config, &client, OffsetAt::Earliest).await?;
            tracing::error!(
                topic,
                partition,
                stored = next,
                earliest,
                "ESB stored offset is out of the partition's range (retention or a recreated topic); resuming from the earliest retained offset: already processed commands are recognised by id and not executed again"
            );
            let mut attempt = 0;
            loop {
                match shared
                    .executor
                    .reset_offset(&group, &topic, partition, earliest)
                    .await
                {
                    Ok(()) => break,
                    Err(error) => {
                        if pause(&shared, &mut stop, &mut attempt, &error).await {
                            return Ok(());
                        }
                    }
                }
            }
            next = earliest;
            continue;
        }
        let mut records = fetched?.0;
        records.sort_by_key(|record| record.offset);
        for record in records {
            if record.offset < next {
                continue; // a compressed batch starts before the requested offset
            }
            let position = EsbPosition {
                group: group.clone(),
                topic: topic.clone(),
                partition,
                offset: record.offset,
            };
            if !handle_record(&shared, &dlq, &record, &position, &mut stop).await? {
                return Ok(());
            }
            next = position.next_offset();
        }
    }
}

/// Sleeps the back-off for a store failure; true when stopped meanwhile.
async fn pause(
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    attempt: &mut u32,
    error: &ExecutorError,
) -> bool {
    shared.counters.failures.fetch_add(1, Ordering::Relaxed);
    let wait = shared.backoff(*attempt);
    *attempt = attempt.saturating_add(1);
    tracing::error!(%error, retry_in = ?wait, "ESB executor failed; retrying the same record");
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        _ = stop.wait_for(|stop| *stop) => true,
    }
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
    shared: &Shared,
    dlq: &DeadLetters,
    record: &RecordAndOffset,
    position: &EsbPosition,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, KafkaError> {
    let screened = screen(&shared.security, &record.record);
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
        match shared.executor.execute(message, position).await {
            Ok(Execution::Executed { status }) => {
                shared.counters.executed.fetch_add(1, Ordering::Relaxed);
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
                shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
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
                if pause(shared, stop, &mut attempt, &error).await {
                    return Ok(false);
                }
            }
        }
    };
    dlq.send(&record.record, code, &reason, position).await?;
    shared
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
        match shared
            .executor
            .reject(message, code, &reason, position)
            .await
        {
            Ok(()) => return Ok(true),
            Err(error) => {
                if pause(shared, stop, &mut attempt, &error).await {
                    return Ok(false);
                }
            }
        }
    }
}

/// Producer of the dead-letter topic, with its own client.
struct DeadLetters {
    config: KafkaConfig,
    topic: String,
    partitions: i32,
    clients: tokio::sync::Mutex<HashMap<i32, Arc<PartitionClient>>>,
    client: Client,
}

impl DeadLetters {
    async fn connect(config: &KafkaConfig, topic: &str) -> Result<DeadLetters, KafkaError> {
        let client = connect(config).await?;
        let info = ensure_topic_with(&client, config, topic).await?;
        Ok(DeadLetters {
            config: config.clone(),
            topic: topic.to_string(),
            partitions: info.partitions,
            clients: tokio::sync::Mutex::new(HashMap::new()),
            client,
        })
    }

    async fn partition_client(&self, partition: i32) -> Result<Arc<PartitionClient>, KafkaError> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&partition) {
            return Ok(Arc::clone(client));
        }
        let client = self
            .client
            .partition_client(self.topic.clone(), partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|source| {
                request_error(
                    &self.config,
                    "metadata (partition leader)",
                    &self.topic,
                    source,
                )
            })?;
        let client = Arc::new(client);
        clients.insert(partition, Arc::clone(&client));
        Ok(client)
    }

    /// Writes the original record (key, value, headers) with the reason headers.
    async fn send(
        &self,
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
            .map_or(0, |key| partition_for_key(key, self.partitions));
        let record = Record {
            key: original.key.clone(),
            value: original.value.clone(),
            headers,
            timestamp: chrono::Utc::now(),
        };
        let client = self.partition_client(partition).await?;
        bounded(
            &self.config,
            Duration::ZERO,
            "produce (dead letter)",
            async {
                client
                    .produce(vec![record], self.config.compression.to_rskafka())
                    .await
                    .map(|_| ())
                    .map_err(|source| request_error(&self.config, "produce", &self.topic, source))
            },
        )
        .await
    }
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
