//! Quotes, market depth and the symbol master's answers (search, symbol, intervals), read
//! from the price source and the symbol directory (no account involved).

use axum::http::StatusCode;
use oa_events_core::number::Quantity;

use super::{OrderService, Result};
use crate::error::HttpError;
use crate::price::MarketData;
use crate::responses::{
    Data, DepthData, DepthLevel, IntervalGroups, MultiQuote, MultiQuotes, QuoteData, Reply,
    SearchResults, SymbolInfo, SymbolMatch,
};
use crate::symbols::ListedSymbol;
use crate::types::Exchange;
use oa_marketdata_core::candles::Interval;

/// Levels of each side of depth.
const DEPTH_LEVELS: usize = 5;

/// The most matches search returns (upstream's `limit=500`, services/search_service.py).
const SEARCH_LIMIT: usize = 500;

impl OrderService {
    /// The market data of a known symbol, or 404 while it has no quote.
    pub(crate) fn market_data(&self, exchange: Exchange, symbol: &str) -> Result<MarketData> {
        self.check_symbol("", exchange, symbol, None)?;
        self.prices
            .market_data(exchange.as_str(), symbol)
            .ok_or_else(|| no_quote(exchange, symbol))
    }

    /// quotes.
    pub fn quotes(&self, exchange: Exchange, symbol: &str) -> Result<Reply<Data<QuoteData>>> {
        let data = self.market_data(exchange, symbol)?;
        Ok(Reply::new(Data {
            data: quote_data(&data),
        }))
    }

    /// multiquotes: a quote per (exchange, symbol), in request order. Unknown symbols and
    /// symbols without a price yet get an `error` instead (upstream
    /// services/quotes_service.py); a request whose symbols are all unknown is a 400 listing
    /// them under `invalid_symbols`.
    pub fn multiquotes(&self, requested: &[(Exchange, String)]) -> Result<Reply<MultiQuotes>> {
        let unknown = |exchange: Exchange, symbol: &str| {
            format!(
                "Symbol '{symbol}' not found for exchange '{exchange}'. Please verify the symbol name and ensure master contracts are downloaded."
            )
        };
        let listed = |exchange: Exchange, symbol: &str| {
            self.symbols.lot_size(exchange.as_str(), symbol).is_some()
        };
        if let Some((first_exchange, first_symbol)) = requested
            .iter()
            .find(|(exchange, symbol)| !listed(*exchange, symbol))
            && requested
                .iter()
                .all(|(exchange, symbol)| !listed(*exchange, symbol))
        {
            let invalid: Vec<serde_json::Value> = requested
                .iter()
                .map(|(exchange, symbol)| {
                    serde_json::json!({"symbol": symbol, "exchange": exchange.as_str(),
                        "error": unknown(*exchange, symbol)})
                })
                .collect();
            return Err(
                HttpError::bad_request(unknown(*first_exchange, first_symbol))
                    .with("invalid_symbols", invalid),
            );
        }
        // Unknown symbols first, then the quotes, as upstream orders its results.
        let (known, unknown_symbols): (Vec<_>, Vec<_>) = requested
            .iter()
            .partition(|(exchange, symbol)| listed(*exchange, symbol));
        let mut results: Vec<MultiQuote> = unknown_symbols
            .into_iter()
            .map(|(exchange, symbol)| MultiQuote {
                symbol: symbol.clone(),
                exchange: exchange.to_string(),
                data: None,
                error: Some(unknown(*exchange, symbol)),
            })
            .collect();
        for (exchange, symbol) in known {
            let (data, error) = match self.prices.market_data(exchange.as_str(), symbol) {
                Some(data) => (Some(quote_data(&data)), None),
                None => (None, Some(no_quote(*exchange, symbol).message)),
            };
            results.push(MultiQuote {
                symbol: symbol.clone(),
                exchange: exchange.to_string(),
                data,
                error,
            });
        }
        Ok(Reply::new(MultiQuotes { results }))
    }

    /// symbol: one instrument of the symbol master, 404 when it is not listed.
    pub fn symbol(&self, exchange: Exchange, symbol: &str) -> Result<Reply<Data<SymbolInfo>>> {
        let listed = self
            .symbols
            .describe(exchange.as_str(), symbol)
            .ok_or_else(|| {
                HttpError::not_found(format!("Symbol {symbol} not found in exchange {exchange}"))
            })?;
        Ok(Reply::new(Data {
            data: SymbolInfo {
                id: listed.id,
                listing: symbol_match(listed),
            },
        }))
    }

    /// intervals: the candle intervals `history` serves.
    pub fn intervals(&self) -> Reply<Data<IntervalGroups>> {
        let names = Interval::names();
        let ending = |suffix: char| -> Vec<&'static str> {
            names
                .iter()
                .copied()
                .filter(|name| {
                    name.ends_with(suffix) && name.starts_with(|c: char| c.is_ascii_digit())
                })
                .collect()
        };
        let named = |wanted: &str| -> Vec<&'static str> {
            names
                .iter()
                .copied()
                .filter(|name| *name == wanted)
                .collect()
        };
        Reply::new(Data {
            data: IntervalGroups {
                seconds: ending('s'),
                minutes: ending('m'),
                hours: ending('h'),
                days: named("D"),
                weeks: named("W"),
                months: named("M"),
            },
        })
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
        let data = found.into_iter().map(symbol_match).collect();
        Reply::new(SearchResults { message, data })
    }
}

/// An instrument with upstream's search/symbol keys (see [`SymbolMatch`]).
fn symbol_match(listed: ListedSymbol) -> SymbolMatch {
    let instrument = listed.instrument;
    SymbolMatch {
        brsymbol: instrument.symbol.clone(),
        expiry: instrument.expiry_label(),
        strike: instrument.strike(),
        symbol: instrument.symbol,
        name: instrument.name,
        brexchange: instrument.exchange.clone(),
        exchange: instrument.exchange,
        token: String::new(),
        lotsize: Quantity(instrument.lot_size),
        instrumenttype: instrument.instrument_type,
        tick_size: instrument.tick_size,
        freeze_qty: 1,
    }
}

fn quote_data(data: &MarketData) -> QuoteData {
    QuoteData {
        open: data.open,
        high: data.high,
        low: data.low,
        ltp: data.ltp,
        ask: data.ask,
        bid: data.bid,
        prev_close: data.prev_close,
        volume: data.volume,
        oi: data.oi,
    }
}

fn no_quote(exchange: Exchange, symbol: &str) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!("No quote available for {symbol} on {exchange} yet"),
    )
}
