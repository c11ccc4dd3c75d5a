//! Events/s through the Kafka sink: `EventPublisher::publish` -> `KafkaSink` ->
//! `MemoryOutbox` -> relay -> broker acknowledgement (acks=all), against a real tansu broker
//! with memory storage on loopback; side by side, in the same run and against the same
//! broker, kafka-python (the seed's client) producing the same envelopes and headers.
//!
//! Run: `cargo xtask kafka bench` (or `cargo bench -p oa-events-kafka --bench
//! kafka_throughput` once `cargo xtask kafka up` installed tansu). Bounded to about two
//! minutes: each scenario stops after 30 s and reports what it reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use oa_e2e::tansu::{Storage, Tansu};
use oa_events_core::catalog::OrderEvent;
use oa_events_core::{Event, EventPublisher, SinkOptions};
use oa_events_kafka::{
    Compression, KafkaConfig, KafkaRelay, MemoryOutbox, TopicCreation, ensure_topic,
};

const USERS: usize = 100;
const SCENARIO_LIMIT: Duration = Duration::from_secs(30);

fn order_event(index: usize) -> Event {
    Event::for_user(
        format!("user{}", index % USERS),
        OrderEvent {
            symbol: "SBIN".into(),
            action: "BUY".into(),
            orderid: index.to_string(),
            exchange: "NSE".into(),
            price_type: "MARKET".into(),
            product_type: "MIS".into(),
            mode: "live".into(),
            batch_order: None,
            is_last_order: None,
        },
    )
}

fn config(
    bootstrap: &str,
    topic: &str,
    compression: Compression,
    batch_size: usize,
) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: vec![bootstrap.to_string()],
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

async fn oa_sink(config: KafkaConfig, events: usize) -> anyhow::Result<Outcome> {
    ensure_topic(&config, &config.order_events_topic).await?;
    let relay = KafkaRelay::spawn(config, Arc::new(MemoryOutbox::new(events + 1)))?;
    let publisher = EventPublisher::builder()
        .sink(
            relay.sink(),
            SinkOptions {
                capacity: events + 1,
                max_batch: 4096,
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
    topic: &str,
    compression: Compression,
    batch_size: usize,
    events: usize,
) -> anyhow::Result<Outcome> {
    let output = oa_e2e::run_python_script(
        "kafka_produce_bench.py",
        &[
            ("KAFKA_BOOTSTRAP", bootstrap.to_string()),
            ("KAFKA_TOPIC", topic.to_string()),
            ("EVENTS", events.to_string()),
            ("USERS", USERS.to_string()),
            ("COMPRESSION", compression.as_str().to_string()),
            ("BATCH_SIZE", batch_size.to_string()),
            ("LINGER_MS", "10".to_string()),
        ],
    )?;
    let line = output
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .context("kafka-python printed no result")?;
    let value: serde_json::Value = serde_json::from_str(line)?;
    Ok(Outcome {
        events: value["events"].as_u64().unwrap_or(0),
        seconds: value["seconds"].as_f64().unwrap_or(f64::NAN),
    })
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let broker = Tansu::start(Storage::Memory)?;
    let bootstrap = broker.bootstrap();
    println!(
        "Kafka sink benchmark: tansu 0.6, {} storage, 3 partitions, 127.0.0.1 loopback, acks=all, {USERS} users",
        Storage::Memory.name()
    );
    println!(
        "{:<34} {:>9} {:>9} {:>12}",
        "producer (compression, batch bytes)", "events", "seconds", "events/s"
    );
    let scenarios = [
        (Compression::Snappy, 16_384, 200_000, 20_000),
        (Compression::Snappy, 1 << 20, 300_000, 20_000),
        (Compression::None, 1 << 20, 300_000, 0),
    ];
    let mut ratios = Vec::new();
    for (index, (compression, batch_size, events, python_events)) in
        scenarios.into_iter().enumerate()
    {
        let topic = format!("oa_bench_{index}_{compression}");
        let oa = runtime.block_on(oa_sink(
            config(&bootstrap, &topic, compression, batch_size),
            events,
        ))?;
        println!(
            "{:<34} {:>9} {:>9.2} {:>12.0}",
            format!("oa KafkaSink ({compression}, {batch_size})"),
            oa.events,
            oa.seconds,
            oa.rate()
        );
        if python_events > 0 {
            let python_topic = format!("{topic}_python");
            runtime.block_on(ensure_topic(
                &config(&bootstrap, &python_topic, compression, batch_size),
                &python_topic,
            ))?;
            let python = kafka_python(
                &bootstrap,
                &python_topic,
                compression,
                batch_size,
                python_events,
            )?;
            println!(
                "{:<34} {:>9} {:>9.2} {:>12.0}",
                format!("kafka-python ({compression}, {batch_size})"),
                python.events,
                python.seconds,
                python.rate()
            );
            ratios.push((compression, batch_size, oa.rate() / python.rate()));
        }
    }
    for (compression, batch_size, ratio) in ratios {
        println!("oa / kafka-python ({compression}, {batch_size}): {ratio:.1}x");
    }
    Ok(())
}
