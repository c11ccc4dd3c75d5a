//! Which option contract an underlying, an expiry and an offset from the money name, as
//! upstream resolves it (services/option_symbol_service.py `get_option_symbol`):
//!
//! 1. the underlying is split into its base and an embedded `DDMMMYY` expiry
//!    (`NIFTY28OCT25FUT` is NIFTY expiring 28OCT25);
//! 2. the underlying's last price is read where it is quoted (an NFO/BFO request is quoted on
//!    the index or cash exchange);
//! 3. without `strike_int`, the at-the-money strike is the listed strike nearest that price
//!    and an offset moves along the listed strikes (ITM is down the ladder for a call, up for
//!    a put); with `strike_int` (legacy) the strike is computed on that grid;
//! 4. the symbol `{BASE}{EXPIRY}{STRIKE}{CE|PE}` must be listed.

use axum::http::StatusCode;
use oa_events_core::number::Quantity;
use oa_marketdata_core::options::OptionKind;
use serde::Serialize;

use crate::error::HttpError;
use crate::fields::Fields;
use crate::price::MarketData;
use crate::service::OrderService;
use crate::types::Exchange;

type Result<T> = std::result::Result<T, HttpError>;

/// Index underlyings quoted on NSE_INDEX (upstream's list in `get_option_symbol`).
const NSE_INDICES: &[&str] = &[
    "NIFTY",
    "BANKNIFTY",
    "FINNIFTY",
    "MIDCPNIFTY",
    "NIFTYNXT50",
    "INDIAVIX",
];
/// Index underlyings quoted on BSE_INDEX.
const BSE_INDICES: &[&str] = &["SENSEX", "BANKEX", "SENSEX50"];

/// The largest ITM/OTM offset (upstream restx_api/data_schemas.py `validate_option_offset`).
const MAX_OFFSET: u32 = 50;

/// Distance from the money: `ATM`, `ITM1`..`ITM50`, `OTM1`..`OTM50`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offset {
    /// At the money.
    Atm,
    /// In the money by this many strikes.
    Itm(u32),
    /// Out of the money by this many strikes.
    Otm(u32),
}

impl Offset {
    /// What an error says the field accepts.
    pub(crate) const EXPECTED: &'static str = "ATM, ITM1-ITM50 or OTM1-OTM50";

    /// Parses an offset (any case); numbers without leading zeros, as upstream's pattern
    /// `^ITM([1-9]|[1-4][0-9]|50)$`.
    pub(crate) fn parse(text: &str) -> Option<Offset> {
        let upper = text.trim().to_ascii_uppercase();
        if upper == "ATM" {
            return Some(Offset::Atm);
        }
        let (side, digits) = upper.split_at_checked(3)?;
        if digits.starts_with('0')
            || digits.is_empty()
            || digits.len() > 2
            || !digits.bytes().all(|byte| byte.is_ascii_digit())
        {
            return None;
        }
        let steps: u32 = digits.parse().ok()?;
        if !(1..=MAX_OFFSET).contains(&steps) {
            return None;
        }
        match side {
            "ITM" => Some(Offset::Itm(steps)),
            "OTM" => Some(Offset::Otm(steps)),
            _ => None,
        }
    }

    /// How many strikes up (positive) or down the ladder from the at-the-money strike: ITM
    /// calls and OTM puts are below it.
    pub(crate) fn steps(self, kind: OptionKind) -> i64 {
        let (steps, below) = match self {
            Offset::Atm => return 0,
            Offset::Itm(steps) => (i64::from(steps), kind == OptionKind::Call),
            Offset::Otm(steps) => (i64::from(steps), kind == OptionKind::Put),
        };
        if below { -steps } else { steps }
    }
}

/// The base symbol and the `DDMMMYY` expiry embedded in an underlying (`NIFTY28OCT25FUT` is
/// `("NIFTY", Some("28OCT25"))`; upstream's pattern `^([A-Z]+)(\d{2}[A-Z]{3}\d{2})(?:FUT)?$`).
pub(crate) fn split_underlying(underlying: &str) -> (String, Option<String>) {
    let upper = underlying.trim().to_ascii_uppercase();
    let base_len = upper
        .find(|c: char| !c.is_ascii_uppercase())
        .unwrap_or(upper.len());
    let rest = &upper[base_len..];
    let date = rest.strip_suffix("FUT").unwrap_or(rest);
    if base_len > 0 && is_symbol_date(date) {
        return (upper[..base_len].to_string(), Some(date.to_string()));
    }
    (upper, None)
}

