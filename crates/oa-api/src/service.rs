//! The order service: routes each action to the user's broker (sandbox in analyzer mode,
//! the live broker otherwise), builds the response bodies, and journals each action with
//! the events of docs/events.md (live event names in live mode, `analyzer_update`
//! in analyzer mode).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{FixedOffset, TimeZone};
use oa_events_core::Event;
use oa_events_core::catalog::{
    AnalyzerUpdate, CancelOrderEvent, ClosePositionEvent, ModifyOrderEvent, OrderEvent,
    OrderNotification,
};
use oa_events_core::number::Quantity;
use parking_lot::RwLock;
use serde_json::{Map, Value, json};

use crate::broker::{BatchOutcome, Broker, BrokerError};
use crate::engine::worker::EngineHandle;
use crate::engine::{CancelAllOutcome, EngineError, ModifyOrder, NewOrder, Order, PlaceOutcome};
use crate::error::HttpError;
use crate::idempotency::{Claim, Stored};
use crate::journal::{Journal, LogEntry, Record};
use crate::price::PriceSource;
use crate::requests::{
    BasketOrder, ModifyRequest, OrderFields, PlaceOrder, SmartOrder, SplitOrder,
};
use crate::store::{self, StoreError};
use crate::symbols::SymbolDirectory;
use crate::types::{Action, Exchange, Mode, OrderStatus, Product};

/// The message of a smart order whose position already matches.
pub const POSITIONS_MATCHED: &str = "Positions Already Matched. No Action needed.";
/// The message of closeposition.
pub const POSITIONS_CLOSED: &str = "All Open Positions Squared Off";
/// The name of the per-user analyzer setting.
pub const ANALYZE_MODE_SETTING: &str = "analyze_mode";

type Result<T> = std::result::Result<T, HttpError>;

