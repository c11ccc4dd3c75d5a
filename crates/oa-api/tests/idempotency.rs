//! `Idempotency-Key` over real HTTP and a real SQLite file: a retry returns the first response
//! and changes nothing, a reused key with another request is refused, concurrent retries wait
//! their turn, records survive a restart and expire after 24 hours.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Server, drain, start, start_with};
use serde_json::{Value, json};

fn order(symbol: &str, quantity: &str) -> Value {
    json!({"strategy": "test", "exchange": "NSE", "symbol": symbol, "action": "BUY",
           "quantity": quantity, "pricetype": "MARKET", "product": "MIS"})
}

/// Posts `body` (with `apikey`) and the header; returns status, replay header and body.
async fn keyed(
    server: &Server,
    path: &str,
    key: &str,
    mut body: Value,
) -> (u16, Option<String>, Value) {
    body["apikey"] = Value::from(server.key.clone());
    let url = format!("{}/api/v1/{path}", server.url);
    oa_e2e::post_with_idempotency_key(&server.client, &url, key, &body)
        .await
        .unwrap()
}

async fn order_count(server: &Server) -> usize {
    let book = server.ok("orderbook", json!({})).await;
    book["data"]["orders"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_retry_returns_the_first_response_and_places_nothing_more() {
    let server = start().await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let mut tap = server.publisher.subscribe();
    let (status, replayed, first) =
        keyed(&server, "placeorder", "\"retry-1\"", order("SBIN", "10")).await;
    assert_eq!((status, replayed.as_deref()), (200, None), "{first}");
    assert_eq!(first["status"], "success");
    let first_events = drain(&mut tap);
    assert_eq!(first_events.len(), 2, "order_event and order_update");

    // The same key, quoted or bare, and the body's keys in another order: a replay.
    let mut reordered = json!({"quantity": "10", "product": "MIS"});
    for (key, value) in order("SBIN", "10").as_object().unwrap() {
        reordered[key] = value.clone();
    }
    for key in ["\"retry-1\"", "retry-1"] {
        let (status, replayed, again) = keyed(&server, "placeorder", key, reordered.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(replayed.as_deref(), Some("true"));
        assert_eq!(again, first);
    }
    assert_eq!(order_count(&server).await, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain(&mut tap).is_empty(), "a replay publishes no event");

    // Without the header (the SDK), every request is a new order, as before.
    server.ok("placeorder", order("SBIN", "10")).await;
    server.ok("placeorder", order("SBIN", "10")).await;
    assert_eq!(order_count(&server).await, 3);
}

#[tokio::test]
async fn a_key_reused_with_another_request_gets_422_and_bad_keys_400() {
    let server = start().await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let (status, _, _) = keyed(&server, "placeorder", "k1", order("SBIN", "10")).await;
    assert_eq!(status, 200);
    let (status, _, body) = keyed(&server, "placeorder", "k1", order("SBIN", "11")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["status"], "error");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already used with a different request"),
        "{body}"
    );
    let (status, _, _) = keyed(&server, "cancelallorder", "k1", json!({"strategy": "test"})).await;
    assert_eq!(status, 422, "another endpoint with the same key");
    assert_eq!(order_count(&server).await, 1);

    let (status, _, body) =
        keyed(&server, "placeorder", &"k".repeat(256), order("SBIN", "1")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "Idempotency-Key: expected at most 255 characters, got 256"
    );
    let (status, _, _) = keyed(&server, "placeorder", &"k".repeat(255), order("SBIN", "1")).await;
    assert_eq!(status, 200, "255 characters are accepted");
    assert_eq!(order_count(&server).await, 2);
}

#[tokio::test]
async fn errors_decided_by_the_broker_are_replayed_with_their_status() {
    let server = start().await;
    let cancel_missing = || {
        let body = json!({"strategy": "test", "orderid": "999"});
        keyed(&server, "cancelorder", "cancel-1", body)
    };
    let (status, _, first) = cancel_missing().await;
    assert_eq!(status, 404, "{first}");
    let (status, replayed, again) = cancel_missing().await;
    assert_eq!((status, replayed.as_deref()), (404, Some("true")));
    assert_eq!(again, first);
    // A request refused before the service ran (bad field) is not stored: fixing it with
    // the same key runs it.
    let (status, _, _) = keyed(&server, "placeorder", "fix-1", order("NOPE", "1")).await;
    assert_eq!(status, 400);
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let (status, replayed, _) = keyed(&server, "placeorder", "fix-1", order("SBIN", "1")).await;
    assert_eq!((status, replayed), (200, None));
}

/// A server whose simulated broker takes `ack_latency` to answer, SBIN quoted.
async fn start_slow(ack_latency: Duration) -> Server {
    let server =
        common::start_configured(|config| config.simulator.ack_latency = ack_latency).await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    server
}

#[tokio::test]
async fn a_concurrent_retry_gets_409_while_the_first_runs() {
    // The broker answers after 2 s, so the two requests overlap even on a loaded machine; the
    // key is verified and cached first, so neither waits on the key hash.
    let server = start_slow(Duration::from_millis(2000)).await;
    server.ok("orderbook", json!({})).await;
    let (a, b) = tokio::join!(
        keyed(&server, "placeorder", "same", order("SBIN", "1")),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            keyed(&server, "placeorder", "same", order("SBIN", "1")).await
        }
    );
    // Whichever claims the key first runs; the other is told it is still being processed.
    let (first, second) = if a.0 == 409 { (b, a) } else { (a, b) };
    assert_eq!(first.0, 200, "{:?}", first.2);
    assert_eq!(second.0, 409, "{:?}", second.2);
    assert!(
        second.2["message"]
            .as_str()
            .unwrap()
            .contains("still being processed")
    );
    let (status, replayed, body) = keyed(&server, "placeorder", "same", order("SBIN", "1")).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(body, first.2);
    assert_eq!(order_count(&server).await, 1);
}

#[tokio::test]
async fn a_client_that_gives_up_still_gets_its_order_once() {
    let server = start_slow(Duration::from_millis(1500)).await;
    server.ok("orderbook", json!({})).await; // the key is verified and cached
    // The client times out before the answer and drops the connection...
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        keyed(&server, "placeorder", "timeout-1", order("SBIN", "1")),
    )
    .await;
    assert!(gave_up.is_err());
    // ...and retries: 409 while the first still runs, then the first's response.
    let mut answer = keyed(&server, "placeorder", "timeout-1", order("SBIN", "1")).await;
    assert_eq!(
        answer.0, 409,
        "the first request still runs: {:?}",
        answer.2
    );
    for _ in 0..100 {
        if answer.0 != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = keyed(&server, "placeorder", "timeout-1", order("SBIN", "1")).await;
    }
    assert_eq!(
        (answer.0, answer.1.as_deref()),
        (200, Some("true")),
        "{:?}",
        answer.2
    );
    assert_eq!(order_count(&server).await, 1);
}

