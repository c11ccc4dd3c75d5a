//! Events/s through the Kafka sink: `EventPublisher::publish` -> `KafkaSink` -> outbox ->
//! relay -> broker acknowledgement (acks=all), against a real tansu broker on loopback; side
//! by side, in the same run, against the same broker and with the same number of events,
//! kafka-python (the seed's client) producing the same envelopes and headers and counting
//! only the sends whose result it checked as acknowledged.
//!
//! oa's main row goes through the SQLite outbox table as the server does (`oa_api`'s
//! `OutboxTable` through `oa_api::kafka_outbox::StoreOutbox`, the server's adapter: an insert per event, the relay's read, the delivered mark); the
//! `MemoryOutbox` row is an extra, showing the cost of the durable store.
//!
//! Run: `cargo xtask kafka bench [--secure]` (or `cargo bench -p oa-events-kafka --bench
//! kafka_throughput` once `cargo xtask kafka up` installed tansu; `OA_KAFKA_BENCH_SECURE=1`
//! for TLS + SASL SCRAM-SHA-512, against a tansu with sqlite storage behind a TLS proxy;
//! `OA_KAFKA_BENCH_STORAGE=sqlite` gives a plaintext run the same broker storage, so that the
//! two differ only in TLS + SASL).
//! Each scenario stops after 60 s and reports what it reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use oa_api::kafka_outbox::StoreOutbox;
use oa_api::outbox::OutboxTable;
use oa_e2e::tansu::{SecureOptions, Storage, Tansu};
use oa_events_core::catalog::OrderEvent;
use oa_events_core::{Event, EventPublisher, SinkOptions};
use oa_events_kafka::{
    Compression, KafkaConfig, KafkaRelay, MemoryOutbox, Outbox, SecurityConfig, TopicCreation,
    ensure_topic,
};

const USERS: usize = 100;
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
const USER: &str = "oa";
const PASSWORD: &str = "oa-bench-throughput";

/// Which outbox oa's row uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OutboxKind {
    Sqlite,
    Memory,
}

fn order_event(index: usize) -> Event {
    Event::for_user(
        format!("user{}", index % USERS),
        OrderEvent::sbin_market("BUY", index.to_string()),
    )
}

fn config(
    bootstrap: &str,
    security: &SecurityConfig,
    topic: &str,
    compression: Compression,
    batch_size: usize,
) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: vec![bootstrap.to_string()],
        security: security.clone(),
        order_events_topic: topic.to_string(),
        compression,
        batch_size,
        topic_creation: TopicCreation {
            create_missing: true,
            partitions: 3,
            replication_factor: 1,
        },
        ..KafkaConfig::default()
    }
}

