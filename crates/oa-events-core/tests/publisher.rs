//! Publisher behaviour with real sinks: ordering, batching, overflow accounting, shutdown.

use std::sync::Arc;
use std::time::Duration;

use oa_events_core::catalog::OrderNotification;
use oa_events_core::{
    Envelope, Event, EventPublisher, EventSink, OverflowPolicy, SinkError, SinkOptions,
};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Records every delivered envelope; optionally waits for a permit per batch so a test can
/// hold the sink still while it fills the queue.
#[derive(Clone)]
struct RecordingSink {
    delivered: Arc<Mutex<Vec<Arc<Envelope>>>>,
    batches: Arc<Mutex<Vec<usize>>>,
    gate: Option<Arc<Semaphore>>,
    policy: OverflowPolicy,
    fail: bool,
}

impl RecordingSink {
    fn new() -> Self {
        RecordingSink {
            delivered: Arc::default(),
            batches: Arc::default(),
            gate: None,
            policy: OverflowPolicy::DropOldest,
            fail: false,
        }
    }

    fn gated(policy: OverflowPolicy) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let sink = RecordingSink {
            gate: Some(Arc::clone(&gate)),
            policy,
            ..RecordingSink::new()
        };
        (sink, gate)
    }

    fn messages(&self) -> Vec<String> {
        self.delivered
            .lock()
            .iter()
            .map(|envelope| match &envelope.data {
                oa_events_core::EventPayload::OrderNotification(n) => n.message.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }
}

impl EventSink for RecordingSink {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn overflow_policy(&self) -> OverflowPolicy {
        self.policy
    }

    async fn deliver(&self, batch: &[Arc<Envelope>]) -> Result<(), SinkError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        if self.fail {
            return Err(SinkError {
                sink: "recording",
                count: batch.len(),
                reason: "broker down".into(),
            });
        }
        self.batches.lock().push(batch.len());
        self.delivered.lock().extend(batch.iter().cloned());
        Ok(())
    }
}

fn note(user: &str, n: usize) -> Event {
    Event::for_user(user, OrderNotification::info("SBIN", format!("{user}-{n}")))
}

/// Queue options of `capacity` events in batches of at most `max_batch`, the default byte bound.
fn queue(capacity: usize, max_batch: usize) -> SinkOptions {
    SinkOptions {
        capacity,
        max_batch,
        ..SinkOptions::default()
    }
}

/// A publisher with the one sink `sink`, queued as `options` say.
fn publisher_to(sink: &RecordingSink, options: SinkOptions) -> EventPublisher {
    EventPublisher::builder()
        .sink(sink.clone(), options)
        .build()
}

/// Publishes alice's events `numbers`, in order.
fn publish_alice(publisher: &EventPublisher, numbers: impl IntoIterator<Item = usize>) {
    for n in numbers {
        publisher.publish(note("alice", n));
    }
}

