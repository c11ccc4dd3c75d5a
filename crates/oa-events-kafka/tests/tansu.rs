//! The Kafka sink against a real Kafka-protocol broker (tansu), read back by kafka-python.
//!
//! Needs the broker binary from `cargo xtask kafka up` and the Python peers from
//! `cargo xtask setup`; each test starts its own broker on a free port.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use oa_e2e::tansu::{Storage, Tansu};
use oa_events_core::catalog::{
    BatchSummary, CancelOrderEvent, MasterContractDownload, OrderEvent, OrderNotification,
    OrderUpdate,
};
use oa_events_core::{Envelope, Event, EventPublisher, SinkOptions};
use oa_events_kafka::{
    Compression, KafkaConfig, KafkaError, KafkaRelay, MemoryOutbox, ensure_topic,
};
use serde_json::Value;

/// One record as kafka-python saw it.
#[derive(Debug, Clone)]
struct Seen {
    partition: i64,
    offset: i64,
    key: String,
    value: String,
    headers: Vec<(String, String)>,
    timestamp: i64,
    expected_partition: i64,
}

struct Consumed {
    records: Vec<Seen>,
    codecs: Vec<String>,
}

fn consume(bootstrap: &str, topic: &str, expect: Option<usize>) -> anyhow::Result<Consumed> {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP", bootstrap.to_string()),
        ("KAFKA_TOPIC", topic.to_string()),
        ("TIMEOUT_S", "60".to_string()),
    ];
    if let Some(expect) = expect {
        env.push(("EXPECT", expect.to_string()));
    }
    let output = oa_e2e::run_python_script("kafka_consume.py", &env)?;
    let mut records = Vec::new();
    let mut codecs = Vec::new();
    for line in output.lines().filter(|line| !line.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).with_context(|| format!("line {line}"))?;
        if let Some(batches) = value.get("batches").and_then(Value::as_array) {
            codecs.extend(
                batches
                    .iter()
                    .filter_map(|batch| batch["codec"].as_str().map(str::to_string)),
            );
            continue;
        }
        let text = |name: &str| value[name].as_str().unwrap_or_default().to_string();
        records.push(Seen {
            partition: value["partition"].as_i64().unwrap_or(-1),
            offset: value["offset"].as_i64().unwrap_or(-1),
            key: text("key"),
            value: text("value"),
            headers: value["headers"]
                .as_array()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|pair| {
                            (
                                pair[0].as_str().unwrap_or_default().to_string(),
                                pair[1].as_str().unwrap_or_default().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            timestamp: value["timestamp"].as_i64().unwrap_or(-1),
            expected_partition: value["expected_partition"].as_i64().unwrap_or(-2),
        });
    }
    Ok(Consumed { records, codecs })
}

/// Test settings: fast retries, and lz4 rather than the default snappy because tansu 0.6
/// stores snappy batches but cannot serve them to consumers (it re-compresses fetched
/// records and has no snappy encoder); snappy is checked on the broker's storage instead.
fn config(bootstrap: &str, topic: &str) -> KafkaConfig {
    KafkaConfig {
        relay_poll_interval: Duration::from_millis(200),
        ..KafkaConfig::for_local_broker(bootstrap, topic, 3)
    }
}

/// A broker of the test's own (SQLite storage, so it can be restarted) with `topic`, and
/// [`config`] with a 1 s request timeout, shorter than the tests' broker outages (in-flight
/// sends fail and the relay's own retry takes over).
async fn outage_broker(topic: &str) -> anyhow::Result<(Tansu, KafkaConfig)> {
    let broker = Tansu::start(Storage::Sqlite)?;
    let config = KafkaConfig {
        request_timeout: Duration::from_secs(1),
        ..config(&broker.bootstrap(), topic)
    };
    ensure_topic(&config, topic).await?;
    Ok((broker, config))
}

