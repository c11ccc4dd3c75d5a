//! The event catalog: every order event and notification oa publishes.
//!
//! Each struct is one event; its fields are the exact payload keys OpenAlgo clients read
//! (docs/events.md), in upstream order. Optional keys that only some emissions carry
//! (batch summaries, download statistics) are omitted from the JSON when absent, as upstream
//! omits them. The same object is the Socket.IO payload and the Kafka envelope's `data`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::number::Quantity;

/// Who receives an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Only the named user's clients.
    User(&'a str),
    /// Every authenticated client (system-wide events).
    Everyone,
}

/// Implemented by every catalog struct: its wire name and whether it is system-wide.
pub trait CatalogEvent: Serialize + Into<EventPayload> {
    /// The event name on Socket.IO and the envelope's `event_type` on Kafka.
    const NAME: &'static str;
    /// True when the event concerns everyone rather than one user.
    const SYSTEM_WIDE: bool = false;
}

/// The keys upstream adds to the one summary event of a batch (basket, split, cancel-all,
/// options multi-order); both absent on the event of a single order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BatchSummary {
    /// Present (`true`) on the summary event of a basket, split, cancel-all or options
    /// multi-order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_order: Option<bool>,
    /// Present (`true`) on the same summary events: the batch emits nothing after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_last_order: Option<bool>,
}

impl BatchSummary {
    /// The keys of a single order's event: none.
    pub const NONE: BatchSummary = BatchSummary {
        batch_order: None,
        is_last_order: None,
    };

    /// The keys of a batch's summary event: both `true`.
    pub const LAST: BatchSummary = BatchSummary {
        batch_order: Some(true),
        is_last_order: Some(true),
    };
}

/// `order_event`: an order was placed in live mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderEvent {
    pub symbol: String,
    /// BUY or SELL.
    pub action: String,
    pub orderid: String,
    pub exchange: String,
    /// MARKET, LIMIT, SL or SL-M.
    pub price_type: String,
    /// MIS, NRML or CNC.
    pub product_type: String,
    /// Always "live": analyzer-mode actions emit `analyzer_update` instead.
    pub mode: String,
    /// Set on the summary event of a basket, split or options multi-order.
    #[serde(flatten)]
    pub batch: BatchSummary,
    /// `true` on the summary event of an options multi-order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiorder_summary: Option<bool>,
    /// Legs placed, on the summary event of an options multi-order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_legs: Option<u64>,
    /// Legs that failed, on the summary event of an options multi-order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_legs: Option<u64>,
}

impl OrderEvent {
    /// A live 1-lot MIS market order of NSE:SBIN: the sample event of the examples, tests and
    /// benchmarks. `action` is BUY or SELL.
    pub fn sbin_market(action: impl Into<String>, orderid: impl Into<String>) -> OrderEvent {
        OrderEvent {
            symbol: "SBIN".into(),
            action: action.into(),
            orderid: orderid.into(),
            exchange: "NSE".into(),
            price_type: "MARKET".into(),
            product_type: "MIS".into(),
            mode: "live".into(),
            batch: BatchSummary::NONE,
            multiorder_summary: None,
            successful_legs: None,
            failed_legs: None,
        }
    }
}

/// `modify_order_event`: an order was modified in live mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModifyOrderEvent {
    /// "success" or "error".
    pub status: String,
    pub orderid: String,
    pub mode: String,
}

/// `cancel_order_event`: an order (or, with the batch keys, all orders) was cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CancelOrderEvent {
    /// "success" or "error".
    pub status: String,
    pub orderid: String,
    pub mode: String,
    /// Set on the cancel-all summary.
    #[serde(flatten)]
    pub batch: BatchSummary,
    /// Present on the cancel-all summary: orders cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_count: Option<u64>,
    /// Present on the cancel-all summary: orders that could not be cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_count: Option<u64>,
}

/// `close_position_event`: all open positions were squared off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClosePositionEvent {
    pub status: String,
    pub message: String,
    pub mode: String,
}

/// `order_notification`: information that is not an order change (for example a smart order
/// whose position already matches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderNotification {
    pub symbol: String,
    /// "info".
    pub status: String,
    pub message: String,
}

impl OrderNotification {
    /// An informational notification about `symbol`.
    pub fn info(symbol: impl Into<String>, message: impl Into<String>) -> Self {
        OrderNotification {
            symbol: symbol.into(),
            status: "info".to_string(),
            message: message.into(),
        }
    }
}

