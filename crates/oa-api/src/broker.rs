//! The [`Broker`] trait and the two bundled brokers, which share one matching engine:
//!
//! - [`EngineBroker::sandbox`]: analyzer mode, virtual funds, fills from the price source;
//! - [`EngineBroker::simulator`]: the live-mode stand-in, the same engine plus an
//!   acknowledgement latency and a rejection rate for fault tests.
//!
//! A real broker adapter implements [`Broker`] by calling the broker's API (see
//! docs/rest-api.md): it returns the broker's order id and maps its books; it calls the
//! [`Journal`] hook with the outcome and stores the returned [`Record`](crate::journal::Record)
//! through the order service, so events still follow the stored change.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::SimulatorConfig;
use crate::engine::worker::{EngineHandle, JobCtx};
use crate::engine::{
    CancelAllOutcome, EngineError, ModifyOrder, NewOrder, Order, PlaceOutcome, Trade,
};
use crate::journal::Journal;
use crate::store::StoreError;
use crate::types::{Book, Exchange, Product};

/// Why a broker call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BrokerError {
    /// The broker refused the request; nothing changed.
    #[error(transparent)]
    Refused(#[from] EngineError),
    /// The broker could not be reached or its store failed. The outcome is unknown.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The order engine stopped taking writes (its state could not be reloaded); nothing
    /// was done.
    #[error("{0}")]
    WritesStopped(String),
}

impl From<StoreError> for BrokerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::WritesStopped(reason) | StoreError::Fenced(reason) => {
                BrokerError::WritesStopped(reason)
            }
            error => BrokerError::Unavailable(error.to_string()),
        }
    }
}

/// The outcome of each order of a batch, in order.
pub type BatchOutcome = Vec<Result<PlaceOutcome, BrokerError>>;

/// A boxed future returned by [`Broker`] methods.
pub type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// A row of the position book.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionView {
    /// Exchange.
    pub exchange: Exchange,
    /// Symbol.
    pub symbol: String,
    /// Product.
    pub product: Product,
    /// Signed net quantity.
    pub quantity: f64,
    /// Average price of the open quantity.
    pub average_price: f64,
    /// Last traded price (0 when unknown).
    pub ltp: f64,
    /// Realized + unrealized P&L.
    pub pnl: f64,
    /// P&L realized on the position.
    pub realized_pnl: f64,
    /// P&L of the open quantity at `ltp`.
    pub unrealized_pnl: f64,
}

/// An account's funds as `funds` reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FundsView {
    /// Cash available for new orders.
    pub availablecash: f64,
    /// Collateral (always 0 here).
    pub collateral: f64,
    /// Realized P&L.
    pub m2mrealized: f64,
    /// Unrealized P&L of open positions at the last price.
    pub m2munrealized: f64,
    /// Margin in use (orders and positions).
    pub utiliseddebits: f64,
}

/// An order venue. Every method acts for one user; the order-changing ones take a
/// [`Journal`] that must be called exactly once with the outcome, in the same transaction as
/// the stored change when the broker stores state.
pub trait Broker: Send + Sync + 'static {
    /// The broker's name ("sandbox", "simulator", ...).
    fn name(&self) -> &'static str;
    /// Places an order. Broker-side rejections are `Ok` with status `rejected`.
    fn place_order(
        &self,
        order: NewOrder,
        journal: Journal<PlaceOutcome>,
    ) -> BrokerFuture<'_, PlaceOutcome>;
    /// Modifies an open order; returns its id.
    fn modify_order(
        &self,
        user_id: &str,
        change: ModifyOrder,
        journal: Journal<String>,
    ) -> BrokerFuture<'_, String>;
    /// Cancels an open order; returns its id.
    fn cancel_order(
        &self,
        user_id: &str,
        orderid: &str,
        journal: Journal<String>,
    ) -> BrokerFuture<'_, String>;
    /// Cancels every open order.
    fn cancel_all_orders(
        &self,
        user_id: &str,
        journal: Journal<CancelAllOutcome>,
    ) -> BrokerFuture<'_, CancelAllOutcome>;
    /// Squares off every open position with market orders.
    fn close_positions(
        &self,
        user_id: &str,
        strategy: &str,
        journal: Journal<Vec<PlaceOutcome>>,
    ) -> BrokerFuture<'_, Vec<PlaceOutcome>>;
    /// Places several orders (basketorder, splitorder), each with its own journal, then calls
    /// `journal` with every outcome. The default places them one by one and calls `journal`
    /// inside the last placement's transaction; a store-backed broker overrides it to place
    /// them all in one transaction.
    fn place_orders(
        &self,
        orders: Vec<(NewOrder, Journal<PlaceOutcome>)>,
        journal: Journal<BatchOutcome>,
    ) -> BrokerFuture<'_, BatchOutcome> {
        Box::pin(async move {
            let count = orders.len();
            let mut outcomes: BatchOutcome = Vec::with_capacity(count);
            let mut journal = Some(journal);
            for (index, (order, child)) in orders.into_iter().enumerate() {
                let child = match journal.take() {
                    Some(last) if index + 1 == count => {
                        let earlier = outcomes.clone();
                        let combined: Journal<PlaceOutcome> = Box::new(move |result| {
                            let mut record = child(result);
                            let mut all = earlier;
                            all.push(result.clone());
                            let batch = last(&Ok(all));
                            record.events.extend(batch.events);
                            record.log = batch.log.or(record.log);
                            record
                        });
                        combined
                    }
                    other => {
                        journal = other;
                        child
                    }
                };
                outcomes.push(self.place_order(order, child).await);
            }
            Ok(outcomes)
        })
    }
    /// Every order of the user, oldest first.
    fn order_book(&self, user_id: &str) -> BrokerFuture<'_, Vec<Order>>;
    /// One order; `EngineError::OrderNotFound` when unknown.
    fn order_status(&self, user_id: &str, orderid: &str) -> BrokerFuture<'_, Order>;
    /// Every trade of the user, oldest first.
    fn trade_book(&self, user_id: &str) -> BrokerFuture<'_, Vec<Trade>>;
    /// Every position of the user.
    fn position_book(&self, user_id: &str) -> BrokerFuture<'_, Vec<PositionView>>;
    /// The user's funds.
    fn funds(&self, user_id: &str) -> BrokerFuture<'_, FundsView>;
}

