//! The tick model: one market-data update for one instrument, with the exact payload fields
//! of the bus contract (docs/marketdata.md).
//!
//! ```json
//! LTP:   {"ltp":812.5,"ltt":1769682645123,"timestamp":1769682645130,"symbol":"SBIN","exchange":"NSE","mode":1}
//! QUOTE: LTP fields + "open","high","low","close","volume","average_price",
//!        "total_buy_quantity","total_sell_quantity","last_quantity","oi"
//! DEPTH: QUOTE fields + "depth":{"buy":[{"price","quantity","orders"}],"sell":[...]}
//! ```
//!
//! `mode` is written as the number 1, 2 or 3 and read from a number or a case-insensitive
//! name. Integral quantities are written without a fraction (`100`, not `100.0`), as Python
//! publishers write them.
//!
//! Keys an adapter sends that the model does not have (`last_trade_quantity`,
//! `avg_trade_price`, `change`, `change_percent`, ...) are kept as sent in [`Tick::extra`]
//! and written back after the modelled keys, as OpenAlgo's proxy forwards the adapter's
//! payload whole.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// How much of a tick a subscriber wants. Ordered: `Depth > Quote > Ltp`; a tick of mode M
/// carries everything of the modes below M.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TickMode {
    /// Last traded price and time.
    Ltp = 1,
    /// LTP plus OHLC, volume, average price, totals, last quantity, open interest.
    Quote = 2,
    /// Quote plus the order book (usually 5 levels per side).
    Depth = 3,
}

/// Every mode, lowest first.
pub const ALL_MODES: [TickMode; 3] = [TickMode::Ltp, TickMode::Quote, TickMode::Depth];

/// A mode that is neither 1/2/3 nor LTP/Quote/Depth.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mode {value:?}: expected 1 (LTP), 2 (Quote) or 3 (Depth)")]
pub struct InvalidMode {
    /// The rejected value as received.
    pub value: String,
}

impl TickMode {
    /// The numeric code (1, 2, 3).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// From the numeric code.
    pub fn from_code(code: i64) -> Result<Self, InvalidMode> {
        match code {
            1 => Ok(TickMode::Ltp),
            2 => Ok(TickMode::Quote),
            3 => Ok(TickMode::Depth),
            other => Err(InvalidMode {
                value: other.to_string(),
            }),
        }
    }

    /// The label clients see in subscription responses: `LTP`, `Quote`, `Depth`.
    pub fn label(self) -> &'static str {
        match self {
            TickMode::Ltp => "LTP",
            TickMode::Quote => "Quote",
            TickMode::Depth => "Depth",
        }
    }

    /// The upper-case name used in bus topics: `LTP`, `QUOTE`, `DEPTH`.
    pub fn topic_name(self) -> &'static str {
        match self {
            TickMode::Ltp => "LTP",
            TickMode::Quote => "QUOTE",
            TickMode::Depth => "DEPTH",
        }
    }

    /// Reads a mode from a JSON value: 1/2/3 (number or numeric string) or a name, any case.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, InvalidMode> {
        match value {
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(code) => TickMode::from_code(code),
                None => match number.as_f64() {
                    Some(float) if float.fract() == 0.0 => TickMode::from_code(float as i64),
                    _ => Err(InvalidMode {
                        value: number.to_string(),
                    }),
                },
            },
            serde_json::Value::String(text) => text.parse(),
            other => Err(InvalidMode {
                value: other.to_string(),
            }),
        }
    }
}

impl FromStr for TickMode {
    type Err = InvalidMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("ltp") || trimmed == "1" {
            Ok(TickMode::Ltp)
        } else if trimmed.eq_ignore_ascii_case("quote") || trimmed == "2" {
            Ok(TickMode::Quote)
        } else if trimmed.eq_ignore_ascii_case("depth") || trimmed == "3" {
            Ok(TickMode::Depth)
        } else {
            Err(InvalidMode {
                value: text.to_string(),
            })
        }
    }
}

impl fmt::Display for TickMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for TickMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for TickMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        TickMode::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// One price level of the order book.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DepthLevel {
    /// Price of the level.
    pub price: f64,
    /// Total quantity at the level (written without a fraction when integral).
    #[serde(serialize_with = "ser_number")]
    pub quantity: f64,
    /// Number of orders at the level.
    #[serde(default, deserialize_with = "de_count")]
    pub orders: u64,
}