/// True for `DDMMMYY` (two digits, three letters, two digits).
fn is_symbol_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 7
        && bytes[..2].iter().all(u8::is_ascii_digit)
        && bytes[2..5].iter().all(u8::is_ascii_uppercase)
        && bytes[5..].iter().all(u8::is_ascii_digit)
}

/// `28OCT25` as the master contract's `28-OCT-25` (upstream slices the text the same way).
pub(crate) fn expiry_label(symbol_date: &str) -> String {
    let chars: Vec<char> = symbol_date.chars().collect();
    let part = |range: std::ops::Range<usize>| -> String {
        chars
            .get(range.start.min(chars.len())..range.end.min(chars.len()))
            .map(|slice| slice.iter().collect())
            .unwrap_or_default()
    };
    format!("{}-{}-{}", part(0..2), part(2..5), part(5..chars.len()))
}

/// Where an underlying is quoted: an NFO/BFO request names the index or cash exchange
/// instead (upstream `get_option_symbol`, step 2).
pub(crate) fn quote_exchange(base: &str, exchange: Exchange) -> Exchange {
    let mapped = match exchange.as_str() {
        "NFO" | "BFO" if NSE_INDICES.contains(&base) => "NSE_INDEX",
        "NFO" | "BFO" if BSE_INDICES.contains(&base) => "BSE_INDEX",
        "NFO" => "NSE",
        "BFO" => "BSE",
        _ => return exchange,
    };
    Exchange::parse(mapped).unwrap_or(exchange)
}

/// The symbol quoted for the underlying's price: the base of an underlying with an embedded
/// expiry (the future itself on MCX and CDS, which have no spot), else the underlying.
pub(crate) fn quote_symbol(
    underlying: &str,
    base: &str,
    embedded: bool,
    exchange: Exchange,
) -> String {
    match (embedded, exchange.as_str()) {
        (true, "MCX" | "CDS") => underlying.trim().to_ascii_uppercase(),
        (true, _) => base.to_string(),
        (false, _) => underlying.trim().to_ascii_uppercase(),
    }
}

/// The exchange listing the options of an underlying quoted on `quote_exchange` (upstream
/// `get_option_exchange`: NSE and NSE_INDEX to NFO, BSE and BSE_INDEX to BFO, commodity and
/// currency exchanges to themselves, anything else to NFO).
pub(crate) fn option_exchange(quote_exchange: Exchange) -> Exchange {
    let mapped = match quote_exchange.as_str() {
        "NSE" | "NSE_INDEX" => "NFO",
        "BSE" | "BSE_INDEX" => "BFO",
        other @ ("MCX" | "CDS" | "NCO" | "BCD" | "NCDEX" | "CRYPTO") => other,
        _ => "NFO",
    };
    Exchange::parse(mapped).unwrap_or(quote_exchange)
}

/// A strike as symbols write it: whole numbers without a fraction (`23500`, `292.5`).
pub(crate) fn strike_text(strike: f64) -> String {
    if strike.fract() == 0.0 && strike.abs() < 1e15 {
        format!("{}", strike as i64)
    } else {
        format!("{strike}")
    }
}

/// `{BASE}{EXPIRY}{STRIKE}{CE|PE}` (upstream `construct_option_symbol`).
pub(crate) fn option_symbol(base: &str, expiry: &str, strike: f64, kind: OptionKind) -> String {
    format!("{base}{expiry}{}{}", strike_text(strike), kind.code())
}

/// The listed strike nearest `ltp` (the lower one of two equally near, as Python's `min`
/// keeps the first).
pub(crate) fn nearest_strike(ltp: f64, strikes: &[f64]) -> Option<f64> {
    strikes
        .iter()
        .copied()
        .fold(None, |best, strike| match best {
            Some(best) if (best - ltp).abs() <= (strike - ltp).abs() => Some(best),
            _ => Some(strike),
        })
}

/// The strike `offset` away from `atm` along the listed `strikes` (ascending), `None` when
/// that runs off the ladder (upstream `calculate_offset_strike_from_actual`).
pub(crate) fn offset_strike(
    atm: f64,
    offset: Offset,
    kind: OptionKind,
    strikes: &[f64],
) -> Option<f64> {
    let atm_index = strikes.iter().position(|strike| *strike == atm)?;
    let target = atm_index as i64 + offset.steps(kind);
    usize::try_from(target)
        .ok()
        .and_then(|index| strikes.get(index).copied())
}

/// Python's `round()`: halves go to the even neighbour.
fn round_half_even(value: f64) -> f64 {
    let rounded = value.round();
    if (value - value.trunc()).abs() == 0.5 && rounded % 2.0 != 0.0 {
        rounded - value.signum()
    } else {
        rounded
    }
}

