//! `OA_ROLE=edge`: Socket.IO and the WebSocket market-data proxy, fed from the order-events
//! topic (docs/scaling.md).
//!
//! ```text
//! order-events topic ──(every partition, no consumer group)──▶ feed loop
//!    ├─▶ Socket.IO: the user's sockets on this edge (seq = the event's Kafka position)
//!    └─▶ WebSocket proxy: the user's subscribe_orders clients (and password_change)
//! shared PostgreSQL store ──(read-only session)──▶ API-key checks of both listeners
//! ```
//!
//! An edge writes nothing: no REST, no order engine, no outbox, no ESB. A client that
//! reconnects to any edge with the `seq` of the last event it received gets what it missed:
//! from the edge's buffer, or read back from the topic ([`KafkaEventLog`]), or `replay_gap`
//! for what the topic no longer retains.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use oa_events_core::{ApiKeyVerifier, EventPublisher};
use oa_events_kafka::{
    AutoOffsetReset, ConsumerMonitor, ConsumerOptions, KafkaConfig, MemoryOffsetStore, OffsetStore,
    OrderEventConsumer, PartitionReader, StartPosition, TopicConsumer, TopicPartition,
    decode_event, partition_for_key,
};
use oa_events_socketio::{
    EventLog, LogEndFuture, LogError, LogPosition, LogQuery, LogRead, LogReadFuture,
    MAX_LOG_PARTITIONS, SocketIoSink,
};
use serde_json::json;

use crate::config::Settings;
use crate::shutdown::Deadline;
use crate::{http, telemetry};

/// How long start-up waits for the order-events topic's partitions and their ends.
const KAFKA_STARTUP_WAIT: Duration = Duration::from_secs(30);

/// The order-events topic as the Socket.IO layer's [`EventLog`].
#[derive(Debug)]
pub struct KafkaEventLog {
    reader: Arc<PartitionReader>,
    partitions: i32,
}

impl KafkaEventLog {
    /// The log of the topic `reader` reads, which has `partitions` partitions.
    pub fn new(reader: Arc<PartitionReader>, partitions: i32) -> Self {
        KafkaEventLog { reader, partitions }
    }
}

impl EventLog for KafkaEventLog {
    fn partition_of(&self, user_id: &str) -> i32 {
        // The producer's choice: murmur2 of the key (the user id), as the Java client.
        partition_for_key(user_id.as_bytes(), self.partitions)
    }

    fn read<'a>(&'a self, query: LogQuery<'a>) -> LogReadFuture<'a> {
        let LogQuery {
            user_id,
            partition,
            offsets,
            limit,
        } = query;
        Box::pin(async move {
            let mut events = VecDeque::new();
            let mut left_out = 0u64;
            let mut left_out_through = None;
            let earliest = self
                .reader
                .scan(partition, offsets.start, offsets.end, |record| {
                    let Ok(event) = decode_event(&record) else {
                        return;
                    };
                    if event.envelope.user_id != user_id || event.envelope.data.is_system_wide() {
                        return;
                    }
                    if events.len() == limit.max(1)
                        && let Some((offset, _)) = events.pop_front()
                    {
                        left_out += 1;
                        left_out_through = Some(offset);
                    }
                    events.push_back((event.offset, event.envelope));
                })
                .await
                .map_err(|error| LogError {
                    reason: error.to_string(),
                })?;
            Ok(LogRead {
                earliest,
                events: events.into(),
                left_out,
                left_out_through,
            })
        })
    }

    fn end(&self, partition: i32) -> LogEndFuture<'_> {
        Box::pin(async move {
            self.reader
                .bounds(partition)
                .await
                .map(|bounds| bounds.high_watermark)
                .map_err(|error| LogError {
                    reason: error.to_string(),
                })
        })
    }
}

