//! The OpenAlgo compatibility suite (market-data WebSocket): real ZeroMQ publishers and
//! WebSocket clients against the proxy, asserting what upstream's
//! websocket_proxy/server.py sends. docs/compatibility.md lists where oa deliberately
//! differs.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, KEY_ALICE, depth_tick, start_default};
use oa_marketdata_zmq::{Tick, TickMode};
use serde_json::{Value, json};

fn is_sbin_data(m: &Value) -> bool {
    m["type"] == "market_data" && m["symbol"] == "SBIN"
}

/// Upstream websocket_proxy/server.py `zmq_listener`: a tick of mode M goes to each client
/// once, tagged with the highest mode the client subscribed at or below M (the SDK
/// subscribes LTP, Quote and Depth of one symbol on one connection and gets one message per
/// tick, not three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_client_per_tick_at_the_highest_subscribed_mode() {
    let h = start_default().await;
    let mut client = h.client(KEY_ALICE).await;
    for mode in [json!(1), json!(2), json!(3)] {
        client.subscribe("NSE", "SBIN", mode).await;
    }
    let mut publisher = h.publisher().await;
    let mut quote_tick = depth_tick("NSE", "SBIN", 813.0).view(TickMode::Quote);
    quote_tick.ltp = 813.0;
    let ticks = [
        (depth_tick("NSE", "SBIN", 812.5), 3),
        (quote_tick, 2),
        (Tick::ltp("NSE", "SBIN", 814.0), 1),
        (depth_tick("NSE", "SBIN", 815.0), 3),
    ];
    // One tick at a time (the dispatcher may coalesce ticks queued together).
    for (tick, mode) in ticks {
        publisher.publish(&tick).unwrap();
        let m = client.recv_until(is_sbin_data).await;
        assert_eq!(
            (m["mode"].as_u64(), m["data"]["ltp"].as_f64()),
            (Some(mode), Some(tick.ltp)),
            "{m}"
        );
        // Exactly one message for this tick.
        let extra = client
            .recv_within(std::time::Duration::from_millis(200))
            .await;
        assert!(extra.as_ref().is_none_or(|m| !is_sbin_data(m)), "{extra:?}");
    }
    h.md.shutdown().await;
}

/// Upstream websocket_proxy/server.py `unsubscribe_client`: an instrument the client is not
/// subscribed to is listed under `successful` and the status is `success`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_what_is_not_subscribed_succeeds() {
    let h = start_default().await;
    let mut client = h.client(KEY_ALICE).await;
    client
        .send(json!({"action": "unsubscribe", "symbol": "TCS", "exchange": "NSE", "mode": 1}))
        .await;
    let m = client.recv_until(|m| m["type"] == "unsubscribe").await;
    assert_eq!(m["status"], "success", "{m}");
    assert_eq!(m["message"], "Unsubscription processing complete");
    assert_eq!(m["failed"], json!([]));
    assert_eq!(m["successful"][0]["symbol"], "TCS");
    assert_eq!(m["successful"][0]["status"], "success");
    h.md.shutdown().await;
}

/// Upstream websocket_proxy/server.py `get_broker_info` (authenticated) and
/// `get_supported_brokers` (no authentication needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_broker_info_and_get_supported_brokers() {
    let h = start_default().await;
    let mut anonymous = Client::connect(&h.ws_url()).await;
    anonymous
        .send(json!({"action": "get_supported_brokers"}))
        .await;
    assert_eq!(
        anonymous.recv().await,
        json!({"type": "supported_brokers", "status": "success", "brokers": ["simulator"], "count": 1})
    );
    anonymous.send(json!({"action": "get_broker_info"})).await;
    let m = anonymous.recv().await;
    assert_eq!(m["code"], "NOT_AUTHENTICATED", "{m}");

    let mut client = h.client(KEY_ALICE).await;
    client.send(json!({"action": "get_broker_info"})).await;
    let m = client.recv_until(|m| m["type"] == "broker_info").await;
    assert_eq!(m["status"], "success");
    assert_eq!(m["adapter_status"], "connected");
    assert!(m["broker"].is_string() && m["user_id"].is_string(), "{m}");
    h.md.shutdown().await;
}

