//! OHLCV candles: the intervals OpenAlgo's `history` accepts, how a time falls into an
//! interval's bucket, bars built from trades, and 1-minute bars aggregated to any interval.
//!
//! Times are epoch seconds. Intraday buckets are aligned to the Indian session open
//! (09:15 IST), as brokers' minute bars are (a 30m bar starts at 09:15, 09:45, ...). A daily
//! bar is stamped with its Indian calendar date at 00:00 UTC, as OpenAlgo's broker adapters
//! stamp daily bars (the SDK shows it as that date without a time zone). A weekly bar is
//! stamped the same way with the Monday of its Indian week, a monthly bar with the 1st of
//! its Indian month, a quarterly bar with the 1st of January, April, July or October and a
//! yearly bar with the 1st of January (upstream database/historify_db.py
//! `_get_daily_aggregated_ohlcv`, `DATE_TRUNC('week' | 'month' | 'quarter' | 'year', ...)` on
//! the IST date, and broker/hdfcsky/api/data.py resampling daily bars with `W-MON` / `MS`,
//! `label="left"`, `closed="left"`).
//!
//! 1-minute bars nest in every other interval's buckets and days nest in weeks, months,
//! quarters and years, so
//! aggregating stored 1-minute (or daily) bars gives exactly the bars that would have been
//! built from the trades directly (property tests below check it).

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
    /// `N` minutes (1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180 or 240; `1h` is 60 minutes).
    Minutes(u32),
    /// One Indian trading day.
    Day,
    /// One Indian week, Monday to Sunday (`W`).
    Week,
    /// One Indian calendar month (`M`).
    Month,
    /// One Indian calendar quarter, from January, April, July or October (`Q`).
    Quarter,
    /// One Indian calendar year (`Y`).
    Year,
}

impl Interval {
    /// Every interval, with its OpenAlgo name, in the order `intervals` lists them: the
    /// minute, hour and longer intervals of upstream's `HistorySchema`
    /// (restx_api/data_schemas.py), and `60m`. Its seconds intervals are not served: oa
    /// records 1-minute bars.
    pub const ALL: &'static [(&'static str, Interval)] = &[
        ("1m", Interval::Minutes(1)),
        ("2m", Interval::Minutes(2)),
        ("3m", Interval::Minutes(3)),
        ("5m", Interval::Minutes(5)),
        ("10m", Interval::Minutes(10)),
        ("15m", Interval::Minutes(15)),
        ("20m", Interval::Minutes(20)),
        ("30m", Interval::Minutes(30)),
        ("60m", Interval::Minutes(60)),
        ("1h", Interval::Minutes(60)),
        ("2h", Interval::Minutes(120)),
        ("3h", Interval::Minutes(180)),
        ("4h", Interval::Minutes(240)),
        ("D", Interval::Day),
        ("W", Interval::Week),
        ("M", Interval::Month),
        ("Q", Interval::Quarter),
        ("Y", Interval::Year),
    ];

    /// Parses an OpenAlgo interval name (`1m`, `5m`, `1h`, `D`, `W`, `M`, ...; case-sensitive
    /// as upstream).
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

    /// True for the intervals made of whole days (`W`, `M`, `Q`, `Y`): their bars are the
    /// daily bars aggregated, as upstream resamples daily candles.
    pub fn is_built_from_days(self) -> bool {
        matches!(
            self,
            Interval::Week | Interval::Month | Interval::Quarter | Interval::Year
        )
    }

    /// The start of the bucket that `time` (epoch seconds) falls in.
    pub fn bucket_start(self, time: i64) -> i64 {
        match self {
            Interval::Minutes(minutes) => {
                let length = i64::from(minutes) * 60;
                SESSION_ANCHOR_SECONDS + (time - SESSION_ANCHOR_SECONDS).div_euclid(length) * length
            }
            Interval::Day => ist_day_number(time) * SECONDS_PER_DAY,
            Interval::Week => {
                let day = ist_day_number(time);
                // Day 0 (1970-01-01) was a Thursday, 3 days after a Monday.
                (day - (day + 3).rem_euclid(7)) * SECONDS_PER_DAY
            }
            Interval::Month | Interval::Quarter | Interval::Year => {
                let date = CivilDate::from_day_number(ist_day_number(time));
                let first_month = match self {
                    Interval::Quarter => (date.month - 1) / 3 * 3 + 1,
                    Interval::Year => 1,
                    _ => date.month,
                };
                CivilDate {
                    year: date.year,
                    month: first_month,
                    day: 1,
                }
                .day_number()
                    * SECONDS_PER_DAY
            }
        }
    }
}

