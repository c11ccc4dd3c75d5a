//! The matching engine shared by the `sandbox` and `simulator` brokers.
//!
//! Pure state: orders, trades, positions and accounts in memory, mutated by commands and
//! price updates, with every change recorded in [`Changes`] so the `worker` can persist it
//! and publish `order_update` events. No I/O and no clock: callers pass `now_ms` and a
//! [`PriceSource`], which keeps the engine deterministic for property tests.
//!
//! Accounting (per book and user), with `F` the starting funds:
//!
//! ```text
//! cash + order_margin + position_margin - realized_pnl == F
//! ```
//!
//! - placing an order blocks `opening_qty x price / leverage` from cash into `order_margin`
//!   (`opening_qty` excludes the part that reduces the opposite position held now);
//! - a fill releases the order's block, then the closing part of the fill releases its share
//!   of the position's margin and books realized P&L into cash, and the opening part moves
//!   `qty x fill_price / leverage` from cash into the position's margin; when that opening
//!   part needs more than the cash there is at that moment, the order is rejected at fill;
//! - cancelling, modifying and rejecting release the block.
//!
//! The rules themselves are in `margin`.

pub(crate) mod margin;
pub(crate) mod worker;

use std::collections::{BTreeMap, HashMap};

use crate::config::Leverage;
use crate::price::{PriceSource, Quote};
use crate::requests::OrderFields;
use crate::types::{Action, Book, Exchange, OrderStatus, PriceType, Product};

/// Tolerance for money and quantity comparisons.
const EPSILON: f64 = 1e-9;

/// A new order as the service hands it to a broker.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    /// Owner.
    pub user_id: String,
    /// Strategy tag.
    pub strategy: String,
    /// Symbol, side, quantity, price type, product and prices (quantity > 0; prices 0 where
    /// the price type takes none).
    pub terms: OrderFields,
}

/// A modification of an open order.
#[derive(Debug, Clone, PartialEq)]
pub struct ModifyOrder {
    /// The order.
    pub orderid: String,
    /// Must match the order's exchange.
    pub exchange: Exchange,
    /// Must match the order's symbol.
    pub symbol: String,
    /// Must match the order's action.
    pub action: Action,
    /// New product.
    pub product: Product,
    /// New price type.
    pub pricetype: PriceType,
    /// New limit price.
    pub price: f64,
    /// New quantity.
    pub quantity: f64,
    /// New disclosed quantity.
    pub disclosed_quantity: f64,
    /// New trigger price.
    pub trigger_price: f64,
}

/// An order and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// Numeric string id, unique.
    pub orderid: String,
    /// Account.
    pub book: Book,
    /// Owner.
    pub user_id: String,
    /// Strategy tag.
    pub strategy: String,
    /// What the order asks for: symbol, side, quantity, prices (as placed, then as last
    /// modified).
    pub terms: OrderFields,
    /// Status.
    pub status: OrderStatus,
    /// Filled quantity.
    pub filled_quantity: f64,
    /// Average fill price (0 until filled).
    pub average_price: f64,
    /// Margin blocked while the order is active.
    pub blocked_margin: f64,
    /// Why it was rejected (empty otherwise).
    pub rejection_reason: String,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Last change, epoch ms.
    pub updated_ms: i64,
}

impl Order {
    /// The account the order belongs to.
    pub fn account_key(&self) -> AccountKey {
        AccountKey::new(self.book, &self.user_id)
    }

    /// The position the order trades.
    pub fn position_key(&self) -> PositionKey {
        PositionKey {
            book: self.book,
            user_id: self.user_id.clone(),
            exchange: self.terms.exchange,
            symbol: self.terms.symbol.clone(),
            product: self.terms.product,
        }
    }
}

/// A fill.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// Sequence number, unique.
    pub tradeid: u64,
    /// The order filled.
    pub orderid: String,
    /// Account.
    pub book: Book,
    /// Owner.
    pub user_id: String,
    /// Exchange.
    pub exchange: Exchange,
    /// Symbol.
    pub symbol: String,
    /// BUY or SELL.
    pub action: Action,
    /// Product.
    pub product: Product,
    /// Quantity filled.
    pub quantity: f64,
    /// Fill price.
    pub price: f64,
    /// Time, epoch ms.
    pub created_ms: i64,
}

/// Identifies an account: a user's book.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    /// The book.
    pub book: Book,
    /// The user.
    pub user_id: String,
}

impl AccountKey {
    /// The account of `user_id` in `book`.
    pub fn new(book: Book, user_id: &str) -> Self {
        AccountKey {
            book,
            user_id: user_id.to_string(),
        }
    }
}

/// Identifies a position: an account's holding of one symbol under one product. Ordered by
/// book, user, exchange, symbol, product (the order of the position book).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PositionKey {
    /// The book.
    pub book: Book,
    /// The user.
    pub user_id: String,
    /// Exchange.
    pub exchange: Exchange,
    /// Symbol.
    pub symbol: String,
    /// Product.
    pub product: Product,
}

impl PositionKey {
    /// The account holding this position.
    pub fn account(&self) -> AccountKey {
        AccountKey::new(self.book, &self.user_id)
    }
}

/// A net position.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Position {
    /// Signed net quantity (negative = short).
    pub quantity: f64,
    /// Average entry price of the open quantity.
    pub average_price: f64,
    /// P&L realized on this position.
    pub realized_pnl: f64,
    /// Margin held by the open quantity.
    pub margin: f64,
}

impl Position {
    /// Unrealized P&L of the open quantity at `ltp`: `(ltp - average price) x quantity`,
    /// 0 while the price is unknown (`ltp <= 0`).
    pub fn unrealized_pnl(&self, ltp: f64) -> f64 {
        if ltp > 0.0 && self.quantity != 0.0 {
            (ltp - self.average_price) * self.quantity
        } else {
            0.0
        }
    }
}

