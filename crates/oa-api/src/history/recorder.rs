//! The bar recorder: a task that reads the price cache's update stream, builds 1-minute bars
//! ([`MinuteBarRecorder`]) and hands completed bars to the [`BarWorker`] in batches (every
//! [`FLUSH_INTERVAL`] or [`BATCH_SIZE`] bars).
//!
//! The tick path (the price cache's update) only sends on a broadcast channel and never
//! waits for this task; if the task falls behind by more than the channel's capacity it
//! skips the ticks it missed (counted in `oa_bars_lagged_ticks_total`) and goes on.

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

/// What the recorder task and the `history` reads share: the bars being built and the
/// completed bars not yet handed to the store.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub(crate) recorder: MinuteBarRecorder,
    pub(crate) pending: Vec<InstrumentBar>,
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
        mut updates: broadcast::Receiver<Arc<PriceSnapshot>>,
        worker: BarWorker,
    ) -> Recording {
        let shared = Arc::new(Mutex::new(Recorded::default()));
        let stop = Arc::new(Notify::new());
        let task = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut flush = tokio::time::interval(FLUSH_INTERVAL);
                flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        update = updates.recv() => match update {
                            Ok(snapshot) => {
                                let full = {
                                    let mut recorded = shared.lock();
                                    if let Some(bar) = recorded.recorder.record(&snapshot) {
                                        recorded.pending.push(bar);
                                    }
                                    recorded.pending.len() >= BATCH_SIZE
                                };
                                if full {
                                    hand_over(&shared, &worker);
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(missed)) => {
                                metrics::counter!("oa_bars_lagged_ticks_total").increment(missed);
                                tracing::debug!(missed, "bar recorder fell behind the tick stream");
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        },
                        _ = flush.tick() => hand_over(&shared, &worker),
                        () = stop.notified() => break,
                    }
                }
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
