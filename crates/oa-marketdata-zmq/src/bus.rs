//! The ZeroMQ market-data bus (docs/marketdata.md, "The bus").
//!
//! ```text
//! feed A ──PUB connect──┐
//! feed B ──PUB connect──┼──▶ SUB bind (subscribed to all) ──[bus thread: decode]──▶ tokio mpsc ──▶ consumer
//! pyzmq  ──PUB connect──┘
//! ```
//!
//! Each message is two frames, `[topic, JSON payload]`. ZeroMQ sockets are `Send` but not
//! `Sync`, so the SUB socket lives on its own thread, which decodes each message and forwards
//! the [`Tick`] into a bounded tokio channel. Every anomaly is counted and the message dropped;
//! nothing a publisher sends can stop the bus or delay other ticks:
//!
//! | reason (`oa_ticks_malformed_total{reason}`) | cause |
//! |---|---|
//! | `frame_count` | not exactly two frames |
//! | `oversized` | a frame above `max_frame_bytes` |
//! | `topic` | topic not UTF-8 or not `{EXCHANGE}_{SYMBOL}_{MODE}` |
//! | `json` | payload not a valid tick |
//! | `mismatch` | payload exchange/symbol differ from the topic (the topic's mode wins) |
//!
//! Ticks the consumer is too slow to take are dropped and counted as
//! `oa_ticks_dropped_total{reason="bus_channel_full"}`.
//!
//! Other topics upstream's bus carries are handled as upstream's websocket_proxy/server.py
//! `zmq_listener` does: `{BROKER}_{USER}_orders` payloads (an `order_update` message with a
//! `user_id`) are relayed to that user's `subscribe_orders` clients ([`OrderRelay`]);
//! `CACHE_INVALIDATE_*`, `*_positions` and `*_margins` are ignored (counted as `ignored`, not
//! malformed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use oa_marketdata_core::tick::Tick;
use oa_marketdata_core::topic::{Topic, TopicError};

/// Default SUB bind endpoint.
pub const DEFAULT_ENDPOINT: &str = "tcp://127.0.0.1:5555";
/// Default high-water mark (messages) on both sides. ZeroMQ's own default of 1000 silently
/// dropped 73% of a burst in our tests.
pub const DEFAULT_HWM: i32 = 100_000;
/// Default largest accepted frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;

/// Settings of the bus (the SUB side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Where the SUB socket binds: `tcp://host:port`; port `0` or `*` picks a free port
    /// (read it back with [`Bus::endpoint`]).
    pub endpoint: String,
    /// Receive high-water mark (messages queued per publisher before ZeroMQ drops).
    pub rcvhwm: i32,
    /// Frames larger than this are dropped as `oversized`.
    pub max_frame_bytes: usize,
    /// Ticks buffered between the bus thread and its consumer.
    pub channel_capacity: usize,
    /// How often the bus thread checks its stop flag while idle.
    pub poll_interval: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            rcvhwm: DEFAULT_HWM,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            channel_capacity: 65_536,
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl BusConfig {
    /// A config binding `tcp://{host}:{port}` (port 0 = any free port).
    pub fn tcp(host: &str, port: u16) -> Self {
        BusConfig {
            endpoint: tcp_endpoint(host, port),
            ..BusConfig::default()
        }
    }
}

/// `tcp://host:port`, with port 0 written as ZeroMQ's wildcard `*`.
pub fn tcp_endpoint(host: &str, port: u16) -> String {
    if port == 0 {
        format!("tcp://{host}:*")
    } else {
        format!("tcp://{host}:{port}")
    }
}

