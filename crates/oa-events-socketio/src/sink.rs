//! The layer (connections, authentication, replay) and the [`SocketIoSink`] (delivery).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ConnectInfo;
use oa_events_core::{ApiKeyVerifier, Audience, Envelope, EventSink, SinkError};
use oa_net::{ConnectionLimiter, LoginLimiter};
use parking_lot::{Mutex, RwLock};
use serde_json::value::RawValue;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError, SocketIo};

use crate::config::{ConfigError, SocketIoConfig};
use crate::handshake::{ConnectRefused, Handshake};
use crate::log::{EventLog, LogError, LogPosition, LogQuery};
use crate::stream::{
    Backlog, EmitError, EncodedEvent, Limits, Outlet, Pace, PumpReport, REPLAY_GAP_EVENT,
    ReplayGap, Replayed, UserStream,
};

/// The sink's name in metrics and logs.
pub const SINK_NAME: &str = "socketio";

type Stream = Arc<Mutex<UserStream<SocketRef>>>;

impl Outlet for SocketRef {
    type Id = Sid;

    fn id(&self) -> Sid {
        self.id
    }

    fn emit_raw(&self, event: &'static str, payload: &RawValue) -> Result<(), EmitError> {
        self.emit(event, payload).map_err(emit_error)
    }

    fn emit_gap(&self, gap: &ReplayGap) -> Result<(), EmitError> {
        self.emit(REPLAY_GAP_EVENT, gap).map_err(emit_error)
    }

    fn is_polling(&self) -> bool {
        self.transport_type() == socketioxide::TransportType::Polling
    }

    fn is_connected(&self) -> bool {
        self.connected()
    }
}

fn emit_error(error: SendError) -> EmitError {
    match error {
        SendError::Socket(SocketError::InternalChannelFull) => EmitError::Full,
        SendError::Socket(SocketError::Closed) => EmitError::Closed,
        SendError::Serialize(_) => EmitError::Encode,
    }
}

/// Counters of the Socket.IO layer, readable at any time (the same numbers go to /metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SocketIoStats {
    /// Authenticated sockets connected now.
    pub clients: u64,
    /// Connections refused at the handshake (any reason).
    pub refused: u64,
    /// Events handed to sockets (live and replayed).
    pub emitted: u64,
    /// Emits postponed because a socket's buffer was full (it catches up later).
    pub deferred: u64,
    /// Events a connected socket never received because they were evicted from the replay
    /// buffer while it was not reading (`oa_events_dropped_total{reason="slow_client"}`).
    pub dropped_slow_client: u64,
    /// Events skipped because their payload could not be encoded.
    pub dropped_encode_failed: u64,
    /// `replay_gap` notices sent.
    pub replay_gaps: u64,
    /// Events a reconnecting client asked for that had already been evicted.
    pub replay_missed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    refused: AtomicU64,
    emitted: AtomicU64,
    deferred: AtomicU64,
    dropped_slow_client: AtomicU64,
    dropped_encode_failed: AtomicU64,
    replay_gaps: AtomicU64,
    replay_missed: AtomicU64,
}

/// A connection between its handshake (middleware) and its attach (connect handler).
#[derive(Debug)]
struct Pending {
    user_id: Arc<str>,
    /// The replay offset: the client's, or the stream's latest seq at handshake time.
    offset: u64,
    since: Instant,
    /// When its key was accepted (epoch ms).
    authenticated_at_ms: i64,
    /// What was read back from the log for it (edges).
    backlog: Backlog,
}

/// An attached socket, for ending it when its key is revoked.
#[derive(Debug)]
struct Session {
    user_id: Arc<str>,
    authenticated_at_ms: i64,
    socket: SocketRef,
}

/// How long a socket whose key was revoked keeps its connection after `password_change` was
/// queued to it, so that the notice is written before the disconnect.
const REVOKE_GRACE: Duration = Duration::from_millis(250);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An edge's feed: the log its events come from, and per partition the `seq` of the last
/// event delivered (every event of a partition up to it has been appended to the streams).
struct LogFeed {
    log: Arc<dyn EventLog>,
    heads: Mutex<HashMap<i32, u64>>,
}

impl LogFeed {
    /// The `seq` of the last event delivered from `partition`.
    fn head(&self, partition: i32) -> u64 {
        self.heads
            .lock()
            .get(&partition)
            .copied()
            .unwrap_or_else(|| {
                LogPosition {
                    partition,
                    offset: -1,
                }
                .to_seq()
                .unwrap_or(0)
            })
    }

    fn advance(&self, partition: i32, seq: u64) {
        let mut heads = self.heads.lock();
        let head = heads.entry(partition).or_insert(seq);
        *head = (*head).max(seq);
    }
}