/// Upstream websocket_proxy/server.py `zmq_listener`: topic modes in any case
/// (websocket_proxy/mode_utils.py `normalize_mode`), `CACHE_INVALIDATE_*` skipped (not a
/// malformed tick), and `{BROKER}_{USER}_orders` payloads (subscribers/wsproxy_subscriber.py)
/// relayed to the user's `subscribe_orders` clients only (`_handle_order_update`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_takes_any_case_modes_order_relays_and_cache_invalidations() {
    let h = start_default().await;
    let mut alice = h.client(KEY_ALICE).await;
    let mut bob = Client::authenticated(&h.ws_url(), common::KEY_BOB).await;
    alice.subscribe("NSE", "SBIN", json!(2)).await;
    for client in [&mut alice, &mut bob] {
        client.send(json!({"action": "subscribe_orders"})).await;
        client.recv_until(|m| m["type"] == "subscribe_orders").await;
    }
    let publisher = h.publisher().await;
    let before = h.md.stats().bus;

    let quote = depth_tick("NSE", "SBIN", 901.0).view(TickMode::Quote);
    publisher
        .publish_frames(&[b"NSE_SBIN_quote", &quote.to_json_bytes()])
        .unwrap();
    let m = alice.recv_until(is_sbin_data).await;
    assert_eq!(
        (m["mode"].as_u64(), m["data"]["ltp"].as_f64()),
        (Some(2), Some(901.0))
    );

    publisher
        .publish_frames(&[b"CACHE_INVALIDATE_AUTH_alice", br#"{"user_id":"alice"}"#])
        .unwrap();
    let update = json!({"type": "order_update", "user_id": "alice", "mode": "live",
        "broker": "zerodha", "orderid": "250101000001", "symbol": "SBIN", "exchange": "NSE",
        "action": "BUY", "quantity": 1, "order_status": "complete"});
    publish_json(&publisher, b"ZERODHA_alice_orders", &update);
    let relayed = alice.recv_until(|m| m["type"] == "order_update").await;
    assert_eq!(relayed, update);
    // The bus thread counts a relay just after handing it over: wait for the count.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.md.stats().bus.orders_relayed == before.orders_relayed
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let after = h.md.stats().bus;
    assert_eq!(after.malformed_total(), before.malformed_total());
    assert_eq!(after.ignored - before.ignored, 1);
    assert_eq!(after.orders_relayed - before.orders_relayed, 1);
    let other = bob.recv_within(std::time::Duration::from_millis(300)).await;
    assert!(other.is_none(), "bob got {other:?}");
    h.md.shutdown().await;
}

/// Publishes `payload` as the JSON frame of `topic`, as an external adapter does.
fn publish_json(publisher: &oa_marketdata_zmq::Publisher, topic: &[u8], payload: &Value) {
    publisher
        .publish_frames(&[topic, payload.to_string().as_bytes()])
        .unwrap();
}

/// Upstream websocket_proxy/server.py `zmq_listener` forwards the adapter's payload whole as
/// `data`, so keys oa's tick model lacks reach clients: broker/angel/streaming/angel_adapter.py
/// `_normalize_market_data` sends `last_trade_quantity` in Quote mode and `upper_circuit` /
/// `lower_circuit` in Depth mode; broker/zerodha/streaming/zerodha_adapter.py sends
/// `price_change`, `price_change_percent`, `open_interest` and `exchange_timestamp`. oa
/// passes them through untouched at the tick's mode (Quote and Depth for a Depth tick); an
/// LTP-tagged message leaves them out with the other Quote fields (docs/compatibility.md). A
/// Depth subscriber gets Depth ticks only, as upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_fields_the_model_lacks_reach_clients_untouched() {
    let h = start_default().await;
    let mut quote = h.client(KEY_ALICE).await;
    quote.subscribe("NSE", "SBIN", json!(2)).await;
    let mut ltp = h.client(KEY_ALICE).await;
    ltp.subscribe("NSE", "SBIN", json!(1)).await;
    let mut depth = h.client(KEY_ALICE).await;
    depth.subscribe("NSE", "SBIN", json!(3)).await;
    let publisher = h.publisher().await;

    let zerodha_quote = json!({"symbol": "SBIN", "exchange": "NSE", "mode": "quote",
        "ltp": 812.5, "ltt": 1_769_682_645_000_i64, "timestamp": 1_769_682_645_100_i64,
        "volume": 1000, "last_quantity": 5, "average_price": 810.25, "total_buy_quantity": 10,
        "total_sell_quantity": 20, "open": 800.0, "high": 815.0, "low": 799.0, "close": 805.0,
        "price_change": 7.5, "price_change_percent": 0.93, "open_interest": 0,
        "exchange_timestamp": 1_769_682_645_000_i64, "last_trade_quantity": 5,
        "nested": {"list": [1, "two", null], "text": "a \"quoted\" \u{e9}"}});
    publish_json(&publisher, b"NSE_SBIN_QUOTE", &zerodha_quote);
    let m = quote.recv_until(is_sbin_data).await;
    assert_eq!(m["mode"], 2, "{m}");
    for key in [
        "price_change",
        "price_change_percent",
        "open_interest",
        "exchange_timestamp",
        "last_trade_quantity",
        "nested",
    ] {
        assert_eq!(m["data"][key], zerodha_quote[key], "{key}: {m}");
    }
    assert_eq!(m["data"]["average_price"], 810.25);
    let m = ltp.recv_until(is_sbin_data).await;
    assert_eq!(m["mode"], 1, "{m}");
    assert!(m["data"].get("price_change").is_none(), "{m}");
    assert!(m["data"].get("open").is_none(), "{m}");

    let angel_depth = json!({"ltp": 813.0, "ltt": 1_769_682_646_000_i64, "volume": 1001,
        "open": 800.0, "high": 815.0, "low": 799.0, "close": 805.0, "last_quantity": 1,
        "oi": 0, "upper_circuit": 893.5, "lower_circuit": 731.1,
        "depth": {"buy": [{"price": 812.95, "quantity": 10, "orders": 2}],
                  "sell": [{"price": 813.05, "quantity": 4, "orders": 1}]},
        "symbol": "SBIN", "exchange": "NSE", "mode": 3, "timestamp": 1_769_682_646_100_i64});
    publish_json(&publisher, b"NSE_SBIN_DEPTH", &angel_depth);
    let m = depth.recv_until(is_sbin_data).await;
    assert_eq!(m["mode"], 3, "{m}");
    assert_eq!(m["data"]["upper_circuit"], 893.5, "{m}");
    assert_eq!(m["data"]["lower_circuit"], 731.1, "{m}");
    assert_eq!(m["data"]["depth"], angel_depth["depth"], "{m}");
    let m = quote.recv_until(is_sbin_data).await;
    assert_eq!(
        (m["mode"].as_u64(), &m["data"]["upper_circuit"]),
        (Some(2), &json!(893.5))
    );
    assert!(m["data"].get("depth").is_none(), "{m}");
    let m = ltp.recv_until(is_sbin_data).await;
    assert!(m["data"].get("upper_circuit").is_none(), "{m}");
    // Nothing above counted as malformed.
    assert_eq!(h.md.stats().bus.malformed_total(), 0);
    h.md.shutdown().await;
}

