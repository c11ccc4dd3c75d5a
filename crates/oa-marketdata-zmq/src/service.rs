//! [`start`]: the one entry point the server calls. Loads the symbol master (announcing it),
//! binds the bus, starts the WebSocket proxy, the dispatcher and the configured feed.
//!
//! ```text
//! feed ─▶ bus thread ─▶ dispatcher thread ─┬▶ price cache
//!                                        └▶ hub ─▶ client send queues ─▶ writer tasks
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oa_events_core::{ApiKeyVerifier, EventPublisher};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::bus::{Bus, BusConfig, BusError, BusStatsSnapshot};
use crate::config::{FeedKind, MarketDataConfig};
use crate::feed::replay::{ReplayConfig, ReplayFeed};
use crate::feed::simulated::{SimulatedConfig, SimulatedFeed};
use crate::feed::{FeedAdapter, FeedError, SubscriptionHint};
use crate::ws::{ClientStats, ProxyStats, WsConfig, WsError, WsProxy};
use oa_marketdata_core::price_cache::{CacheUpdate, PriceCache, PriceSnapshot};
use oa_marketdata_core::symbols::{Instrument, SymbolMaster, SymbolMasterError, SymbolSource};
use oa_marketdata_core::tick::{Tick, TickMode};

/// Why the market-data layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum MarketDataError {
    /// A setting is invalid.
    #[error("invalid {setting}: {message}")]
    Config {
        /// The environment variable.
        setting: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The symbol master could not be loaded.
    #[error(transparent)]
    Symbols(#[from] SymbolMasterError),
    /// The bus could not be bound.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The WebSocket proxy could not listen.
    #[error(transparent)]
    WebSocket(#[from] WsError),
    /// The feed adapter could not start.
    #[error("feed adapter failed to start: {0}")]
    Feed(#[from] FeedError),
    /// A thread could not be started.
    #[error("cannot start the market-data dispatcher thread: {0}")]
    Thread(std::io::Error),
}

/// Counters of the whole layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MarketDataStats {
    /// Bus counters.
    pub bus: BusStatsSnapshot,
    /// WebSocket proxy counters.
    pub proxy: ProxyStats,
    /// Ticks the bundled feed published.
    pub feed_published: u64,
    /// Ticks not fanned out because a newer tick of the same instrument and mode was waiting
    /// behind them (the dispatcher was behind the bus). They did update the price cache.
    pub coalesced: u64,
}

type SharedFeed = Arc<Mutex<Box<dyn FeedAdapter>>>;

/// The running market-data layer.
#[derive(Debug)]
pub struct MarketData {
    price_cache: PriceCache,
    symbols: Arc<SymbolMaster>,
    ws: WsProxy,
    bus: Option<Bus>,
    zmq_endpoint: String,
    dispatcher: Option<std::thread::JoinHandle<()>>,
    hint_task: JoinHandle<()>,
    feed: Option<SharedFeed>,
    coalesced: Arc<AtomicU64>,
    /// The price cache's updates from before the feed started, until taken.
    early_updates: Mutex<Option<tokio::sync::broadcast::Receiver<Arc<PriceSnapshot>>>>,
}

impl std::fmt::Debug for dyn FeedAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FeedAdapter({})", self.name())
    }
}

/// Picks the feed's instruments from `EXCHANGE:SYMBOL` names (all of the master when empty):
/// the instruments the simulated feed publishes (`OA_FEED_SYMBOLS`).
pub fn feed_instruments(
    symbols: &SymbolMaster,
    names: &[String],
) -> Result<Vec<Instrument>, MarketDataError> {
    if names.is_empty() {
        return Ok(symbols.iter().cloned().collect());
    }
    names
        .iter()
        .map(|name| {
            let (exchange, symbol) =
                name.split_once(':')
                    .ok_or_else(|| MarketDataError::Config {
                        setting: "OA_FEED_SYMBOLS",
                        message: format!("{name:?} is not EXCHANGE:SYMBOL (for example NSE:SBIN)"),
                    })?;
            symbols
                .lookup(&exchange.trim().to_ascii_uppercase(), symbol.trim())
                .cloned()
                .ok_or_else(|| MarketDataError::Config {
                    setting: "OA_FEED_SYMBOLS",
                    message: format!("{name} is not in the symbol master"),
                })
        })
        .collect()
}

