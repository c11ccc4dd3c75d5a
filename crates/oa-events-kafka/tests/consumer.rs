//! [`OrderEventConsumer`] and [`TopicConsumer`] against a real Kafka-protocol broker (tansu,
//! one per test on a free port): typed events from every partition, undecodable records
//! reported in place, offsets kept in a file or SQLite across restarts, explicit start
//! offsets, stored offsets the partition no longer holds, TLS with a SCRAM login, and a
//! handler that commits its offsets in the transaction of its effects, a broker killed and
//! restarted under a running consumer (its monitor and the events). The broker stores on SQLite:
//! tansu 0.6's memory storage cannot serve a fetch that starts inside a batch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use oa_e2e::tansu::{SecureOptions, Storage, Tansu};
use oa_events_core::catalog::OrderUpdate;
use oa_events_core::{Envelope, Event};
use oa_events_kafka::config::AutoOffsetReset;
use oa_events_kafka::rskafka::client::partition::{Compression as Codec, UnknownTopicHandling};
use oa_events_kafka::rskafka::record::Record;
use oa_events_kafka::{
    ConsumedEvent, ConsumedRecord, ConsumerMonitor, ConsumerStats, FileOffsetStore, Handled,
    Handling, KafkaConfig, KafkaError, KafkaProducer, MemoryOffsetStore, OffsetStore,
    OrderEventConsumer, PartitionBounds, PartitionReader, RecordHandler, SecurityConfig,
    SqliteOffsetStore, StartPosition, StopSignal, TopicConsumer, TopicPartition, UndecodableRecord,
    connect, decode_event, partition_for_key,
};
use uuid::Uuid;

fn config(bootstrap: &str, topic: &str, partitions: i32) -> KafkaConfig {
    KafkaConfig::for_local_broker(bootstrap, topic, partitions)
}

fn order_update(user: &str, index: usize) -> Event {
    let value = serde_json::json!({
        "mode": "live", "broker": "simulator", "orderid": format!("{user}-{index}"),
        "symbol": "SBIN", "exchange": "NSE", "action": "BUY", "quantity": index + 1,
        "price": 0, "trigger_price": 0, "pricetype": "MARKET", "product": "MIS",
        "order_status": "complete", "filled_quantity": index + 1, "pending_quantity": 0,
        "average_price": 812.5, "rejection_reason": ""
    });
    let update: OrderUpdate =
        serde_json::from_value(value).unwrap_or_else(|error| panic!("order_update: {error}"));
    Event::for_user(user, update)
}

/// Publishes `count` order updates spread over five users, as oa's relay does.
async fn publish(
    config: &KafkaConfig,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Envelope>> {
    let envelopes: Vec<Arc<Envelope>> = (first..first + count)
        .map(|index| {
            Arc::new(Envelope::new(order_update(
                &format!("user{}", index % 5),
                index,
            )))
        })
        .collect();
    let mut producer = KafkaProducer::connect(config).await?;
    producer.send(&envelopes).await?;
    Ok(envelopes
        .iter()
        .map(|envelope| (**envelope).clone())
        .collect())
}

/// Writes a raw record to one partition.
async fn produce_raw(config: &KafkaConfig, partition: i32, value: &[u8]) -> anyhow::Result<i64> {
    let client = connect(config).await?;
    let partition_client = client
        .partition_client(
            config.order_events_topic.clone(),
            partition,
            UnknownTopicHandling::Retry,
        )
        .await?;
    let offsets = partition_client
        .produce(
            vec![Record {
                key: Some(b"somebody".to_vec()),
                value: Some(value.to_vec()),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            }],
            Codec::NoCompression,
        )
        .await?;
    offsets
        .first()
        .copied()
        .context("no offset for the raw record")
}

type Item = Result<ConsumedEvent, UndecodableRecord>;

/// Reads items until `enough` holds (30 s at most).
async fn read_until(
    consumer: &mut OrderEventConsumer,
    enough: impl Fn(&[Item]) -> bool,
) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !enough(&items) {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(Some(item)) => items.push(item),
            Ok(None) => bail!("the consumer stopped after {} items", items.len()),
            Err(_) => bail!("only {} items within 30 s: {items:?}", items.len()),
        }
    }
    Ok(items)
}

