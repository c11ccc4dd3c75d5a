//! The read models: orderbook, tradebook, positionbook, funds, orderstatus and openposition
//! of the user's current account (the sandbox's in analyzer mode).

use oa_events_core::number::Quantity;
use serde_json::{Value, json};

use super::{OrderService, Result, broker_error, format_timestamp, round2, with_mode};
use crate::engine::Order;
use crate::types::{AccountMode, Action, Exchange, OrderStatus, Product};

impl OrderService {
    pub(super) async fn open_quantity(
        &self,
        user_id: &str,
        mode: AccountMode,
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
}