fn build_feed(
    config: &MarketDataConfig,
    symbols: &SymbolMaster,
) -> Result<Option<Box<dyn FeedAdapter>>, MarketDataError> {
    Ok(match config.feed {
        FeedKind::None => None,
        FeedKind::Simulated => Some(Box::new(SimulatedFeed::new(SimulatedConfig {
            instruments: feed_instruments(symbols, &config.feed_symbols)?,
            ticks_per_second: config.feed_ticks_per_second,
            seed: config.feed_seed,
            depth_levels: 5,
            sndhwm: config.zmq_hwm,
        }))),
        FeedKind::Replay => {
            let path = config
                .replay_file
                .clone()
                .ok_or_else(|| MarketDataError::Config {
                    setting: "OA_REPLAY_FILE",
                    message: "OA_FEED=replay needs OA_REPLAY_FILE (a JSON-lines or .csv tick file)"
                        .to_string(),
                })?;
            if !(config.replay_speed.is_finite() && config.replay_speed >= 0.0) {
                return Err(MarketDataError::Config {
                    setting: "OA_REPLAY_SPEED",
                    message: format!(
                        "{} is not a speed factor >= 0 (1 = recorded pace, 0 = as fast as possible)",
                        config.replay_speed
                    ),
                });
            }
            Some(Box::new(ReplayFeed::new(ReplayConfig {
                path,
                speed: config.replay_speed,
                restamp: true,
                repeat: config.replay_repeat,
                sndhwm: config.zmq_hwm,
            })))
        }
    })
}

/// Consumes decoded ticks on its own thread: every tick updates the price cache, then fans
/// out. A dedicated thread (rather than a task) keeps fan-out from queueing behind the
/// clients' tasks on the runtime's workers.
///
/// Ticks are drained in batches. A batch holds more than one tick only when the dispatcher
/// is behind the bus; then, like a slow client's send queue, only the newest tick of each
/// (instrument, mode) in the batch is fanned out (the older ones are counted as conflated).
fn run_dispatcher(
    mut ticks: mpsc::Receiver<Tick>,
    cache: PriceCache,
    dispatch: impl Fn(&Tick) + Send + 'static,
    coalesced: Arc<AtomicU64>,
) {
    const BATCH: usize = 256;
    let conflated_counter = metrics::counter!("oa_ticks_conflated_total");
    let unknown_counter = metrics::counter!("oa_ticks_dropped_total", "reason" => "unknown_symbol");
    let mut unknown_total = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    // Ends when the bus thread (the sender) stops.
    while let Some(first) = ticks.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match ticks.try_recv() {
                Ok(tick) => batch.push(tick),
                Err(_) => break,
            }
        }
        // A tick of an instrument outside the symbol master is dropped: neither cached (a
        // publisher cannot grow the cache) nor fanned out (nobody can subscribe to it).
        let before = batch.len();
        batch.retain(|tick| cache.update(tick) == CacheUpdate::Stored);
        let unknown = (before - batch.len()) as u64;
        if unknown > 0 {
            unknown_counter.increment(unknown);
            let previous = unknown_total;
            unknown_total += unknown;
            if previous == 0 || unknown_total.ilog2() > previous.ilog2() {
                tracing::warn!(
                    unknown_total,
                    "ticks for instruments not in the symbol master were dropped"
                );
            }
        }
        if batch.is_empty() {
            continue;
        }
        if batch.len() == 1 {
            for tick in batch.drain(..) {
                dispatch(&tick);
            }
            continue;
        }
        let keep = {
            let mut newest: HashMap<(&str, &str, TickMode), usize> =
                HashMap::with_capacity(batch.len());
            for (position, tick) in batch.iter().enumerate() {
                newest.insert((&tick.exchange, &tick.symbol, tick.mode), position);
            }
            let mut keep = vec![false; batch.len()];
            for position in newest.into_values() {
                keep[position] = true;
            }
            keep
        };
        let mut skipped = 0u64;
        for (tick, keep) in batch.drain(..).zip(keep) {
            if keep {
                dispatch(&tick);
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            coalesced.fetch_add(skipped, Ordering::Relaxed);
            conflated_counter.increment(skipped);
        }
    }
}