/// Routes actions to brokers and journals them.
pub struct OrderService {
    sandbox: Arc<dyn Broker>,
    live: Arc<dyn Broker>,
    engine: EngineHandle,
    prices: Arc<dyn PriceSource>,
    symbols: Arc<dyn SymbolDirectory>,
    modes: RwLock<HashMap<String, Mode>>,
    /// One lock per user: smart orders of a user run one at a time, so duplicate signals
    /// read the position the previous one produced instead of both placing an order.
    smart_locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    default_mode: Mode,
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
pub fn format_timestamp(epoch_ms: i64) -> String {
    FixedOffset::east_opt(5 * 3600 + 1800)
        .and_then(|ist| ist.timestamp_millis_opt(epoch_ms).single())
        .map(|time| time.format("%d-%b-%Y %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn with_mode(mut body: Value, mode: Mode) -> Value {
    if mode == Mode::Analyze
        && let Value::Object(map) = &mut body
    {
        map.insert("mode".to_string(), Value::from("analyze"));
    }
    body
}

/// Maps a broker error to its HTTP error.
pub fn broker_error(error: &BrokerError) -> HttpError {
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
pub fn writes_stopped(reason: &str) -> HttpError {
    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, reason)
}

/// Maps a store error to its HTTP error (503 while writes are stopped, else 500).
pub fn store_error(error: StoreError) -> HttpError {
    match error {
        StoreError::WritesStopped(reason) => writes_stopped(&reason),
        error => HttpError::internal(&error),
    }
}

/// What an order action records about its request: the body without `apikey` (order log,
/// `analyzer_update`) and, with an `Idempotency-Key`, the claim whose response is stored
/// with the action. A plain body converts into one without a claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionLog {
    /// The request body without `apikey`.
    pub body: Map<String, Value>,
    /// The idempotent request this action answers, if any.
    pub claim: Option<Claim>,
}

impl From<Map<String, Value>> for ActionLog {
    fn from(body: Map<String, Value>) -> Self {
        ActionLog { body, claim: None }
    }
}

/// The status and body of a handler result, as the client receives them.
fn status_and_body(result: &Result<Value>) -> (StatusCode, Value) {
    match result {
        Ok(body) => (StatusCode::OK, body.clone()),
        Err(error) => (error.status, error.body()),
    }
}

/// The response of placing one order.
fn place_response(
    result: &std::result::Result<PlaceOutcome, BrokerError>,
    mode: Mode,
) -> Result<Value> {
    match result {
        Ok(outcome) if outcome.status == OrderStatus::Rejected => Err(HttpError::bad_request(
            format!("Order rejected: {}", outcome.rejection_reason),
        )
        .with("orderid", outcome.orderid.clone())
        .with_mode(mode)),
        Ok(outcome) => Ok(with_mode(
            json!({"status": "success", "orderid": outcome.orderid}),
            mode,
        )),
        Err(error) => Err(broker_error(error).with_mode(mode)),
    }
}

fn order_event(order: &OrderFields, orderid: &str, batch: Option<bool>) -> OrderEvent {
    OrderEvent {
        symbol: order.symbol.clone(),
        action: order.action.as_str().to_string(),
        orderid: orderid.to_string(),
        exchange: order.exchange.as_str().to_string(),
        price_type: order.pricetype.as_str().to_string(),
        product_type: order.product.as_str().to_string(),
        mode: "live".to_string(),
        batch_order: batch.map(|_| true),
        is_last_order: batch,
    }
}

/// Who did what: builds the order-log row and events of one action.
struct ActionJournal {
    user_id: String,
    mode: Mode,
    api_type: &'static str,
    request: Map<String, Value>,
    claim: Option<Claim>,
}

impl ActionJournal {
    fn analyzer_update(&self, response: &Value) -> Event {
        let mut request = self.request.clone();
        request.insert("api_type".to_string(), Value::from(self.api_type));
        Event::for_user(
            self.user_id.clone(),
            AnalyzerUpdate {
                request: Value::Object(request),
                response: response.clone(),
            },
        )
    }

    /// A record with the log row (and idempotency record) and, in analyzer mode,
    /// `analyzer_update`; in live mode the given events.
    fn record(&self, status: StatusCode, response: Value, live_events: Vec<Event>) -> Record {
        let events = match self.mode {
            Mode::Live => live_events,
            Mode::Analyze => vec![self.analyzer_update(&response)],
        };
        let replay = self
            .claim
            .as_ref()
            .map(|claim| claim.entry(status, &response));
        Record {
            log: Some(LogEntry {
                user_id: self.user_id.clone(),
                mode: self.mode,
                api_type: self.api_type,
                request: Value::Object(self.request.clone()),
                response,
                replay,
            }),
            events,
        }
    }

    /// A journal: the response is computed from the outcome by `respond`; live events by
    /// `live`.
    fn journal<T: 'static>(
        self,
        respond: fn(&std::result::Result<T, BrokerError>, Mode) -> Result<Value>,
        live: impl FnOnce(&std::result::Result<T, BrokerError>) -> Vec<Event> + Send + 'static,
    ) -> Journal<T> {
        Box::new(move |result| {
            let (status, response) = status_and_body(&respond(result, self.mode));
            let events = live(result);
            self.record(status, response, events)
        })
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
        modes: HashMap<String, Mode>,
        default_mode: Mode,
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
    pub fn mode(&self, user_id: &str) -> Mode {
        self.modes
            .read()
            .get(user_id)
            .copied()
            .unwrap_or(self.default_mode)
    }

    fn broker(&self, mode: Mode) -> &Arc<dyn Broker> {
        match mode {
            Mode::Live => &self.live,
            Mode::Analyze => &self.sandbox,
        }
    }

    /// The live broker's name.
    pub fn live_broker_name(&self) -> &'static str {
        self.live.name()
    }

    fn action(&self, user_id: &str, api_type: &'static str, log: ActionLog) -> ActionJournal {
        ActionJournal {
            user_id: user_id.to_string(),
            mode: self.mode(user_id),
            api_type,
            request: log.body,
            claim: log.claim,
        }
    }

    /// What the store holds for an idempotent request (a read: it also answers while writes
    /// are stopped).
    pub async fn stored_response(&self, claim: &Claim) -> Result<Stored> {
        let (user, key) = (claim.user_id.clone(), claim.key.as_str().to_string());
        let row = self
            .engine
            .read(move |ctx| {
                let since = ctx.now_ms - crate::engine::worker::IDEMPOTENCY_RETENTION_MS;
                store::find_idempotency(ctx.tx(), &user, &key, since)
            })
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
        Ok(Stored::of(row, claim))
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
            exchange: order.exchange,
            symbol: order.symbol.clone(),
            action: order.action,
            quantity: order.quantity,
            pricetype: order.pricetype,
            product: order.product,
            price: order.price,
            trigger_price: order.trigger_price,
            disclosed_quantity: order.disclosed_quantity,
        }
    }

