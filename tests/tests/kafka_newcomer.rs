//! The first run a newcomer makes: a broker set up as `cargo xtask kafka up` does (tansu with
//! oa's topics), oa-server in KAFKA mode with **only** `KAFKA_BOOTSTRAP_SERVERS`, orders over
//! REST, and a foreign consumer (kafka-python) that reads every record. With snappy as the
//! default compression this failed: tansu 0.6 accepts snappy batches it then cannot serve.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::HashSet;

use oa_e2e::TestServer;
use oa_e2e::kafka_topic::{order_ids, read_topic};
use oa_e2e::tansu::{Storage, Tansu};

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

    server.wait_for_sbin().await.unwrap();

    let mut placed = HashSet::new();
    // Fewer than the default ORDER_RATE_LIMIT (10 per second).
    for _ in 0..8 {
        placed.insert(
            server
                .place_market_order(&server.admin_key, "newcomer")
                .await
                .unwrap(),
        );
    }

    let records = read_topic(&bootstrap, "from_openalgo_order_events", |records| {
        order_ids(records, "order_event").is_superset(&placed)
    });
    assert_eq!(order_ids(&records, "order_event"), placed);
    assert!(
        records.iter().all(|record| !record.value.is_null()),
        "a record kafka-python could not decode"
    );
}
