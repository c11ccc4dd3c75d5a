//! The order service: routes each action to the user's broker (sandbox in analyzer mode,
//! the live broker otherwise), builds the response bodies, and journals each action with
//! the events of docs/events.md (live event names in live mode, `analyzer_update`
//! in analyzer mode).
//!
//! - [`actions`]: the order-changing commands and what they journal;
//! - [`books`]: the read models (orderbook, tradebook, positionbook, funds, orderstatus,
//!   openposition);
//! - [`quotes`]: quotes and depth from the price source;
//! - [`analyzer`]: the per-user account mode (live or analyzer) and its switch.

mod actions;
mod analyzer;
mod books;
pub(crate) mod holdings;
pub(crate) mod options;
mod quotes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{FixedOffset, TimeZone};
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::broker::{Broker, BrokerError};
use crate::engine::worker::EngineHandle;
use crate::engine::{EngineError, NewOrder};
use crate::error::HttpError;
use crate::idempotency::{Claim, Stored};
use crate::journal::Record;
use crate::price::PriceSource;
use crate::requests::OrderFields;
use crate::store::StoreError;
use crate::symbols::SymbolDirectory;
use crate::types::{AccountMode, Exchange};

pub(crate) use analyzer::ANALYZE_MODE_SETTING;

type Result<T> = std::result::Result<T, HttpError>;

/// Routes actions to brokers and journals them.
pub struct OrderService {
    sandbox: Arc<dyn Broker>,
    live: Arc<dyn Broker>,
    engine: EngineHandle,
    prices: Arc<dyn PriceSource>,
    symbols: Arc<dyn SymbolDirectory>,
    modes: RwLock<HashMap<String, AccountMode>>,
    /// One lock per user: smart orders of a user run one at a time, so duplicate signals
    /// read the position the previous one produced instead of both placing an order.
    smart_locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    default_mode: AccountMode,
}

impl std::fmt::Debug for OrderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderService")
            .field("sandbox", &self.sandbox.name())
            .field("live", &self.live.name())
            .field("default_mode", &self.default_mode)
            .finish_non_exhaustive()
    }
}

