//! The engine's worker: one dedicated thread that owns the [`Engine`] and its SQLite
//! connection, so store work never blocks tokio workers and every change is serialised.
//!
//! ```text
//! handlers ──jobs──▶ [bounded queue] ──▶ worker thread: BEGIN; job; job; ...; COMMIT
//! price stream ──(watched symbols only)──┘        └─▶ publish envelopes, answer jobs
//! ```
//!
//! Jobs queued together share one transaction (group commit), which is what lets a single
//! SQLite writer keep up with thousands of orders per second. Each job's changes, order-log
//! rows and (when durable) outbox envelopes are written in that transaction; events are
//! published and callers answered only after it commits. If the commit fails, every job of
//! the batch gets the error and the engine is reloaded from the store.
//!
//! Fail closed: if that reload fails too (or the reload after a panicked job), the memory no
//! longer matches the store, so the worker stops taking writes. Write jobs ([`EngineHandle::run`])
//! are refused with [`StoreError::WritesStopped`], price updates are ignored, and read jobs
//! ([`EngineHandle::read`]) still answer from memory. The reload is retried every
//! [`RELOAD_RETRY`] while messages arrive; once it succeeds, writes resume.
//!
//! Standby (`OA_ROLE=core`, see [`crate::leadership`]): a core that does not lead refuses
//! writes the same way (no reload is tried) until [`EngineHandle`]'s `lead` hands it a
//! leadership epoch: it then reloads its whole state from the store and checks that epoch in
//! every write transaction. A transaction refused by that check (another core took over)
//! puts the engine back in standby.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use oa_events_core::catalog::{AnalyzerUpdate, OrderUpdate};
use oa_events_core::number::Quantity;
use oa_events_core::{Envelope, Event, EventPublisher};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};

use super::{AccountKey, Changes, Engine, EngineConfig, Order, PositionKey};
use crate::journal::Record;
use crate::price::{PriceEvent, PriceSource};
use crate::store::{self, Database, Queries, StoreError, TxKind};
use crate::types::{AccountMode, Book, Exchange};

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;

/// How often a worker that stopped taking writes tries to reload its state.
pub(crate) const RELOAD_RETRY: Duration = Duration::from_secs(5);

/// How long an `Idempotency-Key` record answers retries.
pub(crate) const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 3_600_000;

/// How often expired idempotency records are pruned, and most rows deleted per prune.
const PRUNE_INTERVAL_MS: i64 = 60_000;
const PRUNE_LIMIT: usize = 1000;

/// What a job sees while it runs on the worker thread.
pub struct JobCtx<'a> {
    /// The engine.
    pub engine: &'a mut Engine,
    /// Prices.
    pub prices: &'a dyn PriceSource,
    /// The batch's clock, epoch ms.
    pub now_ms: i64,
    tx: &'a dyn Queries,
    records: Vec<Record>,
}

impl std::fmt::Debug for JobCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobCtx")
            .field("now_ms", &self.now_ms)
            .finish()
    }
}

impl<'a> JobCtx<'a> {
    /// A job's context in transaction `tx`, with no records yet.
    fn new(
        engine: &'a mut Engine,
        prices: &'a dyn PriceSource,
        now_ms: i64,
        tx: &'a dyn Queries,
    ) -> Self {
        JobCtx {
            engine,
            prices,
            now_ms,
            tx,
            records: Vec::new(),
        }
    }

    /// Adds a record (log row and events) to this job's transaction.
    pub fn record(&mut self, record: Record) {
        self.records.push(record);
    }

    /// This job's transaction, for store writes that must commit with the job's effects.
    pub(crate) fn tx(&self) -> &dyn Queries {
        self.tx
    }

    /// Writes a per-user setting in this job's transaction.
    pub fn set_setting(&self, user_id: &str, name: &str, value: &str) -> Result<(), StoreError> {
        self.tx.set_setting(user_id, name, value)
    }
}

/// Why a job's effects were not committed.
#[derive(Debug, Clone)]
enum Failure {
    /// The batch's transaction failed and rolled back.
    Transaction(String),
    /// The worker stopped taking writes (the job did not run).
    WritesStopped(String),
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Transaction(reason) => StoreError::Transaction(reason),
            Failure::WritesStopped(reason) => StoreError::WritesStopped(reason),
        }
    }
}

