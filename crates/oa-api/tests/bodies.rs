//! Every REST response body byte for byte: key order, number formatting and the `mode` key of
//! analyzer mode, for each endpoint's success and error shapes, and the `esb_command_result`
//! the ESB path publishes. The transcripts in `tests/golden/` were recorded from the server and
//! pin the wire format against refactoring; order ids and timestamps are replaced by
//! placeholders (`<ID1>`, `<TS>`) because they depend on the date.
//!
//! A deliberate change of the wire format: `OA_GOLDEN_WRITE=1 cargo test -p oa-api --test
//! bodies` rewrites the transcripts; review the diff before committing it.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, start};
use serde_json::{Value, json};

/// Records the raw bodies of a session and replaces date-dependent values.
struct Transcript {
    lines: Vec<String>,
    ids: Vec<String>,
    timestamps: Vec<String>,
}

impl Transcript {
    fn new() -> Self {
        Transcript {
            lines: Vec::new(),
            ids: Vec::new(),
            timestamps: Vec::new(),
        }
    }

    /// Posts `body` (with the key) and records `path status body`; returns the parsed body.
    async fn call(&mut self, server: &Server, path: &str, mut body: Value) -> Value {
        body["apikey"] = Value::from(server.key.clone());
        let (status, text) = server.post_text(path, &body).await;
        let value: Value = serde_json::from_str(&text).unwrap();
        self.collect(&value);
        self.lines.push(format!("{path} {status} {text}"));
        value
    }

    /// Remembers the order ids and timestamps of `value`, in order of appearance.
    fn collect(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    match (key.as_str(), item) {
                        ("orderid", Value::String(id)) => self.id(id),
                        ("canceled_orders", Value::Array(ids)) => ids
                            .iter()
                            .filter_map(Value::as_str)
                            .for_each(|id| self.id(id)),
                        ("timestamp", Value::String(time)) => {
                            if !self.timestamps.contains(time) {
                                self.timestamps.push(time.clone());
                            }
                        }
                        _ => self.collect(item),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.collect(item)),
            _ => {}
        }
    }

    fn id(&mut self, id: &str) {
        if id.chars().all(|c| c.is_ascii_digit()) && !self.ids.iter().any(|known| known == id) {
            self.ids.push(id.to_string());
        }
    }

    /// The transcript with placeholders (longest ids first, so no id replaces part of another).
    fn text(&self) -> String {
        let mut text = self.lines.join("\n") + "\n";
        for time in &self.timestamps {
            text = text.replace(&format!("\"{time}\""), "\"<TS>\"");
        }
        let mut ids: Vec<(usize, &String)> = self.ids.iter().enumerate().collect();
        ids.sort_by_key(|(_, id)| std::cmp::Reverse(id.len()));
        for (index, id) in ids {
            text = text.replace(id.as_str(), &format!("<ID{}>", index + 1));
        }
        text
    }

    /// Compares with `tests/golden/<name>`, or writes it with `OA_GOLDEN_WRITE=1`.
    fn check(&self, name: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        let text = self.text();
        if std::env::var_os("OA_GOLDEN_WRITE").is_some() {
            std::fs::write(&path, &text).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        for (line, (got, want)) in text.lines().zip(expected.lines()).enumerate() {
            assert_eq!(got, want, "{name} line {}", line + 1);
        }
        assert_eq!(text, expected, "{name}");
    }
}

fn order(symbol: &str, action: &str, quantity: &str) -> Value {
    json!({"strategy": "golden", "exchange": "NSE", "symbol": symbol, "action": action,
           "quantity": quantity, "pricetype": "MARKET", "product": "MIS"})
}

fn limit(quantity: &str, price: &str) -> Value {
    let mut body = order("SBIN", "BUY", quantity);
    body["pricetype"] = "LIMIT".into();
    body["price"] = price.into();
    body
}