    /// Records an action that changed nothing (log row and events) and publishes it.
    async fn record_only(&self, record: Record) -> Result<()> {
        self.engine
            .run(move |ctx| ctx.record(record))
            .await
            .map_err(store_error)
    }

    // ------------------------------------------------------------ order actions

    /// placeorder.
    pub async fn place_order(
        &self,
        user_id: &str,
        request: PlaceOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        let order = request.order;
        self.check_symbol("", order.exchange, &order.symbol, Some(order.quantity))?;
        let action = self.action(user_id, "placeorder", log.into());
        let mode = action.mode;
        let fields = order.clone();
        let user = user_id.to_string();
        let journal = action.journal(place_response, move |result| match result {
            Ok(outcome) if outcome.status != OrderStatus::Rejected => {
                vec![Event::for_user(
                    user,
                    order_event(&fields, &outcome.orderid, None),
                )]
            }
            _ => Vec::new(),
        });
        let result = self
            .broker(mode)
            .place_order(Self::new_order(user_id, &request.strategy, &order), journal)
            .await;
        place_response(&result, mode)
    }

    /// placesmartorder.
    pub async fn place_smart_order(
        &self,
        user_id: &str,
        request: SmartOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        let order = request.order;
        self.check_symbol("", order.exchange, &order.symbol, None)?;
        let lock = Arc::clone(
            self.smart_locks
                .lock()
                .entry(user_id.to_string())
                .or_default(),
        );
        let _serialised = lock.lock().await;
        let mode = self.mode(user_id);
        let current = self
            .open_quantity(user_id, mode, order.exchange, &order.symbol, order.product)
            .await?;
        let difference = request.position_size - current;
        let action = self.action(user_id, "placesmartorder", log.into());
        if difference.abs() < 1e-9 {
            let response = with_mode(
                json!({"status": "success", "message": POSITIONS_MATCHED}),
                mode,
            );
            let notification = Event::for_user(
                user_id.to_string(),
                OrderNotification::info(order.symbol.clone(), POSITIONS_MATCHED),
            );
            self.record_only(action.record(StatusCode::OK, response.clone(), vec![notification]))
                .await?;
            return Ok(response);
        }
        let order = OrderFields {
            action: if difference > 0.0 {
                Action::Buy
            } else {
                Action::Sell
            },
            quantity: difference.abs(),
            ..order
        };
        self.check_symbol("", order.exchange, &order.symbol, Some(order.quantity))?;
        let fields = order.clone();
        let user = user_id.to_string();
        let journal = action.journal(place_response, move |result| match result {
            Ok(outcome) if outcome.status != OrderStatus::Rejected => {
                vec![Event::for_user(
                    user,
                    order_event(&fields, &outcome.orderid, None),
                )]
            }
            _ => Vec::new(),
        });
        let result = self
            .broker(mode)
            .place_order(Self::new_order(user_id, &request.strategy, &order), journal)
            .await;
        place_response(&result, mode)
    }

    /// modifyorder.
    pub async fn modify_order(
        &self,
        user_id: &str,
        request: ModifyRequest,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        let order = &request.order;
        self.check_symbol("", order.exchange, &order.symbol, Some(order.quantity))?;
        let action = self.action(user_id, "modifyorder", log.into());
        let mode = action.mode;
        let user = user_id.to_string();
        let journal = action.journal(id_response, move |result| match result {
            Ok(orderid) => vec![Event::for_user(
                user,
                ModifyOrderEvent {
                    status: "success".to_string(),
                    orderid: orderid.clone(),
                    mode: "live".to_string(),
                },
            )],
            Err(_) => Vec::new(),
        });
        let change = ModifyOrder {
            orderid: request.orderid.clone(),
            exchange: order.exchange,
            symbol: order.symbol.clone(),
            action: order.action,
            product: order.product,
            pricetype: order.pricetype,
            price: order.price,
            quantity: order.quantity,
            disclosed_quantity: order.disclosed_quantity,
            trigger_price: order.trigger_price,
        };
        let result = self
            .broker(mode)
            .modify_order(user_id, change, journal)
            .await;
        id_response(&result, mode)
    }

