//! One user's event stream: sequence numbers, the bounded replay buffer and the cursors of the
//! user's connected sockets.
//!
//! Every mutation happens under the stream's lock, and every emit to a socket of the user too,
//! so a socket's cursor and what it has been sent can never disagree: an event is either
//! replayed to a connecting socket or delivered live, never both and never neither.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// The event a socket receives when events it should have received are gone from the replay
/// buffer: it should re-fetch its state over REST.
pub const REPLAY_GAP_EVENT: &str = "replay_gap";

/// Payload of the [`REPLAY_GAP_EVENT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayGap {
    /// First `seq` that cannot be delivered (inclusive).
    pub from_seq: u64,
    /// Last `seq` that cannot be delivered (inclusive). Events after it follow.
    pub to_seq: u64,
    /// The newest `seq` of the user's stream when the gap was sent.
    pub latest_seq: u64,
    /// `expired` (evicted from the replay buffer by size or age) or `unknown_offset` (the
    /// offset is ahead of the stream: not one this server issued).
    pub reason: &'static str,
    /// Human-readable advice.
    pub message: &'static str,
}

impl ReplayGap {
    fn expired(from_seq: u64, to_seq: u64) -> Self {
        ReplayGap {
            from_seq,
            to_seq,
            latest_seq: 0,
            reason: "expired",
            message: "events were missed and are no longer buffered: re-fetch orders, trades and positions over REST",
        }
    }

    fn unknown_offset(to_seq: u64) -> Self {
        ReplayGap {
            from_seq: 0,
            to_seq,
            latest_seq: 0,
            reason: "unknown_offset",
            message: "the offset was not issued by this server: re-fetch orders, trades and positions over REST",
        }
    }

    /// Widens this gap to also cover `other`.
    fn merge(&mut self, other: ReplayGap) {
        self.from_seq = self.from_seq.min(other.from_seq);
        self.to_seq = self.to_seq.max(other.to_seq);
        if other.reason == "unknown_offset" {
            self.reason = other.reason;
            self.message = other.message;
        }
    }
}

/// Why an emit to a socket did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EmitError {
    /// The socket's buffer is full: try again later.
    Full,
    /// The socket is gone.
    Closed,
    /// The payload could not be encoded: skip it.
    Encode,
}

/// Where a stream sends packets: a connected socket (or a test double in unit tests).
pub(crate) trait Outlet {
    /// Identifies the socket within its user's stream.
    type Id: PartialEq + Copy + std::fmt::Debug;
    /// The socket's id.
    fn id(&self) -> Self::Id;
    /// Emits an event with an already-encoded JSON payload.
    fn emit_raw(&self, event: &'static str, payload: &RawValue) -> Result<(), EmitError>;
    /// Emits a [`REPLAY_GAP_EVENT`].
    fn emit_gap(&self, gap: &ReplayGap) -> Result<(), EmitError>;
    /// True while the socket uses the long-polling transport.
    fn is_polling(&self) -> bool {
        false
    }
    /// False once the socket is gone.
    fn is_connected(&self) -> bool {
        true
    }
}

/// An event's catalog payload encoded once, ready to get each user's `event_id` and `seq`.
#[derive(Debug, Clone)]
pub(crate) struct EncodedEvent {
    /// The Socket.IO event name.
    pub name: &'static str,
    /// The payload object without its closing brace (`{"symbol":"SBIN",...`).
    open_object: String,
    /// Whether the object already has keys (so ours need a leading comma).
    has_keys: bool,
    id: Uuid,
}

impl EncodedEvent {
    /// Encodes the catalog object of `name` with the envelope id `id`. Fails when the payload
    /// is not a JSON object.
    pub fn new(name: &'static str, id: Uuid, payload: &impl Serialize) -> Result<Self, String> {
        let mut json = serde_json::to_string(payload).map_err(|error| error.to_string())?;
        if !(json.starts_with('{') && json.ends_with('}')) {
            return Err(format!("{name} payload is not a JSON object"));
        }
        json.pop();
        let has_keys = json.len() > 1;
        Ok(EncodedEvent {
            name,
            open_object: json,
            has_keys,
            id,
        })
    }

