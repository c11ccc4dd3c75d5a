//! `optionsymbol` (upstream restx_api/option_symbol.py, services/option_symbol_service.py),
//! `optionchain` (restx_api/option_chain.py, services/option_chain_service.py) and
//! `syntheticfuture` (restx_api/synthetic_future.py, services/synthetic_future_service.py).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use oa_events_core::number::Quantity;
use oa_marketdata_core::options::OptionKind;
use serde::Serialize;

use super::greeks::{ChainGreeks, chain_leg_greeks, read_interest_rate};
use super::resolve::{
    self, Offset, OptionQuery, ResolvedOption, Underlying, nearest_strike, no_strikes,
    option_symbol, required_expiry,
};
use super::{expiry_instant, parse_symbol_date, round_to, time_to_expiry};
use crate::error::HttpError;
use crate::fields::Fields;
use crate::price::MarketData;
use crate::responses::Reply;
use crate::routes::{ApiBody, AppState};
use crate::service::OrderService;
use crate::types::Exchange;

type Result<T> = std::result::Result<T, HttpError>;

/// Most strikes on each side of the money `strike_count` may ask for (upstream's schema).
const MAX_STRIKE_COUNT: u64 = 100;

/// The fields that name an underlying and its option grid, first in every option request.
pub(crate) const OPTION_QUERY_FIELDS: &[&str] = &[
    "apikey",
    "strategy",
    "underlying",
    "exchange",
    "expiry_date",
    "strike_int",
];

/// optionsymbol: the option an underlying, expiry, offset and type name.
pub(crate) async fn optionsymbol(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<ResolvedOption>> {
    let fields = Fields::in_groups(body, &[OPTION_QUERY_FIELDS, &["offset", "option_type"]])?;
    let query = OptionQuery::read(&fields)?;
    app.authenticate(&fields).await?;
    resolve::resolve(&app.service, &query, None).map(Reply::new)
}

/// One side (call or put) of a chain row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ChainLeg {
    /// Option symbol.
    pub(crate) symbol: String,
    /// `ATM`, `ITMn` or `OTMn` for this side.
    pub(crate) label: String,
    /// Last price (0 without a quote).
    pub(crate) ltp: f64,
    /// Best bid.
    pub(crate) bid: f64,
    /// Best ask.
    pub(crate) ask: f64,
    /// Quantity at the best bid.
    pub(crate) bid_qty: Quantity,
    /// Quantity at the best ask.
    pub(crate) ask_qty: Quantity,
    /// Day open.
    pub(crate) open: f64,
    /// Day high.
    pub(crate) high: f64,
    /// Day low.
    pub(crate) low: f64,
    /// Previous close.
    pub(crate) prev_close: f64,
    /// Volume.
    pub(crate) volume: Quantity,
    /// Open interest.
    pub(crate) oi: Quantity,
    /// Lot size.
    pub(crate) lotsize: Quantity,
    /// Price step.
    pub(crate) tick_size: f64,
    /// With `with_greeks`: implied volatility and greeks.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) greeks: Option<ChainGreeks>,
}

/// One strike of the chain: its call and put (`null` where not listed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ChainRow {
    /// Strike.
    pub(crate) strike: f64,
    /// The call.
    pub(crate) ce: Option<ChainLeg>,
    /// The put.
    pub(crate) pe: Option<ChainLeg>,
}

/// The body of optionchain, upstream's keys in its order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OptionChain {
    /// Base symbol.
    pub(crate) underlying: String,
    /// What was quoted for the underlying's price.
    pub(crate) underlying_symbol: String,
    /// Where.
    pub(crate) underlying_exchange: String,
    /// The underlying's last price.
    pub(crate) underlying_ltp: f64,
    /// Its previous close.
    pub(crate) underlying_prev_close: f64,
    /// `DDMMMYY`.
    pub(crate) expiry_date: String,
    /// The expiry instant, epoch seconds.
    pub(crate) expiry_ts: Option<i64>,
    /// The server's clock, epoch seconds.
    pub(crate) server_ts: i64,
    /// The listed strike nearest the underlying's price.
    pub(crate) atm_strike: f64,
    /// Always true (oa always has the quotes).
    pub(crate) quotes_included: bool,
    /// True with `with_greeks`.
    pub(crate) greeks_included: bool,
    /// With `with_greeks`: the forward the greeks use (ATM strike + call - put).
    pub(crate) forward_price: Option<f64>,
    /// Strikes, ascending.
    pub(crate) chain: Vec<ChainRow>,
}

