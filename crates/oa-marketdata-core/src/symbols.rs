//! The symbol master (OpenAlgo's "master contract"): the instruments oa knows, with lot and
//! tick sizes. The WebSocket proxy and the REST layer reject symbols it does not list.
//!
//! CSV format (header required, columns in any order, `#` starts a comment line):
//!
//! ```text
//! exchange,symbol,name,lot_size,tick_size,instrument_type,base_price
//! NSE,SBIN,STATE BANK OF INDIA,1,0.05,EQ,812.50
//! ```
//!
//! `exchange` and `symbol` are required; `name` defaults to the symbol, `lot_size` to 1,
//! `tick_size` to 0.05, `instrument_type` to `EQ`, `base_price` (where the simulated feed
//! starts its random walk) to 100. Fields may be double-quoted to contain commas.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oa_events_core::catalog::MasterContractDownload;
use oa_events_core::{Event, EventPublisher};

/// The exchange codes oa accepts (docs/rest-api.md, "Validation").
pub const EXCHANGES: &[&str] = &[
    "NSE",
    "NFO",
    "CDS",
    "BSE",
    "BFO",
    "BCD",
    "MCX",
    "NCDEX",
    "NCO",
    "NSE_INDEX",
    "BSE_INDEX",
    "MCX_INDEX",
    "GLOBAL_INDEX",
    "CRYPTO",
];

pub use crate::option_universe::Contract;

/// The bundled cash and index universe (`data/symbols.csv` in this crate); loading
/// [`SymbolSource::Bundled`] adds the generated NFO futures and options to it.
pub const BUNDLED_CSV: &str = include_str!("../data/symbols.csv");

/// True when `exchange` is one of [`EXCHANGES`].
pub fn is_known_exchange(exchange: &str) -> bool {
    EXCHANGES.contains(&exchange)
}

/// One tradable instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct Instrument {
    /// Exchange code, one of [`EXCHANGES`].
    pub exchange: String,
    /// Trading symbol (OpenAlgo format).
    pub symbol: String,
    /// Human-readable name.
    pub name: String,
    /// Contract lot size (1 for cash equities; fractional for CRYPTO).
    pub lot_size: f64,
    /// Minimum price increment.
    pub tick_size: f64,
    /// EQ, FUT, CE, PE, INDEX, ETF, CRYPTO...
    pub instrument_type: String,
    /// Reference price; where the simulated feed starts.
    pub base_price: f64,
    /// For futures and options: the underlying, expiry and strike (`None` for cash
    /// instruments and for CSV rows).
    pub contract: Option<Contract>,
}

impl Instrument {
    /// The expiry of a future or option as `DD-MMM-YY` (`30-DEC-25`); empty otherwise.
    pub fn expiry_label(&self) -> String {
        self.contract
            .as_ref()
            .map(|contract| crate::option_universe::expiry_label(contract.expiry))
            .unwrap_or_default()
    }

    /// The strike of an option; 0 otherwise.
    pub fn strike(&self) -> f64 {
        self.contract
            .as_ref()
            .map_or(0.0, |contract| contract.strike)
    }
}

/// Why a symbol master could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SymbolMasterError {
    /// The file could not be read.
    #[error("cannot read symbol master {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No header line.
    #[error("symbol master is empty: expected a header line with exchange,symbol,...")]
    Empty,
    /// The header lacks a required column.
    #[error("symbol master header lacks the required column {column:?} (header: {header:?})")]
    MissingColumn {
        /// The missing column.
        column: &'static str,
        /// The header as read.
        header: String,
    },
    /// A data line is invalid.
    #[error("symbol master line {line}: {reason}")]
    InvalidLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong, naming the field.
        reason: String,
    },
}

/// Where a symbol master comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymbolSource {
    /// The universe bundled in this crate.
    Bundled,
    /// A CSV file in the documented format.
    Csv(PathBuf),
}

/// The instrument list, indexed by (exchange, symbol).
#[derive(Debug, Clone, Default)]
pub struct SymbolMaster {
    instruments: Vec<Instrument>,
    index: HashMap<String, HashMap<String, usize>>,
}

impl SymbolMaster {
    /// The bundled default universe.
    pub fn bundled() -> Self {
        // The bundled file is tested; an error here is a build defect, so fall back to empty.
        match Self::parse_csv(BUNDLED_CSV) {
            Ok(master) => master,
            Err(error) => {
                tracing::error!(%error, "bundled symbol master is invalid");
                SymbolMaster::default()
            }
        }
    }