/// Formats epoch ms as OpenAlgo's `DD-MMM-YYYY HH:MM:SS`, Indian time (UTC+05:30).
pub(crate) fn format_timestamp(epoch_ms: i64) -> String {
    FixedOffset::east_opt(5 * 3600 + 1800)
        .and_then(|ist| ist.timestamp_millis_opt(epoch_ms).single())
        .map(|time| time.format("%d-%b-%Y %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Formats epoch ms as upstream's sandbox does (`YYYY-MM-DD HH:MM:SS`, Indian time).
pub(crate) fn format_sandbox_timestamp(epoch_ms: i64) -> String {
    FixedOffset::east_opt(5 * 3600 + 1800)
        .and_then(|ist| ist.timestamp_millis_opt(epoch_ms).single())
        .map(|time| time.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

impl From<BrokerError> for HttpError {
    fn from(error: BrokerError) -> Self {
        broker_error(&error)
    }
}

/// Maps a broker error to its HTTP error.
pub(crate) fn broker_error(error: &BrokerError) -> HttpError {
    match error {
        BrokerError::Refused(EngineError::OrderNotFound(_)) => {
            HttpError::not_found(error.to_string())
        }
        BrokerError::Refused(_) => HttpError::bad_request(error.to_string()),
        BrokerError::Unavailable(_) => HttpError::internal(error),
        BrokerError::WritesStopped(reason) => writes_stopped(reason),
    }
}

/// The 503 of an order-changing request while the engine does not take writes.
pub(crate) fn writes_stopped(reason: &str) -> HttpError {
    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, reason)
}

/// Maps a store error to its HTTP error (503 while writes are stopped, else 500).
pub(crate) fn store_error(error: StoreError) -> HttpError {
    match error {
        StoreError::WritesStopped(reason) | StoreError::Fenced(reason) => writes_stopped(&reason),
        error => HttpError::internal(&error),
    }
}

/// What an order action records about its request: the body without `apikey` (order log,
/// `analyzer_update`) and, with an `Idempotency-Key`, the claim whose response is stored
/// with the action. A plain body converts into one without a claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionLog {
    /// The request body without `apikey`.
    pub(crate) body: Map<String, Value>,
    /// The idempotent request this action answers, if any.
    pub(crate) claim: Option<Claim>,
}

impl From<Map<String, Value>> for ActionLog {
    fn from(body: Map<String, Value>) -> Self {
        ActionLog { body, claim: None }
    }
}

impl OrderService {
    /// A service over the two brokers. `modes` holds stored analyzer switches.
    pub fn new(
        sandbox: Arc<dyn Broker>,
        live: Arc<dyn Broker>,
        engine: EngineHandle,
        prices: Arc<dyn PriceSource>,
        symbols: Arc<dyn SymbolDirectory>,
        modes: HashMap<String, AccountMode>,
        default_mode: AccountMode,
    ) -> Self {
        OrderService {
            sandbox,
            live,
            engine,
            prices,
            symbols,
            modes: RwLock::new(modes),
            smart_locks: parking_lot::Mutex::new(HashMap::new()),
            default_mode,
        }
    }

    /// The engine worker: runs jobs in the store's transactions.
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// The user's current mode.
    pub fn mode(&self, user_id: &str) -> AccountMode {
        self.modes
            .read()
            .get(user_id)
            .copied()
            .unwrap_or(self.default_mode)
    }

    fn broker(&self, mode: AccountMode) -> &Arc<dyn Broker> {
        match mode {
            AccountMode::Live => &self.live,
            AccountMode::Analyze => &self.sandbox,
        }
    }

    /// The live broker's name.
    pub fn live_broker_name(&self) -> &'static str {
        self.live.name()
    }

    /// What the store holds for an idempotent request (a read: it also answers while writes
    /// are stopped).
    pub(crate) async fn stored_response(&self, claim: &Claim) -> Result<Stored> {
        let (user, key) = (claim.user_id.clone(), claim.key.as_str().to_string());
        let row = self
            .engine
            .read(move |ctx| {
                let since = ctx.now_ms - crate::engine::worker::IDEMPOTENCY_RETENTION_MS;
                ctx.tx().find_idempotency(&user, &key, since)
            })
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
        Ok(Stored::of(row, claim))
    }

    /// The symbol directory (the symbol master).
    pub(crate) fn symbol_directory(&self) -> &Arc<dyn SymbolDirectory> {
        &self.symbols
    }

    /// True when the symbol master lists the symbol on the exchange.
    pub(crate) fn is_listed(&self, exchange: Exchange, symbol: &str) -> bool {
        self.symbols.lot_size(exchange.as_str(), symbol).is_some()
    }

    /// Refuses unknown symbols and quantities that are not whole lots.
    fn check_symbol(
        &self,
        prefix: &str,
        exchange: Exchange,
        symbol: &str,
        quantity: Option<f64>,
    ) -> Result<()> {
        let Some(lot) = self.symbols.lot_size(exchange.as_str(), symbol) else {
            return Err(HttpError::bad_request(format!(
                "{prefix}symbol: {symbol} is not a known symbol on exchange {exchange}"
            )));
        };
        if let Some(quantity) = quantity
            && lot > 1.0
            && (quantity / lot).fract().abs() > 1e-9
        {
            return Err(HttpError::bad_request(format!(
                "{prefix}quantity: expected a multiple of the lot size {lot} of {symbol}, got {quantity}"
            )));
        }
        Ok(())
    }

    fn new_order(user_id: &str, strategy: &str, order: &OrderFields) -> NewOrder {
        NewOrder {
            user_id: user_id.to_string(),
            strategy: strategy.to_string(),
            terms: order.clone(),
        }
    }

    /// Records an action that changed nothing (log row and events) and publishes it.
    async fn record_only(&self, record: Record) -> Result<()> {
        self.engine
            .run(move |ctx| ctx.record(record))
            .await
            .map_err(store_error)
    }
}
