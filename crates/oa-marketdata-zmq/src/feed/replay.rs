//! Replays a recorded tick file onto the bus.
//!
//! Formats (chosen by extension: `.csv` is CSV, anything else JSON lines):
//!
//! - **JSON lines**: one bus payload per line, exactly as published on the bus, with
//!   `exchange`, `symbol` and `mode`; blank lines and lines starting with `#` are skipped.
//!   `{"ltp":812.5,"ltt":1769682645123,"timestamp":1769682645130,"symbol":"SBIN","exchange":"NSE","mode":1}`
//! - **CSV**: a header naming the columns, in any order. Required: `timestamp` (epoch ms),
//!   `exchange`, `symbol`, `ltp`. Optional: `mode` (LTP/QUOTE/DEPTH or 1/2/3, default LTP, or
//!   QUOTE when any quote column is present), `ltt`, `open`, `high`, `low`, `close`,
//!   `volume`, `average_price`, `total_buy_quantity`, `total_sell_quantity`,
//!   `last_quantity`, `oi`. CSV carries no book.
//!
//! Timing: the gap between two ticks' `timestamp` is replayed divided by `speed`
//! (1 = as recorded, 10 = ten times faster, 0 = as fast as possible). Published ticks keep
//! their `ltt` and get `timestamp` = now when `restamp` is on (the default), so latency
//! measurements downstream stay meaningful.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bus::{Publisher, PublisherOptions};
use crate::feed::{FeedError, FeedThread, ThreadedFeed};
use oa_marketdata_core::tick::{Quote, Tick, TickMode, now_ms};

/// Settings of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// The tick file.
    pub path: PathBuf,
    /// Speed factor: 1 = recorded pace, 0 = as fast as possible.
    pub speed: f64,
    /// Set `timestamp` to the publish time.
    pub restamp: bool,
    /// Start over at the end of the file.
    pub repeat: bool,
    /// Publisher send high-water mark.
    pub sndhwm: i32,
}

impl ReplayConfig {
    /// A replay of `path` at recorded speed, once.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ReplayConfig {
            path: path.into(),
            speed: 1.0,
            restamp: true,
            repeat: false,
            sndhwm: crate::bus::DEFAULT_HWM,
        }
    }
}

/// Reads a tick file in either documented format.
pub fn load_ticks(path: &Path) -> Result<Vec<Tick>, FeedError> {
    let text = std::fs::read_to_string(path).map_err(|source| FeedError::ReplayIo {
        path: path.to_path_buf(),
        source,
    })?;
    let is_csv = path
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("csv"));
    if is_csv {
        parse_csv(path, &text)
    } else {
        parse_json_lines(path, &text)
    }
}

fn line_error(path: &Path, line: usize, reason: impl Into<String>) -> FeedError {
    FeedError::ReplayLine {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn parse_json_lines(path: &Path, text: &str) -> Result<Vec<Tick>, FeedError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .map(|(number, line)| {
            Tick::from_json_slice(line.trim().as_bytes())
                .map_err(|error| line_error(path, number + 1, error.to_string()))
        })
        .collect()
}

const QUOTE_COLUMNS: [&str; 10] = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "average_price",
    "total_buy_quantity",
    "total_sell_quantity",
    "last_quantity",
    "oi",
];

fn parse_csv(path: &Path, text: &str) -> Result<Vec<Tick>, FeedError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let header: Vec<String> = header
        .split(',')
        .map(|column| column.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let required = |name: &'static str| {
        column(name).ok_or_else(|| {
            line_error(
                path,
                1,
                format!("header lacks the required column {name:?}"),
            )
        })
    };
    let timestamp_col = required("timestamp")?;
    let exchange_col = required("exchange")?;
    let symbol_col = required("symbol")?;
    let ltp_col = required("ltp")?;
    let mode_col = column("mode");
    let ltt_col = column("ltt");
    let quote_cols: Vec<Option<usize>> = QUOTE_COLUMNS.iter().map(|name| column(name)).collect();
    let has_quote = quote_cols.iter().any(Option::is_some);

    let mut ticks = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |col: Option<usize>| {
            col.and_then(|i| fields.get(i))
                .copied()
                .filter(|f| !f.is_empty())
        };
        let float = |name: &str, col: Option<usize>| -> Result<Option<f64>, FeedError> {
            match get(col) {
                None => Ok(None),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|value| value.is_finite())
                    .map(Some)
                    .ok_or_else(|| {
                        line_error(path, number, format!("{name} {text:?} is not a number"))
                    }),
            }
        };
        let timestamp = float("timestamp", Some(timestamp_col))?
            .ok_or_else(|| line_error(path, number, "timestamp is empty"))?
            as i64;
        let ltp =
            float("ltp", Some(ltp_col))?.ok_or_else(|| line_error(path, number, "ltp is empty"))?;
        let exchange = get(Some(exchange_col))
            .ok_or_else(|| line_error(path, number, "exchange is empty"))?
            .to_ascii_uppercase();
        let symbol = get(Some(symbol_col))
            .ok_or_else(|| line_error(path, number, "symbol is empty"))?
            .to_string();
        let mode = match get(mode_col) {
            Some(text) => text
                .parse::<TickMode>()
                .map_err(|error| line_error(path, number, error.to_string()))?,
            None if has_quote => TickMode::Quote,
            None => TickMode::Ltp,
        };
        let mut values = [0.0; 10];
        for (slot, (name, col)) in values.iter_mut().zip(QUOTE_COLUMNS.iter().zip(&quote_cols)) {
            *slot = float(name, *col)?.unwrap_or(0.0);
        }
        let ltt = float("ltt", ltt_col)?.map_or(timestamp, |value| value as i64);
        ticks.push(Tick {
            exchange,
            symbol,
            mode,
            ltp,
            ltt,
            timestamp,
            quote: (mode >= TickMode::Quote).then_some(Quote {
                open: values[0],
                high: values[1],
                low: values[2],
                close: values[3],
                volume: values[4],
                average_price: values[5],
                total_buy_quantity: values[6],
                total_sell_quantity: values[7],
                last_quantity: values[8],
                oi: values[9],
            }),
            depth: (mode >= TickMode::Depth).then(Default::default),
            extra: None,
        });
    }
    Ok(ticks)
}

