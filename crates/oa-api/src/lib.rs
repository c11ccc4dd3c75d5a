#![doc = include_str!("../README.md")]
//!
//! ```text
//! HTTP ─▶ rate limit (per IP) ─▶ JSON body ─▶ fields (400) ─▶ API key (403, cached)
//!      ─▶ OrderService ─▶ Broker (sandbox in analyzer mode, simulator live)
//!      ─▶ engine worker thread: engine + SQLite transaction (+ outbox) ─▶ publish events
//! ```

#![warn(unreachable_pub)]

mod account;
pub mod broker;
mod commands;
mod config;
mod contracts;
pub mod engine;
mod error;
pub mod esb;
mod fields;
mod history;
mod idempotency;
mod journal;
#[cfg(feature = "kafka")]
pub mod kafka_outbox;
mod keys;
pub mod leadership;
mod marketdata;
mod options;
pub mod outbox;
mod price;
mod ratelimit;
pub mod requests;
pub mod responses;
mod revocation;
mod routes;
mod service;
mod store;
mod symbols;
pub mod types;

use std::collections::HashMap;
use std::sync::Arc;

use oa_events_core::{ApiKeyVerifier, EventPublisher};
use oa_marketdata_core::{PriceCache, SymbolMaster};

pub use broker::{Broker, BrokerError, BrokerFuture, EngineBroker, FundsView, PositionView};
pub use commands::{CommandKind, OrderCommand, read_command, run_command};
pub use config::{
    ApiConfig, ConfigError, DEFAULT_DATABASE_URL, ENV_VARS, HistoryConfig, Leverage, RateLimits,
    SimulatorConfig, parse_database_url,
};
pub use engine::worker::{EngineHandle, JobCtx};
pub use error::{ApiError, HttpError};
pub use fields::Fields;
pub use journal::{Journal, LogEntry, Record};
pub use keys::{KeyError, KeyStore};
pub use price::{
    DepthLevel, MarketData, PriceEvent, PriceSource, PriceStream, Quote, StaticPrices,
    stream_from_broadcast,
};
pub use ratelimit::{RATE_LIMIT_BODY, parse_setting as parse_rate_limit};
pub use service::{ActionLog, OrderService};
pub use store::{StoreError, StoreLocation, StoreSync, UserKeyInfo};
pub use symbols::{StaticSymbols, SymbolDirectory};
pub use types::AccountMode;

use crate::engine::EngineConfig;
use crate::engine::worker::WorkerConfig;
use crate::routes::{AppState, Limiters};

/// The built REST layer: its router, key store and order service.
#[derive(Debug, Clone)]
pub struct Api {
    router: axum::Router,
    keys: KeyStore,
    service: Arc<OrderService>,
    history: Arc<history::History>,
    default_user: String,
    limits: config::RateLimits,
}

impl Api {
    /// The router (`/api/v1/...` and JSON 404s under `/api/`). Serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so rate limits see client IPs.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// The API-key verifier for the WebSocket and Socket.IO layers.
    pub fn verifier(&self) -> Arc<dyn ApiKeyVerifier> {
        Arc::new(self.keys.clone())
    }

    /// User and key management (`oa-server apikey ...`).
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The order service (for in-process callers such as an ESB consumer).
    pub fn service(&self) -> &Arc<OrderService> {
        &self.service
    }

    /// The ESB command runner on this API's order service, with its rate limits counted
    /// per user.
    pub fn esb_commands(&self) -> esb::EsbCommands {
        esb::EsbCommands::new(Arc::clone(&self.service), self.limits)
    }

    /// Stores 1-minute bars made outside the tick stream (the simulated feed's backfill),
    /// keeping any bar already stored for the same instrument and minute; returns how many
    /// were written.
    pub async fn backfill_bars(
        &self,
        bars: Vec<oa_marketdata_core::candles::InstrumentBar>,
    ) -> Result<usize, ApiError> {
        Ok(self.history.backfill(bars).await?)
    }

    /// True while 1-minute bars are being recorded from the price source's ticks.
    pub fn is_recording_bars(&self) -> bool {
        self.history.is_recording()
    }

    /// Stops recording bars and stores the ones not stored yet (the current minute's
    /// included), for a clean shutdown; returns how many that was.
    pub async fn stop_recording_bars(&self) -> Result<usize, ApiError> {
        Ok(self.history.stop().await?)
    }

    /// Deletes stored bars that start before `before` (epoch seconds), as retention does
    /// every hour; returns how many.
    pub async fn prune_bars_before(&self, before: i64) -> Result<usize, ApiError> {
        Ok(self.history.prune_before(before).await?)
    }

    /// On first start (no users), creates the default user and returns its key once.
    pub async fn ensure_default_user(&self) -> Result<Option<String>, ApiError> {
        Ok(self.keys.ensure_default_user(&self.default_user).await?)
    }
}

/// Builds the REST layer on the market-data price cache and symbol master.
pub async fn build(
    config: ApiConfig,
    publisher: EventPublisher,
    prices: PriceCache,
    symbols: Arc<SymbolMaster>,
) -> Result<Api, ApiError> {
    build_with_sources(config, publisher, Arc::new(prices), Arc::new(symbols)).await
}