type Completion = Box<dyn FnOnce(Result<(), Failure>) + Send>;
/// Runs with `Some(ctx)`; called with `None` when refused, it returns the completion that
/// tells the caller so.
type Job = Box<dyn FnOnce(Option<&mut JobCtx<'_>>) -> Completion + Send>;

/// Whether a job may change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

enum Message {
    Job(Job, Access),
    Price {
        exchange: String,
        symbol: String,
    },
    Resync,
    /// Take the lead in this leadership epoch: reload from the store, then take writes.
    Lead(i64, oneshot::Sender<Result<(), StoreError>>),
    /// Stop taking writes: another core leads (or may).
    StandBy(String),
}

/// Why a standby core refuses writes.
pub(crate) const STANDBY_REASON: &str = "This oa core is a standby: another core leads and takes the writes (send requests to the leader; /health answers 200 there)";

/// Why the worker stopped taking writes, if it did (shared with every handle).
type StopReason = Arc<RwLock<Option<String>>>;

/// Analyzer-mode order-log entries per user (the `total_logs` of `analyzer`).
pub(crate) type LogCounts = Arc<Mutex<HashMap<String, u64>>>;

/// A handle to the worker; cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    sender: mpsc::Sender<Message>,
    log_counts: LogCounts,
    stopped: StopReason,
    standby: Arc<AtomicBool>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

/// Settings of the worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    /// Engine settings.
    pub engine: EngineConfig,
    /// Write envelopes to the outbox table in the action's transaction.
    pub durable_outbox: bool,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Start as a standby: refuse writes until `EngineHandle::lead`.
    pub standby: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The first order id of today: `YYMMDD` followed by an 8-digit sequence.
fn first_order_id_today() -> u64 {
    let date: u64 = chrono::Utc::now()
        .format("%y%m%d")
        .to_string()
        .parse()
        .unwrap_or(0);
    date * 100_000_000 + 1
}

/// Start of the current trading day (midnight, Indian time) in epoch ms.
pub(crate) fn session_start_ms(now_ms: i64) -> i64 {
    const IST_OFFSET_MS: i64 = 19_800_000;
    const DAY_MS: i64 = 86_400_000;
    let local = now_ms + IST_OFFSET_MS;
    local - local.rem_euclid(DAY_MS) - IST_OFFSET_MS
}

/// Loads the current session: active orders, today's orders and trades, all positions and
/// funds. Earlier orders and trades stay in the store but not in memory.
fn load_engine(db: &dyn Queries, config: EngineConfig) -> Result<Engine, StoreError> {
    let since = session_start_ms(now_ms());
    let (max_order, max_trade) = db.max_ids()?;
    let mut engine = Engine::restore(
        config,
        first_order_id_today().max(max_order + 1),
        db.load_orders(since)?,
        db.load_trades(since)?,
        db.load_positions()?,
        db.load_accounts()?,
    );
    engine.reserve_trade_ids(max_trade + 1);
    Ok(engine)
}

impl EngineHandle {
    /// Loads the engine from `db` and starts the worker thread and the price forwarder.
    /// Must be called inside a Tokio runtime.
    pub(crate) fn start(
        db: Box<dyn Database>,
        config: WorkerConfig,
        prices: Arc<dyn PriceSource>,
        publisher: EventPublisher,
    ) -> Result<EngineHandle, StoreError> {
        let engine = load_engine(db.queries(), config.engine)?;
        let log_counts: LogCounts = Arc::new(Mutex::new(
            db.queries()
                .load_log_counts(AccountMode::Analyze.as_str())?
                .into_iter()
                .collect(),
        ));
        let watched: Arc<RwLock<HashSet<(String, String)>>> = Arc::default();
        let standby = config.standby;
        let stopped: StopReason =
            Arc::new(RwLock::new(standby.then(|| STANDBY_REASON.to_string())));
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(16));
        let sqlite_path = db.sqlite_path();
        let worker = Worker {
            db,
            engine,
            config,
            prices: Arc::clone(&prices),
            publisher,
            log_counts: Arc::clone(&log_counts),
            watched: Arc::clone(&watched),
            session_start: session_start_ms(now_ms()),
            alive: Arc::new(()),
            stopped: Arc::clone(&stopped),
            standby: Arc::new(AtomicBool::new(standby)),
            last_reload: Instant::now(),
            last_prune_ms: 0,
        };
        worker.publish_watched();
        if let Some(path) = sqlite_path {
            spawn_checkpointer(path, Arc::downgrade(&worker.alive))?;
        }
        let standby = Arc::clone(&worker.standby);
        std::thread::Builder::new()
            .name("oa-order-engine".to_string())
            .spawn(move || worker.run(receiver))
            .map_err(|error| StoreError::Open {
                path: "order engine thread".to_string(),
                reason: error.to_string(),
            })?;
        tokio::spawn(forward_prices(prices, watched, sender.clone()));
        Ok(EngineHandle {
            sender,
            log_counts,
            stopped,
            standby,
        })
    }

    /// Takes the lead in leadership `epoch` (from a blocking thread): the worker reloads its
    /// state from the store and takes writes, each checked against `epoch`. Returns once
    /// it does, or why it cannot.
    pub(crate) fn lead_blocking(&self, epoch: i64) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .blocking_send(Message::Lead(epoch, reply))
            .map_err(|_| StoreError::Closed)?;
        answer.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Stops taking writes at once (leadership lost), with `reason` as the refusal.
    pub(crate) fn stand_by_blocking(&self, reason: String) {
        self.standby.store(true, Ordering::SeqCst);
        *self.stopped.write() = Some(reason.clone());
        let _ = self.sender.blocking_send(Message::StandBy(reason));
    }

    /// True while this engine is a standby core's (writes refused until it leads).
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::SeqCst)
    }

    /// Runs `job` on the worker inside a transaction and returns its value once committed.
    /// Refused with [`StoreError::WritesStopped`] while the worker is not taking writes.
    pub async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut JobCtx<'_>) -> T + Send + 'static,
    {
        self.submit(job, Access::Write).await
    }

    /// Runs a job that only reads (the engine's books, stored records). It is answered after
    /// its batch commits, like a write, and also while the worker is not taking writes. It
    /// must not change the engine or write to the transaction.
    pub async fn read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut JobCtx<'_>) -> T + Send + 'static,
    {
        self.submit(job, Access::Read).await
    }

    async fn submit<T, F>(&self, job: F, access: Access) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut JobCtx<'_>) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, Failure>>();
        let job: Job = Box::new(move |ctx| match ctx {
            Some(ctx) => {
                let value = job(ctx);
                Box::new(move |committed: Result<(), Failure>| {
                    let _ = reply.send(committed.map(|()| value));
                })
            }
            None => Box::new(move |refused: Result<(), Failure>| {
                let failure = refused
                    .err()
                    .unwrap_or_else(|| Failure::Transaction("the job was not run".to_string()));
                let _ = reply.send(Err(failure));
            }),
        });
        self.sender
            .send(Message::Job(job, access))
            .await
            .map_err(|_| StoreError::Closed)?;
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => Err(failure.into()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Why the engine stopped taking writes, while it does not (`None` when healthy).
    pub fn writes_stopped(&self) -> Option<String> {
        self.stopped.read().clone()
    }

    /// Analyzer-mode order-log entries of a user.
    pub fn analyzer_log_count(&self, user_id: &str) -> u64 {
        self.log_counts.lock().get(user_id).copied().unwrap_or(0)
    }
}

