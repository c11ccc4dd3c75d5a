//! Packed hours of 1-minute bars (table `bars_packed`): one row per instrument and hour whose
//! `data` BLOB holds every 1-minute bar stored for that hour, so that `history` over a year
//! of minutes reads about 1,800 rows instead of 94,000.
//!
//! A pack's hour is a `60m` bucket ([`BarTable::Hours`], aligned to 09:15 IST); its row's
//! `time` is the hour's first second. The store rewrites the packs of the hours each write
//! of 1-minute bars touches, and of the hour a prune cuts through, from the `bars` table in
//! the same transaction (like the rollups), so a pack always holds exactly the hour's stored
//! bars: a bar written late for an hour already packed is in its pack once its batch commits.
//!
//! Encoding, little-endian, one fixed-width record per bar in time order after a leading
//! format byte:
//!
//! | format byte | record | bytes |
//! |---|---|---:|
//! | `1` (hundredths) | second of the hour `u16`; open, high, low, close `i32` hundredths (the price is `n / 100.0`); volume, oi `f64` | 34 |
//! | `2` (floats) | second of the hour `u16`; open, high, low, close, volume, oi `f64` | 50 |
//!
//! The writer uses format 1 when every price of the hour is exactly `n / 100.0` for an `i32`
//! `n` (prices in paise), format 2 otherwise; both decode to the very `f64` that was stored,
//! so `history` answers the same bytes as from the `bars` rows. A reader refuses any other
//! format byte (a pack of a newer build) as a corrupt row.

use oa_marketdata_core::candles::Bar;

use super::{BarTable, StoreError, corrupt};

/// Seconds of bars one pack holds.
pub(crate) const PACK_SECONDS: i64 = 3_600;

/// The table, for error messages.
const TABLE: &str = "bars_packed";

/// Format byte: prices as `i32` hundredths.
const FORMAT_HUNDREDTHS: u8 = 1;
/// Format byte: every value an `f64`.
const FORMAT_FLOATS: u8 = 2;

/// Record widths of the two formats.
const HUNDREDTHS_WIDTH: usize = 2 + 4 * 4 + 2 * 8;
const FLOATS_WIDTH: usize = 2 + 6 * 8;

/// The first second of the pack that the bar starting at `time` belongs to.
pub(crate) fn pack_start(time: i64) -> i64 {
    BarTable::Hours.bucket_first_minute(time)
}

/// `price` as whole hundredths, when `n / 100.0` gives back exactly its bits.
fn hundredths(price: f64) -> Option<i32> {
    let scaled = (price * 100.0).round();
    // Also false for NaN.
    if !(scaled >= f64::from(i32::MIN) && scaled <= f64::from(i32::MAX)) {
        return None;
    }
    let whole = scaled as i32;
    (f64::from(whole) / 100.0)
        .to_bits()
        .eq(&price.to_bits())
        .then_some(whole)
}

/// Packs the bars of the hour starting at `start` (in time order, unique times, each inside
/// the hour).
pub(crate) fn encode(start: i64, bars: &[Bar]) -> Result<Vec<u8>, StoreError> {
    let prices = |bar: &Bar| [bar.open, bar.high, bar.low, bar.close];
    let in_hundredths = bars.iter().all(|bar| {
        prices(bar)
            .into_iter()
            .all(|price| hundredths(price).is_some())
    });
    let width = if in_hundredths {
        HUNDREDTHS_WIDTH
    } else {
        FLOATS_WIDTH
    };
    let mut data = Vec::with_capacity(1 + bars.len() * width);
    data.push(if in_hundredths {
        FORMAT_HUNDREDTHS
    } else {
        FORMAT_FLOATS
    });
    for bar in bars {
        let second = u16::try_from(bar.time - start)
            .ok()
            .filter(|second| i64::from(*second) < PACK_SECONDS)
            .ok_or_else(|| {
                corrupt(
                    TABLE,
                    format!(
                        "bar at {} is outside the hour starting at {start}",
                        bar.time
                    ),
                )
            })?;
        data.extend_from_slice(&second.to_le_bytes());
        for price in prices(bar) {
            match hundredths(price).filter(|_| in_hundredths) {
                Some(whole) => data.extend_from_slice(&whole.to_le_bytes()),
                None => data.extend_from_slice(&price.to_le_bytes()),
            }
        }
        data.extend_from_slice(&bar.volume.to_le_bytes());
        data.extend_from_slice(&bar.oi.to_le_bytes());
    }
    Ok(data)
}