/// State shared by the connect handlers, the sink and the background catch-up task.
struct Shared {
    config: SocketIoConfig,
    verifier: Arc<dyn ApiKeyVerifier>,
    streams: RwLock<HashMap<Arc<str>, Stream>>,
    pending: Mutex<HashMap<Sid, Pending>>,
    sessions: Mutex<HashMap<Sid, Session>>,
    logins: LoginLimiter,
    /// Users with a socket that has not received everything (buffer full).
    lagging: Mutex<HashSet<Arc<str>>>,
    /// The highest seq of any forgotten stream: new streams start above it.
    seq_floor: AtomicU64,
    clients: AtomicI64,
    counters: Counters,
    background_started: AtomicBool,
    /// Set on an edge: seqs are log positions and replays are read back from the log.
    feed: Option<LogFeed>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("users", &self.streams.read().len())
            .field("clients", &self.clients.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// True when a counter going from `total - added` to `total` reached a new power of two: one
/// log line per doubling, so a flood cannot flood the log.
fn rate_limited(total: u64, added: u64) -> bool {
    let before = total.saturating_sub(added);
    added > 0 && (before == 0 || total.ilog2() > before.ilog2())
}

impl Shared {
    fn pace(&self) -> Pace {
        Pace {
            burst: self.config.polling_burst,
            window: self.config.catch_up_interval,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            capacity: self.config.replay_buffer_size,
            max_bytes: self.config.replay_buffer_bytes,
            max_age: self.config.replay_max_age,
        }
    }

    /// The first seq of a new stream: microseconds since the epoch, so that seqs keep growing
    /// across restarts and across a stream being forgotten and recreated.
    fn stream_base(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX / 2))
            .unwrap_or(1);
        now.max(self.seq_floor.load(Ordering::Relaxed) + 1)
    }

    /// A stream for a user seen for the first time: numbered from the clock, or on an edge
    /// holding the user's events after the last one delivered from its partition.
    fn new_stream(&self, user_id: &str) -> UserStream<SocketRef> {
        match &self.feed {
            Some(feed) => UserStream::after(feed.head(feed.log.partition_of(user_id))),
            None => UserStream::new(self.stream_base()),
        }
    }

    /// Runs `f` on the user's stream, creating it when missing. Lock order: map, then stream;
    /// the stream is locked before the map lock is released, so the sweeper cannot forget a
    /// stream between our lookup and our use of it.
    fn with_stream<R>(&self, user_id: &str, f: impl FnOnce(&mut UserStream<SocketRef>) -> R) -> R {
        {
            let streams = self.streams.read();
            if let Some(stream) = streams.get(user_id).cloned() {
                let mut guard = stream.lock();
                drop(streams);
                return f(&mut guard);
            }
        }
        let mut streams = self.streams.write();
        let stream = Arc::clone(
            streams
                .entry(Arc::from(user_id))
                .or_insert_with(|| Arc::new(Mutex::new(self.new_stream(user_id)))),
        );
        let mut guard = stream.lock();
        drop(streams);
        f(&mut guard)
    }

    fn record(&self, user_id: &Arc<str>, report: PumpReport, behind: bool) {
        let counters = &self.counters;
        if report.delivered > 0 {
            counters
                .emitted
                .fetch_add(report.delivered, Ordering::Relaxed);
        }
        if report.deferred > 0 {
            let total = counters
                .deferred
                .fetch_add(report.deferred, Ordering::Relaxed)
                + report.deferred;
            metrics::counter!("oa_socketio_emit_deferred_total").increment(report.deferred);
            if rate_limited(total, report.deferred) {
                tracing::info!(user_id = %user_id, deferred_total = total, "socket buffer full: delivery deferred until the client reads");
            }
        }
        if report.lost > 0 {
            let total = counters
                .dropped_slow_client
                .fetch_add(report.lost, Ordering::Relaxed)
                + report.lost;
            metrics::counter!("oa_events_dropped_total", "sink" => SINK_NAME, "reason" => "slow_client")
                .increment(report.lost);
            if rate_limited(total, report.lost) {
                tracing::warn!(user_id = %user_id, lost = report.lost, dropped_total = total, "slow Socket.IO client: events evicted from the replay buffer before it read them; it gets replay_gap");
            }
        }
        if report.encode_failed > 0 {
            counters
                .dropped_encode_failed
                .fetch_add(report.encode_failed, Ordering::Relaxed);
            metrics::counter!("oa_events_dropped_total", "sink" => SINK_NAME, "reason" => "encode_failed")
                .increment(report.encode_failed);
        }
        if report.gaps_sent > 0 {
            counters
                .replay_gaps
                .fetch_add(report.gaps_sent, Ordering::Relaxed);
            metrics::counter!("oa_socketio_replay_gaps_total").increment(report.gaps_sent);
        }
        if report.closed > 0 {
            self.client_gone(report.closed);
        }
        if behind {
            self.lagging.lock().insert(Arc::clone(user_id));
        }
    }

    fn client_gone(&self, count: u64) {
        let now = self.clients.fetch_sub(count as i64, Ordering::Relaxed) - count as i64;
        metrics::gauge!("oa_socketio_clients").set(now.max(0) as f64);
    }