/// Forwards price updates of watched symbols to the worker.
async fn forward_prices(
    prices: Arc<dyn PriceSource>,
    watched: Arc<RwLock<HashSet<(String, String)>>>,
    sender: mpsc::Sender<Message>,
) {
    let mut updates = prices.updates();
    while let Some(event) = updates.next().await {
        let message = match event {
            PriceEvent::Updated { exchange, symbol } => {
                let key = (exchange, symbol);
                if !watched.read().contains(&key) {
                    continue;
                }
                let (exchange, symbol) = key;
                Message::Price { exchange, symbol }
            }
            PriceEvent::Resync => Message::Resync,
        };
        if sender.send(message).await.is_err() {
            break;
        }
    }
}

struct Worker {
    db: Box<dyn Database>,
    engine: Engine,
    config: WorkerConfig,
    prices: Arc<dyn PriceSource>,
    publisher: EventPublisher,
    log_counts: LogCounts,
    watched: Arc<RwLock<HashSet<(String, String)>>>,
    session_start: i64,
    /// Dropped with the worker; the checkpoint thread stops when it is gone.
    alive: Arc<()>,
    /// Set while writes are refused (see the module documentation).
    stopped: StopReason,
    /// True while this is a standby core's engine: writes refused, no reload tried.
    standby: Arc<AtomicBool>,
    /// When the engine was last reloaded or a reload last tried.
    last_reload: Instant,
    /// When expired idempotency records were last pruned (epoch ms).
    last_prune_ms: i64,
}