/// A consumer of the whole topic that keeps its offsets in memory only.
fn from_earliest(config: KafkaConfig) -> anyhow::Result<OrderEventConsumer> {
    let store = Arc::new(MemoryOffsetStore::new());
    Ok(OrderEventConsumer::start(
        config,
        store,
        StartPosition::Earliest,
    )?)
}

/// The first `count` items a fresh [`from_earliest`] consumer reads; it is stopped after.
async fn read_from_earliest(config: &KafkaConfig, count: usize) -> anyhow::Result<Vec<Item>> {
    let mut consumer = from_earliest(config.clone())?;
    let items = read_until(&mut consumer, |items| items.len() >= count).await?;
    consumer.shutdown(Duration::from_secs(5)).await;
    Ok(items)
}

/// The stored next offsets of the three partitions of `config`'s topic, added up: the
/// number of records consumed from a topic whose offsets start at 0.
async fn stored_total(store: &dyn OffsetStore, config: &KafkaConfig) -> anyhow::Result<i64> {
    let mut total = 0;
    for partition in 0..3 {
        let at = TopicPartition::new(&config.order_events_topic, partition);
        total += store.load(at).await?.unwrap_or(0);
    }
    Ok(total)
}

/// The envelope ids of the events read (not of the undecodable records), in order.
fn ids_in_order(items: &[Item]) -> Vec<Uuid> {
    items
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(|event| event.envelope.id)
        .collect()
}

fn ids(items: &[Item]) -> HashSet<Uuid> {
    ids_in_order(items).into_iter().collect()
}

fn unique_topic(name: &str) -> String {
    format!("{name}_{}", Uuid::now_v7().simple())
}

/// A broker of the test's own and the settings for a new topic of `partitions` on it (named
/// after `name`, made unique); the broker stops when dropped.
fn broker_with_topic(name: &str, partitions: i32) -> anyhow::Result<(Tansu, KafkaConfig)> {
    let broker = Tansu::start(Storage::Sqlite)?;
    let config = config(&broker.bootstrap(), &unique_topic(name), partitions);
    Ok((broker, config))
}