    /// Connect middleware: checks the handshake; the `Display` of the error is the client's
    /// `connect_error` message.
    async fn authenticate(
        &self,
        sid: Sid,
        ip: IpAddr,
        auth: Result<serde_json::Value, socketioxide::ParserError>,
    ) -> Result<(), ConnectRefused> {
        let result = self.check(sid, ip, auth).await;
        if let Err(refused) = &result {
            let total = self.counters.refused.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::counter!("oa_socketio_connect_refused_total", "reason" => refused.reason())
                .increment(1);
            if !matches!(refused, ConnectRefused::RateLimited) {
                // (Rate-limited ones are counted by the login limiter itself.)
                metrics::counter!("oa_logins_refused_total", "listener" => "socketio", "reason" => refused.reason())
                    .increment(1);
            }
            if rate_limited(total, 1) {
                tracing::info!(%sid, reason = refused.reason(), refused_total = total, "Socket.IO connection refused");
            }
        }
        result
    }

    async fn check(
        &self,
        sid: Sid,
        ip: IpAddr,
        auth: Result<serde_json::Value, socketioxide::ParserError>,
    ) -> Result<(), ConnectRefused> {
        let auth = auth.map_err(|_| ConnectRefused::MissingApiKey)?;
        let handshake = Handshake::parse(&auth)?;
        if !self.logins.check("socketio", ip) {
            return Err(ConnectRefused::RateLimited);
        }
        let user = match self.verifier.verify(&handshake.apikey).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(ConnectRefused::InvalidApiKey),
            Err(error) => {
                tracing::warn!(%error, "Socket.IO handshake: API key verification unavailable");
                return Err(ConnectRefused::VerifierUnavailable);
            }
        };
        let user_id: Arc<str> = Arc::from(user.user_id.as_str());
        // A client without an offset gets everything published from now on, including events
        // published between this handshake and its attach.
        let (offset, latest, read_back_through) = self.with_stream(&user_id, |stream| {
            stream.connecting += 1;
            match handshake.offset {
                None => (stream.latest(), stream.latest(), None),
                // An edge reads back from the log what its buffer no longer holds.
                Some(offset) if self.feed.is_some() && offset < stream.floor() => {
                    (offset, stream.latest(), Some(stream.floor()))
                }
                Some(offset) => (offset, stream.latest(), None),
            }
        });
        let backlog = match (&self.feed, read_back_through) {
            (Some(feed), _) if offset > latest => self.ahead(feed, &user_id, offset).await,
            (Some(feed), Some(through)) => self.read_back(feed, &user_id, offset, through).await,
            _ => Ok(Backlog::default()),
        };
        let backlog = match backlog {
            Ok(backlog) => backlog,
            Err(error) => {
                self.with_stream(&user_id, |stream| {
                    stream.connecting = stream.connecting.saturating_sub(1);
                });
                tracing::warn!(%error, user_id = %user_id, offset, "Socket.IO handshake: cannot read back the missed events");
                return Err(ConnectRefused::ReplayUnavailable);
            }
        };
        self.pending.lock().insert(
            sid,
            Pending {
                user_id,
                offset,
                since: Instant::now(),
                authenticated_at_ms: now_ms(),
                backlog,
            },
        );
        Ok(())
    }

    /// An offset ahead of everything this edge delivered to the user: a position of the
    /// user's partition that the log already holds was received from an edge whose consumer
    /// is further on (skip up to it); anything else was not issued for this user.
    async fn ahead(&self, feed: &LogFeed, user_id: &str, offset: u64) -> Result<Backlog, LogError> {
        let partition = feed.log.partition_of(user_id);
        let asked = LogPosition::from_seq(offset);
        let ahead = asked.partition == partition && asked.offset < feed.log.end(partition).await?;
        Ok(Backlog {
            ahead,
            ..Backlog::default()
        })
    }

    /// Reads back from the log the user's events after `offset` up to `through` (the floor
    /// of the user's stream: the edge's buffer holds everything after it).
    async fn read_back(
        &self,
        feed: &LogFeed,
        user_id: &str,
        offset: u64,
        through: u64,
    ) -> Result<Backlog, LogError> {
        let partition = feed.log.partition_of(user_id);
        let mut backlog = Backlog {
            through,
            ..Backlog::default()
        };
        let asked = LogPosition::from_seq(offset);
        let from = if asked.partition == partition {
            asked.offset + 1
        } else if offset == 0 {
            0
        } else {
            // Not a position of the user's partition: not one a server of this log issued.
            backlog.gap = Some(ReplayGap::unknown_offset(through));
            return Ok(backlog);
        };
        let until = LogPosition::from_seq(through).offset + 1;
        if from >= until {
            return Ok(backlog);
        }
        let read = feed
            .log
            .read(LogQuery {
                user_id,
                partition,
                offsets: from..until,
                limit: self.config.replay_buffer_size.max(1),
            })
            .await?;
        let seq_of = |offset: i64| LogPosition { partition, offset }.to_seq().unwrap_or(0);
        if from < read.earliest {
            let last_gone = read.earliest.min(until) - 1;
            backlog.gap = Some(ReplayGap::expired(seq_of(from), seq_of(last_gone)));
            backlog.missed = u64::try_from(last_gone - from + 1).unwrap_or(0);
        }
        if let Some(left_out_through) = read.left_out_through {
            let gap = ReplayGap::expired(seq_of(from), seq_of(left_out_through));
            match &mut backlog.gap {
                Some(pending) => pending.merge(gap),
                None => backlog.gap = Some(gap),
            }
            backlog.missed += read.left_out;
        }
        for (offset, envelope) in read.events {
            let seq = seq_of(offset);
            let payload = EncodedEvent::new(envelope.event_type(), envelope.id, &envelope.data)
                .ok()
                .and_then(|encoded| encoded.with_seq(seq).ok());
            let Some(payload) = payload else {
                self.counters
                    .dropped_encode_failed
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            backlog.events.push(Replayed {
                event: envelope.event_type(),
                payload: Arc::from(payload),
            });
        }
        metrics::counter!("oa_socketio_read_back_total").increment(backlog.events.len() as u64);
        Ok(backlog)
    }

    /// Connect handler: replays what the socket missed and registers it for live delivery, in
    /// one critical section of its user's stream.
    fn attach(self: &Arc<Self>, socket: SocketRef) {
        self.start_background();
        let Some(pending) = self.pending.lock().remove(&socket.id) else {
            tracing::warn!(sid = %socket.id, "Socket.IO socket connected without a handshake record; disconnecting");
            let _ = socket.disconnect();
            return;
        };
        let user_id = pending.user_id;
        let sid = socket.id;
        socket.join(user_id.to_string());
        self.sessions.lock().insert(
            sid,
            Session {
                user_id: Arc::clone(&user_id),
                authenticated_at_ms: pending.authenticated_at_ms,
                socket: socket.clone(),
            },
        );
        let shared = Arc::clone(self);
        let detach_user = Arc::clone(&user_id);
        socket.on_disconnect(move |socket: SocketRef| {
            let shared = Arc::clone(&shared);
            async move { shared.detach(&detach_user, socket.id) }
        });
        let clients = self.clients.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("oa_socketio_clients").set(clients as f64);
        let (attach, report, behind) = self.with_stream(&user_id, |stream| {
            stream.connecting = stream.connecting.saturating_sub(1);
            let attach = stream.attach(socket, pending.offset, pending.backlog);
            let report = stream.pump(self.pace(), Instant::now());
            (attach, report, stream.is_behind())
        });
        if attach.missed > 0 {
            self.counters
                .replay_missed
                .fetch_add(attach.missed, Ordering::Relaxed);
            metrics::counter!("oa_socketio_replay_missed_total").increment(attach.missed);
        }
        if attach.replayable > 0 {
            metrics::counter!("oa_socketio_replayed_total").increment(attach.replayable);
        }
        tracing::debug!(%sid, user_id = %user_id, offset = pending.offset, replayable = attach.replayable, missed = attach.missed, "Socket.IO client attached");
        self.record(&user_id, report, behind);
    }

    fn detach(&self, user_id: &str, sid: Sid) {
        self.sessions.lock().remove(&sid);
        let removed = self.with_stream(user_id, |stream| stream.detach(sid));
        if removed {
            self.client_gone(1);
        }
    }

    /// Ends the sockets of `user_id` that logged in at or before `revoked_at_ms`, shortly after
    /// the `password_change` event queued to them. Returns how many.
    fn revoke(&self, user_id: &str, revoked_at_ms: i64) -> usize {
        let sockets: Vec<SocketRef> = self
            .sessions
            .lock()
            .values()
            .filter(|session| {
                &*session.user_id == user_id && session.authenticated_at_ms <= revoked_at_ms
            })
            .map(|session| session.socket.clone())
            .collect();
        if sockets.is_empty() {
            return 0;
        }
        let ended = sockets.len();
        oa_events_core::auth::record_revoked_sessions("socketio", user_id, ended);
        tokio::spawn(async move {
            tokio::time::sleep(REVOKE_GRACE).await;
            for socket in sockets {
                let _ = socket.disconnect();
            }
        });
        ended
    }

    /// Delivers one envelope to its audience; `position` is where it is in the log an edge
    /// is fed from (its `seq`). False when it was not delivered: a duplicate from the log,
    /// or an event that cannot be encoded.
    fn deliver_one(&self, envelope: &Envelope, position: Option<LogPosition>) -> bool {
        let logged = match (&self.feed, position) {
            (Some(feed), Some(position)) => {
                let Some(seq) = position.to_seq() else {
                    self.counters
                        .dropped_encode_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(event_id = %envelope.id, ?position, "Socket.IO: the event's log position cannot be written as a seq (partition >= {} or offset >= 2^40)", crate::log::MAX_LOG_PARTITIONS);
                    return false;
                };
                // Read again after the log consumer reconnected: already delivered.
                if feed.head(position.partition) >= seq {
                    return false;
                }
                Some((feed, position.partition, seq))
            }
            _ => None,
        };
        let encoded = match EncodedEvent::new(envelope.event_type(), envelope.id, &envelope.data) {
            Ok(encoded) => encoded,
            Err(reason) => {
                self.counters
                    .dropped_encode_failed
                    .fetch_add(1, Ordering::Relaxed);
                metrics::counter!("oa_events_dropped_total", "sink" => SINK_NAME, "reason" => "encode_failed")
                    .increment(1);
                tracing::error!(event_id = %envelope.id, reason, "Socket.IO: event payload could not be encoded");
                return false;
            }
        };
        let limits = self.limits();
        let now = Instant::now();
        match envelope.audience() {
            Audience::User(user_id) => {
                let (report, behind) = self.with_stream(user_id, |stream| {
                    let mut report = PumpReport::default();
                    let appended = match logged {
                        Some((feed, partition, seq)) => {
                            let appended = stream.append_at(&encoded, seq, limits, now);
                            // Under the stream's lock: a stream created from now on starts
                            // after this event.
                            feed.advance(partition, seq);
                            appended
                        }
                        None => stream.append(&encoded, limits, now),
                    };
                    if appended.is_err() {
                        report.encode_failed += 1;
                    }
                    report.add(stream.pump(self.pace(), Instant::now()));
                    (report, stream.is_behind())
                });
                let user_id: Arc<str> = Arc::from(user_id);
                self.record(&user_id, report, behind);
                if envelope.event_type() == "password_change" {
                    // The key was rotated or revoked: the notice is queued; end the sessions.
                    self.revoke(&user_id, envelope.timestamp.timestamp_millis());
                }
            }
            Audience::Everyone => {
                // Every known user gets it in its own stream (with its own seq), so it is
                // replayed like any other event.
                let streams: Vec<(Arc<str>, Stream)> = self
                    .streams
                    .read()
                    .iter()
                    .map(|(user, stream)| (Arc::clone(user), Arc::clone(stream)))
                    .collect();
                for (user_id, stream) in streams {
                    let (report, behind) = {
                        let mut stream = stream.lock();
                        let mut report = PumpReport::default();
                        // On an edge it keeps the user's latest seq: the user's positions
                        // are on another partition.
                        let appended = match logged {
                            Some(_) => {
                                let latest = stream.latest();
                                stream.append_at(&encoded, latest, limits, now)
                            }
                            None => stream.append(&encoded, limits, now),
                        };
                        if appended.is_err() {
                            report.encode_failed += 1;
                        }
                        report.add(stream.pump(self.pace(), Instant::now()));
                        (report, stream.is_behind())
                    };
                    self.record(&user_id, report, behind);
                }
                if let Some((feed, partition, seq)) = logged {
                    feed.advance(partition, seq);
                }
            }
        }
        true
    }

    /// Starts the catch-up and sweep task once, from inside the runtime.
    fn start_background(self: &Arc<Self>) {
        if self.background_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let catch_up = self.config.catch_up_interval;
        let sweep = self.config.sweep_interval;
        tokio::spawn(background(weak, catch_up, sweep));
    }

    /// Retries sockets whose buffer was full.
    fn catch_up(&self) {
        let users: Vec<Arc<str>> = self.lagging.lock().drain().collect();
        for user_id in users {
            let stream = self.streams.read().get(&user_id).cloned();
            let Some(stream) = stream else { continue };
            let (report, behind) = {
                let mut stream = stream.lock();
                let report = stream.pump(self.pace(), Instant::now());
                (report, stream.is_behind())
            };
            self.record(&user_id, report, behind);
        }
    }

    /// Drops expired replay entries, forgets idle users, and abandons handshakes whose
    /// connection never completed.
    fn sweep(&self) {
        let limits = self.limits();
        let now = Instant::now();
        let stale: Vec<Pending> = {
            let mut pending = self.pending.lock();
            let expired: Vec<Sid> = pending
                .iter()
                .filter(|(_, entry)| {
                    now.saturating_duration_since(entry.since) > self.config.connect_timeout * 2
                })
                .map(|(sid, _)| *sid)
                .collect();
            expired
                .iter()
                .filter_map(|sid| pending.remove(sid))
                .collect()
        };
        for entry in stale {
            self.with_stream(&entry.user_id, |stream| {
                stream.connecting = stream.connecting.saturating_sub(1);
            });
        }
        let mut idle = Vec::new();
        for (user_id, stream) in self.streams.read().iter() {
            let mut stream = stream.lock();
            stream.expire(limits, now);
            let closed = stream.prune_closed();
            if closed > 0 {
                self.client_gone(closed);
            }
            if stream.is_behind() {
                self.lagging.lock().insert(Arc::clone(user_id));
            }
            if stream.is_idle() {
                idle.push(Arc::clone(user_id));
            }
        }
        if idle.is_empty() {
            return;
        }
        let mut streams = self.streams.write();
        for user_id in idle {
            let forget = streams.get(&user_id).map(|stream| {
                let stream = stream.lock();
                (stream.is_idle(), stream.latest())
            });
            if let Some((true, latest)) = forget {
                self.seq_floor.fetch_max(latest, Ordering::Relaxed);
                streams.remove(&user_id);
            }
        }
    }

    fn stats(&self) -> SocketIoStats {
        let counters = &self.counters;
        SocketIoStats {
            clients: self.clients.load(Ordering::Relaxed).max(0) as u64,
            refused: counters.refused.load(Ordering::Relaxed),
            emitted: counters.emitted.load(Ordering::Relaxed),
            deferred: counters.deferred.load(Ordering::Relaxed),
            dropped_slow_client: counters.dropped_slow_client.load(Ordering::Relaxed),
            dropped_encode_failed: counters.dropped_encode_failed.load(Ordering::Relaxed),
            replay_gaps: counters.replay_gaps.load(Ordering::Relaxed),
            replay_missed: counters.replay_missed.load(Ordering::Relaxed),
        }
    }
}

