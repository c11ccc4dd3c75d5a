//! Feed adapters: producers of ticks that publish onto the bus like any external process.
//!
//! A feed adapter connects a [`crate::bus::Publisher`] to the bus endpoint and publishes
//! [`oa_marketdata_core::tick::Tick`]s. The proxy tells it which instruments clients currently want
//! through [`FeedAdapter::subscription_changed`] (hints: an adapter may ignore them and
//! publish everything, as the simulated market does, or use them to subscribe upstream, as a
//! real broker adapter would).
//!
//! Bundled adapters:
//! - [`simulated`]: a seeded random-walk market with quotes and 5-level depth;
//! - [`replay`]: plays a recorded JSON-lines or CSV tick file.
//!
//! Any other process can feed the bus too: connect a ZeroMQ PUB socket to the bus endpoint
//! and send `[topic, JSON]` (see docs/marketdata.md for a pyzmq example).

pub mod replay;
pub mod simulated;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::bus::BusError;
use oa_marketdata_core::tick::TickMode;

/// Which instruments clients currently want, sent to the adapter when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionHint {
    /// Exchange code.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// The richest mode any client wants; `None` when no client wants the instrument anymore.
    pub mode: Option<TickMode>,
}

/// Why a feed adapter failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The bus could not be reached.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The replay file could not be read.
    #[error("cannot read replay file {path}: {source}")]
    ReplayIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A replay line is invalid.
    #[error("replay file {path} line {line}: {reason}")]
    ReplayLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The adapter has no instruments to publish.
    #[error("feed adapter {0} has nothing to publish")]
    Empty(&'static str),
    /// The adapter was started twice.
    #[error("feed adapter {0} is already running")]
    AlreadyStarted(&'static str),
    /// The adapter's thread could not be started.
    #[error("cannot start the feed thread: {0}")]
    Thread(std::io::Error),
}

/// A source of ticks publishing onto the bus.
///
/// Lifecycle: `start` once (connects to the bus and begins publishing in the background,
/// returns quickly), any number of `subscription_changed` calls, then `stop` (idempotent;
/// returns once the adapter stopped publishing). Implementations own their threads or tasks
/// and their ZeroMQ sockets.
pub trait FeedAdapter: Send {
    /// A short name for logs: `simulated`, `replay`, `mybroker`.
    fn name(&self) -> &'static str;

    /// Connects to the bus at `bus_endpoint` (`tcp://host:port`) and starts publishing.
    fn start(&mut self, bus_endpoint: &str) -> Result<(), FeedError>;

    /// Clients' interest in an instrument changed. Default: ignored. Called from an async
    /// task: must not block (hand the change to the adapter's own thread instead).
    fn subscription_changed(&mut self, hint: &SubscriptionHint) {
        let _ = hint;
    }

    /// Stops publishing and releases the bus connection.
    fn stop(&mut self);

    /// Ticks published so far.
    fn published(&self) -> u64;
}

/// A bundled feed, publishing from one [`FeedThread`]: [`FeedAdapter`] is implemented for
/// it, refusing a second start and stopping and counting through the thread.
pub(crate) trait ThreadedFeed: Send {
    /// The adapter's [`FeedAdapter::name`].
    const NAME: &'static str;

    /// The feed's thread.
    fn thread(&self) -> &FeedThread;

    /// Connects to the bus at `bus_endpoint` and spawns the thread (only when not started).
    fn spawn(&mut self, bus_endpoint: &str) -> Result<(), FeedError>;
}

impl<Feed: ThreadedFeed> FeedAdapter for Feed {
    fn name(&self) -> &'static str {
        Feed::NAME
    }

    fn start(&mut self, bus_endpoint: &str) -> Result<(), FeedError> {
        if self.thread().is_started() {
            return Err(FeedError::AlreadyStarted(Feed::NAME));
        }
        self.spawn(bus_endpoint)
    }

    fn stop(&mut self) {
        self.thread().stop();
    }

    fn published(&self) -> u64 {
        self.thread().published()
    }
}

/// The thread of a bundled feed and what it shares with it: a stop request and the count of
/// ticks published. Stops and joins the thread when dropped.
#[derive(Debug)]
pub(crate) struct FeedThread {
    /// Set to ask the thread to return.
    stop: Arc<AtomicBool>,
    /// Ticks the thread published.
    published: Arc<AtomicU64>,
    /// Named in the log when the thread panicked.
    name: &'static str,
    /// The running thread, behind a lock so that it can be started and stopped through `&self`.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl FeedThread {
    /// No thread yet; `name` (e.g. "replay") is used in log lines.
    pub(crate) fn new(name: &'static str) -> Self {
        FeedThread {
            stop: Arc::new(AtomicBool::new(false)),
            published: Arc::new(AtomicU64::new(0)),
            name,
            thread: Mutex::new(None),
        }
    }

    /// The running thread's handle (a panic while it was held cannot leave it inconsistent).
    fn handle(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.thread.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once a thread was started (and not stopped).
    pub(crate) fn is_started(&self) -> bool {
        self.handle().is_some()
    }

    /// Starts the thread `name`, which runs `body` with the stop request and the count of
    /// ticks published.
    pub(crate) fn spawn(
        &self,
        name: &str,
        body: impl FnOnce(&AtomicBool, &AtomicU64) + Send + 'static,
    ) -> Result<(), FeedError> {
        let stop = Arc::clone(&self.stop);
        let published = Arc::clone(&self.published);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || body(&stop, &published))
            .map_err(FeedError::Thread)?;
        *self.handle() = Some(thread);
        Ok(())
    }

    /// Asks the thread to stop and waits for it.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let thread = self.handle().take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("{} thread panicked", self.name);
        }
    }

    /// Ticks published so far.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

impl Drop for FeedThread {
    fn drop(&mut self) {
        self.stop();
    }
}