    /// The payload with our extra keys `event_id` and `seq` appended.
    pub fn with_seq(&self, seq: u64) -> Result<Box<RawValue>, EmitError> {
        let mut json = String::with_capacity(self.open_object.len() + 72);
        json.push_str(&self.open_object);
        if self.has_keys {
            json.push(',');
        }
        json.push_str("\"event_id\":\"");
        json.push_str(
            self.id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        );
        json.push_str("\",\"seq\":");
        json.push_str(&seq.to_string());
        json.push('}');
        RawValue::from_string(json).map_err(|_| EmitError::Encode)
    }
}

/// One buffered event.
#[derive(Debug)]
struct Buffered {
    seq: u64,
    at: Instant,
    event: &'static str,
    payload: Arc<RawValue>,
}

/// A connected socket of the user and how far it got.
#[derive(Debug)]
struct Attached<O> {
    outlet: O,
    /// The `seq` of the last event handed to this socket (or skipped by a gap).
    cursor: u64,
    /// A gap still to announce before anything else.
    pending_gap: Option<ReplayGap>,
    /// Long-polling pacing: start of the current window and packets sent in it.
    window: (Instant, usize),
}

/// How fast long-polling sockets are fed: python-engineio clients reject a polling response
/// of more than 16 packets, so a polling socket gets at most `burst` packets per `window`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub burst: usize,
    pub window: Duration,
}

impl Pace {
    /// No pacing (tests of other behaviour).
    #[cfg(test)]
    pub const NONE: Pace = Pace {
        burst: usize::MAX,
        window: Duration::from_secs(1),
    };
}

/// Limits of the replay buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub capacity: usize,
    /// Payload bytes buffered per user (the newest event is always kept).
    pub max_bytes: usize,
    pub max_age: Duration,
}

/// What a [`UserStream::pump`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PumpReport {
    /// Events handed to sockets.
    pub delivered: u64,
    /// Emits deferred because a socket's buffer was full.
    pub deferred: u64,
    /// Events evicted before a connected socket could take them (per socket).
    pub lost: u64,
    /// Gap notices sent.
    pub gaps_sent: u64,
    /// Sockets found closed and removed.
    pub closed: u64,
    /// Payloads that could not be encoded.
    pub encode_failed: u64,
    /// Polling sockets that reached their per-call packet budget.
    pub paced: u64,
}

impl PumpReport {
    pub fn add(&mut self, other: PumpReport) {
        self.delivered += other.delivered;
        self.deferred += other.deferred;
        self.lost += other.lost;
        self.gaps_sent += other.gaps_sent;
        self.closed += other.closed;
        self.encode_failed += other.encode_failed;
        self.paced += other.paced;
    }
}

/// What [`UserStream::attach`] found about the socket's offset.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttachReport {
    /// Events the socket asked for that are no longer buffered.
    pub missed: u64,
    /// Buffered events it will be replayed.
    pub replayable: u64,
}

/// One user's stream.
#[derive(Debug)]
pub(crate) struct UserStream<O> {
    next_seq: u64,
    ring: VecDeque<Buffered>,
    /// Payload bytes in `ring`.
    ring_bytes: usize,
    sockets: Vec<Attached<O>>,
    /// Connections between authentication and attach: the stream must not be swept meanwhile.
    pub connecting: u32,
}

impl<O: Outlet> UserStream<O> {
    /// A stream whose first event gets `base` (> 0).
    pub fn new(base: u64) -> Self {
        UserStream {
            next_seq: base.max(1),
            ring: VecDeque::new(),
            ring_bytes: 0,
            sockets: Vec::new(),
            connecting: 0,
        }
    }

