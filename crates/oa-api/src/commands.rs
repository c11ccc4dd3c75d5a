//! The order commands shared by the REST routes and in-process callers (the ESB consumer):
//! one place that reads a body into a typed command (same fields, same validation, same
//! error messages) and one that runs it on the [`OrderService`].
//!
//! REST: [`read_command`] with `apikey` allowed, then the key is checked, then
//! [`run_command`]. ESB: the same without `apikey`, for a user named by the envelope.

use serde_json::{Map, Value};

use crate::error::HttpError;
use crate::fields::Fields;
use crate::requests::{
    MODIFY_ORDER_FIELDS, ModifyRequest, PLACE_ORDER_FIELDS, PlaceOrder, SMART_ORDER_FIELDS,
    SmartOrder,
};
use crate::responses::{CommandBody, OrderId, Reply};
use crate::service::{ActionLog, OrderService};

type Result<T> = std::result::Result<T, HttpError>;

const STRATEGY_ONLY: &[&str] = &["apikey", "strategy"];
const ORDER_ID: &[&str] = &["apikey", "strategy", "orderid"];

/// An order action that both REST and the ESB accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// `placeorder` / `place_order`.
    PlaceOrder,
    /// `placesmartorder` / `place_smart_order`.
    PlaceSmartOrder,
    /// `modifyorder` / `modify_order`.
    ModifyOrder,
    /// `cancelorder` / `cancel_order`.
    CancelOrder,
    /// `cancelallorder` / `cancel_all_orders`.
    CancelAllOrders,
    /// `closeposition` / `close_position`.
    ClosePosition,
}

impl CommandKind {
    /// Every command.
    pub const ALL: [CommandKind; 6] = [
        CommandKind::PlaceOrder,
        CommandKind::PlaceSmartOrder,
        CommandKind::ModifyOrder,
        CommandKind::CancelOrder,
        CommandKind::CancelAllOrders,
        CommandKind::ClosePosition,
    ];

    /// The ESB `event_type` of this command.
    pub fn esb_name(self) -> &'static str {
        match self {
            CommandKind::PlaceOrder => "place_order",
            CommandKind::PlaceSmartOrder => "place_smart_order",
            CommandKind::ModifyOrder => "modify_order",
            CommandKind::CancelOrder => "cancel_order",
            CommandKind::CancelAllOrders => "cancel_all_orders",
            CommandKind::ClosePosition => "close_position",
        }
    }

    /// The REST endpoint of this command (`/api/v1/<name>`).
    pub fn rest_name(self) -> &'static str {
        match self {
            CommandKind::PlaceOrder => "placeorder",
            CommandKind::PlaceSmartOrder => "placesmartorder",
            CommandKind::ModifyOrder => "modifyorder",
            CommandKind::CancelOrder => "cancelorder",
            CommandKind::CancelAllOrders => "cancelallorder",
            CommandKind::ClosePosition => "closeposition",
        }
    }

    /// The command of an ESB `event_type`.
    pub fn from_esb_name(name: &str) -> Option<CommandKind> {
        CommandKind::ALL
            .into_iter()
            .find(|kind| kind.esb_name() == name)
    }

    /// The body fields the REST endpoint accepts (with `apikey`).
    pub fn rest_fields(self) -> &'static [&'static str] {
        match self {
            CommandKind::PlaceOrder => PLACE_ORDER_FIELDS,
            CommandKind::PlaceSmartOrder => SMART_ORDER_FIELDS,
            CommandKind::ModifyOrder => MODIFY_ORDER_FIELDS,
            CommandKind::CancelOrder => ORDER_ID,
            CommandKind::CancelAllOrders | CommandKind::ClosePosition => STRATEGY_ONLY,
        }
    }
}

/// A command read and validated, ready to run for a user.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// placeorder.
    Place(PlaceOrder),
    /// placesmartorder.
    Smart(SmartOrder),
    /// modifyorder.
    Modify(ModifyRequest),
    /// cancelorder.
    Cancel {
        /// The order to cancel.
        orderid: String,
    },
    /// cancelallorder.
    CancelAll,
    /// closeposition.
    Close {
        /// The strategy tag.
        strategy: String,
    },
}

