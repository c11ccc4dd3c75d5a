//! The OpenAlgo compatibility suite (REST): requests an OpenAlgo client sends, answered by the
//! real router over HTTP, asserted against what upstream (marketcalls/openalgo) answers and
//! emits. Each test names the upstream file whose code path it pins; docs/compatibility.md
//! lists where oa deliberately differs.

mod common;

use common::{data, drain, drain_data, orderid, start};
use serde_json::{Value, json};

fn order(symbol: &str, action: &str, quantity: &str) -> Value {
    json!({"strategy": "compat", "exchange": "NSE", "symbol": symbol, "action": action,
           "quantity": quantity, "pricetype": "MARKET", "product": "MIS"})
}

/// A fresh server with SBIN quoted at 800 (bid 799.9, ask 800.1).
async fn start_sbin() -> common::Server {
    common::start_quoting("SBIN", 800.0, 799.9, 800.1).await
}

/// A basketorder body of `strategy` with NSE legs `(symbol, action, quantity)`.
fn basket(strategy: &str, legs: &[(&str, &str, &str)]) -> Value {
    let orders: Vec<Value> = legs
        .iter()
        .map(|(symbol, action, quantity)| {
            json!({"exchange": "NSE", "symbol": symbol, "action": action, "quantity": quantity})
        })
        .collect();
    json!({"strategy": strategy, "orders": orders})
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
    let server = start_sbin().await;
    let mut tap = server.publisher.subscribe();

    let placed = server.ok("placesmartorder", smart("SELL", "3", "0")).await;
    let orderid = orderid(&placed);
    assert_eq!(server.open_position("NSE", "SBIN", "MIS").await, -3);
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
    let close_id = common::orderid(&closed);
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
    let server = start_sbin().await;
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
    let server = start_sbin().await;
    server.price("NSE", "INFY", 1500.0, 1499.9, 1500.1);
    let mut tap = server.publisher.subscribe();
    let legs = [
        ("SBIN", "BUY", "1"),
        ("INFY", "SELL", "1"),
        ("TCS", "BUY", "1"),
    ];
    server.ok("basketorder", basket("rebalance", &legs)).await;
    let order_events = drain_data(&mut tap, "order_event");
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
    let split_summary = json!({"symbol": "SBIN", "action": "SELL", "orderid": "3/3 orders",
        "exchange": "NSE", "price_type": "MARKET", "product_type": "MIS",
        "mode": "live", "batch_order": true, "is_last_order": true});
    assert_eq!(drain_data(&mut tap, "order_event"), [split_summary]);
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
    let events = drain_data(&mut tap, "close_position_event");
    assert_eq!(
        events,
        [json!({"status": "success", "message": message, "mode": "live"})]
    );
}