/// Both sides of the order book, best price first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Depth {
    /// Bids, highest first.
    #[serde(default)]
    pub buy: Vec<DepthLevel>,
    /// Asks, lowest first.
    #[serde(default)]
    pub sell: Vec<DepthLevel>,
}

/// The QUOTE-mode fields of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quote {
    /// Day open.
    pub open: f64,
    /// Day high.
    pub high: f64,
    /// Day low.
    pub low: f64,
    /// Previous close.
    pub close: f64,
    /// Day volume.
    pub volume: f64,
    /// Volume-weighted average traded price.
    pub average_price: f64,
    /// Pending buy quantity.
    pub total_buy_quantity: f64,
    /// Pending sell quantity.
    pub total_sell_quantity: f64,
    /// Quantity of the last trade.
    pub last_quantity: f64,
    /// Open interest (0 for cash instruments).
    pub oi: f64,
}

/// One market-data update for one instrument.
///
/// `quote` is present for modes Quote and Depth; `depth` for mode Depth. [`Tick::view`]
/// renders the tick as seen by a subscriber of a lower mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Exchange code, one of [`crate::symbols::EXCHANGES`].
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// The richest mode this tick carries.
    pub mode: TickMode,
    /// Last traded price.
    pub ltp: f64,
    /// Exchange time of the last trade, epoch milliseconds.
    pub ltt: i64,
    /// When the tick was produced, epoch milliseconds.
    pub timestamp: i64,
    /// Quote fields (modes Quote and Depth).
    pub quote: Option<Quote>,
    /// Order book (mode Depth).
    pub depth: Option<Depth>,
    /// The adapter's keys the model does not have, as JSON object members without braces
    /// (`"change":1.5,"change_percent":0.19`), written after the modelled keys. They belong
    /// to the tick's own mode, or to Quote for a Depth tick: an LTP view of a Quote or
    /// Depth tick leaves them out.
    pub extra: Option<Arc<str>>,
}

impl Tick {
    /// An LTP tick stamped now.
    pub fn ltp(exchange: impl Into<String>, symbol: impl Into<String>, ltp: f64) -> Self {
        let now = now_ms();
        Tick {
            exchange: exchange.into(),
            symbol: symbol.into(),
            mode: TickMode::Ltp,
            ltp,
            ltt: now,
            timestamp: now,
            quote: None,
            depth: None,
            extra: None,
        }
    }

    /// The adapter's extra keys (see [`Tick::extra`]) as they apply to a view at `mode`.
    fn extra_at(&self, mode: TickMode) -> Option<&str> {
        let applies = mode >= self.mode.min(TickMode::Quote);
        self.extra
            .as_deref()
            .filter(|extra| applies && !extra.is_empty())
    }

    /// Writes the payload JSON of this tick at `mode` (see [`Tick::view`]), extra keys
    /// included, to `out`.
    pub fn write_payload(&self, out: &mut Vec<u8>, mode: TickMode) {
        let mode = mode.min(self.mode);
        // Writing numbers and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &WireTick::from_tick(self, mode));
        if let Some(extra) = self.extra_at(mode)
            && out.last() == Some(&b'}')
        {
            out.pop();
            out.push(b',');
            out.extend_from_slice(extra.as_bytes());
            out.push(b'}');
        }
    }

    /// The tick as a subscriber of `mode` sees it: fields above `mode` removed and `mode`
    /// lowered. A `mode` above the tick's own leaves the tick unchanged.
    pub fn view(&self, mode: TickMode) -> Tick {
        let mode = mode.min(self.mode);
        Tick {
            exchange: self.exchange.clone(),
            symbol: self.symbol.clone(),
            mode,
            ltp: self.ltp,
            ltt: self.ltt,
            timestamp: self.timestamp,
            quote: if mode >= TickMode::Quote {
                self.quote
            } else {
                None
            },
            depth: if mode >= TickMode::Depth {
                self.depth.clone()
            } else {
                None
            },
            extra: self.extra_at(mode).and(self.extra.clone()),
        }
    }

