//! `optiongreeks` and `multioptiongreeks` (upstream restx_api/option_greeks.py,
//! restx_api/multi_option_greeks.py, services/option_greeks_service.py): the implied
//! volatility of an option's last price and its Black-76 greeks, on the forward of its
//! expiry (the synthetic future `ATM strike + ATM call - ATM put`, else the underlying's
//! price).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use oa_marketdata_core::options::{Greeks, OptionInputs, OptionKind};
use serde::Serialize;
use serde_json::Value;

use super::chain::synthetic_future;
use super::{expiry_instant, india_text, parse_symbol_date, round_to, time_to_expiry};
use crate::contracts::F_AND_O_EXCHANGES;
use crate::error::HttpError;
use crate::fields::Fields;
use crate::routes::{ApiBody, AppState};
use crate::service::OrderService;
use crate::types::Exchange;

type Result<T> = std::result::Result<T, HttpError>;

/// Most symbols one multioptiongreeks request may name (upstream's schema: 1 to 50).
const MAX_SYMBOLS: usize = 50;

/// NSE indices (upstream option_greeks_service.py `NSE_INDEX_SYMBOLS`).
const NSE_INDEX_SYMBOLS: &[&str] = &[
    "NIFTY",
    "BANKNIFTY",
    "FINNIFTY",
    "MIDCPNIFTY",
    "NIFTYNXT50",
    "NIFTYIT",
    "NIFTYPHARMA",
    "NIFTYBANK",
];
const BSE_INDEX_SYMBOLS: &[&str] = &["SENSEX", "BANKEX", "SENSEX50"];
const CURRENCY_SYMBOLS: &[&str] = &["USDINR", "EURINR", "GBPINR", "JPYINR"];

/// An option symbol's terms: `NIFTY28NOV2424000CE` (upstream `parse_option_symbol`,
/// pattern `([A-Z]+)(\d{2})([A-Z]{3})(\d{2})([\d.]+)(CE|PE)` from the start).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OptionTerms {
    /// Base symbol.
    pub(crate) base: String,
    /// `DDMMMYY`.
    pub(crate) expiry_code: String,
    /// Expiry instant.
    pub(crate) expiry: DateTime<Utc>,
    /// Strike.
    pub(crate) strike: f64,
    /// Call or put.
    pub(crate) kind: OptionKind,
}

/// Parses an option symbol, or upstream's message.
pub(crate) fn parse_option_symbol(
    symbol: &str,
    exchange: &str,
    expiry_time: Option<(u32, u32)>,
) -> std::result::Result<OptionTerms, String> {
    let upper = symbol.to_ascii_uppercase();
    let invalid = || {
        format!("Failed to parse option symbol {symbol}: Invalid option symbol format: {symbol}")
    };
    let base_len = upper
        .find(|c: char| !c.is_ascii_uppercase())
        .unwrap_or(upper.len());
    let rest = &upper[base_len..];
    let date = rest.get(..7).ok_or_else(invalid)?;
    let strike_and_kind = &rest[7..];
    let strike_len = strike_and_kind
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(strike_and_kind.len());
    let (strike_text, kind_text) = strike_and_kind.split_at(strike_len);
    let kind = kind_text
        .get(..2)
        .and_then(OptionKind::parse)
        .ok_or_else(invalid)?;
    if base_len == 0 || strike_len == 0 {
        return Err(invalid());
    }
    let expiry_date = parse_symbol_date(date).ok_or_else(invalid)?;
    let strike: f64 = strike_text.parse().map_err(|_| invalid())?;
    let expiry = expiry_instant(expiry_date, exchange, expiry_time).ok_or_else(invalid)?;
    Ok(OptionTerms {
        base: upper[..base_len].to_string(),
        expiry_code: date.to_string(),
        expiry,
        strike,
        kind,
    })
}

/// Where an option's underlying is quoted (upstream `get_underlying_exchange`).
fn underlying_exchange(base: &str, option_exchange: &str) -> &'static str {
    if NSE_INDEX_SYMBOLS.contains(&base) {
        "NSE_INDEX"
    } else if BSE_INDEX_SYMBOLS.contains(&base) {
        "BSE_INDEX"
    } else if CURRENCY_SYMBOLS.contains(&base) || option_exchange == "CDS" {
        "CDS"
    } else if option_exchange == "MCX" {
        "MCX"
    } else if option_exchange == "CRYPTO" {
        "CRYPTO"
    } else {
        "NSE"
    }
}

