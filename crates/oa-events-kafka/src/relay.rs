//! [`KafkaRelay`]: the task that drains the [`Outbox`] into Kafka, and [`KafkaSink`], the
//! [`EventSink`] that feeds it.
//!
//! ```text
//! order tx ──▶ outbox rows ◀── KafkaSink::deliver (append, idempotent by id) ◀── publisher
//!                  │                        │ wake
//!                  ▼                        ▼
//!          relay: pending(seq order) ─▶ produce per partition (acks=all) ─▶ mark_delivered
//! ```
//!
//! The relay retries until the broker acknowledges (exponential back-off with jitter, capped),
//! so a broker that is down costs outbox space, never events. Events are marked delivered
//! only after the acknowledgement; a failure or timeout after the broker stored a batch
//! sends it again, so consumers may see duplicates, always with the same `id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use oa_events_core::{Envelope, EventSink, OverflowPolicy, SinkError};
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::KafkaConfig;
use crate::dead_letter::EventDeadLetters;
use crate::error::{ConfigError, KafkaError};
use crate::outbox::Outbox;
use crate::producer::KafkaProducer;

/// The sink name of [`KafkaSink`] (`oa_events_published_total{sink="kafka_outbox"}` counts
/// events handed to the outbox; the relay counts broker acknowledgements as `sink="kafka"`).
pub const OUTBOX_SINK_NAME: &str = "kafka_outbox";
/// The sink label of the relay's metrics.
pub const RELAY_SINK_LABEL: &str = "kafka";

/// How often, at most, the relay asks the outbox for its backlog while busy.
const BACKLOG_REFRESH: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    /// Deliver what is pending, then stop.
    Draining,
    Stopped,
}

/// Counters of the relay, readable at any time (for `/health`, tests and benchmarks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Events the broker acknowledged.
    pub delivered: u64,
    /// Events the broker rejected for good (too large, invalid), written to
    /// `<events topic>.dlq` instead.
    pub rejected: u64,
    /// Failed rounds (connect, produce or outbox errors), each followed by a back-off.
    pub failures: u64,
    /// Undelivered events at the last look.
    pub backlog: u64,
    /// True while the last broker interaction succeeded.
    pub connected: bool,
    /// The last error, if the last round failed.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    rejected: AtomicU64,
    failures: AtomicU64,
    backlog: AtomicU64,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

