//! The ESB consumer end to end: the real server in KAFKA mode, a real Kafka-protocol broker
//! (tansu, one per test), and kafka-python as the external system producing commands (signed
//! with `tests/python/esb_sign.py`, the snippet of docs/esb.md) and reading results and dead
//! letters. lz4 throughout: tansu 0.6 cannot serve snappy.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::kafka_topic::KafkaRecord as Record;
use oa_e2e::tansu::{Storage, Tansu, producer_settings};
use oa_e2e::{TestServer, run_python_script};
use serde_json::{Value, json};

const EVENTS_TOPIC: &str = "e2e_esb_order_events";
const ESB_TOPIC: &str = "e2e_esb_commands";
const USER: &str = "esbtrader";
/// Two signing keys (id, secret), as an owner rotating from K1 to K2 would configure them.
const K1: (&str, &str) = ("k1", "k1-secret-0123456789abcdef0123456789abcdef");
const K2: (&str, &str) = ("k2", "k2-secret-fedcba9876543210fedcba9876543210");

fn keys(keys: &[(&str, &str)]) -> String {
    keys.iter()
        .map(|(id, secret)| format!("{id}:{secret}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A broker of the test's own and a server on it (K1 signs, the earliest offset when none is
/// stored).
fn start_server() -> (Tansu, TestServer) {
    start_server_with_reset("earliest")
}

fn start_server_with_reset(reset: &str) -> (Tansu, TestServer) {
    start_server_with(reset, &[("KAFKA_ESB_SIGNING_KEYS", &keys(&[K1]))])
}

/// Creates `user` with an API key and allows ESB control of it, through the CLI in another
/// process; returns the key.
fn esb_user(server: &TestServer, user: &str) -> String {
    let key = server.create_user(user).unwrap();
    server.admin(&["esb", "allow", "--user", user]).unwrap();
    key
}

/// [`esb_user`] `USER`, once the server has a price of NSE:SBIN (market orders fill);
/// returns the key.
async fn esb_trader(server: &TestServer) -> String {
    let key = esb_user(server, USER);
    server.wait_for_price(&key, "NSE", "SBIN").await.unwrap();
    key
}

/// A broker of the test's own and a server on it with `reset` and the `extra` settings.
fn start_server_with(reset: &str, extra: &[(&str, &str)]) -> (Tansu, TestServer) {
    let broker = Tansu::start(Storage::Memory).unwrap();
    let bootstrap = broker.bootstrap();
    let mut env = vec![
        ("RUST_LOG", "info,oa_events_kafka::esb=debug"),
        ("ORDER_EVENT_MODE", "KAFKA"),
        ("KAFKA_ESB_EVENTS_TOPIC", ESB_TOPIC),
        ("KAFKA_CONSUMER_AUTO_OFFSET_RESET", reset),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ];
    env.extend(producer_settings(&bootstrap, EVENTS_TOPIC));
    env.extend_from_slice(extra);
    let server = TestServer::start(&env).unwrap();
    (broker, server)
}

/// Reads `topic` from its beginning with kafka-python until `enough` holds (60 s at most).
fn read_topic(broker: &Tansu, topic: &str, enough: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    oa_e2e::kafka_topic::read_topic(&broker.bootstrap(), topic, enough)
}

/// The outbound topic, read until the result of the command `id` is on it.
fn read_until_result(broker: &Tansu, id: &str) -> Vec<Record> {
    read_topic(broker, EVENTS_TOPIC, |records| {
        !results_for(records, id).is_empty()
    })
}

/// The dead-letter topic of the ESB topic, read until `enough` holds.
fn read_dlq(broker: &Tansu, enough: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    read_topic(broker, &format!("{ESB_TOPIC}.dlq"), enough)
}

/// Produces values (key = the user) to the ESB topic with kafka-python, signed with K1.
fn produce(broker: &Tansu, values: &[String]) {
    let messages: Vec<Value> = values.iter().map(|value| signed(value, K1)).collect();
    produce_messages(broker, &messages);
}

/// A message for `kafka_esb_produce.py`, signed by kafka-python with `key`.
fn signed(value: &str, (key_id, secret): (&str, &str)) -> Value {
    json!({"key": USER, "value": value, "key_id": key_id, "secret": secret})
}

/// Produces `kafka_esb_produce.py` messages as they are (signed, unsigned or forged).
fn produce_messages(broker: &Tansu, messages: &[Value]) {
    run_python_script(
        "kafka_esb_produce.py",
        &[
            ("KAFKA_BOOTSTRAP", broker.bootstrap()),
            ("KAFKA_TOPIC", ESB_TOPIC.to_string()),
            ("MESSAGES", Value::Array(messages.to_vec()).to_string()),
        ],
    )
    .unwrap();
}

/// A command timestamped now.
fn command(id: &str, event_type: &str, user: &str, data: Value) -> String {
    command_at(id, event_type, user, data, Some(chrono::Utc::now()))
}

fn command_at(
    id: &str,
    event_type: &str,
    user: &str,
    data: Value,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let mut value = json!({"id": id, "event_type": event_type, "user_id": user,
        "source": "esb", "version": "1.0", "data": data});
    if let Some(at) = at {
        value["timestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    }
    value.to_string()
}

fn order_data() -> Value {
    json!({"strategy": "esb", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
        "quantity": "1", "product": "MIS", "pricetype": "MARKET"})
}

fn place_order(id: &str) -> String {
    command(id, "place_order", USER, order_data())
}

fn place_order_for(id: &str, user: &str) -> String {
    command(id, "place_order", user, order_data())
}

/// Every order in the server's store (any user, any mode).
fn stored_orders(server: &TestServer) -> i64 {
    let conn = rusqlite::Connection::open(server.database_path()).unwrap();
    conn.query_row("SELECT COUNT(*) FROM orders", [], |row| row.get(0))
        .unwrap()
}

/// Asserts that the server counted `count` ESB records of `outcome`; returns its metrics.
async fn assert_esb_records(server: &TestServer, outcome: &str, count: u64) -> String {
    let text = server.metrics().await.unwrap();
    let line = format!("oa_esb_records_total{{outcome=\"{outcome}\"}} {count}");
    assert!(text.contains(&line), "no {line} in:\n{text}");
    text
}

/// Waits until the server logged `needle` `count` times (30 s at most).
async fn wait_for_log(server: &TestServer, needle: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.log().matches(needle).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// The `status` of the (first) result of the command `id`.
fn result_status(records: &[Record], id: &str) -> Value {
    results_for(records, id)[0]["data"]["status"].clone()
}

fn results_for(records: &[Record], id: &str) -> Vec<Value> {
    results(records)
        .into_iter()
        .filter(|(_, value)| value["data"]["correlation_id"] == id)
        .map(|(_, value)| value)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_places_the_order_once_and_yields_a_result_event_even_across_a_restart() {
    let (broker, mut server) = start_server();
    let key = esb_trader(&server).await;

    produce(&broker, &[place_order("cmd-1")]);
    let records = read_until_result(&broker, "cmd-1");
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
    assert_eq!(server.order_ids(&key).await.unwrap(), vec![orderid.clone()]);
    assert!(records.iter().any(|record| {
        let value = record.json();
        value["event_type"] == "order_event" && value["data"]["orderid"] == orderid.as_str()
    }));

    // The same command replayed, then a new one behind it in the same partition: once the
    // new one's result is out, the replay was consumed, and it placed nothing.
    produce(&broker, &[place_order("cmd-1"), place_order("cmd-2")]);
    let records = read_until_result(&broker, "cmd-2");
    assert_eq!(results_for(&records, "cmd-1").len(), 1);
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 2);
    assert_esb_records(&server, "duplicate", 1).await;

    // Killed and restarted: the consumer resumes from its stored offset (the topic is read
    // from the earliest offset only when none is stored) and nothing runs twice.
    server.kill_and_restart().unwrap();
    produce(&broker, &[place_order("cmd-3")]);
    let records = read_until_result(&broker, "cmd-3");
    assert_eq!(results_for(&records, "cmd-1").len(), 1);
    assert_eq!(results_for(&records, "cmd-2").len(), 1);
    assert_eq!(results_for(&records, "cmd-3").len(), 1);
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 3);
    // Resumed at the stored offset: nothing before cmd-3 was even read again.
    let text = assert_esb_records(&server, "executed", 1).await;
    assert!(!text.contains("outcome=\"duplicate\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_land_in_the_dlq_with_a_reason_and_the_next_command_is_processed() {
    let (broker, server) = start_server();
    let key = esb_trader(&server).await;

    let not_json = "this is not json".to_string();
    let unknown_type = command("bad-1", "buy_everything", USER, json!({}));
    let unknown_user = place_order_for("bad-2", "ghost");
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

    let dlq = read_dlq(&broker, |records| records.len() >= bad.len());
    assert_eq!(dlq.len(), bad.len(), "{dlq:#?}");
    let expected_reasons = [
        ("invalid", "not JSON"),
        ("invalid", "unknown event_type \"buy_everything\""),
        ("unauthenticated", "unknown user_id \"ghost\""),
        ("invalid", "action"),
        ("invalid", "apikey: unknown field"),
    ];
    for (original, (code, expected)) in bad.iter().zip(expected_reasons) {
        let letter = dlq
            .iter()
            .find(|letter| &letter.raw_value == original)
            .unwrap_or_else(|| panic!("no dead letter for {original}: {dlq:#?}"));
        let reason = &letter.headers["oa_dlq_reason"];
        assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
        assert!(reason.starts_with(&format!("{code}: ")), "{reason:?}");
        assert_eq!(letter.headers["oa_dlq_code"], code);
        // The original headers travel with the dead letter.
        assert!(letter.headers["oa_signature"].starts_with("k1:"));
        assert_eq!(letter.headers["oa_dlq_topic"], ESB_TOPIC);
        assert_eq!(letter.key, USER);
    }

    // The partition moved on: the valid command behind the bad ones ran.
    let records = read_until_result(&broker, "good-1");
    let good = &results_for(&records, "good-1")[0];
    assert_eq!(good["data"]["status"], "success", "{good}");
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 1);
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
    let (broker, mut server) = start_server_with_reset("latest");
    let key = esb_trader(&server).await;
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

    let records = read_until_result(&broker, "while-down");
    assert_eq!(result_status(&records, "while-down"), "success");
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 1);
}

/// The dead letter of the command `id`.
fn letter<'a>(dlq: &'a [Record], id: &str) -> &'a Record {
    dlq.iter()
        .find(|letter| letter.value["id"] == id)
        .unwrap_or_else(|| panic!("no dead letter for {id}: {dlq:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_forged_stale_and_unauthorized_commands_are_dead_lettered_and_change_nothing() {
    let (broker, server) = start_server();
    let key = esb_user(&server, USER);
    // A user who never allowed ESB control, and one who did but whose key was revoked.
    let quiet_key = server.create_user("quiet").unwrap();
    esb_user(&server, "gone");
    server.apikey(&["revoke", "--user", "gone"]).unwrap();
    server.wait_for_price(&key, "NSE", "SBIN").await.unwrap();

    let now = chrono::Utc::now();
    let hour_ago = now - chrono::Duration::seconds(3600);
    let in_ten_minutes = now + chrono::Duration::seconds(600);
    let wrong_secret = ("k1", "not-the-secret-of-k1-0123456789abcdef");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "unsigned",
            json!({"key": USER, "value": place_order("unsigned")}),
            "unauthenticated",
            "no oa_signature header",
        ),
        (
            "forged",
            signed(&place_order("forged"), wrong_secret),
            "unauthenticated",
            "does not match",
        ),
        (
            "unknown-key",
            signed(&place_order("unknown-key"), ("k9", K1.1)),
            "unauthenticated",
            "\"k9\" is not one of KAFKA_ESB_SIGNING_KEYS",
        ),
        (
            "malformed",
            json!({"key": USER, "value": place_order("malformed"), "signature": "k1:not-hex"}),
            "unauthenticated",
            "malformed",
        ),
        (
            "expired",
            signed(
                &command_at("expired", "place_order", USER, order_data(), Some(hour_ago)),
                K1,
            ),
            "expired",
            "s old; KAFKA_ESB_MAX_AGE_SECONDS allows 300",
        ),
        (
            "future",
            signed(
                &command_at(
                    "future",
                    "place_order",
                    USER,
                    order_data(),
                    Some(in_ten_minutes),
                ),
                K1,
            ),
            "expired",
            "in the future",
        ),
        (
            "no-time",
            signed(
                &command_at("no-time", "place_order", USER, order_data(), None),
                K1,
            ),
            "invalid",
            "\"timestamp\" is required",
        ),
        (
            "not-allowed",
            signed(&place_order_for("not-allowed", "quiet"), K1),
            "unauthenticated",
            "has not allowed ESB control",
        ),
        (
            "disabled",
            signed(&place_order_for("disabled", "gone"), K1),
            "unauthenticated",
            "is disabled",
        ),
        (
            "big-ack",
            signed(
                &command(
                    "big-ack",
                    "order_acknowledgment",
                    USER,
                    json!({"note": "x".repeat(5000)}),
                ),
                K1,
            ),
            "too_large",
            "at most 4096",
        ),
    ];
    let mut messages: Vec<Value> = cases.iter().map(|case| case.1.clone()).collect();
    messages.push(signed(&place_order("good"), K1));
    produce_messages(&broker, &messages);

    let dlq = read_dlq(&broker, |records| records.len() >= cases.len());
    assert_eq!(dlq.len(), cases.len(), "{dlq:#?}");
    for (id, _, code, expected) in &cases {
        let letter = letter(&dlq, id);
        assert_eq!(letter.headers["oa_dlq_code"], *code, "{id}: {letter:#?}");
        let reason = &letter.headers["oa_dlq_reason"];
        assert!(
            reason.contains(expected),
            "{id}: {reason:?} lacks {expected:?}"
        );
    }

    // The good command behind them ran, and is the only order in the whole store.
    let records = read_until_result(&broker, "good");
    assert_eq!(result_status(&records, "good"), "success");
    assert_eq!(stored_orders(&server), 1);
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 1);
    assert!(server.order_ids(&quiet_key).await.unwrap().is_empty());
    // Unauthenticated commands get no result; an authenticated stale one is answered.
    for id in [
        "unsigned",
        "forged",
        "unknown-key",
        "malformed",
        "not-allowed",
        "disabled",
    ] {
        assert!(results_for(&records, id).is_empty(), "{id} was answered");
    }
    assert_eq!(result_status(&records, "expired"), "error");
    // Unauthenticated records claim no id: a signed command may still use it.
    produce(&broker, &[place_order("unsigned")]);
    let records = read_until_result(&broker, "unsigned");
    assert_eq!(result_status(&records, "unsigned"), "success");

    // Consent given and withdrawn with the CLI, in another process, applies to the next
    // command the running server reads.
    server.admin(&["esb", "allow", "--user", "quiet"]).unwrap();
    produce(&broker, &[place_order_for("quiet-1", "quiet")]);
    let records = read_until_result(&broker, "quiet-1");
    assert_eq!(result_status(&records, "quiet-1"), "success");
    assert_eq!(server.order_ids(&quiet_key).await.unwrap().len(), 1);
    server.admin(&["esb", "deny", "--user", "quiet"]).unwrap();
    produce(&broker, &[place_order_for("quiet-2", "quiet")]);
    let dlq = read_dlq(&broker, |records| {
        records.iter().any(|letter| letter.value["id"] == "quiet-2")
    });
    assert_eq!(
        letter(&dlq, "quiet-2").headers["oa_dlq_code"],
        "unauthenticated"
    );
    assert_eq!(server.order_ids(&quiet_key).await.unwrap().len(), 1);
    let status = server.admin(&["esb", "status"]).unwrap();
    assert!(
        status
            .lines()
            .any(|line| line.starts_with("quiet ") && line.ends_with("denied")),
        "{status}"
    );
    let list = server.apikey(&["list"]).unwrap();
    assert!(
        list.lines()
            .any(|line| line.starts_with(USER) && line.ends_with("allowed")),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_keys_rotate_without_downtime_and_a_removed_key_is_refused() {
    let (broker, mut server) =
        start_server_with("earliest", &[("KAFKA_ESB_SIGNING_KEYS", &keys(&[K1, K2]))]);
    let key = esb_trader(&server).await;
    let body = server.health().await.unwrap();
    assert_eq!(body["esb"]["consumer"], "running", "{body}");
    assert_eq!(body["esb"]["authentication"], "hmac-sha256");
    assert_eq!(body["esb"]["signing_key_ids"], json!(["k1", "k2"]));
    assert_eq!(body["esb"]["max_age_seconds"], 300);
    let text = body.to_string();
    assert!(!text.contains(K1.1) && !text.contains(K2.1), "{text}");
    assert!(!server.log().contains(K1.1) && !server.log().contains(K2.1));

    // Both keys are valid while producers move from K1 to K2.
    produce_messages(
        &broker,
        &[
            signed(&place_order("by-k1"), K1),
            signed(&place_order("by-k2"), K2),
        ],
    );
    let records = read_until_result(&broker, "by-k2");
    for id in ["by-k1", "by-k2"] {
        assert_eq!(result_status(&records, id), "success");
    }

    // The owner removes K1 and restarts oa; producers are not restarted.
    let stopped = server.signal("TERM", Duration::from_secs(15)).unwrap();
    assert!(stopped.success());
    server.set_env("KAFKA_ESB_SIGNING_KEYS", &keys(&[K2]));
    server.start_again().unwrap();
    produce_messages(
        &broker,
        &[
            signed(&place_order("old-key"), K1),
            signed(&place_order("new-key"), K2),
        ],
    );
    let records = read_until_result(&broker, "new-key");
    assert_eq!(result_status(&records, "new-key"), "success");
    assert!(results_for(&records, "old-key").is_empty());
    let dlq = read_dlq(&broker, |records| !records.is_empty());
    let old = letter(&dlq, "old-key");
    assert_eq!(old.headers["oa_dlq_code"], "unauthenticated");
    assert!(
        old.headers["oa_dlq_reason"].contains("\"k1\" is not one of"),
        "{old:#?}"
    );
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 3);
    assert_eq!(
        server.health().await.unwrap()["esb"]["signing_key_ids"],
        json!(["k2"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trusted_unsigned_commands_run_with_a_loud_warning_and_the_rest_rate_limit() {
    let (broker, server) = start_server_with(
        "earliest",
        &[
            ("KAFKA_ESB_TRUST_UNSIGNED", "true"),
            ("ORDER_RATE_LIMIT", "1 per minute"),
        ],
    );
    let key = esb_trader(&server).await;
    let log = server.log();
    assert!(
        log.contains("KAFKA_ESB_TRUST_UNSIGNED=true: the ESB consumer executes UNSIGNED commands"),
        "{log}"
    );
    assert_eq!(
        server.health().await.unwrap()["esb"]["authentication"],
        "trust-unsigned"
    );

    // Unsigned commands run; the second order within the minute is over ORDER_RATE_LIMIT.
    let unsigned = |value: String| json!({"key": USER, "value": value});
    produce_messages(
        &broker,
        &[unsigned(place_order("u-1")), unsigned(place_order("u-2"))],
    );
    let records = read_until_result(&broker, "u-2");
    assert_eq!(result_status(&records, "u-1"), "success");
    let limited = &results_for(&records, "u-2")[0]["data"];
    assert_eq!(limited["status"], "error");
    assert_eq!(
        limited["response"],
        json!({"status": "error", "message": "Rate limit exceeded. Please slow down your requests.", "retry_after": 60})
    );
    let dlq = read_dlq(&broker, |records| !records.is_empty());
    assert_eq!(letter(&dlq, "u-2").headers["oa_dlq_code"], "rate_limited");
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_keys_or_the_trust_flag_the_consumer_stays_off_and_says_why() {
    let (broker, server) = start_server_with("earliest", &[]);
    let key = esb_trader(&server).await;
    let body = server.health().await.unwrap();
    assert_eq!(body["esb"]["consumer"], "disabled", "{body}");
    assert!(
        body["esb"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("KAFKA_ESB_SIGNING_KEYS"),
        "{body}"
    );
    assert_eq!(body["layers"]["kafka"], true);
    let log = server.log();
    assert!(log.contains("ESB consumer disabled"), "{log}");
    // Kafka mode itself works: a REST order's event reaches the topic.
    let placed = server.place_market_order(&key, "s").await.unwrap();
    read_topic(&broker, EVENTS_TOPIC, |records| {
        records
            .iter()
            .any(|record| record.json()["data"]["orderid"] == placed.as_str())
    });
    let log = server.log();
    assert!(!log.contains("ESB consumer connected"), "{log}");
    assert!(!log.contains("ESB partition consumer started"), "{log}");

    // Keys and the trust flag together are refused at start-up, by name.
    let (status, output) = oa_e2e::run_to_exit(
        &[
            ("ORDER_EVENT_MODE", "KAFKA"),
            ("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap()),
            ("KAFKA_ESB_SIGNING_KEYS", &keys(&[K1])),
            ("KAFKA_ESB_TRUST_UNSIGNED", "true"),
            ("KAFKA_ESB_MAX_AGE_SECONDS", "0"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("choose one"), "{output}");
    assert!(output.contains("KAFKA_ESB_MAX_AGE_SECONDS"), "{output}");
    assert!(!output.contains(K1.1), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_offset_beyond_the_partition_resumes_from_the_earliest_retained_command() {
    let (broker, mut server) = start_server();
    let key = esb_trader(&server).await;
    produce(&broker, &[place_order("before")]);
    read_until_result(&broker, "before");

    // As if the topic had been deleted and recreated (or trimmed by retention): the stored
    // offsets point past everything the partitions hold.
    let stopped = server.signal("TERM", Duration::from_secs(15)).unwrap();
    assert!(stopped.success());
    {
        let conn = rusqlite::Connection::open(server.database_path()).unwrap();
        let moved = conn
            .execute(
                "UPDATE esb_offsets SET next_offset = next_offset + 1000",
                [],
            )
            .unwrap();
        assert!(moved >= 1);
    }
    server.start_again().unwrap();
    produce(&broker, &[place_order("after")]);
    let records = read_until_result(&broker, "after");
    assert_eq!(result_status(&records, "after"), "success");
    // "before" was read again from the earliest offset and recognised by its id.
    assert_eq!(results_for(&records, "before").len(), 1);
    assert_eq!(server.order_ids(&key).await.unwrap().len(), 2);
    wait_for_log(&server, "out of the partition's range", 1).await;
    assert_esb_records(&server, "duplicate", 1).await;
}

#[test]
fn the_signing_snippet_in_the_docs_is_the_tested_file() {
    let root = oa_e2e::workspace_root();
    let snippet = std::fs::read_to_string(root.join("tests/python/esb_sign.py")).unwrap();
    let docs = std::fs::read_to_string(root.join("docs/esb.md")).unwrap();
    assert!(
        docs.contains(&format!("```python\n{snippet}```\n")),
        "docs/esb.md must contain tests/python/esb_sign.py verbatim in a python block"
    );
}
