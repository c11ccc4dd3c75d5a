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
    let mut client = Client::authenticated(&h.ws_url(), KEY_ALICE).await;
    for mode in [json!(1), json!(2), json!(3)] {
        client.subscribe("NSE", "SBIN", mode).await;
    }
    let mut publisher = h.publisher().await;
    let mut quote_tick = depth_tick("NSE", "SBIN", 813.0).view(TickMode::Quote);
    quote_tick.ltp = 813.0;
    publisher
        .publish(&depth_tick("NSE", "SBIN", 812.5))
        .unwrap();
    publisher.publish(&quote_tick).unwrap();
    publisher.publish(&Tick::ltp("NSE", "SBIN", 814.0)).unwrap();
    publisher
        .publish(&depth_tick("NSE", "SBIN", 815.0))
        .unwrap();

    let mut seen = Vec::new();
    loop {
        let m = client.recv_until(is_sbin_data).await;
        let ltp = m["data"]["ltp"].as_f64().unwrap();
        seen.push((m["mode"].as_u64().unwrap(), ltp));
        if ltp == 815.0 {
            break;
        }
    }
    assert_eq!(seen, [(3, 812.5), (2, 813.0), (1, 814.0), (3, 815.0)]);
    // Nothing else is queued for this client: the last tick produced one message.
    let extra = client
        .recv_within(std::time::Duration::from_millis(300))
        .await;
    assert!(extra.as_ref().is_none_or(|m| !is_sbin_data(m)), "{extra:?}");
    h.md.shutdown().await;
}

/// Upstream websocket_proxy/server.py `unsubscribe_client`: an instrument the client is not
/// subscribed to is listed under `successful` and the status is `success`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_what_is_not_subscribed_succeeds() {
    let h = start_default().await;
    let mut client = Client::authenticated(&h.ws_url(), KEY_ALICE).await;
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

    let mut client = Client::authenticated(&h.ws_url(), KEY_ALICE).await;
    client.send(json!({"action": "get_broker_info"})).await;
    let m = client.recv_until(|m| m["type"] == "broker_info").await;
    assert_eq!(m["status"], "success");
    assert_eq!(m["adapter_status"], "connected");
    assert!(m["broker"].is_string() && m["user_id"].is_string(), "{m}");
    h.md.shutdown().await;
}
