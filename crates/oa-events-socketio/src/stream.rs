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
    pub(crate) fn expired(from_seq: u64, to_seq: u64) -> Self {
        ReplayGap {
            from_seq,
            to_seq,
            latest_seq: 0,
            reason: "expired",
            message: "events were missed and are no longer buffered: re-fetch orders, trades and positions over REST",
        }
    }

    pub(crate) fn unknown_offset(to_seq: u64) -> Self {
        ReplayGap {
            from_seq: 0,
            to_seq,
            latest_seq: 0,
            reason: "unknown_offset",
            message: "the offset was not issued by this server: re-fetch orders, trades and positions over REST",
        }
    }

    /// Widens this gap to also cover `other`.
    pub(crate) fn merge(&mut self, other: ReplayGap) {
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
    /// Position in this stream: +1 per appended event, whatever its `seq`.
    ordinal: u64,
    seq: u64,
    at: Instant,
    event: &'static str,
    payload: Arc<RawValue>,
}

/// An event read back from the durable log for one connecting socket (an edge's replay),
/// with its `seq` already in the payload.
#[derive(Debug, Clone)]
pub(crate) struct Replayed {
    pub event: &'static str,
    pub payload: Arc<RawValue>,
}

/// What a socket is sent before the shared ring: a replay read back from the log.
#[derive(Debug)]
enum Queued {
    Gap(ReplayGap),
    Event(Replayed),
}

/// What a connecting socket brings besides its offset: the events between its offset and
/// `through` read back from the log, and the gap announcing what the log no longer holds.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    /// The `seq` up to which the log was read (the ring takes over after it).
    pub through: u64,
    /// Sent first, when part of the range is gone from the log.
    pub gap: Option<ReplayGap>,
    /// The user's events in the range, in order.
    pub events: Vec<Replayed>,
    /// Events (at most) the log no longer held.
    pub missed: u64,
    /// The offset is a log position this server has not read yet (another edge was ahead):
    /// the socket skips events up to it instead of getting `unknown_offset`.
    pub ahead: bool,
}

/// A connected socket of the user and how far it got.
#[derive(Debug)]
struct Attached<O> {
    outlet: O,
    /// The ordinal of the last ring event handed to this socket (or skipped by a gap).
    cursor: u64,
    /// The `seq` of that event (what a gap starting after it reports).
    cursor_seq: u64,
    /// A gap still to announce before anything else.
    pending_gap: Option<ReplayGap>,
    /// A replay read back from the log, sent before the ring.
    queue: VecDeque<Queued>,
    /// Ring events up to this `seq` were received elsewhere (an offset ahead of this edge):
    /// skipped, not sent.
    skip_through: u64,
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

/// A point of the stream: an event's ordinal and `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    ordinal: u64,
    seq: u64,
}

/// One user's stream.
///
/// Events get increasing `seq`s: +1 each on a server that numbers them itself, or their
/// position in a durable log on an edge (increasing, not contiguous). Every event of the
/// user with a `seq` above the floor (the last one evicted) is in the ring.
#[derive(Debug)]
pub(crate) struct UserStream<O> {
    next_ordinal: u64,
    latest_seq: u64,
    floor: Mark,
    ring: VecDeque<Buffered>,
    /// Payload bytes in `ring`.
    ring_bytes: usize,
    sockets: Vec<Attached<O>>,
    /// Connections between authentication and attach: the stream must not be swept meanwhile.
    pub connecting: u32,
}

/// What [`UserStream::pump`] does with a socket after an emit.
enum Next {
    Go,
    /// Stop here for now; keep the socket.
    Wait,
    /// The socket is gone.
    Drop,
}

impl<O: Outlet> UserStream<O> {
    /// A stream that numbers its events itself, the first one `base` (> 0).
    pub fn new(base: u64) -> Self {
        let next_ordinal = base.max(1);
        Self::with_floor(
            next_ordinal,
            Mark {
                ordinal: next_ordinal - 1,
                seq: next_ordinal - 1,
            },
        )
    }

    /// A stream whose events carry their own `seq`s (log positions), holding every event of
    /// the user after `seq`.
    pub fn after(seq: u64) -> Self {
        Self::with_floor(1, Mark { ordinal: 0, seq })
    }

    fn with_floor(next_ordinal: u64, floor: Mark) -> Self {
        UserStream {
            next_ordinal,
            latest_seq: floor.seq,
            floor,
            ring: VecDeque::new(),
            ring_bytes: 0,
            sockets: Vec::new(),
            connecting: 0,
        }
    }

