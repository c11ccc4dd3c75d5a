//! The order-changing commands: each runs on the user's broker and journals its log row and
//! events in the transaction that stores its outcome.

use std::sync::Arc;

use axum::http::StatusCode;
use oa_events_core::catalog::{
    AnalyzerUpdate, BatchSummary, CancelOrderEvent, ClosePositionEvent, ModifyOrderEvent,
    OrderEvent, OrderNotification,
};
use oa_events_core::number::Quantity;
use oa_events_core::{Event, EventPayload};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{ActionLog, OrderService, Result, broker_error};
use crate::broker::{BatchOutcome, BrokerError};
use crate::engine::{CancelAllOutcome, EngineError, ModifyOrder, NewOrder, PlaceOutcome};
use crate::error::HttpError;
use crate::idempotency::Claim;
use crate::journal::{Journal, LogEntry, Record};
use crate::requests::{
    BasketOrder, ModifyRequest, OrderFields, PlaceOrder, SmartOrder, SplitOrder,
};
use crate::responses::{
    Basket, BasketResult, CancelAll, Closed, CommandBody, FailedCancellation, ItemOutcome, Message,
    OrderId, Reply, Split, SplitResult,
};
use crate::types::{AccountMode, Action, Exchange, OrderStatus, Product};

/// The message of a smart order whose position already matches.
pub(crate) const POSITIONS_MATCHED: &str = "Positions Already Matched. No Action needed.";
/// The message of a smart order with quantity 0 whose position already matches (upstream's
/// sandbox and most broker plugins answer this even when the matched position is not flat).
pub(crate) const NO_OPEN_POSITION: &str = "No OpenPosition Found. Not placing Exit order.";
/// The message of closeposition.
pub(crate) const POSITIONS_CLOSED: &str = "All Open Positions Squared Off";
/// The message of closeposition in analyzer mode with nothing open (upstream
/// services/sandbox_service.py `sandbox_close_position`).
pub(crate) const NO_POSITIONS_TO_CLOSE: &str = "No open positions to close";
/// The message of cancelallorder in analyzer mode with nothing active (upstream
/// services/sandbox_service.py `sandbox_cancel_all_orders`).
pub(crate) const NO_ORDERS_TO_CANCEL: &str = "No open orders to cancel";

/// What a broker call returned.
pub(super) type Outcome<T> = std::result::Result<T, BrokerError>;

/// The status and body of a handler result, as the client receives them.
fn status_and_body<B: Serialize>(result: &Result<Reply<B>>) -> (StatusCode, Value) {
    match result {
        Ok(reply) => (StatusCode::OK, reply.to_value()),
        Err(error) => (error.status, error.body()),
    }
}

/// The response of placing one order. A rejection names the rejected order's id in live
/// mode; in analyzer mode it does not, as upstream's sandbox refuses such orders without one
/// (sandbox/order_manager.py `place_order`).
fn place_response(result: &Outcome<PlaceOutcome>, mode: AccountMode) -> Result<Reply<OrderId>> {
    match result {
        Ok(outcome) if outcome.status == OrderStatus::Rejected => {
            let error =
                HttpError::bad_request(format!("Order rejected: {}", outcome.rejection_reason));
            let error = match mode {
                AccountMode::Live => error.with("orderid", outcome.orderid.clone()),
                AccountMode::Analyze => error,
            };
            Err(error.with_mode(mode))
        }
        Ok(outcome) => Ok(Reply::in_mode(OrderId::new(&outcome.orderid), mode)),
        Err(error) => Err(broker_error(error).with_mode(mode)),
    }
}

/// The `order_event` of one placed order; `action` is the one the request named (a smart
/// order reports the request's action even when it placed the opposite side, as upstream).
fn order_event(order: &OrderFields, action: Action, orderid: &str) -> OrderEvent {
    OrderEvent {
        symbol: order.symbol.clone(),
        action: action.as_str().to_string(),
        orderid: orderid.to_string(),
        exchange: order.exchange.as_str().to_string(),
        price_type: order.pricetype.as_str().to_string(),
        product_type: order.product.as_str().to_string(),
        mode: "live".to_string(),
        batch: BatchSummary::NONE,
        multiorder_summary: None,
        successful_legs: None,
        failed_legs: None,
    }
}