/// The legacy `strike_int` grid: the at-the-money strike `round(ltp / step) * step` and
/// the offset's strike `steps` grid points away (upstream `get_atm_strike`,
/// `calculate_offset_strike`).
pub(crate) fn grid_strike(ltp: f64, step: u64, offset: Offset, kind: OptionKind) -> f64 {
    let step = step as f64;
    let atm = round_half_even(ltp / step) * step;
    atm + offset.steps(kind) as f64 * step
}

/// An option named by offset: the fields optionsymbol, optionsorder and the legs of
/// optionsmultiorder share.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OptionQuery {
    /// The underlying as sent, uppercased (`NIFTY`, `NIFTY28OCT25FUT`).
    pub(crate) underlying: String,
    /// The request's exchange (`NSE_INDEX`, `NFO`, ...).
    pub(crate) exchange: Exchange,
    /// `DDMMMYY`, when sent.
    pub(crate) expiry_date: Option<String>,
    /// The legacy strike grid, when sent.
    pub(crate) strike_int: Option<u64>,
    /// Distance from the money.
    pub(crate) offset: Offset,
    /// Call or put.
    pub(crate) kind: OptionKind,
}

/// Reads a required `offset`.
pub(crate) fn read_offset(fields: &Fields, name: &str) -> Result<Offset> {
    let text = fields.required_string(name)?;
    Offset::parse(&text).ok_or_else(|| {
        fields.error(
            name,
            &format!("expected {}, got {text:?}", Offset::EXPECTED),
        )
    })
}

/// Reads a required `option_type` (`CE` or `PE`, any case).
pub(crate) fn read_kind(fields: &Fields, name: &str) -> Result<OptionKind> {
    let text = fields.required_string(name)?;
    OptionKind::parse(&text)
        .ok_or_else(|| fields.error(name, &format!("expected one of CE, PE, got {text:?}")))
}

/// Reads an optional `strike_int` (a positive integer).
pub(crate) fn read_strike_int(fields: &Fields) -> Result<Option<u64>> {
    match fields.opt_string("strike_int")? {
        None => Ok(None),
        Some(_) => fields.positive_integer("strike_int").map(Some),
    }
}

/// Reads an optional `DDMMMYY` expiry (uppercased).
pub(crate) fn read_expiry(fields: &Fields, name: &str) -> Result<Option<String>> {
    match fields.opt_string(name)? {
        None => Ok(None),
        Some(text) => {
            let upper = text.to_ascii_uppercase();
            if is_symbol_date(&upper) {
                Ok(Some(upper))
            } else {
                Err(fields.error(
                    name,
                    &format!("expected a date DDMMMYY (e.g. 28OCT25), got {text:?}"),
                ))
            }
        }
    }
}

/// Reads a required `expiry_date` (`DDMMMYY`).
pub(crate) fn required_expiry(fields: &Fields) -> Result<String> {
    read_expiry(fields, "expiry_date")?.ok_or_else(|| {
        fields.error(
            "expiry_date",
            "missing required field (expected a date DDMMMYY, e.g. 28OCT25)",
        )
    })
}

impl OptionQuery {
    /// Reads `underlying`, `exchange`, `expiry_date`, `strike_int`, `offset` and
    /// `option_type`.
    pub(crate) fn read(fields: &Fields) -> Result<OptionQuery> {
        Ok(OptionQuery {
            underlying: fields.required_string("underlying")?.to_ascii_uppercase(),
            exchange: fields.exchange("exchange")?,
            expiry_date: read_expiry(fields, "expiry_date")?,
            strike_int: read_strike_int(fields)?,
            offset: read_offset(fields, "offset")?,
            kind: read_kind(fields, "option_type")?,
        })
    }
}

/// The answer of optionsymbol, with upstream's keys in its order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ResolvedOption {
    /// The option's symbol.
    pub(crate) symbol: String,
    /// Where it is listed (`NFO`).
    pub(crate) exchange: String,
    /// Lot size.
    pub(crate) lotsize: Quantity,
    /// Price step.
    pub(crate) tick_size: f64,
    /// Exchange freeze quantity (1: the symbol master has no freeze limits).
    pub(crate) freeze_qty: u64,
    /// The underlying's price the strike was chosen from.
    pub(crate) underlying_ltp: f64,
    /// The strike (not on the wire).
    #[serde(skip)]
    pub(crate) strike: f64,
}

/// The underlying of an option request, once its quote is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Underlying {
    /// Base symbol (`NIFTY`).
    pub(crate) base: String,
    /// The expiry embedded in the underlying, if any.
    pub(crate) embedded_expiry: Option<String>,
    /// What was quoted.
    pub(crate) quote_symbol: String,
    /// Where it was quoted.
    pub(crate) quote_exchange: Exchange,
    /// Where its options are listed.
    pub(crate) option_exchange: Exchange,
}