    /// The newest `seq` issued (the one before the first when none was).
    pub fn latest(&self) -> u64 {
        self.next_seq - 1
    }

    fn oldest(&self) -> u64 {
        self.ring
            .front()
            .map_or(self.next_seq, |buffered| buffered.seq)
    }

    /// Connected sockets.
    #[cfg(test)]
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// True when nothing would be lost by forgetting this stream.
    pub fn is_idle(&self) -> bool {
        self.sockets.is_empty() && self.ring.is_empty() && self.connecting == 0
    }

    /// True when some socket has not received everything yet.
    pub fn is_behind(&self) -> bool {
        let latest = self.latest();
        self.sockets
            .iter()
            .any(|socket| socket.cursor < latest || socket.pending_gap.is_some())
    }

    /// Drops buffered events older than the age limit.
    pub fn expire(&mut self, limits: Limits, now: Instant) {
        while let Some(front) = self.ring.front() {
            if now.saturating_duration_since(front.at) > limits.max_age {
                self.pop_oldest();
            } else {
                break;
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(evicted) = self.ring.pop_front() {
            self.ring_bytes -= evicted.payload.get().len();
        }
    }

    /// Payload bytes buffered now.
    #[cfg(test)]
    pub fn buffered_bytes(&self) -> usize {
        self.ring_bytes
    }

    /// Appends an event, giving it the next `seq`; evicts the oldest beyond the limits.
    /// Returns the `seq`, or the encoding error (the event is then skipped).
    pub fn append(
        &mut self,
        event: &EncodedEvent,
        limits: Limits,
        now: Instant,
    ) -> Result<u64, EmitError> {
        let seq = self.next_seq;
        let payload: Arc<RawValue> = Arc::from(event.with_seq(seq)?);
        self.next_seq += 1;
        self.expire(limits, now);
        let size = payload.get().len();
        while !self.ring.is_empty()
            && (self.ring.len() >= limits.capacity.max(1)
                || self.ring_bytes + size > limits.max_bytes)
        {
            self.pop_oldest();
        }
        self.ring_bytes += size;
        self.ring.push_back(Buffered {
            seq,
            at: now,
            event: event.name,
            payload,
        });
        Ok(seq)
    }

    /// Adds a socket. `offset` is the last `seq` it has seen: everything after it that is still
    /// buffered will be replayed by the next [`UserStream::pump`]; a part no longer buffered is
    /// announced with a [`ReplayGap`] first.
    pub fn attach(&mut self, outlet: O, offset: u64) -> AttachReport {
        let latest = self.latest();
        let oldest = self.oldest();
        let mut report = AttachReport::default();
        let (cursor, pending_gap) = if offset > latest {
            report.missed = 0;
            (latest, Some(ReplayGap::unknown_offset(latest)))
        } else if offset.saturating_add(1) < oldest {
            report.missed = oldest - 1 - offset;
            (oldest - 1, Some(ReplayGap::expired(offset + 1, oldest - 1)))
        } else {
            (offset, None)
        };
        report.replayable = latest - cursor;
        self.sockets.push(Attached {
            outlet,
            cursor,
            pending_gap,
            window: (Instant::now(), 0),
        });
        report
    }

    /// Removes sockets that are gone (a disconnect that raced with the attach). Returns how many.
    pub fn prune_closed(&mut self) -> u64 {
        let before = self.sockets.len();
        self.sockets.retain(|socket| socket.outlet.is_connected());
        (before - self.sockets.len()) as u64
    }

    /// Removes a socket. Returns whether it was attached.
    pub fn detach(&mut self, id: O::Id) -> bool {
        let before = self.sockets.len();
        self.sockets.retain(|socket| socket.outlet.id() != id);
        self.sockets.len() != before
    }

    /// Sends every socket what it has not received yet, in order, as far as its buffer allows.
    /// A socket on long-polling gets at most `pace.burst` packets per `pace.window`.
    pub fn pump(&mut self, pace: Pace, now: Instant) -> PumpReport {
        let mut report = PumpReport::default();
        let latest = self.latest();
        let oldest = self.oldest();
        let ring = &self.ring;
        self.sockets.retain_mut(|socket| {
            let polling = socket.outlet.is_polling();
            if polling && now.saturating_duration_since(socket.window.0) >= pace.window {
                socket.window = (now, 0);
            }
            let mut budget = if polling {
                pace.burst.max(1).saturating_sub(socket.window.1)
            } else {
                usize::MAX
            };
            // Events evicted before this socket could take them: lost for it; say so.
            if socket.cursor.saturating_add(1) < oldest {
                report.lost += oldest - 1 - socket.cursor;
                let gap = ReplayGap::expired(socket.cursor + 1, oldest - 1);
                match &mut socket.pending_gap {
                    Some(pending) => pending.merge(gap),
                    None => socket.pending_gap = Some(gap),
                }
                socket.cursor = oldest - 1;
            }
            if let Some(gap) = &mut socket.pending_gap {
                gap.latest_seq = latest;
                if budget == 0 {
                    report.paced += 1;
                    return true;
                }
                budget -= 1;
                socket.window.1 += 1;
                match socket.outlet.emit_gap(gap) {
                    Ok(()) => {
                        report.gaps_sent += 1;
                        socket.pending_gap = None;
                    }
                    Err(EmitError::Full) => {
                        report.deferred += 1;
                        return true;
                    }
                    Err(EmitError::Closed) => {
                        report.closed += 1;
                        return false;
                    }
                    Err(EmitError::Encode) => {
                        report.encode_failed += 1;
                        socket.pending_gap = None;
                    }
                }
            }
            // Contiguous seqs: the ring index of the next event is a subtraction away.
            let start = usize::try_from(socket.cursor + 1 - oldest).unwrap_or(usize::MAX);
            for buffered in ring.range(start.min(ring.len())..) {
                if budget == 0 {
                    report.paced += 1;
                    return true;
                }
                budget -= 1;
                socket.window.1 += 1;
                match socket.outlet.emit_raw(buffered.event, &buffered.payload) {
                    Ok(()) => report.delivered += 1,
                    Err(EmitError::Full) => {
                        report.deferred += 1;
                        return true;
                    }
                    Err(EmitError::Closed) => {
                        report.closed += 1;
                        return false;
                    }
                    Err(EmitError::Encode) => report.encode_failed += 1,
                }
                socket.cursor = buffered.seq;
            }
            true
        });
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A socket with a fixed buffer that the test drains by hand.
    #[derive(Debug, Clone)]
    struct TestOutlet {
        id: u32,
        capacity: usize,
        sent: Rc<RefCell<Vec<(String, serde_json::Value)>>>,
        buffered: Rc<RefCell<usize>>,
        closed: Rc<RefCell<bool>>,
    }

    impl TestOutlet {
        fn new(id: u32, capacity: usize) -> Self {
            TestOutlet {
                id,
                capacity,
                sent: Rc::default(),
                buffered: Rc::default(),
                closed: Rc::default(),
            }
        }

        fn push(&self, event: &str, json: serde_json::Value) -> Result<(), EmitError> {
            if *self.closed.borrow() {
                return Err(EmitError::Closed);
            }
            if *self.buffered.borrow() >= self.capacity {
                return Err(EmitError::Full);
            }
            *self.buffered.borrow_mut() += 1;
            self.sent.borrow_mut().push((event.to_string(), json));
            Ok(())
        }

        fn drain(&self) {
            *self.buffered.borrow_mut() = 0;
        }

        fn seqs(&self) -> Vec<u64> {
            self.sent
                .borrow()
                .iter()
                .filter(|(event, _)| event != REPLAY_GAP_EVENT)
                .map(|(_, json)| json["seq"].as_u64().unwrap())
                .collect()
        }

        fn gaps(&self) -> Vec<serde_json::Value> {
            self.sent
                .borrow()
                .iter()
                .filter(|(event, _)| event == REPLAY_GAP_EVENT)
                .map(|(_, json)| json.clone())
                .collect()
        }
    }

    impl Outlet for TestOutlet {
        type Id = u32;
        fn id(&self) -> u32 {
            self.id
        }
        fn emit_raw(&self, event: &'static str, payload: &RawValue) -> Result<(), EmitError> {
            self.push(event, serde_json::from_str(payload.get()).unwrap())
        }
        fn emit_gap(&self, gap: &ReplayGap) -> Result<(), EmitError> {
            self.push(REPLAY_GAP_EVENT, serde_json::to_value(gap).unwrap())
        }
    }

    const LIMITS: Limits = Limits {
        capacity: 5,
        max_bytes: usize::MAX,
        max_age: Duration::from_secs(60),
    };

    fn event(n: u32) -> EncodedEvent {
        EncodedEvent::new(
            "order_notification",
            Uuid::now_v7(),
            &serde_json::json!({"symbol": "SBIN", "n": n}),
        )
        .unwrap()
    }

    #[test]
    fn payload_gets_event_id_and_seq_after_the_catalog_keys() {
        let id = Uuid::parse_str("01948f5e-8c3a-7b2d-9c4e-123456789abc").unwrap();
        let encoded = EncodedEvent::new("x", id, &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(
            encoded.with_seq(7).unwrap().get(),
            r#"{"a":1,"event_id":"01948f5e-8c3a-7b2d-9c4e-123456789abc","seq":7}"#
        );
        let empty = EncodedEvent::new("x", id, &serde_json::json!({})).unwrap();
        assert_eq!(
            empty.with_seq(1).unwrap().get(),
            r#"{"event_id":"01948f5e-8c3a-7b2d-9c4e-123456789abc","seq":1}"#
        );
        assert!(EncodedEvent::new("x", id, &serde_json::json!([1])).is_err());
    }

    #[test]
    fn the_replay_buffer_is_bounded_in_bytes_as_well_as_in_events() {
        let limits = Limits {
            capacity: 1000,
            max_bytes: 4096,
            max_age: Duration::from_secs(60),
        };
        let mut stream: UserStream<TestOutlet> = UserStream::new(1);
        let now = Instant::now();
        let big = |n: u32| {
            EncodedEvent::new(
                "order_notification",
                Uuid::now_v7(),
                &serde_json::json!({"strategy": "x".repeat(1000), "n": n}),
            )
            .unwrap()
        };
        for n in 0..50 {
            stream.append(&big(n), limits, now).unwrap();
            assert!(
                stream.buffered_bytes() <= 4096,
                "{}",
                stream.buffered_bytes()
            );
        }
        // About 1.1 KB each: three fit, and the newest is always kept.
        assert_eq!(stream.ring.len(), 3);
        assert_eq!(stream.ring.back().map(|b| b.seq), Some(50));
        // One event larger than the whole budget is still kept (alone).
        let huge = EncodedEvent::new(
            "order_notification",
            Uuid::now_v7(),
            &serde_json::json!({"strategy": "x".repeat(10_000)}),
        )
        .unwrap();
        stream.append(&huge, limits, now).unwrap();
        assert_eq!(stream.ring.len(), 1);
        stream.append(&big(51), limits, now).unwrap();
        assert_eq!(
            stream.ring.len(),
            1,
            "the huge one was evicted for the new one"
        );
        assert!(stream.buffered_bytes() <= 4096);
    }

    #[test]
    fn live_delivery_in_order_from_the_attach_point() {
        let mut stream = UserStream::new(100);
        let now = Instant::now();
        stream.append(&event(0), LIMITS, now).unwrap();
        let socket = TestOutlet::new(1, 100);
        let report = stream.attach(socket.clone(), stream.latest());
        assert_eq!(report, AttachReport::default());
        for n in 1..=3 {
            stream.append(&event(n), LIMITS, now).unwrap();
            stream.pump(Pace::NONE, Instant::now());
        }
        assert_eq!(socket.seqs(), vec![101, 102, 103]);
        assert!(!stream.is_behind());
    }

    #[test]
    fn replay_from_offset_then_live_without_duplicates() {
        let mut stream = UserStream::new(1);
        let now = Instant::now();
        for n in 0..4 {
            stream.append(&event(n), LIMITS, now).unwrap();
        }
        let socket = TestOutlet::new(1, 100);
        let report = stream.attach(socket.clone(), 2);
        assert_eq!(report.missed, 0);
        assert_eq!(report.replayable, 2);
        stream.pump(Pace::NONE, Instant::now());
        stream.append(&event(4), LIMITS, now).unwrap();
        stream.pump(Pace::NONE, Instant::now());
        stream.pump(Pace::NONE, Instant::now());
        assert_eq!(socket.seqs(), vec![3, 4, 5]);
        assert!(socket.gaps().is_empty());
    }

    #[test]
    fn offset_older_than_the_buffer_gets_a_gap_then_what_is_buffered() {
        let mut stream = UserStream::new(1);
        let now = Instant::now();
        for n in 0..12 {
            stream.append(&event(n), LIMITS, now).unwrap();
        }
        // Buffer holds 8..=12.
        let socket = TestOutlet::new(1, 100);
        let report = stream.attach(socket.clone(), 3);
        assert_eq!(report.missed, 4);
        stream.pump(Pace::NONE, Instant::now());
        let gaps = socket.gaps();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0]["from_seq"], 4);
        assert_eq!(gaps[0]["to_seq"], 7);
        assert_eq!(gaps[0]["latest_seq"], 12);
        assert_eq!(gaps[0]["reason"], "expired");
        assert_eq!(
            socket.sent.borrow()[0].0,
            REPLAY_GAP_EVENT,
            "gap comes first"
        );
        assert_eq!(socket.seqs(), vec![8, 9, 10, 11, 12]);
    }

    #[test]
    fn offset_ahead_of_the_stream_is_unknown() {
        let mut stream: UserStream<TestOutlet> = UserStream::new(50);
        let socket = TestOutlet::new(1, 100);
        stream.attach(socket.clone(), 999);
        stream.pump(Pace::NONE, Instant::now());
        let gaps = socket.gaps();
        assert_eq!(gaps[0]["reason"], "unknown_offset");
        assert_eq!(gaps[0]["from_seq"], 0);
        assert_eq!(gaps[0]["to_seq"], 49);
    }

    #[test]
    fn aged_out_events_are_gone() {
        let mut stream: UserStream<TestOutlet> = UserStream::new(1);
        let then = Instant::now();
        stream.append(&event(0), LIMITS, then).unwrap();
        stream.expire(LIMITS, then + Duration::from_secs(61));
        assert!(stream.ring.is_empty());
        assert_eq!(stream.latest(), 1);
        let socket = TestOutlet::new(1, 100);
        assert_eq!(stream.attach(socket, 0).missed, 1);
    }

    #[test]
    fn a_full_socket_catches_up_later_and_never_blocks_another() {
        let mut stream = UserStream::new(1);
        let now = Instant::now();
        let slow = TestOutlet::new(1, 2);
        let fast = TestOutlet::new(2, 1000);
        stream.attach(slow.clone(), 0);
        stream.attach(fast.clone(), 0);
        let mut deferred = 0;
        for n in 0..4 {
            stream.append(&event(n), LIMITS, now).unwrap();
            deferred += stream.pump(Pace::NONE, Instant::now()).deferred;
            fast.drain();
        }
        assert_eq!(fast.seqs(), vec![1, 2, 3, 4]);
        assert_eq!(slow.seqs(), vec![1, 2]);
        assert_eq!(deferred, 2);
        assert!(stream.is_behind());
        slow.drain();
        stream.pump(Pace::NONE, Instant::now());
        assert_eq!(slow.seqs(), vec![1, 2, 3, 4]);
        assert!(!stream.is_behind());
    }

    #[test]
    fn a_socket_left_behind_the_buffer_counts_losses_and_gets_one_gap() {
        let mut stream = UserStream::new(1);
        let now = Instant::now();
        let slow = TestOutlet::new(1, 1);
        stream.attach(slow.clone(), 0);
        let mut lost = 0;
        for n in 0..20 {
            stream.append(&event(n), LIMITS, now).unwrap();
            lost += stream.pump(Pace::NONE, Instant::now()).lost;
        }
        // Took seq 1, then its buffer stayed full; the ring holds 16..=20.
        assert_eq!(lost, 14);
        slow.drain();
        stream.pump(Pace::NONE, Instant::now());
        slow.drain();
        for _ in 0..10 {
            stream.pump(Pace::NONE, Instant::now());
            slow.drain();
        }
        let gaps = slow.gaps();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0]["from_seq"], 2);
        assert_eq!(gaps[0]["to_seq"], 15);
        assert_eq!(slow.seqs(), vec![1, 16, 17, 18, 19, 20]);
    }