/// Upstream services/place_order_service.py emits `analyzer_update.request` from the
/// schema-loaded body (restx_api/schemas.py `OrderSchema` defaults applied) plus `api_type`.
#[tokio::test]
async fn analyzer_update_request_carries_the_defaults() {
    let server = start_sbin().await;
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
    let server = start_sbin().await;
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

fn limit(symbol: &str, action: &str, quantity: &str, price: &str) -> Value {
    let mut body = order(symbol, action, quantity);
    body["pricetype"] = "LIMIT".into();
    body["price"] = price.into();
    body
}

fn stop(symbol: &str, action: &str, quantity: &str, trigger: &str) -> Value {
    let mut body = order(symbol, action, quantity);
    body["pricetype"] = "SL-M".into();
    body["trigger_price"] = trigger.into();
    body
}

/// The keys of an object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|object| object.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The whitespace-separated `names`, sorted (to compare with [`keys`]).
fn sorted(names: &str) -> Vec<String> {
    let mut names: Vec<String> = names.split_whitespace().map(str::to_string).collect();
    names.sort();
    names
}

/// The keys of a live (broker-shaped) orderstatus `data` and orderbook row.
const BROKER_ORDER_KEYS: &str = "action average_price exchange order_status orderid price \
                                 pricetype product quantity symbol timestamp trigger_price";

/// Upstream sandbox/order_manager.py `get_order_status` (analyzer mode, routed there by
/// services/orderstatus_service.py): `price_type` rather than `pricetype`, fill quantities,
/// the creation time as `YYYY-MM-DD HH:MM:SS`, the strategy, and `"mode":"analyze"` also on
/// the 404. Live mode keeps the broker shape (services/orderstatus_service.py, from the
/// orderbook row).
#[tokio::test]
async fn orderstatus_in_analyzer_mode_has_the_sandboxs_shape() {
    let server = start_sbin().await;
    server.set_analyze(true).await;
    let orderid = server.place(limit("SBIN", "BUY", "2", "700")).await;
    let status = server
        .ok(
            "orderstatus",
            json!({"strategy": "compat", "orderid": orderid}),
        )
        .await;
    let data = &status["data"];
    let timestamp = data["timestamp"].as_str().expect("a timestamp").to_string();
    assert_eq!(
        status,
        json!({"status": "success", "data": {
            "orderid": orderid, "symbol": "SBIN", "exchange": "NSE", "action": "BUY",
            "quantity": 2, "price": 700.0, "trigger_price": 0.0, "price_type": "LIMIT",
            "product": "MIS", "order_status": "open", "average_price": 0.0,
            "filled_quantity": 0, "pending_quantity": 2, "timestamp": timestamp,
            "strategy": "compat"}, "mode": "analyze"})
    );
    assert!(
        chrono::NaiveDateTime::parse_from_str(&timestamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{timestamp}"
    );
    let (code, missing) = server
        .call(
            "orderstatus",
            json!({"strategy": "compat", "orderid": "999999"}),
        )
        .await;
    assert_eq!(code, 404, "{missing}");
    assert_eq!(
        missing,
        json!({"status": "error", "message": "Order 999999 not found", "mode": "analyze"})
    );

    server.set_analyze(false).await;
    let placed = server
        .ok("placeorder", limit("SBIN", "BUY", "2", "700"))
        .await;
    let live = server
        .ok(
            "orderstatus",
            json!({"strategy": "compat", "orderid": placed["orderid"]}),
        )
        .await;
    assert_eq!(keys(&live["data"]), sorted(BROKER_ORDER_KEYS), "{live}");
    assert!(live.get("mode").is_none(), "{live}");
}

/// Upstream statistics: broker/zerodha/mapping/order_data.py `calculate_order_statistics`
/// counts only `OPEN` orders as open (not trigger pending); in analyzer mode
/// sandbox/order_manager.py `_calculate_order_statistics` adds
/// `total_trigger_pending_orders` and `get_orderbook` rows carry fill quantities,
/// `rejection_reason` and `strategy`.
#[tokio::test]
async fn orderbook_statistics_count_as_upstream_in_both_modes() {
    let server = start_sbin().await;
    for analyze in [false, true] {
        server.set_analyze(analyze).await;
        server.ok("placeorder", order("SBIN", "BUY", "1")).await;
        server
            .ok("placeorder", limit("SBIN", "BUY", "1", "700"))
            .await;
        server
            .ok("placeorder", stop("SBIN", "BUY", "1", "900"))
            .await;
        let book = server.ok("orderbook", json!({})).await;
        let mut expected = json!({"total_buy_orders": 3, "total_sell_orders": 0,
            "total_completed_orders": 1, "total_open_orders": 1, "total_rejected_orders": 0});
        if analyze {
            expected["total_trigger_pending_orders"] = json!(1);
        }
        assert_eq!(
            book["data"]["statistics"], expected,
            "analyze {analyze}: {book}"
        );
        let row = &book["data"]["orders"][0];
        let mut row_keys = BROKER_ORDER_KEYS.to_string();
        if analyze {
            row_keys += " filled_quantity pending_quantity rejection_reason strategy";
        }
        assert_eq!(keys(row), sorted(&row_keys), "analyze {analyze}: {row}");
        assert_eq!(book.get("mode").is_some(), analyze, "{book}");
    }
}

/// Upstream sandbox/fund_manager.py `get_funds` (analyzer mode, services/sandbox_service.py
/// `sandbox_get_funds`): numbers, not strings, with the sandbox's P&L and exposure keys;
/// live mode keeps the broker's strings with two decimals.
#[tokio::test]
async fn funds_in_analyzer_mode_are_the_sandboxs_numbers() {
    let server = start_sbin().await;
    let live = server.ok("funds", json!({})).await;
    assert!(live["data"]["availablecash"].is_string(), "{live}");
    assert_eq!(
        keys(&live["data"]),
        sorted("availablecash collateral m2mrealized m2munrealized utiliseddebits")
    );

    server.set_analyze(true).await;
    server.ok("placeorder", order("SBIN", "BUY", "10")).await;
    server.price("NSE", "SBIN", 810.0, 809.9, 810.1);
    let funds = server.ok("funds", json!({})).await;
    let data = &funds["data"];
    assert_eq!(
        keys(data),
        sorted(
            "availablecash collateral m2munrealized m2mrealized total_realized_pnl \
             today_realized_pnl utiliseddebits grossexposure totalpnl"
        ),
        "{funds}"
    );
    assert!(
        keys(data).iter().all(|key| data[key].is_number()),
        "{funds}"
    );
    // Bought 10 at the ask 800.1, marked at 810.
    assert_eq!(data["m2munrealized"], 99.0, "{funds}");
    assert_eq!(data["totalpnl"], 99.0, "{funds}");
    assert_eq!(data["utiliseddebits"], data["grossexposure"], "{funds}");
    assert_eq!(funds["mode"], "analyze");
}

/// Upstream sandbox/position_manager.py `get_open_positions` (analyzer mode,
/// services/positionbook_service.py -> `sandbox_get_positions`): numeric `average_price`
/// (0 once flat), `pnlpercent`, the P&L split into `unrealized_pnl` and
/// `today_realized_pnl`, `lot_size`, and the book's totals beside `data`.
#[tokio::test]
async fn positionbook_in_analyzer_mode_has_the_sandboxs_rows_and_totals() {
    let server = start().await;
    server.price("NSE", "SBIN", 800.0, 800.0, 800.0);
    server.price("NSE", "INFY", 1500.0, 1500.0, 1500.0);
    server.set_analyze(true).await;
    server.ok("placeorder", order("SBIN", "BUY", "10")).await;
    server.ok("placeorder", order("INFY", "BUY", "2")).await;
    server.price("NSE", "INFY", 1510.0, 1510.0, 1510.0);
    server.ok("placeorder", order("INFY", "SELL", "2")).await;
    server.price("NSE", "SBIN", 808.0, 808.0, 808.0);

    let book = server.ok("positionbook", json!({})).await;
    let rows = book["data"].as_array().expect("rows");
    let row = |symbol: &str| {
        rows.iter()
            .find(|row| row["symbol"] == symbol)
            .cloned()
            .unwrap_or_else(|| panic!("no {symbol} row: {book}"))
    };
    let expected_rows = [
        json!({"symbol": "SBIN", "exchange": "NSE", "product": "MIS", "quantity": 10,
               "average_price": 800.0, "ltp": 808.0, "pnl": 80.0, "pnlpercent": 1.0,
               "unrealized_pnl": 80.0, "today_realized_pnl": 0.0, "total_pnl_today": 80.0,
               "lot_size": 1.0}),
        // Flat again: average 0, the P&L all realized.
        json!({"symbol": "INFY", "exchange": "NSE", "product": "MIS", "quantity": 0,
               "average_price": 0.0, "ltp": 1510.0, "pnl": 20.0, "pnlpercent": 0.0,
               "unrealized_pnl": 0.0, "today_realized_pnl": 20.0, "total_pnl_today": 20.0,
               "lot_size": 1.0}),
    ];
    for expected in expected_rows {
        let symbol = expected["symbol"].as_str().unwrap_or_default();
        assert_eq!(row(symbol), expected, "{symbol}");
    }
    assert_eq!(book["total_pnl"], 100.0, "{book}");
    assert_eq!(book["total_unrealized_pnl"], 80.0, "{book}");
    assert_eq!(book["total_today_realized_pnl"], 20.0, "{book}");
    assert_eq!(book["total_pnl_today"], 100.0, "{book}");
    assert_eq!(book["mode"], "analyze");

    server.set_analyze(false).await;
    let live = server.ok("positionbook", json!({})).await;
    assert_eq!(keys(&live), sorted("status data"), "{live}");
}

/// Upstream sandbox/order_manager.py `modify_order` and `cancel_order`: success bodies
/// carry "Order modified successfully" / "Order cancelled successfully"; a finished order
/// answers "Cannot cancel order in <status> status" (400). Live mode answers the orderid
/// alone.
#[tokio::test]
async fn modify_and_cancel_answer_with_the_sandboxs_messages() {
    let server = start_sbin().await;
    for analyze in [true, false] {
        server.set_analyze(analyze).await;
        let orderid = server.place(limit("SBIN", "BUY", "1", "700")).await;
        let mut change = limit("SBIN", "BUY", "2", "710");
        change["orderid"] = orderid.clone().into();
        change["disclosed_quantity"] = "0".into();
        change["trigger_price"] = "0".into();
        let modified = server.ok("modifyorder", change).await;
        let cancelled = server
            .ok(
                "cancelorder",
                json!({"strategy": "compat", "orderid": orderid}),
            )
            .await;
        let (code, again) = server
            .call(
                "cancelorder",
                json!({"strategy": "compat", "orderid": orderid}),
            )
            .await;
        assert_eq!(code, 400, "{again}");
        if analyze {
            assert_eq!(
                modified,
                json!({"status": "success", "orderid": orderid,
                       "message": "Order modified successfully", "mode": "analyze"})
            );
            assert_eq!(
                cancelled,
                json!({"status": "success", "orderid": orderid,
                       "message": "Order cancelled successfully", "mode": "analyze"})
            );
            assert_eq!(
                again,
                json!({"status": "error", "message": "Cannot cancel order in cancelled status",
                       "mode": "analyze"})
            );
        } else {
            assert_eq!(modified, json!({"status": "success", "orderid": orderid}));
            assert_eq!(cancelled, json!({"status": "success", "orderid": orderid}));
        }
    }
}

/// Upstream services/sandbox_service.py `sandbox_close_position` and
/// `sandbox_cancel_all_orders` (analyzer mode): "No open positions to close", "Closed N
/// positions" with `closed_positions` and `failed_closures`, and "No open orders to cancel"
/// with empty lists; live mode keeps "All Open Positions Squared Off" and the counted
/// cancel-all message.
#[tokio::test]
async fn close_and_cancel_all_answer_as_the_sandbox_with_nothing_to_do() {
    let server = start_sbin().await;
    server.set_analyze(true).await;
    let strategy = json!({"strategy": "compat"});
    assert_eq!(
        server.ok("closeposition", strategy.clone()).await,
        json!({"status": "success", "message": "No open positions to close", "mode": "analyze"})
    );
    assert_eq!(
        server.ok("cancelallorder", strategy.clone()).await,
        json!({"status": "success", "canceled_orders": [], "failed_cancellations": [],
               "message": "No open orders to cancel", "mode": "analyze"})
    );
    server.ok("placeorder", order("SBIN", "BUY", "3")).await;
    assert_eq!(
        server.ok("closeposition", strategy.clone()).await,
        json!({"status": "success", "message": "Closed 1 positions", "closed_positions": 1,
               "failed_closures": 0, "mode": "analyze"})
    );
    let resting = server
        .ok("placeorder", limit("SBIN", "BUY", "1", "700"))
        .await;
    let all = server.ok("cancelallorder", strategy.clone()).await;
    assert_eq!(all["canceled_orders"], json!([resting["orderid"]]), "{all}");
    assert_eq!(
        all["message"],
        "Canceled 1 orders. Failed to cancel 0 orders."
    );

    server.set_analyze(false).await;
    assert_eq!(
        server.ok("closeposition", strategy.clone()).await,
        json!({"status": "success", "message": "All Open Positions Squared Off"})
    );
    assert_eq!(
        server.ok("cancelallorder", strategy).await,
        json!({"status": "success", "canceled_orders": [], "failed_cancellations": [],
               "message": "Canceled 0 orders. Failed to cancel 0 orders."})
    );
}

/// Upstream sandbox/order_manager.py `place_order` refuses an order it cannot fund with a
/// 400 and no `orderid`, and services/basket_order_service.py's sandbox branch gives
/// successes `batch_order` and `is_last_order` and failures no `orderid`. Live mode names
/// the rejected order's id (the broker created it).
#[tokio::test]
async fn analyzer_rejections_carry_no_orderid() {
    let server = start_sbin().await;
    server.set_analyze(true).await;
    let (code, rejected) = server
        .call("placeorder", order("SBIN", "BUY", "10000000"))
        .await;
    assert_eq!(code, 400, "{rejected}");
    assert_eq!(keys(&rejected), sorted("status message mode"), "{rejected}");
    assert_eq!(rejected["mode"], "analyze");

    let basket = server
        .ok(
            "basketorder",
            basket(
                "compat",
                &[
                    ("SBIN", "BUY", "1"),
                    ("SBIN", "BUY", "10000000"),
                    ("SBIN", "SELL", "1"),
                ],
            ),
        )
        .await;
    let results = basket["results"].as_array().expect("results");
    assert_eq!(
        results[0],
        json!({"symbol": "SBIN", "exchange": "NSE", "product": "MIS", "status": "success",
               "orderid": results[0]["orderid"], "batch_order": true, "is_last_order": false})
    );
    assert_eq!(
        keys(&results[1]),
        sorted("symbol status message"),
        "{basket}"
    );
    assert_eq!(results[2]["is_last_order"], true, "{basket}");

    server.set_analyze(false).await;
    let (code, rejected) = server
        .call("placeorder", order("SBIN", "BUY", "10000000"))
        .await;
    assert_eq!(code, 400, "{rejected}");
    assert!(rejected["orderid"].is_string(), "{rejected}");
}

/// `analyzer_update` for every analyzer-mode action upstream reports: openposition
/// (services/openposition_service.py logs it and emits the request and response), a refusal
/// of the service's own checks (the sandbox's "Symbol ... not found" goes out through
/// services/place_order_service.py's `OrderPlacedEvent` and
/// subscribers/socketio_subscriber.py `on_order_placed`), and each sandbox fill, a resting
/// order's included (sandbox/execution_engine.py `_publish_fill_event` ->
/// `on_sandbox_order_filled`, whose `request` and `response` are empty; oa names the cause
/// in `request.api_type`). Live mode emits none of these.
#[tokio::test]
async fn analyzer_update_reports_openposition_refusals_and_sandbox_fills() {
    let server = start_sbin().await;
    server.set_analyze(true).await;
    let mut tap = server.publisher.subscribe();
    let analyzer_updates = |tap: &mut _| drain_data(tap, "analyzer_update");

    let position = json!({"strategy": "compat", "symbol": "SBIN", "exchange": "NSE",
                          "product": "MIS"});
    let open = server.ok("openposition", position.clone()).await;
    let mut request = position.clone();
    request["api_type"] = "openposition".into();
    assert_eq!(
        analyzer_updates(&mut tap),
        [json!({"request": request, "response": open})]
    );

    let (code, refused) = server
        .call("placeorder", order("NOSUCHSYMBOL", "BUY", "1"))
        .await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(refused["mode"], "analyze", "{refused}");
    let updates = analyzer_updates(&mut tap);
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["request"]["api_type"], "placeorder");
    assert_eq!(updates[0]["request"]["symbol"], "NOSUCHSYMBOL");
    assert_eq!(updates[0]["response"], refused);

    let resting = server
        .ok("placeorder", limit("SBIN", "BUY", "1", "790"))
        .await;
    let updates = analyzer_updates(&mut tap);
    assert_eq!(updates.len(), 1, "placing a resting order: {updates:?}");
    assert_eq!(updates[0]["response"], resting);
    // A tick through the limit fills it: the UI's refresh signal.
    server.price("NSE", "SBIN", 789.0, 788.9, 789.1);
    let fill = common::next_events(&mut tap, 2).await;
    let names: Vec<&str> = fill.iter().map(|e| e.event_type()).collect();
    assert_eq!(names, ["order_update", "analyzer_update"]);
    assert_eq!(data(&fill[0])["order_status"], "complete");
    assert_eq!(
        data(&fill[1]),
        json!({"request": {"api_type": "sandbox.fill"}, "response": {}})
    );

    server.set_analyze(false).await;
    server.ok("openposition", position).await;
    let (code, _) = server
        .call("placeorder", order("NOSUCHSYMBOL", "BUY", "1"))
        .await;
    assert_eq!(code, 400);
    assert!(analyzer_updates(&mut tap).is_empty());
}