    /// Loads a CSV file in the documented format.
    pub fn load_csv(path: &Path) -> Result<Self, SymbolMasterError> {
        let text = std::fs::read_to_string(path).map_err(|source| SymbolMasterError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_csv(&text)
    }

    /// Loads from a source.
    pub fn load(source: &SymbolSource) -> Result<Self, SymbolMasterError> {
        match source {
            SymbolSource::Bundled => {
                let mut master = Self::parse_csv(BUNDLED_CSV)?;
                master.add_option_universe(crate::option_universe::today_in_india());
                Ok(master)
            }
            SymbolSource::Csv(path) => Self::load_csv(path),
        }
    }

    /// Loads from `source` and announces the result as a `master_contract_download` event
    /// (system-wide) with status `success` (plus `symbols_count` and
    /// `download_time_seconds`) or `error` (with the reason in `message`).
    pub fn load_and_announce(
        source: &SymbolSource,
        publisher: &EventPublisher,
        broker: &str,
    ) -> Result<Self, SymbolMasterError> {
        let started = Instant::now();
        let result = Self::load(source);
        let seconds = (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1_000_000.0;
        let event = match &result {
            Ok(master) => MasterContractDownload {
                broker: broker.to_string(),
                status: "success".to_string(),
                message: format!(
                    "Master contract loaded: {} symbols from {}",
                    master.len(),
                    source_label(source)
                ),
                symbols_count: Some(master.len() as u64),
                download_time_seconds: Some(seconds),
            },
            Err(error) => MasterContractDownload {
                broker: broker.to_string(),
                status: "error".to_string(),
                message: format!("Master contract download failed: {error}"),
                symbols_count: Some(0),
                download_time_seconds: Some(seconds),
            },
        };
        publisher.publish(Event::system(event));
        result
    }

    /// Parses CSV text in the documented format.
    pub fn parse_csv(text: &str) -> Result<Self, SymbolMasterError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(number, line)| (number + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
        let (_, header_line) = lines.next().ok_or(SymbolMasterError::Empty)?;
        let header: Vec<String> = split_csv_line(header_line)
            .into_iter()
            .map(|name| name.trim().to_ascii_lowercase())
            .collect();
        let column = |name: &'static str| header.iter().position(|h| h == name);
        let required = |name: &'static str| {
            column(name).ok_or_else(|| SymbolMasterError::MissingColumn {
                column: name,
                header: header_line.to_string(),
            })
        };
        let exchange_col = required("exchange")?;
        let symbol_col = required("symbol")?;
        let name_col = column("name");
        let lot_col = column("lot_size").or_else(|| column("lotsize"));
        let tick_col = column("tick_size").or_else(|| column("ticksize"));
        let type_col = column("instrument_type").or_else(|| column("instrumenttype"));
        let base_col = column("base_price");

        let mut master = SymbolMaster::default();
        for (line, text) in lines {
            let fields = split_csv_line(text);
            let field = |index: Option<usize>| {
                index
                    .and_then(|i| fields.get(i))
                    .map(|value| value.trim())
                    .filter(|value| !value.is_empty())
            };
            let invalid = |reason: String| SymbolMasterError::InvalidLine { line, reason };
            let exchange = field(Some(exchange_col))
                .ok_or_else(|| invalid("exchange is empty".to_string()))?
                .to_ascii_uppercase();
            if !is_known_exchange(&exchange) {
                return Err(invalid(format!(
                    "exchange {exchange:?} is not one of {}",
                    EXCHANGES.join(", ")
                )));
            }
            let symbol = field(Some(symbol_col))
                .ok_or_else(|| invalid("symbol is empty".to_string()))?
                .to_string();
            let number = |name: &str, index: Option<usize>, default: f64| match field(index) {
                None => Ok(default),
                Some(text) => match text.parse::<f64>() {
                    Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
                    _ => Err(invalid(format!(
                        "{name} {text:?} is not a non-negative number"
                    ))),
                },
            };
            let instrument = Instrument {
                name: field(name_col).unwrap_or(&symbol).to_string(),
                lot_size: number("lot_size", lot_col, 1.0)?,
                tick_size: number("tick_size", tick_col, 0.05)?,
                instrument_type: field(type_col).unwrap_or("EQ").to_string(),
                base_price: number("base_price", base_col, 100.0)?,
                exchange,
                symbol,
                contract: None,
            };
            master.insert(instrument);
        }
        Ok(master)
    }

    /// Adds or replaces an instrument.
    pub fn insert(&mut self, instrument: Instrument) {
        let by_symbol = self.index.entry(instrument.exchange.clone()).or_default();
        match by_symbol.get(&instrument.symbol) {
            Some(&position) => self.instruments[position] = instrument,
            None => {
                by_symbol.insert(instrument.symbol.clone(), self.instruments.len());
                self.instruments.push(instrument);
            }
        }
    }

    /// The instrument, if listed.
    pub fn lookup(&self, exchange: &str, symbol: &str) -> Option<&Instrument> {
        let position = *self.index.get(exchange)?.get(symbol)?;
        self.instruments.get(position)
    }

    /// Adds the bundled NIFTY and BANKNIFTY futures and options for `today`, strikes around
    /// each index's reference price (see [`crate::option_universe`]). Series whose index is
    /// not listed are skipped.
    pub fn add_option_universe(&mut self, today: crate::option_universe::NaiveDate) {
        for series in crate::option_universe::BUNDLED_SERIES {
            let Some(index) = self.lookup(series.underlying_exchange, series.underlying) else {
                continue;
            };
            let spot = index.base_price;
            for instrument in crate::option_universe::instruments(series, spot, today) {
                self.insert(instrument);
            }
        }
    }

    /// The instrument's 0-based position in load order, if listed.
    pub fn position(&self, exchange: &str, symbol: &str) -> Option<usize> {
        self.index.get(exchange)?.get(symbol).copied()
    }

    /// True when the instrument is listed.
    pub fn contains(&self, exchange: &str, symbol: &str) -> bool {
        self.lookup(exchange, symbol).is_some()
    }

    /// Number of instruments.
    pub fn len(&self) -> usize {
        self.instruments.len()
    }

    /// True when no instrument is listed.
    pub fn is_empty(&self) -> bool {
        self.instruments.is_empty()
    }

    /// Every instrument, in load order.
    pub fn iter(&self) -> impl Iterator<Item = &Instrument> {
        self.instruments.iter()
    }

    /// Instruments matching every whitespace-separated term of `query` (case-insensitive,
    /// each term a substring of the symbol or the name), optionally on one exchange; at most
    /// `limit`, closest first, ranked as OpenAlgo ranks them: the symbol equal to the query,
    /// then symbols starting with it, then symbols containing every term, then name-only
    /// matches; shorter symbols first within a rank, then alphabetical.
    pub fn search(&self, query: &str, exchange: Option<&str>, limit: usize) -> Vec<&Instrument> {
        let query_upper = query.trim().to_uppercase();
        let terms: Vec<String> = query_upper.split_whitespace().map(str::to_string).collect();
        if terms.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(u8, usize, &str, &Instrument)> = Vec::new();
        for instrument in &self.instruments {
            if exchange.is_some_and(|exchange| exchange != instrument.exchange) {
                continue;
            }
            let symbol = instrument.symbol.to_uppercase();
            let name = instrument.name.to_uppercase();
            let every_term_matches = terms
                .iter()
                .all(|term| symbol.contains(term.as_str()) || name.contains(term.as_str()));
            if !every_term_matches {
                continue;
            }
            let rank = if symbol == query_upper {
                0
            } else if symbol.starts_with(&query_upper) {
                1
            } else if terms.iter().all(|term| symbol.contains(term.as_str())) {
                2
            } else {
                3
            };
            scored.push((rank, symbol.len(), instrument.symbol.as_str(), instrument));
        }
        scored.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        scored
            .into_iter()
            .take(limit)
            .map(|(_, _, _, instrument)| instrument)
            .collect()
    }
}

fn source_label(source: &SymbolSource) -> String {
    match source {
        SymbolSource::Bundled => "the bundled universe".to_string(),
        SymbolSource::Csv(path) => path.display().to_string(),
    }
}

/// Splits one CSV line, honouring double quotes (`""` inside quotes is a literal quote).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if current.trim().is_empty() => {
                current.clear();
                quoted = true;
            }
            (',', false) => fields.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    fields.push(current);
    fields
}

