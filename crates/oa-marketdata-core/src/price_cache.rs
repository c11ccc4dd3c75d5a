//! [`PriceCache`]: the latest LTP, quote and depth per (exchange, symbol).
//!
//! A cache built [`for a universe`](PriceCache::for_instruments) (the server's: the symbol
//! master) has a slot for every instrument from the start and never grows: a tick for any
//! other instrument is refused ([`CacheUpdate::Unknown`]), so a publisher on the bus cannot grow
//! it. Reads never take a lock: the index is an immutable map whose values are
//! per-instrument [`ArcSwapOption`] slots, and an update swaps one slot.
//!
//! An open cache ([`PriceCache::new`], for tests and embedders without a symbol master)
//! accepts any instrument: new ones go to a second map behind a read-write lock, inserted
//! in place (never a copy of the index).
//!
//! A tick of a lower mode keeps the richer fields of earlier ticks: an LTP tick after a
//! depth tick updates `ltp` and keeps the last known book.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use parking_lot::RwLock;
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
    /// The universe's slots, fixed at construction.
    fixed: Index,
    /// Instruments added later: only in an open cache.
    added: Option<RwLock<Index>>,
    updates: broadcast::Sender<Arc<PriceSnapshot>>,
}

/// What [`PriceCache::update`] did with a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUpdate {
    /// The instrument's snapshot was updated.
    Stored,
    /// The instrument is not in the cache's universe: nothing was stored.
    Unknown,
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

    /// An empty, open cache with the given update-stream capacity.
    pub fn with_update_capacity(capacity: usize) -> Self {
        Self::build(HashMap::new(), true, capacity)
    }

    /// A cache for exactly these `(exchange, symbol)` instruments: ticks of any other are
    /// refused with [`CacheUpdate::Unknown`].
    pub fn for_instruments<'a>(instruments: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut fixed: Index = HashMap::new();
        for (exchange, symbol) in instruments {
            fixed
                .entry(exchange.to_string())
                .or_default()
                .insert(symbol.to_string(), Arc::new(ArcSwapOption::empty()));
        }
        Self::build(fixed, false, 4096)
    }

    fn build(fixed: Index, open: bool, capacity: usize) -> Self {
        let (updates, _) = broadcast::channel(capacity.max(1));
        PriceCache {
            inner: Arc::new(Inner {
                fixed,
                added: open.then(|| RwLock::new(HashMap::new())),
                updates,
            }),
        }
    }

    fn slot(&self, exchange: &str, symbol: &str) -> Option<Slot> {
        let fixed = self
            .inner
            .fixed
            .get(exchange)
            .and_then(|by_symbol| by_symbol.get(symbol));
        if let Some(slot) = fixed {
            return Some(Arc::clone(slot));
        }
        let added = self.inner.added.as_ref()?.read();
        added
            .get(exchange)
            .and_then(|by_symbol| by_symbol.get(symbol))
            .cloned()
    }

    fn slot_or_insert(&self, exchange: &str, symbol: &str) -> Option<Slot> {
        if let Some(slot) = self.slot(exchange, symbol) {
            return Some(slot);
        }
        let mut added = self.inner.added.as_ref()?.write();
        let slot = added
            .entry(exchange.to_string())
            .or_default()
            .entry(symbol.to_string())
            .or_insert_with(|| Arc::new(ArcSwapOption::empty()));
        Some(Arc::clone(slot))
    }

    /// Merges a tick into the instrument's snapshot and notifies subscribers; a tick of an
    /// instrument outside a fixed universe is not stored.
    pub fn update(&self, tick: &Tick) -> CacheUpdate {
        let Some(slot) = self.slot_or_insert(&tick.exchange, &tick.symbol) else {
            return CacheUpdate::Unknown;
        };
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
        CacheUpdate::Stored
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
        let count = |index: &Index| {
            index
                .values()
                .flat_map(HashMap::values)
                .filter(|slot| slot.load().is_some())
                .count()
        };
        count(&self.inner.fixed)
            + self
                .inner
                .added
                .as_ref()
                .map_or(0, |added| count(&added.read()))
    }

    /// True when no tick was ever received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Depth, Quote, TickMode};

    fn depth_tick(ltp: f64) -> Tick {
        Tick {
            mode: TickMode::Depth,
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
    fn a_fixed_universe_refuses_unknown_instruments_and_never_grows() {
        let cache = PriceCache::for_instruments([("NSE", "SBIN"), ("NSE", "INFY")]);
        assert_eq!(
            cache.update(&Tick::ltp("NSE", "SBIN", 800.0)),
            CacheUpdate::Stored
        );
        for n in 0..10_000 {
            assert_eq!(
                cache.update(&Tick::ltp("NSE", format!("JUNK{n}"), 1.0)),
                CacheUpdate::Unknown
            );
        }
        assert_eq!(cache.ltp("NSE", "SBIN"), Some(800.0));
        assert_eq!(cache.ltp("NSE", "JUNK1"), None);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.inner.fixed["NSE"].len(), 2, "the index did not grow");
        assert!(cache.inner.added.is_none());
    }

    #[test]
    fn an_open_cache_adds_instruments_in_place() {
        let cache = PriceCache::new();
        cache.update(&Tick::ltp("NSE", "SBIN", 1.0));
        let first = cache.slot("NSE", "SBIN").unwrap();
        for n in 0..100 {
            cache.update(&Tick::ltp("NSE", format!("S{n}"), 1.0));
        }
        // The first slot is the same object: adding instruments did not copy the index.
        assert!(Arc::ptr_eq(&first, &cache.slot("NSE", "SBIN").unwrap()));
        assert_eq!(cache.len(), 101);
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