/// A ZeroMQ failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Binding the SUB socket failed (address in use, bad endpoint...).
    #[error("cannot bind the market-data bus on {endpoint}: {source}")]
    Bind {
        /// The requested endpoint.
        endpoint: String,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// A publisher was given no endpoint to connect to.
    #[error("a publisher needs at least one bus endpoint (tcp://host:port)")]
    NoEndpoint,
    /// Connecting a PUB socket failed.
    #[error("cannot connect a publisher to {endpoint}: {source}")]
    Connect {
        /// The requested endpoint.
        endpoint: String,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// A socket could not be created or configured.
    #[error("ZeroMQ socket setup failed ({step}): {source}")]
    Setup {
        /// What was being done.
        step: &'static str,
        /// The ZeroMQ error.
        source: zmq::Error,
    },
    /// Sending failed.
    #[error("publishing on the market-data bus failed: {0}")]
    Send(zmq::Error),
    /// The bus thread could not be started.
    #[error("cannot start the bus thread: {0}")]
    Thread(std::io::Error),
    /// The publisher did not see its connection complete in time.
    #[error("publisher did not connect to {endpoint} within {timeout:?}")]
    ConnectTimeout {
        /// The endpoint.
        endpoint: String,
        /// How long it waited.
        timeout: Duration,
    },
}

fn setup(step: &'static str) -> impl FnOnce(zmq::Error) -> BusError {
    move |source| BusError::Setup { step, source }
}

/// Why a bus message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not exactly two frames.
    #[error("expected 2 frames [topic, payload], got {0}")]
    FrameCount(usize),
    /// A frame above the size limit.
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    Oversized {
        /// Frame size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Topic not UTF-8.
    #[error("topic is not UTF-8")]
    TopicUtf8,
    /// Topic not decodable.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// Payload not a valid tick.
    #[error("payload of {topic} is not a valid tick: {reason}")]
    Json {
        /// The topic.
        topic: String,
        /// The parser's message.
        reason: String,
    },
    /// Payload disagrees with the topic.
    #[error("payload {field} {payload:?} does not match topic {topic}")]
    Mismatch {
        /// The topic.
        topic: String,
        /// exchange, symbol or mode.
        field: &'static str,
        /// The payload's value.
        payload: String,
    },
}

impl Malformed {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::FrameCount(_) => "frame_count",
            Malformed::Oversized { .. } => "oversized",
            Malformed::TopicUtf8 | Malformed::Topic(_) => "topic",
            Malformed::Json { .. } => "json",
            Malformed::Mismatch { .. } => "mismatch",
        }
    }
}

/// The metric labels of [`Malformed::reason`], in a fixed order.
pub const MALFORMED_REASONS: [&str; 5] = ["frame_count", "oversized", "topic", "json", "mismatch"];

/// An order update to relay: upstream's `{BROKER}_{USER}_orders` message, whose payload is
/// the client-facing `{"type":"order_update",...,"user_id":...}` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRelay {
    /// The payload's `user_id`.
    pub user_id: String,
    /// The payload as received (a JSON object).
    pub message: String,
}

/// What a bus message is, by its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// A market-data tick.
    Tick(Tick),
    /// An order update to relay to the user's `subscribe_orders` clients.
    OrderUpdate(OrderRelay),
    /// A topic upstream's proxy skips: `CACHE_INVALIDATE_*`, `*_positions`, `*_margins`.
    Ignored,
}

/// Decodes one two-frame message by its topic: order updates and the topics upstream skips
/// first, then a tick ([`decode_message`]).
pub fn decode_bus_message(
    topic: &[u8],
    payload: &[u8],
    max_frame_bytes: usize,
) -> Result<BusMessage, Malformed> {
    if topic.starts_with(b"CACHE_INVALIDATE")
        || topic.ends_with(b"_positions")
        || topic.ends_with(b"_margins")
    {
        return Ok(BusMessage::Ignored);
    }
    if !topic.ends_with(b"_orders") {
        return decode_message(topic, payload, max_frame_bytes).map(BusMessage::Tick);
    }
    let topic_text = String::from_utf8_lossy(topic).into_owned();
    if payload.len() > max_frame_bytes {
        return Err(Malformed::Oversized {
            size: payload.len(),
            limit: max_frame_bytes,
        });
    }
    let invalid = |reason: &str| Malformed::Json {
        topic: topic_text.clone(),
        reason: reason.to_string(),
    };
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|error| invalid(&error.to_string()))?;
    let user_id = value
        .get("user_id")
        .and_then(|user| user.as_str())
        .filter(|user| !user.is_empty())
        .ok_or_else(|| invalid("an order update needs a non-empty string user_id"))?;
    Ok(BusMessage::OrderUpdate(OrderRelay {
        user_id: user_id.to_string(),
        message: value.to_string(),
    }))
}

