//! The WebSocket market-data protocol (docs/marketdata.md, "WebSocket protocol"): client requests and server
//! messages, as JSON. Sans-I/O: this module only parses and renders.

use oa_events_core::Envelope;
use serde_json::{Map, Value, json};

use oa_marketdata_core::tick::{InvalidMode, Tick, TickMode};

/// Error codes sent as `{"status":"error","code":...,"message":...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The API key is missing, unknown or revoked.
    AuthenticationError,
    /// A request that needs authentication arrived first.
    NotAuthenticated,
    /// `mode` is not 1/2/3 or LTP/Quote/Depth.
    InvalidMode,
    /// A required parameter is missing or of the wrong type.
    InvalidParameters,
    /// `action` is missing or unknown.
    InvalidAction,
    /// The frame is not a JSON object.
    InvalidJson,
    /// The user's subscription capacity is exhausted.
    MaxCapacityReached,
    /// The server could not process the request (for example the key store is down).
    ServerError,
    /// (ours) The instrument is not in the symbol master. Used in per-symbol results.
    SymbolNotFound,
    /// (ours) Too many login attempts from the client's address (`OA_LOGIN_RATE_LIMIT`).
    RateLimited,
    /// (ours) The user already has `MAX_WEBSOCKET_CONNECTIONS` authenticated connections.
    MaxConnectionsReached,
    /// (ours) The key this connection logged in with was rotated or revoked.
    KeyRevoked,
}

impl ErrorCode {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthenticationError => "AUTHENTICATION_ERROR",
            ErrorCode::NotAuthenticated => "NOT_AUTHENTICATED",
            ErrorCode::InvalidMode => "INVALID_MODE",
            ErrorCode::InvalidParameters => "INVALID_PARAMETERS",
            ErrorCode::InvalidAction => "INVALID_ACTION",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::MaxCapacityReached => "MAX_CAPACITY_REACHED",
            ErrorCode::ServerError => "SERVER_ERROR",
            ErrorCode::SymbolNotFound => "SYMBOL_NOT_FOUND",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::MaxConnectionsReached => "MAX_CONNECTIONS_REACHED",
            ErrorCode::KeyRevoked => "API_KEY_REVOKED",
        }
    }
}

/// A request that could not be accepted: becomes an error message.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    /// The code.
    pub code: ErrorCode,
    /// A message naming the field and the allowed values.
    pub message: String,
    /// The request's `request_id`, echoed when present.
    pub request_id: Option<Value>,
}

impl ProtocolError {
    /// An error without request id.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            request_id: None,
        }
    }

    /// The error echoing the request's `request_id` (when it had one).
    pub fn with_request_id(mut self, request_id: &Option<Value>) -> Self {
        self.request_id.clone_from(request_id);
        self
    }

    /// `{"status":"error","code":...,"message":...}` (+ `request_id` when the request had one).
    pub fn to_json(&self) -> String {
        let mut object = Map::new();
        object.insert("status".into(), "error".into());
        object.insert("code".into(), self.code.as_str().into());
        object.insert("message".into(), self.message.clone().into());
        if let Some(request_id) = &self.request_id {
            object.insert("request_id".into(), request_id.clone());
        }
        Value::Object(object).to_string()
    }
}

/// One instrument named in a request, as received (validated by the hub).
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolRef {
    /// `symbol`, trimmed.
    pub symbol: Option<String>,
    /// `exchange`, trimmed and upper-cased.
    pub exchange: Option<String>,
    /// Per-symbol `mode` (unsubscribe only; missing means Quote).
    pub mode: Result<TickMode, InvalidMode>,
}

/// A parsed client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `authenticate` / `auth`.
    Authenticate {
        /// `api_key` or `apikey`.
        api_key: Option<String>,
    },
    /// `subscribe`.
    Subscribe {
        /// The instruments.
        symbols: Vec<SymbolRef>,
        /// The mode (default Quote).
        mode: TickMode,
        /// Requested depth levels (default 5), echoed.
        depth: u64,
        /// Echoed.
        request_id: Option<Value>,
    },
    /// `unsubscribe`.
    Unsubscribe {
        /// The instruments with their modes.
        symbols: Vec<SymbolRef>,
        /// Echoed.
        request_id: Option<Value>,
    },
    /// `unsubscribe_all`.
    UnsubscribeAll {
        /// Echoed.
        request_id: Option<Value>,
    },
    /// `subscribe_orders`.
    SubscribeOrders {
        /// Echoed.
        request_id: Option<Value>,
    },
    /// `unsubscribe_orders`.
    UnsubscribeOrders {
        /// Echoed.
        request_id: Option<Value>,
    },
    /// `get_broker_info`: the authenticated user's broker.
    GetBrokerInfo,
    /// `get_supported_brokers` (no authentication needed, as upstream).
    GetSupportedBrokers,
    /// `ping`.
    Ping {
        /// `timestamp`, echoed as `client_timestamp`.
        timestamp: Option<Value>,
        /// `_pingId`, echoed.
        ping_id: Option<Value>,
    },
}