/// A broker backed by the shared matching engine: the sandbox or the simulator.
#[derive(Debug, Clone)]
pub struct EngineBroker {
    engine: EngineHandle,
    book: Book,
    simulator: SimulatorConfig,
}

impl EngineBroker {
    /// The analyzer-mode sandbox.
    pub fn sandbox(engine: EngineHandle) -> Self {
        EngineBroker {
            engine,
            book: Book::Sandbox,
            simulator: SimulatorConfig::default(),
        }
    }

    /// The live-mode simulator with fault injection.
    pub fn simulator(engine: EngineHandle, faults: SimulatorConfig) -> Self {
        EngineBroker {
            engine,
            book: Book::Simulator,
            simulator: faults,
        }
    }

    async fn acknowledge(&self) {
        if self.simulator.ack_latency > Duration::ZERO {
            tokio::time::sleep(self.simulator.ack_latency).await;
        }
    }

    /// One order action: waits the simulated acknowledgement latency, then runs `action` in
    /// the engine's transaction and records its journal entry in that same transaction.
    async fn journaled<T: Send + 'static>(
        &self,
        journal: Journal<T>,
        action: impl FnOnce(&mut JobCtx<'_>, Book) -> Result<T, BrokerError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        self.acknowledge().await;
        let book = self.book;
        self.engine
            .run(move |ctx| {
                let result = action(ctx, book);
                ctx.record(journal(&result));
                result
            })
            .await?
    }

    fn forced_rejection(&self) -> Option<String> {
        let rate = self.simulator.rejection_rate;
        (rate > 0.0 && rand::random::<f64>() < rate)
            .then(|| format!("Rejected by the simulator (simulated rejection rate {rate})"))
    }
}

