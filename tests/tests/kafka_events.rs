//! Order events over Kafka, end to end: the real server in KAFKA (and BOTH) mode, a real
//! Kafka-protocol broker (tansu, one per test), and kafka-python, a consumer that is not ours.
//! Against tansu the producer uses lz4: tansu 0.6 cannot serve snappy (docs/kafka.md).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use oa_e2e::kafka_topic::{KafkaRecord as Record, order_ids};
use oa_e2e::tansu::{Storage, Tansu, producer_settings};
use oa_e2e::{PeerProcess, TestServer};
use serde_json::{Value, json};

const TOPIC: &str = "e2e_order_events";

fn start_server(broker: &Tansu, mode: &str) -> TestServer {
    let bootstrap = broker.bootstrap();
    let mut env = vec![
        ("ORDER_EVENT_MODE", mode),
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ];
    env.extend(producer_settings(&bootstrap, TOPIC));
    TestServer::start(&env).unwrap()
}

/// Reads the whole topic with kafka-python until `enough` holds (or fails after 60 s).
/// The `order_event` record of `orderid`.
fn order_event_of<'a>(records: &'a [Record], orderid: &str) -> &'a Record {
    records
        .iter()
        .find(|record| {
            record.value["event_type"] == "order_event"
                && record.value["data"]["orderid"] == orderid
        })
        .unwrap_or_else(|| panic!("no order_event of {orderid}"))
}

fn read_topic(broker: &Tansu, enough: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    oa_e2e::kafka_topic::read_topic(&broker.bootstrap(), TOPIC, enough)
}

/// At-least-once: a record may come twice, but only with the same id and the same content.
fn assert_duplicates_are_identical(records: &[Record]) {
    let mut by_id: HashMap<String, &str> = HashMap::new();
    for record in records {
        let id = record.value["id"].as_str().unwrap().to_string();
        if let Some(previous) = by_id.insert(id, &record.raw_value) {
            assert_eq!(
                previous, record.raw_value,
                "a duplicate id with other content"
            );
        }
    }
}

