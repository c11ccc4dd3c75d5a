//! [`TopicConsumer`]: reads every partition of one topic, on rskafka's [`StreamConsumer`], and
//! hands each record to a [`RecordHandler`]; the one partition loop of this crate (oa's ESB
//! consumer and [`OrderEventConsumer`](crate::OrderEventConsumer) run on it).
//!
//! ```text
//! connect (security::client_builder) ─▶ topic exists? (created when KAFKA_CREATE_TOPICS)
//!   └▶ one task per partition: start offset (StartPosition, OffsetStore)
//!        └▶ StreamConsumer ─▶ RecordHandler::handle ─▶ offset saved (OffsetStore),
//!           or stored by the handler itself in the transaction of its effects
//! any broker failure: every partition finishes the record in hand, then all reconnect
//! meanwhile, every KAFKA_CONSUMER_LIVENESS_MS: does each partition's leader answer?
//!   no answer within that time: disconnected (ConsumerStats::connected), until one does
//! ```
//!
//! Delivery is at least once: a record's offset is saved only after its handler finished,
//! so a crash re-delivers the records handled since the last save. rskafka has no consumer
//! groups: one consumer reads all partitions and keeps its own offsets in an
//! [`OffsetStore`].
//!
//! A stored offset the partition no longer holds (records removed by retention, the topic
//! deleted and recreated) restarts the partition at its earliest retained record, with an
//! error in the log: re-reading is recoverable, skipping is not. Kafka reports such an offset
//! as `OffsetOutOfRange`; brokers such as tansu answer an empty fetch whose high watermark is
//! below the offset, which the consumer checks at start and whenever a partition is idle.
//!
//! A lost broker is noticed by a liveness check, not by the fetches: rskafka retries a
//! failed fetch for up to `KAFKA_REQUEST_TIMEOUT_MS`, and a partition whose handler waits
//! fetches nothing. The check asks every partition's leader for the partition's end
//! (ListOffsets) every [`KafkaConfig::consumer_liveness`]; a check not answered within that
//! time marks the consumer disconnected (and counts a failure) until a check or a new session
//! succeeds. It only reports: reading, offsets and reconnecting are the partitions' own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::{BoxFuture, join_all};
use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use rskafka::client::consumer::{StartOffset, StreamConsumerBuilder};
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{AutoOffsetReset, KafkaConfig};
use crate::error::{ConfigError, KafkaError, RsKafkaError};
use crate::offsets::{OffsetStore, OffsetStoreError, TopicPartition};
use crate::partition_leaders::partition_leader;
use crate::producer::{TopicInfo, connect, ensure_topic_with};

#[cfg(doc)]
use rskafka::client::consumer::StreamConsumer;

/// Where each partition starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained record, whatever the store holds.
    Earliest,
    /// Only records produced after the partition starts, whatever the store holds.
    Latest,
    /// The offset in the [`OffsetStore`]; a partition without one starts at `otherwise`,
    /// and that start is stored at once.
    Stored {
        /// Where a partition without a stored offset starts.
        otherwise: AutoOffsetReset,
    },
    /// The given offset per partition (the next record to read); partitions not listed
    /// start at `otherwise`.
    Offsets {
        /// Partition -> offset of the first record to read.
        offsets: BTreeMap<i32, i64>,
        /// Where partitions not in `offsets` start.
        otherwise: AutoOffsetReset,
    },
}

impl Default for StartPosition {
    /// [`StartPosition::Stored`], starting from the latest record without a stored offset.
    fn default() -> Self {
        StartPosition::Stored {
            otherwise: AutoOffsetReset::Latest,
        }
    }
}

/// Consumer tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// The consumer's name in logs (`ESB`, `risk service`, ...).
    pub name: String,
    /// How long one fetch waits for new records. Brokers such as tansu wait the whole time,
    /// so this is also the consumer's added latency when idle.
    pub fetch_max_wait: Duration,
    /// Most bytes one fetch returns.
    pub fetch_max_bytes: i32,
    /// How long a partition may go without a record before the consumer checks that the
    /// broker still answers and still holds its offset.
    pub idle_check: Duration,
    /// Most handled records between two saves of a partition's offset. Offsets are also
    /// saved whenever the partition has caught up and when the consumer stops.
    pub save_every: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            name: "Kafka".to_string(),
            fetch_max_wait: Duration::from_millis(100),
            fetch_max_bytes: 1 << 20,
            idle_check: Duration::from_secs(1),
            save_every: 1000,
        }
    }
}