/// Appends the bars of the pack of the hour starting at `start` whose time is in
/// `from..until` to `out`, in time order.
pub(crate) fn decode_into(
    start: i64,
    data: &[u8],
    from: i64,
    until: i64,
    out: &mut Vec<Bar>,
) -> Result<(), StoreError> {
    let bad = |reason: String| corrupt(TABLE, format!("pack of the hour at {start}: {reason}"));
    let Some((&format, records)) = data.split_first() else {
        return Err(bad("empty".to_string()));
    };
    let width = match format {
        FORMAT_HUNDREDTHS => HUNDREDTHS_WIDTH,
        FORMAT_FLOATS => FLOATS_WIDTH,
        other => {
            return Err(bad(format!(
                "format {other}, this build reads {FORMAT_HUNDREDTHS} and {FORMAT_FLOATS}"
            )));
        }
    };
    if records.len() % width != 0 {
        return Err(bad(format!(
            "{} bytes of records, not a multiple of {width}",
            records.len()
        )));
    }
    let mut previous = None;
    for record in records.chunks_exact(width) {
        let second = u16::from_le_bytes([record[0], record[1]]);
        if i64::from(second) >= PACK_SECONDS || previous.is_some_and(|last| second <= last) {
            return Err(bad(format!("second {second} out of order or range")));
        }
        previous = Some(second);
        let time = start + i64::from(second);
        if time < from || time >= until {
            continue;
        }
        out.push(if format == FORMAT_HUNDREDTHS {
            Bar {
                time,
                open: price_at(record, 2),
                high: price_at(record, 6),
                low: price_at(record, 10),
                close: price_at(record, 14),
                volume: float_at(record, 18),
                oi: float_at(record, 26),
            }
        } else {
            Bar {
                time,
                open: float_at(record, 2),
                high: float_at(record, 10),
                low: float_at(record, 18),
                close: float_at(record, 26),
                volume: float_at(record, 34),
                oi: float_at(record, 42),
            }
        });
    }
    Ok(())
}

/// The `i32` hundredths at `at` of a record, as a price.
fn price_at(record: &[u8], at: usize) -> f64 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&record[at..at + 4]);
    f64::from(i32::from_le_bytes(bytes)) / 100.0
}

/// The `f64` at `at` of a record.
fn float_at(record: &[u8], at: usize) -> f64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&record[at..at + 8]);
    f64::from_le_bytes(bytes)
}

/// Which packs a backend rebuilds from the 1-minute bars: those starting at
/// `from <= time < until` (pack starts), of one instrument or of every instrument.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PackScope<'a> {
    /// (exchange, symbol, from, until).
    Instrument(&'a str, &'a str, i64, i64),
    /// (from, until).
    Hours(i64, i64),
}

/// One `bars_packed` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pack {
    /// Exchange.
    pub exchange: String,
    /// Symbol.
    pub symbol: String,
    /// The hour's first second.
    pub start: i64,
    /// The encoded bars.
    pub data: Vec<u8>,
}

/// Groups 1-minute bars read in `(exchange, symbol, time)` order into packs.
#[derive(Debug, Default)]
pub(crate) struct Packer {
    /// The instrument and hour of `bars`.
    current: Option<(String, String, i64)>,
    bars: Vec<Bar>,
    done: Vec<Pack>,
}

impl Packer {
    /// Adds the next bar.
    pub(crate) fn push(
        &mut self,
        exchange: &str,
        symbol: &str,
        bar: Bar,
    ) -> Result<(), StoreError> {
        let start = pack_start(bar.time);
        let same = matches!(&self.current,
            Some((e, s, hour)) if *hour == start && e == exchange && s == symbol);
        if !same {
            self.close()?;
            self.current = Some((exchange.to_string(), symbol.to_string(), start));
        }
        self.bars.push(bar);
        Ok(())
    }

    /// The packs completed so far (a pack is complete once a bar of another one follows).
    pub(crate) fn take_complete(&mut self) -> Vec<Pack> {
        std::mem::take(&mut self.done)
    }

    /// Every pack not taken yet, the last one included.
    pub(crate) fn finish(mut self) -> Result<Vec<Pack>, StoreError> {
        self.close()?;
        Ok(self.done)
    }