/// The topic's partition count and, per partition, the offset the next record gets: where
/// this edge starts delivering.
async fn start_positions(
    reader: &PartitionReader,
    kafka: &KafkaConfig,
) -> anyhow::Result<(i32, Vec<(i32, i64)>)> {
    let lookup = async {
        let topic = reader.topic_info().await?;
        let mut ends = Vec::new();
        for partition in 0..topic.partitions {
            ends.push((partition, reader.bounds(partition).await?.high_watermark));
        }
        Ok::<_, oa_events_kafka::KafkaError>((topic.partitions, ends))
    };
    let (partitions, ends) = tokio::time::timeout(KAFKA_STARTUP_WAIT, lookup)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "OA_ROLE=edge: Kafka ({}) did not answer within {KAFKA_STARTUP_WAIT:?}: an edge starts once the order-events topic {:?} can be read",
                kafka.bootstrap_list(),
                kafka.order_events_topic
            )
        })?
        .with_context(|| {
            format!(
                "OA_ROLE=edge: cannot read the order-events topic {:?}",
                kafka.order_events_topic
            )
        })?;
    if partitions > MAX_LOG_PARTITIONS {
        anyhow::bail!(
            "OA_ROLE=edge: the order-events topic {:?} has {partitions} partitions; an edge's resume tokens name at most {MAX_LOG_PARTITIONS}",
            kafka.order_events_topic
        );
    }
    Ok((partitions, ends))
}

/// Hands every event of the topic to this edge's Socket.IO sockets and WebSocket clients,
/// in order per partition, until the consumer stops.
async fn feed(mut consumer: OrderEventConsumer, sink: SocketIoSink, tap: EventPublisher) {
    let mut undecodable = 0u64;
    while let Some(item) = consumer.next().await {
        match item {
            Ok(event) => {
                let position = LogPosition {
                    partition: event.partition,
                    offset: event.offset,
                };
                let envelope = Arc::new(event.envelope);
                // A record read again after the consumer reconnected is not delivered twice.
                if sink.deliver_logged(&envelope, position) {
                    metrics::counter!("oa_edge_events_total").increment(1);
                    // From the event's creation on the core to its hand-off to the sockets.
                    let age = (chrono::Utc::now() - envelope.timestamp)
                        .to_std()
                        .unwrap_or_default();
                    metrics::histogram!("oa_edge_delivery_seconds").record(age.as_secs_f64());
                    tap.publish_envelope(envelope);
                }
            }
            Err(record) => {
                undecodable += 1;
                metrics::counter!("oa_edge_undecodable_records_total").increment(1);
                if undecodable.is_power_of_two() {
                    tracing::warn!(%record, undecodable, "edge: skipped a record that is not an oa event");
                }
            }
        }
    }
}

#[derive(Clone)]
struct EdgeHealth {
    started: Instant,
    topic: String,
    brokers: String,
    partitions: i32,
    consumer: ConsumerMonitor,
    socketio: SocketIoSink,
    metrics: PrometheusHandle,
}

/// `/health` of an edge: `role: edge`, the order-events consumer's and the Socket.IO
/// layer's counters. 200 `ok` while the edge reads the topic; 503 `degraded`, with the
/// reason, while its consumer is disconnected (a failed session, or brokers that did not
/// answer its liveness check within `KAFKA_CONSUMER_LIVENESS_MS`): the edge delivers no order
/// event meanwhile, so a load balancer's health check sends clients to another edge.
async fn health(State(state): State<EdgeHealth>) -> Response {
    let consumer = state.consumer.stats();
    let socketio = state.socketio.stats();
    let last_error = state.consumer.last_failure();
    // Before its first session the consumer is connecting; start-up already read the topic.
    let reading = consumer.connected || consumer.failures == 0;
    let (code, status, reason) = if reading {
        (StatusCode::OK, "ok", None)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "degraded",
            Some(format!(
                "cannot read the order-events topic {:?} from Kafka ({}): {}",
                state.topic,
                state.brokers,
                last_error.as_deref().unwrap_or("not connected")
            )),
        )
    };
    let body = json!({
        "status": status,
        "role": "edge",
        "reason": reason,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "order_event_mode": "KAFKA",
        "layers": {"rest": false, "socketio": true, "kafka": true, "marketdata": true},
        "order_events": {
            "topic": state.topic,
            "partitions": state.partitions,
            "connected": consumer.connected,
            "records": consumer.records,
            "failures": consumer.failures,
            "last_error": last_error,
        },
        "socketio": {
            "clients": socketio.clients,
            "emitted": socketio.emitted,
            "replay_gaps": socketio.replay_gaps,
        },
    });
    (code, Json(body)).into_response()
}

async fn metrics(State(state): State<EdgeHealth>) -> Response {
    let connected = state.consumer.stats().connected;
    metrics::gauge!("oa_edge_order_events_connected").set(if connected { 1.0 } else { 0.0 });
    http::metrics_response(&state.metrics)
}

