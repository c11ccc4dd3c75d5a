//! The symbol master's listings: `expiry` (POST, upstream restx_api/expiry.py and
//! services/expiry_service.py) and `instruments` (GET, upstream restx_api/instruments.py and
//! services/instruments_service.py), over the bundled universe (NFO futures and options of
//! NIFTY and BANKNIFTY included) or the CSV master the server loaded.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use oa_events_core::number::Quantity;
use oa_marketdata_core::Instrument;
use serde::Serialize;
use serde_json::Value;

use crate::error::HttpError;
use crate::fields::Fields;
use crate::responses::{Listing, Reply};
use crate::routes::{ApiBody, AppState};
use crate::symbols::ListedSymbol;

/// Exchanges that list derivatives (upstream data_schemas.py `F_AND_O_EXCHANGES`).
pub(crate) const F_AND_O_EXCHANGES: &[&str] =
    &["NFO", "BFO", "MCX", "CDS", "NCO", "BCD", "NCDEX", "CRYPTO"];

/// `expiry`'s instrument types.
const INSTRUMENT_TYPES: &[&str] = &["futures", "options"];

/// The instrument types of futures or options on an exchange (upstream expiry_service.py).
fn listed_types(exchange: &str, options: bool) -> &'static [&'static str] {
    match (exchange, options) {
        ("NFO" | "BFO", false) => &["FUTSTK", "FUTIDX", "FUT"],
        ("MCX" | "NCDEX" | "NCO", false) => &["FUTCOM", "FUTENR", "FUT"],
        ("CDS" | "BCD", false) => &["FUTCUR", "FUTIRC", "FUT"],
        ("CRYPTO", false) => &["FUT", "PERPFUT"],
        ("NFO" | "BFO", true) => &["OPTSTK", "OPTIDX", "CE", "PE"],
        ("MCX" | "NCDEX" | "NCO", true) => &["OPTFUT", "CE", "PE"],
        ("CDS" | "BCD", true) => &["OPTCUR", "OPTIRC", "CE", "PE"],
        _ => &["CE", "PE"],
    }
}

/// True when `symbol` is `underlying` followed by a `DDMMMYY` date (upstream's pattern
/// `^{symbol}[0-9]{2}[A-Z]{3}[0-9]{2}`), so NIFTY does not match NIFTYNXT50's contracts.
fn is_contract_of(symbol: &str, underlying: &str) -> bool {
    let Some(rest) = symbol.strip_prefix(underlying) else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() >= 7
        && bytes[..2].iter().all(u8::is_ascii_digit)
        && bytes[2..5].iter().all(u8::is_ascii_uppercase)
        && bytes[5..7].iter().all(u8::is_ascii_digit)
}

/// `30-DEC-25` (or `30-DEC-2025`) as a date.
fn parse_expiry(label: &str) -> Option<NaiveDate> {
    let title = label
        .char_indices()
        .map(|(index, c)| if index > 3 { c.to_ascii_lowercase() } else { c })
        .collect::<String>();
    NaiveDate::parse_from_str(&title, "%d-%b-%y")
        .or_else(|_| NaiveDate::parse_from_str(&title, "%d-%b-%Y"))
        .ok()
}

/// The body of `expiry`: `Found N expiry dates for NIFTY options in NFO`, then the
/// `DD-MMM-YY` dates, earliest first.
pub(crate) type ExpiryDates = Listing<String>;

