//! The OpenAlgo compatibility suite (REST): requests an OpenAlgo client sends, answered by the
//! real router over HTTP, asserted against what upstream (marketcalls/openalgo) answers and
//! emits. Each test names the upstream file whose code path it pins; docs/compatibility.md
//! lists where oa deliberately differs.

mod common;

use common::{data, drain, start};
use serde_json::{Value, json};

fn order(symbol: &str, action: &str, quantity: &str) -> Value {
    json!({"strategy": "compat", "exchange": "NSE", "symbol": symbol, "action": action,
           "quantity": quantity, "pricetype": "MARKET", "product": "MIS"})
}

fn smart(action: &str, quantity: &str, position_size: &str) -> Value {
    let mut body = order("SBIN", action, quantity);
    body["position_size"] = position_size.into();
    body
}

/// Upstream services/sandbox_service.py `sandbox_place_smart_order` (and the broker plugins'
/// `place_smartorder_api`, e.g. broker/zerodha/api/order_api.py): `position_size` 0 with no
/// open position and a non-zero quantity places a plain order of the request's action and
/// quantity; quantity 0 with a matched position answers "No OpenPosition Found. Not placing
/// Exit order."; services/place_smart_order_service.py emits `order_event` with the
/// request's action (subscribers/socketio_subscriber.py `on_order_placed`).
#[tokio::test]
async fn smart_order_with_position_size_zero_and_no_position_places_the_request() {
    let server = start().await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    let mut tap = server.publisher.subscribe();

    let placed = server.ok("placesmartorder", smart("SELL", "3", "0")).await;
    let orderid = placed["orderid"].as_str().expect("an orderid").to_string();
    let position = server
        .ok(
            "openposition",
            json!({"strategy": "compat", "symbol": "SBIN", "exchange": "NSE", "product": "MIS"}),
        )
        .await;
    assert_eq!(position["quantity"], -3, "{position}");
    let events = drain(&mut tap);
    let order_event = events
        .iter()
        .find(|e| e.event_type() == "order_event")
        .expect("an order_event");
    assert_eq!(
        data(order_event),
        json!({"symbol": "SBIN", "action": "SELL", "orderid": orderid, "exchange": "NSE",
               "price_type": "MARKET", "product_type": "MIS", "mode": "live"})
    );

    // Flattening the short places a BUY of 3; the event still names the request's SELL.
    let closed = server.ok("placesmartorder", smart("SELL", "1", "0")).await;
    let close_id = closed["orderid"].as_str().expect("an orderid").to_string();
    let events = drain(&mut tap);
    let order_event = events
        .iter()
        .find(|e| e.event_type() == "order_event")
        .expect("an order_event");
    assert_eq!(data(order_event)["action"], "SELL");
    assert_eq!(data(order_event)["orderid"], close_id.as_str());
    let trades = server.ok("tradebook", json!({})).await;
    let close_trade = trades["data"]
        .as_array()
        .expect("trades")
        .iter()
        .find(|t| t["orderid"] == close_id.as_str())
        .cloned()
        .expect("the closing trade");
    assert_eq!(close_trade["action"], "BUY", "{close_trade}");
    assert_eq!(close_trade["quantity"], 3, "{close_trade}");

    let (status, nothing) = server.call("placesmartorder", smart("BUY", "0", "0")).await;
    assert_eq!(status, 200, "{nothing}");
    assert_eq!(
        nothing,
        json!({"status": "success", "message": "No OpenPosition Found. Not placing Exit order."})
    );
    let events = drain(&mut tap);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        data(&events[0]),
        json!({"symbol": "SBIN", "status": "info",
               "message": "No OpenPosition Found. Not placing Exit order."})
    );
}