/// Rounds `price` to the nearest multiple of `tick_size` (unchanged when the tick size is
/// not positive), trimming binary noise (24350.050000000003) to the tick size's decimals.
pub fn round_to_tick(price: f64, tick_size: f64) -> f64 {
    if tick_size <= 0.0 {
        return price;
    }
    let rounded = (price / tick_size).round() * tick_size;
    let decimals = (-tick_size.log10().floor()).clamp(0.0, 8.0) as i32 + 1;
    round_to(rounded, decimals)
}

/// Rounds `value` to `decimals` decimal places (half away from zero).
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    (value * factor).round() / factor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_universe_has_the_documented_symbols() {
        let master = SymbolMaster::bundled();
        assert!(master.len() >= 30, "{}", master.len());
        for (exchange, symbol) in [
            ("NSE", "SBIN"),
            ("NSE", "RELIANCE"),
            ("NSE", "INFY"),
            ("NSE", "TCS"),
            ("NSE", "HDFCBANK"),
            ("NSE", "ICICIBANK"),
            ("NSE_INDEX", "NIFTY"),
            ("NSE_INDEX", "BANKNIFTY"),
            ("BSE", "SBIN"),
            ("MCX", "CRUDEOIL19DEC25FUT"),
            ("CRYPTO", "BTC_USDT"),
        ] {
            assert!(master.contains(exchange, symbol), "{exchange}:{symbol}");
        }
        let nifty_fut = master.lookup("NFO", "NIFTY30DEC25FUT").unwrap();
        assert_eq!(nifty_fut.lot_size, 75.0);
        assert_eq!(nifty_fut.instrument_type, "FUT");
        assert!(master.lookup("NSE", "NOPE").is_none());
        assert!(master.iter().all(|i| is_known_exchange(&i.exchange)));
        assert!(
            master
                .iter()
                .all(|i| i.base_price > 0.0 && i.tick_size > 0.0)
        );
    }

    #[test]
    fn csv_columns_any_order_with_quotes_and_defaults() {
        let master = SymbolMaster::parse_csv(
            "symbol,exchange,name\nSBIN,nse,\"STATE BANK, OF INDIA\"\n\n# comment\nX_Y,CRYPTO,\n",
        )
        .unwrap();
        assert_eq!(master.len(), 2);
        let sbin = master.lookup("NSE", "SBIN").unwrap();
        assert_eq!(sbin.name, "STATE BANK, OF INDIA");
        assert_eq!(sbin.lot_size, 1.0);
        assert_eq!(master.lookup("CRYPTO", "X_Y").unwrap().name, "X_Y");
    }

    #[test]
    fn csv_errors_name_the_line_and_field() {
        let error =
            SymbolMaster::parse_csv("exchange,symbol,lot_size\nNSE,SBIN,abc\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(error.to_string().contains("lot_size"), "{error}");
        let error = SymbolMaster::parse_csv("exchange,symbol\nNASDAQ,AAPL\n").unwrap_err();
        assert!(error.to_string().contains("NASDAQ"), "{error}");
        let error = SymbolMaster::parse_csv("exch,symbol\n").unwrap_err();
        assert!(matches!(
            error,
            SymbolMasterError::MissingColumn {
                column: "exchange",
                ..
            }
        ));
        assert!(matches!(
            SymbolMaster::parse_csv("# only\n"),
            Err(SymbolMasterError::Empty)
        ));
    }

    #[tokio::test]
    async fn load_and_announce_publishes_success_and_error() {
        let publisher = EventPublisher::builder().build();
        let mut tap = publisher.subscribe();
        let master =
            SymbolMaster::load_and_announce(&SymbolSource::Bundled, &publisher, "simulator")
                .unwrap();
        let envelope = tap.recv().await.unwrap();
        assert_eq!(envelope.event_type(), "master_contract_download");
        let data = serde_json::to_value(&envelope.data).unwrap();
        assert_eq!(data["status"], "success");
        assert_eq!(data["broker"], "simulator");
        assert_eq!(data["symbols_count"], master.len() as u64);
        assert!(data["download_time_seconds"].as_f64().unwrap() >= 0.0);

        let missing = SymbolSource::Csv(PathBuf::from("/nonexistent/symbols.csv"));
        assert!(SymbolMaster::load_and_announce(&missing, &publisher, "simulator").is_err());
        let envelope = tap.recv().await.unwrap();
        let data = serde_json::to_value(&envelope.data).unwrap();
        assert_eq!(data["status"], "error");
        assert!(
            data["message"]
                .as_str()
                .unwrap()
                .contains("/nonexistent/symbols.csv")
        );
    }

    /// Ranking as upstream's `SymbolCache.search_symbols` (openalgo
    /// database/token_db_enhanced.py): exact, prefix, substring, then name-only matches.
    #[test]
    fn search_ranks_exact_then_prefix_then_substring_then_name() {
        let master = SymbolMaster::parse_csv(
            "exchange,symbol,name,lot_size,tick_size,instrument_type\n\
             NSE,BANKBARODA,BANK OF BARODA,1,0.05,EQ\n\
             NSE,SBIN,STATE BANK OF INDIA,1,0.05,EQ\n\
             NSE_INDEX,BANKNIFTY,NIFTY BANK,1,0.05,INDEX\n\
             NSE,BANK,A BANK,1,0.05,EQ\n\
             NSE,AXISBANK,AXIS BANK,1,0.05,EQ\n",
        )
        .unwrap();
        let symbols = |query: &str, exchange: Option<&str>| -> Vec<String> {
            master
                .search(query, exchange, 10)
                .into_iter()
                .map(|instrument| instrument.symbol.clone())
                .collect()
        };
        assert_eq!(
            symbols("bank", None),
            ["BANK", "BANKNIFTY", "BANKBARODA", "AXISBANK", "SBIN"]
        );
        assert_eq!(symbols("state bank", None), ["SBIN"]);
        assert_eq!(symbols("bank", Some("NSE_INDEX")), ["BANKNIFTY"]);
        assert!(symbols("  ", None).is_empty());
        assert!(symbols("zzz", None).is_empty());
        assert_eq!(master.search("bank", None, 2).len(), 2);
    }
}