/// Funds of one account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Account {
    /// Funds the account started with.
    pub starting: f64,
    /// Available cash.
    pub cash: f64,
    /// Margin blocked by active orders.
    pub order_margin: f64,
    /// Margin held by open positions.
    pub position_margin: f64,
    /// Realized P&L.
    pub realized_pnl: f64,
}

impl Account {
    /// A fresh account.
    pub fn new(starting: f64) -> Self {
        Account {
            starting,
            cash: starting,
            order_margin: 0.0,
            position_margin: 0.0,
            realized_pnl: 0.0,
        }
    }

    /// `cash + order_margin + position_margin - realized_pnl - starting` (0 when consistent).
    pub fn imbalance(&self) -> f64 {
        self.cash + self.order_margin + self.position_margin - self.realized_pnl - self.starting
    }
}

/// The result of placing an order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOutcome {
    /// The new order's id (also for rejected orders).
    pub orderid: String,
    /// Its status right after placement.
    pub status: OrderStatus,
    /// Why it was rejected (empty otherwise).
    pub rejection_reason: String,
    /// Symbol (for basket results).
    pub symbol: String,
    /// Quantity (for split results).
    pub quantity: f64,
}

/// The result of cancelling all orders.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CancelAllOutcome {
    /// Cancelled order ids.
    pub canceled: Vec<String>,
    /// (order id, reason) of orders that could not be cancelled.
    pub failed: Vec<(String, String)>,
}

/// Why an engine command failed (nothing changed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// No such order for this user and book.
    #[error("Order {0} not found")]
    OrderNotFound(String),
    /// The order is no longer active.
    #[error("Order {orderid} cannot be {verb}: its status is {status}")]
    NotActive {
        /// The order.
        orderid: String,
        /// "modified" or "cancelled".
        verb: &'static str,
        /// Its status.
        status: &'static str,
    },
    /// A modify field does not match the order.
    #[error("{field}: does not match order {orderid} (expected {expected}, got {got})")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// The order.
        orderid: String,
        /// The order's value.
        expected: String,
        /// The request's value.
        got: String,
    },
    /// Not enough cash for the margin.
    #[error("Insufficient funds: margin required {required:.2}, available {available:.2}")]
    InsufficientFunds {
        /// Margin needed.
        required: f64,
        /// Cash available.
        available: f64,
    },
}

/// Everything a command changed, for persistence and events.
#[derive(Debug, Default)]
pub struct Changes {
    /// Orders whose row must be written (deduplicated by the worker).
    pub orders: Vec<String>,
    /// Order snapshots after each status change or fill, in order (for `order_update`).
    pub updates: Vec<Order>,
    /// New trades.
    pub trades: Vec<Trade>,
    /// Positions to write.
    pub positions: Vec<PositionKey>,
    /// Accounts to write.
    pub accounts: Vec<AccountKey>,
    /// True when the set of symbols with resting orders changed.
    pub watched_changed: bool,
}

impl Changes {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.updates.is_empty()
            && self.trades.is_empty()
            && self.positions.is_empty()
            && self.accounts.is_empty()
    }
}

/// Settings of the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Starting funds of every account.
    pub starting_funds: f64,
    /// Leverage per product.
    pub leverage: Leverage,
}

/// The matching engine.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    orders: HashMap<String, Order>,
    /// Order ids per account, in creation order.
    user_orders: HashMap<AccountKey, Vec<String>>,
    /// Active order ids per (exchange, symbol), in creation order.
    resting: HashMap<(Exchange, String), Vec<String>>,
    positions: BTreeMap<PositionKey, Position>,
    accounts: HashMap<AccountKey, Account>,
    trades: HashMap<AccountKey, Vec<Trade>>,
    next_order_id: u64,
    next_trade_id: u64,
    changes: Changes,
}

impl Engine {
    /// An empty engine whose order ids start at `first_order_id`.
    pub fn new(config: EngineConfig, first_order_id: u64) -> Self {
        Engine {
            config,
            orders: HashMap::new(),
            user_orders: HashMap::new(),
            resting: HashMap::new(),
            positions: BTreeMap::new(),
            accounts: HashMap::new(),
            trades: HashMap::new(),
            next_order_id: first_order_id,
            next_trade_id: 1,
            changes: Changes::default(),
        }
    }

    /// Rebuilds an engine from stored rows.
    pub fn restore(
        config: EngineConfig,
        first_order_id: u64,
        orders: Vec<Order>,
        trades: Vec<Trade>,
        positions: Vec<(PositionKey, Position)>,
        accounts: Vec<(AccountKey, Account)>,
    ) -> Self {
        let mut engine = Engine::new(config, first_order_id);
        for order in orders {
            if let Ok(id) = order.orderid.parse::<u64>() {
                engine.next_order_id = engine.next_order_id.max(id + 1);
            }
            let account = order.account_key();
            engine
                .user_orders
                .entry(account)
                .or_default()
                .push(order.orderid.clone());
            if order.status.is_active() {
                engine
                    .resting
                    .entry((order.terms.exchange, order.terms.symbol.clone()))
                    .or_default()
                    .push(order.orderid.clone());
            }
            engine.orders.insert(order.orderid.clone(), order);
        }
        for trade in trades {
            engine.next_trade_id = engine.next_trade_id.max(trade.tradeid + 1);
            engine
                .trades
                .entry(AccountKey::new(trade.book, &trade.user_id))
                .or_default()
                .push(trade);
        }
        engine.positions.extend(positions);
        engine.accounts.extend(accounts);
        engine
    }

    /// Makes sure new trade ids start at `next` or later.
    pub fn reserve_trade_ids(&mut self, next: u64) {
        self.next_trade_id = self.next_trade_id.max(next);
    }

    /// Drops finished orders last changed before `cutoff_ms`, and trades made before it,
    /// from memory (a new session). Active orders, positions and funds stay.
    pub fn forget_before(&mut self, cutoff_ms: i64) {
        self.orders
            .retain(|_, order| order.status.is_active() || order.updated_ms >= cutoff_ms);
        let orders = &self.orders;
        for ids in self.user_orders.values_mut() {
            ids.retain(|id| orders.contains_key(id));
        }
        self.user_orders.retain(|_, ids| !ids.is_empty());
        for trades in self.trades.values_mut() {
            trades.retain(|trade| trade.created_ms >= cutoff_ms);
        }
        self.trades.retain(|_, trades| !trades.is_empty());
    }