/// Upstream restx_api/schemas.py `OrderSchema`: placeorder accepts `underlying_ltp` (a number
/// or null); every route in restx_api/*.py is `strict_slashes=False`, so a trailing slash
/// reaches the endpoint; app.py `not_found_error` answers unknown `/api/` paths with
/// `{"status":"error","message":"Not found","path":...}`.
#[tokio::test]
async fn underlying_ltp_trailing_slashes_and_the_404_body_are_upstreams() {
    let server = start().await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    let mut with_ltp = order("SBIN", "BUY", "1");
    with_ltp["underlying_ltp"] = json!(24850.5);
    server.ok("placeorder", with_ltp.clone()).await;
    with_ltp["underlying_ltp"] = Value::Null;
    server.ok("placeorder", with_ltp.clone()).await;
    with_ltp["underlying_ltp"] = json!("high");
    let (status, body) = server.call("placeorder", with_ltp).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("underlying_ltp")),
        "{body}"
    );

    for path in [
        "placeorder/",
        "funds/",
        "analyzer/",
        "analyzer/toggle/",
        "orderbook/",
        "closeposition/",
    ] {
        let body = match path {
            "placeorder/" => order("SBIN", "BUY", "1"),
            "analyzer/toggle/" => json!({"mode": false}),
            _ => json!({"strategy": "compat"}),
        };
        let body = if matches!(path, "funds/" | "analyzer/" | "orderbook/") {
            json!({})
        } else {
            body
        };
        server.ok(path, body).await;
    }

    let (status, body) = server.post("nosuchthing", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"status": "error", "message": "Not found", "path": "/api/v1/nosuchthing"})
    );
}

/// Upstream restx_api/cancel_all_order.py, close_position.py, basket_order.py and
/// split_order.py are limited by `API_RATE_LIMIT`; place_order.py, modify_order.py and
/// cancel_order.py by `ORDER_RATE_LIMIT`.
#[tokio::test]
async fn cancelallorder_closeposition_basket_and_split_count_against_the_api_limit() {
    let dir = common::store_dir();
    let mut config = common::config(&dir);
    config.order_rate_limit = "1 per minute".into();
    config.api_rate_limit = "1000 per minute".into();
    let server = common::start_with(dir, config).await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    server.ok("placeorder", order("SBIN", "BUY", "1")).await;
    let (status, _) = server.call("placeorder", order("SBIN", "BUY", "1")).await;
    assert_eq!(status, 429, "the order group is spent");
    server
        .ok("cancelallorder", json!({"strategy": "compat"}))
        .await;
    server
        .ok("closeposition", json!({"strategy": "compat"}))
        .await;
    let basket = json!({"strategy": "compat", "orders": [
        {"exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1"}]});
    server.ok("basketorder", basket).await;
    let mut split = order("SBIN", "BUY", "2");
    split["splitsize"] = "1".into();
    server.ok("splitorder", split).await;
}

/// Upstream subscribers/socketio_subscriber.py `on_basket_completed` and
/// `on_split_completed` (from services/basket_order_service.py and
/// services/split_order_service.py): one summary `order_event` per batch, not one per order.
#[tokio::test]
async fn basket_and_split_emit_one_summary_order_event() {
    let server = start().await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    server.price("NSE", "INFY", 1500.0, 1499.9, 1500.1);
    let mut tap = server.publisher.subscribe();
    server
        .ok(
            "basketorder",
            json!({"strategy": "rebalance", "orders": [
                {"exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1"},
                {"exchange": "NSE", "symbol": "INFY", "action": "SELL", "quantity": "1"},
                {"exchange": "NSE", "symbol": "TCS", "action": "BUY", "quantity": "1"}]}),
        )
        .await;
    let order_events: Vec<Value> = drain(&mut tap)
        .iter()
        .filter(|e| e.event_type() == "order_event")
        .map(|e| data(e))
        .collect();
    // TCS has no price: rejected, so 2 of 3 succeeded.
    assert_eq!(
        order_events,
        [
            json!({"symbol": "rebalance", "action": "2/3 orders", "orderid": "basket_2",
                "exchange": "MULTI", "price_type": "BASKET", "product_type": "BASKET",
                "mode": "live", "batch_order": true, "is_last_order": true})
        ]
    );

    let mut split = order("SBIN", "sell", "5");
    split["splitsize"] = "2".into();
    server.ok("splitorder", split).await;
    let order_events: Vec<Value> = drain(&mut tap)
        .iter()
        .filter(|e| e.event_type() == "order_event")
        .map(|e| data(e))
        .collect();
    assert_eq!(
        order_events,
        [
            json!({"symbol": "SBIN", "action": "SELL", "orderid": "3/3 orders",
                "exchange": "NSE", "price_type": "MARKET", "product_type": "MIS",
                "mode": "live", "batch_order": true, "is_last_order": true})
        ]
    );
}

