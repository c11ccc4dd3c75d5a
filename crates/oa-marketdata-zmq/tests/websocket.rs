//! Real sockets end to end: a ZeroMQ PUB -> the bus -> the WebSocket proxy -> tokio-tungstenite
//! clients, for every mode, the hierarchy, authentication, the protocol's errors,
//! unsubscribe semantics, order updates and the price cache.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    Client, KEY_ALICE, KEY_BOB, assert_includes, depth_tick, start_configured, start_default,
};
use oa_events_core::Event;
use oa_events_core::catalog::OrderUpdate;
use oa_marketdata_zmq::{MarketDataConfig, Tick, TickMode};
use serde_json::{Value, json};

fn is_market_data(symbol: &'static str) -> impl FnMut(&Value) -> bool {
    move |m| m["type"] == "market_data" && m["symbol"] == symbol
}

/// Publishes order update `A-{n}` of alice and `B-{n}` of bob.
fn publish_order_updates(h: &common::Harness, n: u32) {
    for (user, prefix) in [("alice", "A"), ("bob", "B")] {
        let update = order_update(&format!("{prefix}-{n}"));
        h.events.publish(Event::for_user(user, update));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_and_the_hierarchy() {
    let h = start_default().await;
    let url = h.ws_url();
    let mut ltp = Client::authenticated(&url, KEY_ALICE).await;
    let mut quote = Client::authenticated(&url, KEY_ALICE).await;
    let mut depth = Client::authenticated(&url, KEY_BOB).await;
    let reply = ltp.subscribe("NSE", "SBIN", json!(1)).await;
    assert_eq!(reply["subscriptions"][0]["mode"], "LTP");
    assert_eq!(reply["subscriptions"][0]["broker"], "simulator");
    quote.subscribe("NSE", "SBIN", json!("quote")).await;
    let reply = depth.subscribe("NSE", "SBIN", json!("Depth")).await;
    assert_eq!(reply["subscriptions"][0]["mode"], "Depth");
    assert_eq!(reply["subscriptions"][0]["depth"], 5);

    let mut publisher = h.publisher().await;

    // A DEPTH tick reaches all three, each at its own mode with its mode's fields.
    publisher
        .publish(&depth_tick("NSE", "SBIN", 812.5))
        .unwrap();
    let m = ltp.recv_until(is_market_data("SBIN")).await;
    assert_eq!(m["mode"], 1);
    assert_eq!(m["exchange"], "NSE");
    assert_eq!(m["broker"], "simulator");
    assert_eq!(m["data"]["ltp"], 812.5);
    assert_eq!(m["data"]["mode"], 1);
    assert!(m["data"]["ltt"].is_i64() && m["data"]["timestamp"].is_i64());
    assert!(m["data"].get("open").is_none() && m["data"].get("depth").is_none());

    let m = quote.recv_until(is_market_data("SBIN")).await;
    assert_eq!(m["mode"], 2);
    let quote_fields = "open high low close volume average_price total_buy_quantity \
                        total_sell_quantity last_quantity oi";
    for field in quote_fields.split_whitespace() {
        assert!(m["data"][field].is_number(), "{field} missing in {m}");
    }
    assert_eq!(m["data"]["volume"], 12345);
    assert!(m["data"].get("depth").is_none());

    let m = depth.recv_until(is_market_data("SBIN")).await;
    assert_eq!(m["mode"], 3);
    assert_eq!(m["data"]["depth"]["buy"].as_array().unwrap().len(), 5);
    assert_eq!(m["data"]["depth"]["sell"][0]["price"], 812.55);
    assert_eq!(m["data"]["depth"]["sell"][0]["quantity"], 20);
    assert_eq!(m["data"]["depth"]["sell"][0]["orders"], 1);

    // A QUOTE tick reaches LTP and Quote subscribers, not Depth ones.
    let mut quote_tick = depth_tick("NSE", "SBIN", 813.0).view(TickMode::Quote);
    quote_tick.ltp = 813.0;
    publisher.publish(&quote_tick).unwrap();
    // An LTP tick reaches only LTP subscribers.
    publisher.publish(&Tick::ltp("NSE", "SBIN", 814.0)).unwrap();
    // A final DEPTH tick marks the end for everybody.
    publisher
        .publish(&depth_tick("NSE", "SBIN", 815.0))
        .unwrap();

    let ltps: Vec<f64> = collect_until_ltp(&mut ltp, 815.0).await;
    assert_eq!(ltps, [813.0, 814.0, 815.0]);
    let quotes = collect_until_ltp(&mut quote, 815.0).await;
    assert_eq!(quotes, [813.0, 815.0]);
    let depths = collect_until_ltp(&mut depth, 815.0).await;
    assert_eq!(depths, [815.0]);

    // The price cache merged every tick.
    let snapshot = h.md.price_cache().snapshot("NSE", "SBIN").unwrap();
    assert_eq!(snapshot.ltp, 815.0);
    assert_eq!(snapshot.bid, Some(814.95));
    assert_eq!(snapshot.prev_close, 99.0);
    assert_eq!(h.md.price_cache().ltp("NSE", "SBIN"), Some(815.0));
    h.md.shutdown().await;
}

async fn collect_until_ltp(client: &mut Client, last: f64) -> Vec<f64> {
    let mut seen = Vec::new();
    loop {
        let m = client.recv_until(is_market_data("SBIN")).await;
        let ltp = m["data"]["ltp"].as_f64().unwrap();
        seen.push(ltp);
        if ltp == last {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_with_several_modes_gets_the_highest_view_and_underscored_topics_work() {
    let h = start_default().await;
    let mut client = h.client(KEY_ALICE).await;
    client.subscribe("NSE_INDEX", "NIFTY", json!(1)).await;
    client.subscribe("NSE_INDEX", "NIFTY", json!(3)).await;
    client.subscribe("CRYPTO", "BTC_USDT", json!(2)).await;
    let mut publisher = h.publisher().await;
    publisher
        .publish(&depth_tick("NSE_INDEX", "NIFTY", 24350.5))
        .unwrap();
    // One message, at the highest subscribed mode (compat.rs pins the whole rule).
    let first = client.recv_until(is_market_data("NIFTY")).await;
    assert_includes(&first, json!({"mode": 3, "exchange": "NSE_INDEX"}));
    publisher
        .publish(&depth_tick("CRYPTO", "BTC_USDT", 97250.5))
        .unwrap();
    let m = client.recv_until(is_market_data("BTC_USDT")).await;
    assert_eq!(
        (m["exchange"].as_str(), m["mode"].as_i64()),
        (Some("CRYPTO"), Some(2))
    );
    h.md.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_errors_and_the_4401_grace_close() {
    let h = start_configured(|config| config.ws_auth_grace = Duration::from_millis(1000)).await;
    let url = h.ws_url();

    let mut client = Client::connect(&url).await;
    client
        .send(json!({"action": "subscribe", "symbol": "SBIN", "exchange": "NSE", "mode": 1}))
        .await;
    let m = client.recv().await;
    assert_eq!(
        (m["status"].as_str(), m["code"].as_str()),
        (Some("error"), Some("NOT_AUTHENTICATED"))
    );
    assert!(m.get("type").is_none());
    client
        .send(json!({"action": "authenticate", "api_key": "wrong"}))
        .await;
    let m = client.recv().await;
    assert_eq!(m["code"], "AUTHENTICATION_ERROR");
    assert_eq!(m["message"], "Invalid API key");
    client.send(json!({"action": "auth"})).await;
    let m = client.recv().await;
    assert_eq!(m["code"], "AUTHENTICATION_ERROR");
    assert_eq!(m["message"], "API key is required");
    // The key store failing is a server error, not a wrong key.
    client
        .send(json!({"action": "authenticate", "api_key": common::KEY_STORE_DOWN}))
        .await;
    let m = client.recv().await;
    assert_eq!(m["code"], "SERVER_ERROR");
    // Ping works before authentication.
    client
        .send(json!({"action": "ping", "timestamp": 123}))
        .await;
    let m = client.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["client_timestamp"].as_i64()),
        (Some("pong"), Some(123))
    );
    // Still not authenticated when the grace period ends: closed with 4401.
    let frame = client
        .closed(Duration::from_secs(5))
        .await
        .expect("a close frame");
    assert_eq!(u16::from(frame.code), 4401);

    // Authenticated with the `apikey` spelling and the `type` alias: stays open.
    let mut client = Client::connect(&url).await;
    client
        .send(json!({"type": "authenticate", "apikey": KEY_ALICE}))
        .await;
    let expected = json!({"status": "success", "message": "Authentication successful",
                          "user_id": "alice", "broker": "simulator"});
    let m = client.recv().await;
    assert_includes(&m, expected);
    assert_eq!(
        m["supported_features"],
        json!({"ltp": true, "quote": true, "depth": true})
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.send(json!({"action": "ping"})).await;
    assert_eq!(client.recv().await["type"], "pong");
    h.md.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_carry_the_spec_codes() {
    let h = start_configured(|config| {
        config.max_symbols_per_websocket = 1;
        config.max_websocket_connections = 2;
    })
    .await;
    let mut client = h.client(KEY_ALICE).await;
    let expect_error = async |client: &mut Client, request: &str, code: &str| {
        client.send_text(request).await;
        let m = client.recv().await;
        assert_eq!(m["status"], "error", "{request} -> {m}");
        assert_eq!(m["code"], code, "{request} -> {m}");
        assert!(m["message"].as_str().is_some_and(|s| !s.is_empty()));
        m
    };
    expect_error(&mut client, "{this is not json", "INVALID_JSON").await;
    expect_error(&mut client, "[1,2,3]", "INVALID_JSON").await;
    let m = expect_error(&mut client, r#"{"action":"fly"}"#, "INVALID_ACTION").await;
    assert!(m["message"].as_str().unwrap().contains("fly"));
    expect_error(&mut client, r#"{"symbol":"SBIN"}"#, "INVALID_ACTION").await;
    let m = expect_error(
        &mut client,
        r#"{"action":"subscribe","symbol":"SBIN","exchange":"NSE","mode":"full","request_id":"r-1"}"#,
        "INVALID_MODE",
    )
    .await;
    assert_eq!(m["request_id"], "r-1");
    expect_error(
        &mut client,
        r#"{"action":"subscribe","mode":1}"#,
        "INVALID_PARAMETERS",
    )
    .await;
    expect_error(
        &mut client,
        r#"{"action":"unsubscribe"}"#,
        "INVALID_PARAMETERS",
    )
    .await;

    // Unknown symbols and exchanges are rejected per symbol, with a clear message.
    client
        .send(
            json!({"action": "subscribe", "mode": 1, "request_id": 42, "symbols": [
                {"symbol": "SBIN", "exchange": "NSE"},
                {"symbol": "NOSUCH", "exchange": "NSE"},
                {"symbol": "AAPL", "exchange": "NASDAQ"},
            ]}),
        )
        .await;
    let m = client.recv().await;
    assert_eq!(m["type"], "subscribe");
    assert_eq!(m["status"], "partial");
    assert_eq!(m["request_id"], 42);
    assert_eq!(m["message"], "Subscription processing complete");
    let subs = m["subscriptions"].as_array().unwrap();
    assert_eq!(subs[0]["status"], "success");
    assert_eq!(subs[1]["status"], "error");
    assert_eq!(subs[1]["code"], "SYMBOL_NOT_FOUND");
    assert!(subs[1]["message"].as_str().unwrap().contains("NSE:NOSUCH"));
    assert_eq!(subs[2]["code"], "INVALID_PARAMETERS");
    assert!(subs[2]["message"].as_str().unwrap().contains("NASDAQ"));

    // Capacity: 1 symbol x 2 connections. The user's second connection shares it.
    let mut other = h.client(KEY_ALICE).await;
    other.subscribe("NSE", "INFY", json!(1)).await;
    // The same instrument in another mode does not count again.
    other.subscribe("NSE", "SBIN", json!(3)).await;
    other
        .send(json!({"action": "subscribe", "symbols": [{"symbol": "TCS", "exchange": "NSE"}], "mode": 1, "request_id": "cap"}))
        .await;
    let m = other.recv().await;
    assert_eq!(m["code"], "MAX_CAPACITY_REACHED", "{m}");
    assert_eq!(m["request_id"], "cap");
    let m = other.recv().await;
    assert_eq!(m["type"], "subscribe");
    assert_eq!(m["subscriptions"][0]["code"], "MAX_CAPACITY_REACHED");
    // Another user has its own capacity.
    let mut bob = h.client(KEY_BOB).await;
    bob.subscribe("NSE", "TCS", json!(1)).await;
    // Freeing capacity lets the user subscribe again.
    other
        .send(json!({"action": "unsubscribe", "symbol": "INFY", "exchange": "NSE", "mode": 1}))
        .await;
    assert_eq!(other.recv().await["status"], "success");
    other.subscribe("NSE", "TCS", json!(1)).await;

    // Ping with request fields echoed.
    client
        .send(json!({"action": "ping", "timestamp": 1700000000000_i64, "_pingId": "p1"}))
        .await;
    let m = client.recv().await;
    assert_eq!(m["type"], "pong");
    assert_eq!(m["status"], "success");
    assert_eq!(m["client_timestamp"], 1700000000000_i64);
    assert_eq!(m["_pingId"], "p1");
    assert!(m["server_timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    h.md.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_semantics() {
    let h = start_default().await;
    let mut client = h.client(KEY_ALICE).await;
    for (symbol, mode) in [("SBIN", 1), ("SBIN", 2), ("INFY", 2)] {
        client.subscribe("NSE", symbol, json!(mode)).await;
    }
    assert_eq!(h.md.stats().proxy.subscriptions, 3);

    // Missing mode means Quote (2).
    client
        .send(json!({"action": "unsubscribe", "symbols": [{"symbol": "SBIN", "exchange": "NSE"}], "request_id": "u1"}))
        .await;
    let expected = json!({"type": "unsubscribe", "status": "success",
                          "message": "Unsubscription processing complete", "request_id": "u1"});
    let m = client.recv().await;
    assert_includes(&m, expected);
    assert_eq!(m["successful"][0]["mode"], "Quote");
    assert_eq!(m["failed"], json!([]));

    let mut publisher = h.publisher().await;
    publisher
        .publish(&depth_tick("NSE", "SBIN", 900.0))
        .unwrap();
    publisher
        .publish(&depth_tick("NSE", "INFY", 1500.0))
        .unwrap();
    // SBIN now only at LTP; INFY at Quote.
    let sbin = client.recv_until(is_market_data("SBIN")).await;
    assert_eq!(sbin["mode"], 1);
    let infy = client.recv_until(is_market_data("INFY")).await;
    assert_eq!(infy["mode"], 2);

    // Unsubscribing what is not subscribed succeeds, as upstream (compat.rs pins it).
    client
        .send(json!({"action": "unsubscribe", "symbols": [
            {"symbol": "SBIN", "exchange": "NSE", "mode": "Depth"},
            {"symbol": "SBIN", "exchange": "NSE", "mode": 1},
        ]}))
        .await;
    let m = client.recv_until(|m| m["type"] == "unsubscribe").await;
    assert_eq!(m["status"], "success");
    assert_eq!(m["successful"][0]["mode"], "Depth");
    assert_eq!(m["successful"][1]["mode"], "LTP");
    // A bad mode still fails its entry.
    client
        .send(json!({"action": "unsubscribe", "symbols": [
            {"symbol": "TCS", "exchange": "NSE", "mode": "Tick"}]}))
        .await;
    let m = client.recv_until(|m| m["type"] == "unsubscribe").await;
    assert_eq!(m["status"], "error", "{m}");

    client.send(json!({"action": "unsubscribe_all"})).await;
    let m = client.recv_until(|m| m["type"] == "unsubscribe").await;
    assert_eq!(m["status"], "success");
    assert_eq!(m["successful"].as_array().unwrap().len(), 1);
    assert_eq!(m["successful"][0]["symbol"], "INFY");
    assert_eq!(h.md.stats().proxy.subscriptions, 0);

    // Nothing arrives any more, while the bus keeps flowing.
    let before = h.md.stats().proxy.ticks_dispatched;
    publisher
        .publish(&depth_tick("NSE", "INFY", 1501.0))
        .unwrap();
    h.wait_dispatched(before + 1).await;
    client.assert_silent_for(Duration::from_millis(300)).await;
    h.md.shutdown().await;
}

fn order_update(orderid: &str) -> OrderUpdate {
    OrderUpdate {
        orderid: orderid.into(),
        ..OrderUpdate::example()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_orders_delivers_the_users_order_updates_only() {
    let h = start_default().await;
    let mut alice = h.client(KEY_ALICE).await;
    let mut bob = h.client(KEY_BOB).await;
    alice.send(json!({"action": "subscribe_orders"})).await;
    assert_eq!(alice.recv().await["status"], "success");
    bob.send(json!({"action": "subscribe_orders"})).await;
    assert_eq!(bob.recv().await["status"], "success");

    publish_order_updates(&h, 1);
    let m = alice.recv().await;
    assert_eq!(m["type"], "order_update");
    assert_eq!(m["orderid"], "A-1");
    assert_eq!(m["user_id"], "alice");
    assert_eq!(m["order_status"], "complete");
    assert_eq!(m["quantity"], 10);
    assert_eq!(m["average_price"], 812.5);
    assert_eq!(m["broker"], "sandbox");
    let m = bob.recv().await;
    assert_eq!(m["orderid"], "B-1");

    alice.send(json!({"action": "unsubscribe_orders"})).await;
    assert_eq!(alice.recv().await["type"], "unsubscribe_orders");
    publish_order_updates(&h, 2);
    assert_eq!(bob.recv().await["orderid"], "B-2");
    alice.assert_silent_for(Duration::from_millis(300)).await;
    h.md.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_contract_download_is_announced_at_start() {
    let events = oa_events_core::EventPublisher::builder().build();
    let mut tap = events.subscribe();
    let md = oa_marketdata_zmq::start(
        MarketDataConfig::ephemeral(),
        std::sync::Arc::new(common::MapVerifier::new()),
        events.clone(),
        "simulator".into(),
    )
    .await
    .unwrap();
    let envelope = tap.recv().await.unwrap();
    assert_eq!(envelope.event_type(), "master_contract_download");
    let data = serde_json::to_value(&envelope.data).unwrap();
    assert_eq!(data["status"], "success");
    assert_eq!(data["symbols_count"], md.symbols().len() as u64);
    md.shutdown().await;

    // A broken symbol master stops start-up and is announced as an error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("symbols.csv");
    std::fs::write(&path, "exchange,symbol\nNOPE,X\n").unwrap();
    let result = oa_marketdata_zmq::start(
        MarketDataConfig {
            symbol_master_csv: Some(path),
            ..MarketDataConfig::ephemeral()
        },
        std::sync::Arc::new(common::MapVerifier::new()),
        events.clone(),
        "simulator".into(),
    )
    .await;
    assert!(result.is_err());
    let data = serde_json::to_value(&tap.recv().await.unwrap().data).unwrap();
    assert_eq!(data["status"], "error");
    assert!(data["message"].as_str().unwrap().contains("NOPE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_close_silent_clients_only() {
    let h = start_configured(|config| {
        config.ws_ping_interval = Duration::from_millis(300);
        config.ws_ping_timeout = Duration::from_millis(700);
    })
    .await;
    let mut silent = h.client(KEY_ALICE).await;
    let mut lively = h.client(KEY_BOB).await;
    // The lively client reads (tungstenite answers pings while reading); the silent one does not.
    let reader = tokio::spawn(async move {
        lively.assert_silent_for(Duration::from_millis(2500)).await;
        lively.send(json!({"action": "ping"})).await;
        assert_eq!(lively.recv().await["type"], "pong");
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    reader.await.unwrap();
    let frame = silent
        .closed(Duration::from_secs(5))
        .await
        .expect("a close frame");
    assert_eq!(u16::from(frame.code), 1011);
    h.md.shutdown().await;
}
