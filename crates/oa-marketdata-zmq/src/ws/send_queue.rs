//! A client's bounded send queue with conflation.
//!
//! Two queues: control messages (responses, pongs, order updates, close) that are never
//! conflated and go first, and market data bounded at `capacity`. When the data queue is full,
//! a newer tick for a (instrument, mode) already queued replaces the queued one in place
//! (conflation: the client still gets the latest price, at the older position); a tick for a
//! key not queued evicts the oldest queued tick (a drop). Both are counted. Pushing never
//! waits, so a slow client never delays the dispatcher or other clients.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Identifies what a queued tick can be conflated with: instrument number and mode.
pub(crate) type ConflationKey = u64;

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// A text frame.
    Text(Utf8Bytes),
    /// A close frame, after which the writer stops.
    Close(u16, &'static str),
}

/// What [`SendQueue::push_data`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Appended.
    Queued,
    /// Replaced a queued tick of the same key.
    Conflated,
    /// Appended after evicting the oldest queued tick.
    EvictedOldest,
    /// The send queue is closed.
    Closed,
}

#[derive(Debug)]
struct DataEntry {
    key: ConflationKey,
    message: Utf8Bytes,
}

#[derive(Debug, Default)]
struct State {
    control: VecDeque<Outgoing>,
    data: VecDeque<DataEntry>,
    /// Sequence number of `data[0]`.
    head_seq: u64,
    /// Latest queued sequence number per key.
    latest: HashMap<ConflationKey, u64>,
    closed: bool,
}

/// Counters of one send queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendQueueStats {
    /// Messages handed to the socket.
    pub sent: u64,
    /// Ticks replaced by a newer tick of the same instrument and mode.
    pub conflated: u64,
    /// Ticks evicted unsent because the send queue was full.
    pub dropped: u64,
}

/// The send queue shared by the dispatcher (producer) and the client's writer task (consumer).
#[derive(Debug)]
pub(crate) struct SendQueue {
    state: Mutex<State>,
    wake: Notify,
    capacity: usize,
    control_limit: usize,
    sent: AtomicU64,
    conflated: AtomicU64,
    dropped: AtomicU64,
}

