//! [`SymbolDirectory`]: which symbols exist, so unknown ones are refused before they reach a
//! broker. The market-data symbol master implements it (see `marketdata`).

use std::collections::HashMap;

use oa_marketdata_core::Instrument;

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
    /// The instrument.
    pub instrument: Instrument,
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
            .map(|((exchange, symbol), lot_size)| static_listing(exchange, symbol, *lot_size))
            .collect();
        found.sort_by(|a, b| {
            let (a, b) = (&a.instrument, &b.instrument);
            (&a.symbol, &a.exchange).cmp(&(&b.symbol, &b.exchange))
        });
        found.truncate(limit);
        found
    }

    fn describe(&self, exchange: &str, symbol: &str) -> Option<ListedSymbol> {
        let lot_size = self.lot_size(exchange, symbol)?;
        Some(static_listing(exchange, symbol, lot_size))
    }
}

/// What a static directory knows of a symbol: its lot size (name = symbol, tick 0.05).
fn static_listing(exchange: &str, symbol: &str, lot_size: f64) -> ListedSymbol {
    ListedSymbol {
        id: 0,
        instrument: Instrument {
            exchange: exchange.to_string(),
            symbol: symbol.to_string(),
            name: symbol.to_string(),
            lot_size,
            tick_size: 0.05,
            instrument_type: String::new(),
            base_price: 0.0,
            contract: None,
        },
    }
}