/// Decodes one two-frame message into a tick.
pub fn decode_message(
    topic: &[u8],
    payload: &[u8],
    max_frame_bytes: usize,
) -> Result<Tick, Malformed> {
    for frame in [topic, payload] {
        if frame.len() > max_frame_bytes {
            return Err(Malformed::Oversized {
                size: frame.len(),
                limit: max_frame_bytes,
            });
        }
    }
    let topic_text = std::str::from_utf8(topic).map_err(|_| Malformed::TopicUtf8)?;
    let topic = Topic::decode(topic_text)?;
    let tick =
        Tick::from_json_slice_with_defaults(payload, &topic.exchange, &topic.symbol, topic.mode)
            .map_err(|error| Malformed::Json {
                topic: topic_text.to_string(),
                reason: error.to_string(),
            })?;
    let mismatch = |field: &'static str, payload: String| Malformed::Mismatch {
        topic: topic_text.to_string(),
        field,
        payload,
    };
    if tick.exchange != topic.exchange {
        return Err(mismatch("exchange", tick.exchange));
    }
    if tick.symbol != topic.symbol {
        return Err(mismatch("symbol", tick.symbol));
    }
    if !tick.ltp.is_finite() {
        return Err(Malformed::Json {
            topic: topic_text.to_string(),
            reason: "ltp is not a finite number".to_string(),
        });
    }
    Ok(tick)
}

/// Counters of the bus, readable at any time.
#[derive(Debug, Default)]
pub struct BusStats {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped_channel_full: AtomicU64,
    malformed: [AtomicU64; 5],
    ignored: AtomicU64,
    orders_relayed: AtomicU64,
}

/// A copy of the bus counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BusStatsSnapshot {
    /// Valid ticks decoded.
    pub received: u64,
    /// Ticks handed to the consumer.
    pub forwarded: u64,
    /// Ticks dropped because the consumer's channel was full.
    pub dropped_channel_full: u64,
    /// Malformed messages, indexed like [`MALFORMED_REASONS`].
    pub malformed: [u64; 5],
    /// Messages of topics upstream's proxy skips (`CACHE_INVALIDATE_*`, ...).
    pub ignored: u64,
    /// Order updates handed to the relay.
    pub orders_relayed: u64,
}

impl BusStatsSnapshot {
    /// Malformed messages of one reason.
    pub fn malformed(&self, reason: &str) -> u64 {
        MALFORMED_REASONS
            .iter()
            .position(|r| *r == reason)
            .map(|i| self.malformed[i])
            .unwrap_or(0)
    }

    /// All malformed messages.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}

impl BusStats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> BusStatsSnapshot {
        BusStatsSnapshot {
            received: self.received.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped_channel_full: self.dropped_channel_full.load(Ordering::Relaxed),
            malformed: std::array::from_fn(|i| self.malformed[i].load(Ordering::Relaxed)),
            ignored: self.ignored.load(Ordering::Relaxed),
            orders_relayed: self.orders_relayed.load(Ordering::Relaxed),
        }
    }
}

