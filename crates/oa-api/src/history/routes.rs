//! `history` (POST, upstream restx_api/history.py) and `ticker/<exchange:symbol>` (GET,
//! upstream restx_api/ticker.py): candles of one instrument between two Indian dates,
//! aggregated from the stored 1-minute bars.

use std::collections::HashMap;

use super::SECONDS_PER_DAY;
use super::json::CandlesJson;
use crate::error::HttpError;
use crate::fields::Fields;
use crate::routes::{ApiBody, AppState};
use crate::service::store_error;
use crate::store::BarRange;
use crate::types::Exchange;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use oa_marketdata_core::candles::{Bar, IST_OFFSET_SECONDS, Interval};

/// The fields of a candle request (`ticker`'s query, as `history` names them).
const CANDLE_FIELDS: &[&str] = &[
    "apikey",
    "symbol",
    "exchange",
    "interval",
    "start_date",
    "end_date",
];

/// The fields `history` takes besides [`CANDLE_FIELDS`].
const HISTORY_ONLY_FIELDS: &[&str] = &["source"];

/// Upstream's `source` values: the broker (`api`) or its local database (`db`). oa answers
/// both from its store.
const SOURCES: &[&str] = &["api", "db"];

/// The longest range `ticker` serves for intraday intervals, in days (upstream
/// `validate_and_adjust_date_range`: older start dates are moved up).
const TICKER_INTRADAY_DAYS: i64 = 30;
/// ... and for daily candles.
const TICKER_DAILY_DAYS: i64 = 10 * 365;

/// The most stored rows one `history` or `ticker` request reads: 1-minute bars, or for `1h`,
/// `60m` and `D` the hourly or daily rollups (plus the 1-minute bars of partial buckets).
/// A year of Indian sessions of 1-minute bars (about 94,000) fits; upstream has no bound of
/// its own (its brokers split long ranges into several calls).
pub(crate) const MAX_ROWS_PER_REQUEST: usize = 100_000;

/// A validated candle request.
#[derive(Debug, Clone, PartialEq)]
struct CandleRequest {
    exchange: Exchange,
    symbol: String,
    interval: Interval,
    start: NaiveDate,
    end: NaiveDate,
}

impl CandleRequest {
    /// Reads `symbol`, `exchange`, `interval`, `start_date` and `end_date`.
    fn read(fields: &Fields) -> Result<CandleRequest, HttpError> {
        let exchange = fields.exchange("exchange")?;
        let symbol = fields.required_string("symbol")?.to_ascii_uppercase();
        let interval_name = fields.required_string("interval")?;
        let interval =
            parse_interval(&interval_name).map_err(|message| fields.error("interval", &message))?;
        let start = date(fields, "start_date")?;
        let end = date(fields, "end_date")?;
        if end < start {
            return Err(fields.error(
                "end_date",
                &format!("expected a date on or after start_date {start}, got {end}"),
            ));
        }
        Ok(CandleRequest {
            exchange,
            symbol,
            interval,
            start,
            end,
        })
    }

    /// Epoch seconds of 00:00 IST on the start date and on the day after the end date.
    fn range(&self) -> (i64, i64) {
        indian_days(self.start, self.end)
    }
}

/// Epoch seconds of 00:00 IST on `start` and on the day after `end`.
fn indian_days(start: NaiveDate, end: NaiveDate) -> (i64, i64) {
    let midnight = |date: NaiveDate| {
        date.and_hms_opt(0, 0, 0)
            .map_or(0, |time| time.and_utc().timestamp())
            - IST_OFFSET_SECONDS
    };
    (midnight(start), midnight(end) + SECONDS_PER_DAY)
}

fn parse_interval(name: &str) -> Result<Interval, String> {
    Interval::parse(name).ok_or_else(|| {
        format!(
            "expected one of {}, got {name:?}",
            Interval::names().join(", ")
        )
    })
}

fn date(fields: &Fields, name: &str) -> Result<NaiveDate, HttpError> {
    let text = fields.required_string(name)?;
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|_| fields.error(name, &format!("expected a date YYYY-MM-DD, got {text:?}")))
}

impl AppState {
    /// The candles of a validated request (400 for an unlisted symbol, as upstream's
    /// `validate_symbol_exchange`).
    async fn candles(&self, request: &CandleRequest) -> Result<Vec<Bar>, HttpError> {
        let (exchange, symbol) = (request.exchange, request.symbol.as_str());
        if !self.service.is_listed(exchange, symbol) {
            return Err(HttpError::bad_request(format!(
                "Symbol '{symbol}' not found for exchange '{exchange}'. Please verify the symbol name and ensure master contracts are downloaded."
            )));
        }
        let (from, until) = request.range();
        let range = BarRange {
            exchange: exchange.as_str().to_string(),
            symbol: symbol.to_string(),
            from,
            until,
        };
        let candles = self
            .history
            .candles(range, request.interval, MAX_ROWS_PER_REQUEST)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                HttpError::bad_request(format!(
                    "start_date: {} to {} holds more than {MAX_ROWS_PER_REQUEST} stored bars of {exchange}:{symbol} at interval {}, the most one request reads; ask for a shorter range or a longer interval (1h and D read one row per candle)",
                    request.start, request.end, request.interval
                ))
            })?;
        Ok(candles)
    }
}