/// How often the WAL is checkpointed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoints the WAL from its own thread and connection until the worker stops.
fn spawn_checkpointer(path: PathBuf, alive: Weak<()>) -> Result<(), StoreError> {
    let conn = store::sqlite::open(&path)?;
    std::thread::Builder::new()
        .name("oa-store-checkpoint".to_string())
        .spawn(move || {
            let mut failures = 0u64;
            while alive.upgrade().is_some() {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                match store::sqlite::checkpoint(&conn) {
                    Ok(_) => failures = 0,
                    Err(error) => {
                        failures += 1;
                        if failures.is_power_of_two() {
                            tracing::warn!(%error, failures, "WAL checkpoint failed; the WAL file keeps growing");
                        }
                    }
                }
            }
            let _ = store::sqlite::checkpoint(&conn);
        })
        .map(|_| ())
        .map_err(|error| StoreError::Open {
            path: "store checkpoint thread".to_string(),
            reason: error.to_string(),
        })
}

/// What one committed batch hands out.
#[derive(Default)]
struct Outputs {
    envelopes: Vec<Arc<Envelope>>,
    completions: Vec<Completion>,
    analyzer_logs: Vec<String>,
    resting_changed: bool,
    /// Rows whose latest state is written once per batch, just before the commit: orders,
    /// positions and funds touched by many jobs of a batch cost one write each.
    dirty_orders: HashSet<String>,
    dirty_positions: HashSet<PositionKey>,
    dirty_accounts: HashSet<AccountKey>,
}