struct Shared {
    outbox: Arc<dyn Outbox>,
    wake: Notify,
    counters: Counters,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The outbox relay: one background task that sends undelivered outbox rows to Kafka in
/// `seq` order and marks them delivered on acknowledgement.
///
/// ```no_run
/// # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use oa_events_core::{EventPublisher, SinkOptions};
/// use oa_events_kafka::{KafkaConfig, KafkaRelay, MemoryOutbox, ensure_topic};
///
/// let config = KafkaConfig::from_env()?;
/// ensure_topic(&config, &config.order_events_topic).await?; // start-up check
/// let relay = KafkaRelay::spawn(config, Arc::new(MemoryOutbox::new(1_000_000)))?;
/// let publisher = EventPublisher::builder()
///     .sink(relay.sink(), SinkOptions::default())
///     .build();
/// // ... serve ...
/// publisher.shutdown(std::time::Duration::from_secs(5)).await;
/// relay.shutdown(std::time::Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KafkaRelay {
    shared: Arc<Shared>,
    state: watch::Sender<RunState>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl KafkaRelay {
    /// Starts the relay task. It does not wait for the broker: it connects (and reconnects)
    /// in the background, retrying with back-off; use [`crate::ensure_topic`] first when
    /// start-up should fail on a missing topic or unreachable broker.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(config: KafkaConfig, outbox: Arc<dyn Outbox>) -> Result<Self, ConfigError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            outbox,
            wake: Notify::new(),
            counters: Counters::default(),
        });
        let (state, state_rx) = watch::channel(RunState::Running);
        let task = tokio::spawn(run(config, Arc::clone(&shared), state_rx));
        Ok(KafkaRelay {
            shared,
            state,
            task: Mutex::new(Some(task)),
        })
    }

    /// The [`EventSink`] to add to the [`oa_events_core::EventPublisher`]: it appends each
    /// published envelope to the outbox (idempotent by id) and wakes the relay.
    pub fn sink(&self) -> KafkaSink {
        KafkaSink {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Wakes the relay now (for example after the store committed outbox rows).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// The relay's counters.
    pub fn stats(&self) -> RelayStats {
        let counters = &self.shared.counters;
        RelayStats {
            delivered: counters.delivered.load(Ordering::Relaxed),
            rejected: counters.rejected.load(Ordering::Relaxed),
            failures: counters.failures.load(Ordering::Relaxed),
            backlog: counters.backlog.load(Ordering::Relaxed),
            connected: counters.connected.load(Ordering::Relaxed),
            last_error: counters.last_error.lock().clone(),
        }
    }

    /// Delivers what is pending for up to `timeout`, then stops the task. Returns the
    /// outbox backlog left (0 when everything was delivered); a durable outbox sends it
    /// after the next start.
    pub async fn shutdown(&self, timeout: Duration) -> u64 {
        self.state.send_replace(RunState::Draining);
        self.shared.wake.notify_one();
        let task = self.task.lock().take();
        if let Some(mut task) = task
            && tokio::time::timeout(timeout, &mut task).await.is_err()
        {
            self.state.send_replace(RunState::Stopped);
            if tokio::time::timeout(Duration::from_millis(200), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let left = match self.shared.outbox.backlog().await {
            Ok(backlog) => backlog,
            Err(error) => {
                tracing::warn!(%error, "cannot read the Kafka outbox backlog at shutdown");
                self.shared.counters.backlog.load(Ordering::Relaxed)
            }
        };
        if left > 0 {
            tracing::warn!(
                backlog = left,
                "Kafka relay stopped with undelivered events; they stay in the outbox"
            );
        }
        left
    }
}

impl Drop for KafkaRelay {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

/// The [`EventSink`] of Kafka mode. `deliver` appends the batch to the outbox (idempotent by
/// envelope id, so events the store already wrote in the order's transaction are not
/// duplicated) and wakes the relay; it never waits for the broker.
///
/// Its queue policy is [`OverflowPolicy::DropNewest`]: the outbox, not the queue, is the
/// durable copy, and the relay polls the outbox even without wake-ups.
#[derive(Clone)]
pub struct KafkaSink {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// The sink's queue policy (see the type's documentation); also that of a sink standing
    /// in for it before the relay runs.
    pub const OVERFLOW_POLICY: OverflowPolicy = OverflowPolicy::DropNewest;
}

impl EventSink for KafkaSink {
    fn name(&self) -> &'static str {
        OUTBOX_SINK_NAME
    }

    fn overflow_policy(&self) -> OverflowPolicy {
        Self::OVERFLOW_POLICY
    }

    async fn deliver(&self, batch: &[Arc<Envelope>]) -> Result<(), SinkError> {
        let appended = self.shared.outbox.append(batch).await;
        // Wake even on failure: rows that did fit should go out.
        self.shared.wake.notify_one();
        appended.map_err(|error| SinkError {
            sink: OUTBOX_SINK_NAME,
            count: batch.len(),
            reason: error.to_string(),
        })
    }
}

/// Exponential back-off with full jitter in [initial, current], doubling up to `max`.
#[derive(Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    fn next(&mut self) -> Duration {
        let upper = self.current;
        self.current = (self.current * 2).min(self.max);
        let low = self.initial.as_secs_f64();
        let high = upper.as_secs_f64().max(low);
        if high > low {
            Duration::from_secs_f64(rand::rng().random_range(low..=high))
        } else {
            upper
        }
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Waits for `duration`, or returns false early when the relay must stop now.
async fn sleep_unless_stopped(duration: Duration, state: &mut watch::Receiver<RunState>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        _ = state.wait_for(|s| *s == RunState::Stopped) => false,
    }
}

fn current(state: &watch::Receiver<RunState>) -> RunState {
    *state.borrow()
}

impl Shared {
    fn fail(&self, error: &KafkaError, backlog: u64, during: &'static str) {
        let failures = self.counters.failures.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters.connected.store(false, Ordering::Relaxed);
        *self.counters.last_error.lock() = Some(error.to_string());
        // Every failure while few, then one line per power of two.
        if failures <= 5 || failures.is_power_of_two() {
            tracing::warn!(
                %error,
                during,
                backlog,
                failures,
                "Kafka delivery failing; events stay in the outbox and are retried"
            );
        }
    }

    async fn refresh_backlog(&self) -> u64 {
        match self.outbox.backlog().await {
            Ok(backlog) => {
                self.counters.backlog.store(backlog, Ordering::Relaxed);
                metrics::gauge!("oa_kafka_outbox_backlog").set(backlog as f64);
                backlog
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the Kafka outbox backlog");
                self.counters.backlog.load(Ordering::Relaxed)
            }
        }
    }
}

async fn run(config: KafkaConfig, shared: Arc<Shared>, mut state: watch::Receiver<RunState>) {
    let mut backoff = Backoff::new(config.retry_backoff, config.retry_backoff_max);
    let mut producer: Option<KafkaProducer> = None;
    let mut dead_letters: Option<EventDeadLetters> = None;
    let mut last_backlog = Instant::now() - BACKLOG_REFRESH;
    let mut recovering = false;
    shared.refresh_backlog().await;
    tracing::info!(
        brokers = %config.bootstrap_list(),
        topic = %config.order_events_topic,
        compression = %config.compression,
        "Kafka outbox relay started"
    );
    loop {
        if current(&state) == RunState::Stopped {
            break;
        }
        let Some(active) = producer.as_mut() else {
            let connected = tokio::select! {
                result = KafkaProducer::connect(&config) => Some(result),
                _ = state.wait_for(|s| *s == RunState::Stopped) => None,
            };
            match connected {
                None => break,
                Some(Ok(connected)) => {
                    tracing::info!(
                        topic = %connected.topic().name,
                        partitions = connected.topic().partitions,
                        brokers = %config.bootstrap_list(),
                        "Kafka relay connected"
                    );
                    shared.counters.connected.store(true, Ordering::Relaxed);
                    producer = Some(connected);
                }
                Some(Err(error)) => {
                    let backlog = shared.refresh_backlog().await;
                    shared.fail(&error, backlog, "connect");
                    if current(&state) == RunState::Draining && backlog == 0 {
                        break;
                    }
                    if !sleep_unless_stopped(backoff.next(), &mut state).await {
                        break;
                    }
                }
            }
            continue;
        };

        let rows = match shared.outbox.pending(config.relay_max_rows).await {
            Ok(rows) => rows,
            Err(error) => {
                let error = KafkaError::Outbox(error);
                shared.fail(
                    &error,
                    shared.counters.backlog.load(Ordering::Relaxed),
                    "outbox read",
                );
                if !sleep_unless_stopped(backoff.next(), &mut state).await {
                    break;
                }
                continue;
            }
        };

        if rows.is_empty() {
            shared.refresh_backlog().await;
            last_backlog = Instant::now();
            if current(&state) != RunState::Running {
                break;
            }
            // Idle: wait for a wake-up, the poll interval, or a state change.
            let woken = tokio::select! {
                () = shared.wake.notified() => true,
                () = tokio::time::sleep(config.relay_poll_interval) => false,
                _ = state.changed() => false,
            };
            if woken && !config.linger.is_zero() {
                // Let a burst gather into fuller batches.
                if !sleep_unless_stopped(config.linger, &mut state).await {
                    break;
                }
            }
            continue;
        }

        let mut round: Vec<(i64, Arc<Envelope>)> = rows
            .into_iter()
            .map(|record| (record.seq, record.envelope))
            .collect();
        // Sorted by seq (the outbox returns them so; sorting again is free) for the lookups
        // below.
        round.sort_by_key(|(seq, _)| *seq);
        let outcome = tokio::select! {
            outcome = active.send_rows(round.clone()) => outcome,
            _ = state.wait_for(|s| *s == RunState::Stopped) => break,
        };

        let now = Utc::now();
        let mut by_type: HashMap<&'static str, u64> = HashMap::new();
        for seq in &outcome.acked {
            if let Ok(found) = round.binary_search_by_key(seq, |(seq, _)| *seq) {
                let envelope = &round[found].1;
                *by_type.entry(envelope.event_type()).or_default() += 1;
                let age = (now - envelope.timestamp).to_std().unwrap_or_default();
                metrics::histogram!("oa_kafka_delivery_seconds").record(age.as_secs_f64());
            }
        }
        for (event, count) in by_type {
            metrics::counter!("oa_events_published_total", "sink" => RELAY_SINK_LABEL, "event" => event)
                .increment(count);
        }
        shared
            .counters
            .delivered
            .fetch_add(outcome.acked.len() as u64, Ordering::Relaxed);

        let mut done = outcome.acked;
        // Refused for good: to the dead-letter topic; marked done only once it is there.
        let mut dead_letter_error = None;
        if !outcome.rejected.is_empty() {
            match dead_letter(&config, &mut dead_letters, &round, &outcome.rejected).await {
                Ok(()) => {
                    let count = outcome.rejected.len() as u64;
                    metrics::counter!("oa_kafka_dead_lettered_total").increment(count);
                    shared.counters.rejected.fetch_add(count, Ordering::Relaxed);
                    done.extend(outcome.rejected.iter().map(|(seq, _)| *seq));
                }
                Err(error) => dead_letter_error = Some(error),
            }
        }
        if !done.is_empty()
            && let Err(error) = shared.outbox.mark_delivered(&done).await
        {
            // The rows will be sent again: duplicates with the same id, never a loss.
            let error = KafkaError::Outbox(error);
            shared.fail(
                &error,
                shared.counters.backlog.load(Ordering::Relaxed),
                "outbox mark delivered",
            );
        }

        match outcome.error.or(dead_letter_error) {
            Some(error) => {
                let backlog = shared.refresh_backlog().await;
                last_backlog = Instant::now();
                shared.fail(&error, backlog, "produce");
                recovering = true;
                // A fresh client after a failure: new connections, fresh metadata.
                producer = None;
                if !sleep_unless_stopped(backoff.next(), &mut state).await {
                    break;
                }
            }
            None => {
                if recovering {
                    recovering = false;
                    tracing::info!("Kafka delivery recovered");
                }
                backoff.reset();
                shared.counters.connected.store(true, Ordering::Relaxed);
                *shared.counters.last_error.lock() = None;
                if last_backlog.elapsed() >= BACKLOG_REFRESH {
                    shared.refresh_backlog().await;
                    last_backlog = Instant::now();
                }
            }
        }
    }
    tracing::info!("Kafka outbox relay stopped");
}

/// Writes a dead letter for each rejected row (connecting the dead-letter producer first when
/// needed); stops at the first failure, leaving every rejected row pending.
async fn dead_letter(
    config: &KafkaConfig,
    dead_letters: &mut Option<EventDeadLetters>,
    round: &[(i64, Arc<Envelope>)],
    rejected: &[(i64, String)],
) -> Result<(), KafkaError> {
    let mut producer = match dead_letters.take() {
        Some(producer) => producer,
        None => EventDeadLetters::connect(config).await?,
    };
    for (seq, reason) in rejected {
        let Ok(found) = round.binary_search_by_key(seq, |(seq, _)| *seq) else {
            continue;
        };
        let envelope = &round[found].1;
        producer.send(envelope, reason).await?;
        tracing::error!(
            event_id = %envelope.id,
            event_type = envelope.event_type(),
            dead_letter_topic = producer.topic(),
            reason = %reason,
            "Kafka refused an event for good; it went to the dead-letter topic"
        );
    }
    // Kept for the next rejection only when every send succeeded (an error drops it, so
    // the next attempt reconnects).
    *dead_letters = Some(producer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let mut previous_cap = Duration::from_millis(100);
        for _ in 0..10 {
            let wait = backoff.next();
            assert!(wait >= Duration::from_millis(100), "{wait:?}");
            assert!(wait <= previous_cap, "{wait:?} > {previous_cap:?}");
            previous_cap = (previous_cap * 2).min(Duration::from_millis(800));
        }
        assert_eq!(backoff.current, Duration::from_millis(800));
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(100));
    }
}