async fn background(
    shared: Weak<Shared>,
    catch_up: std::time::Duration,
    sweep: std::time::Duration,
) {
    let mut catch_up_tick = tokio::time::interval(catch_up);
    catch_up_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep_tick = tokio::time::interval(sweep);
    sweep_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = catch_up_tick.tick() => {
                let Some(shared) = shared.upgrade() else { break };
                shared.catch_up();
            }
            _ = sweep_tick.tick() => {
                let Some(shared) = shared.upgrade() else { break };
                shared.sweep();
            }
        }
    }
}

/// The Socket.IO [`EventSink`]: add it to the server's
/// [`EventPublisher`](oa_events_core::EventPublisher). Cheap to clone; clones share state.
/// Its queue has the default policy, [`DropOldest`](oa_events_core::OverflowPolicy::DropOldest):
/// a live view wants the newest events.
#[derive(Debug, Clone)]
pub struct SocketIoSink {
    shared: Arc<Shared>,
    io: SocketIo,
}

impl SocketIoSink {
    /// Builds the Socket.IO layer (to mount on the HTTP server, path `/socket.io/`) and its
    /// sink (to add to the publisher). `verifier` checks the API key each client sends in its
    /// handshake `auth` payload.
    ///
    /// Needs no runtime to build; the background catch-up task starts with the first client.
    pub fn new(
        config: SocketIoConfig,
        verifier: Arc<dyn ApiKeyVerifier>,
    ) -> Result<(SocketIoLayer, SocketIoSink), ConfigError> {
        Self::build(config, verifier, None)
    }