    /// The newest `seq` issued (the one before the first when none was).
    pub fn latest(&self) -> u64 {
        self.latest_seq
    }

    /// The `seq` after which every event of the user is in the ring.
    pub fn floor(&self) -> u64 {
        self.floor.seq
    }

    fn latest_ordinal(&self) -> u64 {
        self.next_ordinal - 1
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
        let latest = self.latest_ordinal();
        self.sockets.iter().any(|socket| {
            socket.cursor < latest || socket.pending_gap.is_some() || !socket.queue.is_empty()
        })
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
            self.floor = Mark {
                ordinal: evicted.ordinal,
                seq: evicted.seq,
            };
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
        self.append_at(event, self.latest_seq + 1, limits, now)
    }

    /// Appends an event with the given `seq` (raised to the latest one when below it, so
    /// the ring stays in order); evicts the oldest beyond the limits.
    pub fn append_at(
        &mut self,
        event: &EncodedEvent,
        seq: u64,
        limits: Limits,
        now: Instant,
    ) -> Result<u64, EmitError> {
        let seq = seq.max(self.latest_seq);
        let payload: Arc<RawValue> = Arc::from(event.with_seq(seq)?);
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        self.latest_seq = seq;
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
            ordinal,
            seq,
            at: now,
            event: event.name,
            payload,
        });
        Ok(seq)
    }

    /// Adds a socket. `offset` is the last `seq` it has seen: everything after it that is still
    /// buffered will be replayed by the next [`UserStream::pump`]; a part no longer buffered is
    /// announced with a [`ReplayGap`] first. A `backlog` read back from the log is sent
    /// before the ring, which takes over after `backlog.through`.
    pub fn attach(&mut self, outlet: O, offset: u64, backlog: Backlog) -> AttachReport {
        let latest = self.latest_seq;
        let resume = offset.max(backlog.through);
        let mut report = AttachReport {
            missed: backlog.missed,
            replayable: backlog.events.len() as u64,
        };
        let mut queue: VecDeque<Queued> = backlog.gap.into_iter().map(Queued::Gap).collect();
        queue.extend(backlog.events.into_iter().map(Queued::Event));
        let ahead = resume > latest && backlog.ahead;
        let (cursor, pending_gap) = if ahead {
            (
                Mark {
                    ordinal: self.latest_ordinal(),
                    seq: resume,
                },
                None,
            )
        } else if resume > latest {
            (
                Mark {
                    ordinal: self.latest_ordinal(),
                    seq: latest,
                },
                Some(ReplayGap::unknown_offset(latest)),
            )
        } else if resume < self.floor.seq {
            report.missed += self.floor.seq - resume;
            (
                self.floor,
                Some(ReplayGap::expired(resume + 1, self.floor.seq)),
            )
        } else {
            // The last buffered event the socket has seen (seqs are increasing).
            let seen = self.ring.partition_point(|buffered| buffered.seq <= resume);
            let ordinal = match seen.checked_sub(1).and_then(|index| self.ring.get(index)) {
                Some(buffered) => buffered.ordinal,
                None => self.floor.ordinal,
            };
            (
                Mark {
                    ordinal,
                    seq: resume,
                },
                None,
            )
        };
        // After a replay, a gap in the ring comes after it.
        let pending_gap = match pending_gap {
            Some(gap) if !queue.is_empty() => {
                queue.push_back(Queued::Gap(gap));
                None
            }
            gap => gap,
        };
        report.replayable += self.latest_ordinal() - cursor.ordinal;
        self.sockets.push(Attached {
            outlet,
            cursor: cursor.ordinal,
            cursor_seq: cursor.seq,
            pending_gap,
            queue,
            skip_through: if ahead { resume } else { 0 },
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
        let latest = self.latest_seq;
        let oldest = self.ring.front().map_or(self.next_ordinal, |b| b.ordinal);
        let floor = self.floor;
        let ring = &self.ring;
        self.sockets.retain_mut(|socket| {
            let mut budget = if socket.outlet.is_polling() {
                if now.saturating_duration_since(socket.window.0) >= pace.window {
                    socket.window = (now, 0);
                }
                pace.burst.saturating_sub(socket.window.1)
            } else {
                usize::MAX
            };
            // Hands one packet to the socket within its budget.
            let mut send = |socket: &mut Attached<O>,
                            report: &mut PumpReport,
                            emit: &dyn Fn(&O) -> Result<(), EmitError>|
             -> (Next, Result<(), EmitError>) {
                if budget == 0 {
                    report.paced += 1;
                    return (Next::Wait, Err(EmitError::Full));
                }
                budget -= 1;
                socket.window.1 += 1;
                match emit(&socket.outlet) {
                    Ok(()) => (Next::Go, Ok(())),
                    Err(EmitError::Full) => {
                        report.deferred += 1;
                        (Next::Wait, Err(EmitError::Full))
                    }
                    Err(EmitError::Closed) => {
                        report.closed += 1;
                        (Next::Drop, Err(EmitError::Closed))
                    }
                    Err(EmitError::Encode) => {
                        report.encode_failed += 1;
                        (Next::Go, Err(EmitError::Encode))
                    }
                }
            };
            loop {
                // Events evicted before this socket could take them: lost for it; say so
                // (after a replay read back from the log, which comes first).
                if socket.queue.is_empty() && socket.cursor < floor.ordinal {
                    report.lost += floor.ordinal - socket.cursor;
                    let gap = ReplayGap::expired(socket.cursor_seq + 1, floor.seq);
                    match &mut socket.pending_gap {
                        Some(pending) => pending.merge(gap),
                        None => socket.pending_gap = Some(gap),
                    }
                    socket.cursor = floor.ordinal;
                    socket.cursor_seq = floor.seq;
                }
                if let Some(mut gap) = socket.pending_gap.take() {
                    gap.latest_seq = latest;
                    let (next, result) = send(socket, &mut report, &|outlet| outlet.emit_gap(&gap));
                    match result {
                        Ok(()) => report.gaps_sent += 1,
                        Err(EmitError::Full) => socket.pending_gap = Some(gap),
                        Err(_) => {}
                    }
                    match next {
                        Next::Go => {}
                        Next::Wait => return true,
                        Next::Drop => return false,
                    }
                }
                let Some(front) = socket.queue.front_mut() else {
                    break;
                };
                let (next, result) = match front {
                    Queued::Gap(gap) => {
                        gap.latest_seq = latest;
                        let gap = gap.clone();
                        send(socket, &mut report, &|outlet| outlet.emit_gap(&gap))
                    }
                    Queued::Event(event) => {
                        let event = event.clone();
                        send(socket, &mut report, &|outlet| {
                            outlet.emit_raw(event.event, &event.payload)
                        })
                    }
                };
                match (&result, socket.queue.front()) {
                    (Ok(()), Some(Queued::Gap(_))) => report.gaps_sent += 1,
                    (Ok(()), Some(Queued::Event(_))) => report.delivered += 1,
                    _ => {}
                }
                if !matches!(result, Err(EmitError::Full)) {
                    socket.queue.pop_front();
                }
                match next {
                    Next::Go => {}
                    Next::Wait => return true,
                    Next::Drop => return false,
                }
            }
            // Ordinals are contiguous: the ring index of the next event is a subtraction away.
            let start = usize::try_from(socket.cursor + 1 - oldest).unwrap_or(usize::MAX);
            for buffered in ring.range(start.min(ring.len())..) {
                if buffered.seq <= socket.skip_through {
                    socket.cursor = buffered.ordinal;
                    continue;
                }
                let (next, result) = send(socket, &mut report, &|outlet| {
                    outlet.emit_raw(buffered.event, &buffered.payload)
                });
                match next {
                    Next::Go => {}
                    Next::Wait => return true,
                    Next::Drop => return false,
                }
                if result.is_ok() {
                    report.delivered += 1;
                }
                socket.cursor = buffered.ordinal;
                socket.cursor_seq = buffered.seq;
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

    /// A stream whose first seq is 1, holding events 0..count appended now.
    fn stream_of(count: u32) -> UserStream<TestOutlet> {
        let mut stream = UserStream::new(1);
        let now = Instant::now();
        for n in 0..count {
            stream.append(&event(n), LIMITS, now).unwrap();
        }
        stream
    }

    /// A stream after the log position `floor`, holding one event at each of `positions`.
    fn stream_at(floor: u64, positions: impl IntoIterator<Item = u64>) -> UserStream<TestOutlet> {
        let mut stream = UserStream::after(floor);
        for (n, position) in (0..).zip(positions) {
            stream
                .append_at(&event(n), position, LIMITS, Instant::now())
                .unwrap();
        }
        stream
    }

    /// A new socket (id 1, room for 100 events) attached from `offset`, without a backlog.
    fn attach_socket(
        stream: &mut UserStream<TestOutlet>,
        offset: u64,
    ) -> (TestOutlet, AttachReport) {
        attach_with_backlog(stream, 100, offset, Backlog::default())
    }

    /// A new socket (id 1, room for `room` events) attached from `offset` with `backlog`.
    fn attach_with_backlog(
        stream: &mut UserStream<TestOutlet>,
        room: usize,
        offset: u64,
        backlog: Backlog,
    ) -> (TestOutlet, AttachReport) {
        let socket = TestOutlet::new(1, room);
        let report = stream.attach(socket.clone(), offset, backlog);
        (socket, report)
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
        let latest = stream.latest();
        let (socket, report) = attach_socket(&mut stream, latest);
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
        let mut stream = stream_of(4);
        let (socket, report) = attach_socket(&mut stream, 2);
        assert_eq!(report.missed, 0);
        assert_eq!(report.replayable, 2);
        stream.pump(Pace::NONE, Instant::now());
        stream.append(&event(4), LIMITS, Instant::now()).unwrap();
        stream.pump(Pace::NONE, Instant::now());
        stream.pump(Pace::NONE, Instant::now());
        assert_eq!(socket.seqs(), vec![3, 4, 5]);
        assert!(socket.gaps().is_empty());
    }

    #[test]
    fn offset_older_than_the_buffer_gets_a_gap_then_what_is_buffered() {
        let mut stream = stream_of(12);
        // Buffer holds 8..=12.
        let (socket, report) = attach_socket(&mut stream, 3);
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
        let (socket, _) = attach_socket(&mut stream, 999);
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
        assert_eq!(attach_socket(&mut stream, 0).1.missed, 1);
    }

    #[test]
    fn a_full_socket_catches_up_later_and_never_blocks_another() {
        let mut stream = UserStream::new(1);
        let now = Instant::now();
        let slow = TestOutlet::new(1, 2);
        let fast = TestOutlet::new(2, 1000);
        stream.attach(slow.clone(), 0, Backlog::default());
        stream.attach(fast.clone(), 0, Backlog::default());
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
        stream.attach(slow.clone(), 0, Backlog::default());
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
        stream.attach(Polling(socket.clone()), 0, Backlog::default());
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
        stream.attach(socket.clone(), 0, Backlog::default());
        *socket.closed.borrow_mut() = true;
        stream.append(&event(0), LIMITS, Instant::now()).unwrap();
        assert_eq!(stream.pump(Pace::NONE, Instant::now()).closed, 1);
        assert_eq!(stream.socket_count(), 0);
        assert!(!stream.is_idle(), "the ring still holds an event");
        let other = TestOutlet::new(2, 10);
        stream.attach(other, 1, Backlog::default());
        assert!(stream.detach(2));
        assert!(!stream.detach(2));
    }

    fn replayed(seq: u64) -> Replayed {
        Replayed {
            event: "order_notification",
            payload: Arc::from(event(0).with_seq(seq).unwrap()),
        }
    }

    #[test]
    fn log_positions_as_seqs_increase_without_being_contiguous() {
        let mut stream: UserStream<TestOutlet> = UserStream::after(100);
        let now = Instant::now();
        for seq in [105, 110, 120] {
            assert_eq!(stream.append_at(&event(0), seq, LIMITS, now), Ok(seq));
        }
        assert_eq!(stream.latest(), 120);
        let (exact, report) = attach_socket(&mut stream, 105);
        assert_eq!(
            report,
            AttachReport {
                missed: 0,
                replayable: 2
            }
        );
        // An offset between two of the user's positions (another user's event there).
        let between = TestOutlet::new(2, 100);
        stream.attach(between.clone(), 107, Backlog::default());
        stream.pump(Pace::NONE, now);
        assert_eq!(exact.seqs(), vec![110, 120]);
        assert_eq!(between.seqs(), vec![110, 120]);
        stream.append_at(&event(1), 130, LIMITS, now).unwrap();
        stream.pump(Pace::NONE, now);
        assert_eq!(exact.seqs(), vec![110, 120, 130]);
        assert!(exact.gaps().is_empty() && between.gaps().is_empty());
    }

    #[test]
    fn a_seq_below_the_latest_is_raised_so_the_ring_stays_in_order() {
        let mut stream = stream_at(10, [20]);
        let now = Instant::now();
        // A system-wide event on an edge keeps the user's latest position.
        assert_eq!(stream.append_at(&event(1), 0, LIMITS, now), Ok(20));
        let (caught_up, _) = attach_socket(&mut stream, 20);
        stream.pump(Pace::NONE, now);
        assert!(caught_up.sent.borrow().is_empty(), "nothing after 20");
        let behind = TestOutlet::new(2, 100);
        stream.attach(behind.clone(), 10, Backlog::default());
        stream.pump(Pace::NONE, now);
        assert_eq!(behind.seqs(), vec![20, 20]);
    }

    #[test]
    fn evicted_log_positions_give_a_gap_between_positions() {
        let mut stream = stream_at(0, (1..=10).map(|n| n * 10));
        let now = Instant::now();
        // The ring holds 60..=100; the floor is 50.
        assert_eq!(stream.floor(), 50);
        let (socket, report) = attach_socket(&mut stream, 20);
        assert_eq!(report.missed, 30, "positions, an upper bound of the events");
        stream.pump(Pace::NONE, now);
        let gaps = socket.gaps();
        assert_eq!(
            (gaps[0]["from_seq"].as_u64(), gaps[0]["to_seq"].as_u64()),
            (Some(21), Some(50))
        );
        assert_eq!(socket.seqs(), vec![60, 70, 80, 90, 100]);
    }

    #[test]
    fn a_backlog_read_from_the_log_comes_first_then_the_ring_after_it() {
        let mut stream = stream_at(50, [60, 70]);
        let now = Instant::now();
        let backlog = Backlog {
            through: 50,
            gap: Some(ReplayGap::expired(11, 19)),
            events: vec![replayed(20), replayed(40)],
            missed: 9,
            ..Backlog::default()
        };
        let (socket, report) = attach_with_backlog(&mut stream, 100, 10, backlog);
        assert_eq!(
            report,
            AttachReport {
                missed: 9,
                replayable: 4
            }
        );
        assert!(stream.is_behind());
        stream.pump(Pace::NONE, now);
        let sent: Vec<(String, u64)> = socket
            .sent
            .borrow()
            .iter()
            .map(|(name, json)| {
                let seq = json.get("seq").or_else(|| json.get("from_seq"));
                (name.clone(), seq.and_then(|v| v.as_u64()).unwrap_or(0))
            })
            .collect();
        assert_eq!(
            sent,
            vec![
                (REPLAY_GAP_EVENT.to_string(), 11),
                ("order_notification".to_string(), 20),
                ("order_notification".to_string(), 40),
                ("order_notification".to_string(), 60),
                ("order_notification".to_string(), 70),
            ]
        );
        assert_eq!(socket.gaps()[0]["latest_seq"], 70);
        assert!(!stream.is_behind());
    }

    #[test]
    fn a_full_socket_resumes_its_backlog_where_it_stopped() {
        let mut stream = stream_at(50, [60]);
        let now = Instant::now();
        let backlog = Backlog {
            through: 50,
            events: vec![replayed(20), replayed(30), replayed(40)],
            ..Backlog::default()
        };
        let (socket, _) = attach_with_backlog(&mut stream, 2, 10, backlog);
        assert_eq!(stream.pump(Pace::NONE, now).deferred, 1);
        assert_eq!(socket.seqs(), vec![20, 30]);
        socket.drain();
        stream.pump(Pace::NONE, now);
        assert_eq!(socket.seqs(), vec![20, 30, 40, 60]);
    }

    #[test]
    fn ring_evictions_during_a_backlog_are_announced_after_it() {
        // The ring moved on past the backlog's end before the socket attached.
        let mut stream = stream_at(100, 101..=107);
        let now = Instant::now();
        let backlog = Backlog {
            through: 100,
            events: vec![replayed(90)],
            ..Backlog::default()
        };
        let (socket, _) = attach_with_backlog(&mut stream, 1000, 80, backlog);
        stream.pump(Pace::NONE, now);
        let names: Vec<String> = socket
            .sent
            .borrow()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(names[0], "order_notification");
        assert_eq!(names[1], REPLAY_GAP_EVENT);
        let gaps = socket.gaps();
        assert_eq!(
            (gaps[0]["from_seq"].as_u64(), gaps[0]["to_seq"].as_u64()),
            (Some(101), Some(102))
        );
        assert_eq!(socket.seqs(), vec![90, 103, 104, 105, 106, 107]);
    }

    #[test]
    fn an_offset_ahead_of_this_edge_skips_what_arrives_up_to_it() {
        let mut stream = stream_at(100, [110]);
        let now = Instant::now();
        // Received 110 and 120 from an edge whose consumer was further on.
        let backlog = Backlog {
            ahead: true,
            ..Backlog::default()
        };
        let (socket, report) = attach_with_backlog(&mut stream, 100, 120, backlog);
        assert_eq!(report.replayable, 0);
        stream.append_at(&event(1), 120, LIMITS, now).unwrap();
        stream.append_at(&event(2), 130, LIMITS, now).unwrap();
        stream.pump(Pace::NONE, now);
        assert_eq!(socket.seqs(), vec![130], "120 not twice");
        assert!(socket.gaps().is_empty(), "no unknown_offset");
    }
}
