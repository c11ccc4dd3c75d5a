//! The read models: orderbook, tradebook, positionbook, funds, orderstatus and openposition
//! of the user's current account (the sandbox's in analyzer mode).

use oa_events_core::number::Quantity;

use axum::http::StatusCode;
use oa_marketdata_core::symbols::round_to;

use super::{ActionLog, OrderService, Result, format_sandbox_timestamp, format_timestamp};
use crate::broker::{FundsView, PositionView};
use crate::engine::Order;
use crate::responses::{
    ByMode, Data, Funds, OpenPosition, OrderBook, OrderRow, OrderStatistics, OrderStatusData,
    PositionBook, PositionHead, PositionRow, PositionTotals, Reply, RowHead, SandboxFunds,
    SandboxOrder, SandboxPositionRow, TradeRow,
};
use crate::types::{AccountMode, Action, Exchange, OrderStatus, Product};

impl OrderService {
    /// The signed net quantity of one position of the account of `mode`.
    pub(super) async fn open_quantity(
        &self,
        user_id: &str,
        mode: AccountMode,
        exchange: Exchange,
        symbol: &str,
        product: Product,
    ) -> Result<f64> {
        let positions = self.broker(mode).position_book(user_id).await?;
        Ok(positions
            .iter()
            .find(|p| p.exchange == exchange && p.symbol == symbol && p.product == product)
            .map_or(0.0, |p| p.quantity))
    }

    /// openposition. In analyzer mode it is logged and emits `analyzer_update`, as upstream
    /// services/openposition_service.py does.
    pub async fn open_position(
        &self,
        user_id: &str,
        exchange: Exchange,
        symbol: &str,
        product: Product,
        log: impl Into<ActionLog>,
    ) -> Result<Reply<OpenPosition>> {
        let mode = self.mode(user_id);
        let quantity = self
            .open_quantity(user_id, mode, exchange, symbol, product)
            .await?;
        let response = Reply::in_mode(
            OpenPosition {
                quantity: Quantity(quantity),
            },
            mode,
        );
        if mode == AccountMode::Analyze {
            let action = self.action(user_id, "openposition", log.into());
            self.record_only(action.record(StatusCode::OK, response.to_value(), Vec::new()))
                .await?;
        }
        Ok(response)
    }

    /// orderstatus: the live shape, or in analyzer mode the sandbox's (upstream
    /// sandbox/order_manager.py `get_order_status`).
    pub async fn order_status(
        &self,
        user_id: &str,
        orderid: &str,
    ) -> Result<Reply<Data<ByMode<OrderStatusData, SandboxOrder>>>> {
        let mode = self.mode(user_id);
        let order = self
            .broker(mode)
            .order_status(user_id, orderid)
            .await
            .map_err(|error| super::broker_error(&error).with_mode(mode))?;
        let data = match mode {
            AccountMode::Live => ByMode::Live(OrderStatusData {
                action: order.terms.action.as_str(),
                average_price: order.average_price,
                exchange: order.terms.exchange.as_str(),
                order_status: order.status.as_str(),
                orderid: order.orderid.clone(),
                price: order.terms.price,
                pricetype: order.terms.pricetype.as_str(),
                product: order.terms.product.as_str(),
                quantity: Quantity(order.terms.quantity),
                symbol: order.terms.symbol.clone(),
                timestamp: format_timestamp(order.updated_ms),
                trigger_price: order.terms.trigger_price,
                rejection_reason: (!order.rejection_reason.is_empty())
                    .then(|| order.rejection_reason.clone()),
            }),
            AccountMode::Analyze => ByMode::Analyze(SandboxOrder {
                pricetype: None,
                price_type: Some(order.terms.pricetype.as_str()),
                rejection_reason: None,
                ..sandbox_order_row(&order)
            }),
        };
        Ok(Reply::in_mode(Data { data }, mode))
    }

