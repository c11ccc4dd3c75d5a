//! Candle history: 1-minute bars recorded from every tick the price cache sees (simulated,
//! replayed or external feeds), stored in the `bars` table in batches off the tick path,
//! pruned by retention, and aggregated to any interval on request (`history`, `ticker`).
//!
//! - [`worker`]: the thread that owns the bar store's connection;
//! - [`recorder`]: the task that turns ticks into bars and hands them to the worker;
//! - [`routes`]: the `history` and `ticker` endpoints, [`json`]: their JSON body.

mod json;
mod recorder;
pub(crate) mod routes;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use oa_marketdata_core::PriceSnapshot;
use oa_marketdata_core::candles::{Bar, InstrumentBar, Interval, aggregate};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::config::HistoryConfig;
use crate::store::{BarRange, BarTable, Database, StoreError};
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

    /// The candles of `interval` for one instrument from its 1-minute bars with
    /// `from <= time < until` (epoch seconds), oldest first, or `None` when they would take
    /// reading more than `limit` stored rows.
    ///
    /// `W` and `M` are the daily candles of the range aggregated, as upstream resamples the
    /// daily candles of start..end: a range starting mid-week or mid-month gives a first
    /// candle of the days inside it, stamped with its Monday or its 1st.
    pub(crate) async fn candles(
        &self,
        range: BarRange,
        interval: Interval,
        limit: usize,
    ) -> Result<Option<Vec<Bar>>, StoreError> {
        if !interval.is_built_from_days() {
            return self.candles_from_minutes(range, interval, limit).await;
        }
        let days = self
            .candles_from_minutes(range, Interval::Day, limit)
            .await?;
        Ok(days.map(|days| aggregate(&days, interval)))
    }

    /// The candles of an interval of at most a day ([`History::candles`]).
    ///
    /// `60m` and `D` read the store's hourly and daily rollups for the whole buckets inside
    /// the range, and 1-minute bars for the partial buckets at its ends and from the bucket of
    /// the oldest bar not yet stored on; other intervals aggregate the 1-minute bars. The
    /// 1-minute bars are read from the packs ([`BarTable::Packs`]: one row per hour). Bars not
    /// yet stored (the completed ones waiting for the next batch and the current minute's)
    /// are the recorder's, which replace stored bars of the same minute.
    async fn candles_from_minutes(
        &self,
        range: BarRange,
        interval: Interval,
        limit: usize,
    ) -> Result<Option<Vec<Bar>>, StoreError> {
        let recent = self.unstored_bars(&range);
        let table = BarTable::for_interval(interval);
        // Whole rollup rows from the first bucket starting in the range up to the bucket of
        // the oldest unstored bar (or the range's end).
        let oldest_unstored = recent.first().map_or(range.until, |bar| bar.time);
        let mut rollups_from = table.bucket_first_minute(range.from);
        if rollups_from < range.from {
            rollups_from += table.bucket_seconds();
        }
        let rollups_until = table.bucket_first_minute(oldest_unstored.min(range.until));
        // The 1-minute bars come from the packs (one row per hour), which hold the same bars
        // as the `bars` rows; the recorder's bars, unstored, are merged in by minute below.
        let reads = if table != BarTable::Minutes && rollups_from < rollups_until {
            vec![
                (BarTable::Packs, range.with_times(range.from, rollups_from)),
                (
                    table,
                    range.with_times(table.stamp(rollups_from), table.stamp(rollups_until)),
                ),
                (
                    BarTable::Packs,
                    range.with_times(rollups_until, range.until),
                ),
            ]
        } else {
            vec![(BarTable::Packs, range.clone())]
        };
        let Some(mut loaded) = self.worker.load(reads, limit).await? else {
            return Ok(None);
        };
        // The last read holds the newest minutes: the recorder's bars go there.
        let mut minutes = loaded.pop().unwrap_or_default();
        for bar in recent {
            match minutes.binary_search_by_key(&bar.time, |stored| stored.time) {
                Ok(index) => minutes[index] = bar,
                Err(index) => minutes.insert(index, bar),
            }
        }
        let one_minute = Interval::Minutes(1);
        if interval == one_minute
            && loaded.is_empty()
            && minutes
                .iter()
                .all(|bar| one_minute.bucket_start(bar.time) == bar.time)
        {
            // Stored minutes are unique and in order: they are the 1-minute candles (a
            // year of them is 94,000 bars; copying them again showed in the benchmark).
            return Ok(Some(minutes));
        }
        let mut candles = Vec::new();
        let mut pieces = loaded.into_iter();
        if let (Some(head), Some(rollups)) = (pieces.next(), pieces.next()) {
            candles.extend(aggregate(&head, interval));
            candles.extend(rollups);
        }
        candles.extend(aggregate(&minutes, interval));
        Ok(Some(candles))
    }

    /// The recorder's bars of `range`'s instrument inside it that are not stored yet (the
    /// completed ones waiting for the next batch and the current minute's), oldest first.
    fn unstored_bars(&self, range: &BarRange) -> Vec<Bar> {
        let (exchange, symbol) = (range.exchange.as_str(), range.symbol.as_str());
        let Some(recording) = &self.recording else {
            return Vec::new();
        };
        let mut recorded = recording.shared.lock();
        // The ticks already in the price cache count, also those the task has not read yet.
        recorded.catch_up();
        let mut recent: Vec<Bar> = recorded
            .pending
            .iter()
            .filter(|item| item.exchange == exchange && item.symbol == symbol)
            .map(|item| item.bar)
            .chain(recorded.recorder.open_bar(exchange, symbol))
            .filter(|bar| range.holds(bar))
            .collect();
        recent.sort_by_key(|bar| bar.time);
        recent
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
