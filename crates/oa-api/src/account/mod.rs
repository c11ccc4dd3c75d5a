//! OpenAlgo's account and calendar calls:
//!
//! - `holdings` (upstream restx_api/holdings.py): CNC positions carried over from earlier
//!   sessions (`crate::service::holdings`, routed as the other reads of the key's user);
//! - `margin` (restx_api/margin.py, services/margin_service.py): the margin a basket of
//!   orders would block under the sandbox's rules (`quantity x price / leverage` of the
//!   product, the price a MARKET order would fill at now);
//! - `market/holidays` and `market/timings` (restx_api/market_holidays.py,
//!   restx_api/market_timings.py, services/market_calendar_service.py): the exchange
//!   calendar of [`calendar`].

pub(crate) mod calendar;

use axum::extract::State;
use chrono::{Datelike, NaiveDate};
use oa_marketdata_core::symbols::round_to;
use serde::Serialize;

use crate::config::Leverage;
use crate::engine::margin::placement_price;
use crate::error::HttpError;
use crate::fields::Fields;
use crate::price::Quote;
use crate::responses::{Data, Reply};
use crate::routes::{ApiBody, AppState};
use crate::types::{Action, PriceType, Product};
use calendar::{ExchangeWindow, Holiday, MarketCalendar};

type Result<T> = std::result::Result<T, HttpError>;

/// Most positions one margin request may name (upstream: 50).
const MAX_MARGIN_POSITIONS: usize = 50;

/// What the account calls read besides the order service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AccountSettings {
    /// The exchange calendar.
    pub(crate) calendar: MarketCalendar,
    /// The sandbox's leverage per product.
    pub(crate) leverage: Leverage,
}

/// The body of margin, in the keys upstream's broker margin mappings answer with
/// (broker/*/mapping/margin_data.py: `total_margin_required`, `span_margin`,
/// `exposure_margin`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct MarginData {
    /// What the basket would block, rupees (2 decimals).
    pub(crate) total_margin_required: f64,
    /// The part for futures and sold options (the positions a broker charges SPAN on).
    pub(crate) span_margin: f64,
    /// Always 0: the sandbox's rule has no exposure margin.
    pub(crate) exposure_margin: f64,
}

/// margin: the sum over the positions of `quantity x price / leverage`, the leverage as
/// upstream's sandbox chooses it ([`Leverage::of`]: equity by product, futures, options by
/// side), each
/// priced as the sandbox prices a new order (MARKET at the current ask or bid, LIMIT and SL
/// at `price`, SL-M at `trigger_price`), from a flat position.
pub(crate) async fn margin(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<Data<MarginData>>> {
    let fields = Fields::new(body, &["apikey", "positions"])?;
    let items = fields.objects(
        "positions",
        MAX_MARGIN_POSITIONS,
        &[
            "symbol",
            "exchange",
            "action",
            "quantity",
            "product",
            "pricetype",
            "price",
            "trigger_price",
        ],
    )?;
    let mut positions = Vec::new();
    for (index, item) in items.enumerate() {
        let path = format!("positions[{index}]");
        let item = item?;
        let exchange = item.exchange("exchange")?;
        let symbol = item.required_string("symbol")?.to_ascii_uppercase();
        let action = item.choice::<Action>("action")?;
        let quantity = item.quantity("quantity", exchange, false, None)?;
        let product = item.choice::<Product>("product")?;
        let pricetype = item.choice::<PriceType>("pricetype")?;
        let price = item.opt_price("price")?.unwrap_or(0.0);
        let trigger_price = item.opt_price("trigger_price")?.unwrap_or(0.0);
        positions.push((
            path,
            exchange,
            symbol,
            action,
            quantity,
            product,
            pricetype,
            price,
            trigger_price,
        ));
    }
    app.authenticate(&fields).await?;
    let (mut total, mut span) = (0.0, 0.0);
    for (path, exchange, symbol, action, quantity, product, pricetype, price, trigger_price) in
        positions
    {
        if !app.service.is_listed(exchange, &symbol) {
            return Err(HttpError::bad_request(format!(
                "{path}.symbol: {symbol} is not a known symbol on exchange {exchange}"
            )));
        }
        let quote = match pricetype {
            PriceType::Market => {
                let data = app.service.market_data(exchange, &symbol)?;
                Quote {
                    ltp: data.ltp,
                    bid: (data.bid > 0.0).then_some(data.bid),
                    ask: (data.ask > 0.0).then_some(data.ask),
                }
            }
            _ => Quote::default(),
        };
        let at = placement_price(pricetype, action, price, trigger_price, &quote);
        if at <= 0.0 {
            let field = if pricetype == PriceType::SlM {
                "trigger_price"
            } else {
                "price"
            };
            return Err(HttpError::bad_request(format!(
                "{path}.{field}: expected a number > 0 for {pricetype} orders, got {at}"
            )));
        }
        let margin = quantity * at / app.account.leverage.of(exchange, &symbol, product, action);
        total += margin;
        if Leverage::charges_span(exchange, &symbol, action) {
            span += margin;
        }
    }
    Ok(Reply::new(Data {
        data: MarginData {
            total_margin_required: round_to(total, 2),
            span_margin: round_to(span, 2),
            exposure_margin: 0.0,
        },
    }))
}

/// The body of market/holidays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Holidays {
    /// The year.
    pub(crate) year: i32,
    /// Always `Asia/Kolkata`.
    pub(crate) timezone: &'static str,
    /// The holidays, by date.
    pub(crate) data: Vec<Holiday>,
}

/// The years the calendar answers for (upstream's schema: 2020 to 2050).
const YEARS: std::ops::RangeInclusive<i32> = 2020..=2050;

/// market/holidays: the holidays of a year (default: this year in India).
pub(crate) async fn holidays(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<Holidays>> {
    let fields = Fields::new(body, &["apikey", "year"])?;
    let year = match fields.opt_string("year")? {
        None => oa_marketdata_core::option_universe::today_in_india().year(),
        Some(text) => match text.parse::<i32>() {
            Ok(year) if YEARS.contains(&year) => year,
            _ => {
                return Err(fields.error(
                    "year",
                    &format!("expected a year from 2020 to 2050, got {text:?}"),
                ));
            }
        },
    };
    app.authenticate(&fields).await?;
    Ok(Reply::new(Holidays {
        year,
        timezone: "Asia/Kolkata",
        data: app.account.calendar.holidays(year),
    }))
}

/// market/timings: each exchange's session on a date (`data` empty when all are closed).
pub(crate) async fn timings(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<Data<Vec<ExchangeWindow>>>> {
    let fields = Fields::new(body, &["apikey", "date"])?;
    let text = fields.required_string("date")?;
    let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|_| fields.error("date", &format!("expected a date YYYY-MM-DD, got {text:?}")))?;
    let (first, last) = (
        NaiveDate::from_ymd_opt(*YEARS.start(), 1, 1),
        NaiveDate::from_ymd_opt(*YEARS.end(), 12, 31),
    );
    if first.is_some_and(|first| date < first) || last.is_some_and(|last| date > last) {
        return Err(HttpError::bad_request(
            "Date must be between 2020-01-01 and 2050-12-31",
        ));
    }
    app.authenticate(&fields).await?;
    Ok(Reply::new(Data {
        data: app.account.calendar.timings(date),
    }))
}