/// expiry: the expiry dates (today's and later) of an underlying's futures or options.
pub(crate) async fn expiry(
    State(app): State<AppState>,
    ApiBody(body): ApiBody,
) -> Result<Reply<ExpiryDates>, HttpError> {
    let fields = Fields::new(body, &["apikey", "symbol", "exchange", "instrumenttype"])?;
    let symbol = fields.required_string("symbol")?.to_ascii_uppercase();
    let exchange = fields.required_string("exchange")?.to_ascii_uppercase();
    fields.check_one_of("exchange", &exchange, F_AND_O_EXCHANGES)?;
    let kind = fields
        .required_string("instrumenttype")?
        .to_ascii_lowercase();
    fields.check_one_of("instrumenttype", &kind, INSTRUMENT_TYPES)?;
    app.authenticate(&fields).await?;
    let types = listed_types(&exchange, kind == "options");
    let contracts: Vec<Instrument> = app
        .service
        .symbol_directory()
        .list(Some(exchange.as_str()))
        .into_iter()
        .map(|listed| listed.instrument)
        .filter(|instrument| {
            instrument.contract.is_some()
                && types.contains(&instrument.instrument_type.as_str())
                && is_contract_of(&instrument.symbol, &symbol)
        })
        .collect();
    if contracts.is_empty() {
        return Ok(Reply::new(ExpiryDates {
            message: format!("No expiry dates found for {symbol} {kind} in {exchange}"),
            data: Vec::new(),
        }));
    }
    let today = oa_marketdata_core::option_universe::today_in_india();
    let mut dates: Vec<(NaiveDate, String)> = contracts
        .into_iter()
        .filter_map(|instrument| {
            let label = instrument.expiry_label();
            // Unreadable dates sort last, as upstream's `datetime.max`.
            let date = parse_expiry(&label).unwrap_or(NaiveDate::MAX);
            (date >= today).then_some((date, label))
        })
        .collect();
    dates.sort();
    dates.dedup();
    let data: Vec<String> = dates.into_iter().map(|(_, label)| label).collect();
    Ok(Reply::new(ExpiryDates {
        message: format!(
            "Found {} expiry dates for {symbol} {kind} in {exchange}",
            data.len()
        ),
        data,
    }))
}

/// One row of `instruments`, with upstream's keys in its (alphabetical) order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct InstrumentRow {
    /// Broker exchange (the exchange: the simulator has no broker codes).
    pub(crate) brexchange: String,
    /// Broker symbol (the symbol).
    pub(crate) brsymbol: String,
    /// Exchange.
    pub(crate) exchange: String,
    /// `DD-MMM-YY` for futures and options, empty otherwise.
    pub(crate) expiry: String,
    /// EQ, INDEX, FUT, CE, PE, ...
    pub(crate) instrumenttype: String,
    /// Lot size.
    pub(crate) lotsize: Quantity,
    /// Name.
    pub(crate) name: String,
    /// Strike (0 unless an option).
    pub(crate) strike: f64,
    /// OpenAlgo symbol.
    pub(crate) symbol: String,
    /// Price step.
    pub(crate) tick_size: f64,
    /// Broker token (empty: the simulator has none).
    pub(crate) token: String,
}

impl From<ListedSymbol> for InstrumentRow {
    fn from(listed: ListedSymbol) -> Self {
        let instrument = listed.instrument;
        InstrumentRow {
            brexchange: instrument.exchange.clone(),
            brsymbol: instrument.symbol.clone(),
            expiry: instrument.expiry_label(),
            strike: instrument.strike(),
            exchange: instrument.exchange,
            instrumenttype: instrument.instrument_type,
            lotsize: Quantity(instrument.lot_size),
            name: instrument.name,
            symbol: instrument.symbol,
            tick_size: instrument.tick_size,
            token: String::new(),
        }
    }
}

/// The body of `instruments` (JSON): `Found N instruments` (or `No instruments found`), then
/// the rows.
pub(crate) type Instruments = Listing<InstrumentRow>;

