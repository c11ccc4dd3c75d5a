//! The read models: orderbook, tradebook, positionbook, funds, orderstatus and openposition
//! of the user's current account (the sandbox's in analyzer mode).

use oa_events_core::number::Quantity;

use super::{OrderService, Result, format_timestamp, round2};
use crate::engine::Order;
use crate::responses::{
    Data, Funds, OpenPosition, OrderBook, OrderRow, OrderStatistics, OrderStatusData, PositionRow,
    Reply, RowHead, TradeRow,
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

    /// openposition.
    pub async fn open_position(
        &self,
        user_id: &str,
        exchange: Exchange,
        symbol: &str,
        product: Product,
    ) -> Result<Reply<OpenPosition>> {
        let mode = self.mode(user_id);
        let quantity = self
            .open_quantity(user_id, mode, exchange, symbol, product)
            .await?;
        Ok(Reply::in_mode(
            OpenPosition {
                quantity: Quantity(quantity),
            },
            mode,
        ))
    }

    /// orderstatus.
    pub async fn order_status(
        &self,
        user_id: &str,
        orderid: &str,
    ) -> Result<Reply<Data<OrderStatusData>>> {
        let mode = self.mode(user_id);
        let order = self.broker(mode).order_status(user_id, orderid).await?;
        let data = OrderStatusData {
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
        };
        Ok(Reply::in_mode(Data { data }, mode))
    }

    /// orderbook: newest first, with counts.
    pub async fn order_book(&self, user_id: &str) -> Result<Reply<Data<OrderBook>>> {
        let mode = self.mode(user_id);
        let orders = self.broker(mode).order_book(user_id).await?;
        let count = |keep: &dyn Fn(&Order) -> bool| orders.iter().filter(|o| keep(o)).count();
        let statistics = OrderStatistics {
            total_buy_orders: count(&|o| o.terms.action == Action::Buy),
            total_sell_orders: count(&|o| o.terms.action == Action::Sell),
            total_completed_orders: count(&|o| o.status == OrderStatus::Complete),
            total_open_orders: count(&|o| o.status.is_active()),
            total_rejected_orders: count(&|o| o.status == OrderStatus::Rejected),
        };
        let rows = orders
            .iter()
            .rev()
            .map(|order| OrderRow {
                head: RowHead::new(&order.orderid, &order.terms, order.terms.quantity),
                price: order.terms.price,
                pricetype: order.terms.pricetype.as_str(),
                order_status: order.status.as_str(),
                trigger_price: order.terms.trigger_price,
                average_price: order.average_price,
                timestamp: format_timestamp(order.updated_ms),
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
                trade_value: round2(trade.price * trade.quantity),
                timestamp: format_timestamp(trade.created_ms),
            })
            .collect();
        Ok(Reply::in_mode(Data { data }, mode))
    }

    /// positionbook.
    pub async fn position_book(&self, user_id: &str) -> Result<Reply<Data<Vec<PositionRow>>>> {
        let mode = self.mode(user_id);
        let positions = self.broker(mode).position_book(user_id).await?;
        let data = positions
            .iter()
            .map(|p| PositionRow {
                symbol: p.symbol.clone(),
                exchange: p.exchange.as_str(),
                product: p.product.as_str(),
                quantity: Quantity(p.quantity),
                average_price: format!("{:.2}", p.average_price),
                ltp: round2(p.ltp),
                pnl: round2(p.pnl),
            })
            .collect();
        Ok(Reply::in_mode(Data { data }, mode))
    }

    /// funds: amounts as strings with two decimals.
    pub async fn funds(&self, user_id: &str) -> Result<Reply<Data<Funds>>> {
        let mode = self.mode(user_id);
        let funds = self.broker(mode).funds(user_id).await?;
        let data = Funds {
            availablecash: format!("{:.2}", funds.availablecash),
            collateral: format!("{:.2}", funds.collateral),
            m2mrealized: format!("{:.2}", funds.m2mrealized),
            m2munrealized: format!("{:.2}", funds.m2munrealized),
            utiliseddebits: format!("{:.2}", funds.utiliseddebits),
        };
        Ok(Reply::in_mode(Data { data }, mode))
    }
}
