//! [`SymbolDirectory`]: which symbols exist, so unknown ones are refused before they reach a
//! broker. The market-data symbol master implements it (see `marketdata`).

use std::collections::HashMap;

/// Answers "is this symbol tradable here, and in which lot size?".
pub trait SymbolDirectory: Send + Sync + 'static {
    /// The lot size of (exchange, symbol), or `None` when the symbol is unknown.
    fn lot_size(&self, exchange: &str, symbol: &str) -> Option<f64>;
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
}