/// The actions this server understands, for error messages.
pub const ACTIONS: &str = "authenticate, subscribe, unsubscribe, unsubscribe_all, subscribe_orders, unsubscribe_orders, get_broker_info, get_supported_brokers, ping";

fn text_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    match object.get(key) {
        Some(Value::String(text)) => Some(text.trim().to_string()).filter(|t| !t.is_empty()),
        Some(Value::Number(number)) => Some(number.to_string()),
        _ => None,
    }
}

fn symbol_ref(object: &Map<String, Value>, default_mode: TickMode) -> SymbolRef {
    SymbolRef {
        symbol: text_field(object, "symbol"),
        exchange: text_field(object, "exchange").map(|e| e.to_ascii_uppercase()),
        mode: match object.get("mode") {
            None | Some(Value::Null) => Ok(default_mode),
            Some(value) => TickMode::from_json(value),
        },
    }
}

/// The request's `mode`, Quote (2) when missing.
fn request_mode(
    object: &Map<String, Value>,
    request_id: &Option<Value>,
) -> Result<TickMode, ProtocolError> {
    match object.get("mode") {
        None | Some(Value::Null) => Ok(TickMode::Quote),
        Some(value) => TickMode::from_json(value).map_err(|error| {
            ProtocolError::new(ErrorCode::InvalidMode, error.to_string())
                .with_request_id(request_id)
        }),
    }
}

/// `symbols` as a non-empty list, or the single top-level `symbol`/`exchange` form; without
/// either, an error saying `when_empty`.
fn symbol_refs(
    object: &Map<String, Value>,
    default_mode: TickMode,
    request_id: &Option<Value>,
    when_empty: &str,
) -> Result<Vec<SymbolRef>, ProtocolError> {
    match object.get("symbols") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::Object(entry) => Ok(symbol_ref(entry, default_mode)),
                _ => Err(ProtocolError::new(
                    ErrorCode::InvalidParameters,
                    "each entry of symbols must be an object {\"symbol\":...,\"exchange\":...}",
                )
                .with_request_id(request_id)),
            })
            .collect(),
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            if object.contains_key("symbol") || object.contains_key("exchange") {
                Ok(vec![symbol_ref(object, default_mode)])
            } else {
                Err(ProtocolError::new(ErrorCode::InvalidParameters, when_empty)
                    .with_request_id(request_id))
            }
        }
        Some(_) => Err(ProtocolError::new(
            ErrorCode::InvalidParameters,
            "symbols must be a list of {\"symbol\":...,\"exchange\":...}",
        )
        .with_request_id(request_id)),
    }
}