    /// The modelled keys of this tick as seen at `mode` (see [`Tick::view`]), serialisable
    /// without cloning it; [`Tick::write_payload`] also writes [`Tick::extra`].
    pub fn payload_at(&self, mode: TickMode) -> TickPayload<'_> {
        TickPayload {
            tick: self,
            mode: mode.min(self.mode),
        }
    }

    /// The payload JSON bytes, extra keys included.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_payload(&mut out, self.mode);
        out
    }

    /// Reads a payload; missing `ltt`/`timestamp` default to now, missing quote fields to 0;
    /// keys the model does not have go to [`Tick::extra`].
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Reads a payload received under a topic: `exchange` and `symbol` missing from the
    /// payload are taken from the topic (the caller checks that present ones match), and the
    /// topic's `mode` is the tick's mode whatever the payload says, as upstream's proxy takes
    /// it (websocket_proxy/server.py): some adapters (Angel's) put the subscription's mode in
    /// the payload, not the message's.
    pub fn from_json_slice_with_defaults(
        bytes: &[u8],
        exchange: &str,
        symbol: &str,
        mode: TickMode,
    ) -> Result<Self, serde_json::Error> {
        let mut wire: WireTick<'_> = serde_json::from_slice(bytes)?;
        wire.mode = None;
        wire.into_tick(Some((exchange, symbol, mode)))
            .map_err(serde::de::Error::custom)
    }
}

/// The current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// A borrowed tick rendered at a mode; serialises as that mode's payload.
#[derive(Debug, Clone, Copy)]
pub struct TickPayload<'a> {
    tick: &'a Tick,
    mode: TickMode,
}

/// Largest magnitude at which every integer is exactly representable in an f64.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Writes an integral f64 as an integer (`100`, not `100.0`).
pub(crate) fn ser_number<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

fn de_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && value >= 0.0 {
        Ok(value as u64)
    } else {
        Err(serde::de::Error::custom(format!(
            "orders must be a non-negative number, got {value}"
        )))
    }
}

fn de_epoch<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<f64>::deserialize(deserializer)?;
    match value {
        None => Ok(None),
        Some(number) if number.is_finite() => Ok(Some(number as i64)),
        Some(number) => Err(serde::de::Error::custom(format!(
            "epoch milliseconds must be finite, got {number}"
        ))),
    }
}

/// A quantity of the payload, written as an integer when it is integral (see [`ser_number`]).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
struct WholeNumber(f64);

impl Serialize for WholeNumber {
    #[inline]
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ser_number(&self.0, serializer)
    }
}

/// The payload as written on the wire, every optional key skipped when absent. Read by
/// [`WireVisitor`], which also keeps the keys it does not know in `extra`.
#[derive(Serialize, Default)]
struct WireTick<'a> {
    ltp: f64,
    ltt: Option<i64>,
    timestamp: Option<i64>,
    symbol: Option<Cow<'a, str>>,
    exchange: Option<Cow<'a, str>>,
    mode: Option<TickMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    close: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volume: Option<WholeNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    average_price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total_buy_quantity: Option<WholeNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    total_sell_quantity: Option<WholeNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_quantity: Option<WholeNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oi: Option<WholeNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depth: Option<Cow<'a, Depth>>,
    #[serde(skip)]
    extra: Option<Vec<u8>>,
}

/// A string borrowed from the payload when it has no escapes, owned otherwise.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}

/// Epoch milliseconds, from any finite number (or null).
struct Epoch(Option<i64>);

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        de_epoch(deserializer).map(Epoch)
    }
}