/// The Indian calendar date of `time` (epoch seconds), as days since 1970-01-01.
fn ist_day_number(time: i64) -> i64 {
    (time + IST_OFFSET_SECONDS).div_euclid(SECONDS_PER_DAY)
}

/// A proleptic Gregorian date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilDate {
    year: i64,
    /// 1..=12.
    month: i64,
    /// 1..=31.
    day: i64,
}

impl CivilDate {
    /// The date `day` days after 1970-01-01 (Howard Hinnant's `civil_from_days`; total over
    /// every day number whose year fits an `i64`).
    fn from_day_number(day: i64) -> CivilDate {
        // Days since 0000-03-01, in 400-year eras of 146,097 days.
        let shifted = day + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        // Months from March: 153 days per 5 months.
        let month_from_march = (5 * day_of_year + 2) / 153;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        CivilDate {
            year: year_of_era + era * 400 + i64::from(month <= 2),
            month,
            day: day_of_year - (153 * month_from_march + 2) / 5 + 1,
        }
    }

    /// Days from 1970-01-01 to this date (Howard Hinnant's `days_from_civil`).
    fn day_number(self) -> i64 {
        let year = self.year - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year.rem_euclid(400);
        let month_from_march = (self.month + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + self.day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }
}

impl fmt::Display for Interval {
    /// The interval's first name in [`Interval::ALL`] (`60m` for an hour).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Interval::ALL.iter().find(|(_, interval)| interval == self) {
            Some((name, _)) => f.write_str(name),
            None => match self {
                Interval::Minutes(minutes) => write!(f, "{minutes}m"),
                _ => write!(f, "{self:?}"),
            },
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

