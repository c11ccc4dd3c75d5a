//! The first run a newcomer makes: a broker set up as `cargo xtask kafka up` does (tansu with
//! oa's topics), oa-server in KAFKA mode with **only** `KAFKA_BOOTSTRAP_SERVERS`, orders over
//! REST, and a foreign consumer (kafka-python) that reads every record. With snappy as the
//! default compression this failed: tansu 0.6 accepts snappy batches it then cannot serve.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::HashSet;
use std::time::Duration;

use oa_e2e::TestServer;
use oa_e2e::kafka_topic::read_topic;
use oa_e2e::tansu::{Storage, Tansu};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn defaults_deliver_every_order_event_to_a_foreign_consumer() {
    let broker = Tansu::start(Storage::Sqlite).unwrap();
    for (topic, partitions) in [
        ("from_openalgo_order_events", 3),
        ("from_esb_order_events", 3),
        ("from_esb_order_events.dlq", 1),
    ] {
        broker.create_topic(topic, partitions).unwrap();
    }
    let bootstrap = broker.bootstrap();
    // Empty values stand for "not set": they undo what the suite's own mode may add.
    let server = TestServer::start(&[
        ("ORDER_EVENT_MODE", "KAFKA"),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
        ("KAFKA_CREATE_TOPICS", ""),
        ("KAFKA_PRODUCER_COMPRESSION", ""),
    ])
    .unwrap();

    let mut price = false;
    for _ in 0..200 {
        let (status, body) = server
            .post(
                "quotes",
                json!({"apikey": server.admin_key, "exchange": "NSE", "symbol": "SBIN"}),
            )
            .await
            .unwrap();
        if status == 200 && body["data"]["ltp"].as_f64().unwrap_or(0.0) > 0.0 {
            price = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(price, "no SBIN price from the simulated feed");

    let mut placed = HashSet::new();
    // Fewer than the default ORDER_RATE_LIMIT (10 per second).
    for _ in 0..8 {
        let (status, response) = server
            .post(
                "placeorder",
                json!({"apikey": server.admin_key, "strategy": "newcomer", "exchange": "NSE",
                    "symbol": "SBIN", "action": "BUY", "quantity": "1", "product": "MIS",
                    "pricetype": "MARKET"}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{response}");
        placed.insert(response["orderid"].as_str().unwrap().to_string());
    }

    let order_ids = |records: &[oa_e2e::kafka_topic::KafkaRecord]| -> HashSet<String> {
        records
            .iter()
            .filter(|record| record.value["event_type"] == "order_event")
            .filter_map(|record| record.value["data"]["orderid"].as_str().map(str::to_string))
            .collect()
    };
    let records = read_topic(&bootstrap, "from_openalgo_order_events", |records| {
        order_ids(records).is_superset(&placed)
    });
    assert_eq!(order_ids(&records), placed);
    assert!(
        records.iter().all(|record| !record.value.is_null()),
        "a record kafka-python could not decode"
    );
}