/// Parses one text frame.
pub fn parse_request(text: &str) -> Result<Request, ProtocolError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|_| ProtocolError::new(ErrorCode::InvalidJson, "Invalid JSON message"))?;
    let Value::Object(object) = value else {
        return Err(ProtocolError::new(
            ErrorCode::InvalidJson,
            "Invalid JSON message: expected an object with an \"action\"",
        ));
    };
    let request_id = object.get("request_id").cloned();
    let action = match object.get("action").or_else(|| object.get("type")) {
        Some(Value::String(action)) => action.trim().to_ascii_lowercase(),
        Some(other) => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidAction,
                format!("Invalid action: {other} (expected one of {ACTIONS})"),
            )
            .with_request_id(&request_id));
        }
        None => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidAction,
                format!("Missing action (expected one of {ACTIONS})"),
            )
            .with_request_id(&request_id));
        }
    };
    match action.as_str() {
        "authenticate" | "auth" => Ok(Request::Authenticate {
            api_key: text_field(&object, "api_key").or_else(|| text_field(&object, "apikey")),
        }),
        "subscribe" => {
            let mode = request_mode(&object, &request_id)?;
            let depth = match object.get("depth") {
                None | Some(Value::Null) => 5,
                Some(value) => value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| {
                        ProtocolError::new(
                            ErrorCode::InvalidParameters,
                            format!("depth must be a positive integer such as 5, got {value}"),
                        )
                        .with_request_id(&request_id)
                    })?,
            };
            let symbols = symbol_refs(
                &object,
                mode,
                &request_id,
                "At least one symbol must be specified",
            )?;
            Ok(Request::Subscribe {
                symbols,
                mode,
                depth,
                request_id,
            })
        }
        "unsubscribe" => {
            // Missing mode means Quote (2), per symbol and in the single form.
            let default_mode = request_mode(&object, &request_id)?;
            let symbols = symbol_refs(
                &object,
                default_mode,
                &request_id,
                "Either symbols or unsubscribe_all is required",
            )?;
            Ok(Request::Unsubscribe {
                symbols,
                request_id,
            })
        }
        "unsubscribe_all" => Ok(Request::UnsubscribeAll { request_id }),
        "subscribe_orders" => Ok(Request::SubscribeOrders { request_id }),
        "unsubscribe_orders" => Ok(Request::UnsubscribeOrders { request_id }),
        "get_broker_info" => Ok(Request::GetBrokerInfo),
        "get_supported_brokers" => Ok(Request::GetSupportedBrokers),
        "ping" => Ok(Request::Ping {
            timestamp: object.get("timestamp").cloned(),
            ping_id: object.get("_pingId").cloned(),
        }),
        other => Err(ProtocolError::new(
            ErrorCode::InvalidAction,
            format!("Invalid action: {other} (expected one of {ACTIONS})"),
        )
        .with_request_id(&request_id)),
    }
}

/// `{"type":"auth","status":"success",...}`.
pub fn auth_success(broker: &str, user_id: &str) -> String {
    json!({
        "type": "auth",
        "status": "success",
        "message": "Authentication successful",
        "broker": broker,
        "user_id": user_id,
        "supported_features": {"ltp": true, "quote": true, "depth": true},
    })
    .to_string()
}

/// The reply to `get_broker_info` (upstream websocket_proxy/server.py `get_broker_info`):
/// the feed is in-process, so its adapter is always `connected`.
pub fn broker_info(broker: &str, user_id: &str) -> String {
    json!({
        "type": "broker_info",
        "status": "success",
        "broker": broker,
        "adapter_status": "connected",
        "user_id": user_id,
    })
    .to_string()
}

/// The reply to `get_supported_brokers` (upstream `get_supported_brokers`, which lists
/// `VALID_BROKERS`): the brokers this server serves.
pub fn supported_brokers(brokers: &[&str]) -> String {
    json!({
        "type": "supported_brokers",
        "status": "success",
        "brokers": brokers,
        "count": brokers.len(),
    })
    .to_string()
}

/// `{"type":"pong",...}`.
pub fn pong(
    server_timestamp: i64,
    client_timestamp: &Option<Value>,
    ping_id: &Option<Value>,
) -> String {
    let mut object = Map::new();
    object.insert("type".into(), "pong".into());
    object.insert("status".into(), "success".into());
    object.insert("server_timestamp".into(), server_timestamp.into());
    if let Some(timestamp) = client_timestamp {
        object.insert("client_timestamp".into(), timestamp.clone());
    }
    if let Some(ping_id) = ping_id {
        object.insert("_pingId".into(), ping_id.clone());
    }
    Value::Object(object).to_string()
}

/// Adds `request_id` to a response object when the request had one.
fn with_request_id(mut response: Value, request_id: &Option<Value>) -> String {
    if let (Some(request_id), Value::Object(object)) = (request_id, &mut response) {
        object.insert("request_id".into(), request_id.clone());
    }
    response.to_string()
}

/// A per-symbol result of `subscribe`: subscribed.
pub fn subscribed(exchange: &str, symbol: &str, mode: TickMode, depth: u64, broker: &str) -> Value {
    json!({
        "symbol": symbol,
        "exchange": exchange,
        "status": "success",
        "mode": mode.label(),
        "depth": depth,
        "broker": broker,
    })
}

/// A per-symbol result of `subscribe` or `unsubscribe`: refused, with the symbol and
/// exchange as received (null when missing).
pub fn symbol_failed(
    symbol: &Option<String>,
    exchange: &Option<String>,
    code: ErrorCode,
    message: &str,
    broker: &str,
) -> Value {
    json!({"symbol": symbol, "exchange": exchange, "status": "error", "code": code.as_str(), "message": message, "broker": broker})
}

