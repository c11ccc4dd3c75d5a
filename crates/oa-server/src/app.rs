//! Composition: build the event publisher for the configured mode, start each layer, serve,
//! and shut down in order (stop accepting, finish the order engine's queue, then drain the
//! event sinks), all within one deadline (`OA_SHUTDOWN_TIMEOUT_SECONDS`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use oa_api::leadership::Leadership;
use oa_events_core::{EventPublisher, SinkOptions};
use oa_events_kafka::{EsbAuth, EsbConsumer, EsbOptions, EsbSecurity, KafkaConfig, KafkaError};
use oa_events_socketio::SocketIoSink;
use serde_json::json;

use crate::config::{Role, Settings};
use crate::esb::StoreExecutor;
use crate::http;
use crate::late_verifier::LateVerifier;
use crate::leader::LeaderServices;
use crate::shutdown::{Deadline, InFlightRequests};
use crate::telemetry;

/// The broker name reported to clients (WebSocket `broker`, `master_contract_download`).
pub(crate) const BROKER_NAME: &str = "simulator";

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    if settings.role == Role::Edge {
        return crate::edge::run(settings, started).await;
    }
    let metrics = telemetry::init_metrics().context("installing the metrics recorder")?;
    if settings.pepper_is_default {
        tracing::warn!(
            "API_KEY_PEPPER is not set: using the built-in development pepper; set your own (>= 32 characters) in production"
        );
    }

    let listener = http::bind(settings.http_addr).await?;
    let http_addr = listener.local_addr().context("reading the HTTP address")?;

    // Event sinks first: the publisher is immutable once built and every layer publishes.
    let verifier = Arc::new(LateVerifier::default());
    let sink_options = SinkOptions {
        capacity: settings.event_queue_capacity,
        max_bytes: settings.event_queue_max_bytes,
        ..SinkOptions::default()
    };
    let mut publisher_builder = EventPublisher::builder();
    let mut socketio_layer = None;
    let mut socketio = None;
    if settings.event_mode.uses_socketio() {
        let (layer, sink) = SocketIoSink::new(settings.socketio.clone(), verifier.clone())
            .context("starting the Socket.IO layer")?;
        socketio = Some(sink.io().clone());
        socketio_layer = Some((layer, sink.clone()));
        publisher_builder = publisher_builder.sink(sink, sink_options);
    }
    // The relay and the ESB consumer run in one process at a time: at once in an `all`
    // process, once it leads in a `core`.
    let leader_services = Arc::new(LeaderServices::default());
    if let Some(kafka) = &settings.kafka {
        tracing::info!(
            brokers = %kafka.bootstrap_list(),
            security = %kafka.security.describe(),
            "Kafka settings"
        );
        check_kafka_topic(kafka).await?;
        if settings.role == Role::All {
            leader_services.start_relay(&settings)?;
        }
        publisher_builder = publisher_builder.sink(leader_services.sink(), sink_options);
    }
    let publisher = publisher_builder.build();

    // Market data: the bus, the bundled feed, the price cache and the WebSocket proxy.
    let marketdata = oa_marketdata_zmq::start(
        settings.marketdata.clone(),
        verifier.clone(),
        publisher.clone(),
        BROKER_NAME.to_string(),
    )
    .await
    .context("starting the market-data layer")?;

    // REST, which owns the key store and trades against the market-data prices.
    // With Kafka, an order's events are written to the outbox in the order's own
    // transaction: an acknowledged order's events survive a broker outage or a crash.
    let api_config = oa_api::ApiConfig {
        durable_outbox: settings.kafka.is_some(),
        standby: settings.role == Role::Core,
        ..settings.api.clone()
    };
    // Bars are recorded from the price cache's first update on, so a replay is recorded
    // from its first tick even though the feed started before the REST layer.
    let api = match marketdata.take_updates_since_start() {
        Some(ticks) => {
            oa_api::build_recording(
                api_config,
                publisher.clone(),
                marketdata.price_cache(),
                marketdata.symbols(),
                ticks,
            )
            .await
        }
        None => {
            oa_api::build(
                api_config,
                publisher.clone(),
                marketdata.price_cache(),
                marketdata.symbols(),
            )
            .await
        }
    }
    .context("starting the REST layer")?;
    verifier.set(api.verifier());
    // The relay's delivered marks join the engine's group commits from here on, instead of
    // waiting for SQLite's write lock behind them.
    leader_services.mark_through_engine(api.service().engine().clone());
    // A new user's strategy finds history to compute indicators on (simulated feed only).
    let backfill = (settings.marketdata.feed == oa_marketdata_zmq::FeedKind::Simulated
        && settings.api.history.backfill_days > 0)
        .then(|| {
            oa_marketdata_zmq::feed_instruments(
                &marketdata.symbols(),
                &settings.marketdata.feed_symbols,
            )
            .map(|instruments| {
                crate::backfill::spawn(
                    &api,
                    instruments,
                    marketdata.price_cache(),
                    settings.api.history.backfill_days,
                    settings.marketdata.feed_seed,
                )
            })
        })
        .transpose()
        .context("choosing the instruments to backfill")?;
    // Keys rotated or revoked by another process (`oa-server apikey ...`) end their sessions.
    let revocation_watcher = api.keys().spawn_revocation_watcher();
    if let Some(key) = api.ensure_default_user().await? {
        println!(
            "First start: created user {:?} with API key (shown once, store it now):\n{key}",
            settings.api.default_user
        );
    }

    // The ESB consumer runs commands from external systems through the same order service,
    // only when they are authenticated (signing keys) or explicitly trusted.
    // A core campaigns for the lead (docs/scaling.md); it starts them when it leads.
    let leadership = match settings.role {
        Role::All => {
            leader_services.start_esb(&settings, &api)?;
            None
        }
        Role::Core | Role::Edge => Some(campaign(&settings, http_addr, &api, &leader_services)?),
    };

    let health = http::HealthInfo {
        started,
        role: settings.role,
        event_mode: settings.event_mode,
        publisher: publisher.clone(),
        layers: vec![
            ("rest", true),
            ("socketio", socketio_layer.is_some()),
            ("kafka", settings.kafka.is_some()),
            ("marketdata", true),
        ],
        leader_services: Arc::clone(&leader_services),
        engine: api.service().engine().clone(),
    };
    // One tracing span per HTTP request (RUST_LOG=tower_http=debug shows them).
    let in_flight = InFlightRequests::default();
    let dashboard = crate::dashboard::DashboardInfo {
        websocket_port: marketdata.ws_addr().port(),
        websocket_url: settings.dashboard_websocket_url.clone(),
    };
    let mut router = http::ops_router(health, metrics)
        .merge(api.router())
        .merge(crate::dashboard::router(dashboard))
        .fallback(http::not_found)
        .layer(axum::middleware::from_fn_with_state(
            in_flight.clone(),
            crate::shutdown::track,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    if let Some((layer, sink)) = socketio_layer {
        router = oa_events_socketio::mount(router, layer, &sink);
    }

    let shutdown_budget = settings.shutdown_timeout;
    let (deadline_sender, deadline) = Deadline::new(shutdown_budget);
    // A core that lost the lead shuts down as on SIGTERM (its engine already refuses
    // writes) and exits with an error, for its supervisor to start it again as a standby.
    let lost_lead: Arc<parking_lot::Mutex<Option<String>>> = Arc::default();
    {
        let mut leadership = leadership.clone();
        let lost_lead = Arc::clone(&lost_lead);
        tokio::spawn(async move {
            match leadership.as_mut() {
                Some(leadership) => tokio::select! {
                    () = wait_for_signal() => {}
                    reason = leadership.lost() => *lost_lead.lock() = Some(reason),
                },
                None => wait_for_signal().await,
            }
            let _ = deadline_sender.send(Some(tokio::time::Instant::now() + shutdown_budget));
        });
    }
    announce_ready(&settings, http_addr, &marketdata)?;
    let budget = settings.shutdown_timeout.as_secs();
    match serve_http(listener, router, &settings, &deadline, socketio).await {
        Some(served) => served.context("HTTP server failed")?,
        None => {
            let (count, requests) = in_flight.describe(10);
            tracing::warn!(
                count,
                ?requests,
                "shutdown deadline (OA_SHUTDOWN_TIMEOUT_SECONDS={budget}) reached while draining HTTP: cut off {count} request(s) still in flight"
            );
        }
    }
    revocation_watcher.abort();

    tracing::info!(
        "shutting down: stopping the ESB consumer, finishing the order engine's queue, stopping market data, then draining event sinks"
    );
    leader_services.stop_esb(deadline.remaining()).await;
    // Every job queued before this one has committed (or failed) once it answers; nothing
    // is acknowledged before its commit, so cutting this off loses no acknowledged order.
    let engine = api.service().engine().clone();
    if deadline.run(engine.read(|_| ())).await.is_none() {
        tracing::warn!(
            "shutdown deadline (OA_SHUTDOWN_TIMEOUT_SECONDS={budget}) reached: cut off the order engine's queued jobs (none of them was acknowledged)"
        );
    }
    if let Some(task) = backfill {
        task.abort();
    }
    // The bars of the current minute (and any batch not yet written) reach the store.
    match deadline.run(api.stop_recording_bars()).await {
        Some(Ok(_)) => {}
        Some(Err(error)) => tracing::warn!(%error, "could not store the last recorded bars"),
        None => tracing::warn!(
            "shutdown deadline (OA_SHUTDOWN_TIMEOUT_SECONDS={budget}) reached: cut off storing the last recorded bars"
        ),
    }
    if deadline.run(marketdata.shutdown()).await.is_none() {
        tracing::warn!(
            "shutdown deadline (OA_SHUTDOWN_TIMEOUT_SECONDS={budget}) reached: cut off the market-data shutdown"
        );
    }
    let left = publisher.shutdown(deadline.remaining()).await;
    if left > 0 {
        tracing::warn!(left, "events still queued at shutdown were not delivered");
    }
    // Undelivered rows stay in the outbox and are sent after the next start.
    leader_services.stop_relay(deadline.remaining()).await;
    // The lock session ends with the process at the latest; a standby takes over.
    drop(leadership);
    if let Some(reason) = lost_lead.lock().take() {
        bail!("{reason}");
    }
    tracing::info!("oa-server stopped");
    Ok(())
}

/// Campaigns for the lead of a `core` (its engine was started as a standby); once it leads,
/// starts the Kafka relay and the ESB consumer.
fn campaign(
    settings: &Settings,
    http_addr: std::net::SocketAddr,
    api: &oa_api::Api,
    services: &Arc<LeaderServices>,
) -> anyhow::Result<Leadership> {
    let location = oa_api::parse_database_url(&settings.api.database_url)?;
    let holder = format!("oa-server pid {} (http {http_addr})", std::process::id());
    let leadership = Leadership::campaign(&location, holder, api.service().engine().clone())
        .context("OA_ROLE=core")?;
    tracing::info!("OA_ROLE=core: standing by until this core takes the lead");
    let mut waiting = leadership.clone();
    let (settings, api, services) = (settings.clone(), api.clone(), Arc::clone(services));
    tokio::spawn(async move {
        let epoch = match waiting.leading().await {
            Ok(epoch) => epoch,
            Err(reason) => {
                tracing::error!(%reason, "this core will not lead");
                return;
            }
        };
        tracing::info!(
            epoch,
            "this core leads: state reloaded; starting the Kafka relay and the ESB consumer"
        );
        let started = services
            .start_relay(&settings)
            .and_then(|()| services.start_esb(&settings, &api));
        if let Err(error) = started {
            tracing::error!(
                "this core leads but cannot start the relay or the ESB consumer: {error:#}"
            );
        }
    });
    Ok(leadership)
}

/// Starts the ESB consumer when its security settings allow, logging once (loudly) when
/// unsigned commands are trusted and when the consumer stays off.
pub(crate) fn start_esb(
    kafka: &KafkaConfig,
    security: &EsbSecurity,
    api: &oa_api::Api,
) -> anyhow::Result<(Option<EsbConsumer>, Option<http::EsbHealth>)> {
    let topic = &kafka.esb_events_topic;
    if let Some(reason) = security.disabled_reason() {
        tracing::warn!(
            topic,
            "ESB consumer disabled: {reason}. Set KAFKA_ESB_SIGNING_KEYS=<key id>:<secret> to enable it"
        );
        return Ok((
            None,
            Some(http::EsbHealth::disabled(security, reason.to_string())),
        ));
    }
    if matches!(security.auth, EsbAuth::TrustUnsigned) {
        tracing::warn!(
            topic,
            "SECURITY: KAFKA_ESB_TRUST_UNSIGNED=true: the ESB consumer executes UNSIGNED commands; anyone who can write to {topic} can place, modify and cancel orders for every user who allowed ESB control. Configure KAFKA_ESB_SIGNING_KEYS instead"
        );
    } else {
        tracing::info!(
            topic,
            key_ids = ?security.key_ids(),
            max_age_seconds = security.max_age.as_secs(),
            "ESB commands must be signed (HMAC-SHA256, header oa_signature)"
        );
    }
    let executor = StoreExecutor::new(api.esb_commands(), kafka.consumer_group.clone());
    let consumer = EsbConsumer::spawn(
        kafka.clone(),
        security.clone(),
        Arc::new(executor),
        EsbOptions::default(),
    )
    .context("starting the ESB consumer")?;
    let health = http::EsbHealth::running(security, consumer.monitor());
    Ok((Some(consumer), Some(health)))
}

/// How long start-up waits for the Kafka topic check before going on without the broker.
const KAFKA_STARTUP_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks (or creates, when KAFKA_CREATE_TOPICS allows) the order-events topic. A topic that
/// is missing stops start-up with a message naming it and the brokers; a broker that does
/// not answer does not: orders are accepted and their events wait in the outbox.
async fn check_kafka_topic(kafka: &KafkaConfig) -> anyhow::Result<()> {
    let topic = &kafka.order_events_topic;
    match tokio::time::timeout(
        KAFKA_STARTUP_CHECK,
        oa_events_kafka::ensure_topic(kafka, topic),
    )
    .await
    {
        Ok(Ok(info)) => {
            tracing::info!(?info, "Kafka topic ready");
            Ok(())
        }
        Ok(Err(error @ (KafkaError::TopicMissing { .. } | KafkaError::CreateTopic { .. }))) => {
            bail!("{error}")
        }
        Ok(Err(error @ KafkaError::Refused { .. })) => {
            tracing::error!(
                %error,
                "Kafka refused oa's security settings at start-up; orders are accepted and their events wait in the outbox until the setting is fixed and oa restarted"
            );
            Ok(())
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "Kafka is not reachable at start-up; events wait in the outbox until it is");
            Ok(())
        }
        Err(_) => {
            tracing::error!(
                brokers = %kafka.bootstrap_list(),
                "Kafka did not answer within {KAFKA_STARTUP_CHECK:?} at start-up; events wait in the outbox until it does"
            );
            Ok(())
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Serves HTTP until the shutdown signal, then drains it gracefully within `deadline`
/// (`None` when the deadline cut the drain off). The Socket.IO connections are closed first:
/// long-lived, they would hold the graceful shutdown open (clients see a normal disconnect
/// and reconnect with their offset).
pub(crate) async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    settings: &Settings,
    deadline: &Deadline,
    socketio: Option<oa_events_socketio::SocketIo>,
) -> Option<std::io::Result<()>> {
    let signalled = deadline.clone();
    let shutdown = async move {
        signalled.signalled().await;
        if let Some(io) = socketio {
            io.close().await;
        }
    };
    deadline
        .run(oa_net::serve(listener, router, settings.http, shutdown))
        .await
}

/// Logs the bound addresses and writes them as JSON to `OA_READY_FILE` (atomically), for
/// tests and supervisors that start the server on port 0.
pub(crate) fn announce_ready(
    settings: &Settings,
    http_addr: std::net::SocketAddr,
    marketdata: &oa_marketdata_zmq::MarketData,
) -> anyhow::Result<()> {
    if let Some(path) = &settings.ready_file {
        let addresses = json!({
            "http": http_addr.to_string(),
            "websocket": marketdata.ws_addr().to_string(),
            "zmq": marketdata.zmq_endpoint(),
        });
        let temporary = format!("{path}.tmp");
        std::fs::write(&temporary, addresses.to_string())
            .and_then(|()| std::fs::rename(&temporary, path))
            .with_context(|| format!("OA_READY_FILE: cannot write {path}"))?;
    }
    tracing::info!(
        role = settings.role.as_str(),
        http = %http_addr,
        websocket = %marketdata.ws_addr(),
        zmq = marketdata.zmq_endpoint(),
        order_event_mode = %settings.event_mode,
        "oa-server ready"
    );
    Ok(())
}