/// A publisher whose one sink is `relay`.
fn publisher_into(relay: &KafkaRelay) -> EventPublisher {
    EventPublisher::builder()
        .sink(relay.sink(), SinkOptions::default())
        .build()
}

/// The published envelopes by id (a record's `ce_id` header).
fn envelopes_by_id(published: &[Arc<Envelope>]) -> HashMap<String, &Arc<Envelope>> {
    published
        .iter()
        .map(|envelope| (envelope.id.to_string(), envelope))
        .collect()
}

/// A varied stream of catalog events for a few users and the system.
fn event(index: usize) -> Event {
    let user = format!("user{}", index % 5);
    match index % 6 {
        0 => Event::for_user(
            user,
            OrderEvent::sbin_market(
                if index.is_multiple_of(2) {
                    "BUY"
                } else {
                    "SELL"
                },
                index.to_string(),
            ),
        ),
        1 => Event::for_user(
            user,
            OrderNotification::info("INFY", "Positions Already Matched. No Action needed."),
        ),
        2 => Event::for_user(
            user,
            CancelOrderEvent {
                status: "success".into(),
                orderid: format!("{index}"),
                mode: "live".into(),
                batch: BatchSummary::NONE,
                canceled_count: None,
                failed_count: None,
            },
        ),
        3 => Event::system(MasterContractDownload {
            broker: "simulator".into(),
            status: "success".into(),
            message: "Master contract downloaded".into(),
            symbols_count: Some(1234),
            download_time_seconds: None,
        }),
        _ => Event::for_user(user, sample_order_update(index)),
    }
}

fn sample_order_update(index: usize) -> OrderUpdate {
    let value = serde_json::json!({
        "mode": "live", "broker": "simulator", "orderid": format!("{index}"), "symbol": "SBIN",
        "exchange": "NSE", "action": "BUY", "quantity": 10, "price": 812.5, "trigger_price": 0,
        "pricetype": "LIMIT", "product": "MIS", "order_status": "complete",
        "filled_quantity": 10, "pending_quantity": 0, "average_price": 812.5,
        "rejection_reason": ""
    });
    serde_json::from_value(value).unwrap_or_else(|error| panic!("sample order_update: {error}"))
}

async fn wait_delivered(relay: &KafkaRelay, count: u64, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let stats = relay.stats();
        if stats.delivered >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "relay delivered {} of {count} within {within:?}: {:?}",
        relay.stats().delivered,
        relay.stats()
    )
}

/// Checks that each record is exactly the published envelope's record.
fn check_record(seen: &Seen, envelope: &Envelope) -> anyhow::Result<()> {
    ensure!(
        seen.key == envelope.user_id,
        "key {:?} for {envelope:?}",
        seen.key
    );
    let expected_value = String::from_utf8(envelope.to_json_bytes())?;
    ensure!(
        seen.value == expected_value,
        "value {} != {}",
        seen.value,
        expected_value
    );
    let mut headers = seen.headers.clone();
    headers.sort();
    let mut expected: Vec<(String, String)> = envelope
        .cloudevents_headers()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    expected.sort();
    ensure!(headers == expected, "headers {headers:?} != {expected:?}");
    ensure!(
        seen.timestamp == envelope.timestamp.timestamp_millis(),
        "timestamp {} != {}",
        seen.timestamp,
        envelope.timestamp.timestamp_millis()
    );
    ensure!(
        seen.partition == seen.expected_partition,
        "record of key {:?} in partition {} but kafka-python's partitioner says {}",
        seen.key,
        seen.partition,
        seen.expected_partition
    );
    // The JSON itself carries the contract's keys.
    let json: Value = serde_json::from_str(&seen.value)?;
    for key in oa_events_core::schema::ENVELOPE_KEYS {
        ensure!(json.get(key).is_some(), "envelope without {key}: {json}");
    }
    ensure!(json["source"] == "openalgo" && json["version"] == "1.0");
    Ok(())
}