impl SendQueue {
    /// An send queue holding at most `capacity` ticks and `control_limit` control messages.
    pub(crate) fn new(capacity: usize, control_limit: usize) -> Self {
        SendQueue {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            capacity: capacity.max(1),
            control_limit: control_limit.max(1),
            sent: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a tick, conflating or evicting when full.
    pub(crate) fn push_data(&self, key: ConflationKey, message: Utf8Bytes) -> Pushed {
        let outcome = {
            let mut state = self.state.lock();
            if state.closed {
                return Pushed::Closed;
            }
            let full = state.data.len() >= self.capacity;
            if full && let Some(&seq) = state.latest.get(&key) {
                let position = (seq - state.head_seq) as usize;
                if let Some(entry) = state.data.get_mut(position) {
                    entry.message = message;
                }
                self.conflated.fetch_add(1, Ordering::Relaxed);
                // The writer already has a wake-up pending for the queued entry.
                return Pushed::Conflated;
            }
            let mut outcome = Pushed::Queued;
            if full {
                if let Some(oldest) = state.data.pop_front() {
                    let oldest_seq = state.head_seq;
                    state.head_seq += 1;
                    if state.latest.get(&oldest.key) == Some(&oldest_seq) {
                        state.latest.remove(&oldest.key);
                    }
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
                outcome = Pushed::EvictedOldest;
            }
            let seq = state.head_seq + state.data.len() as u64;
            state.data.push_back(DataEntry { key, message });
            state.latest.insert(key, seq);
            outcome
        };
        self.wake.notify_one();
        outcome
    }

    /// Queues a control message. Returns false when the send queue is closed or the control
    /// queue overflowed (the client is not reading: the send queue closes itself).
    pub(crate) fn push_control(&self, message: Outgoing) -> bool {
        {
            let mut state = self.state.lock();
            if state.closed {
                return false;
            }
            if state.control.len() >= self.control_limit {
                state.control.clear();
                state
                    .control
                    .push_back(Outgoing::Close(1008, "client is not reading its messages"));
                state.closed = true;
                drop(state);
                self.wake.notify_one();
                return false;
            }
            let closing = matches!(message, Outgoing::Close(..));
            state.control.push_back(message);
            if closing {
                state.closed = true;
            }
        }
        self.wake.notify_one();
        true
    }

    /// Takes up to `max` messages, control first. Returns an empty batch when there is
    /// nothing to send; `true` when the send queue is closed and fully drained (the writer stops).
    pub(crate) fn take(&self, batch: &mut Vec<Outgoing>, max: usize) -> bool {
        batch.clear();
        let mut state = self.state.lock();
        while batch.len() < max {
            if let Some(control) = state.control.pop_front() {
                let close = matches!(control, Outgoing::Close(..));
                batch.push(control);
                if close {
                    // Nothing after a close frame.
                    state.data.clear();
                    state.latest.clear();
                    state.control.clear();
                    return true;
                }
                continue;
            }
            if state.closed {
                // Closed without a close frame (the connection is gone): discard data.
                state.data.clear();
                state.latest.clear();
                return true;
            }
            match state.data.pop_front() {
                Some(entry) => {
                    let seq = state.head_seq;
                    state.head_seq += 1;
                    if state.latest.get(&entry.key) == Some(&seq) {
                        state.latest.remove(&entry.key);
                    }
                    batch.push(Outgoing::Text(entry.message));
                }
                None => break,
            }
        }
        false
    }

    /// Waits until something was pushed since the last wait.
    pub(crate) async fn notified(&self) {
        self.wake.notified().await;
    }

    /// Marks the send queue closed without a close frame (the connection ended).
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }

    /// True once closed.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Records messages written to the socket.
    pub(crate) fn record_sent(&self, count: u64) {
        self.sent.fetch_add(count, Ordering::Relaxed);
    }

    /// Counters.
    pub(crate) fn stats(&self) -> SendQueueStats {
        SendQueueStats {
            sent: self.sent.load(Ordering::Relaxed),
            conflated: self.conflated.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_string())
    }

    fn drain(queue: &SendQueue) -> Vec<String> {
        let mut batch = Vec::new();
        queue.take(&mut batch, 100);
        batch
            .into_iter()
            .map(|m| match m {
                Outgoing::Text(t) => t.as_str().to_string(),
                Outgoing::Close(code, _) => format!("close {code}"),
            })
            .collect()
    }

    #[test]
    fn conflates_only_when_full_and_keeps_the_latest() {
        let queue = SendQueue::new(3, 10);
        assert_eq!(queue.push_data(1, text("a1")), Pushed::Queued);
        assert_eq!(queue.push_data(1, text("a2")), Pushed::Queued);
        assert_eq!(queue.push_data(2, text("b1")), Pushed::Queued);
        // Full: a3 replaces a2 (the latest queued tick of key 1) in place.
        assert_eq!(queue.push_data(1, text("a3")), Pushed::Conflated);
        // Full, key 3 not queued: the oldest (a1) is evicted.
        assert_eq!(queue.push_data(3, text("c1")), Pushed::EvictedOldest);
        assert!(queue.push_control(Outgoing::Text(text("ctl"))));
        assert_eq!(drain(&queue), ["ctl", "a3", "b1", "c1"]);
        let stats = queue.stats();
        assert_eq!((stats.conflated, stats.dropped), (1, 1));
        // After draining, the index is consistent: new pushes queue normally.
        assert_eq!(queue.push_data(1, text("a4")), Pushed::Queued);
        assert_eq!(drain(&queue), ["a4"]);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_distinct_keys() {
        let queue = SendQueue::new(8, 10);
        for i in 0..10_000u64 {
            queue.push_data(i % 100, text(&i.to_string()));
        }
        let drained = drain(&queue);
        assert_eq!(drained.len(), 8);
        assert_eq!(drained.last().map(String::as_str), Some("9999"));
    }

    #[test]
    fn close_frame_ends_the_stream_and_control_overflow_closes() {
        let queue = SendQueue::new(4, 2);
        queue.push_data(1, text("x"));
        assert!(queue.push_control(Outgoing::Close(4401, "Authentication timeout")));
        assert!(!queue.push_control(Outgoing::Text(text("late"))));
        assert_eq!(queue.push_data(1, text("y")), Pushed::Closed);
        let mut batch = Vec::new();
        assert!(queue.take(&mut batch, 10));
        assert_eq!(batch, [Outgoing::Close(4401, "Authentication timeout")]);

        let flooded = SendQueue::new(4, 2);
        assert!(flooded.push_control(Outgoing::Text(text("1"))));
        assert!(flooded.push_control(Outgoing::Text(text("2"))));
        assert!(!flooded.push_control(Outgoing::Text(text("3"))));
        assert!(flooded.is_closed());
        assert_eq!(drain(&flooded), ["close 1008"]);
    }
}
