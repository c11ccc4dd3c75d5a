//! [`PriceCache`]: the latest LTP, quote and depth per (exchange, symbol).
//!
//! Reads never take a lock: the index is an [`ArcSwap`] of an immutable map whose values
//! are per-instrument [`ArcSwapOption`] slots. An update of a known instrument swaps one
//! slot; only the first tick of a new instrument copies the index (rare: the universe is
//! mostly known after the first second).
//!
//! A tick of a lower mode keeps the richer fields of earlier ticks: an LTP tick after a
//! depth tick updates `ltp` and keeps the last known book.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::tick::{DepthLevel, Tick};

/// The latest known prices of one instrument.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceSnapshot {
    /// Exchange code.
    pub exchange: String,
    /// Trading symbol.
    pub symbol: String,
    /// Last traded price.
    pub ltp: f64,
    /// Last traded quantity.
    pub ltq: f64,
    /// Day open.
    pub open: f64,
    /// Day high.
    pub high: f64,
    /// Day low.
    pub low: f64,
    /// Previous close (the tick's `close`).
    pub prev_close: f64,
    /// Day volume.
    pub volume: f64,
    /// Open interest.
    pub oi: f64,
    /// Best bid, when a book was ever received.
    pub bid: Option<f64>,
    /// Best ask, when a book was ever received.
    pub ask: Option<f64>,
    /// Pending buy quantity.
    pub total_buy_quantity: f64,
    /// Pending sell quantity.
    pub total_sell_quantity: f64,
    /// Bid levels, best first.
    pub bids: Vec<DepthLevel>,
    /// Ask levels, best first.
    pub asks: Vec<DepthLevel>,
    /// The tick's `timestamp` (epoch ms) of the last update.
    pub updated_at_ms: i64,
}

impl PriceSnapshot {
    /// Merges a tick into the previous snapshot (if any).
    fn merged(previous: Option<&PriceSnapshot>, tick: &Tick) -> PriceSnapshot {
        let mut next = match previous {
            Some(previous) => previous.clone(),
            None => PriceSnapshot {
                exchange: tick.exchange.clone(),
                symbol: tick.symbol.clone(),
                ..PriceSnapshot::default()
            },
        };
        next.ltp = tick.ltp;
        next.updated_at_ms = tick.timestamp;
        if let Some(quote) = &tick.quote {
            next.ltq = quote.last_quantity;
            next.open = quote.open;
            next.high = quote.high;
            next.low = quote.low;
            next.prev_close = quote.close;
            next.volume = quote.volume;
            next.oi = quote.oi;
            next.total_buy_quantity = quote.total_buy_quantity;
            next.total_sell_quantity = quote.total_sell_quantity;
        }
        if let Some(depth) = &tick.depth {
            next.bids.clone_from(&depth.buy);
            next.asks.clone_from(&depth.sell);
            next.bid = depth.buy.first().map(|level| level.price);
            next.ask = depth.sell.first().map(|level| level.price);
        }
        next
    }
}

type Slot = Arc<ArcSwapOption<PriceSnapshot>>;
type Index = HashMap<String, HashMap<String, Slot>>;

#[derive(Debug)]
struct Inner {
    index: ArcSwap<Index>,
    /// Serialises writers that add instruments (readers never take it).
    grow: Mutex<()>,
    updates: broadcast::Sender<Arc<PriceSnapshot>>,
}

/// Latest prices per instrument; cheap to clone, all clones share the data.
#[derive(Debug, Clone)]
pub struct PriceCache {
    inner: Arc<Inner>,
}

impl Default for PriceCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PriceCache {
    /// An empty cache whose update stream holds up to 4096 snapshots per lagging reader.
    pub fn new() -> Self {
        Self::with_update_capacity(4096)
    }

    /// An empty cache with the given update-stream capacity.
    pub fn with_update_capacity(capacity: usize) -> Self {
        let (updates, _) = broadcast::channel(capacity.max(1));
        PriceCache {
            inner: Arc::new(Inner {
                index: ArcSwap::from_pointee(HashMap::new()),
                grow: Mutex::new(()),
                updates,
            }),
        }
    }

    fn slot(&self, exchange: &str, symbol: &str) -> Option<Slot> {
        self.inner
            .index
            .load()
            .get(exchange)
            .and_then(|by_symbol| by_symbol.get(symbol))
            .cloned()
    }