    /// Takes the changes recorded since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// The symbols with active orders (the ones whose price updates matter).
    pub fn watched_symbols(&self) -> impl Iterator<Item = &(Exchange, String)> {
        self.resting.keys()
    }

    // ---------------------------------------------------------------- reads

    /// An order, if it belongs to this account.
    pub fn order(&self, book: Book, user_id: &str, orderid: &str) -> Option<&Order> {
        self.orders
            .get(orderid)
            .filter(|order| order.book == book && order.user_id == user_id)
    }

    /// An account's orders, oldest first.
    pub fn orders(&self, book: Book, user_id: &str) -> Vec<&Order> {
        self.user_orders
            .get(&AccountKey::new(book, user_id))
            .map(|ids| ids.iter().filter_map(|id| self.orders.get(id)).collect())
            .unwrap_or_default()
    }

    /// An account's trades, oldest first.
    pub fn trades(&self, book: Book, user_id: &str) -> &[Trade] {
        self.trades
            .get(&AccountKey::new(book, user_id))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// An account's positions (including flat ones that traded).
    pub fn positions(&self, book: Book, user_id: &str) -> Vec<(&PositionKey, &Position)> {
        self.positions
            .iter()
            .filter(|(key, _)| key.book == book && key.user_id == user_id)
            .collect()
    }

    /// One position, if any.
    pub fn position(&self, key: &PositionKey) -> Option<&Position> {
        self.positions.get(key)
    }

    /// An account's funds (a fresh account when it has never traded).
    pub fn account(&self, book: Book, user_id: &str) -> Account {
        self.accounts
            .get(&AccountKey::new(book, user_id))
            .copied()
            .unwrap_or_else(|| Account::new(self.config.starting_funds))
    }

    /// An account's unrealized P&L: its open positions at the last prices of `prices`.
    pub fn unrealized_pnl(&self, book: Book, user_id: &str, prices: &dyn PriceSource) -> f64 {
        self.positions(book, user_id)
            .into_iter()
            .filter_map(|(key, position)| {
                let quote = prices.quote(key.exchange.as_str(), &key.symbol)?;
                Some(position.unrealized_pnl(quote.ltp))
            })
            .sum()
    }

    /// Every account (for invariant checks).
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountKey, &Account)> {
        self.accounts.iter()
    }

    /// A stored order by id (any account).
    pub fn order_by_id(&self, orderid: &str) -> Option<&Order> {
        self.orders.get(orderid)
    }

    // ---------------------------------------------------------------- commands

    /// Places an order. Rejections (no price, insufficient funds, `forced_rejection`) are
    /// stored as `rejected` orders, never errors.
    pub fn place(
        &mut self,
        book: Book,
        new: NewOrder,
        forced_rejection: Option<String>,
        prices: &dyn PriceSource,
        now_ms: i64,
    ) -> PlaceOutcome {
        let orderid = self.next_order_id.to_string();
        self.next_order_id += 1;
        let account_key = AccountKey::new(book, &new.user_id);
        let mut order = Order {
            orderid: orderid.clone(),
            book,
            user_id: new.user_id,
            strategy: new.strategy,
            terms: new.terms,
            status: OrderStatus::Open,
            filled_quantity: 0.0,
            average_price: 0.0,
            blocked_margin: 0.0,
            rejection_reason: String::new(),
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        self.user_orders
            .entry(account_key.clone())
            .or_default()
            .push(orderid.clone());

        let quote = prices.quote(order.terms.exchange.as_str(), &order.terms.symbol);
        let rejection = if let Some(reason) = forced_rejection {
            Some(reason)
        } else if let Some(quote) = quote {
            let margin = self.required_margin(&order, &quote);
            let account = self.account_mut(&account_key);
            // An exit needs no cash, even when losses left the account in debit.
            if margin > EPSILON && margin > account.cash + EPSILON {
                Some(
                    EngineError::InsufficientFunds {
                        required: margin,
                        available: account.cash,
                    }
                    .to_string(),
                )
            } else {
                account.cash -= margin;
                account.order_margin += margin;
                order.blocked_margin = margin;
                None
            }
        } else {
            Some(format!(
                "No price available for {} on {}: the symbol has no quote yet",
                order.terms.symbol, order.terms.exchange
            ))
        };

        if let Some(reason) = rejection {
            order.status = OrderStatus::Rejected;
            order.rejection_reason = reason;
            let outcome = outcome_of(&order);
            self.changes.updates.push(order.clone());
            self.changes.orders.push(orderid.clone());
            self.orders.insert(orderid, order);
            return outcome;
        }
        self.changes.accounts.push(account_key);

        if matches!(order.terms.pricetype, PriceType::Sl | PriceType::SlM) {
            order.status = OrderStatus::TriggerPending;
        }
        self.changes.updates.push(order.clone());
        self.changes.orders.push(orderid.clone());
        let key = (order.terms.exchange, order.terms.symbol.clone());
        self.orders.insert(orderid.clone(), order);
        let resting = self.resting.entry(key).or_default();
        self.changes.watched_changed |= resting.is_empty();
        resting.push(orderid.clone());
        if let Some(quote) = quote {
            self.evaluate(&orderid, &quote, true, now_ms);
        }
        let order = &self.orders[&orderid];
        outcome_of(order)
    }

    /// Modifies an active order; on success it may fill at once if now marketable.
    pub fn modify(
        &mut self,
        book: Book,
        user_id: &str,
        change: ModifyOrder,
        prices: &dyn PriceSource,
        now_ms: i64,
    ) -> Result<String, EngineError> {
        let order = self
            .order(book, user_id, &change.orderid)
            .ok_or_else(|| EngineError::OrderNotFound(change.orderid.clone()))?;
        if !order.status.is_active() {
            return Err(EngineError::NotActive {
                orderid: change.orderid.clone(),
                verb: "modified",
                status: order.status.as_str(),
            });
        }
        let mismatch = |field: &'static str, expected: String, got: String| {
            Err(EngineError::Mismatch {
                field,
                orderid: change.orderid.clone(),
                expected,
                got,
            })
        };
        if order.terms.symbol != change.symbol {
            return mismatch("symbol", order.terms.symbol.clone(), change.symbol.clone());
        }
        if order.terms.exchange != change.exchange {
            return mismatch(
                "exchange",
                order.terms.exchange.to_string(),
                change.exchange.to_string(),
            );
        }
        if order.terms.action != change.action {
            return mismatch(
                "action",
                order.terms.action.to_string(),
                change.action.to_string(),
            );
        }
        let mut updated = order.clone();
        updated.terms.product = change.product;
        updated.terms.pricetype = change.pricetype;
        updated.terms.price = change.price;
        updated.terms.quantity = change.quantity;
        updated.terms.disclosed_quantity = change.disclosed_quantity;
        updated.terms.trigger_price = change.trigger_price;
        updated.status = if matches!(change.pricetype, PriceType::Sl | PriceType::SlM) {
            OrderStatus::TriggerPending
        } else {
            OrderStatus::Open
        };
        updated.updated_ms = now_ms;
        let quote = prices.quote(updated.terms.exchange.as_str(), &updated.terms.symbol);
        let reference = quote.unwrap_or(Quote {
            ltp: updated.terms.price.max(updated.terms.trigger_price),
            bid: None,
            ask: None,
        });
        let margin = self.required_margin(&updated, &reference);
        let old_margin = order.blocked_margin;
        let account_key = AccountKey::new(book, user_id);
        let account = self.account_mut(&account_key);
        if margin > EPSILON && margin > account.cash + old_margin + EPSILON {
            return Err(EngineError::InsufficientFunds {
                required: margin,
                available: account.cash + old_margin,
            });
        }
        account.cash += old_margin - margin;
        account.order_margin += margin - old_margin;
        updated.blocked_margin = margin;
        self.changes.accounts.push(account_key);
        self.changes.orders.push(updated.orderid.clone());
        self.changes.updates.push(updated.clone());
        let orderid = updated.orderid.clone();
        self.orders.insert(orderid.clone(), updated);
        if let Some(quote) = quote {
            self.evaluate(&orderid, &quote, true, now_ms);
        }
        Ok(orderid)
    }

