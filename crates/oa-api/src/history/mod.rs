//! Candle history: 1-minute bars recorded from every tick the price cache sees (simulated,
//! replayed or external feeds), stored in the `bars` table in batches off the tick path,
//! pruned by retention, and aggregated to any interval on request (`history`, `ticker`).
//!
//! - [`worker`]: the thread that owns the bar store's connection;
//! - [`recorder`]: the task that turns ticks into bars and hands them to the worker;
//! - [`routes`]: the `history` and `ticker` endpoints.

mod recorder;
pub(crate) mod routes;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use oa_marketdata_core::PriceSnapshot;
use oa_marketdata_core::candles::{Bar, InstrumentBar};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::config::HistoryConfig;
use crate::store::{BarRange, Database, StoreError};
use recorder::Recording;
use worker::BarWorker;

const SECONDS_PER_DAY: i64 = 86_400;

/// How often bars older than the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The bar store, its recorder (when recording is on) and its pruning.
#[derive(Debug)]
pub(crate) struct History {
    worker: BarWorker,
    recording: Option<Recording>,
    pruning: Option<JoinHandle<()>>,
}

impl History {
    /// Starts the worker on `database`, the recorder on `updates` (when given and
    /// recording is on) and hourly pruning (when a retention is set).
    pub(crate) fn start(
        database: Box<dyn Database>,
        updates: Option<broadcast::Receiver<Arc<PriceSnapshot>>>,
        config: &HistoryConfig,
    ) -> Result<History, StoreError> {
        let worker = BarWorker::start(database)?;
        let recording = match updates {
            Some(updates) if config.recording => Some(Recording::start(updates, worker.clone())),
            _ => None,
        };
        let pruning = (config.retention_days > 0).then(|| {
            let worker = worker.clone();
            let keep = i64::from(config.retention_days) * SECONDS_PER_DAY;
            tokio::spawn(async move {
                let mut every = tokio::time::interval(PRUNE_EVERY);
                loop {
                    every.tick().await;
                    let before = now_seconds() - keep;
                    match worker.prune(before).await {
                        Ok(0) => {}
                        Ok(deleted) => tracing::info!(deleted, "pruned bars past the retention"),
                        Err(StoreError::Closed) => break,
                        Err(error) => tracing::warn!(%error, "could not prune old bars"),
                    }
                }
            })
        });
        Ok(History {
            worker,
            recording,
            pruning,
        })
    }

    /// True while ticks are being recorded.
    pub(crate) fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// The 1-minute bars of one instrument with `from <= time < until` (epoch seconds),
    /// oldest first: the stored ones, the completed ones not yet stored and the bar of the
    /// current minute.
    pub(crate) async fn minute_bars(&self, range: BarRange) -> Result<Vec<Bar>, StoreError> {
        let (exchange, symbol) = (range.exchange.as_str(), range.symbol.as_str());
        let mut recent: Vec<Bar> = match &self.recording {
            Some(recording) => {
                let recorded = recording.shared.lock();
                recorded
                    .pending
                    .iter()
                    .filter(|item| item.exchange == exchange && item.symbol == symbol)
                    .map(|item| item.bar)
                    .chain(recorded.recorder.open_bar(exchange, symbol))
                    .filter(|bar| range.holds(bar))
                    .collect()
            }
            None => Vec::new(),
        };
        let mut bars = self.worker.load(range.clone()).await?;
        recent.sort_by_key(|bar| bar.time);
        for bar in recent {
            // The recorder's copy is the newest: it replaces a stored bar of its minute.
            match bars.binary_search_by_key(&bar.time, |stored| stored.time) {
                Ok(index) => bars[index] = bar,
                Err(index) => bars.insert(index, bar),
            }
        }
        Ok(bars)
    }

    /// Stores bars made elsewhere (the simulated feed's backfill), keeping any bar already
    /// stored for the same minute; returns how many were written.
    pub(crate) async fn backfill(&self, bars: Vec<InstrumentBar>) -> Result<usize, StoreError> {
        self.worker.save(bars, false).await
    }

    /// Deletes the bars that start before `before` (epoch seconds); returns how many.
    pub(crate) async fn prune_before(&self, before: i64) -> Result<usize, StoreError> {
        self.worker.prune(before).await
    }

    /// Stops recording and stores what it had not stored yet (the current minute's bars
    /// included); returns how many bars that was.
    pub(crate) async fn stop(&self) -> Result<usize, StoreError> {
        if let Some(pruning) = &self.pruning {
            pruning.abort();
        }
        let Some(recording) = &self.recording else {
            return Ok(0);
        };
        let bars = recording.stop().await;
        if bars.is_empty() {
            return Ok(0);
        }
        self.worker.save(bars, true).await
    }
}

/// The current time in epoch seconds.
pub(crate) fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}