/// Reads a payload object field by field, the modelled keys into [`WireTick`] and every
/// other key, as sent, into `extra` (allocated only when there is one).
struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = WireTick<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tick payload object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut wire = WireTick::default();
        let mut ltp = None;
        while let Some(CowStr(key)) = map.next_key::<CowStr<'de>>()? {
            match key.as_ref() {
                "ltp" => ltp = Some(map.next_value::<f64>()?),
                "ltt" => wire.ltt = map.next_value::<Epoch>()?.0,
                "timestamp" => wire.timestamp = map.next_value::<Epoch>()?.0,
                "symbol" => wire.symbol = map.next_value::<Option<CowStr<'de>>>()?.map(|s| s.0),
                "exchange" => wire.exchange = map.next_value::<Option<CowStr<'de>>>()?.map(|s| s.0),
                "mode" => wire.mode = map.next_value()?,
                "open" => wire.open = map.next_value()?,
                "high" => wire.high = map.next_value()?,
                "low" => wire.low = map.next_value()?,
                "close" => wire.close = map.next_value()?,
                "volume" => wire.volume = map.next_value()?,
                "average_price" => wire.average_price = map.next_value()?,
                "total_buy_quantity" => wire.total_buy_quantity = map.next_value()?,
                "total_sell_quantity" => wire.total_sell_quantity = map.next_value()?,
                "last_quantity" => wire.last_quantity = map.next_value()?,
                "oi" => wire.oi = map.next_value()?,
                "depth" => wire.depth = map.next_value::<Option<Depth>>()?.map(Cow::Owned),
                other => {
                    let value: &'de RawValue = map.next_value()?;
                    let extra = wire.extra.get_or_insert_with(|| Vec::with_capacity(128));
                    if !extra.is_empty() {
                        extra.push(b',');
                    }
                    // Writing a string into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut *extra, other);
                    extra.push(b':');
                    extra.extend_from_slice(value.get().as_bytes());
                }
            }
        }
        wire.ltp = ltp.ok_or_else(|| serde::de::Error::missing_field("ltp"))?;
        Ok(wire)
    }
}

impl<'de> Deserialize<'de> for WireTick<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WireVisitor)
    }
}

impl<'a> WireTick<'a> {
    fn from_tick(tick: &'a Tick, mode: TickMode) -> Self {
        let quote = if mode >= TickMode::Quote {
            Some(tick.quote.unwrap_or_default())
        } else {
            None
        };
        let depth = if mode >= TickMode::Depth {
            Some(match &tick.depth {
                Some(depth) => std::borrow::Cow::Borrowed(depth),
                None => std::borrow::Cow::Owned(Depth::default()),
            })
        } else {
            None
        };
        WireTick {
            ltp: tick.ltp,
            ltt: Some(tick.ltt),
            timestamp: Some(tick.timestamp),
            symbol: Some(std::borrow::Cow::Borrowed(&tick.symbol)),
            exchange: Some(std::borrow::Cow::Borrowed(&tick.exchange)),
            mode: Some(mode),
            open: quote.map(|q| q.open),
            high: quote.map(|q| q.high),
            low: quote.map(|q| q.low),
            close: quote.map(|q| q.close),
            volume: quote.map(|q| WholeNumber(q.volume)),
            average_price: quote.map(|q| q.average_price),
            total_buy_quantity: quote.map(|q| WholeNumber(q.total_buy_quantity)),
            total_sell_quantity: quote.map(|q| WholeNumber(q.total_sell_quantity)),
            last_quantity: quote.map(|q| WholeNumber(q.last_quantity)),
            oi: quote.map(|q| WholeNumber(q.oi)),
            depth,
            extra: None,
        }
    }

    fn into_tick(self, defaults: Option<(&str, &str, TickMode)>) -> Result<Tick, String> {
        let (exchange, symbol, mode) = match (self.exchange, self.symbol, self.mode, defaults) {
            (Some(exchange), Some(symbol), Some(mode), _) => (exchange, symbol, mode),
            (exchange, symbol, mode, Some((d_exchange, d_symbol, d_mode))) => (
                exchange.unwrap_or(std::borrow::Cow::Borrowed(d_exchange)),
                symbol.unwrap_or(std::borrow::Cow::Borrowed(d_symbol)),
                mode.unwrap_or(d_mode),
            ),
            (exchange, symbol, _, None) => {
                let missing = if exchange.is_none() {
                    "exchange"
                } else if symbol.is_none() {
                    "symbol"
                } else {
                    "mode"
                };
                return Err(format!("missing field `{missing}`"));
            }
        };
        let timestamp = self.timestamp.unwrap_or_else(now_ms);
        let quote = if mode >= TickMode::Quote {
            Some(Quote {
                open: self.open.unwrap_or(0.0),
                high: self.high.unwrap_or(0.0),
                low: self.low.unwrap_or(0.0),
                close: self.close.unwrap_or(0.0),
                volume: self.volume.map_or(0.0, |n| n.0),
                average_price: self.average_price.unwrap_or(0.0),
                total_buy_quantity: self.total_buy_quantity.map_or(0.0, |n| n.0),
                total_sell_quantity: self.total_sell_quantity.map_or(0.0, |n| n.0),
                last_quantity: self.last_quantity.map_or(0.0, |n| n.0),
                oi: self.oi.map_or(0.0, |n| n.0),
            })
        } else {
            None
        };
        let depth = if mode >= TickMode::Depth {
            Some(self.depth.map(|d| d.into_owned()).unwrap_or_default())
        } else {
            None
        };
        Ok(Tick {
            exchange: exchange.into_owned(),
            symbol: symbol.into_owned(),
            mode,
            ltp: self.ltp,
            ltt: self.ltt.unwrap_or(timestamp),
            timestamp,
            quote,
            depth,
            // Raw JSON members are valid UTF-8.
            extra: self
                .extra
                .and_then(|extra| String::from_utf8(extra).ok())
                .map(Arc::from),
        })
    }
}