    /// Cancels an active order, releasing its margin.
    pub fn cancel(
        &mut self,
        book: Book,
        user_id: &str,
        orderid: &str,
        now_ms: i64,
    ) -> Result<String, EngineError> {
        let order = self
            .order(book, user_id, orderid)
            .ok_or_else(|| EngineError::OrderNotFound(orderid.to_string()))?;
        if !order.status.is_active() {
            return Err(EngineError::NotActive {
                orderid: orderid.to_string(),
                verb: "cancelled",
                status: order.status.as_str(),
            });
        }
        self.release_order_margin(orderid);
        if let Some(order) = self.orders.get_mut(orderid) {
            order.status = OrderStatus::Cancelled;
            order.updated_ms = now_ms;
            self.changes.updates.push(order.clone());
        }
        self.changes.orders.push(orderid.to_string());
        self.unrest(orderid);
        Ok(orderid.to_string())
    }

    /// Cancels every active order of an account.
    pub fn cancel_all(&mut self, book: Book, user_id: &str, now_ms: i64) -> CancelAllOutcome {
        let active: Vec<String> = self
            .orders(book, user_id)
            .into_iter()
            .filter(|order| order.status.is_active())
            .map(|order| order.orderid.clone())
            .collect();
        let mut outcome = CancelAllOutcome::default();
        for orderid in active {
            match self.cancel(book, user_id, &orderid, now_ms) {
                Ok(id) => outcome.canceled.push(id),
                Err(error) => outcome.failed.push((orderid, error.to_string())),
            }
        }
        outcome
    }

    /// Squares off every open position of an account with MARKET orders.
    pub fn close_positions(
        &mut self,
        book: Book,
        user_id: &str,
        strategy: &str,
        prices: &dyn PriceSource,
        now_ms: i64,
    ) -> Vec<PlaceOutcome> {
        let open: Vec<(PositionKey, f64)> = self
            .positions(book, user_id)
            .into_iter()
            .filter(|(_, position)| position.quantity.abs() > EPSILON)
            .map(|(key, position)| (key.clone(), position.quantity))
            .collect();
        open.into_iter()
            .map(|(key, quantity)| {
                let PositionKey {
                    book,
                    user_id,
                    exchange,
                    symbol,
                    product,
                } = key;
                let order = NewOrder {
                    user_id,
                    strategy: strategy.to_string(),
                    terms: OrderFields {
                        exchange,
                        symbol,
                        action: if quantity > 0.0 {
                            Action::Sell
                        } else {
                            Action::Buy
                        },
                        quantity: quantity.abs(),
                        pricetype: PriceType::Market,
                        product,
                        price: 0.0,
                        trigger_price: 0.0,
                        disclosed_quantity: 0.0,
                    },
                };
                self.place(book, order, None, prices, now_ms)
            })
            .collect()
    }

    /// Reacts to a price change of one symbol: triggers and fills the crossing orders.
    pub fn on_price(&mut self, exchange: Exchange, symbol: &str, quote: &Quote, now_ms: i64) {
        let Some(ids) = self.resting.get(&(exchange, symbol.to_string())).cloned() else {
            return;
        };
        for orderid in ids {
            self.evaluate(&orderid, quote, false, now_ms);
        }
    }