    /// cancelorder.
    pub async fn cancel_order(
        &self,
        user_id: &str,
        orderid: &str,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        let action = self.action(user_id, "cancelorder", log.into());
        let mode = action.mode;
        let user = user_id.to_string();
        let journal = action.journal(id_response, move |result| match result {
            Ok(orderid) => vec![Event::for_user(
                user,
                CancelOrderEvent {
                    status: "success".to_string(),
                    orderid: orderid.clone(),
                    mode: "live".to_string(),
                    batch_order: None,
                    is_last_order: None,
                    canceled_count: None,
                    failed_count: None,
                },
            )],
            Err(_) => Vec::new(),
        });
        let result = self
            .broker(mode)
            .cancel_order(user_id, orderid, journal)
            .await;
        id_response(&result, mode)
    }

    /// cancelallorder.
    pub async fn cancel_all_orders(
        &self,
        user_id: &str,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        let action = self.action(user_id, "cancelallorder", log.into());
        let mode = action.mode;
        let user = user_id.to_string();
        let journal = action.journal(cancel_all_response, move |result| match result {
            Ok(outcome) => vec![Event::for_user(
                user,
                CancelOrderEvent {
                    status: "success".to_string(),
                    orderid: format!("{} orders canceled", outcome.canceled.len()),
                    mode: "live".to_string(),
                    batch_order: Some(true),
                    is_last_order: Some(true),
                    canceled_count: Some(outcome.canceled.len() as u64),
                    failed_count: Some(outcome.failed.len() as u64),
                },
            )],
            Err(_) => Vec::new(),
        });
        let result = self.broker(mode).cancel_all_orders(user_id, journal).await;
        cancel_all_response(&result, mode)
    }

    /// closeposition.
    pub async fn close_positions(
        &self,
        user_id: &str,
        strategy: &str,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        let action = self.action(user_id, "closeposition", log.into());
        let mode = action.mode;
        let user = user_id.to_string();
        let journal = action.journal(close_response, move |result| match result {
            Ok(_) => vec![Event::for_user(
                user,
                ClosePositionEvent {
                    status: "success".to_string(),
                    message: POSITIONS_CLOSED.to_string(),
                    mode: "live".to_string(),
                },
            )],
            Err(_) => Vec::new(),
        });
        let result = self
            .broker(mode)
            .close_positions(user_id, strategy, journal)
            .await;
        close_response(&result, mode)
    }

    /// basketorder: the orders placed in turn, in one transaction; results per order.
    pub async fn basket_order(
        &self,
        user_id: &str,
        request: BasketOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        for (index, order) in request.orders.iter().enumerate() {
            self.check_symbol(
                &format!("orders[{index}]."),
                order.exchange,
                &order.symbol,
                Some(order.quantity),
            )?;
        }
        let action = self.action(user_id, "basketorder", log.into());
        let symbols: Vec<String> = request.orders.iter().map(|o| o.symbol.clone()).collect();
        let respond = move |outcomes: &BatchOutcome, mode: Mode| {
            let results: Vec<Value> = outcomes
                .iter()
                .zip(&symbols)
                .map(|(result, symbol)| batch_item(result, json!({"symbol": symbol})))
                .collect();
            with_mode(json!({"status": "success", "results": results}), mode)
        };
        self.place_batch(user_id, &request.strategy, request.orders, action, respond)
            .await
    }