/// A record as the consumer read it.
#[derive(Debug, Clone)]
pub struct ConsumedRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The partition's high watermark when the record was fetched (the offset the next
    /// produced record gets), so `high_watermark - offset - 1` records are behind this one.
    pub high_watermark: i64,
    /// Key, value, headers and timestamp.
    pub record: Record,
}

impl ConsumedRecord {
    /// The offset to store once this record is done: where the next read starts.
    pub fn next_offset(&self) -> i64 {
        self.offset + 1
    }
}

/// What a [`RecordHandler`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Done: the consumer saves the next offset through its [`OffsetStore`].
    Processed,
    /// Done, and the handler stored the next offset itself, atomically with the record's
    /// effects (in the same database transaction): the consumer does not save it again.
    Committed,
    /// The consumer is stopping and the record was not finished: it is read again on the
    /// next start.
    Stopped,
}

/// Tells a handler that its consumer is stopping (shutdown, a sibling partition failed,
/// or the consumer was dropped).
#[derive(Debug, Clone)]
pub struct StopSignal {
    receiver: watch::Receiver<bool>,
}

impl StopSignal {
    /// True once the consumer is stopping.
    pub fn is_stopped(&self) -> bool {
        *self.receiver.borrow() || self.receiver.has_changed().is_err()
    }

    /// Completes when the consumer is stopping (at once when it already is).
    pub async fn stopped(&mut self) {
        let _ = self.receiver.wait_for(|stopped| *stopped).await;
    }
}

/// What a consumer does with each record.
/// What [`RecordHandler::handle`] returns: the record's outcome, once handled.
pub type Handling<'a> = BoxFuture<'a, Result<Handled, KafkaError>>;

pub trait RecordHandler: Send + Sync + 'static {
    /// Handles one record. Records of one partition arrive one at a time in offset order;
    /// partitions are handled concurrently. An error ends the session: every partition
    /// finishes the record in hand, the consumer reconnects after a back-off and reads
    /// again from the last saved offsets. A handler that waits (retries, back-pressure)
    /// should give up with [`Handled::Stopped`] when `stop` fires.
    fn handle<'a>(&'a self, record: &'a ConsumedRecord, stop: &'a mut StopSignal) -> Handling<'a>;

    /// Called after each (re)connection, before any partition starts: a place to connect
    /// what the handler writes to. An error ends the session like a broker failure.
    fn connected<'a>(&'a self, topic: &'a TopicInfo) -> BoxFuture<'a, Result<(), KafkaError>> {
        let _ = topic;
        Box::pin(async { Ok(()) })
    }

    /// Called when a partition has resolved its start offset, before its first fetch.
    fn partition_started(&self, partition: i32, next_offset: i64) {
        let _ = (partition, next_offset);
    }
}

/// Counters of a consumer.
#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    failures: AtomicU64,
    resumed_from_earliest: AtomicU64,
    /// A session reached the topic and the brokers answer (cleared by a failure).
    connected: AtomicBool,
    /// The last failure, for reports such as an edge's `/health`.
    last_failure: Mutex<Option<String>>,
}

/// A snapshot of a consumer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerStats {
    /// Records handed to the handler and finished (processed or committed).
    pub records: u64,
    /// Broker and offset-store failures (each retried).
    pub failures: u64,
    /// Partitions restarted from their earliest record because their offset was out of
    /// range.
    pub resumed_from_earliest: u64,
    /// Whether the consumer reads the topic now: false before its first session reached
    /// the topic, and from a failure (a failed session, or a liveness check not answered
    /// within `KAFKA_CONSUMER_LIVENESS_MS`) until a check or a new session succeeds.
    pub connected: bool,
}

/// Reads a running consumer's counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsumerMonitor {
    counters: Arc<Counters>,
}

