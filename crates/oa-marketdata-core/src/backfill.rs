//! Simulated history: deterministic, plausible 1-minute bars for the trading sessions before
//! a simulated market starts, so that a strategy has data to compute indicators on from its
//! first minute.
//!
//! The path is a random walk generated backwards from the instrument's live starting price:
//! the last backfilled close is the price the simulated feed starts from, so history and
//! live ticks join without a jump. Sessions are 09:15 to 15:30 IST (375 bars) on weekdays;
//! the current day's session is filled up to the given time. The same seed, instrument and
//! time give the same bars.

use crate::candles::{Bar, IST_OFFSET_SECONDS, InstrumentBar, Interval};
use crate::symbols::{Instrument, round_to_tick};

/// Minutes in a session (09:15 to 15:30 IST).
pub const SESSION_MINUTES: i64 = 375;
/// 09:15 IST in seconds after an IST midnight.
const SESSION_OPEN_SECONDS: i64 = 9 * 3600 + 15 * 60;
const SECONDS_PER_DAY: i64 = 86_400;
/// Standard deviation of one minute's return (about 1.5 % a session).
const MINUTE_VOLATILITY: f64 = 0.0008;
/// Standard deviation of the overnight gap.
const GAP_VOLATILITY: f64 = 0.004;

/// SplitMix64: a small deterministic generator (stable across library versions).
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately standard normal (sum of 12 uniforms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// FNV-1a of the instrument's name, to give each instrument its own path from one seed.
fn name_hash(exchange: &str, symbol: &str) -> u64 {
    exchange
        .bytes()
        .chain([b':'])
        .chain(symbol.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The start (epoch seconds) of every session minute of the `trading_days` weekdays before
/// the Indian date of `now`, plus today's minutes that ended by `now`, oldest first.
pub fn session_minutes(trading_days: u32, now: i64) -> Vec<i64> {
    let today = (now + IST_OFFSET_SECONDS).div_euclid(SECONDS_PER_DAY);
    let mut days = Vec::new();
    let mut day = today - 1;
    while days.len() < trading_days as usize {
        // 1970-01-01 was a Thursday: day 0 -> weekday 3 (Monday = 0).
        if (day + 3).rem_euclid(7) < 5 {
            days.push(day);
        }
        day -= 1;
    }
    days.reverse();
    if (today + 3).rem_euclid(7) < 5 {
        days.push(today);
    }
    let current_minute = Interval::Minutes(1).bucket_start(now);
    days.iter()
        .flat_map(|day| {
            let open = day * SECONDS_PER_DAY - IST_OFFSET_SECONDS + SESSION_OPEN_SECONDS;
            (0..SESSION_MINUTES).map(move |minute| open + minute * 60)
        })
        .filter(|start| *start < current_minute)
        .collect()
}

/// 1-minute bars of `instrument` over `minutes` (from [`session_minutes`]) whose last close
/// is `end_price`. Indices trade no volume; others a few lots a minute, more at the open
/// and the close.
pub fn simulated_minute_bars(
    instrument: &Instrument,
    end_price: f64,
    minutes: &[i64],
    seed: u64,
) -> Vec<InstrumentBar> {
    let tick = if instrument.tick_size > 0.0 {
        instrument.tick_size
    } else {
        0.05
    };
    let lot = if instrument.lot_size > 0.0 {
        instrument.lot_size
    } else {
        1.0
    };
    let is_index = instrument.instrument_type.eq_ignore_ascii_case("INDEX");
    let mut random = SplitMix(seed ^ name_hash(&instrument.exchange, &instrument.symbol));
    // Closes, walked backwards from the live price.
    let mut closes = vec![0.0; minutes.len()];
    let mut price = end_price.max(tick);
    for index in (0..minutes.len()).rev() {
        closes[index] = price;
        let gap = index > 0 && minutes[index] - minutes[index - 1] > 60;
        let volatility = if gap {
            GAP_VOLATILITY
        } else {
            MINUTE_VOLATILITY
        };
        price = (price / (1.0 + volatility * random.normal())).max(tick);
    }
    let mut previous_close = price;
    minutes
        .iter()
        .zip(&closes)
        .map(|(time, close)| {
            let open = round_to_tick(previous_close, tick);
            let close = round_to_tick(*close, tick);
            previous_close = close;
            let wick = |random: &mut SplitMix| 1.0 + MINUTE_VOLATILITY * 0.5 * random.unit();
            let high = round_to_tick(open.max(close) * wick(&mut random), tick);
            let low = round_to_tick(open.min(close) / wick(&mut random), tick).max(tick);
            let minute_of_session =
                (time + IST_OFFSET_SECONDS - SESSION_OPEN_SECONDS).rem_euclid(SECONDS_PER_DAY) / 60;
            let edge = !(30..SESSION_MINUTES - 30).contains(&minute_of_session);
            let volume = if is_index {
                0.0
            } else {
                let lots = 1.0 + (random.unit() * if edge { 400.0 } else { 150.0 }).floor();
                lots * lot
            };
            InstrumentBar {
                exchange: instrument.exchange.clone(),
                symbol: instrument.symbol.clone(),
                bar: Bar {
                    time: *time,
                    open,
                    high,
                    low,
                    close,
                    volume,
                    oi: 0.0,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sbin() -> Instrument {
        Instrument {
            exchange: "NSE".into(),
            symbol: "SBIN".into(),
            name: "STATE BANK OF INDIA".into(),
            lot_size: 1.0,
            tick_size: 0.05,
            instrument_type: "EQ".into(),
            base_price: 812.5,
            contract: None,
        }
    }

    /// 2026-12-02 10:30:20 IST, a Wednesday.
    const NOW: i64 = 1_796_096_700 + 86_400 + 75 * 60 + 20;

    #[test]
    fn sessions_are_weekday_minutes_up_to_now() {
        let minutes = session_minutes(3, NOW);
        // Friday 27, Monday 30 November, Tuesday 1 December: 3 x 375, then 75 today.
        assert_eq!(minutes.len(), 3 * 375 + 75);
        let first_day_open = 1_796_096_700 - 4 * 86_400;
        assert_eq!(minutes[0], first_day_open);
        assert_eq!(minutes[375], 1_796_096_700 - 86_400);
        assert_eq!(*minutes.last().unwrap(), NOW - 20 - 60);
        assert!(minutes.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn the_walk_ends_at_the_live_price_and_is_deterministic() {
        let minutes = session_minutes(5, NOW);
        let bars = simulated_minute_bars(&sbin(), 812.5, &minutes, 42);
        assert_eq!(bars.len(), minutes.len());
        assert_eq!(bars.last().unwrap().bar.close, 812.5);
        assert_eq!(bars, simulated_minute_bars(&sbin(), 812.5, &minutes, 42));
        assert_ne!(bars, simulated_minute_bars(&sbin(), 812.5, &minutes, 43));
        for pair in bars.windows(2) {
            let (before, bar) = (&pair[0].bar, &pair[1].bar);
            assert_eq!(bar.open, before.close, "bars join");
            assert!(bar.low <= bar.open.min(bar.close) && bar.high >= bar.open.max(bar.close));
            assert!(bar.volume >= 1.0);
            // Plausible: no minute moves more than 2 %.
            assert!(
                (bar.close / before.close - 1.0).abs() < 0.02,
                "{before:?} {bar:?}"
            );
        }
        let first = bars[0].bar.close;
        assert!(first > 812.5 * 0.8 && first < 812.5 * 1.25, "{first}");
    }
}