    /// Builds the layer and sink of an edge: events come from `log` through
    /// [`SocketIoSink::deliver_logged`] (not from a publisher), each event's `seq` is its
    /// [`LogPosition`], and a client reconnecting with an offset older than this edge's
    /// buffer gets the rest read back from `log` (or `replay_gap` for what the log no
    /// longer holds). `next_offsets` gives, per partition, the offset of the first event
    /// this edge will deliver.
    pub fn fed_by_log(
        config: SocketIoConfig,
        verifier: Arc<dyn ApiKeyVerifier>,
        log: Arc<dyn EventLog>,
        next_offsets: impl IntoIterator<Item = (i32, i64)>,
    ) -> Result<(SocketIoLayer, SocketIoSink), ConfigError> {
        let feed = LogFeed {
            log,
            heads: Mutex::default(),
        };
        for (partition, next_offset) in next_offsets {
            let last = LogPosition {
                partition,
                offset: next_offset - 1,
            };
            if let Some(seq) = last.to_seq() {
                feed.advance(partition, seq);
            }
        }
        Self::build(config, verifier, Some(feed))
    }

    fn build(
        config: SocketIoConfig,
        verifier: Arc<dyn ApiKeyVerifier>,
        feed: Option<LogFeed>,
    ) -> Result<(SocketIoLayer, SocketIoSink), ConfigError> {
        config.validate()?;
        let (layer, io) = SocketIo::builder()
            .req_path("/socket.io")
            .ping_interval(config.ping_interval)
            .ping_timeout(config.ping_timeout)
            .connect_timeout(config.connect_timeout)
            .max_buffer_size(config.socket_buffer_size)
            .max_payload(config.max_payload)
            // The websocket transport gets the polling limit (its defaults are 16 MiB frames
            // and 64 MiB messages, buffered before the client has logged in).
            .ws_max_frame_size(usize::try_from(config.max_payload).unwrap_or(usize::MAX))
            .ws_max_message_size(usize::try_from(config.max_payload).unwrap_or(usize::MAX))
            .build_layer();
        let logins = LoginLimiter::new(config.login_rate);
        let shared = Arc::new(Shared {
            config,
            verifier,
            streams: RwLock::default(),
            pending: Mutex::default(),
            sessions: Mutex::default(),
            logins,
            lagging: Mutex::default(),
            seq_floor: AtomicU64::new(0),
            clients: AtomicI64::new(0),
            counters: Counters::default(),
            background_started: AtomicBool::new(false),
            feed,
        });
        let on_connect = {
            let shared = Arc::clone(&shared);
            move |socket: SocketRef| {
                let shared = Arc::clone(&shared);
                async move { shared.attach(socket) }
            }
        };
        let middleware = {
            let shared = Arc::clone(&shared);
            move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
                let shared = Arc::clone(&shared);
                let ip = client_ip(&socket);
                async move { shared.authenticate(socket.id, ip, auth).await }
            }
        };
        io.ns("/", on_connect.with(middleware));
        Ok((layer, SocketIoSink { shared, io }))
    }

    /// The connection limiter [`mount`](crate::mount) applies to new Engine.IO sessions.
    pub fn session_limiter(&self) -> ConnectionLimiter {
        ConnectionLimiter::new("socketio", self.shared.config.connections)
    }

    /// The socketioxide handle: for closing every connection at shutdown
    /// ([`SocketIo::close`]) or inspecting sockets.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Delivers an event read from the log at `position` to its user's sockets (an edge
    /// built with [`SocketIoSink::fed_by_log`]; call in log order per partition). An event
    /// at or before the last one delivered from its partition is a duplicate and skipped.
    /// On a sink not fed by a log, the position is ignored. Returns false when the event
    /// was not delivered (a duplicate, or a payload that cannot be encoded).
    pub fn deliver_logged(&self, envelope: &Envelope, position: LogPosition) -> bool {
        self.shared.deliver_one(envelope, Some(position))
    }

    /// Current counters.
    pub fn stats(&self) -> SocketIoStats {
        self.shared.stats()
    }

    /// Users with a live stream (connected sockets or buffered events).
    pub fn users(&self) -> usize {
        self.shared.streams.read().len()
    }

    /// The newest `seq` issued to `user_id`, if the user has a stream.
    pub fn latest_seq(&self, user_id: &str) -> Option<u64> {
        let stream = self.shared.streams.read().get(user_id).cloned();
        stream.map(|stream| stream.lock().latest())
    }
}

