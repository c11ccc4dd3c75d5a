//! The WebSocket market-data proxy (docs/marketdata.md, "WebSocket protocol") on axum 0.8.
//!
//! - [`protocol`]: requests, replies and messages (sans-I/O): every message sent is built there;
//! - `registry`: connected clients, their sessions, and per user the sessions and instruments;
//! - `subscriptions`: the subscription index (instrument to subscribers and modes);
//! - `fanout`: a tick to its instrument's subscribers, an order update to its user's clients;
//! - `hub`: what each request does, over the registry, the index and the fan-out;
//! - `send_queue`: each client's bounded, conflating send queue;
//! - `connection`: one socket's reader loop and writer task.
//!
//! Served by [`oa_net::serve()`]: TCP_NODELAY (without it p99 latency grows from 0.5 ms to
//! 20 ms), a header-read timeout, and connection caps. Each upgraded socket holds a slot of the
//! proxy's own global and per-IP caps; a refused upgrade gets `503` with a protocol error body.
//! Client frames and messages are limited to `max_message_bytes` (a larger frame is refused
//! from its header, before its payload is read).

mod connection;
mod fanout;
mod hub;
pub mod protocol;
mod registry;
mod send_queue;
mod subscriptions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oa_events_core::{ApiKeyVerifier, EventPublisher};
use oa_net::{ConnectionLimiter, ConnectionLimits, LoginLimiter, RateSpec, ServeOptions};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

pub use connection::{CLOSE_AUTH_TIMEOUT, CLOSE_KEY_REVOKED, CLOSE_PING_TIMEOUT};
pub use hub::ProxyStats;
pub use registry::ClientStats;
pub use send_queue::SendQueueStats;

use crate::feed::SubscriptionHint;
use hub::{Hub, HubConfig};
use oa_marketdata_core::symbols::SymbolMaster;
use oa_marketdata_core::tick::Tick;

/// Settings of the WebSocket proxy.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Listen address; port 0 picks a free port (see [`WsProxy::local_addr`]).
    pub bind: SocketAddr,
    /// Close unauthenticated connections (code 4401) after this long.
    pub auth_grace: Duration,
    /// Ticks each client's send queue holds before conflating.
    pub max_queue: usize,
    /// Keepalive ping interval.
    pub ping_interval: Duration,
    /// Close a client silent for `ping_interval + ping_timeout`.
    pub ping_timeout: Duration,
    /// Subscriptions per connection, times...
    pub max_symbols_per_websocket: usize,
    /// ...connections: the distinct instruments one user may subscribe to.
    pub max_websocket_connections: usize,
    /// Largest accepted client frame and message.
    pub max_message_bytes: usize,
    /// Upgraded connections in total and per client IP.
    pub connections: ConnectionLimits,
    /// `authenticate` requests per client IP.
    pub login_rate: RateSpec,
    /// Time a client has to send its upgrade request's head.
    pub header_timeout: Duration,
    /// The broker named in `market_data` messages.
    pub broker: String,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8765)),
            auth_grace: Duration::from_secs(15),
            max_queue: 1024,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            max_symbols_per_websocket: 1000,
            max_websocket_connections: 3,
            max_message_bytes: 64 * 1024,
            connections: DEFAULT_CONNECTION_LIMITS,
            login_rate: DEFAULT_LOGIN_RATE,
            header_timeout: Duration::from_secs(10),
            broker: "simulator".to_string(),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The listen address could not be bound.
    #[error("cannot listen for WebSocket clients on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Default caps: 10000 WebSocket connections, 100 per client IP.
pub const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = ConnectionLimits {
    max_total: 10_000,
    max_per_ip: 100,
};

/// Default login rate: 10 `authenticate` requests per second per client IP.
pub const DEFAULT_LOGIN_RATE: RateSpec = RateSpec {
    count: std::num::NonZeroU32::MIN.saturating_add(9),
    period: Duration::from_secs(1),
};

/// Read buffer of each client connection.
const READ_BUFFER_BYTES: usize = 8 * 1024;

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    timing: connection::Timing,
    max_message_bytes: usize,
    limiter: ConnectionLimiter,
}

async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let permit = match state.limiter.try_acquire(peer.ip()) {
        Ok(permit) => permit,
        Err(refused) => {
            let body = protocol::ProtocolError::new(
                protocol::ErrorCode::MaxConnectionsReached,
                refused.to_string(),
            )
            .to_json();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
    };
    // Clients send little: a small read buffer saves memory per connection and the zeroing
    // of tungstenite's 128 KiB default on every read. A frame larger than the message limit is
    // refused from its header (tungstenite's default frame limit is 16 MiB).
    ws.max_message_size(state.max_message_bytes)
        .max_frame_size(state.max_message_bytes)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            connection::serve(socket, peer.ip(), permit, state.hub, state.timing)
        })
}