    fn slot_or_insert(&self, exchange: &str, symbol: &str) -> Slot {
        if let Some(slot) = self.slot(exchange, symbol) {
            return slot;
        }
        let _guard = self.inner.grow.lock();
        // Another writer may have added it while we waited.
        if let Some(slot) = self.slot(exchange, symbol) {
            return slot;
        }
        let mut index: Index = (**self.inner.index.load()).clone();
        let slot: Slot = Arc::new(ArcSwapOption::empty());
        index
            .entry(exchange.to_string())
            .or_default()
            .insert(symbol.to_string(), Arc::clone(&slot));
        self.inner.index.store(Arc::new(index));
        slot
    }

    /// Merges a tick into the instrument's snapshot and notifies subscribers.
    pub fn update(&self, tick: &Tick) {
        let slot = self.slot_or_insert(&tick.exchange, &tick.symbol);
        let mut stored = None;
        slot.rcu(|previous| {
            let next = Arc::new(PriceSnapshot::merged(previous.as_deref(), tick));
            stored = Some(Arc::clone(&next));
            Some(next)
        });
        if let Some(snapshot) = stored
            && self.inner.updates.receiver_count() > 0
        {
            // No receiver left between the check and the send is fine: nobody is waiting.
            let _ = self.inner.updates.send(snapshot);
        }
    }

    /// The latest snapshot of an instrument.
    pub fn snapshot(&self, exchange: &str, symbol: &str) -> Option<Arc<PriceSnapshot>> {
        self.slot(exchange, symbol)?.load_full()
    }

    /// The latest traded price of an instrument.
    pub fn ltp(&self, exchange: &str, symbol: &str) -> Option<f64> {
        self.slot(exchange, symbol)?
            .load()
            .as_ref()
            .map(|snapshot| snapshot.ltp)
    }

    /// Every update from now on (for fills driven by price moves). A receiver that lags
    /// more than the capacity gets `RecvError::Lagged` and continues with newer updates.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PriceSnapshot>> {
        self.inner.updates.subscribe()
    }

    /// Number of instruments with a snapshot.
    pub fn len(&self) -> usize {
        self.inner
            .index
            .load()
            .values()
            .map(|by_symbol| by_symbol.len())
            .sum()
    }

    /// True when no tick was ever received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Depth, Mode, Quote};

    fn depth_tick(ltp: f64) -> Tick {
        Tick {
            mode: Mode::Depth,
            quote: Some(Quote {
                open: 1.0,
                high: 2.0,
                low: 0.5,
                close: 1.5,
                volume: 10.0,
                last_quantity: 3.0,
                ..Quote::default()
            }),
            depth: Some(Depth {
                buy: vec![DepthLevel {
                    price: ltp - 0.05,
                    quantity: 1.0,
                    orders: 1,
                }],
                sell: vec![DepthLevel {
                    price: ltp + 0.05,
                    quantity: 2.0,
                    orders: 1,
                }],
            }),
            ..Tick::ltp("NSE", "SBIN", ltp)
        }
    }

    #[tokio::test]
    async fn updates_merge_and_notify() {
        let cache = PriceCache::new();
        let mut updates = cache.subscribe();
        assert!(cache.snapshot("NSE", "SBIN").is_none());
        cache.update(&depth_tick(100.0));
        cache.update(&Tick::ltp("NSE", "SBIN", 101.0));
        let snapshot = cache.snapshot("NSE", "SBIN").unwrap();
        assert_eq!(snapshot.ltp, 101.0);
        assert_eq!(snapshot.prev_close, 1.5);
        assert_eq!(snapshot.ltq, 3.0);
        assert_eq!(snapshot.bid, Some(99.95));
        assert_eq!(snapshot.ask, Some(100.05));
        assert_eq!(cache.ltp("NSE", "SBIN"), Some(101.0));
        assert_eq!(cache.ltp("BSE", "SBIN"), None);
        assert_eq!(updates.recv().await.unwrap().ltp, 100.0);
        assert_eq!(updates.recv().await.unwrap().ltp, 101.0);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn concurrent_writers_and_readers() {
        let cache = PriceCache::new();
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let cache = cache.clone();
                scope.spawn(move || {
                    for i in 0..500 {
                        let symbol = format!("S{}", (i + writer) % 50);
                        cache.update(&Tick::ltp("NSE", symbol, i as f64));
                    }
                });
            }
            let reader = cache.clone();
            scope.spawn(move || {
                for i in 0..2000 {
                    let _ = reader.ltp("NSE", &format!("S{}", i % 50));
                }
            });
        });
        assert_eq!(cache.len(), 50);
    }
}