/// The client's IP, from the `ConnectInfo` the HTTP server puts on requests (unspecified when
/// it does not: every client then shares one login bucket).
fn client_ip(socket: &SocketRef) -> IpAddr {
    socket
        .req_parts()
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
            peer.ip()
        })
}

impl EventSink for SocketIoSink {
    fn name(&self) -> &'static str {
        SINK_NAME
    }

    async fn deliver(&self, batch: &[Arc<Envelope>]) -> Result<(), SinkError> {
        for envelope in batch {
            self.shared.deliver_one(envelope, None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::rate_limited;

    #[test]
    fn logs_once_per_doubling() {
        let logged: Vec<u64> = (1..=20).filter(|&total| rate_limited(total, 1)).collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16]);
        assert!(rate_limited(5, 5));
        assert!(rate_limited(9, 3), "crossed 8");
        assert!(!rate_limited(11, 2));
        assert!(!rate_limited(7, 0));
    }
}

/// An edge's read-back (`Shared::read_back`) against a log held in memory: tansu 0.6, the
/// broker of the end-to-end tests, cannot delete records (its storage engines leave
/// DeleteRecords unimplemented), so retention is set here.
#[cfg(test)]
mod read_back_tests {
    use std::sync::Arc;

    use oa_events_core::catalog::OrderEvent;
    use oa_events_core::{ApiKeyVerifier, AuthenticatedUser, Envelope, Event};

