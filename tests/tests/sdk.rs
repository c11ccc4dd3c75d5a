//! The official OpenAlgo Python SDK (openalgo==1.0.47), unmodified, against the real server:
//! its REST client and its WebSocket feed client.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::{PeerProcess, TestServer, run_python_script};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn start_server() -> TestServer {
    TestServer::start(&[
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("SMART_ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ])
    .unwrap()
}

/// The SDK's session, and its orders' events where the suite's mode sends them: every live
/// order in the book has its events on Socket.IO (SOCKETIO, BOTH) and on the events topic
/// (KAFKA, BOTH), and nowhere else.
#[tokio::test(flavor = "multi_thread")]
async fn rest_client_runs_unmodified() {
    let server = start_server();
    let route = server.events.clone();
    let mut socketio = route.socketio().then(|| {
        PeerProcess::socketio_events(
            &server.http_url(),
            &server.admin_key,
            &[("OA_TIMEOUT_S", "120")],
        )
        .unwrap()
    });
    let output = run_python_script(
        "rest_sdk.py",
        &[
            ("OA_HOST", server.http_url()),
            ("OA_APIKEY", server.admin_key.clone()),
        ],
    )
    .unwrap_or_else(|error| panic!("{error:#}\n--- server log\n{}", server.log()));
    assert!(output.contains("all SDK checks passed"), "{output}");

    let (status, book) = server
        .post("orderbook", json!({"apikey": server.admin_key}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{book}");
    let order_ids: Vec<String> = book["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|order| order["orderid"].as_str().map(str::to_string))
        .collect();
    assert!(
        order_ids.len() >= 4,
        "the SDK session placed orders: {book}"
    );
    // Every order in the book (square-offs included) reports its status in an order_update;
    // orders the SDK placed also have their order_event.
    let has_every_order_event = |events: &[(String, Value)]| {
        let has = |event: &str, id: &str| {
            events
                .iter()
                .any(|(name, data)| name == event && data["orderid"] == id)
        };
        order_ids.iter().all(|id| has("order_update", id))
            && order_ids.iter().filter(|id| has("order_event", id)).count() >= 4
    };

    if let Some(peer) = &mut socketio {
        while !has_every_order_event(&peer.events()) {
            peer.wait_for(WAIT, |line| line["type"] == "event")
                .unwrap_or_else(|error| {
                    panic!("Socket.IO: not every order's events arrived ({order_ids:?}): {error:#}")
                });
        }
        assert!(has_every_order_event(&peer.events()));
    } else {
        server.assert_socketio_not_served(&server.admin_key);
    }
    if route.kafka() {
        let events = server.kafka_events("admin", has_every_order_event);
        assert!(has_every_order_event(&events));
    } else if route.kafka.is_some() {
        server.assert_no_kafka_records();
    }
}

#[test]
fn feed_client_runs_unmodified() {
    let server = start_server();
    let output = run_python_script(
        "marketdata_sdk_feed.py",
        &[
            ("OA_WS_URL", server.ws_url()),
            ("OA_API_KEY", server.admin_key.clone()),
        ],
    )
    .unwrap_or_else(|error| panic!("{error:#}\n--- server log\n{}", server.log()));
    assert!(!output.contains("FAIL"), "{output}");
}