/// Publishes alice's event 0 and gives the gated sink time to take it and block on its gate,
/// so the queue behind it starts empty.
async fn hold_the_first_event(publisher: &EventPublisher) {
    publisher.publish(note("alice", 0));
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// A gated sink of `policy` behind a queue of `capacity`, holding alice's event 0 while her
/// events 1 to `published` are published behind it.
async fn overflow(
    policy: OverflowPolicy,
    capacity: usize,
    published: usize,
) -> (RecordingSink, Arc<Semaphore>, EventPublisher) {
    let (sink, gate) = RecordingSink::gated(policy);
    let publisher = publisher_to(&sink, queue(capacity, 100));
    hold_the_first_event(&publisher).await;
    publish_alice(&publisher, 1..=published);
    (sink, gate, publisher)
}

#[tokio::test]
async fn every_event_reaches_every_sink_in_publish_order() {
    let first = RecordingSink::new();
    let second = RecordingSink::new();
    let publisher = EventPublisher::builder()
        .sink(first.clone(), SinkOptions::default())
        .sink(second.clone(), SinkOptions::default())
        .build();
    let mut expected = Vec::new();
    for n in 0..1000 {
        let user = if n % 3 == 0 { "alice" } else { "bob" };
        publisher.publish(note(user, n));
        expected.push(format!("{user}-{n}"));
    }
    assert_eq!(publisher.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(first.messages(), expected);
    assert_eq!(second.messages(), expected);
    let stats = publisher.stats();
    assert_eq!(stats[0].enqueued, 1000);
    assert_eq!(stats[0].delivered, 1000);
    assert_eq!(stats[0].dropped_queue_full, 0);
}

#[tokio::test]
async fn batches_respect_max_batch() {
    let (sink, gate) = RecordingSink::gated(OverflowPolicy::DropOldest);
    let publisher = publisher_to(&sink, queue(1000, 7));
    publish_alice(&publisher, 0..50);
    gate.add_permits(100);
    assert_eq!(publisher.shutdown(Duration::from_secs(5)).await, 0);
    let batches = sink.batches.lock().clone();
    assert!(batches.iter().all(|&size| size <= 7), "{batches:?}");
    assert_eq!(batches.iter().sum::<usize>(), 50);
}

#[tokio::test]
async fn full_queue_drops_oldest_and_counts() {
    let (sink, gate, publisher) = overflow(OverflowPolicy::DropOldest, 10, 25).await;
    let stats = publisher.stats()[0];
    assert_eq!(stats.dropped_queue_full, 15);
    assert_eq!(stats.queued, 10);
    gate.add_permits(10);
    assert_eq!(publisher.shutdown(Duration::from_secs(5)).await, 0);
    let expected: Vec<String> = std::iter::once(0)
        .chain(16..=25)
        .map(|n| format!("alice-{n}"))
        .collect();
    assert_eq!(sink.messages(), expected);
    let stats = publisher.stats()[0];
    assert_eq!(stats.enqueued, 26);
    assert_eq!(stats.delivered + stats.dropped_queue_full, 26);
}

#[tokio::test]
async fn the_queue_is_bounded_in_bytes_as_well_as_in_events() {
    let (sink, gate) = RecordingSink::gated(OverflowPolicy::DropOldest);
    let options = SinkOptions {
        max_bytes: 64 * 1024,
        ..queue(10_000, 100)
    };
    let publisher = publisher_to(&sink, options);
    hold_the_first_event(&publisher).await;
    // Events of about 4 KiB each: the byte bound bites long before the count.
    let big = |n: usize| {
        Event::for_user(
            "alice",
            OrderNotification::info("SBIN", format!("{}-{n}", "x".repeat(4096))),
        )
    };
    for n in 1..=100 {
        publisher.publish(big(n));
    }
    let stats = publisher.stats()[0];
    assert!(stats.queued <= 16, "{stats:?}");
    assert!(stats.queued >= 14, "{stats:?}");
    assert_eq!(stats.dropped_queue_full, 100 - stats.queued);
    gate.add_permits(100);
    assert_eq!(publisher.shutdown(Duration::from_secs(5)).await, 0);
    let messages = sink.messages();
    assert!(
        messages.last().unwrap().ends_with("-100"),
        "the newest are kept"
    );
}

#[tokio::test]
async fn full_queue_drop_newest_keeps_the_oldest() {
    let (sink, gate, publisher) = overflow(OverflowPolicy::DropNewest, 5, 8).await;
    assert_eq!(publisher.stats()[0].dropped_queue_full, 3);
    gate.add_permits(10);
    publisher.shutdown(Duration::from_secs(5)).await;
    let expected: Vec<String> = (0..=5).map(|n| format!("alice-{n}")).collect();
    assert_eq!(sink.messages(), expected);
}

#[tokio::test]
async fn failed_delivery_is_counted_not_hidden() {
    let sink = RecordingSink {
        fail: true,
        ..RecordingSink::new()
    };
    let publisher = publisher_to(&sink, SinkOptions::default());
    publish_alice(&publisher, 0..5);
    publisher.shutdown(Duration::from_secs(5)).await;
    let stats = publisher.stats()[0];
    assert_eq!(stats.dropped_delivery_failed, 5);
    assert_eq!(stats.delivered, 0);
}

#[tokio::test]
async fn a_stuck_sink_does_not_block_publish_or_other_sinks() {
    let (stuck, _gate) = RecordingSink::gated(OverflowPolicy::DropOldest);
    let healthy = RecordingSink::new();
    let publisher = EventPublisher::builder()
        .sink(stuck, queue(16, 16))
        .sink(healthy.clone(), SinkOptions::default())
        .build();
    for n in 0..10_000 {
        publisher.publish(note("bob", n));
    }
    // The healthy sink gets everything although the other never delivers.
    for _ in 0..200 {
        if healthy.delivered.lock().len() == 10_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(healthy.delivered.lock().len(), 10_000);
    let stuck_stats = publisher.stats()[0];
    assert!(
        stuck_stats.dropped_queue_full >= 10_000 - 17,
        "{stuck_stats:?}"
    );
    // Shutdown gives up on the stuck sink after the timeout and reports what is left.
    let started = std::time::Instant::now();
    let left = publisher.shutdown(Duration::from_millis(100)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // The stuck sink holds one batch in flight; at most one queue's worth is left behind.
    assert!(left <= 16, "{left}");
}

#[tokio::test]
async fn subscribers_tap_the_stream_and_learn_when_they_lag() {
    let publisher = EventPublisher::builder().tap_capacity(4).build();
    let mut tap = publisher.subscribe();
    let published = publisher.publish(note("alice", 1));
    let received = tap.recv().await.unwrap();
    assert_eq!(received.id, published.id);
    publish_alice(&publisher, 0..10);
    match tap.recv().await {
        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => assert_eq!(missed, 6),
        other => panic!("expected a lag report, got {other:?}"),
    }
}

#[tokio::test]
async fn publish_envelope_keeps_the_given_id() {
    let sink = RecordingSink::new();
    let publisher = publisher_to(&sink, SinkOptions::default());
    let envelope = Arc::new(Envelope::new(note("carol", 1)));
    publisher.publish_envelope(Arc::clone(&envelope));
    publisher.shutdown(Duration::from_secs(5)).await;
    assert_eq!(sink.delivered.lock()[0].id, envelope.id);
}