/// The bound SUB side of the bus. Dropping it stops the thread.
#[derive(Debug)]
pub struct Bus {
    endpoint: String,
    stats: Arc<BusStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bus {
    /// Binds the SUB socket, subscribes to everything and starts the bus thread. Returns the
    /// bus and the stream of decoded ticks. Order updates on the bus are counted and dropped.
    pub fn bind(config: &BusConfig) -> Result<(Bus, mpsc::Receiver<Tick>), BusError> {
        Self::bind_relaying_orders(config, None)
    }

    /// As [`Bus::bind`], also handing `{BROKER}_{USER}_orders` messages to `orders` (a full
    /// channel drops the update, counted as `bus_channel_full`).
    pub fn bind_relaying_orders(
        config: &BusConfig,
        orders: Option<mpsc::Sender<OrderRelay>>,
    ) -> Result<(Bus, mpsc::Receiver<Tick>), BusError> {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::SUB).map_err(setup("create SUB"))?;
        socket.set_rcvhwm(config.rcvhwm).map_err(setup("RCVHWM"))?;
        socket.set_linger(0).map_err(setup("LINGER"))?;
        let poll_ms = i32::try_from(config.poll_interval.as_millis())
            .unwrap_or(100)
            .max(1);
        socket.set_rcvtimeo(poll_ms).map_err(setup("RCVTIMEO"))?;
        // Frames far above the limit are refused by ZeroMQ itself (the peer is disconnected);
        // frames up to 4x the limit reach us and are counted as `oversized`.
        let maxmsg = i64::try_from(config.max_frame_bytes.saturating_mul(4)).unwrap_or(i64::MAX);
        socket.set_maxmsgsize(maxmsg).map_err(setup("MAXMSGSIZE"))?;
        socket.set_subscribe(b"").map_err(setup("SUBSCRIBE"))?;
        let requested = normalise_endpoint(&config.endpoint);
        socket.bind(&requested).map_err(|source| BusError::Bind {
            endpoint: config.endpoint.clone(),
            source,
        })?;
        let endpoint = match socket.get_last_endpoint() {
            Ok(Ok(endpoint)) => endpoint,
            _ => requested,
        };
        let (sender, receiver) = mpsc::channel(config.channel_capacity.max(1));
        let stats = Arc::new(BusStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = BusWorker {
            socket,
            _context: context,
            sender,
            orders,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            max_frame_bytes: config.max_frame_bytes,
        };
        let thread = std::thread::Builder::new()
            .name("oa-zmq-bus".to_string())
            .spawn(move || worker.run())
            .map_err(BusError::Thread)?;
        tracing::info!(%endpoint, hwm = config.rcvhwm, "market-data bus bound");
        Ok((
            Bus {
                endpoint,
                stats,
                stop,
                thread: Some(thread),
            },
            receiver,
        ))
    }

    /// The endpoint actually bound (with the real port when 0 / `*` was asked for).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The counters.
    pub fn stats(&self) -> BusStatsSnapshot {
        self.stats.snapshot()
    }

    /// Shared counters, for holders that outlive the handle.
    pub fn stats_handle(&self) -> Arc<BusStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the bus thread and waits for it (at most one poll interval).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("market-data bus thread panicked");
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Turns `tcp://host:0` into ZeroMQ's wildcard form `tcp://host:*`.
fn normalise_endpoint(endpoint: &str) -> String {
    match endpoint.strip_suffix(":0") {
        Some(base) if endpoint.starts_with("tcp://") => format!("{base}:*"),
        _ => endpoint.to_string(),
    }
}

struct BusWorker {
    socket: zmq::Socket,
    // Keeps the context alive as long as the socket.
    _context: zmq::Context,
    sender: mpsc::Sender<Tick>,
    orders: Option<mpsc::Sender<OrderRelay>>,
    stats: Arc<BusStats>,
    stop: Arc<AtomicBool>,
    max_frame_bytes: usize,
}

impl BusWorker {
    fn run(self) {
        let received_total = metrics::counter!("oa_ticks_received_total");
        let dropped_full =
            metrics::counter!("oa_ticks_dropped_total", "reason" => "bus_channel_full");
        let malformed_counters: [metrics::Counter; 5] = std::array::from_fn(
            |i| metrics::counter!("oa_ticks_malformed_total", "reason" => MALFORMED_REASONS[i]),
        );
        let mut topic = zmq::Message::new();
        let mut payload = zmq::Message::new();
        let mut extra = zmq::Message::new();
        while !self.stop.load(Ordering::Acquire) {
            match self.socket.recv(&mut topic, 0) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
                Err(zmq::Error::ETERM) => break,
                Err(error) => {
                    tracing::error!(%error, "market-data bus receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            let mut frames = 1;
            if topic.get_more() {
                if self.socket.recv(&mut payload, 0).is_ok() {
                    frames += 1;
                }
                // Drain any further parts so the next message starts clean.
                let mut more = payload.get_more();
                while more {
                    match self.socket.recv(&mut extra, 0) {
                        Ok(()) => {
                            frames += 1;
                            more = extra.get_more();
                        }
                        Err(_) => break,
                    }
                }
            }
            let result = if frames == 2 {
                decode_bus_message(&topic[..], &payload[..], self.max_frame_bytes)
            } else {
                Err(Malformed::FrameCount(frames))
            };
            match result {
                Ok(BusMessage::Ignored) => {
                    self.stats.ignored.fetch_add(1, Ordering::Relaxed);
                }
                Ok(BusMessage::OrderUpdate(relay)) => {
                    let sent = self
                        .orders
                        .as_ref()
                        .is_some_and(|orders| orders.try_send(relay).is_ok());
                    if sent {
                        self.stats.orders_relayed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.stats
                            .dropped_channel_full
                            .fetch_add(1, Ordering::Relaxed);
                        dropped_full.increment(1);
                    }
                }
                Ok(BusMessage::Tick(tick)) => {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    received_total.increment(1);
                    match self.sender.try_send(tick) {
                        Ok(()) => {
                            self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Full(tick)) => {
                            let total = self
                                .stats
                                .dropped_channel_full
                                .fetch_add(1, Ordering::Relaxed)
                                + 1;
                            dropped_full.increment(1);
                            if total.is_power_of_two() {
                                tracing::warn!(
                                    dropped_total = total,
                                    exchange = %tick.exchange,
                                    symbol = %tick.symbol,
                                    "market-data consumer is behind: dropped a tick"
                                );
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    }
                }
                Err(malformed) => {
                    let index = MALFORMED_REASONS
                        .iter()
                        .position(|r| *r == malformed.reason())
                        .unwrap_or(0);
                    let total = self.stats.malformed[index].fetch_add(1, Ordering::Relaxed) + 1;
                    malformed_counters[index].increment(1);
                    // One line per power of two per reason: a flood cannot flood the log.
                    if total.is_power_of_two() {
                        tracing::warn!(
                            reason = malformed.reason(),
                            count = total,
                            "dropped a malformed market-data message: {malformed}"
                        );
                    }
                }
            }
        }
        tracing::debug!("market-data bus thread stopped");
    }
}

fn linger_ms(linger: Duration) -> i32 {
    i32::try_from(linger.as_millis()).unwrap_or(i32::MAX)
}

/// Settings of a [`Publisher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherOptions {
    /// Send high-water mark (messages queued before ZeroMQ drops).
    pub sndhwm: i32,
    /// How long dropping the publisher may wait to send what is still queued (ZeroMQ
    /// LINGER). 0 discards the tail at once.
    pub linger: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            sndhwm: DEFAULT_HWM,
            linger: Duration::from_millis(250),
        }
    }
}

/// A PUB socket connected to one bus or several: what a feed adapter (in this process or
/// another) uses to publish ticks. Connected to several buses (the core's and every edge's
/// in a cluster, docs/scaling.md), it sends each tick to all of them: ZeroMQ's PUB fans out
/// to every connected peer. `Send`, not `Sync`: keep it on one thread.
pub struct Publisher {
    socket: zmq::Socket,
    context: zmq::Context,
    endpoints: Vec<String>,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects a PUB socket to the bus endpoint (`tcp://host:port`). ZeroMQ connects in the
    /// background: ticks published before the connection completes are lost, see
    /// [`Publisher::connect_and_wait`].
    pub fn connect(endpoint: &str, options: PublisherOptions) -> Result<Self, BusError> {
        Publisher::connect_all(&[endpoint], options)
    }

    /// [`Publisher::connect`] to every endpoint of `endpoints` (at least one): each tick
    /// goes to all of them.
    pub fn connect_all(endpoints: &[&str], options: PublisherOptions) -> Result<Self, BusError> {
        let (context, socket) = Publisher::socket(zmq::PUB, options)?;
        Publisher::connect_each(&socket, endpoints)?;
        Ok(Publisher::new(context, socket, endpoints))
    }

    /// Connects and waits until the bus's subscription arrived, so that no tick published
    /// afterwards is lost to ZeroMQ's "slow joiner" window. Uses an XPUB socket (a PUB that
    /// sees subscriptions); the bus cannot tell the difference.
    pub fn connect_and_wait(
        endpoint: &str,
        options: PublisherOptions,
        timeout: Duration,
    ) -> Result<Self, BusError> {
        Publisher::connect_all_and_wait(&[endpoint], options, timeout)
    }

    /// [`Publisher::connect_and_wait`] to every endpoint of `endpoints` (at least one): waits
    /// until every bus subscribed.
    pub fn connect_all_and_wait(
        endpoints: &[&str],
        options: PublisherOptions,
        timeout: Duration,
    ) -> Result<Self, BusError> {
        // An XPUB is a PUB that also reads its subscribers' subscriptions: seeing each bus's
        // subscription proves that ticks published from now on are delivered to it.
        let (context, socket) = Publisher::socket(zmq::XPUB, options)?;
        // Pass every subscription up, not only the first of each prefix: each bus subscribes
        // to everything once, so one subscription arrives per connected bus.
        socket
            .set_xpub_verbose(true)
            .map_err(setup("XPUB_VERBOSE"))?;
        let wait_ms = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        socket.set_rcvtimeo(wait_ms).map_err(setup("RCVTIMEO"))?;
        Publisher::connect_each(&socket, endpoints)?;
        let timed_out = || BusError::ConnectTimeout {
            endpoint: endpoints.join(", "),
            timeout,
        };
        let deadline = std::time::Instant::now() + timeout;
        let mut subscribed = 0;
        while subscribed < endpoints.len() {
            match socket.recv_bytes(0) {
                // 0x01 + prefix: a subscription (the bus subscribes to everything).
                Ok(message) if message.first() == Some(&1) => subscribed += 1,
                Ok(_) => {}
                Err(_) => return Err(timed_out()),
            }
            if subscribed < endpoints.len() && std::time::Instant::now() >= deadline {
                return Err(timed_out());
            }
        }
        Ok(Publisher::new(context, socket, endpoints))
    }

    fn socket(
        kind: zmq::SocketType,
        options: PublisherOptions,
    ) -> Result<(zmq::Context, zmq::Socket), BusError> {
        let context = zmq::Context::new();
        let socket = context.socket(kind).map_err(setup("create PUB"))?;
        socket.set_sndhwm(options.sndhwm).map_err(setup("SNDHWM"))?;
        socket
            .set_linger(linger_ms(options.linger))
            .map_err(setup("LINGER"))?;
        Ok((context, socket))
    }

    fn connect_each(socket: &zmq::Socket, endpoints: &[&str]) -> Result<(), BusError> {
        if endpoints.is_empty() {
            return Err(BusError::NoEndpoint);
        }
        for endpoint in endpoints {
            socket
                .connect(endpoint)
                .map_err(|source| BusError::Connect {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    fn new(context: zmq::Context, socket: zmq::Socket, endpoints: &[&str]) -> Publisher {
        Publisher {
            socket,
            context,
            endpoints: endpoints
                .iter()
                .map(|endpoint| endpoint.to_string())
                .collect(),
            buffer: Vec::with_capacity(1024),
        }
    }

    /// The (first) endpoint this publisher connects to.
    pub fn endpoint(&self) -> &str {
        self.endpoints.first().map_or("", String::as_str)
    }

    /// Every endpoint this publisher connects to.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Publishes a tick under its topic `{EXCHANGE}_{SYMBOL}_{MODE}`.
    pub fn publish(&mut self, tick: &Tick) -> Result<(), BusError> {
        let topic = oa_marketdata_core::topic::encode(&tick.exchange, &tick.symbol, tick.mode);
        self.buffer.clear();
        tick.write_payload(&mut self.buffer, tick.mode);
        self.socket
            .send(topic.as_bytes(), zmq::SNDMORE)
            .map_err(BusError::Send)?;
        self.socket
            .send(&self.buffer[..], 0)
            .map_err(BusError::Send)
    }

    /// Publishes raw frames (for adapters that already hold JSON, and for tests of malformed
    /// input).
    pub fn publish_frames(&self, frames: &[&[u8]]) -> Result<(), BusError> {
        self.socket
            .send_multipart(frames, 0)
            .map_err(BusError::Send)
    }

    /// The ZeroMQ context (for adapters that add their own sockets).
    pub fn context(&self) -> &zmq::Context {
        &self.context
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_marketdata_core::tick::TickMode;

    #[test]
    fn decode_message_accepts_good_ticks_and_names_every_reason() {
        let tick = Tick::ltp("NSE", "SBIN", 812.5);
        let payload = tick.to_json_bytes();
        assert_eq!(
            decode_message(b"NSE_SBIN_LTP", &payload, 1024).unwrap(),
            tick
        );
        let reason = |topic: &[u8], payload: &[u8]| {
            decode_message(topic, payload, 1024).unwrap_err().reason()
        };
        assert_eq!(reason(b"NSE_SBIN", &payload), "topic");
        assert_eq!(reason(&[0xff, 0xfe], &payload), "topic");
        assert_eq!(reason(b"NSE_SBIN_LTP", b"{nope"), "json");
        assert_eq!(reason(b"NSE_SBIN_LTP", &vec![b' '; 2048]), "oversized");
        assert_eq!(reason(b"NSE_INFY_LTP", &payload), "mismatch");
        assert_eq!(reason(b"BSE_SBIN_LTP", &payload), "mismatch");
        // The topic's mode wins over the payload's, as upstream's proxy reads it
        // (websocket_proxy/server.py: `mode_str = parts[-1]`); Angel's adapter
        // (broker/angel/streaming/angel_adapter.py) puts the subscription mode in the payload.
        let on_quote_topic = decode_message(b"NSE_SBIN_QUOTE", &payload, 1024).unwrap();
        assert_eq!(on_quote_topic.mode, TickMode::Quote);
        assert_eq!(on_quote_topic.ltp, 812.5);
        // Missing identity fields are taken from the topic.
        let minimal =
            decode_message(b"NSE_INDEX_NIFTY_QUOTE", br#"{"ltp":24350.5}"#, 1024).unwrap();
        assert_eq!(minimal.exchange, "NSE_INDEX");
        assert_eq!(minimal.symbol, "NIFTY");
        assert_eq!(minimal.mode, TickMode::Quote);
    }

    #[test]
    fn port_zero_becomes_wildcard() {
        assert_eq!(normalise_endpoint("tcp://127.0.0.1:0"), "tcp://127.0.0.1:*");
        assert_eq!(
            normalise_endpoint("tcp://127.0.0.1:5555"),
            "tcp://127.0.0.1:5555"
        );
        assert_eq!(tcp_endpoint("0.0.0.0", 0), "tcp://0.0.0.0:*");
    }
}