#[tokio::test]
async fn baskets_splits_and_the_analyzer_toggle_are_idempotent() {
    let server = start().await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    server.price("NSE", "INFY", 1520.0, 1519.9, 1520.1);
    let basket = json!({"strategy": "test", "orders": [
        {"exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1",
         "pricetype": "MARKET", "product": "MIS"},
        {"exchange": "NSE", "symbol": "INFY", "action": "BUY", "quantity": "1",
         "pricetype": "MARKET", "product": "MIS"}]});
    let (status, _, first) = keyed(&server, "basketorder", "b-1", basket.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, replayed, again) = keyed(&server, "basketorder", "b-1", basket).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(again, first);
    assert_eq!(order_count(&server).await, 2);

    let mut split = order("SBIN", "10");
    split["splitsize"] = json!("3");
    let (status, _, first) = keyed(&server, "splitorder", "s-1", split.clone()).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["results"].as_array().unwrap().len(), 4);
    let (_, replayed, again) = keyed(&server, "splitorder", "s-1", split).await;
    assert_eq!((replayed.as_deref(), again), (Some("true"), first));
    assert_eq!(order_count(&server).await, 6);

    let (status, _, first) = keyed(&server, "analyzer/toggle", "t-1", json!({"mode": true})).await;
    assert_eq!(status, 200, "{first}");
    server.set_analyze(false).await;
    let (_, replayed, again) =
        keyed(&server, "analyzer/toggle", "t-1", json!({"mode": true})).await;
    assert_eq!((replayed.as_deref(), again), (Some("true"), first));
    let status = server.ok("analyzer", json!({})).await;
    assert_eq!(status["data"]["mode"], "live", "the replay changed nothing");
}

#[tokio::test]
async fn records_survive_a_restart_and_expire_after_24_hours() {
    let dir = common::store_dir();
    let config = common::config(&dir);
    let server = start_with(dir, config.clone()).await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let (_, _, first) = keyed(&server, "placeorder", "kept", order("SBIN", "1")).await;
    let Server { dir, key, .. } = server;

    // Age another record past 24 hours, as if written yesterday.
    let day_ago = chrono::Utc::now().timestamp_millis() - 25 * 3_600_000;
    dir.execute(&format!(
        "INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, status, response, created_ms)
         VALUES ('admin', 'old', 'x', 200, '{{}}', {day_ago})"
    ));
    let server = common::restart(dir, config.clone(), key).await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let (status, replayed, again) = keyed(&server, "placeorder", "kept", order("SBIN", "1")).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(again, first);
    // The expired record no longer answers: the request runs, and its fresh record replaces
    // the old one.
    let (status, replayed, _) = keyed(&server, "placeorder", "old", order("SBIN", "2")).await;
    assert_eq!((status, replayed), (200, None));
    let fingerprint = server
        .dir
        .query_rows("SELECT fingerprint FROM idempotency_keys WHERE idem_key = 'old'");
    assert_ne!(fingerprint, ["x"]);
    // Expired rows are pruned in the background.
    server
        .dir
        .execute("UPDATE idempotency_keys SET created_ms = 0 WHERE idem_key = 'old'");
    let Server { dir, key, .. } = server;
    let server = common::restart(dir, config, key).await;
    server.ok("orderbook", json!({})).await;
    let left = server
        .dir
        .query_i64("SELECT COUNT(*) FROM idempotency_keys WHERE idem_key = 'old'");
    assert_eq!(left, 0, "pruned at the first batch after start");
    drop(server);
}