/// Builds the REST layer on any price source and symbol directory, with the bundled
/// `simulator` as the live broker.
pub async fn build_with_sources(
    config: ApiConfig,
    publisher: EventPublisher,
    prices: Arc<dyn PriceSource>,
    symbols: Arc<dyn SymbolDirectory>,
) -> Result<Api, ApiError> {
    let faults = config.simulator;
    build_with_broker(
        config,
        publisher,
        prices,
        symbols,
        Box::new(move |engine| Arc::new(EngineBroker::simulator(engine, faults))),
    )
    .await
}

/// Makes the live-mode broker. It receives the engine's handle so that an adapter can
/// persist its journal records (`handle.run(|ctx| ctx.record(record))`) in the store's
/// transactions, as the bundled brokers do.
pub type LiveBrokerFactory = Box<dyn FnOnce(EngineHandle) -> Arc<dyn Broker> + Send>;

/// Builds the REST layer with a custom live broker (a real broker adapter); analyzer mode
/// still uses the sandbox.
pub async fn build_with_broker(
    config: ApiConfig,
    publisher: EventPublisher,
    prices: Arc<dyn PriceSource>,
    symbols: Arc<dyn SymbolDirectory>,
    live_broker: LiveBrokerFactory,
) -> Result<Api, ApiError> {
    let snapshots = prices.snapshots();
    assemble(config, publisher, prices, symbols, live_broker, snapshots).await
}

/// [`build`], recording 1-minute bars from `ticks`: the price cache's updates subscribed
/// before the feed started (`MarketData::take_updates_since_start`), so that no tick of a
/// replay is missed while the REST layer starts.
pub async fn build_recording(
    config: ApiConfig,
    publisher: EventPublisher,
    prices: PriceCache,
    symbols: Arc<SymbolMaster>,
    ticks: tokio::sync::broadcast::Receiver<Arc<oa_marketdata_core::PriceSnapshot>>,
) -> Result<Api, ApiError> {
    let faults = config.simulator;
    assemble(
        config,
        publisher,
        Arc::new(prices),
        Arc::new(symbols),
        Box::new(move |engine| Arc::new(EngineBroker::simulator(engine, faults))),
        Some(ticks),
    )
    .await
}

async fn assemble(
    config: ApiConfig,
    publisher: EventPublisher,
    prices: Arc<dyn PriceSource>,
    symbols: Arc<dyn SymbolDirectory>,
    live_broker: LiveBrokerFactory,
    snapshots: Option<tokio::sync::broadcast::Receiver<Arc<oa_marketdata_core::PriceSnapshot>>>,
) -> Result<Api, ApiError> {
    let (limits, location) = config.validate()?;
    let calendar = account::calendar::MarketCalendar::load(config.market_calendar.as_deref())
        .map_err(|error| ConfigError::MarketCalendar(error.0))?;
    let worker_config = WorkerConfig {
        engine: EngineConfig {
            starting_funds: config.starting_funds,
            leverage: config.leverage,
        },
        durable_outbox: config.durable_outbox,
        queue_capacity: config.engine_queue_capacity,
        standby: config.standby,
    };
    let runtime = tokio::runtime::Handle::current();
    let blocking_error =
        |error: tokio::task::JoinError| ApiError::Store(StoreError::Task(error.to_string()));
    let (engine, modes, history) = {
        let publisher = publisher.clone();
        let prices = Arc::clone(&prices);
        let location = location.clone();
        let history_config = config.history;
        tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let _guard = runtime.enter();
            let conn = store::open(&location, config.store_sync)?;
            // The bar store's own connection (opened after the engine's, which migrates).
            let bars = store::open(&location, config.store_sync)?;
            let modes: HashMap<String, AccountMode> = conn
                .queries()
                .load_setting(service::ANALYZE_MODE_SETTING)?
                .into_iter()
                .map(|(user, value)| (user, AccountMode::from_analyze_flag(value == "true")))
                .collect();
            let engine = EngineHandle::start(conn, worker_config, prices, publisher)?;
            let history = history::History::start(bars, snapshots, &history_config)?;
            Ok((engine, modes, history))
        })
        .await
        .map_err(blocking_error)??
    };
    let sandbox: Arc<dyn Broker> = Arc::new(EngineBroker::sandbox(engine.clone()));
    let live = live_broker(engine.clone());
    let keys = {
        let publisher = publisher.clone();
        let config = config.clone();
        let broker = live.name();
        tokio::task::spawn_blocking(move || {
            KeyStore::open(
                &location,
                &config.api_key_pepper,
                broker,
                config.key_cache_capacity,
                config.key_cache_ttl,
                publisher,
            )
        })
        .await
        .map_err(blocking_error)??
    };
    let service = Arc::new(OrderService::new(
        sandbox,
        live,
        engine,
        prices,
        symbols,
        modes,
        AccountMode::from_analyze_flag(config.default_analyze_mode),
    ));
    let limiters = Limiters::new(limits);
    limiters.spawn_cleanup();
    let history = Arc::new(history);
    let state = AppState {
        service: Arc::clone(&service),
        history: Arc::clone(&history),
        keys: keys.clone(),
        body_limit: config.body_limit_bytes,
        in_flight: idempotency::InFlight::default(),
        account: Arc::new(account::AccountSettings {
            calendar,
            leverage: config.leverage,
        }),
    };
    Ok(Api {
        router: routes::router(state, &limiters),
        keys,
        service,
        history,
        default_user: config.default_user,
        limits,
    })
}