    /// Re-checks every resting order against the latest prices (after missed updates).
    pub fn resync(&mut self, prices: &dyn PriceSource, now_ms: i64) {
        let keys: Vec<(Exchange, String)> = self.resting.keys().cloned().collect();
        for (exchange, symbol) in keys {
            if let Some(quote) = prices.quote(exchange.as_str(), &symbol) {
                self.on_price(exchange, &symbol, &quote, now_ms);
            }
        }
    }

    // ---------------------------------------------------------------- internals

    fn account_mut(&mut self, key: &AccountKey) -> &mut Account {
        let starting = self.config.starting_funds;
        self.accounts
            .entry(key.clone())
            .or_insert_with(|| Account::new(starting))
    }

    /// Signed net quantity of the order's position.
    fn net_quantity(&self, order: &Order) -> f64 {
        self.positions
            .get(&order.position_key())
            .map_or(0.0, |p| p.quantity)
    }

    /// Margin to block for an order: only its position-opening part.
    fn required_margin(&self, order: &Order, quote: &Quote) -> f64 {
        let opening = margin::opening_quantity(
            self.net_quantity(order),
            order.terms.action,
            order.terms.quantity,
        );
        let price = margin::placement_price(
            order.terms.pricetype,
            order.terms.action,
            order.terms.price,
            order.terms.trigger_price,
            quote,
        );
        opening * price
            / self.config.leverage.of(
                order.terms.exchange,
                &order.terms.symbol,
                order.terms.product,
                order.terms.action,
            )
    }

    fn release_order_margin(&mut self, orderid: &str) {
        let Some(order) = self.orders.get_mut(orderid) else {
            return;
        };
        let margin = std::mem::take(&mut order.blocked_margin);
        let key = order.account_key();
        let account = self.account_mut(&key);
        account.cash += margin;
        account.order_margin -= margin;
        if account.order_margin.abs() < EPSILON {
            account.order_margin = 0.0;
        }
        self.changes.accounts.push(key);
    }

    fn unrest(&mut self, orderid: &str) {
        let Some(order) = self.orders.get(orderid) else {
            return;
        };
        let key = (order.terms.exchange, order.terms.symbol.clone());
        if let Some(ids) = self.resting.get_mut(&key) {
            ids.retain(|id| id != orderid);
            if ids.is_empty() {
                self.resting.remove(&key);
                self.changes.watched_changed = true;
            }
        }
    }

    /// Triggers and/or fills one active order against a quote. `taker` is true at placement
    /// and modification (a marketable order takes the market price); a resting order that
    /// a later price crosses fills at its own limit price.
    fn evaluate(&mut self, orderid: &str, quote: &Quote, taker: bool, now_ms: i64) {
        let Some(order) = self.orders.get(orderid) else {
            return;
        };
        let market = match order.terms.action {
            Action::Buy => quote.buy_price(),
            Action::Sell => quote.sell_price(),
        };
        if market <= 0.0 {
            return;
        }
        let mut taker = taker;
        if order.status == OrderStatus::TriggerPending {
            let triggered = match order.terms.action {
                Action::Buy => quote.ltp >= order.terms.trigger_price && quote.ltp > 0.0,
                Action::Sell => quote.ltp <= order.terms.trigger_price && quote.ltp > 0.0,
            };
            if !triggered {
                return;
            }
            if order.terms.pricetype == PriceType::SlM {
                self.fill(orderid, market, now_ms);
                return;
            }
            // SL: becomes a limit order; a price already through the limit fills at once.
            if let Some(order) = self.orders.get_mut(orderid) {
                order.status = OrderStatus::Open;
                order.updated_ms = now_ms;
                self.changes.updates.push(order.clone());
                self.changes.orders.push(orderid.to_string());
            }
            taker = true;
        }
        let Some(order) = self.orders.get(orderid) else {
            return;
        };
        if order.status != OrderStatus::Open {
            return;
        }
        match order.terms.pricetype {
            PriceType::Market | PriceType::SlM => self.fill(orderid, market, now_ms),
            PriceType::Limit | PriceType::Sl => {
                let limit = order.terms.price;
                // A new (taker) order compares the executable side of the book; a resting
                // order fills when the last traded price reaches its limit.
                let reference = if taker || quote.ltp <= 0.0 {
                    market
                } else {
                    quote.ltp
                };
                let crosses = match order.terms.action {
                    Action::Buy => reference <= limit + EPSILON,
                    Action::Sell => reference + EPSILON >= limit,
                };
                if crosses {
                    let price = if taker { market } else { limit };
                    self.fill(orderid, price, now_ms);
                }
            }
        }
    }

    /// Fills the rest of an order at `price` and books it, or rejects the order when the
    /// part of the fill that opens exposure cannot be funded at this moment.
    fn fill(&mut self, orderid: &str, price: f64, now_ms: i64) {
        let Some(order) = self.orders.get(orderid) else {
            return;
        };
        let quantity = order.terms.quantity - order.filled_quantity;
        let position_key = order.position_key();
        let account_key = order.account_key();
        let settlement = margin::Settlement::compute(
            &self
                .positions
                .get(&position_key)
                .cloned()
                .unwrap_or_default(),
            order.terms.action,
            quantity,
            price,
            self.config.leverage.of(
                order.terms.exchange,
                &order.terms.symbol,
                order.terms.product,
                order.terms.action,
            ),
        );
        let cash = self.account(order.book, &order.user_id).cash;
        if let Some(shortfall) = settlement.shortfall(cash, order.blocked_margin) {
            self.reject_active(orderid, shortfall.reason(price), now_ms);
            return;
        }

        self.release_order_margin(orderid);
        self.unrest(orderid);
        let Some(order) = self.orders.get_mut(orderid) else {
            return;
        };
        order.filled_quantity = order.terms.quantity;
        order.average_price = price;
        order.status = OrderStatus::Complete;
        order.updated_ms = now_ms;
        let order = order.clone();
        self.changes.updates.push(order.clone());
        self.changes.orders.push(orderid.to_string());

        let trade = Trade {
            tradeid: self.next_trade_id,
            orderid: orderid.to_string(),
            book: order.book,
            user_id: order.user_id.clone(),
            exchange: order.terms.exchange,
            symbol: order.terms.symbol.clone(),
            action: order.terms.action,
            product: order.terms.product,
            quantity,
            price,
            created_ms: now_ms,
        };
        self.next_trade_id += 1;
        self.trades
            .entry(account_key.clone())
            .or_default()
            .push(trade.clone());
        self.changes.trades.push(trade);

        let margin::Settlement {
            position,
            realized,
            released,
            opened_margin,
        } = settlement;
        self.positions.insert(position_key.clone(), position);
        let account = self.account_mut(&account_key);
        account.cash += realized + released - opened_margin;
        account.position_margin += opened_margin - released;
        if account.position_margin.abs() < EPSILON {
            account.position_margin = 0.0;
        }
        account.realized_pnl += realized;
        self.changes.accounts.push(account_key);
        self.changes.positions.push(position_key);
    }

