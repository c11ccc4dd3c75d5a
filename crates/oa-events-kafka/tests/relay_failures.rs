//! The relay never stalls on one bad event: an outbox row that cannot be decoded is moved
//! aside, and an event the broker refuses for good goes to `<events topic>.dlq`; every other
//! event is still delivered. Real tansu, the server's SQLite outbox table (through its adapter `StoreOutbox`), and kafka-python
//! reading the topics back.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_api::kafka_outbox::StoreOutbox;
use oa_api::outbox::OutboxTable;
use oa_e2e::kafka_topic::read_topic;
use oa_e2e::tansu::{Storage, Tansu};
use oa_events_core::catalog::OrderNotification;
use oa_events_core::{Envelope, Event};
use oa_events_kafka::{KafkaConfig, KafkaRelay, MemoryOutbox, ensure_topic};

fn config(bootstrap: &str, topic: &str) -> KafkaConfig {
    KafkaConfig {
        relay_poll_interval: Duration::from_millis(100),
        ..KafkaConfig::for_local_broker(bootstrap, topic, 1)
    }
}

fn notification(message: &str) -> Arc<Envelope> {
    Arc::new(Envelope::new(Event::for_user(
        "trader1",
        OrderNotification::info("SBIN", message),
    )))
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(records: &[oa_e2e::kafka_topic::KafkaRecord]) -> HashSet<String> {
    records
        .iter()
        .filter_map(|record| record.value["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_outbox_row_is_moved_aside_and_delivery_goes_on() {
    let broker = Tansu::start(Storage::Memory).unwrap();
    let topic = "poisoned_outbox_events";
    let config = config(&broker.bootstrap(), topic);
    ensure_topic(&config, topic).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oa.db");
    let table = OutboxTable::open(&path).unwrap();
    let (first, second) = (notification("before"), notification("after"));
    table
        .append_if_absent(std::slice::from_ref(&first))
        .unwrap();
    // A row no envelope decoder accepts, as a damaged file or a manual edit leaves it.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO outbox (id, user_id, event_type, payload, created_at) VALUES ('poison-1','trader1','order_event',x'7b226964','now')",
            [],
        )
        .unwrap();
    table
        .append_if_absent(std::slice::from_ref(&second))
        .unwrap();

    let relay =
        KafkaRelay::spawn(config.clone(), Arc::new(StoreOutbox::new(table.clone()))).unwrap();
    wait_until(
        "delivery of both good events",
        Duration::from_secs(30),
        || relay.stats().delivered >= 2,
    )
    .await;
    let wanted: HashSet<String> = [first.id.to_string(), second.id.to_string()].into();
    let records = read_topic(&broker.bootstrap(), topic, |records| {
        ids(records).is_superset(&wanted)
    });
    assert_eq!(ids(&records), wanted);
    let quarantined = table.quarantined().unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].1, "poison-1");
    assert_eq!(table.backlog().unwrap(), 0);
    relay.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_broker_refuses_goes_to_the_dead_letter_topic() {
    let topic = "refusing_events";
    // tansu 0.6 has no message size limit; it does refuse (INVALID_RECORD) a value that does
    // not match the topic's JSON schema: here, a notification message over 200 characters.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "value": {
                "type": "object",
                "properties": {
                    "data": {
                        "type": "object",
                        "properties": {"message": {"type": "string", "maxLength": 200}}
                    }
                }
            }
        }
    });
    let broker = Tansu::start_with_schemas(Storage::Memory, &[(topic, schema)]).unwrap();
    let config = config(&broker.bootstrap(), topic);
    ensure_topic(&config, topic).await.unwrap();

    let outbox = Arc::new(MemoryOutbox::new(100));
    let before = notification("fits");
    let refused = notification(&"x".repeat(1000));
    let after = notification("fits too");
    outbox
        .push(&[before.clone(), refused.clone(), after.clone()])
        .unwrap();
    let relay = KafkaRelay::spawn(config.clone(), outbox.clone()).unwrap();
    wait_until(
        "delivery of the good events and the dead letter",
        Duration::from_secs(30),
        || {
            let stats = relay.stats();
            stats.delivered >= 2 && stats.rejected >= 1
        },
    )
    .await;
    assert!(outbox.is_empty());

    let good: HashSet<String> = [before.id.to_string(), after.id.to_string()].into();
    let records = read_topic(&broker.bootstrap(), topic, |records| {
        ids(records).is_superset(&good)
    });
    assert_eq!(ids(&records), good, "the refused event reached the topic");

    let dead = read_topic(&broker.bootstrap(), &format!("{topic}.dlq"), |records| {
        !records.is_empty()
    });
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let letter = &dead[0];
    assert_eq!(letter.value["id"], refused.id.to_string());
    assert_eq!(letter.value["topic"], topic);
    assert_eq!(letter.key, "trader1");
    let reason = letter.value["reason"].as_str().unwrap();
    assert!(reason.contains("InvalidRecord"), "{reason}");
    assert_eq!(letter.headers["oa_dlq_reason"], reason);
    assert_eq!(letter.headers["ce_id"], refused.id.to_string());
    relay.shutdown(Duration::from_secs(2)).await;
}