    fn close(&mut self) -> Result<(), StoreError> {
        if let Some((exchange, symbol, start)) = self.current.take() {
            let data = encode(start, &self.bars)?;
            self.bars.clear();
            self.done.push(Pack {
                exchange,
                symbol,
                start,
                data,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 09:15:00 IST: an hour's first second.
    const HOUR: i64 = 1_796_096_700;

    /// A bar whose prices are whole hundredths when `open` is (as a price parsed from text
    /// is: `n / 100.0` is the `f64` nearest to the decimal).
    fn bar(time: i64, open: f64) -> Bar {
        let paise = (open * 100.0).round();
        let price = |step: f64| {
            if f64::from(paise as i32) / 100.0 == open {
                (paise + step) / 100.0
            } else {
                open + step / 100.0
            }
        };
        Bar {
            time,
            open,
            high: price(125.0),
            low: price(-5.0),
            close: price(10.0),
            volume: 1_234.0,
            oi: 56.0,
        }
    }

    fn decoded(start: i64, data: &[u8]) -> Vec<Bar> {
        let mut out = Vec::new();
        decode_into(start, data, i64::MIN, i64::MAX, &mut out).unwrap();
        out
    }

    fn bits(bars: &[Bar]) -> Vec<[u64; 6]> {
        bars.iter()
            .map(|bar| {
                [bar.open, bar.high, bar.low, bar.close, bar.volume, bar.oi].map(f64::to_bits)
            })
            .collect()
    }

    #[test]
    fn prices_in_paise_pack_as_hundredths_and_come_back_bit_for_bit() {
        let bars = [
            bar(HOUR, 812.35),
            bar(HOUR + 60, 0.05),
            bar(HOUR + 3540, 21_000.1),
        ];
        let data = encode(HOUR, &bars).unwrap();
        assert_eq!(data[0], FORMAT_HUNDREDTHS);
        assert_eq!(data.len(), 1 + 3 * HUNDREDTHS_WIDTH);
        let back = decoded(HOUR, &data);
        assert_eq!(back, bars);
        assert_eq!(bits(&back), bits(&bars));
    }

    #[test]
    fn any_other_price_packs_as_floats_and_comes_back_bit_for_bit() {
        for odd in [812.345, 1e12, -0.0, f64::NAN, 1.0 / 3.0] {
            let bars = [bar(HOUR, 800.0), bar(HOUR + 30, odd)];
            let data = encode(HOUR, &bars).unwrap();
            assert_eq!(data[0], FORMAT_FLOATS, "{odd}");
            assert_eq!(data.len(), 1 + 2 * FLOATS_WIDTH);
            assert_eq!(bits(&decoded(HOUR, &data)), bits(&bars), "{odd}");
        }
    }

    #[test]
    fn decoding_keeps_the_bars_of_the_range_only() {
        let bars: Vec<Bar> = (0..60)
            .map(|minute| bar(HOUR + minute * 60, 100.0))
            .collect();
        let data = encode(HOUR, &bars).unwrap();
        let mut out = vec![bar(HOUR - 60, 1.0)];
        decode_into(HOUR, &data, HOUR + 600, HOUR + 661, &mut out).unwrap();
        let times: Vec<i64> = out.iter().map(|bar| bar.time).collect();
        assert_eq!(times, [HOUR - 60, HOUR + 600, HOUR + 660]);
    }

    #[test]
    fn bad_packs_are_corrupt_rows_naming_the_table() {
        let good = encode(HOUR, &[bar(HOUR, 1.0), bar(HOUR + 60, 2.0)]).unwrap();
        let mut out = Vec::new();
        let mut newer = good.clone();
        newer[0] = 3;
        let mut short = good.clone();
        short.pop();
        let mut swapped = good.clone();
        swapped[1..3].copy_from_slice(&120u16.to_le_bytes());
        let mut late = good.clone();
        late[1..3].copy_from_slice(&3600u16.to_le_bytes());
        for data in [&[][..], &newer, &short, &swapped, &late] {
            let error = decode_into(HOUR, data, i64::MIN, i64::MAX, &mut out).unwrap_err();
            assert!(
                matches!(
                    error,
                    StoreError::Corrupt {
                        table: "bars_packed",
                        ..
                    }
                ),
                "{error}"
            );
        }
        assert!(encode(HOUR, &[bar(HOUR + 3600, 1.0)]).is_err());
        assert!(encode(HOUR, &[bar(HOUR - 60, 1.0)]).is_err());
    }

    #[test]
    fn the_packer_cuts_at_instruments_and_hours() {
        let mut packer = Packer::default();
        for (symbol, time) in [
            ("A", HOUR),
            ("A", HOUR + 3599),
            ("A", HOUR + 3600),
            ("B", HOUR + 3600),
        ] {
            packer.push("NSE", symbol, bar(time, 10.0)).unwrap();
        }
        let complete = packer.take_complete();
        let rest = packer.finish().unwrap();
        let keys: Vec<(&str, i64, usize)> = complete
            .iter()
            .chain(&rest)
            .map(|pack| {
                (
                    pack.symbol.as_str(),
                    pack.start,
                    decoded(pack.start, &pack.data).len(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [("A", HOUR, 2), ("A", HOUR + 3600, 1), ("B", HOUR + 3600, 1)]
        );
        assert_eq!(complete.len(), 2);
    }
}