/// Adds upstream's schema defaults of an order that the request left out (restx_api/schemas.py
/// `OrderSchema`: pricetype MARKET, product MIS, price 0.0, trigger_price 0.0,
/// disclosed_quantity 0); values the request gave stay as given.
fn with_order_defaults(order: &mut Map<String, Value>) {
    let defaults = [
        ("pricetype", Value::from("MARKET")),
        ("product", Value::from("MIS")),
        ("price", Value::from(0.0)),
        ("trigger_price", Value::from(0.0)),
        ("disclosed_quantity", Value::from(0)),
    ];
    for (field, default) in defaults {
        match order.get(field) {
            None | Some(Value::Null) => {
                order.insert(field.to_string(), default);
            }
            Some(_) => {}
        }
    }
}

/// Who did what: builds the order-log row and events of one action.
pub(super) struct ActionJournal {
    user_id: String,
    mode: AccountMode,
    api_type: &'static str,
    request: Map<String, Value>,
    claim: Option<Claim>,
}

impl ActionJournal {
    /// `analyzer_update` with the request after defaults, as upstream emits the schema-loaded
    /// body (restx_api/schemas.py `missing=` values) plus `api_type`.
    fn analyzer_update(&self, response: &Value) -> Event {
        let mut request = self.request.clone();
        match self.api_type {
            "placeorder" => {
                with_order_defaults(&mut request);
                request.entry("underlying_ltp").or_insert(Value::Null);
            }
            "placesmartorder" | "splitorder" => with_order_defaults(&mut request),
            "basketorder" => {
                if let Some(Value::Array(orders)) = request.get_mut("orders") {
                    for order in orders {
                        if let Value::Object(order) = order {
                            with_order_defaults(order);
                        }
                    }
                }
            }
            _ => {}
        }
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
    pub(super) fn record(
        &self,
        status: StatusCode,
        response: Value,
        live_events: Vec<Event>,
    ) -> Record {
        let events = match self.mode {
            AccountMode::Live => live_events,
            AccountMode::Analyze => vec![self.analyzer_update(&response)],
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
    fn journal<T: 'static, B: Serialize + 'static>(
        self,
        respond: fn(&Outcome<T>, AccountMode) -> Result<Reply<B>>,
        live: impl FnOnce(&Outcome<T>) -> Vec<Event> + Send + 'static,
    ) -> Journal<T> {
        Box::new(move |result| {
            let (status, response) = status_and_body(&respond(result, self.mode));
            let events = live(result);
            self.record(status, response, events)
        })
    }

    /// A journal whose live event, after a success only, is `event` of the outcome, for the
    /// acting user.
    fn journal_success<T: 'static, B: Serialize + 'static, E: Into<EventPayload>>(
        self,
        respond: fn(&Outcome<T>, AccountMode) -> Result<Reply<B>>,
        event: impl FnOnce(&T) -> E + Send + 'static,
    ) -> Journal<T> {
        let user = self.user_id.clone();
        self.journal(respond, move |result| match result {
            Ok(outcome) => vec![Event::for_user(user, event(outcome))],
            Err(_) => Vec::new(),
        })
    }
}

impl OrderService {
    pub(super) fn action(
        &self,
        user_id: &str,
        api_type: &'static str,
        log: ActionLog,
    ) -> ActionJournal {
        ActionJournal {
            user_id: user_id.to_string(),
            mode: self.mode(user_id),
            api_type,
            request: log.body,
            claim: log.claim,
        }
    }

    /// Answers an action the service's own checks refused (unknown symbol, quantity not a
    /// whole number of lots). In analyzer mode the refusal carries `"mode":"analyze"`, is
    /// logged and emits `analyzer_update`, as upstream publishes the sandbox's refusals
    /// (services/place_order_service.py `OrderPlacedEvent` with the sandbox's error response,
    /// subscribers/socketio_subscriber.py); live mode answers it alone.
    pub(super) async fn refuse(&self, action: ActionJournal, error: HttpError) -> HttpError {
        if action.mode == AccountMode::Live {
            return error;
        }
        let error = error.with_mode(AccountMode::Analyze);
        match self
            .record_only(action.record(error.status, error.body(), Vec::new()))
            .await
        {
            Ok(()) => error,
            Err(store) => store,
        }
    }

    /// Checks `order`'s symbol and whole-lot quantity; a refusal ends `action` as
    /// [`OrderService::refuse`] answers it.
    pub(super) async fn check_order(
        &self,
        action: ActionJournal,
        order: &OrderFields,
    ) -> Result<ActionJournal> {
        let check = self.check_symbol("", order.exchange, &order.symbol, Some(order.quantity));
        self.refuse_unless(action, check).await
    }

    /// `action` when `check` passed, else its refusal ([`OrderService::refuse`]).
    async fn refuse_unless(
        &self,
        action: ActionJournal,
        check: Result<()>,
    ) -> Result<ActionJournal> {
        match check {
            Ok(()) => Ok(action),
            Err(error) => Err(self.refuse(action, error).await),
        }
    }

    /// Places one order and journals it (`order_event` in live mode unless rejected, naming
    /// `requested` as its action).
    async fn place_one(
        &self,
        user_id: &str,
        strategy: &str,
        order: OrderFields,
        requested: Action,
        action: ActionJournal,
    ) -> Result<Reply<OrderId>> {
        let mode = action.mode;
        let new = Self::new_order(user_id, strategy, &order);
        let user = user_id.to_string();
        let journal = action.journal(place_response, move |result| match result {
            Ok(outcome) if outcome.status != OrderStatus::Rejected => {
                vec![Event::for_user(
                    user,
                    order_event(&order, requested, &outcome.orderid),
                )]
            }
            _ => Vec::new(),
        });
        let result = self.broker(mode).place_order(new, journal).await;
        place_response(&result, mode)
    }

    /// placeorder.
    pub async fn place_order(
        &self,
        user_id: &str,
        request: PlaceOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<OrderId>> {
        let order = request.order;
        let action = self.action(user_id, "placeorder", log.into());
        let action = self.check_order(action, &order).await?;
        let requested = order.action;
        self.place_one(user_id, &request.strategy, order, requested, action)
            .await
    }

    /// placesmartorder: the order that brings the position to `position_size`, or nothing
    /// when it is there already. With `position_size` 0, no open position and a non-zero
    /// `quantity`, a plain order of the request's action and quantity (upstream
    /// services/sandbox_service.py `sandbox_place_smart_order`).
    pub async fn place_smart_order(
        &self,
        user_id: &str,
        request: SmartOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<CommandBody>> {
        let order = request.order;
        let action = self.action(user_id, "placesmartorder", log.into());
        let check = self.check_symbol("", order.exchange, &order.symbol, None);
        let action = self.refuse_unless(action, check).await?;
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
        let requested = order.action;
        let flat = current.abs() < 1e-9;
        let fresh_trade = request.position_size.abs() < 1e-9 && flat && order.quantity > 1e-9;
        let order = if fresh_trade {
            order
        } else {
            let difference = request.position_size - current;
            if difference.abs() < 1e-9 {
                let message = if order.quantity.abs() < 1e-9 {
                    NO_OPEN_POSITION
                } else {
                    POSITIONS_MATCHED
                };
                return self
                    .smart_no_action(user_id, mode, &order.symbol, message, action)
                    .await;
            }
            OrderFields {
                action: if difference > 0.0 {
                    Action::Buy
                } else {
                    Action::Sell
                },
                quantity: difference.abs(),
                ..order
            }
        };
        let action = self.check_order(action, &order).await?;
        let placed = self
            .place_one(user_id, &request.strategy, order, requested, action)
            .await?;
        Ok(placed.map(CommandBody::OrderId))
    }

    /// Journals a smart order that placed nothing: its log row and, in live mode,
    /// `order_notification` with `message`.
    async fn smart_no_action(
        &self,
        user_id: &str,
        mode: AccountMode,
        symbol: &str,
        message: &str,
        action: ActionJournal,
    ) -> Result<Reply<CommandBody>> {
        let response = Reply::in_mode(
            Message {
                message: message.to_string(),
            },
            mode,
        );
        let notification = Event::for_user(
            user_id.to_string(),
            OrderNotification::info(symbol.to_string(), message),
        );
        self.record_only(action.record(StatusCode::OK, response.to_value(), vec![notification]))
            .await?;
        Ok(response.map(CommandBody::Message))
    }

    /// modifyorder.
    pub async fn modify_order(
        &self,
        user_id: &str,
        request: ModifyRequest,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<OrderId>> {
        let order = &request.order;
        let action = self.action(user_id, "modifyorder", log.into());
        let action = self.check_order(action, order).await?;
        let mode = action.mode;
        let journal =
            action.journal_success(modified_response, |orderid: &String| ModifyOrderEvent {
                status: "success".to_string(),
                orderid: orderid.clone(),
                mode: "live".to_string(),
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
        modified_response(&result, mode)
    }

    /// cancelorder.
    pub async fn cancel_order(
        &self,
        user_id: &str,
        orderid: &str,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<OrderId>> {
        let action = self.action(user_id, "cancelorder", log.into());
        let mode = action.mode;
        let journal =
            action.journal_success(cancelled_response, |orderid: &String| CancelOrderEvent {
                status: "success".to_string(),
                orderid: orderid.clone(),
                mode: "live".to_string(),
                batch: BatchSummary::NONE,
                canceled_count: None,
                failed_count: None,
            });
        let result = self
            .broker(mode)
            .cancel_order(user_id, orderid, journal)
            .await;
        cancelled_response(&result, mode)
    }

    /// cancelallorder.
    pub async fn cancel_all_orders(
        &self,
        user_id: &str,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<CancelAll>> {
        let action = self.action(user_id, "cancelallorder", log.into());
        let mode = action.mode;
        let journal = action.journal_success(cancel_all_response, |outcome: &CancelAllOutcome| {
            CancelOrderEvent {
                status: "success".to_string(),
                orderid: format!("{} orders canceled", outcome.canceled.len()),
                mode: "live".to_string(),
                batch: BatchSummary::LAST,
                canceled_count: Some(outcome.canceled.len() as u64),
                failed_count: Some(outcome.failed.len() as u64),
            }
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
    ) -> Result<Reply<Closed>> {
        let action = self.action(user_id, "closeposition", log.into());
        let mode = action.mode;
        let user = user_id.to_string();
        // Also on failure, with the error's message and status "success", as upstream's
        // services/close_position_service.py publishes PositionClosedEvent and
        // subscribers/socketio_subscriber.py `on_position_closed` emits it.
        let journal = action.journal(close_response, move |result| {
            let (_, body) = status_and_body(&close_response(result, AccountMode::Live));
            let message = body["message"]
                .as_str()
                .unwrap_or(POSITIONS_CLOSED)
                .to_string();
            vec![Event::for_user(
                user,
                ClosePositionEvent {
                    status: "success".to_string(),
                    message,
                    mode: "live".to_string(),
                },
            )]
        });
        let result = self
            .broker(mode)
            .close_positions(user_id, strategy, journal)
            .await;
        close_response(&result, mode)
    }

    /// basketorder: the orders placed in turn, BUY legs before SELL legs (upstream
    /// services/basket_order_service.py), in one transaction; results per order, in placing
    /// order, successes naming `exchange` and `product`.
    pub async fn basket_order(
        &self,
        user_id: &str,
        mut request: BasketOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<Basket>> {
        let mut action = self.action(user_id, "basketorder", log.into());
        for (index, order) in request.orders.iter().enumerate() {
            let check = self.check_symbol(
                &format!("orders[{index}]."),
                order.exchange,
                &order.symbol,
                Some(order.quantity),
            );
            action = self.refuse_unless(action, check).await?;
        }
        // Stable: within each side the request's order stays.
        request
            .orders
            .sort_by_key(|order| order.action != Action::Buy);
        let strategy = request.strategy.clone();
        // upstream subscribers/socketio_subscriber.py `on_basket_completed`.
        let summary = move |outcomes: &BatchOutcome| {
            let (successful, total) = successes(outcomes);
            batch_summary(
                if strategy.is_empty() {
                    "Basket".to_string()
                } else {
                    strategy.clone()
                },
                format!("{successful}/{total} orders"),
                format!("basket_{successful}"),
                "MULTI",
                "BASKET",
                "BASKET",
            )
        };
        let legs: Vec<(String, Exchange, Product)> = request
            .orders
            .iter()
            .map(|o| (o.symbol.clone(), o.exchange, o.product))
            .collect();
        let mode = action.mode;
        // In analyzer mode a success also carries `batch_order` and `is_last_order`
        // (upstream services/basket_order_service.py, sandbox branch).
        let respond = move |outcomes: &BatchOutcome| Basket {
            results: outcomes
                .iter()
                .zip(&legs)
                .enumerate()
                .map(|(index, (result, (symbol, exchange, product)))| {
                    let outcome = item_outcome(result, mode);
                    let placed = outcome.status == "success";
                    let sandbox = placed && mode == AccountMode::Analyze;
                    BasketResult {
                        symbol: symbol.clone(),
                        exchange: placed.then(|| exchange.as_str().to_string()),
                        product: placed.then(|| product.as_str().to_string()),
                        outcome,
                        batch_order: sandbox.then_some(true),
                        is_last_order: sandbox.then_some(index + 1 == outcomes.len()),
                    }
                })
                .collect(),
        };
        self.place_batch(
            user_id,
            &request.strategy,
            request.orders,
            action,
            respond,
            summary,
        )
        .await
    }

    /// splitorder: the quantity in children of `splitsize` (the last takes the rest), placed
    /// in one transaction.
    pub async fn split_order(
        &self,
        user_id: &str,
        request: SplitOrder,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<Split>> {
        let order = &request.order;
        let action = self.action(user_id, "splitorder", log.into());
        let action = self.check_order(action, order).await?;
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
        // upstream subscribers/socketio_subscriber.py `on_split_completed`.
        let summary_order = order.clone();
        let summary = move |outcomes: &BatchOutcome| batch_summary_event(&summary_order, outcomes);
        let quantities: Vec<f64> = children.iter().map(|child| child.quantity).collect();
        let (split_size, total) = (request.splitsize, order.quantity);
        let mode = action.mode;
        let respond = move |outcomes: &BatchOutcome| Split {
            split_size: Quantity(split_size),
            total_quantity: Quantity(total),
            results: split_results(outcomes, &quantities, mode),
        };
        self.place_batch(
            user_id,
            &request.strategy,
            children,
            action,
            respond,
            summary,
        )
        .await
    }

    /// Places a basket or split through the broker's batch placement, then journals the
    /// batch: its log row, idempotency record and response (built by `respond` from every
    /// child's outcome) and, in live mode, one summary `order_event` built by `summary` (as
    /// upstream emits one per batch, not one per child order).
    pub(super) async fn place_batch<B: Serialize + Send + 'static>(
        &self,
        user_id: &str,
        strategy: &str,
        orders: Vec<OrderFields>,
        action: ActionJournal,
        respond: impl Fn(&BatchOutcome) -> B + Send + Sync + 'static,
        summary: impl Fn(&BatchOutcome) -> OrderEvent + Send + 'static,
    ) -> Result<Reply<B>> {
        let mode = action.mode;
        let children: Vec<(NewOrder, Journal<PlaceOutcome>)> = orders
            .iter()
            .map(|order| {
                let journal: Journal<PlaceOutcome> = Box::new(|_| Record::none());
                (Self::new_order(user_id, strategy, order), journal)
            })
            .collect();
        let respond = Arc::new(respond);
        let user = user_id.to_string();
        let journal: Journal<BatchOutcome> = {
            let respond = Arc::clone(&respond);
            Box::new(move |result| match result {
                Ok(outcomes) => {
                    let response = Reply::in_mode(respond(outcomes), mode).to_value();
                    let event = Event::for_user(user, summary(outcomes));
                    action.record(StatusCode::OK, response, vec![event])
                }
                Err(_) => Record::none(),
            })
        };
        match self.broker(mode).place_orders(children, journal).await {
            Ok(outcomes) => Ok(Reply::in_mode(respond(&outcomes), mode)),
            Err(error) => Err(broker_error(&error).with_mode(mode)),
        }
    }
}

/// How many orders of a batch succeeded, and how many there were.
/// The summary `order_event` of a split as upstream emits it: the order's fields and
/// `"<successful>/<total> orders"` as its `orderid`.
pub(super) fn batch_summary_event(order: &OrderFields, outcomes: &BatchOutcome) -> OrderEvent {
    let (successful, total) = successes(outcomes);
    batch_summary(
        order.symbol.clone(),
        order.action.as_str().to_string(),
        format!("{successful}/{total} orders"),
        order.exchange.as_str(),
        order.pricetype.as_str(),
        order.product.as_str(),
    )
}

/// A batch's summary `order_event` (`batch_order` and `is_last_order` set), as upstream's
/// subscribers/socketio_subscriber.py emits it.
fn batch_summary(
    symbol: String,
    action: String,
    orderid: String,
    exchange: &str,
    price_type: &str,
    product_type: &str,
) -> OrderEvent {
    OrderEvent {
        symbol,
        action,
        orderid,
        exchange: exchange.to_string(),
        price_type: price_type.to_string(),
        product_type: product_type.to_string(),
        mode: "live".to_string(),
        batch: BatchSummary::LAST,
        multiorder_summary: None,
        successful_legs: None,
        failed_legs: None,
    }
}

/// Each child of a split: its number (from 1), quantity and outcome.
pub(super) fn split_results<'a>(
    outcomes: impl IntoIterator<Item = &'a Outcome<PlaceOutcome>>,
    quantities: &[f64],
    mode: AccountMode,
) -> Vec<SplitResult> {
    outcomes
        .into_iter()
        .zip(quantities)
        .enumerate()
        .map(|(index, (result, quantity))| SplitResult {
            order_num: index + 1,
            quantity: Quantity(*quantity),
            outcome: item_outcome(result, mode),
        })
        .collect()
}

pub(super) fn successes(outcomes: &BatchOutcome) -> (usize, usize) {
    let successful = outcomes
        .iter()
        .filter(|result| matches!(result, Ok(outcome) if outcome.status != OrderStatus::Rejected))
        .count();
    (successful, outcomes.len())
}

/// The outcome of one order of a basket or split; a rejected one names its id in live mode
/// only (upstream's sandbox refuses it without one).
pub(super) fn item_outcome(result: &Outcome<PlaceOutcome>, mode: AccountMode) -> ItemOutcome {
    match result {
        Ok(outcome) if outcome.status != OrderStatus::Rejected => ItemOutcome {
            status: "success",
            orderid: Some(outcome.orderid.clone()),
            message: None,
        },
        Ok(outcome) => ItemOutcome {
            status: "error",
            orderid: (mode == AccountMode::Live).then(|| outcome.orderid.clone()),
            message: Some(format!("Order rejected: {}", outcome.rejection_reason)),
        },
        Err(error) => ItemOutcome {
            status: "error",
            orderid: None,
            message: Some(error.to_string()),
        },
    }
}

/// The response of modifyorder; in analyzer mode with the sandbox's message
/// (sandbox/order_manager.py `modify_order`).
fn modified_response(result: &Outcome<String>, mode: AccountMode) -> Result<Reply<OrderId>> {
    id_response(result, mode, "Order modified successfully", "modify")
}

/// The response of cancelorder; in analyzer mode with the sandbox's message
/// (sandbox/order_manager.py `cancel_order`).
fn cancelled_response(result: &Outcome<String>, mode: AccountMode) -> Result<Reply<OrderId>> {
    id_response(result, mode, "Order cancelled successfully", "cancel")
}

fn id_response(
    result: &Outcome<String>,
    mode: AccountMode,
    sandbox_message: &str,
    verb: &str,
) -> Result<Reply<OrderId>> {
    match (result, mode) {
        (Ok(orderid), AccountMode::Live) => Ok(Reply::in_mode(OrderId::new(orderid), mode)),
        (Ok(orderid), AccountMode::Analyze) => Ok(Reply::in_mode(
            OrderId {
                orderid: orderid.clone(),
                message: Some(sandbox_message.to_string()),
            },
            mode,
        )),
        (
            Err(BrokerError::Refused(EngineError::NotActive { status, .. })),
            AccountMode::Analyze,
        ) => Err(
            HttpError::bad_request(format!("Cannot {verb} order in {status} status"))
                .with_mode(mode),
        ),
        (Err(error), _) => Err(broker_error(error).with_mode(mode)),
    }
}

fn cancel_all_response(
    result: &Outcome<CancelAllOutcome>,
    mode: AccountMode,
) -> Result<Reply<CancelAll>> {
    match result {
        Ok(outcome) => {
            let nothing_active = outcome.canceled.is_empty() && outcome.failed.is_empty();
            let message = if mode == AccountMode::Analyze && nothing_active {
                NO_ORDERS_TO_CANCEL.to_string()
            } else {
                format!(
                    "Canceled {} orders. Failed to cancel {} orders.",
                    outcome.canceled.len(),
                    outcome.failed.len()
                )
            };
            Ok(Reply::in_mode(
                CancelAll {
                    canceled_orders: outcome.canceled.clone(),
                    failed_cancellations: outcome
                        .failed
                        .iter()
                        .map(|(orderid, message)| FailedCancellation {
                            orderid: orderid.clone(),
                            message: message.clone(),
                        })
                        .collect(),
                    message,
                },
                mode,
            ))
        }
        Err(error) => Err(broker_error(error).with_mode(mode)),
    }
}

/// The response of closeposition. Live: "All Open Positions Squared Off", or a 400 naming
/// the rejected square-offs. Analyzer mode, as upstream's sandbox
/// (services/sandbox_service.py `sandbox_close_position`): 200 "No open positions to close",
/// or 200 "Closed N positions" (plus " (Failed to close M positions)") with the counts.
fn close_response(result: &Outcome<Vec<PlaceOutcome>>, mode: AccountMode) -> Result<Reply<Closed>> {
    let outcomes = match result {
        Ok(outcomes) => outcomes,
        Err(error) => return Err(broker_error(error).with_mode(mode)),
    };
    let rejected: Vec<&PlaceOutcome> = outcomes
        .iter()
        .filter(|o| o.status == OrderStatus::Rejected)
        .collect();
    let closed = |message: String, counts: Option<(usize, usize)>| {
        Ok(Reply::in_mode(
            Closed {
                message,
                closed_positions: counts.map(|(closed, _)| closed),
                failed_closures: counts.map(|(_, failed)| failed),
            },
            mode,
        ))
    };
    match mode {
        AccountMode::Analyze if outcomes.is_empty() => {
            closed(NO_POSITIONS_TO_CLOSE.to_string(), None)
        }
        AccountMode::Analyze => {
            let (closed_count, failed) = (outcomes.len() - rejected.len(), rejected.len());
            let mut message = format!("Closed {closed_count} positions");
            if failed > 0 {
                message.push_str(&format!(" (Failed to close {failed} positions)"));
            }
            closed(message, Some((closed_count, failed)))
        }
        AccountMode::Live if rejected.is_empty() => closed(POSITIONS_CLOSED.to_string(), None),
        AccountMode::Live => {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(symbol: &str, status: OrderStatus) -> PlaceOutcome {
        PlaceOutcome {
            orderid: "1".to_string(),
            status,
            rejection_reason: if status == OrderStatus::Rejected {
                "No price available".to_string()
            } else {
                String::new()
            },
            symbol: symbol.to_string(),
            quantity: 1.0,
        }
    }

    /// Upstream services/sandbox_service.py `sandbox_close_position`: a square-off that
    /// fails still answers 200, counting it in the message and `failed_closures`; live mode
    /// answers 400 naming it.
    #[test]
    fn a_partly_failed_close_is_a_200_in_analyzer_mode_only() {
        let outcomes = Ok(vec![
            outcome("SBIN", OrderStatus::Complete),
            outcome("INFY", OrderStatus::Rejected),
        ]);
        let analyzed = close_response(&outcomes, AccountMode::Analyze).map(|r| r.to_value());
        assert_eq!(
            analyzed.ok(),
            Some(json!({"status": "success",
                "message": "Closed 1 positions (Failed to close 1 positions)",
                "closed_positions": 1, "failed_closures": 1, "mode": "analyze"}))
        );
        let live = close_response(&outcomes, AccountMode::Live).map(|r| r.to_value());
        let error = live.err().map(|e| (e.status.as_u16(), e.message));
        assert_eq!(
            error,
            Some((
                400,
                "Failed to close 1 position(s): INFY: No price available".to_string()
            ))
        );
    }
}
