//! Quotes and market depth, read from the price source (no account involved).

use axum::http::StatusCode;
use oa_events_core::number::Quantity;

use super::{OrderService, Result};
use crate::error::HttpError;
use crate::price::MarketData;
use crate::responses::{Data, DepthData, DepthLevel, QuoteData, Reply, SearchResults, SymbolMatch};
use crate::types::Exchange;

/// Levels of each side of depth.
const DEPTH_LEVELS: usize = 5;

/// The most matches search returns (upstream's `limit=500`, services/search_service.py).
const SEARCH_LIMIT: usize = 500;

impl OrderService {
    /// The market data of a known symbol, or 404 while it has no quote.
    fn market_data(&self, exchange: Exchange, symbol: &str) -> Result<MarketData> {
        self.check_symbol("", exchange, symbol, None)?;
        self.prices
            .market_data(exchange.as_str(), symbol)
            .ok_or_else(|| no_quote(exchange, symbol))
    }

    /// quotes.
    pub fn quotes(&self, exchange: Exchange, symbol: &str) -> Result<Reply<Data<QuoteData>>> {
        let data = self.market_data(exchange, symbol)?;
        Ok(Reply::new(Data {
            data: QuoteData {
                open: data.open,
                high: data.high,
                low: data.low,
                ltp: data.ltp,
                ask: data.ask,
                bid: data.bid,
                prev_close: data.prev_close,
                volume: data.volume,
                oi: data.oi,
            },
        }))
    }

    /// depth: five levels a side, padded with zeros.
    pub fn depth(&self, exchange: Exchange, symbol: &str) -> Result<Reply<Data<DepthData>>> {
        let data = self.market_data(exchange, symbol)?;
        let levels = |levels: &[crate::price::DepthLevel]| -> Vec<DepthLevel> {
            (0..DEPTH_LEVELS)
                .map(|index| {
                    let level = levels.get(index).copied().unwrap_or_default();
                    DepthLevel {
                        price: level.price,
                        quantity: Quantity(level.quantity),
                    }
                })
                .collect()
        };
        Ok(Reply::new(Data {
            data: DepthData {
                open: data.open,
                high: data.high,
                low: data.low,
                ltp: data.ltp,
                ltq: Quantity(data.ltq),
                prev_close: data.prev_close,
                volume: data.volume,
                oi: data.oi,
                totalbuyqty: Quantity(data.total_buy_quantity),
                totalsellqty: Quantity(data.total_sell_quantity),
                asks: levels(&data.asks),
                bids: levels(&data.bids),
            },
        }))
    }
}

impl OrderService {
    /// search: the symbol master's closest matches, upstream's message and keys.
    pub fn search(&self, query: &str, exchange: Option<Exchange>) -> Reply<SearchResults> {
        let found = self
            .symbols
            .search(query, exchange.map(Exchange::as_str), SEARCH_LIMIT);
        let message = if found.is_empty() {
            "No matching symbols found".to_string()
        } else {
            format!("Found {} matching symbols", found.len())
        };
        let data = found
            .into_iter()
            .map(|listed| SymbolMatch {
                brsymbol: listed.symbol.clone(),
                symbol: listed.symbol,
                name: listed.name,
                brexchange: listed.exchange.clone(),
                exchange: listed.exchange,
                token: String::new(),
                expiry: String::new(),
                strike: 0.0,
                lotsize: Quantity(listed.lot_size),
                instrumenttype: listed.instrument_type,
                tick_size: listed.tick_size,
                freeze_qty: 1,
            })
            .collect();
        Reply::new(SearchResults { message, data })
    }
}

fn no_quote(exchange: Exchange, symbol: &str) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!("No quote available for {symbol} on {exchange} yet"),
    )
}