    /// splitorder: the quantity in children of `splitsize` (the last takes the rest), placed
    /// in one transaction.
    pub async fn split_order(
        &self,
        user_id: &str,
        request: SplitOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Value> {
        let order = &request.order;
        self.check_symbol("", order.exchange, &order.symbol, Some(order.quantity))?;
        let action = self.action(user_id, "splitorder", log.into());
        let mut children = Vec::new();
        let mut remaining = order.quantity;
        while remaining > 1e-9 {
            let quantity = remaining.min(request.splitsize);
            children.push(OrderFields {
                quantity,
                ..order.clone()
            });
            remaining -= quantity;
        }
        let quantities: Vec<f64> = children.iter().map(|child| child.quantity).collect();
        let (split_size, total) = (request.splitsize, order.quantity);
        let respond = move |outcomes: &BatchOutcome, mode: Mode| {
            let results: Vec<Value> = outcomes
                .iter()
                .zip(&quantities)
                .enumerate()
                .map(|(index, (result, quantity))| {
                    batch_item(
                        result,
                        json!({"order_num": index + 1, "quantity": Quantity(*quantity)}),
                    )
                })
                .collect();
            with_mode(
                json!({
                    "status": "success",
                    "split_size": Quantity(split_size),
                    "total_quantity": Quantity(total),
                    "results": results,
                }),
                mode,
            )
        };
        self.place_batch(user_id, &request.strategy, children, action, respond)
            .await
    }

    /// Places a basket or split through the broker's batch placement: each child's events
    /// (`batch_order`, `is_last_order` on the last), then the batch's log row, idempotency
    /// record and response, built by `respond` from every child's outcome.
    async fn place_batch(
        &self,
        user_id: &str,
        strategy: &str,
        orders: Vec<OrderFields>,
        action: ActionJournal,
        respond: impl Fn(&BatchOutcome, Mode) -> Value + Send + Sync + 'static,
    ) -> Result<Value> {
        let mode = action.mode;
        let count = orders.len();
        let children: Vec<(NewOrder, Journal<PlaceOutcome>)> = orders
            .iter()
            .enumerate()
            .map(|(index, order)| {
                let new = Self::new_order(user_id, strategy, order);
                (new, child_journal(user_id, mode, order, index + 1 == count))
            })
            .collect();
        let respond = Arc::new(respond);
        let journal: Journal<BatchOutcome> = {
            let respond = Arc::clone(&respond);
            Box::new(move |result| match result {
                Ok(outcomes) => action.record(StatusCode::OK, respond(outcomes, mode), Vec::new()),
                Err(_) => Record::none(),
            })
        };
        match self.broker(mode).place_orders(children, journal).await {
            Ok(outcomes) => Ok(respond(&outcomes, mode)),
            Err(error) => Err(broker_error(&error).with_mode(mode)),
        }
    }

    // ------------------------------------------------------------ reads

    async fn open_quantity(
        &self,
        user_id: &str,
        mode: Mode,
        exchange: Exchange,
        symbol: &str,
        product: Product,
    ) -> Result<f64> {
        let positions = self
            .broker(mode)
            .position_book(user_id)
            .await
            .map_err(|e| broker_error(&e))?;
        Ok(positions
            .iter()
            .find(|p| p.exchange == exchange && p.symbol == symbol && p.product == product)
            .map_or(0.0, |p| p.quantity))
    }

    /// openposition.
    pub async fn open_position(
        &self,
        user_id: &str,
        exchange: Exchange,
        symbol: &str,
        product: Product,
    ) -> Result<Value> {
        let mode = self.mode(user_id);
        let quantity = self
            .open_quantity(user_id, mode, exchange, symbol, product)
            .await?;
        Ok(with_mode(
            json!({"status": "success", "quantity": Quantity(quantity)}),
            mode,
        ))
    }

    /// orderstatus.
    pub async fn order_status(&self, user_id: &str, orderid: &str) -> Result<Value> {
        let mode = self.mode(user_id);
        let order = self
            .broker(mode)
            .order_status(user_id, orderid)
            .await
            .map_err(|e| broker_error(&e))?;
        let mut data = json!({
            "action": order.action.as_str(),
            "average_price": order.average_price,
            "exchange": order.exchange.as_str(),
            "order_status": order.status.as_str(),
            "orderid": order.orderid,
            "price": order.price,
            "pricetype": order.pricetype.as_str(),
            "product": order.product.as_str(),
            "quantity": Quantity(order.quantity),
            "symbol": order.symbol,
            "timestamp": format_timestamp(order.updated_ms),
            "trigger_price": order.trigger_price,
        });
        if !order.rejection_reason.is_empty() {
            data["rejection_reason"] = order.rejection_reason.clone().into();
        }
        Ok(with_mode(json!({"status": "success", "data": data}), mode))
    }

    /// orderbook.
    pub async fn order_book(&self, user_id: &str) -> Result<Value> {
        let mode = self.mode(user_id);
        let orders = self
            .broker(mode)
            .order_book(user_id)
            .await
            .map_err(|e| broker_error(&e))?;
        let count = |keep: &dyn Fn(&Order) -> bool| orders.iter().filter(|o| keep(o)).count();
        let statistics = json!({
            "total_buy_orders": count(&|o| o.action == Action::Buy),
            "total_sell_orders": count(&|o| o.action == Action::Sell),
            "total_completed_orders": count(&|o| o.status == OrderStatus::Complete),
            "total_open_orders": count(&|o| o.status.is_active()),
            "total_rejected_orders": count(&|o| o.status == OrderStatus::Rejected),
        });
        let rows: Vec<Value> = orders
            .iter()
            .rev()
            .map(|order| {
                json!({
                    "action": order.action.as_str(),
                    "symbol": order.symbol,
                    "exchange": order.exchange.as_str(),
                    "orderid": order.orderid,
                    "product": order.product.as_str(),
                    "quantity": Quantity(order.quantity),
                    "price": order.price,
                    "pricetype": order.pricetype.as_str(),
                    "order_status": order.status.as_str(),
                    "trigger_price": order.trigger_price,
                    "average_price": order.average_price,
                    "timestamp": format_timestamp(order.updated_ms),
                })
            })
            .collect();
        Ok(with_mode(
            json!({"status": "success", "data": {"orders": rows, "statistics": statistics}}),
            mode,
        ))
    }

    /// tradebook.
    pub async fn trade_book(&self, user_id: &str) -> Result<Value> {
        let mode = self.mode(user_id);
        let trades = self
            .broker(mode)
            .trade_book(user_id)
            .await
            .map_err(|e| broker_error(&e))?;
        let rows: Vec<Value> = trades
            .iter()
            .rev()
            .map(|trade| {
                json!({
                    "action": trade.action.as_str(),
                    "symbol": trade.symbol,
                    "exchange": trade.exchange.as_str(),
                    "orderid": trade.orderid,
                    "product": trade.product.as_str(),
                    "quantity": Quantity(trade.quantity),
                    "average_price": trade.price,
                    "trade_value": round2(trade.price * trade.quantity),
                    "timestamp": format_timestamp(trade.created_ms),
                })
            })
            .collect();
        Ok(with_mode(json!({"status": "success", "data": rows}), mode))
    }

    /// positionbook.
    pub async fn position_book(&self, user_id: &str) -> Result<Value> {
        let mode = self.mode(user_id);
        let positions = self
            .broker(mode)
            .position_book(user_id)
            .await
            .map_err(|e| broker_error(&e))?;
        let rows: Vec<Value> = positions
            .iter()
            .map(|p| {
                json!({
                    "symbol": p.symbol,
                    "exchange": p.exchange.as_str(),
                    "product": p.product.as_str(),
                    "quantity": Quantity(p.quantity),
                    "average_price": format!("{:.2}", p.average_price),
                    "ltp": round2(p.ltp),
                    "pnl": round2(p.pnl),
                })
            })
            .collect();
        Ok(with_mode(json!({"status": "success", "data": rows}), mode))
    }

    /// funds: amounts as strings with two decimals.
    pub async fn funds(&self, user_id: &str) -> Result<Value> {
        let mode = self.mode(user_id);
        let funds = self
            .broker(mode)
            .funds(user_id)
            .await
            .map_err(|e| broker_error(&e))?;
        Ok(with_mode(
            json!({"status": "success", "data": {
                "availablecash": format!("{:.2}", funds.availablecash),
                "collateral": format!("{:.2}", funds.collateral),
                "m2mrealized": format!("{:.2}", funds.m2mrealized),
                "m2munrealized": format!("{:.2}", funds.m2munrealized),
                "utiliseddebits": format!("{:.2}", funds.utiliseddebits),
            }}),
            mode,
        ))
    }

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

    // ------------------------------------------------------------ analyzer

    fn analyzer_data(&self, user_id: &str) -> Value {
        let mode = self.mode(user_id);
        json!({
            "mode": mode.as_str(),
            "analyze_mode": mode == Mode::Analyze,
            "total_logs": self.engine.analyzer_log_count(user_id),
        })
    }

    /// analyzer.
    pub fn analyzer_status(&self, user_id: &str) -> Value {
        json!({"status": "success", "data": self.analyzer_data(user_id)})
    }

    /// analyzer/toggle: persists the switch (and, with an `Idempotency-Key`, the response in
    /// the same transaction), then answers with the new status.
    pub async fn analyzer_toggle(
        &self,
        user_id: &str,
        analyze: bool,
        claim: Option<Claim>,
    ) -> Result<Value> {
        let mode = Mode::from_analyze_flag(analyze);
        let user = user_id.to_string();
        let response = json!({"status": "success", "data": {
            "mode": mode.as_str(),
            "analyze_mode": mode == Mode::Analyze,
            "total_logs": self.engine.analyzer_log_count(user_id),
            "message": format!("Analyzer mode switched to {}", mode.as_str()),
        }});
        let replay = claim.map(|claim| claim.entry(StatusCode::OK, &response));
        self.engine
            .run(move |ctx| -> std::result::Result<(), StoreError> {
                ctx.set_setting(
                    &user,
                    ANALYZE_MODE_SETTING,
                    if analyze { "true" } else { "false" },
                )?;
                if let Some(replay) = replay {
                    store::save_idempotency(
                        ctx.tx(),
                        &replay.user_id,
                        &replay.key,
                        &replay.row,
                        ctx.now_ms,
                    )?;
                }
                Ok(())
            })
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
        self.modes.write().insert(user_id.to_string(), mode);
        Ok(response)
    }
}

/// The journal of one order of a basket or split: its live `order_event`.
fn child_journal(
    user_id: &str,
    mode: Mode,
    order: &OrderFields,
    is_last: bool,
) -> Journal<PlaceOutcome> {
    let fields = order.clone();
    let user = user_id.to_string();
    Box::new(move |result| {
        let events = match (mode, result) {
            (Mode::Live, Ok(outcome)) if outcome.status != OrderStatus::Rejected => {
                vec![Event::for_user(
                    user,
                    order_event(&fields, &outcome.orderid, Some(is_last)),
                )]
            }
            _ => Vec::new(),
        };
        Record { log: None, events }
    })
}

/// One entry of a basket's or split's `results`: `item` plus the outcome.
fn batch_item(result: &std::result::Result<PlaceOutcome, BrokerError>, mut item: Value) -> Value {
    match result {
        Ok(outcome) if outcome.status != OrderStatus::Rejected => {
            item["status"] = "success".into();
            item["orderid"] = outcome.orderid.clone().into();
        }
        Ok(outcome) => {
            item["status"] = "error".into();
            item["orderid"] = outcome.orderid.clone().into();
            item["message"] = format!("Order rejected: {}", outcome.rejection_reason).into();
        }
        Err(error) => {
            item["status"] = "error".into();
            item["message"] = error.to_string().into();
        }
    }
    item
}

fn no_quote(exchange: Exchange, symbol: &str) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!("No quote available for {symbol} on {exchange} yet"),
    )
}