    /// orderbook: newest first, with counts.
    pub async fn order_book(&self, user_id: &str) -> Result<Reply<Data<OrderBook>>> {
        let mode = self.mode(user_id);
        let orders = self.broker(mode).order_book(user_id).await?;
        // Counted as upstream: broker/*/mapping/order_data.py `calculate_order_statistics`
        // (live) and sandbox/order_manager.py `_calculate_order_statistics` (analyzer).
        let count = |keep: &dyn Fn(&Order) -> bool| orders.iter().filter(|o| keep(o)).count();
        let statistics = OrderStatistics {
            total_buy_orders: count(&|o| o.terms.action == Action::Buy),
            total_sell_orders: count(&|o| o.terms.action == Action::Sell),
            total_completed_orders: count(&|o| o.status == OrderStatus::Complete),
            total_open_orders: count(&|o| o.status == OrderStatus::Open),
            total_rejected_orders: count(&|o| o.status == OrderStatus::Rejected),
            total_trigger_pending_orders: (mode == AccountMode::Analyze)
                .then(|| count(&|o| o.status == OrderStatus::TriggerPending)),
        };
        let rows = orders
            .iter()
            .rev()
            .map(|order| match mode {
                AccountMode::Live => ByMode::Live(OrderRow {
                    head: RowHead::new(&order.orderid, &order.terms, order.terms.quantity),
                    price: order.terms.price,
                    pricetype: order.terms.pricetype.as_str(),
                    order_status: order.status.as_str(),
                    trigger_price: order.terms.trigger_price,
                    average_price: order.average_price,
                    timestamp: format_timestamp(order.updated_ms),
                }),
                AccountMode::Analyze => ByMode::Analyze(sandbox_order_row(order)),
            })
            .collect();
        Ok(Reply::in_mode(
            Data {
                data: OrderBook {
                    orders: rows,
                    statistics,
                },
            },
            mode,
        ))
    }

    /// tradebook: newest first.
    pub async fn trade_book(&self, user_id: &str) -> Result<Reply<Data<Vec<TradeRow>>>> {
        let mode = self.mode(user_id);
        let trades = self.broker(mode).trade_book(user_id).await?;
        let data = trades
            .iter()
            .rev()
            .map(|trade| TradeRow {
                head: RowHead {
                    action: trade.action.as_str(),
                    symbol: trade.symbol.clone(),
                    exchange: trade.exchange.as_str(),
                    orderid: trade.orderid.clone(),
                    product: trade.product.as_str(),
                    quantity: Quantity(trade.quantity),
                },
                average_price: trade.price,
                trade_value: round_to(trade.price * trade.quantity, 2),
                timestamp: format_timestamp(trade.created_ms),
            })
            .collect();
        Ok(Reply::in_mode(Data { data }, mode))
    }

    /// positionbook: the live shape, or in analyzer mode the sandbox's rows and totals
    /// (upstream sandbox/position_manager.py `get_open_positions`).
    pub async fn position_book(&self, user_id: &str) -> Result<Reply<PositionBook>> {
        let mode = self.mode(user_id);
        let positions = self.broker(mode).position_book(user_id).await?;
        let book = match mode {
            AccountMode::Live => PositionBook {
                data: ByMode::Live(
                    positions
                        .iter()
                        .map(|p| PositionRow {
                            head: PositionHead::of(p),
                            average_price: format!("{:.2}", p.average_price),
                            ltp: round_to(p.ltp, 2),
                            pnl: round_to(p.pnl, 2),
                        })
                        .collect(),
                ),
                totals: None,
            },
            AccountMode::Analyze => {
                let rows: Vec<SandboxPositionRow> =
                    positions.iter().map(sandbox_position).collect();
                let sum = |part: fn(&SandboxPositionRow) -> f64| money(rows.iter().map(part).sum());
                let totals = PositionTotals {
                    total_pnl: sum(|row| row.pnl),
                    total_unrealized_pnl: sum(|row| row.unrealized_pnl),
                    total_today_realized_pnl: sum(|row| row.today_realized_pnl),
                    total_pnl_today: sum(|row| row.total_pnl_today),
                };
                PositionBook {
                    data: ByMode::Analyze(rows),
                    totals: Some(totals),
                }
            }
        };
        Ok(Reply::in_mode(book, mode))
    }