impl ConsumerMonitor {
    /// The counters so far.
    pub fn stats(&self) -> ConsumerStats {
        ConsumerStats {
            records: self.counters.records.load(Ordering::Relaxed),
            failures: self.counters.failures.load(Ordering::Relaxed),
            resumed_from_earliest: self.counters.resumed_from_earliest.load(Ordering::Relaxed),
            connected: self.counters.connected.load(Ordering::Relaxed),
        }
    }

    /// The last failure (a broker, offset-store or liveness-check error), if any; kept
    /// after the consumer reconnected.
    pub fn last_failure(&self) -> Option<String> {
        self.counters.last_failure.lock().clone()
    }
}

/// A consumer of every partition of one topic; [`TopicConsumer::spawn`] runs it.
#[derive(Clone)]
pub struct TopicConsumer {
    config: KafkaConfig,
    topic: String,
    store: Arc<dyn OffsetStore>,
    start: StartPosition,
    options: ConsumerOptions,
}

impl std::fmt::Debug for TopicConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicConsumer")
            .field("topic", &self.topic)
            .field("brokers", &self.config.bootstrap_list())
            .field("start", &self.start)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl TopicConsumer {
    /// A consumer of `topic` with the brokers and security of `config`, keeping offsets in
    /// `store`, starting at the stored offsets (`config.auto_offset_reset` without one).
    pub fn new(config: KafkaConfig, topic: impl Into<String>, store: Arc<dyn OffsetStore>) -> Self {
        let otherwise = config.auto_offset_reset;
        TopicConsumer {
            config,
            topic: topic.into(),
            store,
            start: StartPosition::Stored { otherwise },
            options: ConsumerOptions::default(),
        }
    }

    /// Where each partition starts.
    pub fn start_at(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }

    /// Replaces the tuning.
    pub fn with_options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// The topic this consumer reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Starts consuming in the background, handing every record to `handler`. Connection
    /// problems are logged and retried with the configured back-off
    /// (`KAFKA_RETRY_BACKOFF_MS` .. `KAFKA_RETRY_BACKOFF_MAX_MS`); they never stop the caller.
    /// Must be called within a Tokio runtime. Fails only on an invalid `config`.
    pub fn spawn(self, handler: Arc<dyn RecordHandler>) -> Result<ConsumerHandle, ConfigError> {
        self.config.validate()?;
        if self.options.fetch_max_bytes < 1 {
            return Err(ConfigError::new(
                "fetch_max_bytes",
                &self.options.fetch_max_bytes.to_string(),
                "must be at least 1".to_string(),
            ));
        }
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            consumer: self,
            handler,
            counters: Arc::clone(&counters),
        });
        let task = tokio::spawn(supervise(shared, StopSignal { receiver: stopped }));
        Ok(ConsumerHandle {
            stop,
            task,
            monitor: ConsumerMonitor { counters },
        })
    }
}

/// A running consumer: stop it with [`ConsumerHandle::shutdown`]; dropping it stops it too
/// (without waiting).
#[derive(Debug)]
pub struct ConsumerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    monitor: ConsumerMonitor,
}

impl ConsumerHandle {
    /// A handle on the counters that outlives this one.
    pub fn monitor(&self) -> ConsumerMonitor {
        self.monitor.clone()
    }

    /// Stops fetching and waits until every partition has finished the record in hand and
    /// saved its offset, up to `timeout`; then the consumer is aborted (what was not saved
    /// is read again on the next start).
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            tracing::warn!("Kafka consumer did not stop within {timeout:?}; aborting it");
            task.abort();
        }
    }
}

struct Shared {
    consumer: TopicConsumer,
    handler: Arc<dyn RecordHandler>,
    counters: Arc<Counters>,
}

impl Shared {
    fn name(&self) -> &str {
        &self.consumer.options.name
    }

    fn config(&self) -> &KafkaConfig {
        &self.consumer.config
    }

    /// Counts a failure, remembers it and marks the consumer disconnected.
    fn failed(&self, error: &dyn std::fmt::Display) {
        self.counters.connected.store(false, Ordering::Relaxed);
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        *self.counters.last_failure.lock() = Some(error.to_string());
    }