    /// Adds a later trade of the same bucket (as a bar of that one trade).
    pub fn add(&mut self, trade: &Trade) {
        self.merge(&Bar::opened_by(self.time, trade));
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
    into_buckets(
        trades.iter().map(|trade| Bar::opened_by(trade.time, trade)),
        interval,
    )
}

/// Aggregates bars in time order (typically 1-minute bars) into `interval`'s buckets.
pub fn aggregate(bars: &[Bar], interval: Interval) -> Vec<Bar> {
    into_buckets(bars.iter().copied(), interval)
}

/// Merges bars in time order into one bar per bucket of `interval` that has any.
fn into_buckets(bars: impl IntoIterator<Item = Bar>, interval: Interval) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    for bar in bars {
        let bucket = interval.bucket_start(bar.time);
        match out.last_mut() {
            Some(current) if current.time == bucket => current.merge(&bar),
            _ => out.push(Bar {
                time: bucket,
                ..bar
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

    /// 00:00 UTC of a date: how daily, weekly and monthly bars are stamped.
    fn stamp(year: i32, month: u32, day: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map_or(i64::MIN, |time| time.and_utc().timestamp())
    }

    /// The first and the last second of an Indian date (00:00:00 and 23:59:59 IST).
    fn ist_day(year: i32, month: u32, day: u32) -> [i64; 2] {
        let midnight = stamp(year, month, day) - IST_OFFSET_SECONDS;
        [midnight, midnight + SECONDS_PER_DAY - 1]
    }

    /// A week is stamped with its Monday's date (upstream database/historify_db.py
    /// `DATE_TRUNC('week', ...)` on the IST date; broker/hdfcsky/api/data.py
    /// `resample("W-MON", label="left", closed="left")` labels [Monday, next Monday) with
    /// that Monday), from Monday 00:00 IST to Sunday 23:59:59 IST.
    #[test]
    fn a_week_is_labelled_by_its_monday_in_ist() {
        let week = Interval::Week;
        // 2026-11-30 is a Monday; 2026-12-06 a Sunday.
        for time in ist_day(2026, 11, 30)
            .into_iter()
            .chain(ist_day(2026, 12, 6))
        {
            assert_eq!(week.bucket_start(time), stamp(2026, 11, 30));
        }
        // Tuesday 2026-12-01 09:15 IST.
        assert_eq!(week.bucket_start(SESSION_OPEN), stamp(2026, 11, 30));
        // Sunday 2026-12-06 23:59:59 IST (above) is still that week and Monday 2026-12-07
        // 00:00 IST the next, although both are 2026-12-06 in UTC (18:29:59 and 18:30:00).
        assert_eq!(
            week.bucket_start(ist_day(2026, 12, 7)[0]),
            stamp(2026, 12, 7)
        );
        assert_eq!(
            week.bucket_start(ist_day(2026, 11, 29)[1]),
            stamp(2026, 11, 23)
        );
        // Epoch day 0 was a Thursday: its week starts on Monday 1969-12-29.
        assert_eq!(week.bucket_start(0), stamp(1969, 12, 29));
        assert_eq!(Interval::parse("W"), Some(week));
        assert_eq!(week.to_string(), "W");
        assert!(!week.is_intraday() && week.is_built_from_days());
    }

    /// A month is stamped with its 1st (upstream database/historify_db.py
    /// `DATE_TRUNC('month', ...)` on the IST date; broker/hdfcsky/api/data.py
    /// `resample("MS", label="left", closed="left")`).
    #[test]
    fn a_month_is_labelled_by_its_first_day_in_ist() {
        let month = Interval::Month;
        // (an Indian date, its first (0) or last (1) second, the month's stamp)
        let cases = [
            ((2026, 12, 1), 0, (2026, 12, 1)),
            ((2026, 12, 31), 1, (2026, 12, 1)),
            // 2026-12-01 00:00 IST is 2026-11-30 18:30 UTC: already December.
            ((2026, 11, 30), 1, (2026, 11, 1)),
            // Leap years: 2028-02-29 is February's; 2100 is not a leap year.
            ((2028, 2, 29), 1, (2028, 2, 1)),
            ((2028, 3, 1), 0, (2028, 3, 1)),
            ((2100, 2, 28), 1, (2100, 2, 1)),
            ((2100, 3, 1), 0, (2100, 3, 1)),
        ];
        for ((year, month_number, day), end, (y, m, d)) in cases {
            let time = ist_day(year, month_number, day)[end];
            assert_eq!(
                month.bucket_start(time),
                stamp(y, m, d),
                "{year}-{month_number}-{day}"
            );
        }
        assert_eq!(Interval::parse("M"), Some(month));
        assert_eq!(Interval::parse("m"), None);
        assert_eq!(month.to_string(), "M");
    }

    /// The civil-date arithmetic behind months, quarters and years agrees with chrono on
    /// every day over six centuries, both ways.
    #[test]
    fn civil_dates_agree_with_the_calendar_over_six_centuries() {
        let mut date = chrono::NaiveDate::from_ymd_opt(1700, 1, 1).unwrap();
        let last = chrono::NaiveDate::from_ymd_opt(2300, 12, 31).unwrap();
        while date <= last {
            let day = stamp(
                chrono::Datelike::year(&date),
                chrono::Datelike::month(&date),
                chrono::Datelike::day(&date),
            )
            .div_euclid(SECONDS_PER_DAY);
            let civil = CivilDate {
                year: i64::from(chrono::Datelike::year(&date)),
                month: i64::from(chrono::Datelike::month(&date)),
                day: i64::from(chrono::Datelike::day(&date)),
            };
            assert_eq!(CivilDate::from_day_number(day), civil, "{date}");
            assert_eq!(civil.day_number(), day, "{date}");
            date = date.succ_opt().unwrap();
        }
    }

    /// A quarter is stamped with the 1st of January, April, July or October and a year with
    /// the 1st of January (upstream database/historify_db.py `_get_daily_aggregated_ohlcv`:
    /// `DATE_TRUNC('quarter' | 'year', ...)` on the IST date).
    #[test]
    fn quarters_and_years_are_labelled_by_their_first_day_in_ist() {
        // (an Indian date, its first (0) or last (1) second, its quarter's and year's stamps)
        let cases = [
            ((2026, 1, 1), 0, (2026, 1, 1), (2026, 1, 1)),
            ((2026, 3, 31), 1, (2026, 1, 1), (2026, 1, 1)),
            ((2026, 4, 1), 0, (2026, 4, 1), (2026, 1, 1)),
            ((2026, 6, 30), 1, (2026, 4, 1), (2026, 1, 1)),
            ((2026, 7, 1), 0, (2026, 7, 1), (2026, 1, 1)),
            ((2026, 9, 30), 1, (2026, 7, 1), (2026, 1, 1)),
            ((2026, 10, 1), 0, (2026, 10, 1), (2026, 1, 1)),
            ((2026, 12, 31), 1, (2026, 10, 1), (2026, 1, 1)),
            // 2027-01-01 00:00 IST is 2026-12-31 18:30 UTC: already the new year.
            ((2027, 1, 1), 0, (2027, 1, 1), (2027, 1, 1)),
            ((2028, 2, 29), 1, (2028, 1, 1), (2028, 1, 1)),
        ];
        for ((year, month, day), end, quarter, first_of_year) in cases {
            let time = ist_day(year, month, day)[end];
            let (qy, qm, qd) = quarter;
            let (yy, ym, yd) = first_of_year;
            assert_eq!(
                Interval::Quarter.bucket_start(time),
                stamp(qy, qm, qd),
                "Q of {year}-{month}-{day}"
            );
            assert_eq!(
                Interval::Year.bucket_start(time),
                stamp(yy, ym, yd),
                "Y of {year}-{month}-{day}"
            );
        }
        for (name, interval) in [("Q", Interval::Quarter), ("Y", Interval::Year)] {
            assert_eq!(Interval::parse(name), Some(interval));
            assert_eq!(interval.to_string(), name);
            assert!(!interval.is_intraday() && interval.is_built_from_days());
        }
        assert_eq!(Interval::parse("q"), None);
        assert_eq!(Interval::parse("1Y"), None);
    }

    fn daily_bar(time: i64, price: f64, volume: f64) -> Bar {
        Bar {
            time,
            open: price,
            high: price + 2.0,
            low: price - 1.0,
            close: price + 0.5,
            volume,
            oi: volume / 10.0,
        }
    }

    /// The last week of 2026 (Monday 2026-12-28 to Sunday 2027-01-03) crosses a month end
    /// and a year end: one weekly bar stamped 2026-12-28, two monthly bars.
    #[test]
    fn a_week_spanning_a_month_and_year_end_is_one_weekly_bar() {
        let days = [
            daily_bar(stamp(2026, 12, 24), 100.0, 10.0),
            daily_bar(stamp(2026, 12, 28), 101.0, 20.0),
            daily_bar(stamp(2026, 12, 31), 99.0, 30.0),
            daily_bar(stamp(2027, 1, 1), 104.0, 40.0),
            daily_bar(stamp(2027, 1, 4), 98.0, 50.0),
        ];
        let bar = |time, open, high, low, close, volume, oi| Bar {
            time,
            open,
            high,
            low,
            close,
            volume,
            oi,
        };
        assert_eq!(
            aggregate(&days, Interval::Week),
            [
                bar(stamp(2026, 12, 21), 100.0, 102.0, 99.0, 100.5, 10.0, 1.0),
                bar(stamp(2026, 12, 28), 101.0, 106.0, 98.0, 104.5, 90.0, 4.0),
                bar(stamp(2027, 1, 4), 98.0, 100.0, 97.0, 98.5, 50.0, 5.0),
            ]
        );
        assert_eq!(
            aggregate(&days, Interval::Month),
            [
                bar(stamp(2026, 12, 1), 100.0, 103.0, 98.0, 99.5, 60.0, 3.0),
                bar(stamp(2027, 1, 1), 104.0, 106.0, 97.0, 98.5, 90.0, 5.0),
            ]
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
        // Upstream's HistorySchema (restx_api/data_schemas.py) also lists these.
        for (name, minutes) in [
            ("2m", 2),
            ("20m", 20),
            ("2h", 120),
            ("3h", 180),
            ("4h", 240),
        ] {
            assert_eq!(Interval::parse(name), Some(Interval::Minutes(minutes)));
            assert_eq!(Interval::Minutes(minutes).to_string(), name);
        }
        assert_eq!(Interval::Minutes(60).to_string(), "60m");
        // Seconds and upstream's `db`-only multiples are not served.
        for refused in ["1s", "45s", "1W", "2W", "3M", "1D"] {
            assert_eq!(Interval::parse(refused), None, "{refused}");
        }
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

    /// Up to 400 trades in time order from `first`, at most `longest_gap` seconds apart;
    /// integral quantities so that sums are exact in any order.
    fn trades(first: i64, longest_gap: i64) -> impl Strategy<Value = Vec<Trade>> {
        let step = (0..longest_gap, 1.0f64..2000.0, 0u32..500, 0u32..1000);
        prop::collection::vec(step, 1..400).prop_map(move |steps| {
            let mut time = first;
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
        })
    }

    proptest! {
        /// Bars aggregated from 1-minute bars equal bars computed directly from the trades,
        /// for every interval.
        #[test]
        fn aggregated_minute_bars_equal_bars_built_from_the_trades(
            // Up to three days of trades around the session.
            trades in trades(SESSION_OPEN - 4 * 3600, 600)
        ) {
            let minute_bars = bars_from_trades(&trades, Interval::Minutes(1));
            for (name, interval) in Interval::ALL {
                let direct = bars_from_trades(&trades, *interval);
                let aggregated = aggregate(&minute_bars, *interval);
                prop_assert_eq!(&aggregated, &direct, "interval {}", name);
            }
        }

        /// Weekly, monthly, quarterly and yearly bars aggregated from daily bars (as `history`
        /// serves them) equal the bars computed directly from the trades, and the daily bars
        /// aggregated from 1-minute bars give the same.
        #[test]
        fn weeks_and_months_from_daily_bars_equal_bars_built_from_the_trades(
            // Up to about two years of trades up to 4 days apart (weeks and months with gaps
            // and with a single trade), from Thursday 2026-12-17.
            trades in trades(SESSION_OPEN + 16 * 86_400, 4 * 86_400)
        ) {
            let daily = bars_from_trades(&trades, Interval::Day);
            let daily_from_minutes =
                aggregate(&bars_from_trades(&trades, Interval::Minutes(1)), Interval::Day);
            prop_assert_eq!(&daily_from_minutes, &daily);
            for interval in [Interval::Week, Interval::Month, Interval::Quarter, Interval::Year] {
                let direct = bars_from_trades(&trades, interval);
                prop_assert_eq!(&aggregate(&daily, interval), &direct, "interval {}", interval);
            }
        }
    }
}
