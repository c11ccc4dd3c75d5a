//! OHLCV candles: the intervals OpenAlgo's `history` accepts, how a time falls into an
//! interval's bucket, bars built from trades, and 1-minute bars aggregated to any interval.
//!
//! Times are epoch seconds. Intraday buckets are aligned to the Indian session open
//! (09:15 IST), as brokers' minute bars are (a 30m bar starts at 09:15, 09:45, ...). A daily
//! bar is stamped with its Indian calendar date at 00:00 UTC, as OpenAlgo's broker adapters
//! stamp daily bars (the SDK shows it as that date without a time zone).
//!
//! 1-minute bars nest in every other interval's buckets, so aggregating stored 1-minute bars
//! gives exactly the bars that would have been built from the trades directly (a property
//! test below checks it).

use std::collections::HashMap;
use std::fmt;

use crate::price_cache::PriceSnapshot;

/// India Standard Time: UTC+05:30, no daylight saving.
pub const IST_OFFSET_SECONDS: i64 = 5 * 3600 + 30 * 60;

/// 09:15 IST (03:45 UTC) as seconds after a UTC midnight: the anchor of intraday buckets.
const SESSION_ANCHOR_SECONDS: i64 = 3 * 3600 + 45 * 60;

const SECONDS_PER_DAY: i64 = 86_400;

/// A candle length that `history` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interval {
    /// `N` minutes (1, 3, 5, 10, 15, 30 or 60; `1h` is 60 minutes).
    Minutes(u32),
    /// One Indian trading day.
    Day,
}

impl Interval {
    /// Every interval, with its OpenAlgo name, in the order `intervals` lists them.
    pub const ALL: &'static [(&'static str, Interval)] = &[
        ("1m", Interval::Minutes(1)),
        ("3m", Interval::Minutes(3)),
        ("5m", Interval::Minutes(5)),
        ("10m", Interval::Minutes(10)),
        ("15m", Interval::Minutes(15)),
        ("30m", Interval::Minutes(30)),
        ("60m", Interval::Minutes(60)),
        ("1h", Interval::Minutes(60)),
        ("D", Interval::Day),
    ];

    /// Parses an OpenAlgo interval name (`1m`, `5m`, `1h`, `D`, ...; case-sensitive as upstream).
    pub fn parse(name: &str) -> Option<Interval> {
        Interval::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, interval)| *interval)
    }

    /// The names of every interval, for error messages.
    pub fn names() -> Vec<&'static str> {
        Interval::ALL.iter().map(|(name, _)| *name).collect()
    }

    /// True for intraday intervals (the SDK converts their timestamps to IST).
    pub fn is_intraday(self) -> bool {
        matches!(self, Interval::Minutes(_))
    }

    /// The start of the bucket that `time` (epoch seconds) falls in.
    pub fn bucket_start(self, time: i64) -> i64 {
        match self {
            Interval::Minutes(minutes) => {
                let length = i64::from(minutes) * 60;
                SESSION_ANCHOR_SECONDS + (time - SESSION_ANCHOR_SECONDS).div_euclid(length) * length
            }
            Interval::Day => {
                (time + IST_OFFSET_SECONDS).div_euclid(SECONDS_PER_DAY) * SECONDS_PER_DAY
            }
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interval::Minutes(minutes) => write!(f, "{minutes}m"),
            Interval::Day => f.write_str("D"),
        }
    }
}

/// One candle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Start of the bucket, epoch seconds (see the module documentation for daily bars).
    pub time: i64,
    /// First trade price.
    pub open: f64,
    /// Highest trade price.
    pub high: f64,
    /// Lowest trade price.
    pub low: f64,
    /// Last trade price.
    pub close: f64,
    /// Quantity traded in the bucket.
    pub volume: f64,
    /// Open interest at the last trade (0 for cash instruments).
    pub oi: f64,
}