/// history: candles of one instrument (upstream restx_api/history.py).
pub(crate) async fn history(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<CandlesJson, HttpError> {
    let fields = Fields::in_groups(body, &[CANDLE_FIELDS, HISTORY_ONLY_FIELDS])?;
    let request = CandleRequest::read(&fields)?;
    if let Some(source) = fields.opt_string("source")? {
        fields.check_one_of("source", &source, SOURCES)?;
    }
    app.authenticate(&fields).await?;
    let candles = app.candles(&request).await?;
    Ok(CandlesJson::new(candles))
}

/// ticker: `GET /api/v1/ticker/<EXCHANGE:SYMBOL>?apikey=..&interval=D&from=..&to=..&format=json|txt`
/// (upstream restx_api/ticker.py): the candles of `history`, as JSON or as text lines
/// `EXCHANGE:SYMBOL,date[,time],open,high,low,close,volume` (the time for every interval but
/// `D`, as upstream). Ranges longer than 30 days (intraday) or 10 years (`D`, `W`, `M`)
/// start later, as upstream shortens them.
pub(crate) async fn ticker(
    State(app): State<AppState>,
    Path(instrument): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let text = query
        .get("format")
        .is_some_and(|format| format.eq_ignore_ascii_case("txt"));
    match ticker_candles(&app, &instrument, &query).await {
        Ok((request, candles)) if text => {
            text_response(StatusCode::OK, ticker_lines(&request, &candles))
        }
        Ok((_, candles)) => CandlesJson::new(candles).into_response(),
        Err(error) if text => text_response(error.status, format!("{}\n", error.message)),
        Err(error) => error.into_response(),
    }
}

fn text_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

async fn ticker_candles(
    app: &AppState,
    instrument: &str,
    query: &HashMap<String, String>,
) -> Result<(CandleRequest, Vec<Bar>), HttpError> {
    // Upstream: `EXCHANGE:SYMBOL`; anything else means NSE:RELIANCE.
    let (exchange, symbol) = instrument.split_once(':').unwrap_or(("NSE", "RELIANCE"));
    let mut body = serde_json::Map::new();
    for (name, key) in [
        ("apikey", "apikey"),
        ("start_date", "from"),
        ("end_date", "to"),
        ("interval", "interval"),
    ] {
        if let Some(value) = query.get(key) {
            body.insert(name.to_string(), value.clone().into());
        }
    }
    body.entry("interval")
        .or_insert_with(|| serde_json::Value::from("D"));
    body.insert("exchange".to_string(), exchange.into());
    body.insert("symbol".to_string(), symbol.into());
    let fields = Fields::new(body, CANDLE_FIELDS)?;
    let mut request = CandleRequest::read(&fields)?;
    let longest = if request.interval.is_intraday() {
        TICKER_INTRADAY_DAYS
    } else {
        TICKER_DAILY_DAYS
    };
    let earliest = request.end - chrono::Duration::days(longest);
    if request.start < earliest {
        request.start = earliest;
    }
    app.authenticate(&fields).await?;
    let candles = app.candles(&request).await?;
    Ok((request, candles))
}

/// The text format of `ticker`: one line per candle, Indian date (and time for intraday).
fn ticker_lines(request: &CandleRequest, candles: &[Bar]) -> String {
    let name = format!("{}:{}", request.exchange, request.symbol);
    let ist = chrono::FixedOffset::east_opt(IST_OFFSET_SECONDS as i32);
    candles
        .iter()
        .map(|candle| {
            let prices = format!(
                "{},{},{},{},{}",
                python_float(candle.open),
                python_float(candle.high),
                python_float(candle.low),
                python_float(candle.close),
                candle.volume.round() as i64
            );
            let time = chrono::DateTime::from_timestamp(candle.time, 0);
            match (request.interval, time, ist) {
                (Interval::Day, Some(time), _) => {
                    // Daily candles are stamped with their date at 00:00 UTC.
                    format!("{name},{},{prices}", time.format("%Y-%m-%d"))
                }
                (_, Some(time), Some(ist)) => {
                    let local = time.with_timezone(&ist);
                    format!(
                        "{name},{},{},{prices}",
                        local.format("%Y-%m-%d"),
                        local.format("%H:%M:%S")
                    )
                }
                _ => format!("{name},{},{prices}", candle.time),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A price as Python prints a float (`812.0`, `812.55`).
fn python_float(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_print_as_python_floats() {
        assert_eq!(python_float(812.0), "812.0");
        assert_eq!(python_float(812.55), "812.55");
    }

    #[test]
    fn a_date_range_covers_whole_indian_days() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap_or_default();
        // 2026-12-01 00:00 IST is 2026-11-30 18:30 UTC.
        let (from, until) = indian_days(day(1), day(2));
        assert_eq!(from, 1_796_083_200 - IST_OFFSET_SECONDS);
        assert_eq!(until - from, 2 * SECONDS_PER_DAY);
    }
}