/// Starts the market-data layer.
///
/// Install the metrics recorder before calling: counters are resolved once at start.
/// `broker_name` names the broker in `master_contract_download` and `market_data` messages.
pub async fn start(
    config: MarketDataConfig,
    verifier: Arc<dyn ApiKeyVerifier>,
    publisher: EventPublisher,
    broker_name: String,
) -> Result<MarketData, MarketDataError> {
    let ws_addr = config.websocket_addr()?;
    let source = match &config.symbol_master_csv {
        Some(path) => SymbolSource::Csv(path.clone()),
        None => SymbolSource::Bundled,
    };
    let symbols = Arc::new(SymbolMaster::load_and_announce(
        &source,
        &publisher,
        &broker_name,
    )?);
    let feed = build_feed(&config, &symbols)?;

    let (order_relay, relayed_orders) = mpsc::channel(4096);
    let (bus, ticks) = Bus::bind_relaying_orders(
        &BusConfig {
            endpoint: config.zmq_endpoint(),
            rcvhwm: config.zmq_hwm,
            max_frame_bytes: config.zmq_max_frame_bytes,
            channel_capacity: config.bus_channel_capacity,
            poll_interval: Duration::from_millis(100),
        },
        Some(order_relay),
    )?;
    let zmq_endpoint = bus.endpoint().to_string();

    let (hint_sender, mut hint_receiver) = mpsc::channel::<SubscriptionHint>(4096);
    let ws = WsProxy::start(
        &WsConfig {
            bind: ws_addr,
            auth_grace: config.ws_auth_grace,
            max_queue: config.ws_max_queue,
            ping_interval: config.ws_ping_interval,
            ping_timeout: config.ws_ping_timeout,
            max_symbols_per_websocket: config.max_symbols_per_websocket,
            max_websocket_connections: config.max_websocket_connections,
            max_message_bytes: config.ws_max_message_bytes,
            connections: oa_net::ConnectionLimits {
                max_total: config.ws_max_connections,
                max_per_ip: config.ws_max_connections_per_ip,
            },
            login_rate: config.login_rate_limit,
            header_timeout: Duration::from_secs(10),
            broker: broker_name.clone(),
        },
        Arc::clone(&symbols),
        verifier,
        Some(&publisher),
        Some(hint_sender),
    )
    .await?;

    ws.relay_orders(relayed_orders);

    let price_cache = PriceCache::for_instruments(
        symbols
            .iter()
            .map(|instrument| (instrument.exchange.as_str(), instrument.symbol.as_str())),
    );
    // Subscribed before any tick can arrive, for a consumer that must not miss the first ones.
    let early_updates = Mutex::new(Some(price_cache.subscribe()));
    let coalesced = Arc::new(AtomicU64::new(0));
    let dispatcher = {
        let cache = price_cache.clone();
        let dispatch = ws.dispatcher();
        let coalesced = Arc::clone(&coalesced);
        match std::thread::Builder::new()
            .name("oa-md-dispatch".to_string())
            .spawn(move || run_dispatcher(ticks, cache, dispatch, coalesced))
        {
            Ok(thread) => thread,
            Err(error) => {
                ws.shutdown().await;
                return Err(MarketDataError::Thread(error));
            }
        }
    };

    let feed: Option<SharedFeed> = match feed {
        None => None,
        Some(mut adapter) => {
            let endpoint = zmq_endpoint.clone();
            // Starting may wait for the bus connection: keep it off the async workers.
            let started = tokio::task::spawn_blocking(move || {
                let result = adapter.start(&endpoint);
                (adapter, result)
            })
            .await;
            match started {
                Ok((adapter, Ok(()))) => Some(Arc::new(Mutex::new(adapter))),
                Ok((_, Err(error))) => {
                    // Dropping the bus closes the tick channel, which ends the dispatcher.
                    ws.shutdown().await;
                    return Err(error.into());
                }
                Err(join_error) => {
                    ws.shutdown().await;
                    return Err(MarketDataError::Feed(FeedError::Thread(
                        std::io::Error::other(join_error.to_string()),
                    )));
                }
            }
        }
    };
    let hint_feed = feed.clone();
    let hint_task = tokio::spawn(async move {
        while let Some(hint) = hint_receiver.recv().await {
            if let Some(feed) = &hint_feed {
                feed.lock().subscription_changed(&hint);
            }
        }
    });
    tracing::info!(
        zmq = %zmq_endpoint,
        websocket = %ws.local_addr(),
        symbols = symbols.len(),
        feed = ?config.feed,
        "market data started"
    );
    Ok(MarketData {
        price_cache,
        symbols,
        ws,
        bus: Some(bus),
        zmq_endpoint,
        dispatcher: Some(dispatcher),
        hint_task,
        feed,
        coalesced,
        early_updates,
    })
}

impl MarketData {
    /// The price cache (a clone sharing the same data).
    pub fn price_cache(&self) -> PriceCache {
        self.price_cache.clone()
    }