/// A running WebSocket proxy: fed by [`WsProxy::dispatch`] (or the handle from
/// [`WsProxy::dispatcher`], for a thread that owns the tick stream), serving clients until [`WsProxy::shutdown`].
#[derive(Debug)]
pub struct WsProxy {
    hub: Arc<Hub>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl WsProxy {
    /// Binds and starts serving. `events` (when given) feeds `subscribe_orders`; `hints`
    /// receives instrument subscription changes for the feed adapter (a bounded channel:
    /// hints that do not fit are dropped and counted in `oa_ws_hints_dropped_total`).
    pub async fn start(
        config: &WsConfig,
        symbols: Arc<SymbolMaster>,
        verifier: Arc<dyn ApiKeyVerifier>,
        events: Option<&EventPublisher>,
        hints: Option<mpsc::Sender<SubscriptionHint>>,
    ) -> Result<Self, WsError> {
        let hub = Arc::new(Hub::new(
            HubConfig {
                max_symbols_per_websocket: config.max_symbols_per_websocket,
                max_websocket_connections: config.max_websocket_connections,
                max_queue: config.max_queue,
                control_limit: config.max_queue.max(256) * 4,
                broker: config.broker.clone(),
                logins: LoginLimiter::new(config.login_rate),
            },
            symbols,
            verifier,
            hints,
        ));
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| WsError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| WsError::Bind {
            addr: config.bind,
            source,
        })?;
        let state = AppState {
            hub: Arc::clone(&hub),
            timing: connection::Timing {
                auth_grace: config.auth_grace,
                ping_interval: config.ping_interval,
                ping_timeout: config.ping_timeout,
            },
            max_message_bytes: config.max_message_bytes,
            limiter: ConnectionLimiter::new("websocket", config.connections),
        };
        let app = Router::new().fallback(upgrade).with_state(state);
        // Before the upgrade a connection is plain HTTP: the same caps, and a short time to
        // send its request head.
        let serve_options = ServeOptions {
            listener: "websocket_http",
            connections: config.connections,
            header_timeout: config.header_timeout,
            idle_timeout: config.header_timeout,
            drain_timeout: Duration::from_secs(2),
        };
        let (stop, mut stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = oa_net::serve(listener, app, serve_options, shutdown).await {
                tracing::error!(%error, "websocket server failed");
            }
        }));
        if let Some(events) = events {
            tasks.push(tokio::spawn(forward_order_events(
                events.subscribe(),
                Arc::clone(&hub),
            )));
        }
        tracing::info!(%addr, "websocket market-data proxy listening");
        Ok(WsProxy {
            hub,
            addr,
            stop,
            tasks,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Fans one tick out to its subscribers (never waits).
    pub fn dispatch(&self, tick: &Tick) {
        self.hub.dispatch(tick);
    }

    /// A handle that fans ticks out (for a dispatcher task owning the tick stream).
    pub fn dispatcher(&self) -> impl Fn(&Tick) + Send + Sync + 'static {
        let hub = Arc::clone(&self.hub);
        move |tick| hub.dispatch(tick)
    }

    /// Relays bus order updates (upstream's `{BROKER}_{USER}_orders` topics) to their
    /// users' `subscribe_orders` clients until `orders` closes.
    pub fn relay_orders(&self, mut orders: tokio::sync::mpsc::Receiver<crate::bus::OrderRelay>) {
        let hub = Arc::clone(&self.hub);
        tokio::spawn(async move {
            while let Some(relay) = orders.recv().await {
                hub.relay_order_update(&relay.user_id, relay.message);
            }
        });
    }

    /// Proxy-wide counters.
    pub fn stats(&self) -> ProxyStats {
        self.hub.stats()
    }

    /// Per-client counters.
    pub fn client_stats(&self) -> Vec<ClientStats> {
        self.hub.client_stats()
    }

    /// Closes every client (1001 "server shutting down") and stops listening.
    pub async fn shutdown(self) {
        self.hub.close_all(1001, "server shutting down");
        let _ = self.stop.send(true);
        let mut tasks = self.tasks.into_iter();
        if let Some(mut server) = tasks.next()
            && tokio::time::timeout(Duration::from_secs(2), &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn forward_order_events(
    mut events: broadcast::Receiver<Arc<oa_events_core::Envelope>>,
    hub: Arc<Hub>,
) {
    loop {
        match events.recv().await {
            Ok(envelope) => hub.dispatch_order_event(&envelope),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "websocket proxy lagged behind the event stream: order updates lost"
                );
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}
