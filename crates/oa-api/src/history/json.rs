//! The JSON body of `history` (and `ticker`'s JSON format), written straight from the bars
//! in chunks of a few hundred candles as the connection takes them.
//!
//! A year of 1-minute bars is about 94,000 candles and 9 MB of JSON; going through serde
//! (a `Vec` of candle structs, then `axum::Json` growing its buffer) cost more than reading
//! the rows. The bytes are exactly serde_json's for
//! `{"status":"success","data":[{"close","high","low","oi","open","timestamp","volume"}, ...]}`
//! (the unit tests compare them): prices that are whole hundredths (every price on a 0.05 or
//! 0.01 tick) are printed from integers, anything else by serde_json's float formatter.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use oa_marketdata_core::candles::Bar;

/// Largest magnitude at which every integer is exactly representable in an f64 (integral
/// quantities below it print as integers, as `Quantity` serialises them).
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Prices below this magnitude that are whole hundredths print from integers: their
/// shortest round-trip form is the hundredths without trailing zeros (one hundredth is far
/// more than the float spacing there) and never uses an exponent.
const HUNDREDTHS_LIMIT: f64 = 1e9;

/// Bytes reserved per candle (a typical candle takes about 100).
const BYTES_PER_CANDLE: usize = 112;

/// Candles per chunk of the body: about 56 KB, small enough to come from the allocator's heap
/// (a 9 MB buffer is fresh pages, each one faulted in) and to bound what one response holds
/// in memory beside its bars.
const CANDLES_PER_CHUNK: usize = 500;

/// A `history` success body, served as `application/json`: written in chunks as the
/// connection takes them, or whole (with a `Content-Length`) when it fits in one chunk.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CandlesJson(Vec<Bar>);

impl CandlesJson {
    /// `{"status":"success","data":[...]}` with one object per bar, keys in OpenAlgo's
    /// (alphabetical) order; volume rounded to a whole quantity.
    pub(crate) fn new(bars: Vec<Bar>) -> CandlesJson {
        CandlesJson(bars)
    }

    /// How many chunks the body takes (at least one: an empty list is still a body).
    fn chunk_count(&self) -> usize {
        self.0.len().div_ceil(CANDLES_PER_CHUNK).max(1)
    }