    /// Every price-cache update since the cache was created, before the feed published its
    /// first tick (the bar recorder records a replay from its first tick). Taken once;
    /// `None` afterwards. The receiver holds the cache's last 4,096 updates until it is read.
    pub fn take_updates_since_start(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<Arc<PriceSnapshot>>> {
        self.early_updates.lock().take()
    }

    /// The symbol master.
    pub fn symbols(&self) -> Arc<SymbolMaster> {
        Arc::clone(&self.symbols)
    }

    /// The WebSocket address actually bound.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.local_addr()
    }

    /// The bus endpoint actually bound (`tcp://127.0.0.1:5555`): give it to publishers.
    pub fn zmq_endpoint(&self) -> &str {
        &self.zmq_endpoint
    }

    /// Counters.
    pub fn stats(&self) -> MarketDataStats {
        MarketDataStats {
            bus: self.bus.as_ref().map(Bus::stats).unwrap_or_default(),
            proxy: self.ws.stats(),
            feed_published: self.feed.as_ref().map_or(0, |feed| feed.lock().published()),
            coalesced: self.coalesced.load(Ordering::Relaxed),
        }
    }

    /// Per-client counters of the WebSocket proxy.
    pub fn client_stats(&self) -> Vec<ClientStats> {
        self.ws.client_stats()
    }

    /// Stops the feed, closes WebSocket clients (1001), stops the dispatcher and the bus.
    pub async fn shutdown(mut self) {
        if let Some(feed) = self.feed.take() {
            let _ = tokio::task::spawn_blocking(move || feed.lock().stop()).await;
        }
        self.hint_task.abort();
        self.ws.shutdown().await;
        let bus = self.bus.take();
        let dispatcher = self.dispatcher.take();
        let _ = tokio::task::spawn_blocking(move || {
            // Stopping the bus closes the tick channel; the dispatcher then drains and ends.
            if let Some(bus) = bus {
                bus.shutdown();
            }
            if let Some(dispatcher) = dispatcher
                && dispatcher.join().is_err()
            {
                tracing::error!("market-data dispatcher thread panicked");
            }
        })
        .await;
        tracing::info!("market data stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dispatcher_behind_the_bus_fans_out_only_the_newest_tick_per_key() {
        let (sender, receiver) = mpsc::channel(16);
        for ltp in [1.0, 2.0, 3.0] {
            sender.blocking_send(Tick::ltp("NSE", "SBIN", ltp)).unwrap();
        }
        let mut depth = Tick::ltp("NSE", "SBIN", 4.0);
        depth.mode = TickMode::Depth;
        sender.blocking_send(depth).unwrap();
        sender.blocking_send(Tick::ltp("NSE", "INFY", 5.0)).unwrap();
        drop(sender);
        let cache = PriceCache::new();
        let dispatched = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&dispatched);
        let coalesced = Arc::new(AtomicU64::new(0));
        run_dispatcher(
            receiver,
            cache.clone(),
            move |tick: &Tick| seen.lock().push((tick.symbol.clone(), tick.mode, tick.ltp)),
            Arc::clone(&coalesced),
        );
        assert_eq!(
            *dispatched.lock(),
            [
                ("SBIN".to_string(), TickMode::Ltp, 3.0),
                ("SBIN".to_string(), TickMode::Depth, 4.0),
                ("INFY".to_string(), TickMode::Ltp, 5.0),
            ]
        );
        assert_eq!(coalesced.load(Ordering::Relaxed), 2);
        // Every tick still reached the cache.
        assert_eq!(cache.ltp("NSE", "SBIN"), Some(4.0));
        assert_eq!(cache.ltp("NSE", "INFY"), Some(5.0));
    }

    #[test]
    fn ticks_outside_the_symbol_master_are_neither_cached_nor_fanned_out() {
        let (sender, receiver) = mpsc::channel(64);
        sender.blocking_send(Tick::ltp("NSE", "SBIN", 1.0)).unwrap();
        for n in 0..20 {
            sender
                .blocking_send(Tick::ltp("NSE", format!("FLOOD{n}"), 1.0))
                .unwrap();
        }
        sender.blocking_send(Tick::ltp("NSE", "SBIN", 2.0)).unwrap();
        drop(sender);
        let cache = PriceCache::for_instruments([("NSE", "SBIN")]);
        let dispatched = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&dispatched);
        run_dispatcher(
            receiver,
            cache.clone(),
            move |tick: &Tick| seen.lock().push(tick.symbol.clone()),
            Arc::new(AtomicU64::new(0)),
        );
        assert!(dispatched.lock().iter().all(|symbol| symbol == "SBIN"));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.ltp("NSE", "SBIN"), Some(2.0));
        assert_eq!(cache.ltp("NSE", "FLOOD3"), None);
    }
}