impl Serialize for TickPayload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireTick::from_tick(self.tick, self.mode).serialize(serializer)
    }
}

/// The modelled keys only; [`Tick::write_payload`] and [`Tick::to_json_bytes`] also write
/// [`Tick::extra`].
impl Serialize for Tick {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireTick::from_tick(self, self.mode).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tick {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireTick::deserialize(deserializer)?;
        wire.into_tick(None).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_tick() -> Tick {
        Tick {
            exchange: "NSE".into(),
            symbol: "SBIN".into(),
            mode: TickMode::Depth,
            ltp: 812.5,
            ltt: 1_769_682_645_123,
            timestamp: 1_769_682_645_130,
            quote: Some(Quote {
                open: 800.0,
                high: 815.25,
                low: 798.1,
                close: 805.0,
                volume: 1_234_567.0,
                average_price: 808.4,
                total_buy_quantity: 5000.0,
                total_sell_quantity: 4200.0,
                last_quantity: 25.0,
                oi: 0.0,
            }),
            depth: Some(Depth {
                buy: vec![DepthLevel {
                    price: 812.45,
                    quantity: 100.0,
                    orders: 3,
                }],
                sell: vec![DepthLevel {
                    price: 812.55,
                    quantity: 0.5,
                    orders: 1,
                }],
            }),
            extra: None,
        }
    }

    #[test]
    fn mode_parses_codes_and_names_in_any_case() {
        for (text, mode) in [
            ("1", TickMode::Ltp),
            ("ltp", TickMode::Ltp),
            ("LTP", TickMode::Ltp),
            ("Quote", TickMode::Quote),
            ("QUOTE", TickMode::Quote),
            ("2", TickMode::Quote),
            ("depth", TickMode::Depth),
            ("3", TickMode::Depth),
        ] {
            assert_eq!(text.parse::<TickMode>().unwrap(), mode, "{text}");
        }
        assert!("4".parse::<TickMode>().is_err());
        assert!("full".parse::<TickMode>().is_err());
        assert_eq!(
            TickMode::from_json(&serde_json::json!(3)).unwrap(),
            TickMode::Depth
        );
        assert_eq!(
            TickMode::from_json(&serde_json::json!(2.0)).unwrap(),
            TickMode::Quote
        );
        assert!(TickMode::from_json(&serde_json::json!(0)).is_err());
        assert!(TickMode::from_json(&serde_json::json!(null)).is_err());
        assert!(TickMode::Depth > TickMode::Quote && TickMode::Quote > TickMode::Ltp);
    }

    #[test]
    fn ltp_payload_golden() {
        let tick = depth_tick().view(TickMode::Ltp);
        assert_eq!(
            String::from_utf8(tick.to_json_bytes()).unwrap(),
            r#"{"ltp":812.5,"ltt":1769682645123,"timestamp":1769682645130,"symbol":"SBIN","exchange":"NSE","mode":1}"#
        );
    }