    /// Chunk `index` of the body: the first opens the object, the last closes it.
    fn chunk(&self, index: usize) -> Vec<u8> {
        let first = index * CANDLES_PER_CHUNK;
        let bars = &self.0[first..(first + CANDLES_PER_CHUNK).min(self.0.len())];
        let mut out = Vec::with_capacity(32 + bars.len() * BYTES_PER_CANDLE);
        if index == 0 {
            out.extend_from_slice(br#"{"status":"success","data":["#);
        }
        for (offset, bar) in bars.iter().enumerate() {
            if first + offset > 0 {
                out.push(b',');
            }
            write_candle(&mut out, bar);
        }
        if index + 1 == self.chunk_count() {
            out.extend_from_slice(b"]}");
        }
        out
    }

    /// The whole body's bytes.
    fn to_bytes(&self) -> Vec<u8> {
        (0..self.chunk_count())
            .flat_map(|index| self.chunk(index))
            .collect()
    }
}

impl IntoResponse for CandlesJson {
    fn into_response(self) -> Response {
        let content_type = [(header::CONTENT_TYPE, "application/json")];
        if self.chunk_count() == 1 {
            return (content_type, self.to_bytes()).into_response();
        }
        let chunks =
            (0..self.chunk_count()).map(move |index| Ok::<_, Infallible>(self.chunk(index)));
        (
            content_type,
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
            .into_response()
    }
}

/// One candle object, keys in alphabetical order.
fn write_candle(out: &mut Vec<u8>, bar: &Bar) {
    write_key_price(out, br#"{"close":"#, bar.close);
    write_key_price(out, br#","high":"#, bar.high);
    write_key_price(out, br#","low":"#, bar.low);
    out.extend_from_slice(br#","oi":"#);
    write_quantity(out, bar.oi);
    write_key_price(out, br#","open":"#, bar.open);
    out.extend_from_slice(br#","timestamp":"#);
    write_integer(out, bar.time);
    out.extend_from_slice(br#","volume":"#);
    write_quantity(out, bar.volume.round());
    out.push(b'}');
}

/// `key` (with what precedes it), then a price.
fn write_key_price(out: &mut Vec<u8>, key: &[u8], value: f64) {
    out.extend_from_slice(key);
    write_price(out, value);
}

/// A price as serde_json prints an `f64`.
fn write_price(out: &mut Vec<u8>, value: f64) {
    if value.abs() < HUNDREDTHS_LIMIT {
        let hundredths = (value * 100.0).round();
        if hundredths / 100.0 == value {
            if value.is_sign_negative() {
                out.push(b'-');
            }
            let hundredths = hundredths.abs() as u64;
            write_unsigned(out, hundredths / 100);
            let fraction = hundredths % 100;
            out.push(b'.');
            out.push(b'0' + (fraction / 10) as u8);
            if !fraction.is_multiple_of(10) {
                out.push(b'0' + (fraction % 10) as u8);
            }
            return;
        }
    }
    write_float(out, value);
}

/// A quantity as `Quantity` serialises: an integer when integral, else a float.
fn write_quantity(out: &mut Vec<u8>, value: f64) {
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
        write_integer(out, value as i64);
    } else {
        write_float(out, value);
    }
}

/// Any float, by serde_json itself (`null` for NaN and infinities, as serde_json).
fn write_float(out: &mut Vec<u8>, value: f64) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

fn write_integer(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_unsigned(out, value.unsigned_abs());
}

fn write_unsigned(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use oa_events_core::number::Quantity;
    use proptest::prelude::*;
    use serde::Serialize;

    use axum::body::HttpBody;

    use super::*;
    use crate::responses::{Data, Reply};

    /// The serde shape the body replaced (the reference for its bytes).
    #[derive(Serialize)]
    struct Candle {
        close: f64,
        high: f64,
        low: f64,
        oi: Quantity,
        open: f64,
        timestamp: i64,
        volume: Quantity,
    }

    fn serde_body(bars: &[Bar]) -> Vec<u8> {
        let data: Vec<Candle> = bars
            .iter()
            .map(|bar| Candle {
                close: bar.close,
                high: bar.high,
                low: bar.low,
                oi: Quantity(bar.oi),
                open: bar.open,
                timestamp: bar.time,
                volume: Quantity(bar.volume.round()),
            })
            .collect();
        serde_json::to_vec(&Reply::new(Data { data })).unwrap_or_default()
    }

    fn bar_of(price: f64, time: i64, volume: f64, oi: f64) -> Bar {
        Bar {
            time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume,
            oi,
        }
    }

    fn assert_same(bars: &[Bar]) {
        let ours = CandlesJson::new(bars.to_vec());
        assert_eq!(
            String::from_utf8_lossy(&ours.to_bytes()),
            String::from_utf8_lossy(&serde_body(bars))
        );
    }

    /// The response's body bytes and its exact length when known before sending (hyper then
    /// sends it as `Content-Length`; without one, the body goes out chunked).
    async fn served(bars: Vec<Bar>) -> (Vec<u8>, Option<u64>) {
        let body = CandlesJson::new(bars).into_response().into_body();
        let length = HttpBody::size_hint(&body).exact();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        (bytes.to_vec(), length)
    }

    #[tokio::test]
    async fn a_body_in_chunks_is_the_same_bytes_and_a_one_chunk_body_has_its_length() {
        for count in [
            0,
            1,
            CANDLES_PER_CHUNK - 1,
            CANDLES_PER_CHUNK,
            CANDLES_PER_CHUNK + 1,
            3 * CANDLES_PER_CHUNK + 7,
        ] {
            let bars: Vec<Bar> = (0..count)
                .map(|index| {
                    bar_of(
                        800.0 + index as f64 * 0.05,
                        1_796_083_200 + index as i64 * 60,
                        10.0,
                        0.0,
                    )
                })
                .collect();
            let reference = serde_body(&bars);
            let (body, length) = served(bars).await;
            assert_eq!(body, reference, "{count} candles");
            if count <= CANDLES_PER_CHUNK {
                assert_eq!(length, Some(reference.len() as u64), "{count} candles");
            } else {
                assert_eq!(length, None, "{count} candles are streamed");
            }
        }
    }

    #[test]
    fn empty_and_edge_values_print_as_serde_json() {
        assert_same(&[]);
        let edges = [
            0.0,
            -0.0,
            0.01,
            0.05,
            0.1,
            0.5,
            1.0,
            812.0,
            812.3,
            812.35,
            -812.35,
            0.1 + 0.2,
            1e-7,
            123_456_789.99,
            999_999_999.99,
            1e9,
            1e15,
            1e16,
            1e300,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let bars: Vec<Bar> = edges
            .iter()
            .map(|&value| bar_of(value, -1_796_083_200, value, value))
            .collect();
        assert_same(&bars);
        assert_same(&[bar_of(812.35, i64::MIN, 1.5, EXACT_INTEGER_LIMIT)]);
        assert_same(&[bar_of(812.35, i64::MAX, 2.5, -3.0)]);
    }

    proptest! {
        #[test]
        fn prices_on_a_tick_print_as_serde_json(
            ticks in proptest::collection::vec((0i64..2_000_000_000, 1i64..6), 1..40),
            time in any::<i64>(),
            volume in 0.0f64..1e12,
        ) {
            let bars: Vec<Bar> = ticks
                .iter()
                .map(|&(units, step)| bar_of((units * step) as f64 * 0.01, time, volume, units as f64))
                .collect();
            let reference = serde_body(&bars);
            prop_assert_eq!(CandlesJson::new(bars).to_bytes(), reference);
        }

        #[test]
        fn any_floats_print_as_serde_json(values in proptest::collection::vec(any::<f64>(), 1..40)) {
            let bars: Vec<Bar> = values.iter().map(|&value| bar_of(value, 0, value, value)).collect();
            let reference = serde_body(&bars);
            prop_assert_eq!(CandlesJson::new(bars).to_bytes(), reference);
        }
    }
}