impl Worker {
    fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // Waits for a message, then takes what else is queued (up to MAX_BATCH); 0 once every
        // sender is gone and the queue is empty.
        while receiver.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
            // A bug in a job must not take the engine down with it: the batch's transaction
            // rolls back while unwinding, its callers get an error (their reply channels are
            // dropped), and the engine reloads the committed state.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(&mut batch)));
            if outcome.is_err() {
                tracing::error!(
                    "order engine job panicked; batch rolled back, reloading from the store"
                );
                batch.clear();
                self.reload("a job panicked");
            }
        }
        tracing::debug!("order engine stopped");
    }

    /// Replaces the engine with the store's state. If that fails, writes stop until a
    /// later reload succeeds.
    fn reload(&mut self, cause: &str) {
        self.last_reload = Instant::now();
        match load_engine(self.db.queries(), self.config.engine) {
            Ok(engine) => {
                self.engine = engine;
                self.publish_watched();
                if self.stopped.write().take().is_some() {
                    tracing::warn!("order engine reloaded from the store; taking writes again");
                }
            }
            Err(error) => {
                let reason = format!(
                    "The order engine stopped taking writes: after {cause}, reloading its state from the store failed ({error}). Reads still answer; order-changing requests are refused until the store can be read again"
                );
                tracing::error!(%error, cause, "reloading the order engine failed; refusing writes");
                metrics::counter!("oa_engine_reload_failures_total").increment(1);
                *self.stopped.write() = Some(reason);
            }
        }
    }

    /// Serves a batch while writes are stopped: reads answer from memory, writes are refused,
    /// price updates are ignored (a fill would be a write).
    fn serve_stopped(&mut self, batch: &mut Vec<Message>, reason: &str) {
        let now = now_ms();
        let mut reads = Vec::new();
        for message in batch.drain(..) {
            let Message::Job(job, access) = message else {
                continue;
            };
            match access {
                Access::Read => reads.push(job),
                Access::Write => job(None)(Err(Failure::WritesStopped(reason.to_string()))),
            }
        }
        let Worker {
            db, engine, prices, ..
        } = self;
        let mut pending = reads.into_iter();
        let result = db.transaction(TxKind::Read, &mut |tx| {
            for job in pending.by_ref() {
                let mut ctx = JobCtx::new(&mut *engine, prices.as_ref(), now, tx);
                let completion = job(Some(&mut ctx));
                completion(Ok(()));
            }
            Ok(())
        });
        if let Err(error) = result {
            // The read transaction could not begin: the jobs it did not run get the error.
            for job in pending {
                job(None)(Err(Failure::Transaction(error.to_string())));
            }
        }
        let discarded = self.engine.take_changes();
        if !discarded.is_empty() {
            tracing::error!("a read job changed the engine while writes are stopped; discarded");
        }
    }

    /// Applies the batch's leadership messages, in order, before its other messages.
    fn apply_leadership(&mut self, batch: &mut Vec<Message>) {
        if !batch
            .iter()
            .any(|message| matches!(message, Message::Lead(..) | Message::StandBy(_)))
        {
            return;
        }
        let mut others = Vec::with_capacity(batch.len());
        for message in batch.drain(..) {
            match message {
                Message::Lead(epoch, reply) => {
                    self.db.set_fence(Some(epoch));
                    self.reload("taking the lead");
                    let outcome = match self.stopped.read().clone() {
                        Some(reason) => Err(StoreError::WritesStopped(reason)),
                        None => {
                            // Only now: until here /health said standby, not degraded.
                            self.standby.store(false, Ordering::SeqCst);
                            tracing::info!(
                                epoch,
                                "order engine leads: state reloaded from the store"
                            );
                            Ok(())
                        }
                    };
                    let _ = reply.send(outcome);
                }
                Message::StandBy(reason) => self.stand_by(reason),
                other => others.push(other),
            }
        }
        *batch = others;
    }

    /// Refuses writes from now on, with `reason`, until the next `Lead`.
    fn stand_by(&mut self, reason: String) {
        if !self.standby.swap(true, Ordering::SeqCst) {
            tracing::warn!(%reason, "order engine stands by: writes refused");
        }
        *self.stopped.write() = Some(reason);
    }

    fn process(&mut self, batch: &mut Vec<Message>) {
        self.apply_leadership(batch);
        if self.standby.load(Ordering::SeqCst) {
            let reason = self
                .stopped
                .read()
                .clone()
                .unwrap_or_else(|| STANDBY_REASON.to_string());
            self.serve_stopped(batch, &reason);
            return;
        }
        let stopped = self.stopped.read().clone();
        if let Some(reason) = stopped {
            if self.last_reload.elapsed() >= RELOAD_RETRY {
                self.reload("an earlier failure");
            }
            let still_stopped = self.stopped.read().clone();
            if let Some(reason) = still_stopped {
                self.serve_stopped(batch, &reason);
                return;
            }
            tracing::info!(previous = %reason, "order engine resumed; re-checking resting orders");
            // Prices moved while writes were stopped: evaluate resting orders first.
            batch.insert(0, Message::Resync);
        }
        let now = now_ms();
        let session = session_start_ms(now);
        if session > self.session_start {
            // A new trading day: yesterday's finished orders and trades leave memory (the
            // books show the current session, as brokers' do); the store keeps them.
            self.engine.forget_before(session);
            self.session_start = session;
        }
        let mut outputs = Outputs::default();
        let result = self.apply(batch, now, &mut outputs);
        // A transaction that failed before its work ran (its BEGIN, or the leadership fence)
        // left the batch untouched: its jobs get the error too.
        if result.is_err() {
            for message in batch.drain(..) {
                if let Message::Job(job, _) = message {
                    outputs.completions.push(job(None));
                }
            }
        }
        match result {
            Ok(()) => {
                for envelope in outputs.envelopes {
                    self.publisher.publish_envelope(envelope);
                }
                if !outputs.analyzer_logs.is_empty() {
                    let mut counts = self.log_counts.lock();
                    for user in outputs.analyzer_logs {
                        *counts.entry(user).or_default() += 1;
                    }
                }
                if outputs.resting_changed {
                    self.publish_watched();
                }
                for completion in outputs.completions {
                    completion(Ok(()));
                }
            }
            Err(StoreError::Fenced(reason)) => {
                // Another core leads: nothing of the batch committed, and nothing more will.
                tracing::error!(%reason, "order engine deposed: its write transaction was fenced");
                metrics::counter!("oa_engine_fenced_writes_total").increment(1);
                self.stand_by(reason.clone());
                for completion in outputs.completions {
                    completion(Err(Failure::WritesStopped(reason.clone())));
                }
            }
            Err(error) => {
                tracing::error!(%error, "order engine transaction failed; reloading from the store");
                let reason = error.to_string();
                // Reload before answering: a caller that got the error sees the engine's
                // state after it (reloaded, or not taking writes).
                self.reload("a failed commit");
                for completion in outputs.completions {
                    completion(Err(Failure::Transaction(reason.clone())));
                }
            }
        }
    }

    fn apply(
        &mut self,
        batch: &mut Vec<Message>,
        now: i64,
        outputs: &mut Outputs,
    ) -> Result<(), StoreError> {
        let Worker {
            db,
            engine,
            prices,
            config,
            last_prune_ms,
            ..
        } = self;
        let durable_outbox = config.durable_outbox;
        // A write transaction takes the write lock up front (SQLite: waiting on the busy
        // timeout if the key store holds it) instead of failing a read-to-write upgrade.
        db.transaction(TxKind::Write, &mut |tx| {
            let mut failure = None;
            for message in batch.drain(..) {
                if failure.is_some() {
                    // Still answer the remaining jobs (with the error) after a failure.
                    if let Message::Job(job, _) = message {
                        outputs.completions.push(job(None));
                    }
                    continue;
                }
                let records = match message {
                    Message::Job(job, _) => {
                        let mut ctx = JobCtx::new(&mut *engine, prices.as_ref(), now, tx);
                        outputs.completions.push(job(Some(&mut ctx)));
                        ctx.records
                    }
                    Message::Price { exchange, symbol } => {
                        if let (Some(code), Some(quote)) =
                            (Exchange::parse(&exchange), prices.quote(&exchange, &symbol))
                        {
                            engine.on_price(code, &symbol, &quote, now);
                        }
                        Vec::new()
                    }
                    Message::Resync => {
                        engine.resync(prices.as_ref(), now);
                        Vec::new()
                    }
                    // Taken out of the batch by `apply_leadership` before it runs.
                    Message::Lead(..) | Message::StandBy(_) => Vec::new(),
                };
                let changes = engine.take_changes();
                outputs.resting_changed |= changes.watched_changed;
                if let Err(error) = persist(tx, durable_outbox, records, changes, now, outputs) {
                    failure = Some(error);
                }
            }
            if let Some(error) = failure {
                return Err(error);
            }
            write_dirty(tx, engine, outputs)?;
            if now - *last_prune_ms >= PRUNE_INTERVAL_MS {
                // A failed DELETE undoes only itself: the batch still commits.
                match tx.prune_idempotency(now - IDEMPOTENCY_RETENTION_MS, PRUNE_LIMIT) {
                    Ok(0) => {}
                    Ok(pruned) => tracing::debug!(pruned, "expired idempotency keys pruned"),
                    Err(error) => tracing::warn!(%error, "pruning expired idempotency keys failed"),
                }
                *last_prune_ms = now;
            }
            Ok(())
        })
    }

    fn publish_watched(&self) {
        let symbols: HashSet<(String, String)> = self
            .engine
            .watched_symbols()
            .map(|(exchange, symbol)| (exchange.as_str().to_string(), symbol.clone()))
            .collect();
        *self.watched.write() = symbols;
    }
}