/// Labels of a strike `position` strikes from the money: (call's, put's).
fn labels(position: i64) -> (String, String) {
    match position {
        0 => ("ATM".to_string(), "ATM".to_string()),
        below if below < 0 => (format!("ITM{}", -below), format!("OTM{}", -below)),
        above => (format!("OTM{above}"), format!("ITM{above}")),
    }
}

/// A chain leg from its listing and market data.
fn chain_leg(
    symbol: String,
    label: String,
    lot_size: f64,
    tick_size: f64,
    data: Option<MarketData>,
) -> ChainLeg {
    let data = data.unwrap_or_default();
    ChainLeg {
        symbol,
        label,
        ltp: data.ltp,
        bid: data.bid,
        ask: data.ask,
        bid_qty: Quantity(data.bids.first().map_or(0.0, |level| level.quantity)),
        ask_qty: Quantity(data.asks.first().map_or(0.0, |level| level.quantity)),
        open: data.open,
        high: data.high,
        low: data.low,
        prev_close: data.prev_close,
        volume: Quantity(data.volume),
        oi: Quantity(data.oi),
        lotsize: Quantity(lot_size),
        tick_size,
        greeks: None,
    }
}

/// optionchain: the strikes of an expiry around the money with each side's quote (and,
/// with `with_greeks`, its implied volatility and greeks).
pub(crate) async fn optionchain(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<OptionChain>> {
    let fields = Fields::new(
        body,
        &[
            "apikey",
            "underlying",
            "exchange",
            "expiry_date",
            "strike_count",
            "with_greeks",
            "interest_rate",
        ],
    )?;
    let underlying_text = fields.required_string("underlying")?.to_ascii_uppercase();
    let exchange = fields.exchange("exchange")?;
    let expiry_date = required_expiry(&fields)?;
    let strike_count = match fields.opt_string("strike_count")? {
        None => None,
        Some(_) => {
            let count = fields.positive_integer("strike_count")?;
            if count > MAX_STRIKE_COUNT {
                return Err(fields.error(
                    "strike_count",
                    &format!("expected 1 to {MAX_STRIKE_COUNT}, got {count}"),
                ));
            }
            Some(count as usize)
        }
    };
    let with_greeks = fields.opt_boolean("with_greeks")?.unwrap_or(false);
    let interest_rate = read_interest_rate(&fields)?.unwrap_or(0.0);
    app.authenticate(&fields).await?;
    let service = &app.service;
    let underlying = Underlying::of(&underlying_text, exchange);
    // The chain prefers an embedded expiry (upstream get_option_chain, step 1).
    let expiry = underlying.embedded_expiry.clone().unwrap_or(expiry_date);
    let quote = service
        .market_data(underlying.quote_exchange, &underlying.quote_symbol)
        .map_err(|error| {
            HttpError::new(
                error.status,
                format!(
                    "Failed to fetch LTP for {}: {}",
                    underlying.quote_symbol, error.message
                ),
            )
        })?;
    let strikes = underlying.strikes(service, &expiry, OptionKind::Call);
    let Some(atm) = nearest_strike(quote.ltp, &strikes) else {
        return Err(no_strikes(&underlying.base, &expiry));
    };
    let atm_index = strikes
        .iter()
        .position(|strike| *strike == atm)
        .unwrap_or(0);
    let (start, end) = match strike_count {
        None => (0, strikes.len()),
        Some(count) => (
            atm_index.saturating_sub(count),
            (atm_index + count + 1).min(strikes.len()),
        ),
    };
    let directory = service.symbol_directory();
    let exchange_code = underlying.option_exchange.as_str();
    let mut chain = Vec::with_capacity(end - start);
    for (index, strike) in strikes.iter().enumerate().take(end).skip(start) {
        let (call_label, put_label) = labels(index as i64 - atm_index as i64);
        let leg = |kind: OptionKind, label: String| {
            let symbol = option_symbol(&underlying.base, &expiry, *strike, kind);
            directory.describe(exchange_code, &symbol).map(|listed| {
                let data = service
                    .market_data(underlying.option_exchange, &symbol)
                    .ok();
                let instrument = &listed.instrument;
                chain_leg(
                    symbol,
                    label,
                    instrument.lot_size,
                    instrument.tick_size,
                    data,
                )
            })
        };
        chain.push(ChainRow {
            strike: *strike,
            ce: leg(OptionKind::Call, call_label),
            pe: leg(OptionKind::Put, put_label),
        });
    }
    if chain.iter().all(|row| row.ce.is_none() && row.pe.is_none()) {
        return Err(HttpError::not_found(
            "No valid option symbols found for the given parameters",
        ));
    }
    let now = Utc::now();
    let expiry_instant =
        parse_symbol_date(&expiry).and_then(|date| expiry_instant(date, exchange_code, None));
    let mut forward_price = None;
    if with_greeks {
        let atm_row = chain.iter().find(|row| row.strike == atm);
        let leg_ltp = |leg: Option<&ChainLeg>| leg.map_or(0.0, |leg| leg.ltp);
        let forward = match atm_row {
            Some(row) if leg_ltp(row.ce.as_ref()) > 0.0 && leg_ltp(row.pe.as_ref()) > 0.0 => {
                round_to(atm + leg_ltp(row.ce.as_ref()) - leg_ltp(row.pe.as_ref()), 4)
            }
            _ => quote.ltp,
        };
        forward_price = Some(forward);
        if let Some(instant) = expiry_instant {
            let (years, _) = time_to_expiry(instant, now);
            for row in &mut chain {
                let strike = row.strike;
                for (leg, kind) in [
                    (&mut row.ce, OptionKind::Call),
                    (&mut row.pe, OptionKind::Put),
                ] {
                    if let Some(leg) = leg {
                        leg.greeks =
                            chain_leg_greeks(kind, forward, strike, years, interest_rate, leg.ltp);
                    }
                }
            }
        }
    }
    Ok(Reply::new(OptionChain {
        underlying: underlying.base.clone(),
        underlying_symbol: underlying.quote_symbol.clone(),
        underlying_exchange: underlying.quote_exchange.as_str().to_string(),
        underlying_ltp: quote.ltp,
        underlying_prev_close: quote.prev_close,
        expiry_date: expiry,
        expiry_ts: expiry_instant.map(|instant| instant.timestamp()),
        server_ts: now.timestamp(),
        atm_strike: atm,
        quotes_included: true,
        greeks_included: with_greeks,
        forward_price,
        chain,
    }))
}

/// The body of syntheticfuture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SyntheticFuture {
    /// The underlying as sent.
    pub(crate) underlying: String,
    /// Its last price.
    pub(crate) underlying_ltp: f64,
    /// The expiry as sent (`DDMMMYY`).
    pub(crate) expiry: String,
    /// The at-the-money strike.
    pub(crate) atm_strike: f64,
    /// ATM strike + ATM call - ATM put, 2 decimals.
    pub(crate) synthetic_future_price: f64,
}