    use super::SocketIoSink;
    use crate::config::SocketIoConfig;
    use crate::log::{EventLog, LogEndFuture, LogPosition, LogQuery, LogRead, LogReadFuture};
    use crate::stream::Backlog;

    /// Two partitions; alice's events on partition 1, bob's on partition 0; offsets below
    /// `earliest` are gone.
    struct MemoryLog {
        records: Vec<(i32, i64, Envelope)>,
        earliest: i64,
    }

    impl EventLog for MemoryLog {
        fn partition_of(&self, user_id: &str) -> i32 {
            i32::from(user_id == "alice")
        }

        fn read<'a>(&'a self, query: LogQuery<'a>) -> LogReadFuture<'a> {
            let kept = query.offsets.start.max(self.earliest)..query.offsets.end;
            Box::pin(async move {
                let mut events: Vec<(i64, Envelope)> = self
                    .records
                    .iter()
                    .filter(|(partition, offset, envelope)| {
                        *partition == query.partition
                            && kept.contains(offset)
                            && envelope.user_id == query.user_id
                    })
                    .map(|(_, offset, envelope)| (*offset, envelope.clone()))
                    .collect();
                let extra = events.len().saturating_sub(query.limit);
                let left_out_through = extra.checked_sub(1).map(|last| events[last].0);
                events.drain(..extra);
                Ok(LogRead {
                    earliest: self.earliest,
                    events,
                    left_out: extra as u64,
                    left_out_through,
                })
            })
        }