/// A per-symbol result of `unsubscribe` / `unsubscribe_all`: unsubscribed (also when it was
/// not subscribed, as upstream's `unsubscribe_client` answers).
pub fn unsubscribed(exchange: &str, symbol: &str, mode: TickMode, broker: &str) -> Value {
    json!({"symbol": symbol, "exchange": exchange, "mode": mode.label(), "status": "success", "broker": broker})
}

/// The reply to `subscribe`: `partial` when any symbol failed.
pub fn subscribe_reply(
    results: Vec<Value>,
    any_failed: bool,
    broker: &str,
    request_id: &Option<Value>,
) -> String {
    with_request_id(
        json!({
            "type": "subscribe",
            "status": if any_failed { "partial" } else { "success" },
            "subscriptions": results,
            "message": "Subscription processing complete",
            "broker": broker,
        }),
        request_id,
    )
}

/// The reply to `unsubscribe` and `unsubscribe_all`: `success` when nothing failed, `error`
/// when nothing succeeded, `partial` otherwise.
pub fn unsubscribe_reply(
    successful: Vec<Value>,
    failed: Vec<Value>,
    broker: &str,
    request_id: &Option<Value>,
) -> String {
    let status = match (successful.is_empty(), failed.is_empty()) {
        (_, true) => "success",
        (false, false) => "partial",
        (true, false) => "error",
    };
    with_request_id(
        json!({
            "type": "unsubscribe",
            "status": status,
            "message": "Unsubscription processing complete",
            "successful": successful,
            "failed": failed,
            "broker": broker,
        }),
        request_id,
    )
}

/// The reply to `subscribe_orders`.
pub fn subscribe_orders_reply(user_id: &str, broker: &str, request_id: &Option<Value>) -> String {
    with_request_id(
        json!({"type": "subscribe_orders", "status": "success", "message": "Subscribed to order updates", "user_id": user_id, "broker": broker}),
        request_id,
    )
}

/// The reply to `unsubscribe_orders`.
pub fn unsubscribe_orders_reply(broker: &str, request_id: &Option<Value>) -> String {
    with_request_id(
        json!({"type": "unsubscribe_orders", "status": "success", "message": "Unsubscribed from order updates", "broker": broker}),
        request_id,
    )
}

/// `{"type":"order_update", ...the event's fields..., "user_id":...}` for an `order_update`
/// envelope.
pub fn order_update(envelope: &Envelope) -> String {
    let mut object = Map::new();
    object.insert("type".into(), "order_update".into());
    if let Ok(Value::Object(fields)) = serde_json::to_value(&envelope.data) {
        object.extend(fields);
    }
    object.insert("user_id".into(), envelope.user_id.clone().into());
    Value::Object(object).to_string()
}

