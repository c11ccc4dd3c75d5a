//! The REST API over real HTTP: every endpoint's success body, validation errors, status
//! codes, events, and fills driven by price updates.

mod common;

use common::{data, drain, message, next_events, orderid, start, status_and_message};
use reqwest::Method;
use serde_json::{Value, json};

fn order(symbol: &str, action: &str, quantity: &str) -> Value {
    json!({"strategy": "test", "exchange": "NSE", "symbol": symbol, "action": action,
           "quantity": quantity, "pricetype": "MARKET", "product": "MIS"})
}

/// The keys every orderbook and tradebook row has.
const ORDER_ROW_KEYS: [&str; 6] = [
    "action", "symbol", "exchange", "orderid", "product", "quantity",
];

/// Fails unless `row` (a row of `what`) has every one of `keys`.
fn assert_has_keys(what: &str, row: &Value, keys: &[&str]) {
    for key in keys {
        assert!(row.get(key).is_some(), "{what} lacks {key}: {row}");
    }
}

/// A LIMIT [`order`] at `price`.
fn limit_order(symbol: &str, action: &str, quantity: &str, price: &str) -> Value {
    let mut limit = order(symbol, action, quantity);
    limit["pricetype"] = "LIMIT".into();
    limit["price"] = price.into();
    limit
}

/// The `modifyorder` body that makes `orderid` a BUY LIMIT of `quantity` SBIN at `price`.
fn modify_sbin(orderid: &str, price: &str, quantity: &str) -> Value {
    json!({"strategy": "test", "exchange": "NSE", "symbol": "SBIN", "orderid": orderid,
        "action": "BUY", "product": "MIS", "pricetype": "LIMIT", "price": price,
        "quantity": quantity, "disclosed_quantity": "0", "trigger_price": "0"})
}

#[tokio::test]
async fn market_order_is_complete_before_the_response_and_publishes_live_events() {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    let mut tap = server.publisher.subscribe();
    let body = server.ok("placeorder", order("SBIN", "buy", "10")).await;
    let orderid = orderid(&body);
    assert!(orderid.chars().all(|c| c.is_ascii_digit()), "{orderid}");
    assert_eq!(body, json!({"status": "success", "orderid": orderid}));

    let events = drain(&mut tap);
    let names: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(names, ["order_event", "order_update"]);
    assert_eq!(events[0].user_id, "admin");
    assert_eq!(
        data(&events[0]),
        json!({"symbol": "SBIN", "action": "BUY", "orderid": orderid, "exchange": "NSE",
               "price_type": "MARKET", "product_type": "MIS", "mode": "live"})
    );
    assert_eq!(
        data(&events[1]),
        json!({"mode": "live", "broker": "simulator", "orderid": orderid, "symbol": "SBIN",
               "exchange": "NSE", "action": "BUY", "quantity": 10, "price": 0.0,
               "trigger_price": 0.0, "pricetype": "MARKET", "product": "MIS",
               "order_status": "complete", "filled_quantity": 10, "pending_quantity": 0,
               "average_price": 812.6, "rejection_reason": ""})
    );

    let data = &server.order_status(&orderid).await;
    assert_eq!(data["order_status"], "complete");
    assert_eq!(data["average_price"], 812.6);
    assert_eq!(data["action"], "BUY");
    assert_eq!(data["quantity"], 10);
    assert_has_keys(
        "orderstatus",
        data,
        &[
            "exchange",
            "orderid",
            "price",
            "pricetype",
            "product",
            "symbol",
            "timestamp",
            "trigger_price",
        ],
    );
}