/// instruments: `GET /api/v1/instruments?apikey=..&exchange=..&format=json|csv`, every
/// instrument of the symbol master (of one exchange), as JSON or as a CSV download.
pub(crate) async fn instruments(
    State(app): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let csv = crate::routes::query_asks_format(&query, "csv");
    match listed_instruments(&app, &query).await {
        Ok((exchange, rows)) if csv => csv_response(exchange.as_deref(), &rows),
        Ok((_, rows)) => Reply::new(Instruments {
            message: if rows.is_empty() {
                "No instruments found".to_string()
            } else {
                format!("Found {} instruments", rows.len())
            },
            data: rows,
        })
        .into_response(),
        Err(error) if csv => (
            error.status,
            [(header::CONTENT_TYPE, "text/plain")],
            error.message,
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn listed_instruments(
    app: &AppState,
    query: &HashMap<String, String>,
) -> Result<(Option<String>, Vec<InstrumentRow>), HttpError> {
    let body: serde_json::Map<String, Value> = query
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(value.clone())))
        .collect();
    let fields = Fields::new(body, &["apikey", "exchange", "format"])?;
    let exchange = match fields.opt_string("exchange")? {
        Some(_) => Some(fields.exchange("exchange")?.as_str().to_string()),
        None => None,
    };
    if let Some(format) = fields.opt_string("format")?
        && !matches!(format.to_ascii_lowercase().as_str(), "json" | "csv")
    {
        return Err(fields.error(
            "format",
            &format!("expected one of json, csv, got {format:?}"),
        ));
    }
    app.authenticate(&fields).await?;
    let rows = app
        .service
        .symbol_directory()
        .list(exchange.as_deref())
        .into_iter()
        .map(InstrumentRow::from)
        .collect();
    Ok((exchange, rows))
}

/// A CSV field: quoted when it holds a comma, a quote or a line break (Python's csv module).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A float as Python prints it (`0.0`, `24000.0`, `0.05`).
fn python_float(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        value.to_string()
    }
}

fn csv_response(exchange: Option<&str>, rows: &[InstrumentRow]) -> Response {
    let mut text = String::new();
    if !rows.is_empty() {
        text.push_str(
            "symbol,brsymbol,name,exchange,brexchange,token,expiry,strike,lotsize,instrumenttype,tick_size\r\n",
        );
    }
    for row in rows {
        let lotsize = if row.lotsize.0.fract() == 0.0 {
            format!("{:.0}", row.lotsize.0)
        } else {
            row.lotsize.0.to_string()
        };
        let fields = [
            csv_field(&row.symbol),
            csv_field(&row.brsymbol),
            csv_field(&row.name),
            csv_field(&row.exchange),
            csv_field(&row.brexchange),
            csv_field(&row.token),
            csv_field(&row.expiry),
            python_float(row.strike),
            lotsize,
            csv_field(&row.instrumenttype),
            python_float(row.tick_size),
        ];
        text.push_str(&fields.join(","));
        text.push_str("\r\n");
    }
    let disposition = format!(
        "attachment; filename=instruments_{}.csv",
        exchange.unwrap_or("all")
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_match_their_underlying_only() {
        assert!(is_contract_of("NIFTY30DEC25FUT", "NIFTY"));
        assert!(is_contract_of("NIFTY30DEC2524000CE", "NIFTY"));
        assert!(!is_contract_of("NIFTYNXT5030DEC25FUT", "NIFTY"));
        assert!(!is_contract_of("BANKNIFTY30DEC25FUT", "NIFTY"));
        assert!(!is_contract_of("NIFTY", "NIFTY"));
    }

    #[test]
    fn expiry_labels_parse_in_both_year_forms() {
        let date = NaiveDate::from_ymd_opt(2025, 12, 30);
        assert_eq!(parse_expiry("30-DEC-25"), date);
        assert_eq!(parse_expiry("30-DEC-2025"), date);
        assert_eq!(parse_expiry("soon"), None);
    }

    #[test]
    fn csv_fields_are_quoted_as_python_quotes_them() {
        assert_eq!(csv_field("STATE BANK, INDIA"), "\"STATE BANK, INDIA\"");
        assert_eq!(python_float(24000.0), "24000.0");
        assert_eq!(python_float(0.05), "0.05");
    }
}