#[tokio::test(flavor = "multi_thread")]
async fn events_come_back_typed_from_every_partition_and_bad_records_are_reported_in_place()
-> anyhow::Result<()> {
    let (_broker, config) = broker_with_topic("typed", 3)?;
    let published = publish(&config, 0, 30).await?;
    let garbage_offset = produce_raw(&config, 1, b"not json at all").await?;
    let mut unknown = serde_json::to_value(&published[0])?;
    unknown["event_type"] = "no_such_event".into();
    let unknown_offset = produce_raw(&config, 2, unknown.to_string().as_bytes()).await?;
    let after_bad = publish(&config, 30, 5).await?;

    let items = read_from_earliest(&config, 37).await?;

    let expected: HashSet<Uuid> = published.iter().chain(&after_bad).map(|e| e.id).collect();
    ensure!(
        ids(&items) == expected,
        "not every published event came back"
    );
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut by_user: HashMap<String, Vec<Uuid>> = HashMap::new();
    for item in &items {
        let (partition, offset) = match item {
            Ok(event) => (event.partition, event.offset),
            Err(bad) => (bad.partition, bad.offset),
        };
        if let Some(previous) = last_offset.insert(partition, offset) {
            ensure!(
                offset > previous,
                "partition {partition}: {offset} after {previous}"
            );
        }
        if let Ok(event) = item {
            let user = &event.envelope.user_id;
            ensure!(
                event.partition == partition_for_key(user.as_bytes(), 3),
                "{user}'s event on partition {}",
                event.partition
            );
            let original = published
                .iter()
                .chain(&after_bad)
                .find(|envelope| envelope.id == event.envelope.id)
                .context("an event nobody published")?;
            ensure!(event.envelope.data == original.data, "payload changed");
            by_user
                .entry(user.clone())
                .or_default()
                .push(event.envelope.id);
        }
    }
    ensure!(last_offset.len() == 3, "partitions read: {last_offset:?}");
    for (user, order) in &by_user {
        let published_order: Vec<Uuid> = published
            .iter()
            .chain(&after_bad)
            .filter(|envelope| &envelope.user_id == user)
            .map(|envelope| envelope.id)
            .collect();
        ensure!(order == &published_order, "{user}'s events out of order");
    }

    let errors: Vec<&UndecodableRecord> = items
        .iter()
        .filter_map(|item| item.as_ref().err())
        .collect();
    ensure!(errors.len() == 2, "{errors:?}");
    let garbage = errors
        .iter()
        .find(|error| error.partition == 1)
        .context("no error for partition 1")?;
    ensure!(garbage.offset == garbage_offset, "{garbage:?}");
    ensure!(garbage.value.as_deref() == Some(&b"not json at all"[..]));
    let message = garbage.to_string();
    ensure!(
        message.contains(&format!(
            "offset {garbage_offset} of {}/1",
            config.order_events_topic
        )) && message.contains("not an oa event envelope"),
        "{message}"
    );
    let unknown = errors
        .iter()
        .find(|error| error.partition == 2)
        .context("no error for partition 2")?;
    ensure!(unknown.offset == unknown_offset, "{unknown:?}");
    ensure!(
        unknown.reason.contains("no_such_event"),
        "{}",
        unknown.reason
    );
    Ok(())
}

