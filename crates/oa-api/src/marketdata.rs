//! Adapters to the market-data crate: [`PriceSource`] for `oa_marketdata_core::PriceCache`
//! and [`SymbolDirectory`] for `oa_marketdata_core::SymbolMaster`.

use std::sync::Arc;

use oa_marketdata_core::{Instrument, PriceCache, PriceSnapshot, SymbolMaster};

use crate::price::{
    DepthLevel, MarketData, PriceEvent, PriceSource, PriceStream, Quote, stream_from_broadcast,
};
use crate::symbols::{ListedSymbol, SymbolDirectory};

fn positive(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && *v > 0.0)
}

impl PriceSource for PriceCache {
    fn quote(&self, exchange: &str, symbol: &str) -> Option<Quote> {
        let snapshot = self.snapshot(exchange, symbol)?;
        let quote = Quote {
            ltp: if snapshot.ltp.is_finite() {
                snapshot.ltp
            } else {
                0.0
            },
            bid: positive(snapshot.bid),
            ask: positive(snapshot.ask),
        };
        quote.is_usable().then_some(quote)
    }

    fn market_data(&self, exchange: &str, symbol: &str) -> Option<MarketData> {
        let s = self.snapshot(exchange, symbol)?;
        let levels = |levels: &[oa_marketdata_core::DepthLevel]| {
            levels
                .iter()
                .map(|level| DepthLevel {
                    price: level.price,
                    quantity: level.quantity,
                })
                .collect()
        };
        Some(MarketData {
            open: s.open,
            high: s.high,
            low: s.low,
            ltp: s.ltp,
            ltq: s.ltq,
            prev_close: s.prev_close,
            volume: s.volume,
            oi: s.oi,
            bid: s.bid.unwrap_or(0.0),
            ask: s.ask.unwrap_or(0.0),
            total_buy_quantity: s.total_buy_quantity,
            total_sell_quantity: s.total_sell_quantity,
            bids: levels(&s.bids),
            asks: levels(&s.asks),
        })
    }

    fn updates(&self) -> PriceStream {
        stream_from_broadcast(self.subscribe(), |snapshot: Arc<PriceSnapshot>| {
            PriceEvent::Updated {
                exchange: snapshot.exchange.clone(),
                symbol: snapshot.symbol.clone(),
            }
        })
    }

    fn snapshots(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<PriceSnapshot>>> {
        Some(self.subscribe())
    }
}

impl SymbolDirectory for SymbolMaster {
    fn lot_size(&self, exchange: &str, symbol: &str) -> Option<f64> {
        self.lookup(exchange, symbol)
            .map(|instrument| instrument.lot_size)
    }

    fn search(&self, query: &str, exchange: Option<&str>, limit: usize) -> Vec<ListedSymbol> {
        SymbolMaster::search(self, query, exchange, limit)
            .into_iter()
            .map(|instrument| listed(self, instrument))
            .collect()
    }

    fn describe(&self, exchange: &str, symbol: &str) -> Option<ListedSymbol> {
        self.lookup(exchange, symbol)
            .map(|instrument| listed(self, instrument))
    }

    fn list(&self, exchange: Option<&str>) -> Vec<ListedSymbol> {
        self.iter()
            .filter(|instrument| exchange.is_none_or(|exchange| instrument.exchange == exchange))
            .map(|instrument| listed(self, instrument))
            .collect()
    }
}

fn listed(master: &SymbolMaster, instrument: &Instrument) -> ListedSymbol {
    ListedSymbol {
        id: master
            .position(&instrument.exchange, &instrument.symbol)
            .map_or(0, |index| index as u64 + 1),
        instrument: instrument.clone(),
    }
}

impl<T: SymbolDirectory> SymbolDirectory for Arc<T> {
    fn lot_size(&self, exchange: &str, symbol: &str) -> Option<f64> {
        (**self).lot_size(exchange, symbol)
    }

    fn search(&self, query: &str, exchange: Option<&str>, limit: usize) -> Vec<ListedSymbol> {
        (**self).search(query, exchange, limit)
    }

    fn describe(&self, exchange: &str, symbol: &str) -> Option<ListedSymbol> {
        (**self).describe(exchange, symbol)
    }

    fn list(&self, exchange: Option<&str>) -> Vec<ListedSymbol> {
        (**self).list(exchange)
    }
}
