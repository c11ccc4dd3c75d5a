//! [`PriceSource`]: how the order engine and the `quotes`/`depth` endpoints read prices.
//!
//! The market-data price cache implements it (see `marketdata`); [`StaticPrices`] is a
//! small in-memory implementation for embedding and tests. Fills are driven by
//! [`PriceSource::updates`]: every update of a symbol with resting orders wakes the engine,
//! which re-reads the latest quote (latest price wins).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use parking_lot::RwLock;
use tokio::sync::broadcast;

/// The prices the matching engine needs for one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quote {
    /// Last traded price.
    pub ltp: f64,
    /// Best bid, when known.
    pub bid: Option<f64>,
    /// Best ask, when known.
    pub ask: Option<f64>,
}

impl Quote {
    /// The price a BUY executes at: the best ask, else the last price.
    pub fn buy_price(&self) -> f64 {
        self.ask.filter(|ask| *ask > 0.0).unwrap_or(self.ltp)
    }

    /// The price a SELL executes at: the best bid, else the last price.
    pub fn sell_price(&self) -> f64 {
        self.bid.filter(|bid| *bid > 0.0).unwrap_or(self.ltp)
    }

    /// True when some usable price is known.
    pub fn is_usable(&self) -> bool {
        self.ltp > 0.0 || self.bid.is_some_and(|b| b > 0.0) || self.ask.is_some_and(|a| a > 0.0)
    }
}

/// One level of market depth.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DepthLevel {
    /// Price.
    pub price: f64,
    /// Quantity at that price.
    pub quantity: f64,
}

/// Everything `quotes` and `depth` report for a symbol.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MarketData {
    /// Day open.
    pub open: f64,
    /// Day high.
    pub high: f64,
    /// Day low.
    pub low: f64,
    /// Last traded price.
    pub ltp: f64,
    /// Last traded quantity.
    pub ltq: f64,
    /// Previous close.
    pub prev_close: f64,
    /// Volume.
    pub volume: f64,
    /// Open interest.
    pub oi: f64,
    /// Best bid (0 when unknown).
    pub bid: f64,
    /// Best ask (0 when unknown).
    pub ask: f64,
    /// Total buy quantity.
    pub total_buy_quantity: f64,
    /// Total sell quantity.
    pub total_sell_quantity: f64,
    /// Bid levels, best first.
    pub bids: Vec<DepthLevel>,
    /// Ask levels, best first.
    pub asks: Vec<DepthLevel>,
}

/// What the price stream reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceEvent {
    /// The price of (exchange, symbol) changed.
    Updated {
        /// Exchange code.
        exchange: String,
        /// Symbol.
        symbol: String,
    },
    /// Updates were missed (the consumer lagged): re-check every symbol.
    Resync,
}

/// A stream of price events; ends when the source shuts down.
pub type PriceStream = Pin<Box<dyn Stream<Item = PriceEvent> + Send>>;

/// Where prices come from.
pub trait PriceSource: Send + Sync + 'static {
    /// The latest quote of a symbol, `None` when no usable price is known.
    fn quote(&self, exchange: &str, symbol: &str) -> Option<Quote>;
    /// Full market data for `quotes` and `depth`, `None` when nothing is known.
    fn market_data(&self, exchange: &str, symbol: &str) -> Option<MarketData>;
    /// A stream of price events.
    fn updates(&self) -> PriceStream;
    /// Every update as a full snapshot (the market-data price cache's stream), from which
    /// the candle history records 1-minute bars. `None` (the default): nothing is recorded.
    fn snapshots(&self) -> Option<broadcast::Receiver<Arc<oa_marketdata_core::PriceSnapshot>>> {
        None
    }
}

/// Turns a broadcast receiver into a [`PriceStream`], mapping lag to [`PriceEvent::Resync`].
pub fn stream_from_broadcast<T, F>(receiver: broadcast::Receiver<T>, map: F) -> PriceStream
where
    T: Clone + Send + 'static,
    F: Fn(T) -> PriceEvent + Send + Sync + 'static,
{
    Box::pin(futures_util::stream::unfold(
        (receiver, map),
        |(mut receiver, map)| async move {
            match receiver.recv().await {
                Ok(item) => {
                    let event = map(item);
                    Some((event, (receiver, map)))
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some((PriceEvent::Resync, (receiver, map)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        },
    ))
}

/// An in-memory price source: set prices by hand (embedding, tests, demos).
#[derive(Debug, Clone)]
pub struct StaticPrices {
    inner: Arc<StaticInner>,
}

#[derive(Debug)]
struct StaticInner {
    quotes: RwLock<HashMap<(String, String), MarketData>>,
    updates: broadcast::Sender<(String, String)>,
}

impl Default for StaticPrices {
    fn default() -> Self {
        StaticPrices::new()
    }
}

impl StaticPrices {
    /// An empty source.
    pub fn new() -> Self {
        let (updates, _) = broadcast::channel(4096);
        StaticPrices {
            inner: Arc::new(StaticInner {
                quotes: RwLock::new(HashMap::new()),
                updates,
            }),
        }
    }

    /// Sets a symbol's last price and best bid/ask, and announces the update.
    pub fn set(&self, exchange: &str, symbol: &str, ltp: f64, bid: Option<f64>, ask: Option<f64>) {
        let key = (exchange.to_string(), symbol.to_string());
        {
            let mut quotes = self.inner.quotes.write();
            let data = quotes.entry(key.clone()).or_default();
            data.ltp = ltp;
            data.bid = bid.unwrap_or(0.0);
            data.ask = ask.unwrap_or(0.0);
        }
        let _ = self.inner.updates.send(key);
    }
}

impl PriceSource for StaticPrices {
    fn quote(&self, exchange: &str, symbol: &str) -> Option<Quote> {
        let quotes = self.inner.quotes.read();
        let data = quotes.get(&(exchange.to_string(), symbol.to_string()))?;
        let quote = Quote {
            ltp: data.ltp,
            bid: (data.bid > 0.0).then_some(data.bid),
            ask: (data.ask > 0.0).then_some(data.ask),
        };
        quote.is_usable().then_some(quote)
    }

    fn market_data(&self, exchange: &str, symbol: &str) -> Option<MarketData> {
        self.inner
            .quotes
            .read()
            .get(&(exchange.to_string(), symbol.to_string()))
            .cloned()
    }

    fn updates(&self) -> PriceStream {
        stream_from_broadcast(self.inner.updates.subscribe(), |(exchange, symbol)| {
            PriceEvent::Updated { exchange, symbol }
        })
    }
}