/// Reads `expiry_time` (`HH:MM`), with upstream's messages.
fn read_expiry_time(fields: &Fields) -> Result<Option<(u32, u32)>> {
    let Some(text) = fields.opt_string("expiry_time")? else {
        return Ok(None);
    };
    let parts: Vec<&str> = text.split(':').collect();
    let [hour, minute] = parts.as_slice() else {
        return Err(fields.error(
            "expiry_time",
            &format!(
                "Invalid expiry_time format: {text}. Use HH:MM format (e.g., '15:30', '19:00')"
            ),
        ));
    };
    match (hour.trim().parse::<u32>(), minute.trim().parse::<u32>()) {
        (Ok(hour), Ok(minute)) if hour <= 23 && minute <= 59 => Ok(Some((hour, minute))),
        (Ok(_), Ok(_)) => Err(fields.error(
            "expiry_time",
            &format!("Invalid expiry_time values: {text}. Hour must be 0-23, minute must be 0-59"),
        )),
        _ => Err(fields.error(
            "expiry_time",
            &format!("Failed to parse expiry_time '{text}'"),
        )),
    }
}

/// Reads `interest_rate` (an annual percentage, 0 to 100).
pub(crate) fn read_interest_rate(fields: &Fields) -> Result<Option<f64>> {
    match fields.opt_price("interest_rate")? {
        Some(rate) if rate > 100.0 => Err(fields.error(
            "interest_rate",
            &format!("expected a percentage from 0 to 100, got {rate}"),
        )),
        rate => Ok(rate),
    }
}

/// Delta, gamma, theta and vega in upstream's keys and rounding: the greeks optiongreeks
/// and a chain leg both report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Sensitivities {
    /// d price / d forward (4 decimals).
    pub(crate) delta: f64,
    /// d delta / d forward (6 decimals).
    pub(crate) gamma: f64,
    /// Per calendar day (4 decimals).
    pub(crate) theta: f64,
    /// Per volatility point (4 decimals).
    pub(crate) vega: f64,
}

impl Sensitivities {
    /// `greeks` rounded as upstream rounds them.
    fn rounded(greeks: &Greeks) -> Sensitivities {
        Sensitivities {
            delta: round_to(greeks.delta, 4),
            gamma: round_to(greeks.gamma, 6),
            theta: round_to(greeks.theta, 4),
            vega: round_to(greeks.vega, 4),
        }
    }

    /// Theoretical values: `delta`, the rest 0.
    fn delta_only(delta: f64) -> Sensitivities {
        Sensitivities {
            delta,
            gamma: 0.0,
            theta: 0.0,
            vega: 0.0,
        }
    }
}

/// The greeks of an option, in upstream's keys and rounding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GreekValues {
    /// Delta, gamma, theta, vega.
    #[serde(flatten)]
    pub(crate) sensitivities: Sensitivities,
    /// Per rate point (6 decimals).
    pub(crate) rho: f64,
}

impl GreekValues {
    /// The greeks of an option with no time value: delta 1 (call) or -1 (put), the rest 0.
    fn theoretical(kind: OptionKind) -> GreekValues {
        GreekValues {
            sensitivities: Sensitivities::delta_only(if kind == OptionKind::Call {
                1.0
            } else {
                -1.0
            }),
            rho: 0.0,
        }
    }
}

/// The answer of optiongreeks (and each item of multioptiongreeks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OptionGreeks {
    /// Always `success` (failures are errors).
    pub(crate) status: &'static str,
    /// Option symbol.
    pub(crate) symbol: String,
    /// Its exchange.
    pub(crate) exchange: String,
    /// Base symbol.
    pub(crate) underlying: String,
    /// Strike (2 decimals).
    pub(crate) strike: f64,
    /// `CE` or `PE`.
    pub(crate) option_type: &'static str,
    /// `DD-Mon-YYYY`.
    pub(crate) expiry_date: String,
    /// Days to expiry (4 decimals).
    pub(crate) days_to_expiry: f64,
    /// The forward used (2 decimals).
    pub(crate) spot_price: f64,
    /// The option's price (2 decimals).
    pub(crate) option_price: f64,
    /// Intrinsic value, reported only for an option without time value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) intrinsic_value: Option<f64>,
    /// Time value, reported only for an option without time value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) time_value: Option<f64>,
    /// Annual rate, percent.
    pub(crate) interest_rate: f64,
    /// Implied volatility, percent (2 decimals); 0 without time value.
    pub(crate) implied_volatility: f64,
    /// The greeks.
    pub(crate) greeks: GreekValues,
    /// Why the greeks are theoretical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<&'static str>,
}