/// Writes the latest state of every order, position and account the batch touched.
fn write_dirty(tx: &dyn Queries, engine: &Engine, outputs: &mut Outputs) -> Result<(), StoreError> {
    for orderid in outputs.dirty_orders.drain() {
        if let Some(order) = engine.order_by_id(&orderid) {
            tx.save_order(order)?;
        }
    }
    for key in outputs.dirty_positions.drain() {
        if let Some(position) = engine.position(&key) {
            tx.save_position(&key, position)?;
        }
    }
    for key in outputs.dirty_accounts.drain() {
        tx.save_account(&key, &engine.account(key.book, &key.user_id))?;
    }
    Ok(())
}

/// Writes a job's log rows, idempotency records, trades and (when `durable_outbox`) outbox
/// envelopes in the batch's transaction; marks the rows it changed dirty.
fn persist(
    tx: &dyn Queries,
    durable_outbox: bool,
    records: Vec<Record>,
    changes: Changes,
    now: i64,
    outputs: &mut Outputs,
) -> Result<(), StoreError> {
    let mut events: Vec<Event> = Vec::new();
    for record in records {
        if let Some(log) = record.log {
            tx.insert_log(&log, now)?;
            if let Some(replay) = &log.replay {
                tx.save_idempotency(replay, now)?;
            }
            if log.mode == AccountMode::Analyze {
                outputs.analyzer_logs.push(log.user_id);
            }
        }
        events.extend(record.events);
    }
    if changes.is_empty() && events.is_empty() {
        return Ok(());
    }
    outputs.dirty_orders.extend(changes.orders);
    for trade in &changes.trades {
        tx.insert_trade(trade)?;
    }
    outputs.dirty_positions.extend(changes.positions);
    outputs.dirty_accounts.extend(changes.accounts);
    // One order_update per order and job: its last state.
    let updates = &changes.updates;
    for (index, order) in updates.iter().enumerate() {
        let superseded = updates[index + 1..]
            .iter()
            .any(|later| later.orderid == order.orderid);
        if !superseded {
            metrics::counter!(
                "oa_order_updates_total",
                "broker" => order.book.as_str(),
                "status" => order.status.as_str()
            )
            .increment(1);
            events.push(Event::for_user(order.user_id.clone(), order_update(order)));
        }
    }
    // Each sandbox fill also emits `analyzer_update`, so a UI that refreshes its books on it
    // (OpenAlgo's web UI) refreshes when a resting sandbox order fills: upstream
    // sandbox/execution_engine.py `_publish_fill_event` publishes SandboxOrderFilledEvent
    // (fills at placement included) and subscribers/socketio_subscriber.py
    // `on_sandbox_order_filled` emits its empty `request`/`response`. oa names the cause in
    // `request.api_type`; no `orderid` or `symbol`, which would make that UI announce a
    // placed order.
    for trade in changes
        .trades
        .iter()
        .filter(|trade| trade.book == Book::Sandbox)
    {
        events.push(Event::for_user(
            trade.user_id.clone(),
            sandbox_fill_update(),
        ));
    }
    for event in events {
        let envelope = Arc::new(Envelope::new(event));
        if durable_outbox {
            tx.insert_outbox(&envelope)?;
        }
        outputs.envelopes.push(envelope);
    }
    Ok(())
}

