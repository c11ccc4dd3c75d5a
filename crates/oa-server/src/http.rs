//! The HTTP server's own routes: `/health`, `/metrics` and the JSON 404 fallback. Serving
//! (timeouts, connection caps, TCP_NODELAY) is `oa_net::serve`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use oa_events_core::{EventMode, EventPublisher};
use oa_events_kafka::{EsbMonitor, EsbSecurity};
use serde_json::json;
use tokio::net::TcpListener;

/// What `/health` reports besides liveness.
#[derive(Debug, Clone)]
pub struct HealthInfo {
    pub started: Instant,
    /// `OA_ROLE`.
    pub role: crate::config::Role,
    pub event_mode: EventMode,
    pub publisher: EventPublisher,
    /// Layers running in this process (name, running).
    pub layers: Vec<(&'static str, bool)>,
    /// The Kafka relay and the ESB consumer, once started (KAFKA and BOTH modes; a core
    /// starts them when it leads).
    pub leader_services: Arc<crate::leader::LeaderServices>,
    /// The order engine (writes stop when its state cannot be reloaded).
    pub engine: oa_api::EngineHandle,
}

/// What `/health` says about the ESB consumer (never a secret: key ids only).
#[derive(Debug, Clone)]
pub struct EsbHealth {
    authentication: &'static str,
    key_ids: Vec<String>,
    max_age_seconds: u64,
    disabled_reason: Option<String>,
    monitor: Option<EsbMonitor>,
}

impl EsbHealth {
    /// A consumer that was not started, and why.
    pub fn disabled(security: &EsbSecurity, reason: String) -> Self {
        EsbHealth {
            authentication: security.mode_name(),
            key_ids: Vec::new(),
            max_age_seconds: security.max_age.as_secs(),
            disabled_reason: Some(reason),
            monitor: None,
        }
    }

    /// A running consumer.
    pub fn running(security: &EsbSecurity, monitor: EsbMonitor) -> Self {
        EsbHealth {
            authentication: security.mode_name(),
            key_ids: security.key_ids().into_iter().map(String::from).collect(),
            max_age_seconds: security.max_age.as_secs(),
            disabled_reason: None,
            monitor: Some(monitor),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let stats = self.monitor.as_ref().map(|monitor| {
            let stats = monitor.stats();
            json!({
                "executed": stats.executed,
                "duplicates": stats.duplicates,
                "dead_lettered": stats.dead_lettered,
                "failures": stats.failures,
            })
        });
        json!({
            "consumer": if self.monitor.is_some() { "running" } else { "disabled" },
            "disabled_reason": self.disabled_reason,
            "authentication": self.authentication,
            "signing_key_ids": self.key_ids,
            "max_age_seconds": self.max_age_seconds,
            "stats": stats,
        })
    }
}

#[derive(Clone)]
struct OpsState {
    health: Arc<HealthInfo>,
    metrics: PrometheusHandle,
}

/// Routes served on the HTTP port by the server itself (not by a layer crate).
pub fn ops_router(health: HealthInfo, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/health", get(health_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(OpsState {
            health: Arc::new(health),
            metrics,
        })
}

/// `/health`: 200 with `"status": "ok"`, or 503 with `"status": "degraded"` and the reason
/// while the order engine does not take writes (reads still work), or 503 with
/// `"status": "standby"` on a core that does not lead (`role`: `all`, `leader`, `standby`),
/// so that a load balancer's health check sends traffic to the leader only.
async fn health_handler(State(state): State<OpsState>) -> Response {
    let info = &state.health;
    let layers: serde_json::Map<String, serde_json::Value> = info
        .layers
        .iter()
        .map(|(name, running)| ((*name).to_string(), json!(running)))
        .collect();
    let sinks: Vec<serde_json::Value> = info
        .publisher
        .stats()
        .iter()
        .map(|stats| {
            json!({
                "name": stats.name,
                "queued": stats.queued,
                "delivered": stats.delivered,
                "dropped": stats.dropped_queue_full + stats.dropped_delivery_failed,
            })
        })
        .collect();
    let kafka = info.leader_services.relay().map(|relay| {
        let stats = relay.stats();
        json!({
            "connected": stats.connected,
            "delivered": stats.delivered,
            "outbox_backlog": stats.backlog,
            "failures": stats.failures,
            "last_error": stats.last_error,
        })
    });
    let stopped = info.engine.writes_stopped();
    let standby = info.engine.is_standby();
    let (code, status) = match (&stopped, standby) {
        (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "standby"),
        (Some(_), false) => (StatusCode::SERVICE_UNAVAILABLE, "degraded"),
        (None, false) => (StatusCode::OK, "ok"),
    };
    let role = match (info.role, standby) {
        (crate::config::Role::All, _) => "all",
        (_, true) => "standby",
        (_, false) => "leader",
    };
    let engine = json!({
        "writes": if stopped.is_some() { "stopped" } else { "accepted" },
        "reason": stopped,
    });
    let body = Json(json!({
        "status": status,
        "role": role,
        "engine": engine,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": info.started.elapsed().as_secs(),
        "order_event_mode": info.event_mode.as_str(),
        "layers": layers,
        "event_sinks": sinks,
        "kafka": kafka,
        "esb": info.leader_services.esb_health().map(EsbHealth::to_json),
    }));
    (code, body).into_response()
}

async fn metrics_handler(State(state): State<OpsState>) -> Response {
    metrics_response(&state.metrics)
}

/// The Prometheus text of every metric of this process.
pub fn metrics_response(metrics: &PrometheusHandle) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

/// JSON 404 for every path no layer serves.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"status": "error", "message": "Not found"})),
    )
        .into_response()
}

/// Binds the HTTP listener, naming the setting when the address is taken.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "FLASK_HOST_IP/FLASK_PORT: cannot listen on {addr} (is another server using that port?)"
        )
    })
}