impl Broker for EngineBroker {
    fn name(&self) -> &'static str {
        self.book.as_str()
    }

    fn place_order(
        &self,
        order: NewOrder,
        journal: Journal<PlaceOutcome>,
    ) -> BrokerFuture<'_, PlaceOutcome> {
        let forced = self.forced_rejection();
        Box::pin(self.journaled(journal, move |ctx, book| {
            Ok(ctx
                .engine
                .place(book, order, forced, ctx.prices, ctx.now_ms))
        }))
    }

    fn modify_order(
        &self,
        user_id: &str,
        change: ModifyOrder,
        journal: Journal<String>,
    ) -> BrokerFuture<'_, String> {
        let user_id = user_id.to_string();
        Box::pin(self.journaled(journal, move |ctx, book| {
            ctx.engine
                .modify(book, &user_id, change, ctx.prices, ctx.now_ms)
                .map_err(BrokerError::from)
        }))
    }

    fn cancel_order(
        &self,
        user_id: &str,
        orderid: &str,
        journal: Journal<String>,
    ) -> BrokerFuture<'_, String> {
        let (user_id, orderid) = (user_id.to_string(), orderid.to_string());
        Box::pin(self.journaled(journal, move |ctx, book| {
            ctx.engine
                .cancel(book, &user_id, &orderid, ctx.now_ms)
                .map_err(BrokerError::from)
        }))
    }

    fn cancel_all_orders(
        &self,
        user_id: &str,
        journal: Journal<CancelAllOutcome>,
    ) -> BrokerFuture<'_, CancelAllOutcome> {
        let user_id = user_id.to_string();
        Box::pin(self.journaled(journal, move |ctx, book| {
            Ok(ctx.engine.cancel_all(book, &user_id, ctx.now_ms))
        }))
    }

    fn close_positions(
        &self,
        user_id: &str,
        strategy: &str,
        journal: Journal<Vec<PlaceOutcome>>,
    ) -> BrokerFuture<'_, Vec<PlaceOutcome>> {
        let (user_id, strategy) = (user_id.to_string(), strategy.to_string());
        Box::pin(self.journaled(journal, move |ctx, book| {
            Ok(ctx
                .engine
                .close_positions(book, &user_id, &strategy, ctx.prices, ctx.now_ms))
        }))
    }

    /// Every order of the batch in one transaction: a crash leaves all of them or none,
    /// together with the batch's log row (and idempotency record).
    fn place_orders(
        &self,
        orders: Vec<(NewOrder, Journal<PlaceOutcome>)>,
        journal: Journal<BatchOutcome>,
    ) -> BrokerFuture<'_, BatchOutcome> {
        let orders: Vec<_> = orders
            .into_iter()
            .map(|(order, child)| (order, child, self.forced_rejection()))
            .collect();
        Box::pin(async move {
            // The simulated acknowledgement latency of each order, as if placed one by one.
            for _ in 0..orders.len() {
                self.acknowledge().await;
            }
            let book = self.book;
            self.engine
                .run(move |ctx| {
                    let mut outcomes: BatchOutcome = Vec::with_capacity(orders.len());
                    for (order, child, forced) in orders {
                        let outcome = Ok(ctx
                            .engine
                            .place(book, order, forced, ctx.prices, ctx.now_ms));
                        ctx.record(child(&outcome));
                        outcomes.push(outcome);
                    }
                    let result = Ok(outcomes);
                    ctx.record(journal(&result));
                    result
                })
                .await?
        })
    }

    fn order_book(&self, user_id: &str) -> BrokerFuture<'_, Vec<Order>> {
        self.read_account(user_id, |ctx, book, user_id| {
            ctx.engine
                .orders(book, user_id)
                .into_iter()
                .cloned()
                .collect()
        })
    }

    fn order_status(&self, user_id: &str, orderid: &str) -> BrokerFuture<'_, Order> {
        let (user_id, orderid) = (user_id.to_string(), orderid.to_string());
        let book = self.book;
        Box::pin(async move {
            self.engine
                .read(move |ctx| {
                    ctx.engine
                        .order(book, &user_id, &orderid)
                        .cloned()
                        .ok_or(BrokerError::Refused(EngineError::OrderNotFound(orderid)))
                })
                .await?
        })
    }

    fn trade_book(&self, user_id: &str) -> BrokerFuture<'_, Vec<Trade>> {
        self.read_account(user_id, |ctx, book, user_id| {
            ctx.engine.trades(book, user_id).to_vec()
        })
    }

    fn position_book(&self, user_id: &str) -> BrokerFuture<'_, Vec<PositionView>> {
        self.read_account(user_id, |ctx, book, user_id| {
            ctx.engine
                .positions(book, user_id)
                .into_iter()
                .map(|(key, position)| {
                    let ltp = ctx
                        .prices
                        .quote(key.exchange.as_str(), &key.symbol)
                        .map_or(0.0, |quote| quote.ltp);
                    let unrealized = position.unrealized_pnl(ltp);
                    PositionView {
                        exchange: key.exchange,
                        symbol: key.symbol.clone(),
                        product: key.product,
                        quantity: position.quantity,
                        average_price: position.average_price,
                        ltp,
                        pnl: position.realized_pnl + unrealized,
                        realized_pnl: position.realized_pnl,
                        unrealized_pnl: unrealized,
                    }
                })
                .collect()
        })
    }

    fn funds(&self, user_id: &str) -> BrokerFuture<'_, FundsView> {
        self.read_account(user_id, |ctx, book, user_id| {
            let account = ctx.engine.account(book, user_id);
            let unrealized = ctx.engine.unrealized_pnl(book, user_id, ctx.prices);
            FundsView {
                availablecash: account.cash,
                collateral: 0.0,
                m2mrealized: account.realized_pnl,
                m2munrealized: unrealized,
                utiliseddebits: account.order_margin + account.position_margin,
            }
        })
    }
}

impl EngineBroker {
    /// Reads the account of `user_id` in this broker's book on the engine worker.
    fn read_account<T, F>(&self, user_id: &str, read: F) -> BrokerFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&JobCtx<'_>, Book, &str) -> T + Send + 'static,
    {
        let user_id = user_id.to_string();
        let book = self.book;
        Box::pin(async move {
            Ok(self
                .engine
                .read(move |ctx| read(ctx, book, &user_id))
                .await?)
        })
    }
}
