//! The risk-service example (`crates/oa-events-kafka/examples/risk_service.rs`) end to end:
//! the real server in KAFKA mode on a real Kafka-protocol broker (tansu), the example's
//! built binary reading the events topic, and orders placed over REST by two users. The
//! example's printed exposure per user must match the fills the server reports.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::tansu::{Storage, Tansu};
use oa_e2e::{PeerProcess, TestServer};
use serde_json::{Value, json};

const TOPIC: &str = "e2e_risk_order_events";

async fn place(
    server: &TestServer,
    key: &str,
    action: &str,
    quantity: u32,
    extra: Value,
) -> String {
    let mut fields = json!({"action": action, "quantity": quantity.to_string()});
    if let (Some(fields), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    server.place_order(key, "risk", fields).await.unwrap()
}

/// The order's average fill price once it is complete (10 s at most).
async fn fill_price(server: &TestServer, key: &str, orderid: &str) -> f64 {
    for _ in 0..200 {
        let (status, body) = server
            .post_order_id("orderstatus", key, "risk", orderid)
            .await
            .unwrap();
        if status == 200 && body["data"]["order_status"] == "complete" {
            return body["data"]["average_price"].as_f64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order {orderid} did not complete");
}

/// The last `exposure user=<user> ...` line, as its `key=value` fields.
fn last_exposure(lines: &[String], user: &str) -> Option<Vec<(String, String)>> {
    let prefix = format!("exposure user={user} ");
    lines
        .iter()
        .rev()
        .find(|line| line.starts_with(&prefix))
        .map(|line| {
            line.split_whitespace()
                .skip(1)
                .filter_map(|field| field.split_once('='))
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        })
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_risk_service_example_prints_each_users_exposure_as_orders_fill() {
    let broker = Tansu::start(Storage::Sqlite).unwrap();
    let bootstrap = broker.bootstrap();
    let server = TestServer::start(&[
        ("ORDER_EVENT_MODE", "KAFKA"),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
        ("KAFKA_ORDER_EVENTS_TOPIC", TOPIC),
        ("KAFKA_CREATE_TOPICS", "true"),
        ("KAFKA_PRODUCER_COMPRESSION", "lz4"),
        ("KAFKA_RETRY_BACKOFF_MAX_MS", "500"),
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ])
    .unwrap();
    let alice = server.create_user("alice").unwrap();
    let bob = server.create_user("bob").unwrap();
    server.wait_for_sbin().await.unwrap();

    let mut risk = PeerProcess::example(
        "oa-events-kafka",
        "risk_service",
        &[],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
            ("KAFKA_ORDER_EVENTS_TOPIC", TOPIC.to_string()),
            ("KAFKA_REQUEST_TIMEOUT_MS", "5000".to_string()),
            ("KAFKA_RETRY_BACKOFF_MAX_MS", "500".to_string()),
        ],
    )
    .unwrap();

    let alice_first = place(&server, &alice, "BUY", 2, json!({})).await;
    let alice_second = place(&server, &alice, "BUY", 1, json!({})).await;
    // Far below the market: placed but never filled, so it adds nothing to the exposure.
    let alice_resting = place(
        &server,
        &alice,
        "BUY",
        5,
        json!({"pricetype": "LIMIT", "price": "1.0"}),
    )
    .await;
    let bob_only = place(&server, &bob, "SELL", 3, json!({})).await;

    let alice_expected = 2.0 * fill_price(&server, &alice, &alice_first).await
        + fill_price(&server, &alice, &alice_second).await;
    let bob_expected = -3.0 * fill_price(&server, &bob, &bob_only).await;

    let complete = |lines: &[String]| {
        let fills_of = |user: &str, orders: &str| {
            last_exposure(lines, user).is_some_and(|fields| field(&fields, "orders") == orders)
        };
        fills_of("alice", "2")
            && fills_of("bob", "1")
            && lines
                .iter()
                .any(|line| line.contains(&format!("orderid={alice_resting}")))
    };
    risk.wait_for_text(Duration::from_secs(60), complete)
        .unwrap();
    let lines = risk.text.clone();

    // Every placed order was seen, for its own user.
    for (user, orderid) in [
        ("alice", &alice_first),
        ("alice", &alice_second),
        ("alice", &alice_resting),
        ("bob", &bob_only),
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(&format!("placed user={user} orderid={orderid} "))),
            "no placed line for {user}'s {orderid}:\n{}",
            lines.join("\n")
        );
    }
    let alice_line = last_exposure(&lines, "alice").unwrap();
    let bob_line = last_exposure(&lines, "bob").unwrap();
    let notional =
        |fields: &[(String, String)]| -> f64 { field(fields, "notional").parse().unwrap() };
    assert!(
        (notional(&alice_line) - alice_expected).abs() < 0.01,
        "alice: {alice_line:?}, expected {alice_expected:.2}\n{}",
        lines.join("\n")
    );
    assert!(
        (notional(&bob_line) - bob_expected).abs() < 0.01,
        "bob: {bob_line:?}, expected {bob_expected:.2}\n{}",
        lines.join("\n")
    );
    assert!(bob_expected < 0.0 && alice_expected > 0.0);
    assert_eq!(field(&alice_line, "positions"), "NSE:SBIN:+3");
    assert_eq!(field(&bob_line, "positions"), "NSE:SBIN:-3");
    // Isolation: the admin user placed nothing, so has no exposure.
    assert!(
        last_exposure(&lines, "admin").is_none(),
        "{}",
        lines.join("\n")
    );
}