async fn place(server: &TestServer, key: &str, extra: Value) -> String {
    server.place_order(key, "e2e", extra).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_carry_the_exact_envelope_key_and_headers_in_per_user_order() {
    let broker = Tansu::start(Storage::Memory).unwrap();
    let server = start_server(&broker, "KAFKA");
    let admin = server.admin_key.clone();
    let trader = server.create_user("trader7").unwrap();
    server.wait_for_sbin().await.unwrap();

    let market = place(&server, &admin, json!({})).await;
    let limit = place(
        &server,
        &trader,
        json!({"pricetype": "LIMIT", "price": "1.0"}),
    )
    .await;
    let (status, cancelled) = server
        .post_order_id("cancelorder", &trader, "e2e", &limit)
        .await
        .unwrap();
    assert_eq!(status, 200, "{cancelled}");

    let records = read_topic(&broker, |records| {
        order_ids(records, "cancel_order_event").contains(&limit)
            && order_ids(records, "order_event").contains(&market)
    });

    for record in &records {
        let envelope = record.value.as_object().unwrap();
        let keys: Vec<&str> = envelope.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            oa_events_core::schema::ENVELOPE_KEYS,
            "{}",
            record.raw_value
        );
        assert_eq!(record.value["source"], "openalgo");
        assert_eq!(record.value["version"], "1.0");
        assert_eq!(record.key, record.value["user_id"].as_str().unwrap());
        assert_eq!(
            record.partition, record.expected_partition,
            "murmur2 partitioning"
        );
        let header = |name: &str| record.headers.get(name).cloned().unwrap_or_default();
        assert_eq!(header("ce_id"), record.value["id"].as_str().unwrap());
        assert_eq!(
            header("ce_type"),
            record.value["event_type"].as_str().unwrap()
        );
        assert_eq!(
            header("ce_time"),
            record.value["timestamp"].as_str().unwrap()
        );
        assert_eq!(header("ce_source"), "openalgo");
        assert_eq!(header("ce_specversion"), "1.0");
        assert_eq!(header("content-type"), "application/json");
        let timestamp = record.value["timestamp"].as_str().unwrap();
        assert!(
            timestamp.ends_with('Z') && timestamp.len() == "2026-01-29T10:30:45.123456Z".len(),
            "{timestamp}"
        );
    }

    let order_event = order_event_of(&records, &market);
    assert_eq!(order_event.key, "admin");
    assert_eq!(
        order_event.value["data"],
        json!({"symbol": "SBIN", "action": "BUY", "orderid": market, "exchange": "NSE",
            "price_type": "MARKET", "product_type": "MIS", "mode": "live"})
    );

    // trader7's events: one partition, and in the order they happened.
    let trader_events: Vec<&Record> = records.iter().filter(|r| r.key == "trader7").collect();
    assert!(
        trader_events
            .windows(2)
            .all(|pair| pair[0].partition == pair[1].partition)
    );
    let mut by_offset = trader_events.clone();
    by_offset.sort_by_key(|record| record.offset);
    let names: Vec<&str> = by_offset
        .iter()
        .map(|record| record.value["event_type"].as_str().unwrap())
        .collect();
    let placed = names
        .iter()
        .position(|name| *name == "order_event")
        .unwrap();
    let cancel = names
        .iter()
        .position(|name| *name == "cancel_order_event")
        .unwrap();
    assert!(placed < cancel, "{names:?}");
    let timestamps: Vec<&str> = by_offset
        .iter()
        .map(|record| record.value["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        timestamps.windows(2).all(|pair| pair[0] <= pair[1]),
        "{timestamps:?}"
    );

    // System events travel too, keyed "admin".
    assert!(
        records.iter().any(
            |record| record.value["event_type"] == "master_contract_download"
                && record.key == "admin"
        ),
        "no master_contract_download record"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_orders_survive_a_broker_outage_and_a_server_sigkill() {
    let mut broker = Tansu::start(Storage::Sqlite).unwrap();
    let mut server = start_server(&broker, "KAFKA");
    let key = server.admin_key.clone();
    server.wait_for_sbin().await.unwrap();

    // Broker down: orders keep succeeding, their events wait in the outbox.
    broker.kill();
    let mut acknowledged = HashSet::new();
    for _ in 0..40 {
        acknowledged.insert(place(&server, &key, json!({})).await);
    }
    // The backlog is visible to operators while the broker is away.
    let mut backlog = 0;
    for _ in 0..100 {
        let health: Value = server.health().await.unwrap();
        backlog = health["kafka"]["outbox_backlog"].as_u64().unwrap_or(0);
        if backlog >= acknowledged.len() as u64 {
            assert_eq!(health["kafka"]["connected"], false, "{health}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(backlog >= acknowledged.len() as u64, "backlog {backlog}");
    // The server dies without any chance to flush.
    server.kill_and_restart().unwrap();
    broker.restart().unwrap();

    let records = read_topic(&broker, |records| {
        order_ids(records, "order_event").is_superset(&acknowledged)
    });
    assert_duplicates_are_identical(&records);
}

#[tokio::test(flavor = "multi_thread")]
async fn both_mode_delivers_the_same_event_to_socketio_and_kafka() {
    let broker = Tansu::start(Storage::Memory).unwrap();
    let server = start_server(&broker, "BOTH");
    let key = server.admin_key.clone();
    server.wait_for_sbin().await.unwrap();
    let mut client = PeerProcess::socketio_events(
        &server.http_url(),
        &key,
        &[("OA_STOP_EVENT", "order_event"), ("OA_TIMEOUT_S", "60")],
    )
    .unwrap();
    let orderid = place(&server, &key, json!({})).await;
    let socketio_event = client
        .wait_for(Duration::from_secs(30), |line| {
            line["name"] == "order_event"
        })
        .unwrap();
    let records = read_topic(&broker, |records| {
        order_ids(records, "order_event").contains(&orderid)
    });
    let record = order_event_of(&records, &orderid);
    let mut socketio_data = socketio_event["data"].clone();
    let object = socketio_data.as_object_mut().unwrap();
    // The Socket.IO copy names the same event id; seq is Socket.IO's own.
    assert_eq!(object.remove("event_id").unwrap(), record.value["id"]);
    object.remove("seq");
    assert_eq!(socketio_data, record.value["data"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_killed_mid_stream_loses_no_event() {
    let mut broker = Tansu::start(Storage::Sqlite).unwrap();
    let server = start_server(&broker, "KAFKA");
    let key = server.admin_key.clone();
    server.wait_for_sbin().await.unwrap();

    let mut acknowledged = HashSet::new();
    for round in 0..3 {
        for _ in 0..20 {
            acknowledged.insert(place(&server, &key, json!({})).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match round {
            0 => broker.kill(),
            1 => broker.restart().unwrap(),
            _ => {}
        }
    }
    let records = read_topic(&broker, |records| {
        order_ids(records, "order_event").is_superset(&acknowledged)
    });
    assert_duplicates_are_identical(&records);
}