fn id_response(result: &std::result::Result<String, BrokerError>, mode: Mode) -> Result<Value> {
    match result {
        Ok(orderid) => Ok(with_mode(
            json!({"status": "success", "orderid": orderid}),
            mode,
        )),
        Err(error) => Err(broker_error(error).with_mode(mode)),
    }
}

fn cancel_all_response(
    result: &std::result::Result<CancelAllOutcome, BrokerError>,
    mode: Mode,
) -> Result<Value> {
    match result {
        Ok(outcome) => {
            let failed: Vec<Value> = outcome
                .failed
                .iter()
                .map(|(orderid, message)| json!({"orderid": orderid, "message": message}))
                .collect();
            Ok(with_mode(
                json!({
                    "status": "success",
                    "canceled_orders": outcome.canceled,
                    "failed_cancellations": failed,
                    "message": format!(
                        "Canceled {} orders. Failed to cancel {} orders.",
                        outcome.canceled.len(),
                        outcome.failed.len()
                    ),
                }),
                mode,
            ))
        }
        Err(error) => Err(broker_error(error).with_mode(mode)),
    }
}

fn close_response(
    result: &std::result::Result<Vec<PlaceOutcome>, BrokerError>,
    mode: Mode,
) -> Result<Value> {
    match result {
        Ok(outcomes) => {
            let rejected: Vec<&PlaceOutcome> = outcomes
                .iter()
                .filter(|o| o.status == OrderStatus::Rejected)
                .collect();
            if rejected.is_empty() {
                Ok(with_mode(
                    json!({"status": "success", "message": POSITIONS_CLOSED}),
                    mode,
                ))
            } else {
                let reasons: Vec<String> = rejected
                    .iter()
                    .map(|o| format!("{}: {}", o.symbol, o.rejection_reason))
                    .collect();
                Err(HttpError::bad_request(format!(
                    "Failed to close {} position(s): {}",
                    rejected.len(),
                    reasons.join("; ")
                ))
                .with_mode(mode))
            }
        }
        Err(error) => Err(broker_error(error).with_mode(mode)),
    }
}
