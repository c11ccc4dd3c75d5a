//! [`SymbolDirectory`]: which symbols exist, so unknown ones are refused before they reach a
//! broker. The market-data symbol master implements it (see `marketdata`).

use std::collections::HashMap;

/// Answers "is this symbol tradable here, and in which lot size?", and finds symbols.
pub trait SymbolDirectory: Send + Sync + 'static {
    /// The lot size of (exchange, symbol), or `None` when the symbol is unknown.
    fn lot_size(&self, exchange: &str, symbol: &str) -> Option<f64>;

    /// Up to `limit` instruments matching `query`, closest first (the `search` endpoint).
    fn search(&self, query: &str, exchange: Option<&str>, limit: usize) -> Vec<ListedSymbol>;

    /// One instrument (the `symbol` endpoint), `None` when it is not listed.
    fn describe(&self, exchange: &str, symbol: &str) -> Option<ListedSymbol>;

    /// Every instrument, of one exchange or of all, in listing order (the `instruments` and
    /// `expiry` endpoints). Default: none.
    fn list(&self, exchange: Option<&str>) -> Vec<ListedSymbol> {
        let _ = exchange;
        Vec::new()
    }
}

/// An instrument as the search and symbol endpoints report it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSymbol {
    /// Its 1-based position in the directory (upstream's row `id`).
    pub id: u64,
    /// Exchange code.
    pub exchange: String,
    /// OpenAlgo symbol.
    pub symbol: String,
    /// Instrument name.
    pub name: String,
    /// Lot size.
    pub lot_size: f64,
    /// Minimum price step.
    pub tick_size: f64,
    /// EQ, INDEX, FUT, CE, PE, ...
    pub instrument_type: String,
    /// Expiry of a future or option, `DD-MMM-YY` (`30-DEC-25`); empty otherwise.
    pub expiry: String,
    /// Strike of an option; 0 otherwise.
    pub strike: f64,
}

/// A fixed in-memory directory (embedding and tests).
#[derive(Debug, Clone, Default)]
pub struct StaticSymbols {
    lots: HashMap<(String, String), f64>,
}

impl StaticSymbols {
    /// An empty directory.
    pub fn new() -> Self {
        StaticSymbols::default()
    }

    /// Adds a symbol with its lot size.
    pub fn with(mut self, exchange: &str, symbol: &str, lot_size: f64) -> Self {
        self.lots
            .insert((exchange.to_string(), symbol.to_string()), lot_size);
        self
    }
}

impl SymbolDirectory for StaticSymbols {
    fn lot_size(&self, exchange: &str, symbol: &str) -> Option<f64> {
        self.lots
            .get(&(exchange.to_string(), symbol.to_string()))
            .copied()
    }

    /// Symbols containing the query (case-insensitive), alphabetical; a static directory
    /// knows no names or tick sizes.
    fn search(&self, query: &str, exchange: Option<&str>, limit: usize) -> Vec<ListedSymbol> {
        let query = query.trim().to_uppercase();
        let mut found: Vec<ListedSymbol> = self
            .lots
            .iter()
            .filter(|((listed_exchange, symbol), _)| {
                !query.is_empty()
                    && symbol.to_uppercase().contains(&query)
                    && exchange.is_none_or(|exchange| exchange == listed_exchange)
            })
            .map(|((exchange, symbol), lot_size)| ListedSymbol {
                id: 0,
                exchange: exchange.clone(),
                symbol: symbol.clone(),
                name: symbol.clone(),
                lot_size: *lot_size,
                tick_size: 0.05,
                instrument_type: String::new(),
                expiry: String::new(),
                strike: 0.0,
            })
            .collect();
        found.sort_by(|a, b| (&a.symbol, &a.exchange).cmp(&(&b.symbol, &b.exchange)));
        found.truncate(limit);
        found
    }

    fn describe(&self, exchange: &str, symbol: &str) -> Option<ListedSymbol> {
        let lot_size = self.lot_size(exchange, symbol)?;
        Some(ListedSymbol {
            id: 0,
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
            name: symbol.to_string(),
            lot_size,
            tick_size: 0.05,
            instrument_type: String::new(),
            expiry: String::new(),
            strike: 0.0,
        })
    }
}