/// `analyzer_update`: an action taken in analyzer (sandbox) mode, with its request and
/// response. Replaces the live event name for that action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AnalyzerUpdate {
    /// The API request without `apikey`, plus `api_type` (such as "placeorder").
    pub request: serde_json::Value,
    /// The API response body.
    pub response: serde_json::Value,
}

/// `order_update`: an order's status changed (fill, rejection, cancellation, trigger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderUpdate {
    /// "live" or "analyze".
    pub mode: String,
    /// "sandbox" in analyzer mode, else the live broker's name.
    pub broker: String,
    pub orderid: String,
    pub symbol: String,
    pub exchange: String,
    pub action: String,
    pub quantity: Quantity,
    pub price: f64,
    pub trigger_price: f64,
    pub pricetype: String,
    pub product: String,
    /// open, trigger pending, complete, rejected or cancelled.
    pub order_status: String,
    pub filled_quantity: Quantity,
    pub pending_quantity: Quantity,
    pub average_price: f64,
    /// Empty unless the order was rejected.
    pub rejection_reason: String,
}

impl OrderUpdate {
    /// A sandbox MARKET BUY of 10 SBIN on NSE (MIS), complete at 812.5, order id "1": a
    /// starting point for documentation, examples and tests, which change what they need with
    /// struct update syntax (`OrderUpdate { orderid: "7".into(), ..OrderUpdate::example() }`).
    pub fn example() -> Self {
        OrderUpdate {
            mode: "analyze".into(),
            broker: "sandbox".into(),
            orderid: "1".into(),
            symbol: "SBIN".into(),
            exchange: "NSE".into(),
            action: "BUY".into(),
            quantity: Quantity(10.0),
            price: 0.0,
            trigger_price: 0.0,
            pricetype: "MARKET".into(),
            product: "MIS".into(),
            order_status: "complete".into(),
            filled_quantity: Quantity(10.0),
            pending_quantity: Quantity(0.0),
            average_price: 812.5,
            rejection_reason: String::new(),
        }
    }
}

/// `master_contract_download`: the symbol master finished loading (system-wide).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MasterContractDownload {
    pub broker: String,
    /// "success" or "error".
    pub status: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbols_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_time_seconds: Option<f64>,
}

/// `password_change`: a user's credentials (here: API key) changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PasswordChange {
    pub user: String,
    pub status: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl PasswordChange {
    /// A successful change of `user`'s credentials described by `message` (such as "API key
    /// revoked"), with no client address or agent.
    pub fn success(user: impl Into<String>, message: impl Into<String>) -> Self {
        PasswordChange {
            user: user.into(),
            status: "success".to_string(),
            message: message.into(),
            ip_address: None,
            user_agent: None,
        }
    }
}

/// The commands an external system may send on the inbound ESB topic (the envelope's
/// `event_type`); each one's `data` is the body of the REST endpoint of the same action
/// without `apikey`.
pub const ESB_COMMANDS: &[&str] = &[
    "place_order",
    "place_smart_order",
    "modify_order",
    "cancel_order",
    "cancel_all_orders",
    "close_position",
];

/// The inbound `event_type` by which an external system acknowledges an order event; it is
/// recorded and has no effect on orders.
pub const ESB_ACKNOWLEDGMENT: &str = "order_acknowledgment";

/// `esb_command_result`: the outcome of a command an external system (ESB) sent on the
/// inbound Kafka topic (docs/esb.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EsbCommandResult {
    /// The `id` of the command's envelope.
    pub correlation_id: String,
    /// The command (`place_order`, `place_smart_order`, `modify_order`, `cancel_order`,
    /// `cancel_all_orders` or `close_position`).
    pub command: String,
    /// "success" or "error".
    pub status: String,
    /// The body the matching REST endpoint returns (or its error body).
    pub response: serde_json::Value,
}