/// Every endpoint, in a fixed order, with the shapes each can answer.
async fn session(server: &Server, transcript: &mut Transcript) {
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    server.price("NSE", "INFY", 1520.25, 1519.75, 1520.75);
    let t = transcript;
    t.call(server, "ping", json!({})).await;
    t.call(server, "analyzer", json!({})).await;
    t.call(server, "funds", json!({})).await;
    t.call(server, "orderbook", json!({})).await;
    t.call(server, "tradebook", json!({})).await;
    t.call(server, "positionbook", json!({})).await;
    t.call(
        server,
        "quotes",
        json!({"symbol": "SBIN", "exchange": "NSE"}),
    )
    .await;
    t.call(
        server,
        "depth",
        json!({"symbol": "INFY", "exchange": "NSE"}),
    )
    .await;
    t.call(
        server,
        "quotes",
        json!({"symbol": "TCS", "exchange": "NSE"}),
    )
    .await;

    let filled = t
        .call(server, "placeorder", order("SBIN", "BUY", "10"))
        .await;
    t.call(server, "placeorder", order("INFY", "SELL", "3"))
        .await;
    t.call(server, "placeorder", order("HDFCBANK", "BUY", "1"))
        .await;
    let resting = t.call(server, "placeorder", limit("5", "700.5")).await;
    t.call(server, "placeorder", limit("2", "701")).await;
    let by_id = |orderid: &Value| json!({"strategy": "golden", "orderid": orderid});
    t.call(server, "orderstatus", by_id(&filled["orderid"]))
        .await;
    t.call(server, "orderstatus", by_id(&json!("1"))).await;
    let mut modify = limit("6", "705.25");
    modify["orderid"] = resting["orderid"].clone();
    modify["disclosed_quantity"] = "0".into();
    modify["trigger_price"] = "0".into();
    t.call(server, "modifyorder", modify).await;
    let resting = &resting["orderid"];
    for (path, orderid) in [
        ("orderstatus", resting),
        ("cancelorder", resting),
        ("cancelorder", resting),
        ("cancelorder", &json!("999")),
    ] {
        t.call(server, path, by_id(orderid)).await;
    }
    t.call(server, "cancelallorder", json!({"strategy": "golden"}))
        .await;
    t.call(server, "cancelallorder", json!({"strategy": "golden"}))
        .await;

    let mut smart = order("SBIN", "BUY", "0");
    smart["position_size"] = "10".into();
    t.call(server, "placesmartorder", smart.clone()).await;
    smart["position_size"] = "4".into();
    t.call(server, "placesmartorder", smart).await;
    t.call(
        server,
        "openposition",
        json!({"strategy": "golden", "symbol": "SBIN",
        "exchange": "NSE", "product": "MIS"}),
    )
    .await;

    t.call(
        server,
        "basketorder",
        json!({"strategy": "golden", "orders": [
        {"exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1"},
        {"exchange": "NSE", "symbol": "HDFCBANK", "action": "BUY", "quantity": "1"},
        {"exchange": "NSE", "symbol": "INFY", "action": "SELL", "quantity": 2, "product": "CNC"}]}),
    )
    .await;
    for (symbol, quantity, splitsize) in [("SBIN", "25", "10"), ("HDFCBANK", "3", "2")] {
        let split = json!({"strategy": "golden", "exchange": "NSE", "symbol": symbol,
            "action": "BUY", "quantity": quantity, "splitsize": splitsize});
        t.call(server, "splitorder", split).await;
    }

    server.price("NSE", "SBIN", 815.33, 815.2, 815.4);
    t.call(server, "orderbook", json!({})).await;
    t.call(server, "tradebook", json!({})).await;
    t.call(server, "positionbook", json!({})).await;
    t.call(server, "funds", json!({})).await;
    t.call(server, "closeposition", json!({"strategy": "golden"}))
        .await;
    t.call(server, "positionbook", json!({})).await;
    t.call(server, "funds", json!({})).await;
    t.call(server, "analyzer", json!({})).await;
    // Validation errors (the same in both modes).
    t.call(server, "placeorder", json!({"strategy": "golden"}))
        .await;
    t.call(server, "orderbook", json!({"colour": "red"})).await;
}