impl Underlying {
    /// The underlying of `underlying` requested on `exchange`.
    pub(crate) fn of(underlying: &str, exchange: Exchange) -> Underlying {
        let (base, embedded_expiry) = split_underlying(underlying);
        let quote_exchange = quote_exchange(&base, exchange);
        Underlying {
            quote_symbol: quote_symbol(underlying, &base, embedded_expiry.is_some(), exchange),
            option_exchange: option_exchange(quote_exchange),
            base,
            embedded_expiry,
            quote_exchange,
        }
    }

    /// The underlying's market data, or upstream's error: `Failed to fetch LTP for X. <why>`
    /// with the quote's status.
    pub(crate) fn market_data(&self, service: &OrderService) -> Result<MarketData> {
        service
            .market_data(self.quote_exchange, &self.quote_symbol)
            .map_err(|error| {
                HttpError::new(
                    error.status,
                    format!(
                        "Failed to fetch LTP for {}. {}",
                        self.quote_symbol, error.message
                    ),
                )
            })
    }

    /// The listed strikes of this underlying's `kind` options expiring `expiry` (`DDMMMYY`),
    /// ascending (upstream `get_available_strikes`).
    pub(crate) fn strikes(
        &self,
        service: &OrderService,
        expiry: &str,
        kind: OptionKind,
    ) -> Vec<f64> {
        let prefix = format!("{}{expiry}", self.base);
        let label = expiry_label(expiry);
        let mut strikes: Vec<f64> = service
            .symbol_directory()
            .list(Some(self.option_exchange.as_str()))
            .into_iter()
            .map(|listed| listed.instrument)
            .filter(|instrument| {
                instrument.instrument_type == kind.code()
                    && instrument.expiry_label().eq_ignore_ascii_case(&label)
                    && instrument.symbol.starts_with(&prefix)
                    && instrument.symbol.ends_with(kind.code())
            })
            .map(|instrument| instrument.strike())
            .collect();
        strikes.sort_by(f64::total_cmp);
        strikes.dedup();
        strikes
    }
}

/// 404 with upstream's message for an expiry without strikes.
pub(crate) fn no_strikes(base: &str, expiry: &str) -> HttpError {
    HttpError::not_found(format!(
        "No strikes found for {base} expiring {expiry}. Please check expiry date or update master contract."
    ))
}

/// Resolves `query` to a listed option (upstream `get_option_symbol`), reading the
/// underlying's price unless `known_ltp` is given (a multi-leg order reads it once).
pub(crate) fn resolve(
    service: &OrderService,
    query: &OptionQuery,
    known_ltp: Option<f64>,
) -> Result<ResolvedOption> {
    let underlying = Underlying::of(&query.underlying, query.exchange);
    // An explicit expiry wins over an embedded one (an MCX option may expire before its
    // future).
    let Some(expiry) = query
        .expiry_date
        .clone()
        .or_else(|| underlying.embedded_expiry.clone())
    else {
        return Err(HttpError::bad_request(
            "Expiry date required. Provide via expiry_date parameter or embed in underlying (e.g., NIFTY28OCT25FUT).",
        ));
    };
    let ltp = match known_ltp {
        Some(ltp) => ltp,
        None => underlying.market_data(service)?.ltp,
    };
    let strike = match query.strike_int {
        None => {
            let strikes = underlying.strikes(service, &expiry, query.kind);
            let Some(atm) = nearest_strike(ltp, &strikes) else {
                return Err(no_strikes(&underlying.base, &expiry));
            };
            offset_strike(atm, query.offset, query.kind, &strikes).ok_or_else(|| {
                HttpError::bad_request(format!(
                    "Offset {} is out of range for available strikes. Please use a smaller offset.",
                    offset_text(query.offset)
                ))
            })?
        }
        Some(step) => grid_strike(ltp, step, query.offset, query.kind),
    };
    let symbol = option_symbol(&underlying.base, &expiry, strike, query.kind);
    let exchange = underlying.option_exchange;
    let Some(listed) = service
        .symbol_directory()
        .describe(exchange.as_str(), &symbol)
    else {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Option symbol {symbol} not found in {exchange}. Symbol may not exist or master contract needs update."
            ),
        ));
    };
    let instrument = listed.instrument;
    Ok(ResolvedOption {
        symbol: instrument.symbol,
        exchange: instrument.exchange,
        lotsize: Quantity(instrument.lot_size),
        tick_size: instrument.tick_size,
        freeze_qty: 1,
        underlying_ltp: ltp,
        strike,
    })
}

