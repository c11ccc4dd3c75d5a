//! [`EventPublisher`]: hands events to every sink without waiting for any network.
//!
//! ```text
//! service ──publish──▶ [queue: sink A] ──task A──▶ A.deliver(batch)
//!                 ├──▶ [queue: sink B] ──task B──▶ B.deliver(batch)
//!                 └──▶ broadcast tap ──▶ in-process subscribers
//! ```
//!
//! `publish` takes a short lock per sink to append to a bounded queue and returns; it never
//! awaits and never fails. Each queue is drained by its own task, in order, in batches.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::envelope::{Envelope, Event};
use crate::sink::{EventSink, OverflowPolicy};

/// Per-sink queue settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkOptions {
    /// Events the queue holds before its overflow policy applies.
    pub capacity: usize,
    /// Bytes of events (their JSON size) the queue holds before its overflow policy applies,
    /// whatever their number. An event larger than this is still queued when the queue is
    /// empty, so nothing is refused for its size alone.
    pub max_bytes: usize,
    /// Most events handed to one `deliver` call.
    pub max_batch: usize,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            capacity: 65_536,
            max_bytes: 64 * 1024 * 1024,
            max_batch: 512,
        }
    }
}

/// The JSON size of an envelope, counted without allocating it.
fn encoded_size(envelope: &Envelope) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serialising an envelope cannot fail (its payloads are plain data); count what was
    // written if it ever did.
    let _ = serde_json::to_writer(&mut counter, envelope);
    counter.0
}

/// The queued events and their total size.
#[derive(Debug, Default)]
struct Queued {
    items: VecDeque<(Arc<Envelope>, usize)>,
    bytes: usize,
}

impl Queued {
    fn pop_front(&mut self) -> Option<Arc<Envelope>> {
        let (envelope, size) = self.items.pop_front()?;
        self.bytes -= size;
        Some(envelope)
    }
}

/// Counters of one sink's queue, readable at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SinkStats {
    /// The sink's name.
    pub name: &'static str,
    /// Events accepted into the queue.
    pub enqueued: u64,
    /// Events the sink delivered.
    pub delivered: u64,
    /// Events dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Events dropped because `deliver` failed.
    pub dropped_delivery_failed: u64,
    /// Events waiting in the queue now.
    pub queued: u64,
}

/// One sink's bounded queue, shared by the publisher (producer) and the sink's task.
#[derive(Debug)]
struct SinkQueue {
    name: &'static str,
    policy: OverflowPolicy,
    options: SinkOptions,
    items: Mutex<Queued>,
    wake: Notify,
    closed: AtomicBool,
    enqueued: AtomicU64,
    delivered: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_delivery_failed: AtomicU64,
}