/// Records [`session`] on a fresh server, in analyzer mode when `analyze` (switched on
/// first), then the toggle to the other mode, and compares it with `golden`.
async fn check_session(analyze: bool, golden: &str) {
    let server = start().await;
    let mut transcript = Transcript::new();
    if analyze {
        transcript
            .call(&server, "analyzer/toggle", json!({"mode": true}))
            .await;
    }
    session(&server, &mut transcript).await;
    transcript
        .call(&server, "analyzer/toggle", json!({"mode": !analyze}))
        .await;
    transcript.check(golden);
}

#[tokio::test]
async fn live_mode_bodies_are_byte_identical_to_the_recorded_ones() {
    check_session(false, "rest_live.txt").await;
}

#[tokio::test]
async fn analyzer_mode_bodies_are_byte_identical_to_the_recorded_ones() {
    check_session(true, "rest_analyze.txt").await;
}

/// The ESB path: the stored response and the published `esb_command_result` of each command
/// shape, byte for byte.
#[tokio::test]
async fn esb_results_are_byte_identical_to_the_recorded_ones() {
    use oa_api::StaticSymbols;
    use oa_api::esb::{EsbPosition, EsbRequest};
    use oa_events_core::EventPublisher;

    let dir = common::store_dir();
    let publisher = EventPublisher::builder().build();
    let symbols = StaticSymbols::new()
        .with("NSE", "SBIN", 1.0)
        .with("NSE", "INFY", 1.0);
    let api = common::static_api(common::store_config(&dir), publisher.clone(), symbols).await;
    api.keys().set_esb_allowed("admin", true).await.unwrap();
    let esb = api.esb_commands();
    let mut tap = publisher.subscribe();
    let place = |symbol: &str, pricetype: &str| {
        json!({"strategy": "s", "exchange": "NSE", "symbol": symbol, "action": "BUY",
               "quantity": "2", "product": "MIS", "pricetype": pricetype, "price": "790.5"})
    };
    let commands = [
        ("place_order", place("SBIN", "MARKET")),
        ("place_order", place("INFY", "MARKET")),
        ("place_order", place("SBIN", "LIMIT")),
        ("cancel_order", json!({"strategy": "s", "orderid": "999"})),
        ("cancel_all_orders", json!({"strategy": "s"})),
        (
            "place_smart_order",
            json!({"strategy": "s", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
                   "quantity": "0", "position_size": "2", "product": "MIS"}),
        ),
        ("close_position", json!({"strategy": "s"})),
    ];
    let mut transcript = Transcript::new();
    for (offset, (event_type, data)) in commands.into_iter().enumerate() {
        let serde_json::Value::Object(data) = data else {
            unreachable!()
        };
        let request = EsbRequest {
            id: format!("c{offset}"),
            event_type: event_type.to_string(),
            user_id: "admin".to_string(),
            data,
        };
        let position = EsbPosition {
            group: "g".to_string(),
            topic: "esb".to_string(),
            partition: 0,
            offset: offset as i64,
        };
        esb.execute(&request, &position).await.unwrap();
        while let Ok(envelope) = tap.try_recv() {
            if envelope.event_type() == "esb_command_result" {
                let text = serde_json::to_string(&envelope.data).unwrap();
                transcript.collect(&serde_json::from_str(&text).unwrap());
                transcript.lines.push(format!("{event_type} event {text}"));
            }
        }
        let stored = dir
            .query_rows(&format!(
                "SELECT response FROM esb_commands WHERE id = '{}'",
                request.id
            ))
            .remove(0);
        transcript
            .lines
            .push(format!("{event_type} stored {stored}"));
    }
    transcript.check("esb.txt");
}