/// Upstream `calculate_greeks`: the implied volatility of `option_price` on `forward` and
/// its greeks; an option without time value (or whose volatility cannot be implied) gets
/// theoretical greeks and a note.
pub(crate) fn calculate_greeks(
    symbol: &str,
    exchange: &str,
    terms: &OptionTerms,
    forward: f64,
    option_price: f64,
    interest_rate: Option<f64>,
    now: DateTime<Utc>,
) -> Result<OptionGreeks> {
    let (years, days) = time_to_expiry(terms.expiry, now);
    let expiry_text = india_text(terms.expiry, "%d-%b-%Y");
    if years <= 0.0 {
        return Err(HttpError::bad_request(format!(
            "Option has expired on {expiry_text}"
        )));
    }
    let rate = interest_rate.unwrap_or(0.0);
    if forward <= 0.0 || option_price <= 0.0 {
        return Err(HttpError::bad_request(
            "Spot price and option price must be positive",
        ));
    }
    if terms.strike <= 0.0 {
        return Err(HttpError::bad_request("Strike price must be positive"));
    }
    let inputs = OptionInputs {
        kind: terms.kind,
        forward,
        strike: terms.strike,
        years,
        rate: rate / 100.0,
        volatility: 0.2,
    };
    let intrinsic = inputs.intrinsic();
    let time_value = option_price - intrinsic;
    let answer = |implied_volatility: f64, greeks: GreekValues, note: Option<&'static str>| {
        let theoretical = note.is_some();
        OptionGreeks {
            status: "success",
            symbol: symbol.to_string(),
            exchange: exchange.to_string(),
            underlying: terms.base.clone(),
            strike: round_to(terms.strike, 2),
            option_type: terms.kind.code(),
            expiry_date: expiry_text.clone(),
            days_to_expiry: round_to(days, 4),
            spot_price: round_to(forward, 2),
            option_price: round_to(option_price, 2),
            intrinsic_value: theoretical.then(|| round_to(intrinsic, 2)),
            time_value: theoretical.then(|| round_to(time_value.max(0.0), 2)),
            interest_rate: round_to(rate, 2),
            implied_volatility,
            greeks,
            note,
        }
    };
    if time_value <= 0.0 || (intrinsic > 0.0 && time_value < 0.01) {
        return Ok(answer(
            0.0,
            GreekValues::theoretical(terms.kind),
            Some("Deep ITM option with no time value - theoretical Greeks returned"),
        ));
    }
    let Some(volatility) = inputs.implied_volatility(option_price) else {
        return Ok(answer(
            0.0,
            GreekValues::theoretical(terms.kind),
            Some("IV calculation not possible - theoretical deep ITM Greeks returned"),
        ));
    };
    let greeks = OptionInputs {
        volatility,
        ..inputs
    }
    .greeks();
    Ok(answer(
        round_to(volatility * 100.0, 2),
        GreekValues {
            sensitivities: Sensitivities::rounded(&greeks),
            rho: round_to(greeks.rho, 6),
        },
        None,
    ))
}

/// The Black-76 forward of an option's expiry: the synthetic future of its underlying
/// (upstream `_resolve_forward_price`), `None` when it cannot be computed.
fn synthetic_forward(
    service: &OrderService,
    base: &str,
    spot_exchange: Exchange,
    expiry_code: &str,
) -> Option<f64> {
    synthetic_future(service, base, spot_exchange, expiry_code)
        .ok()
        .map(|future| future.synthetic_future_price)
}

/// One option of a greeks request.
struct GreeksRequest {
    symbol: String,
    exchange: Exchange,
    underlying_symbol: Option<String>,
    underlying_exchange: Option<Exchange>,
}

/// Reads `symbol`, `exchange` (F&O only), `underlying_symbol`, `underlying_exchange`.
fn read_greeks_request(fields: &Fields) -> Result<GreeksRequest> {
    let symbol = fields.required_string("symbol")?.to_ascii_uppercase();
    let exchange = fields.exchange("exchange")?;
    fields.check_one_of("exchange", exchange.as_str(), F_AND_O_EXCHANGES)?;
    let underlying_symbol = fields
        .opt_string("underlying_symbol")?
        .map(|text| text.to_ascii_uppercase());
    let underlying_exchange = match fields.opt_string("underlying_exchange")? {
        Some(_) => Some(fields.exchange("underlying_exchange")?),
        None => None,
    };
    Ok(GreeksRequest {
        symbol,
        exchange,
        underlying_symbol,
        underlying_exchange,
    })
}