impl SinkQueue {
    fn new(name: &'static str, policy: OverflowPolicy, options: SinkOptions) -> Self {
        SinkQueue {
            name,
            policy,
            options: SinkOptions {
                capacity: options.capacity.max(1),
                max_bytes: options.max_bytes.max(1),
                max_batch: options.max_batch.max(1),
            },
            items: Mutex::new(Queued {
                items: VecDeque::with_capacity(options.capacity.clamp(1, 4096)),
                bytes: 0,
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_delivery_failed: AtomicU64::new(0),
        }
    }

    /// Appends an envelope of `size` bytes, applying the overflow policy. Never blocks on I/O.
    fn push(&self, envelope: &Arc<Envelope>, size: usize) {
        let mut dropped = Vec::new();
        let was_empty = {
            let mut queued = self.items.lock();
            let was_empty = queued.items.is_empty();
            let fits = |queued: &Queued| {
                queued.items.is_empty()
                    || (queued.items.len() < self.options.capacity
                        && queued.bytes + size <= self.options.max_bytes)
            };
            match self.policy {
                OverflowPolicy::DropOldest => {
                    while !fits(&queued) {
                        dropped.extend(queued.pop_front());
                    }
                    queued.bytes += size;
                    queued.items.push_back((Arc::clone(envelope), size));
                }
                OverflowPolicy::DropNewest => {
                    if fits(&queued) {
                        queued.bytes += size;
                        queued.items.push_back((Arc::clone(envelope), size));
                    } else {
                        dropped.push(Arc::clone(envelope));
                    }
                }
            }
            was_empty
        };
        self.enqueued.fetch_add(1, Ordering::Relaxed);
        for lost in &dropped {
            self.record_queue_full(lost);
        }
        // The drain task only waits after it saw the queue empty (under the lock), so only
        // the push that makes the queue non-empty needs to wake it: this spares a cross-thread
        // wake-up per event while the task is busy.
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn record_queue_full(&self, lost: &Envelope) {
        let total = self.dropped_queue_full.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("oa_events_dropped_total", "sink" => self.name, "reason" => "queue_full")
            .increment(1);
        // One line per power of two keeps a flood from flooding the log.
        if total.is_power_of_two() {
            tracing::warn!(
                sink = self.name,
                dropped_total = total,
                event_id = %lost.id,
                event_type = lost.event_type(),
                user_id = %lost.user_id,
                "event queue full: dropped an event ({:?})",
                self.policy
            );
        }
    }

    /// Takes up to `max_batch` envelopes, waiting while the queue is empty.
    /// Returns an empty batch once the queue is closed and drained.
    async fn next_batch(&self, batch: &mut Vec<Arc<Envelope>>) {
        batch.clear();
        loop {
            {
                let mut queued = self.items.lock();
                if !queued.items.is_empty() {
                    let take = queued.items.len().min(self.options.max_batch);
                    for _ in 0..take {
                        batch.extend(queued.pop_front());
                    }
                    return;
                }
                if self.closed.load(Ordering::Acquire) {
                    return;
                }
            }
            self.wake.notified().await;
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name,
            enqueued: self.enqueued.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_delivery_failed: self.dropped_delivery_failed.load(Ordering::Relaxed),
            queued: self.items.lock().items.len() as u64,
        }
    }
}

/// Drains one sink's queue until it is closed and empty.
async fn run_sink<S: EventSink>(sink: Arc<S>, queue: Arc<SinkQueue>) {
    let mut batch = Vec::with_capacity(queue.options.max_batch);
    loop {
        queue.next_batch(&mut batch).await;
        if batch.is_empty() {
            break;
        }
        match sink.deliver(&batch).await {
            Ok(()) => {
                queue
                    .delivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for envelope in &batch {
                    metrics::counter!(
                        "oa_events_published_total",
                        "sink" => queue.name,
                        "event" => envelope.event_type()
                    )
                    .increment(1);
                }
            }
            Err(error) => {
                queue
                    .dropped_delivery_failed
                    .fetch_add(error.count as u64, Ordering::Relaxed);
                queue.delivered.fetch_add(
                    batch.len().saturating_sub(error.count) as u64,
                    Ordering::Relaxed,
                );
                metrics::counter!(
                    "oa_events_dropped_total",
                    "sink" => queue.name,
                    "reason" => "delivery_failed"
                )
                .increment(error.count as u64);
                tracing::warn!(sink = queue.name, %error, "event delivery failed");
            }
        }
    }
    tracing::debug!(sink = queue.name, "event sink drained and stopped");
}

/// Builds an [`EventPublisher`] with its sinks. Must be built inside a Tokio runtime when
/// sinks are added (each sink gets a task).
#[derive(Debug)]
pub struct PublisherBuilder {
    tap_capacity: usize,
    queues: Vec<Arc<SinkQueue>>,
    tasks: Vec<JoinHandle<()>>,
}

impl PublisherBuilder {
    /// How many events an in-process subscriber may lag before it misses some (default 4096).
    pub fn tap_capacity(mut self, capacity: usize) -> Self {
        self.tap_capacity = capacity.max(1);
        self
    }

    /// Adds a sink with its own bounded queue and task.
    ///
    /// # Panics
    /// Outside a Tokio runtime (the sink's task cannot be spawned).
    pub fn sink<S: EventSink>(mut self, sink: S, options: SinkOptions) -> Self {
        let queue = Arc::new(SinkQueue::new(sink.name(), sink.overflow_policy(), options));
        self.tasks
            .push(tokio::spawn(run_sink(Arc::new(sink), Arc::clone(&queue))));
        self.queues.push(queue);
        self
    }

    /// Finishes the publisher.
    pub fn build(self) -> EventPublisher {
        let (tap, _) = broadcast::channel(self.tap_capacity);
        EventPublisher {
            inner: Arc::new(Inner {
                queues: self.queues,
                tap,
                tasks: Mutex::new(self.tasks),
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    queues: Vec<Arc<SinkQueue>>,
    tap: broadcast::Sender<Arc<Envelope>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The handle services use to publish events. Cheap to clone; all clones share the sinks.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    inner: Arc<Inner>,
}

impl EventPublisher {
    /// Starts building a publisher.
    pub fn builder() -> PublisherBuilder {
        PublisherBuilder {
            tap_capacity: 4096,
            queues: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Wraps the event in a new envelope and hands it to every sink and subscriber.
    /// Returns the envelope (its `id` identifies the event everywhere).
    pub fn publish(&self, event: Event) -> Arc<Envelope> {
        let envelope = Arc::new(Envelope::new(event));
        self.publish_envelope(Arc::clone(&envelope));
        envelope
    }

    /// Hands an already-built envelope to every sink and subscriber: for events whose
    /// envelope was first written to a durable outbox in the same transaction as their cause.
    pub fn publish_envelope(&self, envelope: Arc<Envelope>) {
        if !self.inner.queues.is_empty() {
            let size = encoded_size(&envelope);
            for queue in &self.inner.queues {
                queue.push(&envelope, size);
            }
        }
        // No subscriber is not an error: the tap is optional.
        let _ = self.inner.tap.send(envelope);
    }

    /// An in-process stream of every published envelope. A subscriber that falls more than
    /// the tap capacity behind receives `RecvError::Lagged` with the number it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.inner.tap.subscribe()
    }

    /// Counters of every sink queue.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.inner
            .queues
            .iter()
            .map(|queue| queue.stats())
            .collect()
    }

    /// Names of the configured sinks.
    pub fn sink_names(&self) -> Vec<&'static str> {
        self.inner.queues.iter().map(|queue| queue.name).collect()
    }

    /// Stops accepting work into the sinks' tasks and waits up to `timeout` for every queue
    /// to drain. Returns the number of events still queued when the wait ended (0 when all
    /// were delivered). Events published after this call are queued but not delivered.
    pub async fn shutdown(&self, timeout: Duration) -> u64 {
        for queue in &self.inner.queues {
            queue.close();
        }
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        let drained = tokio::time::timeout(timeout, async {
            for task in tasks {
                if let Err(error) = task.await {
                    tracing::error!(%error, "event sink task failed");
                }
            }
        })
        .await;
        let left: u64 = self.stats().iter().map(|stats| stats.queued).sum();
        if drained.is_err() {
            tracing::warn!(
                left,
                "event sinks did not drain within {timeout:?}; undelivered events remain"
            );
        }
        left
    }
}
