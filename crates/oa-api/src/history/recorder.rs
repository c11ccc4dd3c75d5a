//! The bar recorder: a task that reads the price cache's update stream, builds 1-minute bars
//! ([`MinuteBarRecorder`]) and hands completed bars to the [`BarWorker`] in batches (every
//! [`FLUSH_INTERVAL`] or [`BATCH_SIZE`] bars).
//!
//! The tick path (the price cache's update) only sends on a broadcast channel and never
//! waits for this task. The task does not wait on the channel either: it drains it every
//! [`DRAIN_INTERVAL`], so a tick never has to wake it (waking a parked task on every tick
//! was most of what recording added to the tick path's p99), and a `history` read drains it
//! before reading, so the bars it sees hold every tick already in the cache. If the updates
//! ever outrun the channel's capacity between two drains, the missed ticks are counted in
//! `oa_bars_lagged_ticks_total` and recording goes on.

use std::sync::Arc;
use std::time::Duration;

use oa_marketdata_core::PriceSnapshot;
use oa_marketdata_core::candles::{InstrumentBar, MinuteBarRecorder};
use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use super::worker::BarWorker;

/// Completed bars are handed to the store at least this often.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// ... or as soon as this many are waiting.
const BATCH_SIZE: usize = 1_000;
/// How often the task reads the updates that arrived (the price cache's channel holds 4,096:
/// 400,000 ticks a second before any is missed).
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

/// What the recorder task and the `history` reads share: the update stream, the bars being
/// built and the completed bars not yet handed to the store.
#[derive(Debug)]
pub(crate) struct Recorded {
    updates: broadcast::Receiver<Arc<PriceSnapshot>>,
    pub(crate) recorder: MinuteBarRecorder,
    pub(crate) pending: Vec<InstrumentBar>,
}

impl Recorded {
    /// Records every update that has arrived; returns false once the stream is closed.
    pub(crate) fn catch_up(&mut self) -> bool {
        loop {
            match self.updates.try_recv() {
                Ok(snapshot) => {
                    if let Some(bar) = self.recorder.record(&snapshot) {
                        self.pending.push(bar);
                    }
                }
                Err(broadcast::error::TryRecvError::Empty) => return true,
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    metrics::counter!("oa_bars_lagged_ticks_total").increment(missed);
                    tracing::debug!(missed, "bar recorder fell behind the tick stream");
                }
                Err(broadcast::error::TryRecvError::Closed) => return false,
            }
        }
    }
}

/// The running recorder task.
#[derive(Debug)]
pub(crate) struct Recording {
    pub(crate) shared: Arc<Mutex<Recorded>>,
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Recording {
    /// Starts recording the snapshots of `updates` into `worker`.
    pub(crate) fn start(
        updates: broadcast::Receiver<Arc<PriceSnapshot>>,
        worker: BarWorker,
    ) -> Recording {
        let shared = Arc::new(Mutex::new(Recorded {
            updates,
            recorder: MinuteBarRecorder::default(),
            pending: Vec::new(),
        }));
        let stop = Arc::new(Notify::new());
        let task = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut drain = tokio::time::interval(DRAIN_INTERVAL);
                drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut flushed = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = drain.tick() => {
                            let (open, full) = {
                                let mut recorded = shared.lock();
                                let open = recorded.catch_up();
                                (open, recorded.pending.len() >= BATCH_SIZE)
                            };
                            if full || flushed.elapsed() >= FLUSH_INTERVAL {
                                hand_over(&shared, &worker);
                                flushed = tokio::time::Instant::now();
                            }
                            if !open {
                                break;
                            }
                        }
                        () = stop.notified() => break,
                    }
                }
                shared.lock().catch_up();
                hand_over(&shared, &worker);
            })
        };
        Recording {
            shared,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Stops recording and returns every bar not yet stored: the completed ones still
    /// waiting and the bars of the current minute.
    pub(crate) async fn stop(&self) -> Vec<InstrumentBar> {
        self.stop.notify_one();
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let mut recorded = self.shared.lock();
        let mut bars = std::mem::take(&mut recorded.pending);
        bars.extend(recorded.recorder.open_bars());
        recorded.recorder = MinuteBarRecorder::new();
        bars
    }
}

/// Queues the completed bars with the worker, never waiting; a full queue drops them.
///
/// The batch is queued under the lock, so a `history` read (which copies the pending bars
/// under the same lock, then queues its load) sees every bar either in its copy or in the
/// store.
fn hand_over(shared: &Mutex<Recorded>, worker: &BarWorker) {
    let mut recorded = shared.lock();
    if recorded.pending.is_empty() {
        return;
    }
    let batch = std::mem::take(&mut recorded.pending);
    let count = batch.len();
    let queued = worker.try_save(batch);
    drop(recorded);
    match queued {
        Ok(()) => metrics::counter!("oa_bars_recorded_total").increment(count as u64),
        Err(reason) => {
            metrics::counter!("oa_bars_dropped_total").increment(count as u64);
            tracing::warn!(
                bars = count,
                ?reason,
                "the bar store is behind: dropped a batch of recorded bars"
            );
        }
    }
}