impl Bar {
    /// A bar opened by one trade.
    pub fn opened_by(time: i64, trade: &Trade) -> Bar {
        Bar {
            time,
            open: trade.price,
            high: trade.price,
            low: trade.price,
            close: trade.price,
            volume: trade.quantity,
            oi: trade.oi,
        }
    }

    /// Adds a later trade of the same bucket.
    pub fn add(&mut self, trade: &Trade) {
        self.high = self.high.max(trade.price);
        self.low = self.low.min(trade.price);
        self.close = trade.price;
        self.volume += trade.quantity;
        self.oi = trade.oi;
    }

    /// Adds a later bar that falls in the same (larger) bucket.
    pub fn merge(&mut self, later: &Bar) {
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.volume += later.volume;
        self.oi = later.oi;
    }
}

/// One trade as bars see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trade {
    /// Epoch seconds (fractions are truncated into the bucket).
    pub time: i64,
    /// Trade price (the tick's LTP).
    pub price: f64,
    /// Quantity traded since the previous tick of the instrument (0 when unknown).
    pub quantity: f64,
    /// Open interest after the trade.
    pub oi: f64,
}

/// Bars of `interval` from trades in time order (one bar per bucket that has trades).
pub fn bars_from_trades(trades: &[Trade], interval: Interval) -> Vec<Bar> {
    let mut bars: Vec<Bar> = Vec::new();
    for trade in trades {
        let bucket = interval.bucket_start(trade.time);
        match bars.last_mut() {
            Some(bar) if bar.time == bucket => bar.add(trade),
            _ => bars.push(Bar::opened_by(bucket, trade)),
        }
    }
    bars
}

/// Aggregates bars in time order (typically 1-minute bars) into `interval`'s buckets.
pub fn aggregate(bars: &[Bar], interval: Interval) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    for bar in bars {
        let bucket = interval.bucket_start(bar.time);
        match out.last_mut() {
            Some(current) if current.time == bucket => current.merge(bar),
            _ => out.push(Bar {
                time: bucket,
                ..*bar
            }),
        }
    }
    out
}

/// Builds 1-minute bars per instrument from price-cache snapshots (ticks), off the tick path:
/// the caller feeds it from the cache's update stream and stores the bars it completes.
///
/// The tick's `volume` is the day's cumulative volume; a bar's volume is the increase over the
/// previous tick of the instrument (a decrease, a new day, counts the new total).
#[derive(Debug, Default)]
pub struct MinuteBarRecorder {
    /// Exchange -> symbol -> the bar being built (looked up by `&str`: no allocation per tick).
    open: HashMap<String, HashMap<String, OpenBar>>,
}

#[derive(Debug, Clone, Copy)]
struct OpenBar {
    bar: Bar,
    cumulative_volume: f64,
}

/// A completed bar of one instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentBar {
    /// Exchange code.
    pub exchange: String,
    /// Symbol.
    pub symbol: String,
    /// The 1-minute bar.
    pub bar: Bar,
}