    /// funds: amounts as strings with two decimals, or in analyzer mode the sandbox's numbers
    /// (upstream sandbox/fund_manager.py `get_funds`).
    pub async fn funds(&self, user_id: &str) -> Result<Reply<Data<ByMode<Funds, SandboxFunds>>>> {
        let mode = self.mode(user_id);
        let funds = self.broker(mode).funds(user_id).await?;
        let data = match mode {
            AccountMode::Live => ByMode::Live(Funds {
                availablecash: format!("{:.2}", funds.availablecash),
                collateral: format!("{:.2}", funds.collateral),
                m2mrealized: format!("{:.2}", funds.m2mrealized),
                m2munrealized: format!("{:.2}", funds.m2munrealized),
                utiliseddebits: format!("{:.2}", funds.utiliseddebits),
            }),
            AccountMode::Analyze => ByMode::Analyze(sandbox_funds(&funds)),
        };
        Ok(Reply::in_mode(Data { data }, mode))
    }
}

/// The quantity of an order still to fill: none once rejected or filled.
fn pending_quantity(order: &Order) -> f64 {
    if order.status == OrderStatus::Rejected {
        0.0
    } else {
        (order.terms.quantity - order.filled_quantity).max(0.0)
    }
}

fn sandbox_order_row(order: &Order) -> SandboxOrder {
    SandboxOrder {
        orderid: order.orderid.clone(),
        symbol: order.terms.symbol.clone(),
        exchange: order.terms.exchange.as_str(),
        action: order.terms.action.as_str(),
        quantity: Quantity(order.terms.quantity),
        price: order.terms.price,
        trigger_price: order.terms.trigger_price,
        pricetype: Some(order.terms.pricetype.as_str()),
        price_type: None,
        product: order.terms.product.as_str(),
        order_status: order.status.as_str(),
        average_price: order.average_price,
        filled_quantity: Quantity(order.filled_quantity),
        pending_quantity: Quantity(pending_quantity(order)),
        rejection_reason: Some(order.rejection_reason.clone()),
        timestamp: format_sandbox_timestamp(order.created_ms),
        strategy: order.strategy.clone(),
    }
}

fn sandbox_position(p: &PositionView) -> SandboxPositionRow {
    let open = p.quantity.abs() > 1e-9;
    let investment = (p.average_price * p.quantity).abs();
    SandboxPositionRow {
        head: PositionHead::of(p),
        average_price: if open { money(p.average_price) } else { 0.0 },
        ltp: money(p.ltp),
        pnl: money(p.pnl),
        pnlpercent: if open && investment > 0.0 {
            money(p.pnl / investment * 100.0)
        } else {
            0.0
        },
        unrealized_pnl: money(p.unrealized_pnl),
        today_realized_pnl: money(p.realized_pnl),
        total_pnl_today: money(p.pnl),
        lot_size: 1.0,
    }
}

fn sandbox_funds(funds: &FundsView) -> SandboxFunds {
    SandboxFunds {
        availablecash: money(funds.availablecash),
        collateral: 0.0,
        m2munrealized: money(funds.m2munrealized),
        m2mrealized: money(funds.m2mrealized),
        total_realized_pnl: money(funds.m2mrealized),
        today_realized_pnl: money(funds.m2mrealized),
        utiliseddebits: money(funds.utiliseddebits),
        grossexposure: money(funds.utiliseddebits),
        totalpnl: money(funds.m2mrealized + funds.m2munrealized),
    }
}

/// Rounded to two decimals, as upstream's sandbox stores money; never `-0.0`.
fn money(value: f64) -> f64 {
    round_to(value, 2) + 0.0
}