/// `ATM`, `ITM2`, `OTM10`.
pub(crate) fn offset_text(offset: Offset) -> String {
    match offset {
        Offset::Atm => "ATM".to_string(),
        Offset::Itm(steps) => format!("ITM{steps}"),
        Offset::Otm(steps) => format!("OTM{steps}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_upstreams_pattern() {
        assert_eq!(Offset::parse("atm"), Some(Offset::Atm));
        assert_eq!(Offset::parse("ITM2"), Some(Offset::Itm(2)));
        assert_eq!(Offset::parse("otm50"), Some(Offset::Otm(50)));
        for bad in [
            "ITM+1", "ITM0", "ITM51", "ITM02", "OTM", "ATM1", "XTM1", "ITM-1", "",
        ] {
            assert_eq!(Offset::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn in_the_money_calls_and_out_of_the_money_puts_are_lower_strikes() {
        let strikes: Vec<f64> = (0..11).map(|i| 23_500.0 + 50.0 * f64::from(i)).collect();
        let atm = nearest_strike(23_737.0, &strikes).unwrap();
        assert_eq!(atm, 23_750.0);
        let at = |offset, kind| offset_strike(atm, offset, kind, &strikes);
        assert_eq!(at(Offset::Itm(2), OptionKind::Call), Some(23_650.0));
        assert_eq!(at(Offset::Otm(2), OptionKind::Call), Some(23_850.0));
        assert_eq!(at(Offset::Itm(2), OptionKind::Put), Some(23_850.0));
        assert_eq!(at(Offset::Otm(2), OptionKind::Put), Some(23_650.0));
        assert_eq!(at(Offset::Otm(6), OptionKind::Call), None);
        // Equally near: the lower strike, as Python's min keeps the first.
        assert_eq!(nearest_strike(23_525.0, &strikes), Some(23_500.0));
    }

    #[test]
    fn the_legacy_grid_rounds_as_python() {
        // round(23587.5 / 50) = round(471.75) = 472; round(470.5) = 470 (half to even).
        assert_eq!(
            grid_strike(23_587.5, 50, Offset::Atm, OptionKind::Call),
            23_600.0
        );
        assert_eq!(
            grid_strike(23_525.0, 50, Offset::Atm, OptionKind::Call),
            23_500.0
        );
        assert_eq!(
            grid_strike(23_575.0, 50, Offset::Atm, OptionKind::Call),
            23_600.0
        );
        assert_eq!(
            grid_strike(23_587.5, 50, Offset::Itm(2), OptionKind::Call),
            23_500.0
        );
        assert_eq!(
            grid_strike(23_587.5, 50, Offset::Itm(2), OptionKind::Put),
            23_700.0
        );
    }

    #[test]
    fn underlyings_split_into_base_and_expiry() {
        assert_eq!(
            split_underlying("nifty28oct25fut"),
            ("NIFTY".to_string(), Some("28OCT25".to_string()))
        );
        assert_eq!(
            split_underlying("BANKNIFTY30DEC25"),
            ("BANKNIFTY".to_string(), Some("30DEC25".to_string()))
        );
        assert_eq!(split_underlying("NIFTY"), ("NIFTY".to_string(), None));
        assert_eq!(split_underlying("M&M"), ("M&M".to_string(), None));
        assert_eq!(expiry_label("28OCT25"), "28-OCT-25");
        assert_eq!(
            option_symbol("VEDL", "25APR24", 292.5, OptionKind::Call),
            "VEDL25APR24292.5CE"
        );
        assert_eq!(
            option_symbol("NIFTY", "28MAR24", 20_800.0, OptionKind::Put),
            "NIFTY28MAR2420800PE"
        );
    }

    #[test]
    fn exchanges_map_as_upstream() {
        let ex = |code| Exchange::parse(code).unwrap();
        assert_eq!(quote_exchange("NIFTY", ex("NFO")), ex("NSE_INDEX"));
        assert_eq!(quote_exchange("SENSEX", ex("BFO")), ex("BSE_INDEX"));
        assert_eq!(quote_exchange("SBIN", ex("NFO")), ex("NSE"));
        assert_eq!(quote_exchange("NIFTY", ex("NSE_INDEX")), ex("NSE_INDEX"));
        assert_eq!(option_exchange(ex("NSE_INDEX")), ex("NFO"));
        assert_eq!(option_exchange(ex("BSE")), ex("BFO"));
        assert_eq!(option_exchange(ex("MCX")), ex("MCX"));
    }
}