#[tokio::test]
async fn analyzer_mode_routes_to_the_sandbox_and_emits_analyzer_update() {
    let server = common::start_quoting("INFY", 1520.0, 1519.9, 1520.1).await;
    let status = server.ok("analyzer", json!({})).await;
    assert_eq!(
        status,
        json!({"status": "success", "data": {"mode": "live", "analyze_mode": false, "total_logs": 0}})
    );
    let toggled = server.ok("analyzer/toggle", json!({"mode": true})).await;
    assert_eq!(
        toggled,
        json!({"status": "success", "data": {"mode": "analyze", "analyze_mode": true,
               "total_logs": 0, "message": "Analyzer mode switched to analyze"}})
    );
    let mut tap = server.publisher.subscribe();
    // apikey first, as the SDK sends it: the logged request keeps the client's key order.
    let mut request = json!({"apikey": server.key});
    for (key, value) in order("INFY", "SELL", "2").as_object().unwrap() {
        request[key] = value.clone();
    }
    let (code, body) = server.post("placeorder", request).await;
    assert_eq!(code, 200, "{body}");
    let orderid = orderid(&body);
    assert_eq!(
        body,
        json!({"status": "success", "orderid": orderid, "mode": "analyze"})
    );
    let events = drain(&mut tap);
    let names: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    // The MARKET order fills at placement: the fill's own analyzer_update follows (upstream
    // sandbox/execution_engine.py publishes SandboxOrderFilledEvent for it too).
    assert_eq!(
        names,
        ["analyzer_update", "order_update", "analyzer_update"]
    );
    assert_eq!(
        data(&events[2]),
        json!({"request": {"api_type": "sandbox.fill"}, "response": {}})
    );
    let expected = json!({"request": {"strategy": "test", "exchange": "NSE", "symbol": "INFY",
                                      "action": "SELL", "quantity": "2", "pricetype": "MARKET",
                                      "product": "MIS", "price": 0.0, "trigger_price": 0.0,
                                      "disclosed_quantity": 0, "underlying_ltp": null,
                                      "api_type": "placeorder"},
                          "response": {"status": "success", "orderid": orderid, "mode": "analyze"}});
    // Compare the serialised text: key order included.
    assert_eq!(data(&events[0]).to_string(), expected.to_string());
    let update = data(&events[1]);
    assert_eq!(
        (update["broker"].as_str(), update["mode"].as_str()),
        (Some("sandbox"), Some("analyze"))
    );
    assert_eq!(update["average_price"], 1519.9);

    let status = server.ok("analyzer", json!({})).await;
    assert_eq!(status["data"]["total_logs"], 1);
    // The sandbox book is separate from the live one.
    let book = server.ok("orderbook", json!({})).await;
    assert_eq!(book["mode"], "analyze");
    assert_eq!(book["data"]["orders"].as_array().unwrap().len(), 1);
    server.set_analyze(false).await;
    let book = server.ok("orderbook", json!({})).await;
    assert_eq!(book["data"]["orders"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn resting_limit_order_fills_on_the_tick_that_crosses() {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    let orderid = server.place(limit_order("SBIN", "BUY", "5", "800")).await;
    assert_eq!(server.order_status(&orderid).await["order_status"], "open");

    let mut tap = server.publisher.subscribe();
    server.ltp("NSE", "SBIN", 805.0);
    server.ltp("NSE", "SBIN", 799.5);
    let events = next_events(&mut tap, 1).await;
    let update = data(&events[0]);
    assert_eq!(events[0].event_type(), "order_update");
    assert_eq!(update["orderid"], orderid);
    assert_eq!(update["order_status"], "complete");
    assert_eq!(update["average_price"], 800.0);
    let status = server.order_status(&orderid).await;
    assert_eq!(status["order_status"], "complete");
    let trades = server.ok("tradebook", json!({})).await;
    assert_eq!(trades["data"][0]["average_price"], 800.0);
    assert_eq!(trades["data"][0]["trade_value"], 4000.0);
}

#[tokio::test]
async fn stop_loss_market_order_waits_for_its_trigger() {
    let server = common::start_quoting("TCS", 3400.0, 3399.0, 3401.0).await;
    let mut stop = order("TCS", "SELL", "1");
    stop["pricetype"] = "SL-M".into();
    stop["trigger_price"] = 3350.into();
    let orderid = server.place(stop).await;
    let status = server.order_status(&orderid).await;
    assert_eq!(status["order_status"], "trigger pending");
    let mut tap = server.publisher.subscribe();
    server.price("NSE", "TCS", 3349.0, 3348.0, 3350.0);
    let events = next_events(&mut tap, 1).await;
    assert_eq!(data(&events[0])["order_status"], "complete");
    assert_eq!(data(&events[0])["average_price"], 3348.0);
}

/// Resting exits of one position are checked for margin when they fill: the one that would
/// open an unfunded short is rejected at fill, with the same `order_update` a rejection emits.
#[tokio::test]
async fn an_exit_that_would_open_an_unfunded_position_is_rejected_at_fill() {
    let server = common::start_configured(|config| {
        config.starting_funds = 1500.0;
    })
    .await;
    server.price("NSE", "SBIN", 100.0, 100.0, 100.0);
    let mut buy = order("SBIN", "BUY", "10");
    buy["product"] = "CNC".into();
    server.ok("placeorder", buy).await;
    let mut exits = Vec::new();
    for _ in 0..3 {
        let mut exit = limit_order("SBIN", "SELL", "10", "110");
        exit["product"] = "CNC".into();
        exits.push(server.place(exit).await);
    }
    let funds = server.ok("funds", json!({})).await;
    assert_eq!(funds["data"]["availablecash"], "500.00");

    let mut tap = server.publisher.subscribe();
    server.ltp("NSE", "SBIN", 111.0);
    let events = next_events(&mut tap, 3).await;
    let updates: Vec<(String, String, String)> = events
        .iter()
        .map(|event| {
            let update = data(event);
            assert_eq!(event.event_type(), "order_update");
            (
                update["orderid"].as_str().unwrap().to_string(),
                update["order_status"].as_str().unwrap().to_string(),
                update["rejection_reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = "Insufficient funds at fill: margin required 1100.00 at fill price 110.00, \
                  available 500.00";
    assert_eq!(
        updates,
        [
            (exits[0].clone(), "complete".to_string(), String::new()),
            (exits[1].clone(), "complete".to_string(), String::new()),
            (exits[2].clone(), "rejected".to_string(), reason.to_string()),
        ]
    );
    let status = server.order_status(&exits[2]).await;
    assert_eq!(status["order_status"], "rejected");
    assert_eq!(status["rejection_reason"], reason);
    // The second exit holds a funded short of 10 x 110; nothing went below zero.
    let funds = server.ok("funds", json!({})).await;
    assert_eq!(funds["data"]["availablecash"], "500.00");
    assert_eq!(funds["data"]["utiliseddebits"], "1100.00");
    assert_eq!(funds["data"]["m2mrealized"], "100.00");
}

#[tokio::test]
async fn modify_cancel_and_cancel_all_with_their_events() {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    let limit = limit_order("SBIN", "BUY", "5", "700");
    let first = server.place(limit.clone()).await;
    let second = server.place(limit.clone()).await;
    let third = server.place(limit).await;

    let mut tap = server.publisher.subscribe();
    assert_eq!(
        server
            .ok("modifyorder", modify_sbin(&first, "710", "7"))
            .await,
        json!({"status": "success", "orderid": first})
    );
    let events = drain(&mut tap);
    assert_eq!(
        data(&events[0]),
        json!({"status": "success", "orderid": first, "mode": "live"})
    );
    assert_eq!(events[0].event_type(), "modify_order_event");
    assert_eq!(data(&events[1])["price"], 710.0);
    assert_eq!(data(&events[1])["quantity"], 7);

    let body = server
        .ok("cancelorder", json!({"strategy": "test", "orderid": first}))
        .await;
    assert_eq!(body, json!({"status": "success", "orderid": first}));
    let events = drain(&mut tap);
    assert_eq!(events[0].event_type(), "cancel_order_event");
    assert_eq!(
        data(&events[0]),
        json!({"status": "success", "orderid": first, "mode": "live"})
    );
    assert_eq!(data(&events[1])["order_status"], "cancelled");

    assert_eq!(
        server
            .refusal("cancelorder", json!({"strategy": "test", "orderid": first}))
            .await,
        (
            400,
            format!("Order {first} cannot be cancelled: its status is cancelled")
        )
    );
    for path in ["cancelorder", "orderstatus"] {
        let (code, body) = server
            .call(path, json!({"strategy": "test", "orderid": "999"}))
            .await;
        let expected = json!({"status": "error", "message": "Order 999 not found"});
        assert_eq!((code, body), (404, expected), "{path}");
    }

    let body = server
        .ok("cancelallorder", json!({"strategy": "test"}))
        .await;
    assert_eq!(
        body,
        json!({"status": "success", "canceled_orders": [second, third], "failed_cancellations": [],
               "message": "Canceled 2 orders. Failed to cancel 0 orders."})
    );
    let events = drain(&mut tap);
    let summary = events
        .iter()
        .find(|e| e.event_type() == "cancel_order_event")
        .unwrap();
    assert_eq!(
        data(summary),
        json!({"status": "success", "orderid": "2 orders canceled", "mode": "live",
               "batch_order": true, "is_last_order": true, "canceled_count": 2, "failed_count": 0})
    );
    let funds = server.ok("funds", json!({})).await;
    assert_eq!(funds["data"]["utiliseddebits"], "0.00");
    assert_eq!(funds["data"]["availablecash"], "10000000.00");
}

#[tokio::test]
async fn smart_orders_reach_the_target_position() {
    let server = common::start_quoting("RELIANCE", 1285.0, 1284.9, 1285.1).await;
    let mut smart = order("RELIANCE", "BUY", "5");
    smart["position_size"] = "5".into();
    let body = server.ok("placesmartorder", smart.clone()).await;
    assert!(body["orderid"].is_string(), "{body}");

    let mut tap = server.publisher.subscribe();
    let body = server.ok("placesmartorder", smart.clone()).await;
    assert_eq!(
        body,
        json!({"status": "success", "message": "Positions Already Matched. No Action needed."})
    );
    let events = drain(&mut tap);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type(), "order_notification");
    assert_eq!(
        data(&events[0]),
        json!({"symbol": "RELIANCE", "status": "info", "message": "Positions Already Matched. No Action needed."})
    );

    smart["position_size"] = "-5".into();
    smart["quantity"] = "0".into();
    server.ok("placesmartorder", smart).await;
    let position =
        json!({"strategy": "t", "symbol": "RELIANCE", "exchange": "NSE", "product": "MIS"});
    assert_eq!(
        server.ok("openposition", position).await,
        json!({"status": "success", "quantity": -5})
    );
    let trades = server.ok("tradebook", json!({})).await;
    assert_eq!(trades["data"][0]["action"], "SELL");
    assert_eq!(trades["data"][0]["quantity"], 10);
}

#[tokio::test]
async fn books_funds_and_close_position() {
    let server = common::start_quoting("SBIN", 100.0, 99.0, 101.0).await;
    server.ok("placeorder", order("SBIN", "BUY", "10")).await;
    let mut product = order("SBIN", "BUY", "4");
    product["product"] = "CNC".into();
    server.ok("placeorder", product).await;
    server.price("NSE", "SBIN", 110.0, 109.0, 111.0);

    let positions = server.ok("positionbook", json!({})).await;
    let rows = positions["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let mis = rows.iter().find(|r| r["product"] == "MIS").unwrap();
    assert_eq!(
        mis,
        &json!({"symbol": "SBIN", "exchange": "NSE", "product": "MIS", "quantity": 10,
                "average_price": "101.00", "ltp": 110.0, "pnl": 90.0})
    );
    // MIS margin at 5x: 10 x 101 / 5 = 202; CNC at 1x: 4 x 101 = 404.
    let funds = server.ok("funds", json!({})).await;
    assert_eq!(
        funds,
        json!({"status": "success", "data": {"availablecash": "9999394.00", "collateral": "0.00",
               "m2mrealized": "0.00", "m2munrealized": "126.00", "utiliseddebits": "606.00"}})
    );

    let mut tap = server.publisher.subscribe();
    let body = server
        .ok("closeposition", json!({"strategy": "test"}))
        .await;
    assert_eq!(
        body,
        json!({"status": "success", "message": "All Open Positions Squared Off"})
    );
    let events = drain(&mut tap);
    assert_eq!(events[0].event_type(), "close_position_event");
    assert_eq!(
        data(&events[0]),
        json!({"status": "success", "message": "All Open Positions Squared Off", "mode": "live"})
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type() == "order_update")
            .count(),
        2
    );
    let funds = server.ok("funds", json!({})).await;
    // Sold at the bid 109: (109 - 101) x 14 = 112 realized.
    assert_eq!(funds["data"]["m2mrealized"], "112.00");
    assert_eq!(funds["data"]["availablecash"], "10000112.00");
    assert_eq!(funds["data"]["utiliseddebits"], "0.00");

    let book = server.ok("orderbook", json!({})).await;
    assert_eq!(
        book["data"]["statistics"],
        json!({"total_buy_orders": 2, "total_sell_orders": 2, "total_completed_orders": 4,
               "total_open_orders": 0, "total_rejected_orders": 0})
    );
    let first = &book["data"]["orders"][0];
    assert_has_keys("orderbook", first, &ORDER_ROW_KEYS);
    assert_has_keys(
        "orderbook",
        first,
        &[
            "price",
            "pricetype",
            "order_status",
            "trigger_price",
            "timestamp",
        ],
    );
    let trades = server.ok("tradebook", json!({})).await;
    let trade = &trades["data"][0];
    assert_has_keys("tradebook", trade, &ORDER_ROW_KEYS);
    assert_has_keys(
        "tradebook",
        trade,
        &["average_price", "trade_value", "timestamp"],
    );
    assert_eq!(server.open_position("NSE", "SBIN", "MIS").await, 0);
}

#[tokio::test]
async fn quotes_depth_ping_basket_and_split() {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    let quotes = server
        .ok("quotes", json!({"symbol": "SBIN", "exchange": "NSE"}))
        .await;
    assert_eq!(
        quotes,
        json!({"status": "success", "data": {"open": 807.5, "high": 822.5, "low": 802.5,
               "ltp": 812.5, "ask": 812.6, "bid": 812.4, "prev_close": 810.5, "volume": 1000.0, "oi": 0.0}})
    );
    let depth = server
        .ok("depth", json!({"symbol": "SBIN", "exchange": "NSE"}))
        .await;
    let data = &depth["data"];
    assert_eq!(data["asks"].as_array().unwrap().len(), 5);
    assert_eq!(data["asks"][0], json!({"price": 812.6, "quantity": 200}));
    assert_eq!(data["bids"][0], json!({"price": 812.4, "quantity": 100}));
    assert_eq!(data["bids"][1], json!({"price": 0.0, "quantity": 0}));
    assert_eq!(
        (
            data["totalbuyqty"].clone(),
            data["totalsellqty"].clone(),
            data["ltq"].clone()
        ),
        (json!(300), json!(400), json!(5))
    );
    assert_eq!(
        server
            .refusal("quotes", json!({"symbol": "INFY", "exchange": "NSE"}))
            .await,
        (404, "No quote available for INFY on NSE yet".to_string())
    );

    let ping = server.ok("ping", json!({})).await;
    assert_eq!(
        ping,
        json!({"status": "success", "data": {"message": "pong", "broker": "simulator"}})
    );

    server.price("NSE", "INFY", 1520.0, 1519.0, 1521.0);
    let basket = server
        .ok("basketorder", json!({"strategy": "b", "orders": [
            {"exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1", "pricetype": "MARKET", "product": "MIS"},
            {"exchange": "NSE", "symbol": "INFY", "action": "SELL", "quantity": 2, "pricetype": "MARKET", "product": "MIS"}]}))
        .await;
    let results = basket["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["symbol"], "SBIN");
    assert_eq!(results[0]["status"], "success");
    assert!(results[1]["orderid"].is_string());

    let mut tap = server.publisher.subscribe();
    let split = server
        .ok("splitorder", json!({"strategy": "s", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
                                 "quantity": "25", "splitsize": "10", "pricetype": "MARKET", "product": "MIS"}))
        .await;
    assert_eq!(split["split_size"], 10);
    assert_eq!(split["total_quantity"], 25);
    let quantities: Vec<Value> = split["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["quantity"].clone())
        .collect();
    assert_eq!(quantities, [json!(10), json!(10), json!(5)]);
    assert_eq!(split["results"][2]["order_num"], 3);
    let order_events = common::drain_data(&mut tap, "order_event");
    // One summary per split, as upstream (compat.rs pins its fields).
    assert_eq!(order_events.len(), 1, "{order_events:?}");
    assert_eq!(order_events[0]["orderid"], "3/3 orders");
    assert_eq!(order_events[0]["is_last_order"], true);
}

#[tokio::test]
async fn an_order_without_a_price_is_rejected_naming_the_symbol() {
    let server = start().await;
    let (code, body) = server
        .call("placeorder", order("HDFCBANK", "BUY", "1"))
        .await;
    assert_eq!(code, 400, "{body}");
    let message = message(&body);
    assert!(
        message.contains("HDFCBANK") && message.contains("NSE"),
        "{message}"
    );
    let status = server.order_status(&orderid(&body)).await;
    assert_eq!(status["order_status"], "rejected");
    let book = server.ok("orderbook", json!({})).await;
    assert_eq!(book["data"]["statistics"]["total_rejected_orders"], 1);
}

#[tokio::test]
async fn validation_errors_name_the_field_and_what_was_expected() {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    #[derive(serde::Deserialize)]
    struct Case {
        path: String,
        body: Value,
        message: String,
    }
    let cases: Vec<Case> = serde_json::from_str(include_str!("cases/invalid_requests.json"))
        .expect("cases/invalid_requests.json");
    for Case {
        path,
        body,
        message,
    } in cases
    {
        let (code, reply) = server.call(&path, body.clone()).await;
        assert_eq!(code, 400, "{path} {body} -> {reply}");
        assert_eq!(
            reply,
            json!({"status": "error", "message": message}),
            "{path} {body}"
        );
    }

    // Transport-level errors are JSON too.
    let malformed = [
        ("application/json", "{not json", "Malformed JSON body"),
        (
            "application/x-www-form-urlencoded",
            "apikey=x",
            "Content-Type must be application/json",
        ),
    ];
    for (content_type, text, start) in malformed {
        let body = Some((content_type, text.to_string()));
        let (code, reply) = server.send(Method::POST, "/api/v1/placeorder", body).await;
        assert_eq!(code, 400, "{content_type}: {reply}");
        assert!(
            message(&reply).starts_with(start),
            "{content_type}: {reply}"
        );
    }
    let (code, body) = server.post("placeorder", json!([1, 2])).await;
    assert_eq!(
        (code, message(&body)),
        (400, "Request body must be a JSON object".to_string())
    );
}

#[tokio::test]
async fn bad_keys_unknown_paths_methods_and_big_bodies_get_json_errors() {
    let server = start().await;
    let (code, body) = server
        .post("funds", json!({"apikey": "0".repeat(64)}))
        .await;
    assert_eq!(
        (code, body),
        (
            403,
            json!({"status": "error", "message": "Invalid openalgo apikey"})
        )
    );
    assert_eq!(
        status_and_message(server.post("funds", json!({})).await),
        (
            400,
            "apikey: missing required field (expected a non-empty string)".to_string()
        )
    );

    for path in ["nope", "placeorder/extra"] {
        let (code, body) = server.call(path, json!({})).await;
        assert_eq!(
            (code, body["status"].as_str()),
            (404, Some("error")),
            "{path}"
        );
    }
    let (code, body) = server.send(Method::POST, "/api/v2/funds", None).await;
    assert_eq!(
        (code, body),
        (
            404,
            json!({"status": "error", "message": "Not found", "path": "/api/v2/funds"})
        )
    );
    // Each route names the method it takes.
    for (method, path, allowed) in [
        (Method::GET, "/api/v1/funds", "POST"),
        (Method::POST, "/api/v1/instruments", "GET"),
    ] {
        let (code, body) = server.send(method.clone(), path, None).await;
        assert_eq!(
            (code, body),
            (
                405,
                json!({"status": "error",
                       "message": format!("Method {method} is not allowed on {path}; use {allowed}")})
            ),
            "{method} {path}"
        );
    }

    let big = json!({"apikey": server.key, "strategy": "x".repeat(70 * 1024)});
    let (code, body) = server.post("closeposition", big).await;
    assert_eq!(
        (code, body),
        (
            413,
            json!({"status": "error", "message": "Request body too large: the limit is 65536 bytes"})
        )
    );
}

#[tokio::test]
async fn rate_limits_return_openalgo_429_body() {
    let server = common::start_configured(|config| {
        config.order_rate_limit = "3 per minute".into();
        config.api_rate_limit = "5/minute".into();
    })
    .await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    for _ in 0..3 {
        server.ok("placeorder", order("SBIN", "BUY", "1")).await;
    }
    let response = server
        .client
        .post(format!("{}/api/v1/placeorder", server.url))
        .json(&json!({"apikey": server.key}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"status":"error","message":"Rate limit exceeded. Please slow down your requests.","retry_after":60}"#
    );
    // Other groups have their own budget.
    for _ in 0..5 {
        server.ok("funds", json!({})).await;
    }
    let (code, _) = server.call("funds", json!({})).await;
    assert_eq!(code, 429);
}

#[tokio::test]
async fn rotating_or_revoking_a_key_takes_effect_at_once_and_emits_password_change() {
    let server = start().await;
    server.ok("funds", json!({})).await; // now cached
    let mut tap = server.publisher.subscribe();
    let new_key = server.api.keys().rotate_user_key("admin").await.unwrap();
    assert_eq!(new_key.len(), 64);
    let (code, _) = server.call("funds", json!({})).await;
    assert_eq!(code, 403, "the old key must stop working at once");
    let (code, _) = server.post("funds", json!({"apikey": new_key})).await;
    assert_eq!(code, 200);
    let events = drain(&mut tap);
    assert_eq!(events[0].event_type(), "password_change");
    assert_eq!(
        data(&events[0]),
        json!({"user": "admin", "status": "success", "message": "API key rotated"})
    );

    server.api.keys().revoke_user_key("admin").await.unwrap();
    let (code, _) = server.post("funds", json!({"apikey": new_key})).await;
    assert_eq!(code, 403);
    assert_eq!(data(&drain(&mut tap)[0])["message"], "API key revoked");

    let keys = server.api.keys();
    let other = keys.create_user_key("trader2").await.unwrap();
    assert!(keys.create_user_key("trader2").await.is_err());
    let users = keys.list_users().await.unwrap();
    assert_eq!(users.len(), 2);
    assert!(
        users
            .iter()
            .any(|u| u.user_id == "trader2" && u.key_created_at.is_some())
    );
    assert!(
        users
            .iter()
            .any(|u| u.user_id == "admin" && u.key_created_at.is_none() && u.revoked_keys == 2)
    );
    // Each user sees only their own orders.
    let (code, book) = server.post("orderbook", json!({"apikey": other})).await;
    assert_eq!(
        (code, book["data"]["orders"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    assert!(server.api.ensure_default_user().await.unwrap().is_none());
    // Nothing stored is the key itself.
    let hashes = server
        .dir
        .query_rows("SELECT key_hash || key_id FROM api_keys");
    assert!(
        hashes
            .iter()
            .all(|h| !h.contains(&other) && h.contains("$argon2"))
    );
}

#[tokio::test]
async fn state_survives_a_restart_and_the_outbox_holds_published_envelopes() {
    let dir = common::store_dir();
    let mut config = common::config(&dir);
    config.durable_outbox = true;
    let (orderid, key, published) = {
        let publisher = oa_events_core::EventPublisher::builder().build();
        let prices = oa_marketdata_core::PriceCache::new();
        let api = oa_api::build(
            config.clone(),
            publisher.clone(),
            prices.clone(),
            std::sync::Arc::new(oa_marketdata_core::SymbolMaster::bundled()),
        )
        .await
        .unwrap();
        let key = api.ensure_default_user().await.unwrap().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = api.router();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        prices.update(&common::depth_tick("NSE", "SBIN", 812.5, 812.4, 812.6));
        let mut tap = publisher.subscribe();
        let client = reqwest::Client::new();
        let toggle: Value = common::post_json(
            &client,
            &format!("{url}/api/v1/analyzer/toggle"),
            &json!({"apikey": key, "mode": true}),
        )
        .await;
        assert_eq!(toggle["data"]["analyze_mode"], true);
        let mut body = order("SBIN", "BUY", "3");
        body["apikey"] = key.clone().into();
        let placed: Value =
            common::post_json(&client, &format!("{url}/api/v1/placeorder"), &body).await;
        let published: Vec<String> = drain(&mut tap).iter().map(|e| e.id.to_string()).collect();
        (
            placed["orderid"].as_str().unwrap().to_string(),
            key,
            published,
        )
    };
    // analyzer_update, order_update and the fill's analyzer_update.
    assert_eq!(published.len(), 3);
    let ids = dir.query_rows("SELECT id FROM outbox ORDER BY seq");
    assert_eq!(ids, published);

    // A second instance on the same file sees the order, the position and the mode.
    let publisher = oa_events_core::EventPublisher::builder().build();
    let api = oa_api::build(
        config,
        publisher,
        oa_marketdata_core::PriceCache::new(),
        std::sync::Arc::new(oa_marketdata_core::SymbolMaster::bundled()),
    )
    .await
    .unwrap();
    assert!(api.ensure_default_user().await.unwrap().is_none());
    let url = common::serve(api.router()).await;
    let client = reqwest::Client::new();
    let status: Value = common::post_json(
        &client,
        &format!("{url}/api/v1/orderstatus"),
        &json!({"apikey": key, "strategy": "t", "orderid": orderid}),
    )
    .await;
    assert_eq!(status["data"]["order_status"], "complete");
    assert_eq!(status["mode"], "analyze");
    let position: Value = common::post_json(&client, &format!("{url}/api/v1/openposition"), &json!({"apikey": key, "strategy": "t", "symbol": "SBIN", "exchange": "NSE", "product": "MIS"})).await;
    assert_eq!(position["quantity"], 3);
}

#[tokio::test]
async fn the_simulator_injects_latency_and_rejections() {
    let server = common::start_configured(|config| {
        config.simulator.ack_latency = std::time::Duration::from_millis(150);
        config.simulator.rejection_rate = 1.0;
    })
    .await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let started = std::time::Instant::now();
    let (code, message) = server
        .refusal("placeorder", order("SBIN", "BUY", "1"))
        .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    assert_eq!(code, 400, "{message}");
    assert!(
        message.starts_with("Order rejected: Rejected by the simulator"),
        "{message}"
    );
    // The sandbox has no fault injection.
    server.set_analyze(true).await;
    server.ok("placeorder", order("SBIN", "BUY", "1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_smart_orders_place_one_order() {
    let server = common::start_quoting("ITC", 412.0, 411.9, 412.1).await;
    let mut smart = order("ITC", "BUY", "5");
    smart["position_size"] = "5".into();
    let serde_json::Value::Object(map) = smart else {
        unreachable!()
    };
    let fields = oa_api::Fields::new(map, oa_api::requests::SMART_ORDER_FIELDS).unwrap();
    let request = oa_api::requests::SmartOrder::read(&fields).unwrap();
    let service = server.api.service();
    let calls = (0..16)
        .map(|_| service.place_smart_order("admin", request.clone(), fields.without_apikey()));
    let results = futures_util::future::join_all(calls).await;
    let placed = results
        .iter()
        .filter(|result| {
            matches!(
                result.as_ref().unwrap().body(),
                oa_api::responses::CommandBody::OrderId(_)
            )
        })
        .count();
    assert_eq!(placed, 1, "{results:?}");
    assert_eq!(server.open_position("NSE", "ITC", "MIS").await, 5);
}

#[tokio::test]
async fn every_analyzer_mode_action_emits_analyzer_update_instead_of_live_events() {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    server.set_analyze(true).await;
    let limit = limit_order("SBIN", "BUY", "5", "700");
    let orderid = server.place(limit.clone()).await;
    server.ok("placeorder", limit).await;
    server.ok("placeorder", order("SBIN", "BUY", "2")).await;
    let mut tap = server.publisher.subscribe();
    let modified = server
        .ok("modifyorder", modify_sbin(&orderid, "705", "5"))
        .await;
    let cancelled = server
        .ok(
            "cancelorder",
            json!({"strategy": "test", "orderid": orderid}),
        )
        .await;
    let all = server
        .ok("cancelallorder", json!({"strategy": "test"}))
        .await;
    let mut smart = order("SBIN", "BUY", "0");
    smart["position_size"] = "2".into();
    let matched = server.ok("placesmartorder", smart).await;
    let closed = server
        .ok("closeposition", json!({"strategy": "test"}))
        .await;
    let (code, missing) = server
        .call("cancelorder", json!({"strategy": "test", "orderid": "1"}))
        .await;
    assert_eq!(code, 404);
    assert_eq!(missing["mode"], "analyze");

    let analyzer: Vec<Value> = drain(&mut tap)
        .iter()
        .inspect(|e| {
            assert!(
                matches!(e.event_type(), "analyzer_update" | "order_update"),
                "live event {} in analyzer mode",
                e.event_type()
            )
        })
        .filter(|e| e.event_type() == "analyzer_update")
        .map(|e| data(e))
        .collect();
    let types: Vec<&str> = analyzer
        .iter()
        .map(|a| a["request"]["api_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "modifyorder",
            "cancelorder",
            "cancelallorder",
            "placesmartorder",
            "closeposition",
            // closeposition's square-off filled
            "sandbox.fill",
            "cancelorder"
        ]
    );
    let responses: Vec<Value> = analyzer.iter().map(|a| a["response"].clone()).collect();
    assert_eq!(responses[..5], [modified, cancelled, all, matched, closed]);
    assert_eq!(responses[6], missing);
    assert!(
        analyzer
            .iter()
            .all(|a| a["request"].get("apikey").is_none())
    );
    let status = server.ok("analyzer", json!({})).await;
    assert_eq!(status["data"]["total_logs"], 9);
}

#[tokio::test]
async fn strategy_is_bounded_with_a_400_naming_the_field() {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    let mut body = order("SBIN", "BUY", "1");
    body["strategy"] = json!("s".repeat(256));
    let (status, error) = server.call("placeorder", body.clone()).await;
    assert_eq!(status, 400);
    assert_eq!(
        error["message"],
        "strategy: expected at most 255 characters, got 256"
    );
    // Every endpoint that takes a strategy reads it the same way.
    let (status, _) = server
        .call("cancelallorder", json!({"strategy": "s".repeat(300)}))
        .await;
    assert_eq!(status, 400);
    // 255 characters (not bytes) are accepted.
    body["strategy"] = json!("é".repeat(255));
    server.ok("placeorder", body).await;
}

/// search as upstream answers it (openalgo restx_api/search.py, services/search_service.py,
/// ranking from database/token_db_enhanced.py): message, keys, exchange filter, errors.
#[tokio::test]
async fn search_finds_symbols_closest_first_with_upstreams_keys() {
    let server = start().await;
    let found = server.ok("search", json!({"query": "nifty"})).await;
    let symbols = common::column(&found, "symbol");
    // Exact match first, then symbols starting with the query, shorter first.
    assert_eq!(symbols[0], "NIFTY", "{found}");
    assert!(symbols.contains(&"BANKNIFTY") && symbols.contains(&"NIFTYBEES"));
    assert!(
        symbols.iter().position(|s| *s == "NIFTYBEES")
            < symbols.iter().position(|s| *s == "BANKNIFTY")
    );
    assert_eq!(
        found["message"],
        format!("Found {} matching symbols", symbols.len())
    );
    assert_eq!(
        found["data"][0],
        json!({"symbol": "NIFTY", "brsymbol": "NIFTY", "name": "NIFTY 50", "exchange": "NSE_INDEX",
               "brexchange": "NSE_INDEX", "token": "", "expiry": "", "strike": 0.0, "lotsize": 1,
               "instrumenttype": "INDEX", "tick_size": 0.05, "freeze_qty": 1})
    );

    let on_nse = server
        .ok("search", json!({"query": "state bank", "exchange": "NSE"}))
        .await;
    assert_eq!(on_nse["data"].as_array().unwrap().len(), 1, "{on_nse}");
    assert_eq!(on_nse["data"][0]["symbol"], "SBIN");

    let none = server.ok("search", json!({"query": "zzzz"})).await;
    assert_eq!(
        (
            none["message"].as_str(),
            none["data"].as_array().map(Vec::len)
        ),
        (Some("No matching symbols found"), Some(0))
    );

    let (code, message) = server.refusal("search", json!({"query": "  "})).await;
    assert_eq!(code, 400, "{message}");
    let (code, message) = server
        .refusal("search", json!({"query": "SBIN", "exchange": "LSE"}))
        .await;
    assert_eq!(code, 400, "{message}");
    assert!(message.contains("exchange"), "{message}");
    assert_eq!(
        status_and_message(
            server
                .post("search", json!({"apikey": "wrong", "query": "SBIN"}))
                .await
        ),
        (403, "Invalid openalgo apikey".to_string())
    );
}

/// symbol, multiquotes and intervals as upstream answers them (openalgo
/// services/symbol_service.py, services/quotes_service.py `get_multiquotes`,
/// services/intervals_service.py).
#[tokio::test]
async fn symbol_multiquotes_and_intervals_answer_upstreams_shapes() {
    let server = start().await;
    let symbol = server
        .ok("symbol", json!({"symbol": "sbin", "exchange": "NSE"}))
        .await;
    assert_eq!(symbol["data"]["symbol"], "SBIN", "{symbol}");
    assert_eq!(symbol["data"]["name"], "STATE BANK OF INDIA");
    assert!(symbol["data"]["id"].as_u64().unwrap() >= 1);
    assert_eq!(symbol["data"]["lotsize"], 1);
    assert_eq!(
        server
            .refusal("symbol", json!({"symbol": "NOSUCH", "exchange": "NSE"}))
            .await,
        (404, "Symbol NOSUCH not found in exchange NSE".to_string())
    );

    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let quotes = server
        .ok(
            "multiquotes",
            json!({"symbols": [{"symbol": "SBIN", "exchange": "NSE"},
                               {"symbol": "INFY", "exchange": "NSE"},
                               {"symbol": "NOSUCH", "exchange": "NSE"}]}),
        )
        .await;
    let results = quotes["results"].as_array().unwrap();
    // Unknown symbols first, then the known ones in request order.
    assert_eq!(results.len(), 3, "{quotes}");
    assert_eq!(results[0]["symbol"], "NOSUCH");
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("Symbol 'NOSUCH' not found for exchange 'NSE'")
    );
    assert_eq!(results[1]["data"]["ltp"], 812.5);
    assert_eq!(results[1]["data"]["bid"], 812.4);
    assert!(results[1].get("error").is_none());
    assert_eq!(
        results[2]["error"], "No quote available for INFY on NSE yet",
        "a listed symbol without a price yet"
    );

    let unknown = json!({"symbols": [{"symbol": "NOSUCH", "exchange": "NSE"}]});
    let (code, body) = server.call("multiquotes", unknown).await;
    let invalid = body["invalid_symbols"][0]["symbol"].as_str();
    assert_eq!((code, invalid), (400, Some("NOSUCH")), "{body}");
    let bad_exchange = json!({"symbols": [{"symbol": "SBIN", "exchange": "LSE"}]});
    let (code, message) = server.refusal("multiquotes", bad_exchange).await;
    assert_eq!(code, 400, "{message}");
    assert!(message.starts_with("symbols[0].exchange"), "{message}");
    let (code, _) = server.call("multiquotes", json!({"symbols": []})).await;
    assert_eq!(code, 400);

    let intervals = server.ok("intervals", json!({})).await;
    assert_eq!(
        intervals["data"],
        json!({"seconds": [],
               "minutes": ["1m", "2m", "3m", "5m", "10m", "15m", "20m", "30m", "60m"],
               "hours": ["1h", "2h", "3h", "4h"], "days": ["D"], "weeks": ["W"], "months": ["M"]})
    );
}

/// multiquotes is bounded: more than 500 symbols in one request is refused, naming the field.
#[tokio::test]
async fn multiquotes_refuses_more_than_500_symbols() {
    let server = start().await;
    let symbols: Vec<_> = (0..501)
        .map(|_| json!({"symbol": "SBIN", "exchange": "NSE"}))
        .collect();
    let (code, message) = server
        .refusal("multiquotes", json!({"symbols": symbols}))
        .await;
    assert_eq!(code, 400, "{message}");
    assert!(
        message.contains("symbols: at most 500 symbols per request, got 501"),
        "{message}"
    );
}