/// The topic's mode is the tick's mode, whatever the payload's `mode` says: upstream's proxy
/// reads the mode from the topic only (websocket_proxy/server.py, `mode_str = parts[-1]`),
/// and Angel's adapter (broker/angel/streaming/angel_adapter.py) publishes a quote message of
/// a depth subscription on a `_QUOTE` topic with the subscription's `"mode": 3` in its
/// payload. oa used to drop such a message as a mismatch.
#[tokio::test]
async fn the_topic_mode_wins_over_an_adapters_payload_mode() {
    let h = start_default().await;
    let mut quote = h.client(KEY_ALICE).await;
    quote.subscribe("NSE", "SBIN", json!(2)).await;
    let publisher = h.publisher().await;
    let angel_quote = json!({"ltp": 814.0, "volume": 1002, "open": 800.0, "high": 815.0,
        "low": 799.0, "close": 805.0, "symbol": "SBIN", "exchange": "NSE", "mode": 3,
        "timestamp": 1_769_682_647_100_i64});
    publish_json(&publisher, b"NSE_SBIN_QUOTE", &angel_quote);
    let m = quote.recv_until(is_sbin_data).await;
    assert_eq!(m["mode"], 2, "{m}");
    assert_eq!(m["data"]["ltp"], 814.0, "{m}");
    assert_eq!(m["data"]["open"], 800.0, "{m}");
    assert_eq!(h.md.stats().bus.malformed_total(), 0);
}