    /// Rejects an active order (at fill), releasing its block.
    fn reject_active(&mut self, orderid: &str, reason: String, now_ms: i64) {
        self.release_order_margin(orderid);
        self.unrest(orderid);
        if let Some(order) = self.orders.get_mut(orderid) {
            order.status = OrderStatus::Rejected;
            order.rejection_reason = reason;
            order.updated_ms = now_ms;
            self.changes.updates.push(order.clone());
            self.changes.orders.push(orderid.to_string());
        }
    }
}

fn outcome_of(order: &Order) -> PlaceOutcome {
    PlaceOutcome {
        orderid: order.orderid.clone(),
        status: order.status,
        rejection_reason: order.rejection_reason.clone(),
        symbol: order.terms.symbol.clone(),
        quantity: order.terms.quantity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::StaticPrices;

    fn order(
        action: Action,
        quantity: f64,
        pricetype: PriceType,
        price: f64,
        trigger: f64,
    ) -> NewOrder {
        NewOrder {
            user_id: "u".into(),
            strategy: "s".into(),
            terms: OrderFields {
                exchange: Exchange::parse("NSE").unwrap(),
                symbol: "SBIN".into(),
                action,
                quantity,
                pricetype,
                product: Product::Cnc,
                price,
                trigger_price: trigger,
                disclosed_quantity: 0.0,
            },
        }
    }

    /// An engine, user "u"'s sandbox book on it, and the NSE:SBIN prices it fills at.
    struct Sandbox {
        engine: Engine,
        prices: StaticPrices,
    }

    impl Sandbox {
        /// `funds` of starting cash; no prices yet.
        fn unpriced(funds: f64) -> Sandbox {
            let config = EngineConfig {
                starting_funds: funds,
                leverage: Leverage::default(),
            };
            Sandbox {
                engine: Engine::new(config, 1),
                prices: StaticPrices::new(),
            }
        }

        /// `funds` of starting cash; NSE:SBIN last traded at 100 (no book).
        fn new(funds: f64) -> Sandbox {
            Sandbox::quoting(funds, 100.0, None, None)
        }

        /// `funds` of starting cash; NSE:SBIN quoted at `ltp` (`bid`, `ask`).
        fn quoting(funds: f64, ltp: f64, bid: Option<f64>, ask: Option<f64>) -> Sandbox {
            let sandbox = Sandbox::unpriced(funds);
            sandbox.prices.set("NSE", "SBIN", ltp, bid, ask);
            sandbox
        }

        /// Places `new` in the sandbox book.
        fn place(&mut self, new: NewOrder, now_ms: i64) -> PlaceOutcome {
            self.engine
                .place(Book::Sandbox, new, None, &self.prices, now_ms)
        }

        /// NSE:SBIN trades at `ltp` (no book), and its price is `ltp` from now on.
        fn tick(&mut self, ltp: f64, now_ms: i64) {
            self.prices.set("NSE", "SBIN", ltp, None, None);
            self.trade_at(ltp, now_ms);
        }

        /// NSE:SBIN trades at `ltp` (no book), without changing the prices.
        fn trade_at(&mut self, ltp: f64, now_ms: i64) {
            let quote = Quote {
                ltp,
                bid: None,
                ask: None,
            };
            let nse = Exchange::parse("NSE").unwrap();
            self.engine.on_price(nse, "SBIN", &quote, now_ms);
        }

        /// User "u"'s account.
        fn account(&self) -> Account {
            self.engine.account(Book::Sandbox, "u")
        }

        /// The status and rejection reason of an order.
        fn status(&self, orderid: &str) -> (OrderStatus, String) {
            let order = self.engine.order_by_id(orderid).unwrap();
            (order.status, order.rejection_reason.clone())
        }
    }

    // Upstream (sandbox/order_manager.py, place_order) blocks no margin for an order that
    // only reduces the position held at placement; oa keeps that, and checks at fill.
    #[test]
    fn resting_exits_cannot_together_open_an_unmargined_opposite_position() {
        let mut sandbox = Sandbox::new(1500.0);
        let long = order(Action::Buy, 10.0, PriceType::Market, 0.0, 0.0);
        assert_eq!(sandbox.place(long, 1).status, OrderStatus::Complete);
        let exits: Vec<String> = (0..3)
            .map(|_| {
                let exit = order(Action::Sell, 10.0, PriceType::Limit, 110.0, 0.0);
                sandbox.place(exit, 2).orderid
            })
            .collect();
        let account = sandbox.account();
        assert_eq!((account.cash, account.order_margin), (500.0, 0.0));

        sandbox.tick(111.0, 3);
        // The first exit closes (+100); the second opens a short of 10 x 110 = 1100, funded
        // by the 1600 cash; the third would need another 1100 from the 500 left.
        assert_eq!(sandbox.status(&exits[0]).0, OrderStatus::Complete);
        assert_eq!(sandbox.status(&exits[1]).0, OrderStatus::Complete);
        let (third, reason) = sandbox.status(&exits[2]);
        assert_eq!(third, OrderStatus::Rejected);
        assert_eq!(
            reason,
            "Insufficient funds at fill: margin required 1100.00 at fill price 110.00, available 500.00"
        );
        let account = sandbox.account();
        assert_eq!((account.cash, account.order_margin), (500.0, 0.0));
        assert_eq!(account.position_margin, 1100.0);
        assert!(account.imbalance().abs() < 1e-9, "{account:?}");
        let key = PositionKey {
            book: Book::Sandbox,
            user_id: "u".to_string(),
            exchange: Exchange::parse("NSE").unwrap(),
            symbol: "SBIN".to_string(),
            product: Product::Cnc,
        };
        assert_eq!(sandbox.engine.position(&key).unwrap().quantity, -10.0);
        assert_eq!(sandbox.engine.watched_symbols().count(), 0);
    }

    // Upstream (sandbox/order_manager.py) margins SL-M at its trigger price and carries that
    // block to the position (sandbox/execution_engine.py, _update_position); oa charges the
    // fill price and refuses the fill when the gap makes it unaffordable.
    #[test]
    fn a_gapping_stop_market_order_is_charged_at_its_fill_price() {
        let stop = || order(Action::Buy, 90.0, PriceType::SlM, 0.0, 105.0);
        let mut sandbox = Sandbox::new(10_000.0);
        let placed = sandbox.place(stop(), 1);
        assert_eq!(placed.status, OrderStatus::TriggerPending);
        assert_eq!(sandbox.account().order_margin, 9450.0);
        sandbox.tick(120.0, 2);
        let (state, reason) = sandbox.status(&placed.orderid);
        assert_eq!(state, OrderStatus::Rejected);
        assert!(
            reason.starts_with(
                "Insufficient funds at fill: margin required 10800.00 at fill price 120.00"
            ),
            "{reason}"
        );
        assert_eq!(
            sandbox.account(),
            Account::new(10_000.0),
            "the block is released"
        );

        let mut sandbox = Sandbox::new(100_000.0);
        let placed = sandbox.place(stop(), 1);
        sandbox.tick(120.0, 2);
        assert_eq!(sandbox.status(&placed.orderid).0, OrderStatus::Complete);
        let account = sandbox.account();
        assert_eq!(
            (account.cash, account.order_margin, account.position_margin),
            (100_000.0 - 10_800.0, 0.0, 10_800.0)
        );
    }

    #[test]
    fn a_limit_sell_filling_above_its_limit_is_margined_at_the_fill_price() {
        let mut sandbox = Sandbox::quoting(10_000.0, 120.0, Some(120.0), Some(120.5));
        // Blocks 90 x 100 = 9000 at placement, but is marketable and fills at the bid 120.
        let outcome = sandbox.place(order(Action::Sell, 90.0, PriceType::Limit, 100.0, 0.0), 1);
        assert_eq!(outcome.status, OrderStatus::Rejected);
        assert!(
            outcome
                .rejection_reason
                .starts_with("Insufficient funds at fill: margin required 10800.00"),
            "{outcome:?}"
        );
        let changes = sandbox.engine.take_changes();
        let statuses: Vec<OrderStatus> = changes.updates.iter().map(|o| o.status).collect();
        assert_eq!(statuses, [OrderStatus::Open, OrderStatus::Rejected]);
        assert!(changes.trades.is_empty());
        assert_eq!(sandbox.account(), Account::new(10_000.0));
    }

    #[test]
    fn a_modified_order_that_becomes_marketable_is_checked_at_fill() {
        let mut sandbox = Sandbox::quoting(6500.0, 120.0, Some(120.0), Some(120.5));
        let placed = sandbox.place(order(Action::Sell, 50.0, PriceType::Limit, 130.0, 0.0), 1);
        assert_eq!(placed.status, OrderStatus::Open);
        assert_eq!(sandbox.account().order_margin, 6500.0);
        // 55 x 100 = 5500 fits the 6500 at placement prices; the fill at the bid 120 needs
        // 55 x 120 = 6600.
        let change = ModifyOrder {
            orderid: placed.orderid.clone(),
            exchange: Exchange::parse("NSE").unwrap(),
            symbol: "SBIN".into(),
            action: Action::Sell,
            product: Product::Cnc,
            pricetype: PriceType::Limit,
            price: 100.0,
            quantity: 55.0,
            disclosed_quantity: 0.0,
            trigger_price: 0.0,
        };
        sandbox
            .engine
            .modify(Book::Sandbox, "u", change, &sandbox.prices, 2)
            .unwrap();
        assert_eq!(sandbox.status(&placed.orderid).0, OrderStatus::Rejected);
        assert_eq!(sandbox.account(), Account::new(6500.0));
    }

    // A closing loss larger than the position's margin plus the free cash leaves the account
    // in debit (upstream sandbox/fund_manager.py, release_margin, books it the same way).
    #[test]
    fn an_account_in_debit_can_still_exit_but_not_open() {
        let mut sandbox = Sandbox::new(1000.0);
        sandbox.place(order(Action::Buy, 2.0, PriceType::Market, 0.0, 0.0), 1);
        let mut short = order(Action::Sell, 40.0, PriceType::Market, 0.0, 0.0);
        short.terms.product = Product::Mis;
        sandbox.place(short, 1);
        assert_eq!(sandbox.account().cash, 0.0);
        sandbox.prices.set("NSE", "SBIN", 130.0, None, None);
        let mut cover = order(Action::Buy, 40.0, PriceType::Market, 0.0, 0.0);
        cover.terms.product = Product::Mis;
        let covered = sandbox.place(cover, 2);
        assert_eq!(covered.status, OrderStatus::Complete);
        let account = sandbox.account();
        assert_eq!((account.cash, account.realized_pnl), (-400.0, -1200.0));

        let exit = sandbox.place(order(Action::Sell, 2.0, PriceType::Limit, 140.0, 0.0), 3);
        assert_eq!(exit.status, OrderStatus::Open, "{exit:?}");
        let open = sandbox.place(order(Action::Buy, 1.0, PriceType::Market, 0.0, 0.0), 3);
        assert_eq!(open.status, OrderStatus::Rejected);
        assert_eq!(
            open.rejection_reason,
            "Insufficient funds: margin required 130.00, available -400.00"
        );
    }

    #[test]
    fn market_order_fills_at_ask_and_round_trip_books_pnl() {
        let mut sandbox = Sandbox::quoting(100_000.0, 100.0, Some(99.5), Some(100.5));
        let buy = sandbox.place(order(Action::Buy, 10.0, PriceType::Market, 0.0, 0.0), 1);
        assert_eq!(buy.status, OrderStatus::Complete);
        let account = sandbox.account();
        assert!((account.cash - (100_000.0 - 1005.0)).abs() < 1e-9);
        assert!((account.position_margin - 1005.0).abs() < 1e-9);
        sandbox
            .prices
            .set("NSE", "SBIN", 110.0, Some(109.0), Some(111.0));
        let sell = sandbox.place(order(Action::Sell, 10.0, PriceType::Market, 0.0, 0.0), 2);
        assert_eq!(sell.status, OrderStatus::Complete);
        let account = sandbox.account();
        assert!((account.realized_pnl - 85.0).abs() < 1e-9, "{account:?}");
        assert!((account.cash - 100_085.0).abs() < 1e-9);
        assert_eq!(account.position_margin, 0.0);
        assert!(account.imbalance().abs() < 1e-9);
    }

    /// A resting order stays as it is while trades do not reach its price, then fills: a
    /// limit buy at its limit once the price crosses it, a stop-market buy at the price that
    /// crossed its trigger.
    #[test]
    fn resting_orders_wait_for_their_price_then_fill() {
        let limit = order(Action::Buy, 5.0, PriceType::Limit, 95.0, 0.0);
        let stop = order(Action::Buy, 1.0, PriceType::SlM, 0.0, 105.0);
        // (order, its status while it rests, a trade that leaves it resting, the trade that
        // fills it, the average price of the fill)
        let cases = [
            (limit, OrderStatus::Open, 96.0, 94.0, 95.0),
            (stop, OrderStatus::TriggerPending, 104.0, 106.0, 106.0),
        ];
        for (new, resting, short_of_it, crossing, average_price) in cases {
            let pricetype = new.terms.pricetype;
            let mut sandbox = Sandbox::new(100_000.0);
            let placed = sandbox.place(new, 1);
            assert_eq!(placed.status, resting, "{pricetype:?}");
            sandbox.trade_at(short_of_it, 2);
            assert_eq!(sandbox.status(&placed.orderid).0, resting, "{pricetype:?}");
            sandbox.trade_at(crossing, 3);
            let filled = sandbox.engine.order_by_id(&placed.orderid).unwrap();
            assert_eq!(
                (filled.status, filled.average_price),
                (OrderStatus::Complete, average_price),
                "{pricetype:?}"
            );
            assert_eq!(sandbox.engine.watched_symbols().count(), 0);
        }
    }

    #[test]
    fn no_price_and_no_funds_reject_with_reasons() {
        let mut sandbox = Sandbox::unpriced(100_000.0);
        let outcome = sandbox.place(order(Action::Buy, 1.0, PriceType::Market, 0.0, 0.0), 1);
        assert_eq!(outcome.status, OrderStatus::Rejected);
        assert!(
            outcome.rejection_reason.contains("SBIN") && outcome.rejection_reason.contains("NSE")
        );
        sandbox.prices.set("NSE", "SBIN", 100.0, None, None);
        let huge = order(Action::Buy, 10_000.0, PriceType::Market, 0.0, 0.0);
        let outcome = sandbox.place(huge, 1);
        assert!(
            outcome.rejection_reason.starts_with("Insufficient funds"),
            "{outcome:?}"
        );
        assert_eq!(sandbox.account().cash, 100_000.0);
    }

    #[test]
    fn cancel_releases_margin_and_unknown_orders_are_not_found() {
        let mut sandbox = Sandbox::new(100_000.0);
        let placed = sandbox.place(order(Action::Buy, 10.0, PriceType::Limit, 90.0, 0.0), 1);
        assert_eq!(sandbox.account().order_margin, 900.0);
        let engine = &mut sandbox.engine;
        engine
            .cancel(Book::Sandbox, "u", &placed.orderid, 2)
            .unwrap();
        let account = engine.account(Book::Sandbox, "u");
        assert_eq!((account.cash, account.order_margin), (100_000.0, 0.0));
        assert!(matches!(
            engine.cancel(Book::Sandbox, "u", &placed.orderid, 3),
            Err(EngineError::NotActive { .. })
        ));
        assert!(matches!(
            engine.cancel(Book::Sandbox, "other", &placed.orderid, 3),
            Err(EngineError::OrderNotFound(_))
        ));
    }

    #[test]
    fn a_new_session_forgets_finished_orders_but_keeps_active_ones_and_positions() {
        let market = || order(Action::Buy, 1.0, PriceType::Market, 0.0, 0.0);
        let mut sandbox = Sandbox::new(100_000.0);
        let filled = sandbox.place(market(), 10);
        let resting = sandbox.place(order(Action::Buy, 1.0, PriceType::Limit, 50.0, 0.0), 10);
        sandbox.engine.forget_before(20);
        let ids: Vec<&str> = sandbox
            .engine
            .orders(Book::Sandbox, "u")
            .iter()
            .map(|o| o.orderid.as_str())
            .collect();
        assert_eq!(ids, [resting.orderid.as_str()]);
        assert!(sandbox.engine.order_by_id(&filled.orderid).is_none());
        assert!(sandbox.engine.trades(Book::Sandbox, "u").is_empty());
        assert_eq!(sandbox.engine.positions(Book::Sandbox, "u").len(), 1);
        let next = sandbox.place(market(), 30);
        assert!(next.orderid.parse::<u64>().unwrap() > resting.orderid.parse::<u64>().unwrap());
    }
}