/// The replay as a feed adapter.
#[derive(Debug)]
pub struct ReplayFeed {
    config: ReplayConfig,
    finished: Arc<AtomicBool>,
    thread: FeedThread,
}

impl ReplayFeed {
    /// A replay that is not started yet.
    pub fn new(config: ReplayConfig) -> Self {
        ReplayFeed {
            config,
            finished: Arc::new(AtomicBool::new(false)),
            thread: FeedThread::new("replay"),
        }
    }

    /// True once the whole file was played (never with `repeat`).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

impl ThreadedFeed for ReplayFeed {
    const NAME: &'static str = "replay";

    fn thread(&self) -> &FeedThread {
        &self.thread
    }

    fn spawn(&mut self, bus_endpoint: &str) -> Result<(), FeedError> {
        let ticks = load_ticks(&self.config.path)?;
        if ticks.is_empty() {
            return Err(FeedError::Empty(Self::NAME));
        }
        // Waiting for the connection keeps the first recorded ticks from being lost.
        let options = PublisherOptions {
            sndhwm: self.config.sndhwm,
            ..PublisherOptions::default()
        };
        let mut publisher =
            match Publisher::connect_and_wait(bus_endpoint, options, Duration::from_secs(2)) {
                Ok(publisher) => publisher,
                Err(crate::bus::BusError::ConnectTimeout { .. }) => {
                    Publisher::connect(bus_endpoint, options)?
                }
                Err(error) => return Err(error.into()),
            };
        let config = self.config.clone();
        let finished = Arc::clone(&self.finished);
        let count = ticks.len();
        self.thread
            .spawn("oa-feed-replay", move |stop, published| {
                loop {
                    let first = ticks.first().map_or(0, |tick| tick.timestamp);
                    let started = Instant::now();
                    for tick in &ticks {
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        if config.speed > 0.0 {
                            let offset_ms = (tick.timestamp - first).max(0) as f64 / config.speed;
                            let due = Duration::from_secs_f64(offset_ms / 1000.0);
                            // Sleep in short slices so stop stays responsive.
                            while let Some(wait) = due.checked_sub(started.elapsed()) {
                                if stop.load(Ordering::Acquire) {
                                    return;
                                }
                                std::thread::sleep(wait.min(Duration::from_millis(50)));
                            }
                        }
                        let result = if config.restamp {
                            let mut restamped = tick.clone();
                            restamped.timestamp = now_ms();
                            publisher.publish(&restamped)
                        } else {
                            publisher.publish(tick)
                        };
                        match result {
                            Ok(()) => {
                                published.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => tracing::warn!(%error, "replay could not publish a tick"),
                        }
                    }
                    if !config.repeat {
                        break;
                    }
                }
                finished.store(true, Ordering::Release);
                tracing::info!("replay finished");
            })?;
        tracing::info!(path = %self.config.path.display(), ticks = count, speed = self.config.speed, "replay started");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_and_csv_parse_with_line_numbers_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        // Writes `text` to the file `name` and loads it.
        let load = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            load_ticks(&path)
        };
        let ticks = load(
            "ticks.jsonl",
            "# recorded\n{\"ltp\":1.5,\"timestamp\":1000,\"symbol\":\"SBIN\",\"exchange\":\"NSE\",\"mode\":1}\n\n{\"ltp\":2,\"timestamp\":1100,\"symbol\":\"SBIN\",\"exchange\":\"NSE\",\"mode\":\"QUOTE\",\"open\":1}\n",
        )
        .unwrap();
        assert_eq!(ticks.len(), 2);
        assert_eq!(ticks[1].quote.unwrap().open, 1.0);

        let ticks = load(
            "ticks.csv",
            "timestamp,exchange,symbol,ltp,volume\n1000,nse,SBIN,812.5,100\n1200,NSE_INDEX,NIFTY,24350,\n",
        )
        .unwrap();
        assert_eq!(ticks.len(), 2);
        assert_eq!(ticks[0].exchange, "NSE");
        assert_eq!(ticks[0].mode, TickMode::Quote);
        assert_eq!(ticks[0].quote.unwrap().volume, 100.0);
        assert_eq!(ticks[1].ltt, 1200);

        let csv = "timestamp,exchange,symbol,ltp\n1000,NSE,SBIN,abc\n";
        let error = load("ticks.csv", csv).unwrap_err().to_string();
        assert!(error.contains("line 2") && error.contains("ltp"), "{error}");
        let error = load("ticks.jsonl", "{\"ltp\":1}\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 1"), "{error}");
    }
}
