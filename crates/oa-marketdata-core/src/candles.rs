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

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