/// The synthetic future of an underlying's expiry (upstream `calculate_synthetic_future`):
/// the ATM call and put, resolved as optionsymbol resolves them, and their last prices.
pub(crate) fn synthetic_future(
    service: &OrderService,
    underlying: &str,
    exchange: Exchange,
    expiry: &str,
) -> Result<SyntheticFuture> {
    let query = |kind| OptionQuery {
        underlying: underlying.to_ascii_uppercase(),
        exchange,
        expiry_date: Some(expiry.to_string()),
        strike_int: None,
        offset: Offset::Atm,
        kind,
    };
    let call = resolve::resolve(service, &query(OptionKind::Call), None)?;
    let put = resolve::resolve(service, &query(OptionKind::Put), Some(call.underlying_ltp))?;
    let ltp = |option: &ResolvedOption| {
        Exchange::parse(&option.exchange)
            .and_then(|exchange| service.market_data(exchange, &option.symbol).ok())
            .map(|data| data.ltp)
            .filter(|ltp| *ltp > 0.0)
    };
    let Some(call_ltp) = ltp(&call) else {
        return Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Could not fetch LTP for Call option: {}", call.symbol),
        ));
    };
    let Some(put_ltp) = ltp(&put) else {
        return Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Could not fetch LTP for Put option: {}", put.symbol),
        ));
    };
    Ok(SyntheticFuture {
        underlying: underlying.to_string(),
        underlying_ltp: call.underlying_ltp,
        expiry: expiry.to_string(),
        atm_strike: call.strike,
        synthetic_future_price: round_to(call.strike + call_ltp - put_ltp, 2),
    })
}

/// syntheticfuture: ATM strike + ATM call - ATM put for an expiry.
pub(crate) async fn syntheticfuture(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<SyntheticFuture>> {
    let fields = Fields::new(body, &["apikey", "underlying", "exchange", "expiry_date"])?;
    let underlying = fields.required_string("underlying")?;
    let exchange = fields.exchange("exchange")?;
    let expiry = required_expiry(&fields)?;
    app.authenticate(&fields).await?;
    synthetic_future(&app.service, &underlying, exchange, &expiry).map(Reply::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strikes_below_the_money_are_in_the_money_calls() {
        assert_eq!(labels(0), ("ATM".to_string(), "ATM".to_string()));
        assert_eq!(labels(-2), ("ITM2".to_string(), "OTM2".to_string()));
        assert_eq!(labels(3), ("OTM3".to_string(), "ITM3".to_string()));
    }
}