/// `{"type":"market_data","symbol":...,"exchange":...,"mode":m,"data":{...},"broker":...}`
/// with the tick rendered at `mode` (fields above it left out, `mode` rewritten) and the
/// adapter's keys the tick model lacks passed through in `data` ([`Tick::extra`]). Written
/// into one buffer that becomes the message without a copy.
pub fn market_data(tick: &Tick, mode: TickMode, broker: &str) -> String {
    let mode = mode.min(tick.mode);
    let mut out = Vec::with_capacity(320);
    // Writing strings and numbers into a Vec cannot fail.
    out.extend_from_slice(br#"{"type":"market_data","symbol":"#);
    let _ = serde_json::to_writer(&mut out, &tick.symbol);
    out.extend_from_slice(br#","exchange":"#);
    let _ = serde_json::to_writer(&mut out, &tick.exchange);
    out.extend_from_slice(br#","mode":"#);
    out.push(b'0' + mode.code());
    out.extend_from_slice(br#","data":"#);
    tick.write_payload(&mut out, mode);
    out.extend_from_slice(br#","broker":"#);
    let _ = serde_json::to_writer(&mut out, broker);
    out.push(b'}');
    // Only JSON text was written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action_and_alias() {
        assert_eq!(
            parse_request(r#"{"action":"authenticate","api_key":"k"}"#).unwrap(),
            Request::Authenticate {
                api_key: Some("k".into())
            }
        );
        assert_eq!(
            parse_request(r#"{"type":"auth","apikey":"k"}"#).unwrap(),
            Request::Authenticate {
                api_key: Some("k".into())
            }
        );
        let Request::Subscribe {
            symbols,
            mode,
            depth,
            request_id,
        } = parse_request(
            r#"{"action":"subscribe","symbols":[{"symbol":"SBIN","exchange":"nse"}],"mode":"depth","request_id":7}"#,
        )
        .unwrap()
        else {
            panic!("not a subscribe")
        };
        assert_eq!(mode, TickMode::Depth);
        assert_eq!(depth, 5);
        assert_eq!(request_id, Some(json!(7)));
        assert_eq!(symbols[0].exchange.as_deref(), Some("NSE"));
        let Request::Subscribe { symbols, mode, .. } = parse_request(
            r#"{"action":"subscribe","symbol":"SBIN","exchange":"NSE","mode":1,"depth":5}"#,
        )
        .unwrap() else {
            panic!("not a subscribe")
        };
        assert_eq!((symbols.len(), mode), (1, TickMode::Ltp));
        let Request::Unsubscribe { symbols, .. } = parse_request(
            r#"{"action":"unsubscribe","symbols":[{"symbol":"A","exchange":"NSE"},{"symbol":"B","exchange":"NSE","mode":"LTP"}]}"#,
        )
        .unwrap()
        else {
            panic!("not an unsubscribe")
        };
        assert_eq!(symbols[0].mode, Ok(TickMode::Quote));
        assert_eq!(symbols[1].mode, Ok(TickMode::Ltp));
        assert!(matches!(
            parse_request(r#"{"action":"unsubscribe_all"}"#).unwrap(),
            Request::UnsubscribeAll { .. }
        ));
        assert!(matches!(
            parse_request(r#"{"action":"subscribe_orders"}"#).unwrap(),
            Request::SubscribeOrders { .. }
        ));
        assert!(matches!(
            parse_request(r#"{"action":"ping","timestamp":1}"#).unwrap(),
            Request::Ping { .. }
        ));
    }

    #[test]
    fn errors_carry_the_spec_codes() {
        let code = |text: &str| parse_request(text).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"action":"dance"}"#), ErrorCode::InvalidAction);
        assert_eq!(code(r#"{"symbol":"X"}"#), ErrorCode::InvalidAction);
        assert_eq!(
            code(r#"{"action":"subscribe","symbol":"X","exchange":"NSE","mode":7}"#),
            ErrorCode::InvalidMode
        );
        assert_eq!(
            code(r#"{"action":"subscribe","mode":1}"#),
            ErrorCode::InvalidParameters
        );
        assert_eq!(
            code(r#"{"action":"unsubscribe"}"#),
            ErrorCode::InvalidParameters
        );
        assert_eq!(
            code(r#"{"action":"unsubscribe","symbol":"X","exchange":"NSE","mode":7}"#),
            ErrorCode::InvalidMode
        );
        let error =
            parse_request(r#"{"action":"unsubscribe","symbols":[],"request_id":2}"#).unwrap_err();
        assert_eq!(
            (error.message.as_str(), error.request_id),
            (
                "Either symbols or unsubscribe_all is required",
                Some(json!(2))
            )
        );
        let error = parse_request(r#"{"action":"subscribe","request_id":3}"#).unwrap_err();
        assert_eq!(
            (error.message.as_str(), error.request_id),
            ("At least one symbol must be specified", Some(json!(3)))
        );
        let error =
            parse_request(r#"{"action":"subscribe","mode":"full","request_id":"r1"}"#).unwrap_err();
        let json: Value = serde_json::from_str(&error.to_json()).unwrap();
        assert_eq!(json["status"], "error");
        assert_eq!(json["code"], "INVALID_MODE");
        assert_eq!(json["request_id"], "r1");
        assert!(json.get("type").is_none());
    }

    #[test]
    fn market_data_rewrites_mode_and_trims_fields() {
        let mut tick = Tick::ltp("NSE", "SBIN", 812.5);
        tick.mode = TickMode::Depth;
        tick.quote = Some(Default::default());
        tick.depth = Some(Default::default());
        let ltp: Value = serde_json::from_str(&market_data(&tick, TickMode::Ltp, "sim")).unwrap();
        assert_eq!(ltp["type"], "market_data");
        assert_eq!(ltp["mode"], 1);
        assert_eq!(ltp["data"]["mode"], 1);
        assert_eq!(ltp["data"]["ltp"], 812.5);
        assert!(ltp["data"].get("open").is_none());
        assert_eq!(ltp["broker"], "sim");
        let depth: Value =
            serde_json::from_str(&market_data(&tick, TickMode::Depth, "sim")).unwrap();
        assert_eq!(depth["mode"], 3);
        assert!(depth["data"]["depth"]["buy"].is_array());
    }
}