struct Outcome {
    events: u64,
    seconds: f64,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

async fn oa_sink(
    config: KafkaConfig,
    events: usize,
    kind: OutboxKind,
    store_dir: &std::path::Path,
) -> anyhow::Result<Outcome> {
    ensure_topic(&config, &config.order_events_topic).await?;
    let outbox: Arc<dyn Outbox> = match kind {
        OutboxKind::Memory => Arc::new(MemoryOutbox::new(events + 1)),
        OutboxKind::Sqlite => Arc::new(StoreOutbox::new(
            OutboxTable::open(store_dir.join(format!("{}.db", config.order_events_topic)))
                .context("opening the SQLite outbox")?,
        )),
    };
    let relay = KafkaRelay::spawn(config, outbox)?;
    let publisher = EventPublisher::builder()
        .sink(
            relay.sink(),
            SinkOptions {
                capacity: events + 1,
                max_batch: 4096,
                ..SinkOptions::default()
            },
        )
        .build();
    // Warm-up: connection, metadata, partition leaders.
    publisher.publish(order_event(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay.stats().delivered < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let base = relay.stats().delivered;
    let started = Instant::now();
    for index in 0..events {
        publisher.publish(order_event(index));
        if index % 8192 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let target = base + events as u64;
    while relay.stats().delivered < target && started.elapsed() < SCENARIO_LIMIT {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let delivered = relay.stats().delivered - base;
    publisher.shutdown(Duration::from_secs(1)).await;
    relay.shutdown(Duration::from_secs(1)).await;
    Ok(Outcome {
        events: delivered,
        seconds,
    })
}

fn kafka_python(
    bootstrap: &str,
    security: &[(&'static str, String)],
    topic: &str,
    compression: Compression,
    batch_size: usize,
    events: usize,
) -> anyhow::Result<Outcome> {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP", bootstrap.to_string()),
        ("KAFKA_TOPIC", topic.to_string()),
        ("EVENTS", events.to_string()),
        ("USERS", USERS.to_string()),
        ("COMPRESSION", compression.as_str().to_string()),
        ("BATCH_SIZE", batch_size.to_string()),
        ("LINGER_MS", "10".to_string()),
    ];
    env.extend(security.iter().cloned());
    let output = oa_e2e::run_python_script("kafka_produce_bench.py", &env)?;
    let line = output
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .context("kafka-python printed no result")?;
    let value: serde_json::Value = serde_json::from_str(line)?;
    let failed = value["failed"].as_u64().unwrap_or(0);
    if failed > 0 {
        println!("kafka-python: {failed} sends failed (not counted)");
    }
    Ok(Outcome {
        events: value["acked"].as_u64().unwrap_or(0),
        seconds: value["seconds"].as_f64().unwrap_or(f64::NAN),
    })
}

fn main() -> anyhow::Result<()> {
    let secure = std::env::var("OA_KAFKA_BENCH_SECURE").is_ok_and(|value| value == "1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (broker, storage) = if secure {
        (
            Tansu::start_secure(&SecureOptions::tls_and_sasl(USER, PASSWORD))?,
            Storage::Sqlite,
        )
    } else {
        let storage = match std::env::var("OA_KAFKA_BENCH_STORAGE").as_deref() {
            Ok("sqlite") => Storage::Sqlite,
            Ok("memory") | Err(_) => Storage::Memory,
            Ok(other) => anyhow::bail!("OA_KAFKA_BENCH_STORAGE={other}: expected memory or sqlite"),
        };
        (Tansu::start(storage)?, storage)
    };
    let security_env: Vec<(&'static str, String)> = match broker.pki() {
        Some(pki) => vec![
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_string()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_string()),
            ("KAFKA_SASL_USERNAME", USER.to_string()),
            ("KAFKA_SASL_PASSWORD", PASSWORD.to_string()),
            ("KAFKA_SSL_CA_LOCATION", pki.ca.display().to_string()),
        ],
        None => Vec::new(),
    };
    let security = SecurityConfig::from_lookup(|name| {
        security_env
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| value.clone())
    })
    .map_err(|problems| anyhow::anyhow!("{problems:?}"))?;
    let store_dir = tempfile::tempdir()?;
    let bootstrap = broker.bootstrap();
    println!(
        "Kafka sink benchmark: tansu 0.6, {} storage, 3 partitions, 127.0.0.1 loopback, acks=all, {USERS} users, {}",
        storage.name(),
        if secure {
            "TLS + SASL SCRAM-SHA-512 (rustls proxy in front of tansu)"
        } else {
            "plaintext"
        }
    );
    println!(
        "{:<44} {:>9} {:>9} {:>12}",
        "producer (compression, batch bytes)", "events", "seconds", "events/s"
    );
    let print = |name: String, outcome: &Outcome| {
        println!(
            "{:<44} {:>9} {:>9.2} {:>12.0}",
            name,
            outcome.events,
            outcome.seconds,
            outcome.rate()
        );
    };
    // The same number of events on every row of a scenario.
    let scenarios = [
        (Compression::Lz4, 16_384, 50_000),
        (Compression::Lz4, 1 << 20, 50_000),
    ];
    let mut ratios = Vec::new();
    for (index, (compression, batch_size, events)) in scenarios.into_iter().enumerate() {
        let topic = format!("oa_bench_{index}_{compression}");
        let sqlite = runtime.block_on(oa_sink(
            config(&bootstrap, &security, &topic, compression, batch_size),
            events,
            OutboxKind::Sqlite,
            store_dir.path(),
        ))?;
        print(
            format!("oa, SQLite outbox ({compression}, {batch_size})"),
            &sqlite,
        );
        let memory_topic = format!("{topic}_memory");
        let memory = runtime.block_on(oa_sink(
            config(
                &bootstrap,
                &security,
                &memory_topic,
                compression,
                batch_size,
            ),
            events,
            OutboxKind::Memory,
            store_dir.path(),
        ))?;
        print(
            format!("oa, MemoryOutbox ({compression}, {batch_size})"),
            &memory,
        );
        let python_topic = format!("{topic}_python");
        runtime.block_on(ensure_topic(
            &config(
                &bootstrap,
                &security,
                &python_topic,
                compression,
                batch_size,
            ),
            &python_topic,
        ))?;
        let python = kafka_python(
            &bootstrap,
            &security_env,
            &python_topic,
            compression,
            batch_size,
            events,
        )?;
        print(
            format!("kafka-python, acked sends ({compression}, {batch_size})"),
            &python,
        );
        ratios.push((compression, batch_size, sqlite.rate() / python.rate()));
    }
    for (compression, batch_size, ratio) in ratios {
        println!("oa (SQLite outbox) / kafka-python ({compression}, {batch_size}): {ratio:.1}x");
    }
    Ok(())
}