/// The `analyzer_update` of a sandbox fill.
fn sandbox_fill_update() -> AnalyzerUpdate {
    AnalyzerUpdate {
        request: serde_json::json!({"api_type": "sandbox.fill"}),
        response: serde_json::Value::Object(serde_json::Map::new()),
    }
}

/// The `order_update` payload of an order's current state.
pub(crate) fn order_update(order: &Order) -> OrderUpdate {
    let pending = if order.status.is_active() {
        order.terms.quantity - order.filled_quantity
    } else {
        0.0
    };
    OrderUpdate {
        mode: order.book.mode().as_str().to_string(),
        broker: order.book.as_str().to_string(),
        orderid: order.orderid.clone(),
        symbol: order.terms.symbol.clone(),
        exchange: order.terms.exchange.as_str().to_string(),
        action: order.terms.action.as_str().to_string(),
        quantity: Quantity(order.terms.quantity),
        price: order.terms.price,
        trigger_price: order.terms.trigger_price,
        pricetype: order.terms.pricetype.as_str().to_string(),
        product: order.terms.product.as_str().to_string(),
        order_status: order.status.as_str().to_string(),
        filled_quantity: Quantity(order.filled_quantity),
        pending_quantity: Quantity(pending),
        average_price: order.average_price,
        rejection_reason: order.rejection_reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_at_midnight_indian_time() {
        // 2026-01-29 10:30:45 UTC is 16:00:45 IST; that day started at 2026-01-28 18:30 UTC.
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-29T10:30:45Z")
            .unwrap()
            .timestamp_millis();
        let start = chrono::DateTime::parse_from_rfc3339("2026-01-28T18:30:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(session_start_ms(now), start);
        assert_eq!(session_start_ms(start), start);
        assert_eq!(session_start_ms(start - 1), start - 86_400_000);
    }
}