/// Runs one store through a restart: everything from the earliest offset first, then only
/// what was published while the consumer was away.
async fn resumes_after_restart(
    config: &KafkaConfig,
    open: impl Fn() -> anyhow::Result<Arc<dyn OffsetStore>>,
) -> anyhow::Result<()> {
    let start = StartPosition::Stored {
        otherwise: AutoOffsetReset::Earliest,
    };
    let first = publish(config, 0, 6).await?;
    let mut consumer = OrderEventConsumer::start(config.clone(), open()?, start.clone())?;
    let items = read_until(&mut consumer, |items| items.len() >= 6).await?;
    ensure!(ids(&items) == first.iter().map(|e| e.id).collect::<HashSet<_>>());
    consumer.shutdown(Duration::from_secs(5)).await;

    let store = open()?;
    let stored = stored_total(store.as_ref(), config).await?;
    ensure!(stored == 6, "stored offsets add up to {stored}, expected 6");

    let second = publish(config, 6, 3).await?;
    let expected: HashSet<Uuid> = second.iter().map(|e| e.id).collect();
    let mut consumer = OrderEventConsumer::start(config.clone(), store, start)?;
    let items = read_until(&mut consumer, |items| ids(items).is_superset(&expected)).await?;
    consumer.shutdown(Duration::from_secs(5)).await;
    ensure!(
        items.len() == 3 && ids(&items) == expected,
        "after the restart: {items:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn file_and_sqlite_stores_resume_where_the_last_run_stopped() -> anyhow::Result<()> {
    let broker = Tansu::start(Storage::Sqlite)?;
    let dir = tempfile::tempdir()?;

    let file = dir.path().join("offsets.json");
    let file_config = config(&broker.bootstrap(), &unique_topic("file"), 3);
    let open_file = |path: &Path| -> anyhow::Result<Arc<dyn OffsetStore>> {
        Ok(Arc::new(FileOffsetStore::open(path)?))
    };
    resumes_after_restart(&file_config, || open_file(&file)).await?;

    let database = dir.path().join("offsets.db");
    let sqlite_config = config(&broker.bootstrap(), &unique_topic("sqlite"), 3);
    resumes_after_restart(&sqlite_config, || {
        Ok(Arc::new(SqliteOffsetStore::open(&database, "risk")?) as Arc<dyn OffsetStore>)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_offsets_start_exactly_there() -> anyhow::Result<()> {
    let (_broker, config) = broker_with_topic("explicit", 1)?;
    let published = publish(&config, 0, 5).await?;
    let mut consumer = OrderEventConsumer::start(
        config.clone(),
        Arc::new(MemoryOffsetStore::new()),
        StartPosition::Offsets {
            offsets: BTreeMap::from([(0, 2)]),
            otherwise: AutoOffsetReset::Latest,
        },
    )?;
    let items = read_until(&mut consumer, |items| items.len() >= 3).await?;
    consumer.shutdown(Duration::from_secs(5)).await;
    let offsets: Vec<i64> = items
        .iter()
        .map(|item| item.as_ref().map_or(-1, |event| event.offset))
        .collect();
    ensure!(offsets == [2, 3, 4], "{offsets:?}");
    ensure!(ids(&items) == published[2..].iter().map(|e| e.id).collect::<HashSet<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_consumer_is_a_stream_that_saves_what_it_yielded() -> anyhow::Result<()> {
    let (_broker, config) = broker_with_topic("stream", 1)?;
    let published = publish(&config, 0, 6).await?;
    let store: Arc<dyn OffsetStore> = Arc::new(MemoryOffsetStore::new());
    let earliest = StartPosition::Stored {
        otherwise: AutoOffsetReset::Earliest,
    };
    let mut consumer = OrderEventConsumer::start(config.clone(), store.clone(), earliest.clone())?;
    // Stream combinators: the first four events, as typed envelopes.
    let first: Vec<Envelope> = tokio::time::timeout(
        Duration::from_secs(30),
        consumer
            .by_ref()
            .filter_map(|item| async move { item.ok() })
            .map(|event| event.envelope)
            .take(4)
            .collect::<Vec<_>>(),
    )
    .await
    .context("four events within 30 s")?;
    let ids: Vec<Uuid> = first.iter().map(|envelope| envelope.id).collect();
    let expected: Vec<Uuid> = published[..4].iter().map(|envelope| envelope.id).collect();
    ensure!(ids == expected, "{ids:?} != {expected:?}");
    consumer.shutdown(Duration::from_secs(5)).await;
    // The four yielded events count as processed: a new consumer starts at the fifth.
    let mut again = OrderEventConsumer::start(config, store, earliest)?;
    let rest = read_until(&mut again, |items| items.len() >= 2).await?;
    again.shutdown(Duration::from_secs(5)).await;
    ensure!(ids_in_order(&rest) == published[4..].iter().map(|e| e.id).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_offset_past_the_partition_resumes_from_its_earliest_record() -> anyhow::Result<()>
{
    let (_broker, config) = broker_with_topic("range", 3)?;
    let published = publish(&config, 0, 8).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("offsets.json");
    let store = FileOffsetStore::open(&path)?;
    for partition in 0..3 {
        // As if the topic had been recreated (or trimmed) since these were stored.
        store
            .save(
                TopicPartition::new(&config.order_events_topic, partition),
                1000,
            )
            .await?;
    }
    let mut consumer = OrderEventConsumer::start(
        config.clone(),
        Arc::new(store),
        StartPosition::Stored {
            otherwise: AutoOffsetReset::Latest,
        },
    )?;
    let expected: HashSet<Uuid> = published.iter().map(|e| e.id).collect();
    let items = read_until(&mut consumer, |items| ids(items).is_superset(&expected)).await?;
    ensure!(items.len() == 8, "{items:?}");
    let stats = consumer.monitor().stats();
    consumer.shutdown(Duration::from_secs(5)).await;
    ensure!(stats.resumed_from_earliest == 3, "{stats:?}");
    let stored = stored_total(&FileOffsetStore::open(&path)?, &config).await?;
    ensure!(stored == 8, "stored offsets add up to {stored}, expected 8");
    Ok(())
}

/// `config` with SASL_SSL (SCRAM-SHA-512) to `broker`, logging in with `password`.
fn secure(config: &KafkaConfig, broker: &Tansu, password: &str) -> anyhow::Result<KafkaConfig> {
    let ca = broker
        .pki()
        .context("a secure broker has a PKI")?
        .ca
        .clone();
    let security = SecurityConfig::from_lookup(|name| {
        Some(
            match name {
                "KAFKA_SECURITY_PROTOCOL" => "SASL_SSL",
                "KAFKA_SASL_MECHANISM" => "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME" => "risk",
                "KAFKA_SASL_PASSWORD" => password,
                "KAFKA_SSL_CA_LOCATION" => return Some(ca.display().to_string()),
                _ => return None,
            }
            .to_string(),
        )
    })
    .map_err(|problems| anyhow::anyhow!("{problems:?}"))?;
    Ok(KafkaConfig {
        security,
        ..config.clone()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_read_over_tls_with_a_scram_login() -> anyhow::Result<()> {
    let password = "risk-service-password-0123";
    let broker = Tansu::start_secure(&SecureOptions::tls_and_sasl("risk", password))?;
    let plain = config(&broker.bootstrap(), &unique_topic("secure"), 3);
    let config = secure(&plain, &broker, password)?;
    let published = publish(&config, 0, 6).await?;

    let items = read_from_earliest(&config, 6).await?;
    ensure!(ids(&items) == published.iter().map(|e| e.id).collect::<HashSet<_>>());

    // The same consumer with a wrong password reads nothing and counts its failures.
    let refused = secure(&plain, &broker, "not-the-password-0123456")?;
    let mut consumer = from_earliest(refused)?;
    let nothing = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await;
    ensure!(nothing.is_err(), "read {nothing:?} with a wrong password");
    let stats = consumer.monitor().stats();
    consumer.shutdown(Duration::from_secs(5)).await;
    ensure!(stats.failures >= 1, "{stats:?}");
    Ok(())
}

/// A handler whose effects and offsets share one SQLite transaction: each record's value is
/// inserted and the next offset stored atomically (`Handled::Committed`).
struct Ledger {
    database: std::path::PathBuf,
}

impl RecordHandler for Ledger {
    fn handle<'a>(&'a self, record: &'a ConsumedRecord, _stop: &'a mut StopSignal) -> Handling<'a> {
        Box::pin(async move {
            let failed = |error: rusqlite::Error| KafkaError::Internal(error.to_string());
            let mut connection = rusqlite::Connection::open(&self.database).map_err(failed)?;
            let transaction = connection.transaction().map_err(failed)?;
            let value = String::from_utf8_lossy(record.record.value.as_deref().unwrap_or_default())
                .into_owned();
            transaction
                .execute("INSERT INTO ledger (value) VALUES (?1)", [value])
                .map_err(failed)?;
            SqliteOffsetStore::save_in(
                &transaction,
                "ledger",
                &record.topic,
                record.partition,
                record.next_offset(),
            )
            .map_err(failed)?;
            transaction.commit().map_err(failed)?;
            Ok(Handled::Committed)
        })
    }
}

async fn ledger_rows(database: &Path, at_least: usize) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows: usize = rusqlite::Connection::open(database)?.query_row(
            "SELECT COUNT(*) FROM ledger",
            [],
            |row| row.get(0),
        )?;
        if rows >= at_least || tokio::time::Instant::now() > deadline {
            return Ok(rows);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_can_commit_its_offsets_with_its_effects() -> anyhow::Result<()> {
    let (_broker, config) = broker_with_topic("ledger", 3)?;
    let dir = tempfile::tempdir()?;
    let database = dir.path().join("ledger.db");
    {
        let connection = rusqlite::Connection::open(&database)?;
        connection.execute_batch("CREATE TABLE ledger (value TEXT NOT NULL)")?;
        SqliteOffsetStore::create_table(&connection)?;
    }
    let run = || -> anyhow::Result<oa_events_kafka::ConsumerHandle> {
        let store = Arc::new(SqliteOffsetStore::open(&database, "ledger")?);
        Ok(
            TopicConsumer::new(config.clone(), config.order_events_topic.clone(), store)
                .start_at(StartPosition::Stored {
                    otherwise: AutoOffsetReset::Earliest,
                })
                .spawn(Arc::new(Ledger {
                    database: database.clone(),
                }))?,
        )
    };
    publish(&config, 0, 5).await?;
    let consumer = run()?;
    ensure!(ledger_rows(&database, 5).await? == 5);
    consumer.shutdown(Duration::from_secs(5)).await;

    // A restart resumes from the offsets written with the rows: nothing is applied twice.
    publish(&config, 5, 4).await?;
    let consumer = run()?;
    let rows = ledger_rows(&database, 9).await?;
    // Give a re-delivery the time to show up before counting for good.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = consumer.monitor().stats();
    consumer.shutdown(Duration::from_secs(5)).await;
    ensure!(
        rows == 9 && ledger_rows(&database, 0).await? == 9,
        "{rows} rows"
    );
    ensure!(stats.records == 4, "{stats:?}");
    Ok(())
}

/// `PartitionReader` (an edge's read-back): a partition's bounds, and exactly the records of
/// a range, from the middle of a producer batch on, in order, with the partition's earliest
/// offset; a range past the end stops there; a missing topic is an error naming it.
#[tokio::test(flavor = "multi_thread")]
async fn the_partition_reader_reads_exactly_a_range_and_the_bounds() -> anyhow::Result<()> {
    let (_broker, config) = broker_with_topic("reader", 2)?;
    // One batch per partition: ranges start inside batches.
    let published = publish(&config, 0, 20).await?;
    let reader = PartitionReader::new(config.clone(), config.order_events_topic.clone());
    ensure!(reader.topic_info().await?.partitions == 2);
    for partition in 0..2 {
        let expected: Vec<Uuid> = published
            .iter()
            .filter(|envelope| partition_for_key(envelope.user_id.as_bytes(), 2) == partition)
            .map(|envelope| envelope.id)
            .collect();
        let count = i64::try_from(expected.len())?;
        let bounds = reader.bounds(partition).await?;
        ensure!(
            bounds
                == PartitionBounds {
                    earliest: 0,
                    high_watermark: count
                },
            "{bounds:?}"
        );
        let mut read = Vec::new();
        let earliest = reader
            .scan(partition, 1, count - 1, |record| read.push(record))
            .await?;
        ensure!(earliest == 0);
        let offsets: Vec<i64> = read.iter().map(|record| record.offset).collect();
        ensure!(offsets == (1..count - 1).collect::<Vec<_>>(), "{offsets:?}");
        let ids: Vec<Uuid> = read
            .iter()
            .map(|record| decode_event(record).map(|event| event.envelope.id))
            .collect::<Result<_, _>>()?;
        ensure!(ids == expected[1..expected.len() - 1]);
        let mut past_end = 0;
        reader
            .scan(partition, count - 1, count + 100, |_| past_end += 1)
            .await?;
        ensure!(past_end == 1, "{past_end}");
    }
    let missing = PartitionReader::new(config.clone(), unique_topic("missing"));
    let error = missing.bounds(0).await.unwrap_err().to_string();
    ensure!(error.contains("missing_"), "{error}");
    Ok(())
}

/// Waits (up to `within`) until the monitor's `connected` is `wanted`; returns how long it
/// took and the stats then.
async fn until_connected_is(
    monitor: &ConsumerMonitor,
    wanted: bool,
    within: Duration,
) -> anyhow::Result<(Duration, ConsumerStats)> {
    let started = tokio::time::Instant::now();
    while monitor.stats().connected != wanted {
        ensure!(
            started.elapsed() < within,
            "connected did not become {wanted} within {within:?}: {:?}, last failure {:?}",
            monitor.stats(),
            monitor.last_failure()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((started.elapsed(), monitor.stats()))
}

/// The monitor says whether the consumer reads the topic now (an edge's `/health` answers
/// 503 from it): a SIGKILLed broker is reported by the liveness check within two
/// `KAFKA_CONSUMER_LIVENESS_MS` (0.5 s here), although rskafka would retry the fetch for the
/// whole `KAFKA_REQUEST_TIMEOUT_MS` (30 s, the default); the broker restarted on the same
/// port and data is reported again, and every event before and after comes exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn the_monitor_reports_a_lost_and_a_regained_broker() -> anyhow::Result<()> {
    let mut broker = Tansu::start(Storage::Sqlite)?;
    let config = KafkaConfig {
        consumer_liveness: Duration::from_millis(500),
        request_timeout: Duration::from_secs(30),
        ..config(&broker.bootstrap(), &unique_topic("liveness"), 2)
    };
    let mut published = publish(&config, 0, 6).await?;
    let consumer = OrderEventConsumer::start(
        config.clone(),
        Arc::new(MemoryOffsetStore::new()),
        StartPosition::Stored {
            otherwise: AutoOffsetReset::Earliest,
        },
    )?;
    let monitor = consumer.monitor();
    // A reader that keeps asking for the next event, as an edge's feed loop does.
    let (received_tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut consumer = consumer;
        while let Some(item) = consumer.next().await {
            if received_tx.send(item).is_err() {
                break;
            }
        }
        consumer
    });
    let mut items = Vec::new();
    let mut receive = async |count: usize, items: &mut Vec<Item>, within: Duration| {
        let deadline = tokio::time::Instant::now() + within;
        while items.len() < count {
            match tokio::time::timeout_at(deadline, received.recv()).await {
                Ok(Some(item)) => items.push(item),
                _ => bail!(
                    "only {} of {count} events within {within:?}: {items:?}",
                    items.len()
                ),
            }
        }
        Ok(())
    };
    receive(6, &mut items, Duration::from_secs(30)).await?;
    ensure!(monitor.stats().connected, "{:?}", monitor.stats());

    broker.kill();
    let (noticed_after, lost) =
        until_connected_is(&monitor, false, Duration::from_secs(10)).await?;
    ensure!(lost.failures > 0, "{lost:?}");
    let failure = monitor.last_failure().unwrap_or_default();
    ensure!(failure.contains(&broker.bootstrap()), "{failure}");
    println!("the lost broker was reported after {noticed_after:?}: {failure}");

    broker.restart()?;
    let (regained_after, _) = until_connected_is(&monitor, true, Duration::from_secs(10)).await?;
    println!("the restarted broker was reported after {regained_after:?}");
    // Reading resumes with the broker, not once rskafka's retries of the fetch in flight
    // give up (KAFKA_REQUEST_TIMEOUT_MS, 30 s here).
    published.extend(publish(&config, 6, 6).await?);
    receive(12, &mut items, Duration::from_secs(15)).await?;
    // Nothing more comes: each event exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(item) = received.try_recv() {
        items.push(item);
    }
    let mut got: Vec<Uuid> = items
        .iter()
        .map(|item| {
            item.as_ref()
                .map(|event| event.envelope.id)
                .map_err(|undecodable| anyhow::anyhow!("{undecodable}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut expected: Vec<Uuid> = published.iter().map(|envelope| envelope.id).collect();
    got.sort();
    expected.sort();
    ensure!(got == expected, "got {got:?}, published {expected:?}");
    ensure!(monitor.stats().connected, "{:?}", monitor.stats());

    reader.abort();
    Ok(())
}