/// 401 for a bad key, as upstream's greeks endpoints answer it.
async fn authenticate_401(app: &AppState, fields: &Fields) -> Result<String> {
    app.authenticate(fields).await.map_err(|mut error| {
        if error.status == StatusCode::FORBIDDEN {
            error.status = StatusCode::UNAUTHORIZED;
        }
        error
    })
}

/// The last price of `symbol` for optiongreeks, with upstream's messages: `Failed to fetch
/// {what}: ...` when it cannot be read, 404 `missing` when it is not positive.
fn required_ltp(
    service: &OrderService,
    exchange: Exchange,
    symbol: &str,
    what: &str,
    missing: &str,
) -> Result<f64> {
    let data = service.market_data(exchange, symbol).map_err(|error| {
        HttpError::new(
            error.status,
            format!("Failed to fetch {what}: {}", error.message),
        )
    })?;
    if data.ltp <= 0.0 {
        return Err(HttpError::not_found(missing));
    }
    Ok(data.ltp)
}

/// optiongreeks: the greeks of one option (upstream `get_option_greeks`).
pub(crate) async fn optiongreeks(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<axum::Json<OptionGreeks>> {
    let fields = Fields::new(
        body,
        &[
            "apikey",
            "symbol",
            "exchange",
            "interest_rate",
            "forward_price",
            "underlying_symbol",
            "underlying_exchange",
            "expiry_time",
        ],
    )?;
    let request = read_greeks_request(&fields)?;
    let interest_rate = read_interest_rate(&fields)?;
    let forward_price = fields.opt_price("forward_price")?;
    let expiry_time = read_expiry_time(&fields)?;
    authenticate_401(&app, &fields).await?;
    let service = &app.service;
    let exchange = request.exchange.as_str();
    let terms = parse_option_symbol(&request.symbol, exchange, expiry_time)
        .map_err(HttpError::bad_request)?;
    let forward = match forward_price.filter(|price| *price > 0.0) {
        Some(price) => price,
        None => {
            let spot_symbol = request
                .underlying_symbol
                .clone()
                .unwrap_or_else(|| terms.base.clone());
            let spot_exchange = request.underlying_exchange.unwrap_or_else(|| {
                Exchange::parse(underlying_exchange(&terms.base, exchange))
                    .unwrap_or(request.exchange)
            });
            let synthetic = if request
                .underlying_symbol
                .as_ref()
                .is_none_or(|symbol| *symbol == terms.base)
            {
                synthetic_forward(service, &terms.base, spot_exchange, &terms.expiry_code)
            } else {
                None
            };
            match synthetic {
                Some(price) => price,
                None => required_ltp(
                    service,
                    spot_exchange,
                    &spot_symbol,
                    "underlying price",
                    "Underlying LTP not available",
                )?,
            }
        }
    };
    let option_ltp = required_ltp(
        service,
        request.exchange,
        &request.symbol,
        "option price",
        "Option LTP not available",
    )?;
    calculate_greeks(
        &request.symbol,
        exchange,
        &terms,
        forward,
        option_ltp,
        interest_rate,
        Utc::now(),
    )
    .map(axum::Json)
}

/// The counts of a multioptiongreeks answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct GreeksSummary {
    /// Symbols asked.
    pub(crate) total: usize,
    /// Answered.
    pub(crate) success: usize,
    /// Failed.
    pub(crate) failed: usize,
}

/// The answer of multioptiongreeks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct MultiGreeks {
    /// `success`, `partial` (some failed) or `error` (all failed).
    pub(crate) status: &'static str,
    /// One item per symbol, in request order: an [`OptionGreeks`] or an error item.
    pub(crate) data: Vec<Value>,
    /// Counts.
    pub(crate) summary: GreeksSummary,
    /// The first (up to three) distinct failure messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) message: Option<String>,
}

/// An error item of multioptiongreeks.
fn error_item(symbol: &str, exchange: &str, message: &str) -> Value {
    serde_json::json!({"status": "error", "symbol": symbol, "exchange": exchange, "message": message})
}