/// Declares the closed set of catalog events once: the enum, its name table and conversions.
macro_rules! catalog {
    ($( $variant:ident($ty:ty) = $name:literal $(, system_wide = $system:literal)? ;)+) => {
        $(
            impl CatalogEvent for $ty {
                const NAME: &'static str = $name;
                $(const SYSTEM_WIDE: bool = $system;)?
            }

            impl From<$ty> for EventPayload {
                fn from(event: $ty) -> Self {
                    EventPayload::$variant(event)
                }
            }
        )+

        /// Any catalog event. Serialises as the bare payload object (no tag): the event name
        /// travels beside it (Socket.IO event name, envelope `event_type`).
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum EventPayload {
            $( #[doc = concat!("`", $name, "`")] $variant($ty), )+
        }

        impl EventPayload {
            /// Every event name of the catalog, in documentation order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// True when events of this wire name go to everyone rather than one user.
            pub fn is_system_wide_name(name: &str) -> bool {
                $( (name == $name && <$ty as CatalogEvent>::SYSTEM_WIDE) )||+
            }

            /// The wire name of this event.
            pub fn name(&self) -> &'static str {
                match self {
                    $( EventPayload::$variant(_) => <$ty as CatalogEvent>::NAME, )+
                }
            }

            /// True when the event goes to everyone rather than one user.
            pub fn is_system_wide(&self) -> bool {
                match self {
                    $( EventPayload::$variant(_) => <$ty as CatalogEvent>::SYSTEM_WIDE, )+
                }
            }

            /// Rebuilds a payload from its wire name and JSON object.
            pub fn from_json(name: &str, data: serde_json::Value) -> Result<Self, UnknownEvent> {
                match name {
                    $( $name => serde_json::from_value::<$ty>(data)
                        .map(EventPayload::$variant)
                        .map_err(|source| UnknownEvent::BadPayload { name: name.to_string(), reason: source.to_string() }), )+
                    _ => Err(UnknownEvent::UnknownName { name: name.to_string() }),
                }
            }

            /// The JSON Schema of each event's payload, by name, for code generation.
            pub fn schemas(generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![ $( ($name, generator.subschema_for::<$ty>()), )+ ]
            }
        }
    };
}

catalog! {
    OrderEvent(OrderEvent) = "order_event";
    ModifyOrderEvent(ModifyOrderEvent) = "modify_order_event";
    CancelOrderEvent(CancelOrderEvent) = "cancel_order_event";
    ClosePositionEvent(ClosePositionEvent) = "close_position_event";
    OrderNotification(OrderNotification) = "order_notification";
    AnalyzerUpdate(AnalyzerUpdate) = "analyzer_update";
    OrderUpdate(OrderUpdate) = "order_update";
    MasterContractDownload(MasterContractDownload) = "master_contract_download", system_wide = true;
    PasswordChange(PasswordChange) = "password_change";
    EsbCommandResult(EsbCommandResult) = "esb_command_result";
}