impl MinuteBarRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        MinuteBarRecorder::default()
    }

    /// Records one tick; returns the instrument's previous bar when this tick starts a new
    /// minute. Ticks without a usable price, or older than the open bar, are ignored.
    pub fn record(&mut self, snapshot: &PriceSnapshot) -> Option<InstrumentBar> {
        if !snapshot.ltp.is_finite() || snapshot.ltp <= 0.0 {
            return None;
        }
        let time = snapshot.updated_at_ms.div_euclid(1000);
        let minute = Interval::Minutes(1).bucket_start(time);
        let cumulative = if snapshot.volume.is_finite() {
            snapshot.volume.max(0.0)
        } else {
            0.0
        };
        let existing = self
            .open
            .get_mut(snapshot.exchange.as_str())
            .and_then(|symbols| symbols.get_mut(snapshot.symbol.as_str()));
        let Some(open) = existing else {
            let trade = Trade {
                time,
                price: snapshot.ltp,
                quantity: 0.0,
                oi: snapshot.oi,
            };
            self.open
                .entry(snapshot.exchange.clone())
                .or_default()
                .insert(
                    snapshot.symbol.clone(),
                    OpenBar {
                        bar: Bar::opened_by(minute, &trade),
                        cumulative_volume: cumulative,
                    },
                );
            return None;
        };
        if minute < open.bar.time {
            return None;
        }
        let quantity = if cumulative >= open.cumulative_volume {
            cumulative - open.cumulative_volume
        } else {
            cumulative
        };
        open.cumulative_volume = cumulative;
        let trade = Trade {
            time,
            price: snapshot.ltp,
            quantity,
            oi: snapshot.oi,
        };
        if minute == open.bar.time {
            open.bar.add(&trade);
            return None;
        }
        let completed = std::mem::replace(&mut open.bar, Bar::opened_by(minute, &trade));
        Some(InstrumentBar {
            exchange: snapshot.exchange.clone(),
            symbol: snapshot.symbol.clone(),
            bar: completed,
        })
    }

    /// The bar still being built for an instrument (the current minute).
    pub fn open_bar(&self, exchange: &str, symbol: &str) -> Option<Bar> {
        self.open
            .get(exchange)
            .and_then(|symbols| symbols.get(symbol))
            .map(|open| open.bar)
    }

    /// Every bar still being built (to store them at shutdown).
    pub fn open_bars(&self) -> Vec<InstrumentBar> {
        self.open
            .iter()
            .flat_map(|(exchange, symbols)| {
                symbols.iter().map(move |(symbol, open)| InstrumentBar {
                    exchange: exchange.clone(),
                    symbol: symbol.clone(),
                    bar: open.bar,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snapshot(time_ms: i64, ltp: f64, volume: f64) -> PriceSnapshot {
        PriceSnapshot {
            exchange: "NSE".into(),
            symbol: "SBIN".into(),
            ltp,
            volume,
            oi: 0.0,
            updated_at_ms: time_ms,
            ..PriceSnapshot::default()
        }
    }

    #[test]
    fn the_recorder_completes_a_bar_when_a_new_minute_starts() {
        let mut recorder = MinuteBarRecorder::new();
        let t = SESSION_OPEN * 1000;
        assert_eq!(recorder.record(&snapshot(t + 1_000, 100.0, 1_000.0)), None);
        assert_eq!(recorder.record(&snapshot(t + 30_000, 104.0, 1_010.0)), None);
        assert_eq!(recorder.record(&snapshot(t + 50_000, 99.0, 1_025.0)), None);
        // An older tick (out of order) is ignored.
        assert_eq!(recorder.record(&snapshot(t - 61_000, 1.0, 0.0)), None);
        let completed = recorder
            .record(&snapshot(t + 61_000, 101.0, 1_030.0))
            .unwrap();
        assert_eq!(
            (completed.exchange.as_str(), completed.symbol.as_str()),
            ("NSE", "SBIN")
        );
        assert_eq!(
            completed.bar,
            Bar {
                time: SESSION_OPEN,
                open: 100.0,
                high: 104.0,
                low: 99.0,
                close: 99.0,
                volume: 25.0,
                oi: 0.0
            }
        );
        let open = recorder.open_bar("NSE", "SBIN").unwrap();
        assert_eq!(
            (open.time, open.open, open.volume),
            (SESSION_OPEN + 60, 101.0, 5.0)
        );
        assert_eq!(recorder.open_bars().len(), 1);
    }

    /// 2026-12-01 09:15:00 IST.
    const SESSION_OPEN: i64 = 1_796_096_700;

    #[test]
    fn intraday_buckets_start_at_the_session_open_and_days_at_the_ist_date() {
        let thirty = Interval::Minutes(30);
        assert_eq!(thirty.bucket_start(SESSION_OPEN), SESSION_OPEN);
        assert_eq!(
            thirty.bucket_start(SESSION_OPEN + 29 * 60 + 59),
            SESSION_OPEN
        );
        assert_eq!(
            thirty.bucket_start(SESSION_OPEN + 30 * 60),
            SESSION_OPEN + 1800
        );
        assert_eq!(
            Interval::Minutes(60).bucket_start(SESSION_OPEN + 3599),
            SESSION_OPEN
        );
        // 2026-12-01 00:00 UTC, for every time of the Indian date 2026-12-01.
        let date = 1_796_083_200;
        let ist_midnight = date - IST_OFFSET_SECONDS;
        assert_eq!(Interval::Day.bucket_start(SESSION_OPEN), date);
        assert_eq!(Interval::Day.bucket_start(ist_midnight), date);
        assert_eq!(
            Interval::Day.bucket_start(ist_midnight - 1),
            date - SECONDS_PER_DAY
        );
        assert_eq!(
            Interval::Day.bucket_start(ist_midnight + SECONDS_PER_DAY - 1),
            date
        );
    }

    #[test]
    fn interval_names_are_upstreams() {
        assert_eq!(Interval::parse("1h"), Some(Interval::Minutes(60)));
        assert_eq!(Interval::parse("D"), Some(Interval::Day));
        assert_eq!(Interval::parse("5m"), Some(Interval::Minutes(5)));
        assert_eq!(Interval::parse("d"), None);
        assert_eq!(Interval::parse("7m"), None);
        assert_eq!(Interval::Minutes(15).to_string(), "15m");
    }

    #[test]
    fn bars_take_open_high_low_close_volume_and_the_last_oi() {
        let trades = [
            Trade {
                time: SESSION_OPEN + 1,
                price: 100.0,
                quantity: 5.0,
                oi: 10.0,
            },
            Trade {
                time: SESSION_OPEN + 20,
                price: 103.0,
                quantity: 1.0,
                oi: 11.0,
            },
            Trade {
                time: SESSION_OPEN + 40,
                price: 99.5,
                quantity: 2.0,
                oi: 12.0,
            },
            Trade {
                time: SESSION_OPEN + 59,
                price: 101.0,
                quantity: 3.0,
                oi: 13.0,
            },
            Trade {
                time: SESSION_OPEN + 60,
                price: 102.0,
                quantity: 4.0,
                oi: 14.0,
            },
        ];
        let bars = bars_from_trades(&trades, Interval::Minutes(1));
        assert_eq!(
            bars,
            [
                Bar {
                    time: SESSION_OPEN,
                    open: 100.0,
                    high: 103.0,
                    low: 99.5,
                    close: 101.0,
                    volume: 11.0,
                    oi: 13.0
                },
                Bar {
                    time: SESSION_OPEN + 60,
                    open: 102.0,
                    high: 102.0,
                    low: 102.0,
                    close: 102.0,
                    volume: 4.0,
                    oi: 14.0
                },
            ]
        );
    }

    fn trades() -> impl Strategy<Value = Vec<Trade>> {
        // Up to three days of trades around the session, in time order; integral quantities
        // so that sums are exact in any order.
        prop::collection::vec((0i64..600, 1.0f64..2000.0, 0u32..500, 0u32..1000), 1..400).prop_map(
            |steps| {
                let mut time = SESSION_OPEN - 4 * 3600;
                steps
                    .into_iter()
                    .map(|(gap, price, quantity, oi)| {
                        time += gap;
                        Trade {
                            time,
                            price,
                            quantity: f64::from(quantity),
                            oi: f64::from(oi),
                        }
                    })
                    .collect()
            },
        )
    }

    proptest! {
        /// Bars aggregated from 1-minute bars equal bars computed directly from the trades,
        /// for every interval.
        #[test]
        fn aggregated_minute_bars_equal_bars_built_from_the_trades(trades in trades()) {
            let minute_bars = bars_from_trades(&trades, Interval::Minutes(1));
            for (name, interval) in Interval::ALL {
                let direct = bars_from_trades(&trades, *interval);
                let aggregated = aggregate(&minute_bars, *interval);
                prop_assert_eq!(&aggregated, &direct, "interval {}", name);
            }
        }
    }
}