/// multioptiongreeks: the greeks of up to 50 options (upstream `get_multi_option_greeks`):
/// one forward per underlying and expiry, each option's own price; failures are items.
pub(crate) async fn multioptiongreeks(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<axum::Json<MultiGreeks>> {
    let fields = Fields::new(body, &["apikey", "symbols", "interest_rate", "expiry_time"])?;
    let requests = fields
        .objects(
            "symbols",
            MAX_SYMBOLS,
            &[
                "symbol",
                "exchange",
                "underlying_symbol",
                "underlying_exchange",
            ],
        )?
        .map(|item| read_greeks_request(&item?))
        .collect::<Result<Vec<_>>>()?;
    let interest_rate = read_interest_rate(&fields)?;
    let expiry_time = read_expiry_time(&fields)?;
    authenticate_401(&app, &fields).await?;
    let service = &app.service;
    let now = Utc::now();
    let mut forwards: HashMap<(String, Exchange, String), Option<f64>> = HashMap::new();
    let mut spots: HashMap<(String, Exchange), Option<f64>> = HashMap::new();
    let mut data = Vec::with_capacity(requests.len());
    let (mut success, mut failed) = (0, 0);
    for request in &requests {
        let exchange = request.exchange.as_str();
        let terms = match parse_option_symbol(&request.symbol, exchange, expiry_time) {
            Ok(terms) => terms,
            Err(message) => {
                failed += 1;
                data.push(error_item(&request.symbol, exchange, &message));
                continue;
            }
        };
        let spot_symbol = request
            .underlying_symbol
            .clone()
            .unwrap_or_else(|| terms.base.clone());
        let spot_exchange = request.underlying_exchange.unwrap_or_else(|| {
            Exchange::parse(underlying_exchange(&terms.base, exchange)).unwrap_or(request.exchange)
        });
        let forward = if request
            .underlying_symbol
            .as_ref()
            .is_none_or(|symbol| *symbol == terms.base)
        {
            *forwards
                .entry((terms.base.clone(), spot_exchange, terms.expiry_code.clone()))
                .or_insert_with(|| {
                    synthetic_forward(service, &terms.base, spot_exchange, &terms.expiry_code)
                })
        } else {
            None
        };
        let spot = *spots
            .entry((spot_symbol.clone(), spot_exchange))
            .or_insert_with(|| {
                service
                    .market_data(spot_exchange, &spot_symbol)
                    .ok()
                    .map(|data| data.ltp)
                    .filter(|ltp| *ltp > 0.0)
            });
        let Some(forward) = forward.or(spot) else {
            failed += 1;
            data.push(error_item(
                &request.symbol,
                exchange,
                &format!("Failed to fetch underlying price for {spot_symbol}"),
            ));
            continue;
        };
        let option_price = service
            .market_data(request.exchange, &request.symbol)
            .ok()
            .map(|data| data.ltp)
            .filter(|ltp| *ltp > 0.0);
        let Some(option_price) = option_price else {
            failed += 1;
            data.push(error_item(
                &request.symbol,
                exchange,
                "Option LTP not available",
            ));
            continue;
        };
        match calculate_greeks(
            &request.symbol,
            exchange,
            &terms,
            forward,
            option_price,
            interest_rate,
            now,
        ) {
            Ok(greeks) => {
                success += 1;
                data.push(crate::responses::to_value(&greeks));
            }
            Err(error) => {
                failed += 1;
                data.push(error_item(&request.symbol, exchange, &error.message));
            }
        }
    }
    let status = match (failed, success) {
        (0, _) => "success",
        (_, 0) => "error",
        _ => "partial",
    };
    let mut messages: Vec<&str> = Vec::new();
    for item in &data {
        if item["status"] == "error"
            && let Some(message) = item["message"].as_str()
            && !messages.contains(&message)
        {
            messages.push(message);
        }
    }
    let joined = messages
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join("; ");
    let message = match status {
        "success" => None,
        "error" => Some(format!("All option Greeks calculations failed: {joined}")),
        _ => Some(format!(
            "{failed} option Greeks calculation(s) failed: {joined}"
        )),
    };
    Ok(axum::Json(MultiGreeks {
        status,
        data,
        summary: GreeksSummary {
            total: requests.len(),
            success,
            failed,
        },
        message,
    }))
}

/// The greeks of a chain leg (upstream `calculate_chain_greeks`): `None` for a leg without
/// a price; theoretical values (IV 0, delta ±1 in the money, else 0) where the volatility
/// cannot be implied.
pub(crate) fn chain_leg_greeks(
    kind: OptionKind,
    forward: f64,
    strike: f64,
    years: f64,
    rate_percent: f64,
    price: f64,
) -> Option<ChainGreeks> {
    if price <= 0.0 || strike <= 0.0 || forward <= 0.0 || years <= 0.0 {
        return None;
    }
    let inputs = OptionInputs {
        kind,
        forward,
        strike,
        years,
        rate: rate_percent / 100.0,
        volatility: 0.2,
    };
    let intrinsic = inputs.intrinsic();
    let time_value = price - intrinsic;
    let solvable = !(time_value <= 0.0 || (intrinsic > 0.0 && time_value < 0.01));
    let volatility = if solvable {
        inputs
            .implied_volatility(price)
            .filter(|sigma| *sigma > 0.0)
    } else {
        None
    };
    Some(match volatility {
        Some(volatility) => {
            let greeks = OptionInputs {
                volatility,
                ..inputs
            }
            .greeks();
            ChainGreeks {
                implied_volatility: round_to(volatility * 100.0, 2),
                sensitivities: Sensitivities::rounded(&greeks),
            }
        }
        None => ChainGreeks {
            implied_volatility: 0.0,
            sensitivities: Sensitivities::delta_only(match (intrinsic > 0.0, kind) {
                (false, _) => 0.0,
                (true, OptionKind::Call) => 1.0,
                (true, OptionKind::Put) => -1.0,
            }),
        },
    })
}

/// The greeks keys a chain leg gains with `with_greeks`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ChainGreeks {
    /// Percent.
    pub(crate) implied_volatility: f64,
    /// Delta, gamma, theta, vega.
    #[serde(flatten)]
    pub(crate) sensitivities: Sensitivities,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        // 30 days before the 15:30 IST expiry of 30DEC25.
        Utc.with_ymd_and_hms(2025, 11, 30, 10, 0, 0).unwrap()
    }

    #[test]
    fn option_symbols_parse_as_upstream() {
        let terms = parse_option_symbol("NIFTY30DEC2524000CE", "NFO", None).unwrap();
        assert_eq!(
            (
                terms.base.as_str(),
                terms.expiry_code.as_str(),
                terms.strike,
                terms.kind
            ),
            ("NIFTY", "30DEC25", 24_000.0, OptionKind::Call)
        );
        let terms = parse_option_symbol("USDINR30DEC2583.5PE", "CDS", None).unwrap();
        assert_eq!((terms.strike, terms.kind), (83.5, OptionKind::Put));
        assert_eq!(
            parse_option_symbol("SBIN", "NFO", None).unwrap_err(),
            "Failed to parse option symbol SBIN: Invalid option symbol format: SBIN"
        );
        assert!(parse_option_symbol("NIFTY30DEC25FUT", "NFO", None).is_err());
    }

    #[test]
    fn greeks_reprice_the_option_and_are_reported_in_upstreams_units() {
        let terms = parse_option_symbol("NIFTY30DEC2524000CE", "NFO", None).unwrap();
        let model = OptionInputs {
            kind: OptionKind::Call,
            forward: 24_100.0,
            strike: 24_000.0,
            years: 30.0 / 365.0,
            rate: 0.0,
            volatility: 0.14,
        };
        let price = model.price();
        let answer = calculate_greeks(
            "NIFTY30DEC2524000CE",
            "NFO",
            &terms,
            24_100.0,
            price,
            None,
            now(),
        )
        .unwrap();
        assert_eq!(answer.implied_volatility, 14.0);
        assert_eq!(answer.days_to_expiry, 30.0);
        assert_eq!(answer.expiry_date, "30-Dec-2025");
        let greeks = model.greeks();
        assert_eq!(answer.greeks.sensitivities, Sensitivities::rounded(&greeks));
        assert!(answer.note.is_none() && answer.intrinsic_value.is_none());
        // Below intrinsic value: theoretical greeks.
        let deep = calculate_greeks("X", "NFO", &terms, 25_000.0, 999.0, None, now()).unwrap();
        assert_eq!(deep.greeks, GreekValues::theoretical(OptionKind::Call));
        assert_eq!(deep.intrinsic_value, Some(1000.0));
        assert!(deep.note.is_some());
        // Expired.
        let later = Utc.with_ymd_and_hms(2025, 12, 31, 0, 0, 0).unwrap();
        let error = calculate_greeks("X", "NFO", &terms, 24_100.0, price, None, later).unwrap_err();
        assert_eq!(error.message, "Option has expired on 30-Dec-2025");
    }
}