    /// Marks the consumer connected; true when it was not.
    fn reconnected(&self) -> bool {
        !self.counters.connected.swap(true, Ordering::Relaxed)
    }
}

/// The `attempt`-th retry wait: `KAFKA_RETRY_BACKOFF_MS` doubled per attempt, at most
/// `KAFKA_RETRY_BACKOFF_MAX_MS`.
pub(crate) fn retry_backoff(config: &KafkaConfig, attempt: u32) -> Duration {
    let base = config.retry_backoff.max(Duration::from_millis(10));
    base.saturating_mul(1 << attempt.min(10))
        .min(config.retry_backoff_max.max(base))
}

/// Sleeps `wait`; true when stopped meanwhile.
pub(crate) async fn sleep_unless_stopped(wait: Duration, stop: &mut StopSignal) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => stop.is_stopped(),
        () = stop.stopped() => true,
    }
}

/// A failed request about `topic`, naming the brokers.
pub(crate) fn request_error(
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

/// Runs `future` within `KAFKA_REQUEST_TIMEOUT_MS` plus `extra`.
pub(crate) async fn bounded<T>(
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

/// Connects, starts one task per partition, and starts over after any failure.
async fn supervise(shared: Arc<Shared>, mut stop: StopSignal) {
    let mut attempt = 0u32;
    loop {
        if stop.is_stopped() {
            return;
        }
        let error = match run_session(&shared, stop.clone()).await {
            Ok(()) => return,
            Err(error) => error,
        };
        shared.failed(&error);
        let wait = retry_backoff(shared.config(), attempt);
        attempt = attempt.saturating_add(1);
        tracing::error!(
            %error,
            retry_in = ?wait,
            topic = %shared.consumer.topic,
            "{} consumer failed; reconnecting",
            shared.name()
        );
        if sleep_unless_stopped(wait, &mut stop).await {
            return;
        }
    }
}

/// One connected session: `Ok` when stopped, the first error otherwise.
async fn run_session(shared: &Arc<Shared>, mut stop: StopSignal) -> Result<(), KafkaError> {
    let config = shared.config();
    let topic = shared.consumer.topic.as_str();
    let client = connect(config).await?;
    let info = ensure_topic_with(&client, config, topic).await?;
    shared.handler.connected(&info).await?;
    shared.reconnected();
    tracing::info!(
        topic,
        partitions = info.partitions,
        "{} consumer connected",
        shared.name()
    );
    // A partition that fails stops its siblings gracefully (each finishes the record in
    // hand: aborting a handler midway would leave its outcome unknown), then all reconnect.
    let (session_stop, session) = watch::channel(false);
    let topic_name: Arc<str> = Arc::from(topic);
    let mut tasks = JoinSet::new();
    for partition in 0..info.partitions {
        let partition_client = partition_leader(
            &client,
            config,
            topic,
            partition,
            UnknownTopicHandling::Retry,
        )
        .await?;
        tasks.spawn(consume_partition(
            Arc::clone(shared),
            Arc::new(partition_client),
            Arc::clone(&topic_name),
            StopSignal {
                receiver: session.clone(),
            },
        ));
    }
    let mut first_error = None;
    let mut liveness = std::pin::pin!(check_liveness(shared, info.partitions));
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
            () = stop.stopped(), if !*session_stop.borrow() => {
                let _ = session_stop.send(true);
            }
            () = &mut liveness => {}
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Every [`KafkaConfig::consumer_liveness`], asks each partition's leader for the partition's
/// end: a check that fails or is not answered within that time marks the consumer
/// disconnected (a failure counted); the next one answered marks it connected again. Runs
/// until the session ends, on connections of its own: it never waits for (or disturbs) the
/// partitions' fetches, which rskafka may hold while it reconnects.
async fn check_liveness(shared: &Shared, partitions: i32) {
    let config = shared.config();
    let topic = shared.consumer.topic.as_str();
    let every = config.consumer_liveness.max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<rskafka::client::Client> = None;
    let mut leaders: Vec<Option<PartitionClient>> = (0..partitions).map(|_| None).collect();
    loop {
        ticks.tick().await;
        let checked = tokio::time::timeout(every, async {
            if client.is_none() {
                client = Some(connect(config).await.map_err(|error| error.to_string())?);
            }
            let Some(client) = client.as_ref() else {
                return Err("no client".to_string());
            };
            let checks = leaders
                .iter_mut()
                .zip(0..)
                .map(|(leader, partition)| async move {
                    if leader.is_none() {
                        let found = client
                            .partition_client(
                                topic.to_string(),
                                partition,
                                UnknownTopicHandling::Error,
                            )
                            .await
                            .map_err(|source| format!("partition {partition}: {source}"))?;
                        *leader = Some(found);
                    }
                    match leader.as_ref() {
                        Some(leader) => leader
                            .get_offset(OffsetAt::Latest)
                            .await
                            .map(|_| ())
                            .map_err(|source| format!("partition {partition}: {source}")),
                        None => Ok(()),
                    }
                });
            let failed: Vec<String> = join_all(checks)
                .await
                .into_iter()
                .filter_map(Result::err)
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("; "))
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {every:?}")));
        match checked {
            Ok(()) => {
                if shared.reconnected() {
                    tracing::info!(
                        topic,
                        "{} consumer: the brokers answer again",
                        shared.name()
                    );
                }
            }
            Err(reason) => {
                let was_connected = shared.counters.connected.load(Ordering::Relaxed);
                let error = format!(
                    "brokers {} did not answer for topic {topic}: {reason}",
                    config.bootstrap_list()
                );
                shared.failed(&error);
                if was_connected {
                    tracing::error!(topic, %error, "{} consumer: lost the brokers; reading resumes when they answer", shared.name());
                }
            }
        }
    }
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

fn offset_at(reset: AutoOffsetReset) -> OffsetAt {
    match reset {
        AutoOffsetReset::Earliest => OffsetAt::Earliest,
        AutoOffsetReset::Latest => OffsetAt::Latest,
    }
}

/// One partition's reading: its client, its position and the offset awaiting a save.
struct PartitionReader {
    shared: Arc<Shared>,
    client: Arc<PartitionClient>,
    topic: Arc<str>,
    partition: i32,
    stop: StopSignal,
    /// The next offset handled but not yet saved, with how many records it covers.
    unsaved: Option<(i64, u32)>,
}

/// A store operation, retried until it succeeds or the consumer stops.
#[derive(Debug, Clone, Copy)]
enum StoreOp {
    Load,
    Save(i64),
    SaveStart(i64),
}

impl PartitionReader {
    fn config(&self) -> &KafkaConfig {
        self.shared.config()
    }

    fn store(&self) -> &dyn OffsetStore {
        self.shared.consumer.store.as_ref()
    }

    async fn store_once(&self, op: StoreOp) -> Result<Option<i64>, OffsetStoreError> {
        let (store, at) = (
            self.store(),
            TopicPartition::new(&self.topic, self.partition),
        );
        match op {
            StoreOp::Load => store.load(at).await,
            StoreOp::Save(offset) => store.save(at, offset).await.map(|()| None),
            StoreOp::SaveStart(offset) => store.save_start(at, offset).await.map(|()| None),
        }
    }

    /// Runs `op` until it succeeds (`Some`) or the consumer stops (`None`).
    async fn store_op(&mut self, op: StoreOp) -> Option<Option<i64>> {
        let mut attempt = 0;
        loop {
            match self.store_once(op).await {
                Ok(result) => return Some(result),
                Err(error) => {
                    self.shared.failed(&error);
                    let wait = retry_backoff(self.config(), attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::error!(
                        %error,
                        topic = %self.topic,
                        partition = self.partition,
                        retry_in = ?wait,
                        "{} consumer: the offset store failed; retrying",
                        self.shared.name()
                    );
                    if sleep_unless_stopped(wait, &mut self.stop).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Saves the handled offset, if any: retried until it succeeds, or tried once when
    /// the consumer is stopping (what is not saved is read again).
    async fn save_handled(&mut self) {
        let Some((offset, _)) = self.unsaved else {
            return;
        };
        if self.stop.is_stopped() {
            if let Err(error) = self.store_once(StoreOp::Save(offset)).await {
                tracing::warn!(%error, topic = %self.topic, partition = self.partition, "{} consumer: could not save the offset while stopping; records after the last saved one will be read again", self.shared.name());
            }
            self.unsaved = None;
            return;
        }
        if self.store_op(StoreOp::Save(offset)).await.is_some() {
            self.unsaved = None;
        }
    }

    /// The first offset to read, per [`StartPosition`]; `None` when stopped meanwhile.
    async fn start_offset(&mut self) -> Result<Option<i64>, KafkaError> {
        let (known, otherwise) = match &self.shared.consumer.start {
            StartPosition::Earliest => (None, AutoOffsetReset::Earliest),
            StartPosition::Latest => (None, AutoOffsetReset::Latest),
            StartPosition::Offsets { offsets, otherwise } => {
                (offsets.get(&self.partition).copied(), *otherwise)
            }
            StartPosition::Stored { otherwise } => {
                let otherwise = *otherwise;
                let Some(stored) = self.store_op(StoreOp::Load).await else {
                    return Ok(None);
                };
                match stored {
                    Some(offset) => (Some(offset), otherwise),
                    None => {
                        let offset =
                            list_offset(self.config(), &self.client, offset_at(otherwise)).await?;
                        if self.store_op(StoreOp::SaveStart(offset)).await.is_none() {
                            return Ok(None);
                        }
                        return Ok(Some(offset));
                    }
                }
            }
        };
        match known {
            None => Ok(Some(
                list_offset(self.config(), &self.client, offset_at(otherwise)).await?,
            )),
            Some(offset) => {
                if self.out_of_range(offset).await? {
                    self.resume_from_earliest(offset).await
                } else {
                    Ok(Some(offset))
                }
            }
        }
    }

    /// Whether the partition no longer holds `offset`, as a fetch there says: Kafka answers
    /// `OffsetOutOfRange`, tansu an empty fetch with a high watermark below it. (Not
    /// ListOffsets: tansu 0.6 answers `latest` with the last batch's first offset + 1.)
    async fn out_of_range(&self, offset: i64) -> Result<bool, KafkaError> {
        let max_bytes = self.shared.consumer.options.fetch_max_bytes.min(64 << 10);
        let fetched = bounded(
            self.config(),
            Duration::ZERO,
            "fetch (offset check)",
            async { Ok(self.client.fetch_records(offset, 1..max_bytes, 0).await) },
        )
        .await?;
        match fetched {
            Ok((records, high_watermark)) => Ok(records.is_empty() && offset > high_watermark),
            Err(ClientError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => Ok(true),
            Err(source) => Err(request_error(
                self.config(),
                "fetch (offset check)",
                &self.topic,
                source,
            )),
        }
    }

    /// After `offset` turned out to be outside the partition: the earliest retained offset,
    /// stored; `None` when stopped meanwhile.
    async fn resume_from_earliest(&mut self, offset: i64) -> Result<Option<i64>, KafkaError> {
        let earliest = list_offset(self.config(), &self.client, OffsetAt::Earliest).await?;
        self.shared
            .counters
            .resumed_from_earliest
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            topic = %self.topic,
            partition = self.partition,
            stored = offset,
            earliest,
            "{} consumer: the stored offset is out of the partition's range (retention or a recreated topic); resuming from the earliest retained offset",
            self.shared.name()
        );
        self.unsaved = None;
        Ok(self
            .store_op(StoreOp::Save(earliest))
            .await
            .map(|_| earliest))
    }

    /// Reads the partition until stopped (`Ok`) or a broker or handler failure (`Err`).
    async fn run(&mut self) -> Result<(), KafkaError> {
        let Some(mut next) = self.start_offset().await? else {
            return Ok(());
        };
        self.shared.handler.partition_started(self.partition, next);
        tracing::debug!(topic = %self.topic, partition = self.partition, next, "{} partition consumer started", self.shared.name());
        let options = &self.shared.consumer.options;
        let max_wait_ms = i32::try_from(options.fetch_max_wait.as_millis()).unwrap_or(i32::MAX);
        let (fetch_max_bytes, idle_check, save_every) = (
            options.fetch_max_bytes,
            options.idle_check,
            options.save_every,
        );
        'stream: loop {
            let mut stream =
                StreamConsumerBuilder::new(Arc::clone(&self.client), StartOffset::At(next))
                    .with_max_wait_ms(max_wait_ms)
                    .with_max_batch_size(fetch_max_bytes)
                    .build();
            loop {
                if self.stop.is_stopped() {
                    self.save_handled().await;
                    return Ok(());
                }
                // A buffered record comes at once; otherwise the handled offset is saved
                // (the partition has caught up) before waiting for the broker. The stream
                // keeps its fetch in flight across these polls.
                let item = match stream.next().now_or_never() {
                    Some(item) => item,
                    None => {
                        self.save_handled().await;
                        let mut stop = self.stop.clone();
                        let polled = tokio::select! {
                            polled = tokio::time::timeout(idle_check, stream.next()) => polled,
                            () = stop.stopped() => continue,
                        };
                        match polled {
                            Ok(item) => item,
                            Err(_idle) => {
                                // The stream's fetch may be reconnecting inside rskafka,
                                // holding the partition client's connection lock while it
                                // is not polled: another request on that client would wait
                                // for it until KAFKA_REQUEST_TIMEOUT_MS. End it first; the
                                // next stream starts at the same offset.
                                drop(stream);
                                if self.out_of_range(next).await? {
                                    let Some(earliest) = self.resume_from_earliest(next).await?
                                    else {
                                        return Ok(());
                                    };
                                    next = earliest;
                                }
                                continue 'stream;
                            }
                        }
                    }
                };
                let (record, high_watermark) = match item {
                    Some(Ok(fetched)) => fetched,
                    Some(Err(ClientError::ServerError {
                        protocol_error: ProtocolError::OffsetOutOfRange,
                        ..
                    })) => {
                        let Some(earliest) = self.resume_from_earliest(next).await? else {
                            return Ok(());
                        };
                        next = earliest;
                        continue 'stream;
                    }
                    Some(Err(source)) => {
                        return Err(request_error(self.config(), "fetch", &self.topic, source));
                    }
                    None => {
                        return Err(KafkaError::Internal(format!(
                            "the stream of {}/{} ended without an error",
                            self.topic, self.partition
                        )));
                    }
                };
                if record.offset < next {
                    continue; // a compressed batch starts before the requested offset
                }
                let consumed = ConsumedRecord {
                    topic: Arc::clone(&self.topic),
                    partition: self.partition,
                    offset: record.offset,
                    high_watermark,
                    record: record.record,
                };
                let handler = Arc::clone(&self.shared.handler);
                match handler.handle(&consumed, &mut self.stop).await? {
                    Handled::Processed => {
                        let count = self.unsaved.map_or(0, |(_, count)| count) + 1;
                        self.unsaved = Some((consumed.next_offset(), count));
                        if count >= save_every {
                            self.save_handled().await;
                        }
                    }
                    // The handler's store holds this offset and covers earlier ones.
                    Handled::Committed => self.unsaved = None,
                    Handled::Stopped => {
                        self.save_handled().await;
                        return Ok(());
                    }
                }
                self.shared.counters.records.fetch_add(1, Ordering::Relaxed);
                next = consumed.next_offset();
            }
        }
    }
}

/// Reads one partition from its start offset until stopped.
async fn consume_partition(
    shared: Arc<Shared>,
    client: Arc<PartitionClient>,
    topic: Arc<str>,
    stop: StopSignal,
) -> Result<(), KafkaError> {
    let partition = client.partition();
    let mut reader = PartitionReader {
        shared,
        client,
        topic,
        partition,
        stop,
        unsaved: None,
    };
    let result = reader.run().await;
    if result.is_err() {
        // Records handled before the failure are done: keep them.
        reader.save_handled_on_failure().await;
    }
    result
}

impl PartitionReader {
    /// One attempt to save the handled offset after a failure ended the partition.
    async fn save_handled_on_failure(&mut self) {
        if let Some((offset, _)) = self.unsaved.take()
            && let Err(error) = self.store_once(StoreOp::Save(offset)).await
        {
            tracing::warn!(%error, topic = %self.topic, partition = self.partition, "{} consumer: could not save the offset after a failure; records after the last saved one will be read again", self.shared.name());
        }
    }
}