        fn end(&self, partition: i32) -> LogEndFuture<'_> {
            let end = self
                .records
                .iter()
                .filter(|(p, _, _)| *p == partition)
                .map(|(_, offset, _)| offset + 1)
                .max()
                .unwrap_or(0);
            Box::pin(async move { Ok(end) })
        }
    }

    struct NoKeys;
    impl ApiKeyVerifier for NoKeys {
        fn verify<'a>(&'a self, _key: &'a str) -> oa_events_core::auth::VerifyFuture<'a> {
            Box::pin(async { Ok(None::<AuthenticatedUser>) })
        }
    }

    fn seq(partition: i32, offset: i64) -> u64 {
        LogPosition { partition, offset }.to_seq().unwrap()
    }

    /// Alice's orders at offsets 0, 2, 4, ... 18 of partition 1 (bob's in between).
    fn sink(earliest: i64, replay_buffer_size: usize) -> SocketIoSink {
        let mut records = Vec::new();
        for offset in 0..20 {
            let user = if offset % 2 == 0 { "alice" } else { "bob" };
            let event = OrderEvent::sbin_market("BUY", format!("{user}-{offset}"));
            records.push((1, offset, Envelope::new(Event::for_user(user, event))));
        }
        let config = SocketIoConfig {
            replay_buffer_size,
            ..SocketIoConfig::default()
        };
        let log = Arc::new(MemoryLog { records, earliest });
        let (_, sink) =
            SocketIoSink::fed_by_log(config, Arc::new(NoKeys), log, [(0, 0), (1, 20)]).unwrap();
        sink
    }

    fn orderids(backlog: &Backlog) -> Vec<String> {
        backlog
            .events
            .iter()
            .map(|event| {
                let json: serde_json::Value = serde_json::from_str(event.payload.get()).unwrap();
                format!("{}@{}", json["orderid"].as_str().unwrap(), json["seq"])
            })
            .collect()
    }

    async fn read_back(sink: &SocketIoSink, offset: u64) -> Backlog {
        let shared = &sink.shared;
        let feed = shared.feed.as_ref().unwrap();
        let floor = shared.with_stream("alice", |stream| stream.floor());
        assert_eq!(
            floor,
            seq(1, 19),
            "a new stream holds what comes after the head"
        );
        shared
            .read_back(feed, "alice", offset, floor)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn exactly_the_users_events_after_the_offset_with_their_positions_as_seq() {
        let sink = sink(0, 100);
        let backlog = read_back(&sink, seq(1, 13)).await;
        assert_eq!(backlog.gap, None);
        assert_eq!(backlog.through, seq(1, 19));
        assert_eq!(
            orderids(&backlog),
            [
                format!("alice-14@{}", seq(1, 14)),
                format!("alice-16@{}", seq(1, 16)),
                format!("alice-18@{}", seq(1, 18)),
            ]
        );
        // 0 is "from the start of what the log holds".
        assert_eq!(read_back(&sink, 0).await.events.len(), 10);
    }

    #[tokio::test]
    async fn what_the_log_no_longer_holds_is_a_gap_before_the_rest() {
        let sink = sink(10, 100);
        let backlog = read_back(&sink, seq(1, 3)).await;
        let gap = backlog.gap.clone().unwrap();
        assert_eq!((gap.from_seq, gap.to_seq), (seq(1, 4), seq(1, 9)));
        assert_eq!(gap.reason, "expired");
        assert_eq!(backlog.missed, 6, "positions 4..=9");
        assert_eq!(orderids(&backlog).len(), 5, "alice-10 ..= alice-18");
    }

    #[tokio::test]
    async fn beyond_the_replay_limit_the_newest_are_read_back_after_a_gap() {
        let sink = sink(0, 3);
        let backlog = read_back(&sink, seq(1, 1)).await;
        let gap = backlog.gap.clone().unwrap();
        assert_eq!((gap.from_seq, gap.to_seq), (seq(1, 2), seq(1, 12)));
        assert_eq!(backlog.missed, 6, "alice-2 ..= alice-12");
        assert_eq!(orderids(&backlog).len(), 3);
    }

    #[tokio::test]
    async fn an_offset_ahead_of_this_edge_is_skipped_to_when_the_log_holds_it() {
        let sink = sink(0, 100);
        let feed = sink.shared.feed.as_ref().unwrap();
        // The sink has read nothing of partition 1 past 19 ... as if it were behind.
        for (offset, ahead, why) in [
            (seq(1, 18), true, "held by the log"),
            (seq(1, 20), false, "past the end"),
            (seq(0, 5), false, "bob's partition"),
        ] {
            let backlog = sink.shared.ahead(feed, "alice", offset).await.unwrap();
            assert_eq!(backlog.ahead, ahead, "{why}");
        }
    }

    #[tokio::test]
    async fn an_offset_of_another_partition_was_not_issued_for_this_user() {
        let sink = sink(0, 100);
        let backlog = read_back(&sink, seq(0, 5)).await;
        assert_eq!(backlog.gap.unwrap().reason, "unknown_offset");
        assert!(backlog.events.is_empty());
    }
}
