//! Quotes and market depth, read from the price source (no account involved).

use axum::http::StatusCode;
use oa_events_core::number::Quantity;
use serde_json::{Value, json};

use super::{OrderService, Result};
use crate::error::HttpError;
use crate::types::Exchange;

impl OrderService {
    /// quotes.
    pub fn quotes(&self, exchange: Exchange, symbol: &str) -> Result<Value> {
        self.check_symbol("", exchange, symbol, None)?;
        let data = self
            .prices
            .market_data(exchange.as_str(), symbol)
            .ok_or_else(|| no_quote(exchange, symbol))?;
        Ok(json!({"status": "success", "data": {
            "open": data.open,
            "high": data.high,
            "low": data.low,
            "ltp": data.ltp,
            "ask": data.ask,
            "bid": data.bid,
            "prev_close": data.prev_close,
            "volume": data.volume,
            "oi": data.oi,
        }}))
    }

    /// depth: five levels a side, padded with zeros.
    pub fn depth(&self, exchange: Exchange, symbol: &str) -> Result<Value> {
        self.check_symbol("", exchange, symbol, None)?;
        let data = self
            .prices
            .market_data(exchange.as_str(), symbol)
            .ok_or_else(|| no_quote(exchange, symbol))?;
        let levels = |levels: &[crate::price::DepthLevel]| -> Vec<Value> {
            (0..5)
                .map(|index| {
                    let level = levels.get(index).copied().unwrap_or_default();
                    json!({"price": level.price, "quantity": Quantity(level.quantity)})
                })
                .collect()
        };
        Ok(json!({"status": "success", "data": {
            "open": data.open,
            "high": data.high,
            "low": data.low,
            "ltp": data.ltp,
            "ltq": Quantity(data.ltq),
            "prev_close": data.prev_close,
            "volume": data.volume,
            "oi": data.oi,
            "totalbuyqty": Quantity(data.total_buy_quantity),
            "totalsellqty": Quantity(data.total_sell_quantity),
            "asks": levels(&data.asks),
            "bids": levels(&data.bids),
        }}))
    }
}

fn no_quote(exchange: Exchange, symbol: &str) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!("No quote available for {symbol} on {exchange} yet"),
    )
}
