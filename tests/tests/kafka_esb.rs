//! The ESB consumer end to end: the real server in KAFKA mode, a real Kafka-protocol broker
//! (tansu, one per test), and kafka-python as the external system producing commands and
//! reading results and dead letters. lz4 throughout: tansu 0.6 cannot serve snappy.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::kafka_topic::KafkaRecord as Record;
use oa_e2e::tansu::{Storage, Tansu};
use oa_e2e::{TestServer, run_python_script};
use serde_json::{Value, json};

const EVENTS_TOPIC: &str = "e2e_esb_order_events";
const ESB_TOPIC: &str = "e2e_esb_commands";
const USER: &str = "esbtrader";

fn start_server(broker: &Tansu) -> TestServer {
    start_server_with_reset(broker, "earliest")
}

fn start_server_with_reset(broker: &Tansu, reset: &str) -> TestServer {
    let bootstrap = broker.bootstrap();
    TestServer::start(&[
        ("RUST_LOG", "info,oa_events_kafka::esb=debug"),
        ("ORDER_EVENT_MODE", "KAFKA"),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
        ("KAFKA_ORDER_EVENTS_TOPIC", EVENTS_TOPIC),
        ("KAFKA_ESB_EVENTS_TOPIC", ESB_TOPIC),
        ("KAFKA_CONSUMER_AUTO_OFFSET_RESET", reset),
        ("KAFKA_CREATE_TOPICS", "true"),
        ("KAFKA_PRODUCER_COMPRESSION", "lz4"),
        ("KAFKA_RETRY_BACKOFF_MAX_MS", "500"),
        ("KAFKA_REQUEST_TIMEOUT_MS", "2000"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ])
    .unwrap()
}

/// Reads `topic` from its beginning with kafka-python until `enough` holds (60 s at most).
fn read_topic(broker: &Tansu, topic: &str, enough: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    oa_e2e::kafka_topic::read_topic(&broker.bootstrap(), topic, enough)
}

/// Produces raw values (key = the user) to the ESB topic with kafka-python.
fn produce(broker: &Tansu, values: &[String]) {
    let messages: Vec<Value> = values
        .iter()
        .map(|value| json!({"key": USER, "value": value}))
        .collect();
    run_python_script(
        "kafka_esb_produce.py",
        &[
            ("KAFKA_BOOTSTRAP", broker.bootstrap()),
            ("KAFKA_TOPIC", ESB_TOPIC.to_string()),
            ("MESSAGES", Value::Array(messages).to_string()),
        ],
    )
    .unwrap();
}

fn command(id: &str, event_type: &str, user: &str, data: Value) -> String {
    json!({"id": id, "event_type": event_type, "timestamp": "2026-01-29T10:30:45.123456Z",
        "user_id": user, "source": "esb", "version": "1.0", "data": data})
    .to_string()
}

fn place_order(id: &str) -> String {
    command(
        id,
        "place_order",
        USER,
        json!({"strategy": "esb", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
            "quantity": "1", "product": "MIS", "pricetype": "MARKET"}),
    )
}

/// The `esb_command_result` envelopes on the outbound topic, by correlation id.
fn results(records: &[Record]) -> Vec<(Record, Value)> {
    records
        .iter()
        .filter_map(|record| {
            let value = record.json();
            (value["event_type"] == "esb_command_result").then(|| (record.clone(), value))
        })
        .collect()
}

fn results_for(records: &[Record], id: &str) -> Vec<Value> {
    results(records)
        .into_iter()
        .filter(|(_, value)| value["data"]["correlation_id"] == id)
        .map(|(_, value)| value)
        .collect()
}

async fn wait_for_price(server: &TestServer, key: &str) {
    for _ in 0..200 {
        let (status, body) = server
            .post(
                "quotes",
                json!({"apikey": key, "exchange": "NSE", "symbol": "SBIN"}),
            )
            .await
            .unwrap();
        if status == 200 && body["data"]["ltp"].as_f64().unwrap_or(0.0) > 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no SBIN price from the simulated feed");
}

/// The server's Prometheus text.
async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn order_ids(server: &TestServer, key: &str) -> Vec<String> {
    let (status, body) = server
        .post("orderbook", json!({"apikey": key}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|order| order["orderid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_places_the_order_once_and_yields_a_result_event_even_across_a_restart() {
    let broker = Tansu::start(Storage::Memory).unwrap();
    let mut server = start_server(&broker);
    let key = server.create_user(USER).unwrap();
    wait_for_price(&server, &key).await;

    produce(&broker, &[place_order("cmd-1")]);
    let records = read_topic(&broker, EVENTS_TOPIC, |records| {
        !results_for(records, "cmd-1").is_empty()
    });
    let (record, result) = results(&records)
        .into_iter()
        .find(|(_, value)| value["data"]["correlation_id"] == "cmd-1")
        .unwrap();
    assert_eq!(record.key, USER);
    assert_eq!(record.headers["ce_type"], "esb_command_result");
    assert_eq!(result["user_id"], USER);
    assert_eq!(result["source"], "openalgo");
    let data = &result["data"];
    assert_eq!(data["command"], "place_order");
    assert_eq!(data["status"], "success", "{result}");
    assert_eq!(data["response"]["status"], "success");
    let orderid = data["response"]["orderid"].as_str().unwrap().to_string();
    // The order exists for the user, and carries its usual order_event.
    assert_eq!(order_ids(&server, &key).await, vec![orderid.clone()]);
    assert!(records.iter().any(|record| {
        let value = record.json();
        value["event_type"] == "order_event" && value["data"]["orderid"] == orderid.as_str()
    }));

    // The same command replayed, then a new one behind it in the same partition: once the
    // new one's result is out, the replay was consumed, and it placed nothing.
    produce(&broker, &[place_order("cmd-1"), place_order("cmd-2")]);
    let records = read_topic(&broker, EVENTS_TOPIC, |records| {
        !results_for(records, "cmd-2").is_empty()
    });
    assert_eq!(results_for(&records, "cmd-1").len(), 1);
    assert_eq!(order_ids(&server, &key).await.len(), 2);
    let text = metrics(&server).await;
    assert!(
        text.contains("oa_esb_records_total{outcome=\"duplicate\"} 1"),
        "{text}"
    );

    // Killed and restarted: the consumer resumes from its stored offset (the topic is read
    // from the earliest offset only when none is stored) and nothing runs twice.
    server.kill_and_restart().unwrap();
    produce(&broker, &[place_order("cmd-3")]);
    let records = read_topic(&broker, EVENTS_TOPIC, |records| {
        !results_for(records, "cmd-3").is_empty()
    });
    assert_eq!(results_for(&records, "cmd-1").len(), 1);
    assert_eq!(results_for(&records, "cmd-2").len(), 1);
    assert_eq!(results_for(&records, "cmd-3").len(), 1);
    assert_eq!(order_ids(&server, &key).await.len(), 3);
    // Resumed at the stored offset: nothing before cmd-3 was even read again.
    let text = metrics(&server).await;
    assert!(
        text.contains("oa_esb_records_total{outcome=\"executed\"} 1"),
        "{text}"
    );
    assert!(!text.contains("outcome=\"duplicate\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_land_in_the_dlq_with_a_reason_and_the_next_command_is_processed() {
    let broker = Tansu::start(Storage::Memory).unwrap();
    let server = start_server(&broker);
    let key = server.create_user(USER).unwrap();
    wait_for_price(&server, &key).await;

    let not_json = "this is not json".to_string();
    let unknown_type = command("bad-1", "buy_everything", USER, json!({}));
    let unknown_user = command(
        "bad-2",
        "place_order",
        "ghost",
        json!({"strategy": "esb", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
            "quantity": "1", "product": "MIS", "pricetype": "MARKET"}),
    );
    let invalid_data = command(
        "bad-3",
        "place_order",
        USER,
        json!({"strategy": "esb", "exchange": "NSE", "symbol": "SBIN", "action": "HOLD",
            "quantity": "1", "product": "MIS", "pricetype": "MARKET"}),
    );
    let with_apikey = command(
        "bad-4",
        "cancel_all_orders",
        USER,
        json!({"apikey": key, "strategy": "esb"}),
    );
    let bad = [
        not_json.clone(),
        unknown_type.clone(),
        unknown_user.clone(),
        invalid_data.clone(),
        with_apikey.clone(),
    ];
    let mut batch = bad.to_vec();
    batch.push(place_order("good-1"));
    produce(&broker, &batch);

    let dlq = read_topic(&broker, &format!("{ESB_TOPIC}.dlq"), |records| {
        records.len() >= bad.len()
    });
    assert_eq!(dlq.len(), bad.len(), "{dlq:#?}");
    let expected_reasons = [
        "not JSON",
        "unknown event_type \"buy_everything\"",
        "unknown user_id \"ghost\"",
        "action",
        "apikey: unknown field",
    ];
    for (original, expected) in bad.iter().zip(expected_reasons) {
        let letter = dlq
            .iter()
            .find(|letter| &letter.raw_value == original)
            .unwrap_or_else(|| panic!("no dead letter for {original}: {dlq:#?}"));
        let reason = &letter.headers["oa_dlq_reason"];
        assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
        assert_eq!(letter.headers["oa_dlq_topic"], ESB_TOPIC);
        assert_eq!(letter.key, USER);
    }

    // The partition moved on: the valid command behind the bad ones ran.
    let records = read_topic(&broker, EVENTS_TOPIC, |records| {
        !results_for(records, "good-1").is_empty()
    });
    let good = &results_for(&records, "good-1")[0];
    assert_eq!(good["data"]["status"], "success", "{good}");
    assert_eq!(order_ids(&server, &key).await.len(), 1);
    // A readable command of a real user also gets its validation error as a result.
    let invalid = &results_for(&records, "bad-3")[0];
    assert_eq!(invalid["data"]["status"], "error");
    assert!(
        invalid["data"]["response"]["message"]
            .as_str()
            .unwrap()
            .starts_with("action"),
        "{invalid}"
    );
    assert!(results_for(&records, "bad-2").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_latest_reset_a_command_sent_while_oa_is_down_is_not_skipped() {
    let broker = Tansu::start(Storage::Memory).unwrap();
    let mut server = start_server_with_reset(&broker, "latest");
    let key = server.create_user(USER).unwrap();
    wait_for_price(&server, &key).await;
    // Every partition consumer has resolved (and stored) its start position.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server
        .log()
        .matches("ESB partition consumer started")
        .count()
        < 3
    {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // oa is down, before it ever saw a command; the ESB keeps producing.
    let stopped = server.signal("TERM", Duration::from_secs(15)).unwrap();
    assert!(stopped.success());
    produce(&broker, &[place_order("while-down")]);
    server.start_again().unwrap();

    let records = read_topic(&broker, EVENTS_TOPIC, |records| {
        !results_for(records, "while-down").is_empty()
    });
    assert_eq!(
        results_for(&records, "while-down")[0]["data"]["status"],
        "success"
    );
    assert_eq!(order_ids(&server, &key).await.len(), 1);
}