    #[test]
    fn polling_sockets_get_a_bounded_burst_per_pump() {
        #[derive(Debug, Clone)]
        struct Polling(TestOutlet);
        impl Outlet for Polling {
            type Id = u32;
            fn id(&self) -> u32 {
                self.0.id
            }
            fn emit_raw(&self, event: &'static str, payload: &RawValue) -> Result<(), EmitError> {
                self.0.emit_raw(event, payload)
            }
            fn emit_gap(&self, gap: &ReplayGap) -> Result<(), EmitError> {
                self.0.emit_gap(gap)
            }
            fn is_polling(&self) -> bool {
                true
            }
        }
        let mut stream = UserStream::new(1);
        let socket = TestOutlet::new(1, 1000);
        stream.attach(Polling(socket.clone()), 0);
        let now = Instant::now();
        for n in 0..30 {
            stream.append(&event(n), LIMITS_BIG, now).unwrap();
        }
        let pace = Pace {
            burst: 12,
            window: Duration::from_millis(20),
        };
        assert_eq!(stream.pump(pace, now).paced, 1);
        assert_eq!(socket.seqs().len(), 12);
        // Same window: nothing more, however often it is pumped.
        stream.pump(pace, now);
        assert_eq!(socket.seqs().len(), 12);
        stream.pump(pace, now + Duration::from_millis(20));
        assert_eq!(socket.seqs().len(), 24);
        stream.pump(pace, now + Duration::from_millis(40));
        assert_eq!(socket.seqs(), (1..=30).collect::<Vec<_>>());
        assert!(!stream.is_behind());
    }

    const LIMITS_BIG: Limits = Limits {
        capacity: 100,
        max_bytes: usize::MAX,
        max_age: Duration::from_secs(60),
    };

    #[test]
    fn closed_sockets_are_removed() {
        let mut stream = UserStream::new(1);
        let socket = TestOutlet::new(1, 10);
        stream.attach(socket.clone(), 0);
        *socket.closed.borrow_mut() = true;
        stream.append(&event(0), LIMITS, Instant::now()).unwrap();
        assert_eq!(stream.pump(Pace::NONE, Instant::now()).closed, 1);
        assert_eq!(stream.socket_count(), 0);
        assert!(!stream.is_idle(), "the ring still holds an event");
        let other = TestOutlet::new(2, 10);
        stream.attach(other, 1);
        assert!(stream.detach(2));
        assert!(!stream.detach(2));
    }
}