    #[test]
    fn quote_payload_golden() {
        let json = serde_json::to_string(&depth_tick().payload_at(TickMode::Quote)).unwrap();
        assert_eq!(
            json,
            r#"{"ltp":812.5,"ltt":1769682645123,"timestamp":1769682645130,"symbol":"SBIN","exchange":"NSE","mode":2,"open":800.0,"high":815.25,"low":798.1,"close":805.0,"volume":1234567,"average_price":808.4,"total_buy_quantity":5000,"total_sell_quantity":4200,"last_quantity":25,"oi":0}"#
        );
    }

    #[test]
    fn depth_payload_round_trips() {
        let tick = depth_tick();
        let json = String::from_utf8(tick.to_json_bytes()).unwrap();
        assert!(
            json.ends_with(r#""depth":{"buy":[{"price":812.45,"quantity":100,"orders":3}],"sell":[{"price":812.55,"quantity":0.5,"orders":1}]}}"#),
            "{json}"
        );
        assert_eq!(Tick::from_json_slice(json.as_bytes()).unwrap(), tick);
        for mode in ALL_MODES {
            let view = tick.view(mode);
            assert_eq!(Tick::from_json_slice(&view.to_json_bytes()).unwrap(), view);
        }
    }

    #[test]
    fn keys_the_model_lacks_pass_through_as_sent() {
        let payload = br#"{"ltp":10,"symbol":"X","exchange":"NSE","mode":2,"change":0.5,"change_percent":5.26,"upper_circuit":{"v":[1,"a"]},"last_trade_quantity":3}"#;
        let tick = Tick::from_json_slice(payload).unwrap();
        assert_eq!(
            tick.extra.as_deref(),
            Some(
                r#""change":0.5,"change_percent":5.26,"upper_circuit":{"v":[1,"a"]},"last_trade_quantity":3"#
            )
        );
        let written: serde_json::Value = serde_json::from_slice(&tick.to_json_bytes()).unwrap();
        assert_eq!(written["change_percent"], 5.26);
        assert_eq!(written["upper_circuit"], serde_json::json!({"v": [1, "a"]}));
        assert_eq!(written["open"], 0.0);
        assert_eq!(Tick::from_json_slice(&tick.to_json_bytes()).unwrap(), tick);
        // An LTP view of a Quote tick leaves the extra keys out; the Quote view keeps them.
        let mut ltp = Vec::new();
        tick.write_payload(&mut ltp, TickMode::Ltp);
        let ltp: serde_json::Value = serde_json::from_slice(&ltp).unwrap();
        assert!(ltp.get("change").is_none(), "{ltp}");
        assert!(tick.view(TickMode::Ltp).extra.is_none());
        assert!(tick.view(TickMode::Depth).extra.is_some());
        // An LTP tick's extra keys belong to LTP.
        let ltp_tick =
            Tick::from_json_slice(br#"{"ltp":10,"symbol":"X","exchange":"NSE","mode":1,"cp":9.5}"#)
                .unwrap();
        assert_eq!(ltp_tick.extra.as_deref(), Some(r#""cp":9.5"#));
        assert!(
            String::from_utf8(ltp_tick.to_json_bytes())
                .unwrap()
                .ends_with(r#","cp":9.5}"#)
        );
        // Escaped strings are read too.
        let escaped = Tick::from_json_slice(
            br#"{"ltp":1,"symbol":"A\u0026B","exchange":"NSE","mode":1,"n\"k":"v"}"#,
        )
        .unwrap();
        assert_eq!(escaped.symbol, "A&B");
        assert_eq!(escaped.extra.as_deref(), Some(r#""n\"k":"v""#));
    }

    #[test]
    fn lenient_reading_of_external_payloads() {
        let tick =
            Tick::from_json_slice(br#"{"ltp":10,"symbol":"X","exchange":"NSE","mode":"quote"}"#)
                .unwrap();
        assert_eq!(tick.mode, TickMode::Quote);
        assert_eq!(tick.ltt, tick.timestamp);
        assert_eq!(tick.quote.unwrap().open, 0.0);
        assert!(Tick::from_json_slice(br#"{"symbol":"X","exchange":"NSE","mode":1}"#).is_err());
        assert!(
            Tick::from_json_slice(br#"{"ltp":1,"symbol":"X","exchange":"NSE","mode":9}"#).is_err()
        );
    }
}