/// Upstream services/close_position_service.py publishes PositionClosedEvent on failure too
/// (with the error message), and subscribers/socketio_subscriber.py `on_position_closed`
/// emits it as `close_position_event` with status "success".
#[tokio::test]
async fn close_position_event_is_emitted_when_closing_fails() {
    let dir = common::store_dir();
    let config = common::config(&dir);
    let server = common::start_with(dir, config.clone()).await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    server.ok("placeorder", order("SBIN", "BUY", "2")).await;
    // A restart forgets prices: the closing order has no price and is rejected.
    let common::Server { dir, key, .. } = server;
    let server = common::restart(dir, config, key).await;
    let mut tap = server.publisher.subscribe();
    let (status, body) = server
        .call("closeposition", json!({"strategy": "compat"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("a message").to_string();
    let events: Vec<Value> = drain(&mut tap)
        .iter()
        .filter(|e| e.event_type() == "close_position_event")
        .map(|e| data(e))
        .collect();
    assert_eq!(
        events,
        [json!({"status": "success", "message": message, "mode": "live"})]
    );
}

/// Upstream services/place_order_service.py emits `analyzer_update.request` from the
/// schema-loaded body (restx_api/schemas.py `OrderSchema` defaults applied) plus `api_type`.
#[tokio::test]
async fn analyzer_update_request_carries_the_defaults() {
    let server = start().await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    server.set_analyze(true).await;
    let mut tap = server.publisher.subscribe();
    let bare = json!({"strategy": "compat", "exchange": "NSE", "symbol": "SBIN",
                      "action": "BUY", "quantity": "1"});
    server.ok("placeorder", bare).await;
    let update = drain(&mut tap)
        .iter()
        .find(|e| e.event_type() == "analyzer_update")
        .map(|e| data(e))
        .expect("an analyzer_update");
    assert_eq!(
        update["request"],
        json!({"strategy": "compat", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
               "quantity": "1", "pricetype": "MARKET", "product": "MIS", "price": 0.0,
               "trigger_price": 0.0, "disclosed_quantity": 0, "underlying_ltp": null,
               "api_type": "placeorder"})
    );
}

/// Upstream services/basket_order_service.py places BUY legs before SELL legs (both modes)
/// and its success items (`place_single_order`) carry `exchange` and `product`.
#[tokio::test]
async fn basket_places_buys_first_and_names_exchange_and_product() {
    let server = start().await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    server.price("NSE", "INFY", 1500.0, 1499.9, 1500.1);
    let basket = server
        .ok(
            "basketorder",
            json!({"strategy": "compat", "orders": [
                {"exchange": "NSE", "symbol": "INFY", "action": "SELL", "quantity": "1"},
                {"exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1",
                 "product": "CNC"}]}),
        )
        .await;
    let results = basket["results"].as_array().expect("results");
    let orderid = |i: usize| {
        results[i]["orderid"]
            .as_str()
            .expect("an orderid")
            .to_string()
    };
    assert_eq!(
        basket,
        json!({"status": "success", "results": [
            {"symbol": "SBIN", "exchange": "NSE", "product": "CNC", "status": "success",
             "orderid": orderid(0)},
            {"symbol": "INFY", "exchange": "NSE", "product": "MIS", "status": "success",
             "orderid": orderid(1)}]})
    );
    assert!(
        orderid(0) < orderid(1),
        "the BUY leg was placed first: {basket}"
    );
}