/// Per-user order: each user's records, by offset (one user = one partition), with
/// duplicates dropped, must be exactly the user's published sequence.
fn check_per_user_order(records: &[Seen], published: &[Arc<Envelope>]) -> anyhow::Result<()> {
    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for envelope in published {
        expected
            .entry(envelope.user_id.as_str())
            .or_default()
            .push(envelope.id.to_string());
    }
    let mut sorted: Vec<&Seen> = records.iter().collect();
    sorted.sort_by_key(|seen| (seen.partition, seen.offset));
    let mut actual: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut partitions: HashMap<&str, i64> = HashMap::new();
    let mut seen_ids = HashSet::new();
    for seen in sorted {
        let partition = *partitions
            .entry(seen.key.as_str())
            .or_insert(seen.partition);
        ensure!(
            partition == seen.partition,
            "user {} in partitions {partition} and {}",
            seen.key,
            seen.partition
        );
        let id = header(seen, "ce_id")?;
        if seen_ids.insert(id.clone()) {
            actual.entry(seen.key.as_str()).or_default().push(id);
        }
    }
    ensure!(
        actual == expected,
        "per-user order differs:\n actual {actual:?}\n expected {expected:?}"
    );
    Ok(())
}

fn header(seen: &Seen, name: &str) -> anyhow::Result<String> {
    seen.headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .with_context(|| format!("record without header {name}: {seen:?}"))
}

fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another test of this binary may have installed it first: then metrics go there.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_match_the_contract_and_keep_per_user_order() -> anyhow::Result<()> {
    let metrics = prometheus();
    let broker = Tansu::start(Storage::Sqlite)?;
    let topic = "oa_test_contract";
    let config = config(&broker.bootstrap(), topic);
    let info = ensure_topic(&config, topic).await?;
    assert_eq!(info.partitions, 3);
    assert!(info.created);
    // A second check finds it.
    assert!(!ensure_topic(&config, topic).await?.created);

    let relay = KafkaRelay::spawn(config, Arc::new(MemoryOutbox::new(100_000)))?;
    let publisher = publisher_into(&relay);
    let count = 600;
    let mut published = Vec::with_capacity(count);
    for index in 0..count {
        published.push(publisher.publish(event(index)));
        if index % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    wait_delivered(&relay, count as u64, Duration::from_secs(30)).await?;
    assert_eq!(publisher.shutdown(Duration::from_secs(5)).await, 0);
    assert_eq!(relay.shutdown(Duration::from_secs(5)).await, 0);

    let bootstrap = broker.bootstrap();
    let consumed =
        tokio::task::spawn_blocking(move || consume(&bootstrap, topic, Some(count))).await??;
    assert_eq!(consumed.records.len(), count, "exactly once in a clean run");
    let by_id = envelopes_by_id(&published);
    for seen in &consumed.records {
        let id = header(seen, "ce_id")?;
        let envelope = by_id.get(&id).with_context(|| format!("unknown id {id}"))?;
        check_record(seen, envelope)?;
    }
    assert!(
        consumed.records.iter().any(|seen| seen.key == "admin"),
        "system events are keyed admin"
    );
    check_per_user_order(&consumed.records, &published)?;
    assert!(!consumed.codecs.is_empty());
    assert!(
        consumed.codecs.iter().all(|codec| codec == "lz4"),
        "batches on the wire use {:?}",
        consumed.codecs
    );

    let rendered = metrics.render();
    for needle in [
        "oa_events_published_total{sink=\"kafka\",event=\"order_event\"}",
        "oa_events_published_total{sink=\"kafka_outbox\",event=\"order_event\"}",
        "oa_kafka_delivery_seconds",
        "oa_kafka_outbox_backlog",
    ] {
        assert!(
            rendered.contains(needle),
            "metrics lack {needle}:\n{rendered}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_settings_are_honoured() -> anyhow::Result<()> {
    let broker = Tansu::start(Storage::Sqlite)?;
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Snappy,
    ] {
        let topic = format!("oa_test_compression_{compression}");
        let config = KafkaConfig {
            compression,
            ..config(&broker.bootstrap(), &topic)
        };
        let relay = KafkaRelay::spawn(config, Arc::new(MemoryOutbox::new(1000)))?;
        let publisher = publisher_into(&relay);
        let published: Vec<Arc<Envelope>> = (0..50)
            .map(|index| publisher.publish(event(index)))
            .collect();
        wait_delivered(&relay, 50, Duration::from_secs(30)).await?;
        relay.shutdown(Duration::from_secs(5)).await;
        if compression == Compression::Snappy {
            // tansu 0.6 accepts snappy batches but cannot serve them (see `config`): check
            // what it stored instead.
            check_stored_snappy(&broker, &topic, &published)?;
            continue;
        }

        let bootstrap = broker.bootstrap();
        let read_topic = topic.clone();
        let consumed =
            tokio::task::spawn_blocking(move || consume(&bootstrap, &read_topic, Some(50)))
                .await??;
        assert_eq!(consumed.records.len(), 50);
        let by_id = envelopes_by_id(&published);
        for seen in &consumed.records {
            check_record(seen, by_id[&header(seen, "ce_id")?])?;
        }
        assert!(
            !consumed.codecs.is_empty()
                && consumed
                    .codecs
                    .iter()
                    .all(|codec| codec == compression.as_str()),
            "{compression}: batches on the wire use {:?}",
            consumed.codecs
        );
    }
    Ok(())
}

/// Reads tansu 0.6's `record` table: every record of `topic` must carry the snappy codec in
/// its batch attributes (the low three bits, 2 = snappy) and exactly our key and value.
fn check_stored_snappy(
    broker: &Tansu,
    topic: &str,
    published: &[Arc<Envelope>],
) -> anyhow::Result<()> {
    let db = rusqlite::Connection::open_with_flags(
        broker.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut statement = db.prepare(
        "select r.attributes, r.k, r.v from record r join topition tp on r.topition = tp.id \
         join topic t on tp.topic = t.id where t.name = ?1",
    )?;
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = statement
        .query_map([topic], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    ensure!(
        rows.len() == published.len(),
        "stored {} records",
        rows.len()
    );
    let expected: HashSet<(Vec<u8>, Vec<u8>)> = published
        .iter()
        .map(|envelope| {
            (
                envelope.user_id.clone().into_bytes(),
                envelope.to_json_bytes(),
            )
        })
        .collect();
    for (attributes, key, value) in rows {
        ensure!(
            attributes & 7 == 2,
            "stored with attributes {attributes}, not snappy"
        );
        ensure!(
            expected.contains(&(key, value.clone())),
            "unexpected record {}",
            String::from_utf8_lossy(&value)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_loses_no_event() -> anyhow::Result<()> {
    let topic = "oa_test_outage";
    let (mut broker, config) = outage_broker(topic).await?;
    let outbox = Arc::new(MemoryOutbox::new(100_000));
    let relay = KafkaRelay::spawn(config, outbox.clone())?;
    let publisher = publisher_into(&relay);

    let count = 3000;
    let mut published = Vec::with_capacity(count);
    let mut killed_at = None;
    let mut restarted = false;
    let started = Instant::now();
    for index in 0..count {
        published.push(publisher.publish(event(index)));
        if index % 50 == 49 {
            // About 0.6 s of publishing with the broker up, 2 s with it down.
            let down = killed_at.is_some() && !restarted;
            tokio::time::sleep(Duration::from_millis(if down { 100 } else { 10 })).await;
        }
        if killed_at.is_none() && index == 1000 {
            broker.kill();
            killed_at = Some(relay.stats().delivered);
        }
        if !restarted && index == 2000 {
            // Events published while the broker was down wait in the outbox.
            assert!(
                !outbox.is_empty(),
                "nothing waited for the broker: {:?}",
                relay.stats()
            );
            broker.restart()?;
            restarted = true;
        }
    }
    tracing_note(&format!(
        "published {count} in {:?}; delivered before the kill: {killed_at:?}",
        started.elapsed()
    ));
    wait_delivered(&relay, count as u64, Duration::from_secs(60)).await?;
    tracing_note(&format!("relay after the outage: {:?}", relay.stats()));
    assert_eq!(relay.shutdown(Duration::from_secs(5)).await, 0);

    let bootstrap = broker.bootstrap();
    let consumed = tokio::task::spawn_blocking(move || consume(&bootstrap, topic, None)).await??;
    let by_id = envelopes_by_id(&published);
    let mut ids = HashSet::new();
    for seen in &consumed.records {
        let id = header(seen, "ce_id")?;
        let envelope = by_id
            .get(&id)
            .with_context(|| format!("record with an id never published: {id}"))?;
        // A duplicate is byte-for-byte the same record.
        check_record(seen, envelope)?;
        ids.insert(id);
    }
    let missing: Vec<&String> = by_id.keys().filter(|id| !ids.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {count} events missing after the outage (first: {:?})",
        missing.len(),
        missing.first()
    );
    check_per_user_order(&consumed.records, &published)?;
    tracing_note(&format!(
        "{} records for {count} events ({} duplicates)",
        consumed.records.len(),
        consumed.records.len() - count
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_name_the_topic_and_the_broker() -> anyhow::Result<()> {
    let broker = Tansu::start(Storage::Memory)?;
    let mut config = config(&broker.bootstrap(), "oa_test_absent");
    config.topic_creation.create_missing = false;
    let error = ensure_topic(&config, "oa_test_absent").await.unwrap_err();
    assert!(
        matches!(error, KafkaError::TopicMissing { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("oa_test_absent"), "{message}");
    assert!(message.contains(&broker.bootstrap()), "{message}");
    assert!(message.contains("KAFKA_CREATE_TOPICS"), "{message}");

    // Nothing listens on this port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let mut unreachable = self::config(&format!("127.0.0.1:{closed}"), "oa_test_absent");
    unreachable.request_timeout = Duration::from_secs(1);
    let error = ensure_topic(&unreachable, "oa_test_absent")
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{closed}")),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_started_before_the_broker_delivers_once_it_is_up() -> anyhow::Result<()> {
    let topic = "oa_test_late_broker";
    let (mut broker, config) = outage_broker(topic).await?;
    broker.kill();

    let outbox = Arc::new(MemoryOutbox::new(10_000));
    let relay = KafkaRelay::spawn(config, outbox.clone())?;
    let publisher = publisher_into(&relay);
    let published: Vec<Arc<Envelope>> = (0..200)
        .map(|index| publisher.publish(event(index)))
        .collect();
    // Longer than the request timeout: the relay sees failures and backs off.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let down = relay.stats();
    assert_eq!(down.delivered, 0);
    assert!(!down.connected, "{down:?}");
    assert!(down.failures > 0, "{down:?}");
    let error = down.last_error.clone().unwrap_or_default();
    assert!(error.contains(&broker.bootstrap()), "{error}");
    assert_eq!(
        outbox.len(),
        200,
        "the outbox holds every event while the broker is down"
    );
    broker.restart()?;
    wait_delivered(&relay, 200, Duration::from_secs(60)).await?;
    assert!(outbox.is_empty());
    let up = relay.stats();
    assert!(up.connected && up.last_error.is_none(), "{up:?}");
    relay.shutdown(Duration::from_secs(5)).await;

    let bootstrap = broker.bootstrap();
    let consumed =
        tokio::task::spawn_blocking(move || consume(&bootstrap, topic, Some(200))).await??;
    check_per_user_order(&consumed.records, &published)?;
    Ok(())
}

fn tracing_note(message: &str) {
    eprintln!("note: {message}");
}