/// Runs an edge until SIGINT or SIGTERM.
pub async fn run(settings: Settings, started: Instant) -> anyhow::Result<()> {
    let metrics_handle = telemetry::init_metrics().context("installing the metrics recorder")?;
    let kafka = settings
        .kafka
        .clone()
        .context("OA_ROLE=edge needs ORDER_EVENT_MODE=KAFKA and the Kafka settings")?;
    let listener = http::bind(settings.http_addr).await?;
    let http_addr = listener.local_addr().context("reading the HTTP address")?;

    // API keys: the shared store, read-only. An edge announces nothing itself: key changes
    // reach it as password_change events on the topic.
    let keys = {
        let config = settings.api.clone();
        tokio::task::spawn_blocking(move || {
            oa_api::KeyStore::open_read_only(&config, EventPublisher::builder().build())
        })
        .await
        .context("opening the key store")?
        .context("OA_ROLE=edge: opening the shared key store (DATABASE_URL) read-only")?
    };
    let verifier: Arc<dyn ApiKeyVerifier> = Arc::new(keys);

    tracing::info!(
        brokers = %kafka.bootstrap_list(),
        security = %kafka.security.describe(),
        topic = kafka.order_events_topic,
        "Kafka settings"
    );
    let reader = Arc::new(PartitionReader::new(
        kafka.clone(),
        kafka.order_events_topic.clone(),
    ));
    let (partitions, ends) = start_positions(&reader, &kafka).await?;
    let log = Arc::new(KafkaEventLog::new(Arc::clone(&reader), partitions));
    let (layer, sink) = SocketIoSink::fed_by_log(
        settings.socketio.clone(),
        Arc::clone(&verifier),
        log,
        ends.iter().copied(),
    )
    .context("starting the Socket.IO layer")?;
    let io = sink.io().clone();

    // The WebSocket proxy's subscribe_orders (and its password_change handling) read the
    // events this edge delivers from an in-process tap.
    let tap = EventPublisher::builder().build();
    let marketdata = oa_marketdata_zmq::start(
        settings.marketdata.clone(),
        Arc::clone(&verifier),
        tap.clone(),
        crate::app::BROKER_NAME.to_string(),
    )
    .await
    .context("starting the market-data layer")?;

    // Every partition from its end at start-up; after a broker outage the consumer resumes
    // where it was (duplicates are skipped by position).
    let offsets = Arc::new(MemoryOffsetStore::new());
    for (partition, end) in &ends {
        offsets
            .save(
                TopicPartition::new(&kafka.order_events_topic, *partition),
                *end,
            )
            .await
            .context("seeding the edge's start offsets")?;
    }
    let consumer = OrderEventConsumer::from_consumer(
        TopicConsumer::new(kafka.clone(), kafka.order_events_topic.clone(), offsets)
            .start_at(StartPosition::Stored {
                otherwise: AutoOffsetReset::Latest,
            })
            .with_options(ConsumerOptions {
                name: "edge order events".to_string(),
                fetch_max_wait: kafka.edge_fetch_max_wait,
                ..ConsumerOptions::default()
            }),
    )
    .context("starting the order-events consumer")?;
    let monitor = consumer.monitor();
    let feeding = tokio::spawn(feed(consumer, sink.clone(), tap.clone()));

    let health_state = EdgeHealth {
        started,
        topic: kafka.order_events_topic.clone(),
        brokers: kafka.bootstrap_list(),
        partitions,
        consumer: monitor,
        socketio: sink.clone(),
        metrics: metrics_handle,
    };
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(health_state)
        .fallback(http::not_found)
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let router = oa_events_socketio::mount(router, layer, &sink);

    let shutdown_budget = settings.shutdown_timeout;
    let (deadline_sender, deadline) = Deadline::new(shutdown_budget);
    tokio::spawn(async move {
        crate::app::wait_for_signal().await;
        let _ = deadline_sender.send(Some(tokio::time::Instant::now() + shutdown_budget));
    });
    crate::app::announce_ready(&settings, http_addr, &marketdata)?;
    let served = crate::app::serve_http(listener, router, &settings, &deadline, Some(io)).await;
    if let Some(served) = served {
        served.context("HTTP server failed")?;
    }
    feeding.abort();
    if deadline.run(marketdata.shutdown()).await.is_none() {
        tracing::warn!("shutdown deadline reached: cut off the market-data shutdown");
    }
    tracing::info!("oa-server edge stopped");
    Ok(())
}