/// Reads `body` as the command `kind`: unknown fields, then every field, with the REST
/// endpoint's messages. `with_apikey` allows the `apikey` field (REST); without it (ESB) an
/// `apikey` is an unknown field. Returns the fields too (for the key check and the log).
pub fn read_command(
    kind: CommandKind,
    body: Map<String, Value>,
    with_apikey: bool,
) -> Result<(OrderCommand, Fields)> {
    let fields = if with_apikey {
        Fields::new(body, kind.rest_fields())?
    } else {
        let allowed: Vec<&str> = kind
            .rest_fields()
            .iter()
            .copied()
            .filter(|name| *name != "apikey")
            .collect();
        Fields::new(body, &allowed)?
    };
    let command = match kind {
        CommandKind::PlaceOrder => OrderCommand::Place(PlaceOrder::read(&fields)?),
        CommandKind::PlaceSmartOrder => OrderCommand::Smart(SmartOrder::read(&fields)?),
        CommandKind::ModifyOrder => OrderCommand::Modify(ModifyRequest::read(&fields)?),
        CommandKind::CancelOrder => {
            fields.strategy()?;
            OrderCommand::Cancel {
                orderid: fields.required_string("orderid")?,
            }
        }
        CommandKind::CancelAllOrders => {
            fields.strategy()?;
            OrderCommand::CancelAll
        }
        CommandKind::ClosePosition => OrderCommand::Close {
            strategy: fields.strategy()?,
        },
    };
    Ok((command, fields))
}

/// Runs a command for `user_id`; `log` is the body without `apikey` (order log and
/// `analyzer_update`), with the idempotency claim of a keyed REST request. Returns the REST
/// response body (the ESB result's `response`).
pub async fn run_command(
    service: &OrderService,
    user_id: &str,
    command: OrderCommand,
    log: impl Into<ActionLog>,
) -> Result<Reply<CommandBody>> {
    let log = log.into();
    let order_id = |reply: Reply<OrderId>| reply.map(CommandBody::OrderId);
    match command {
        OrderCommand::Place(request) => service
            .place_order(user_id, request, log)
            .await
            .map(order_id),
        OrderCommand::Smart(request) => service.place_smart_order(user_id, request, log).await,
        OrderCommand::Modify(request) => service
            .modify_order(user_id, request, log)
            .await
            .map(order_id),
        OrderCommand::Cancel { orderid } => service
            .cancel_order(user_id, &orderid, log)
            .await
            .map(order_id),
        OrderCommand::CancelAll => service
            .cancel_all_orders(user_id, log)
            .await
            .map(|reply| reply.map(CommandBody::CancelAll)),
        OrderCommand::Close { strategy } => service
            .close_positions(user_id, &strategy, log)
            .await
            .map(|reply| reply.map(CommandBody::Closed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn esb_names_round_trip() {
        for kind in CommandKind::ALL {
            assert_eq!(CommandKind::from_esb_name(kind.esb_name()), Some(kind));
        }
        assert_eq!(CommandKind::from_esb_name("placeorder"), None);
    }

    #[test]
    fn without_apikey_an_apikey_is_an_unknown_field() {
        let body = object(json!({"apikey": "k", "strategy": "s"}));
        let error = read_command(CommandKind::CancelAllOrders, body.clone(), false).unwrap_err();
        assert_eq!(
            error.message,
            "apikey: unknown field; allowed fields: strategy"
        );
        assert!(read_command(CommandKind::CancelAllOrders, body, true).is_ok());
    }

    #[test]
    fn validation_errors_are_the_rest_ones() {
        let body = object(json!({"strategy": "s", "exchange": "NSE", "symbol": "SBIN",
            "action": "HOLD", "quantity": "1", "product": "MIS", "pricetype": "MARKET"}));
        let error = read_command(CommandKind::PlaceOrder, body, false).unwrap_err();
        assert!(error.message.starts_with("action"), "{}", error.message);
    }
}