/// A payload that could not be rebuilt from its name and JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownEvent {
    /// The name is not in the catalog.
    #[error("unknown event type {name:?}; known types: {}", EventPayload::NAMES.join(", "))]
    UnknownName { name: String },
    /// The name is known but the object does not match its payload.
    #[error("invalid {name} payload: {reason}")]
    BadPayload { name: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to_json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn order_event_golden() {
        let event = OrderEvent {
            symbol: "SBIN".into(),
            action: "BUY".into(),
            orderid: "25012900000001".into(),
            exchange: "NSE".into(),
            price_type: "MARKET".into(),
            product_type: "MIS".into(),
            mode: "live".into(),
            batch: BatchSummary::NONE,
            multiorder_summary: None,
            successful_legs: None,
            failed_legs: None,
        };
        assert_eq!(
            to_json(&event),
            r#"{"symbol":"SBIN","action":"BUY","orderid":"25012900000001","exchange":"NSE","price_type":"MARKET","product_type":"MIS","mode":"live"}"#
        );
        let batch = OrderEvent {
            batch: BatchSummary::LAST,
            ..event.clone()
        };
        assert!(
            to_json(&batch).ends_with(r#""mode":"live","batch_order":true,"is_last_order":true}"#)
        );
        // upstream subscribers/socketio_subscriber.py `on_multiorder_completed`.
        let multi = OrderEvent {
            batch: BatchSummary::LAST,
            multiorder_summary: Some(true),
            successful_legs: Some(3),
            failed_legs: Some(1),
            ..event
        };
        assert!(to_json(&multi).ends_with(
            r#""batch_order":true,"is_last_order":true,"multiorder_summary":true,"successful_legs":3,"failed_legs":1}"#
        ));
    }

    #[test]
    fn modify_order_event_golden() {
        let event = ModifyOrderEvent {
            status: "success".into(),
            orderid: "42".into(),
            mode: "live".into(),
        };
        assert_eq!(
            to_json(&event),
            r#"{"status":"success","orderid":"42","mode":"live"}"#
        );
    }

    #[test]
    fn cancel_order_event_golden_single_and_batch() {
        let single = CancelOrderEvent {
            status: "success".into(),
            orderid: "42".into(),
            mode: "live".into(),
            batch: BatchSummary::NONE,
            canceled_count: None,
            failed_count: None,
        };
        assert_eq!(
            to_json(&single),
            r#"{"status":"success","orderid":"42","mode":"live"}"#
        );
        let batch = CancelOrderEvent {
            orderid: "".into(),
            batch: BatchSummary::LAST,
            canceled_count: Some(3),
            failed_count: Some(0),
            ..single
        };
        assert_eq!(
            to_json(&batch),
            r#"{"status":"success","orderid":"","mode":"live","batch_order":true,"is_last_order":true,"canceled_count":3,"failed_count":0}"#
        );
    }

    #[test]
    fn close_position_event_golden() {
        let event = ClosePositionEvent {
            status: "success".into(),
            message: "All Open Positions Squared Off".into(),
            mode: "live".into(),
        };
        assert_eq!(
            to_json(&event),
            r#"{"status":"success","message":"All Open Positions Squared Off","mode":"live"}"#
        );
    }

    #[test]
    fn order_notification_golden() {
        let event = OrderNotification::info("SBIN", "Positions Already Matched. No Action needed.");
        assert_eq!(
            to_json(&event),
            r#"{"symbol":"SBIN","status":"info","message":"Positions Already Matched. No Action needed."}"#
        );
    }

    #[test]
    fn analyzer_update_golden() {
        let event = AnalyzerUpdate {
            request: json!({"symbol":"SBIN","api_type":"placeorder"}),
            response: json!({"status":"success","orderid":"1","mode":"analyze"}),
        };
        // serde_json is built with preserve_order: keys keep the order they were written in.
        assert_eq!(
            to_json(&event),
            r#"{"request":{"symbol":"SBIN","api_type":"placeorder"},"response":{"status":"success","orderid":"1","mode":"analyze"}}"#
        );
    }

    #[test]
    fn order_update_golden() {
        let event = OrderUpdate {
            orderid: "7".into(),
            symbol: "INFY".into(),
            action: "SELL".into(),
            average_price: 1500.5,
            ..OrderUpdate::example()
        };
        assert_eq!(
            to_json(&event),
            r#"{"mode":"analyze","broker":"sandbox","orderid":"7","symbol":"INFY","exchange":"NSE","action":"SELL","quantity":10,"price":0.0,"trigger_price":0.0,"pricetype":"MARKET","product":"MIS","order_status":"complete","filled_quantity":10,"pending_quantity":0,"average_price":1500.5,"rejection_reason":""}"#
        );
    }

    #[test]
    fn master_contract_download_golden() {
        let event = MasterContractDownload {
            broker: "simulator".into(),
            status: "success".into(),
            message: "Loaded 12 symbols".into(),
            symbols_count: Some(12),
            download_time_seconds: Some(0.25),
        };
        assert_eq!(
            to_json(&event),
            r#"{"broker":"simulator","status":"success","message":"Loaded 12 symbols","symbols_count":12,"download_time_seconds":0.25}"#
        );
    }

    #[test]
    fn password_change_golden() {
        let event = PasswordChange {
            user: "user123".into(),
            status: "success".into(),
            message: "API key rotated".into(),
            ip_address: None,
            user_agent: None,
        };
        assert_eq!(
            to_json(&event),
            r#"{"user":"user123","status":"success","message":"API key rotated"}"#
        );
    }

    #[test]
    fn names_and_audiences() {
        assert_eq!(EventPayload::NAMES.len(), 10);
        let system: EventPayload = MasterContractDownload {
            broker: "b".into(),
            status: "success".into(),
            message: "m".into(),
            symbols_count: None,
            download_time_seconds: None,
        }
        .into();
        assert!(system.is_system_wide());
        assert_eq!(system.name(), "master_contract_download");
        let user: EventPayload = OrderNotification::info("X", "y").into();
        assert!(!user.is_system_wide());
    }

    #[test]
    fn payload_rebuilds_from_name_and_json() {
        let original: EventPayload = OrderNotification::info("SBIN", "hello").into();
        let json = serde_json::to_value(&original).unwrap();
        assert_eq!(
            EventPayload::from_json("order_notification", json).unwrap(),
            original
        );
        let unknown = EventPayload::from_json("nope", json!({})).unwrap_err();
        assert!(unknown.to_string().contains("order_event"));
        let bad = EventPayload::from_json("order_notification", json!({"symbol": 1})).unwrap_err();
        assert!(matches!(bad, UnknownEvent::BadPayload { .. }));
    }
}
