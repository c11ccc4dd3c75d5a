//! Shared pieces of the integration tests: an in-memory API-key verifier, a real axum server
//! on 127.0.0.1:0 with the Socket.IO layer and a real EventPublisher, the catalog sample
//! events with their exact expected payloads, and a rust_socketio client wrapper.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use oa_events_core::auth::VerifyFuture;
use oa_events_core::catalog::{
    AnalyzerUpdate, BatchSummary, CancelOrderEvent, ClosePositionEvent, EsbCommandResult,
    MasterContractDownload, ModifyOrderEvent, OrderEvent, OrderNotification, OrderUpdate,
    PasswordChange,
};
use oa_events_core::{
    ApiKeyVerifier, AuthenticatedUser, Event, EventPayload, EventPublisher, SinkOptions,
};
use oa_events_socketio::{SocketIoConfig, SocketIoSink};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// API keys known to the tests: key -> user id.
pub const KEYS: &[(&str, &str)] = &[
    ("key-alice", "alice"),
    ("key-bob", "bob"),
    ("key-carol", "carol"),
];

/// An in-memory verifier: the trait implemented on a plain map.
pub struct MapVerifier(HashMap<String, AuthenticatedUser>);

impl MapVerifier {
    pub fn new() -> Self {
        MapVerifier(
            KEYS.iter()
                .map(|(key, user)| {
                    (
                        key.to_string(),
                        AuthenticatedUser {
                            user_id: user.to_string(),
                            broker: "simulator".into(),
                        },
                    )
                })
                .collect(),
        )
    }
}

impl MapVerifier {
    /// The benchmark's single key `key-bench` (user `bench`) on top of the test keys.
    pub fn bench() -> Self {
        let mut verifier = MapVerifier::new();
        verifier.0.insert(
            "key-bench".into(),
            AuthenticatedUser {
                user_id: "bench".into(),
                broker: "simulator".into(),
            },
        );
        verifier
    }
}

impl ApiKeyVerifier for MapVerifier {
    fn verify<'a>(&'a self, api_key: &'a str) -> VerifyFuture<'a> {
        let user = self.0.get(api_key).cloned();
        Box::pin(async move { Ok(user) })
    }
}

/// A real HTTP server with the Socket.IO layer, fed by a real EventPublisher.
pub struct TestServer {
    pub addr: SocketAddr,
    pub publisher: EventPublisher,
    pub sink: SocketIoSink,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(config: SocketIoConfig) -> TestServer {
        Self::start_with(config, SinkOptions::default()).await
    }

    pub async fn start_with(config: SocketIoConfig, options: SinkOptions) -> TestServer {
        let (layer, sink) = SocketIoSink::new(config, Arc::new(MapVerifier::new())).unwrap();
        let publisher = EventPublisher::builder()
            .sink(sink.clone(), options)
            .build();
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        // Mounted and served as the server does: connection caps and client addresses.
        let app = oa_events_socketio::mount(app, layer, &sink);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = oa_net::ServeOptions {
            connections: oa_net::ConnectionLimits::UNLIMITED,
            ..oa_net::ServeOptions::new("http")
        };
        let task = tokio::spawn(async move {
            let _ = oa_net::serve(listener, app, options, std::future::pending()).await;
        });
        TestServer {
            addr,
            publisher,
            sink,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `user` has `count` connected sockets attached (replay done).
    pub async fn wait_clients(&self, count: u64) {
        for _ in 0..500 {
            if self.sink.stats().clients >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {count} attached clients, have {}",
            self.sink.stats().clients
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Test configuration: small buffers and fast heartbeats.
pub fn test_config() -> SocketIoConfig {
    SocketIoConfig {
        replay_buffer_size: 64,
        ping_interval: Duration::from_secs(5),
        ping_timeout: Duration::from_secs(5),
        ..SocketIoConfig::default()
    }
}

/// One sample of every catalog event (cancel_order_event twice: single and cancel-all), with
/// the exact payload a client must receive (before our `event_id` and `seq` keys).
pub fn catalog_samples(user: &str) -> Vec<(Event, Value)> {
    vec![
        (
            Event::for_user(user, OrderEvent::sbin_market("BUY", "25012900000001")),
            json!({"symbol":"SBIN","action":"BUY","orderid":"25012900000001","exchange":"NSE","price_type":"MARKET","product_type":"MIS","mode":"live"}),
        ),
        (
            Event::for_user(
                user,
                ModifyOrderEvent {
                    status: "success".into(),
                    orderid: "25012900000001".into(),
                    mode: "live".into(),
                },
            ),
            json!({"status":"success","orderid":"25012900000001","mode":"live"}),
        ),
        (
            Event::for_user(
                user,
                CancelOrderEvent {
                    status: "success".into(),
                    orderid: "25012900000001".into(),
                    mode: "live".into(),
                    batch: BatchSummary::NONE,
                    canceled_count: None,
                    failed_count: None,
                },
            ),
            json!({"status":"success","orderid":"25012900000001","mode":"live"}),
        ),
        (
            Event::for_user(
                user,
                CancelOrderEvent {
                    status: "success".into(),
                    orderid: "".into(),
                    mode: "live".into(),
                    batch: BatchSummary::LAST,
                    canceled_count: Some(3),
                    failed_count: Some(0),
                },
            ),
            json!({"status":"success","orderid":"","mode":"live","batch_order":true,"is_last_order":true,"canceled_count":3,"failed_count":0}),
        ),
        (
            Event::for_user(
                user,
                ClosePositionEvent {
                    status: "success".into(),
                    message: "All Open Positions Squared Off".into(),
                    mode: "live".into(),
                },
            ),
            json!({"status":"success","message":"All Open Positions Squared Off","mode":"live"}),
        ),
        (
            Event::for_user(
                user,
                OrderNotification::info("SBIN", "Positions Already Matched. No Action needed."),
            ),
            json!({"symbol":"SBIN","status":"info","message":"Positions Already Matched. No Action needed."}),
        ),
        (
            Event::for_user(
                user,
                AnalyzerUpdate {
                    request: json!({"strategy":"s1","exchange":"NSE","symbol":"SBIN","action":"BUY","quantity":"10","api_type":"placeorder"}),
                    response: json!({"status":"success","orderid":"SB-1","mode":"analyze"}),
                },
            ),
            json!({"request":{"strategy":"s1","exchange":"NSE","symbol":"SBIN","action":"BUY","quantity":"10","api_type":"placeorder"},"response":{"status":"success","orderid":"SB-1","mode":"analyze"}}),
        ),
        (
            Event::for_user(
                user,
                OrderUpdate {
                    orderid: "SB-1".into(),
                    average_price: 812.35,
                    ..OrderUpdate::example()
                },
            ),
            json!({"mode":"analyze","broker":"sandbox","orderid":"SB-1","symbol":"SBIN","exchange":"NSE","action":"BUY","quantity":10,"price":0.0,"trigger_price":0.0,"pricetype":"MARKET","product":"MIS","order_status":"complete","filled_quantity":10,"pending_quantity":0,"average_price":812.35,"rejection_reason":""}),
        ),
        (
            Event::system(MasterContractDownload {
                broker: "simulator".into(),
                status: "success".into(),
                message: "Master contract downloaded".into(),
                symbols_count: Some(1250),
                download_time_seconds: Some(0.42),
            }),
            json!({"broker":"simulator","status":"success","message":"Master contract downloaded","symbols_count":1250,"download_time_seconds":0.42}),
        ),
        (
            Event::for_user(
                user,
                PasswordChange {
                    user: user.into(),
                    status: "success".into(),
                    message: "API key rotated".into(),
                    ip_address: Some("127.0.0.1".into()),
                    user_agent: None,
                },
            ),
            json!({"user":user,"status":"success","message":"API key rotated","ip_address":"127.0.0.1"}),
        ),
        (
            Event::for_user(
                user,
                EsbCommandResult {
                    correlation_id: "c1".into(),
                    command: "place_order".into(),
                    status: "success".into(),
                    response: json!({"status":"success","orderid":"42"}),
                },
            ),
            json!({"correlation_id":"c1","command":"place_order","status":"success","response":{"status":"success","orderid":"42"}}),
        ),
    ]
}

/// Every catalog name appears in the samples.
pub fn assert_samples_cover_catalog(samples: &[(Event, Value)]) {
    for name in EventPayload::NAMES {
        assert!(
            samples
                .iter()
                .any(|(event, _)| event.payload.name() == *name),
            "no sample for {name}"
        );
    }
}

/// Publishes alice's `samples` and returns the (event name, payload with our `event_id` and
/// `seq`) she must receive, in order.
pub fn publish_samples(server: &TestServer, samples: Vec<(Event, Value)>) -> Vec<(String, Value)> {
    let first_seq = server.sink.latest_seq("alice").unwrap() + 1;
    let mut expected = Vec::new();
    for (offset, (event, payload)) in samples.into_iter().enumerate() {
        let name = event.payload.name().to_string();
        let envelope = server.publisher.publish(event);
        expected.push((
            name,
            with_extras(&payload, &envelope.id, first_seq + offset as u64),
        ));
    }
    expected
}

/// The expected payload of `event` with our extra keys.
pub fn with_extras(expected: &Value, event_id: &uuid::Uuid, seq: u64) -> Value {
    let mut value = expected.clone();
    let object = value.as_object_mut().unwrap();
    object.insert("event_id".into(), Value::String(event_id.to_string()));
    object.insert("seq".into(), json!(seq));
    value
}

/// Numbers compared as f64: JavaScript does not keep `0.0` apart from `0`.
pub fn numbers_as_f64(value: &Value) -> Value {
    match value {
        Value::Number(number) => json!(number.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), numbers_as_f64(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A rust_socketio client whose received events land in a channel.
pub struct RustClient {
    pub client: Client,
    pub events: mpsc::UnboundedReceiver<(String, Value)>,
}

/// What a connection attempt gave.
pub enum Connected {
    Ok(RustClient),
    Refused(String),
}

/// Connects a rust_socketio client and waits for the namespace connect (or its refusal).
pub async fn connect_rust(url: &str, auth: Value, transport: TransportType) -> Connected {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Value)>();
    let on_any = tx.clone();
    let on_connect = tx.clone();
    let on_error = tx.clone();
    let client = ClientBuilder::new(url)
        .namespace("/")
        .auth(auth)
        .transport_type(transport)
        .reconnect(false)
        .on(rust_socketio::Event::Connect, move |_, _| {
            let tx = on_connect.clone();
            async move {
                let _ = tx.send(("<connect>".into(), Value::Null));
            }
            .boxed()
        })
        .on(rust_socketio::Event::Error, move |payload, _| {
            let tx = on_error.clone();
            async move {
                let text = match payload {
                    Payload::Text(values) => values
                        .first()
                        .map(|value| {
                            value
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or(value.to_string())
                        })
                        .unwrap_or_default(),
                    #[allow(deprecated)]
                    Payload::String(text) => text,
                    Payload::Binary(_) => String::new(),
                };
                let _ = tx.send(("<error>".into(), Value::String(text)));
            }
            .boxed()
        })
        .on_any(move |event, payload, _| {
            let tx = on_any.clone();
            async move {
                let data = match payload {
                    Payload::Text(mut values) if !values.is_empty() => values.remove(0),
                    _ => Value::Null,
                };
                let _ = tx.send((String::from(event), data));
            }
            .boxed()
        })
        .connect()
        .await;
    let client = match client {
        Ok(client) => client,
        Err(error) => return Connected::Refused(format!("transport error: {error}")),
    };
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some((kind, _))) if kind == "<connect>" => {
            Connected::Ok(RustClient { client, events: rx })
        }
        Ok(Some((kind, Value::String(message)))) if kind == "<error>" => {
            let _ = client.disconnect().await;
            Connected::Refused(message)
        }
        other => panic!("unexpected connect outcome: {other:?}"),
    }
}

impl RustClient {
    /// Connects or panics.
    pub async fn connect(url: &str, auth: Value, transport: TransportType) -> RustClient {
        match connect_rust(url, auth, transport).await {
            Connected::Ok(client) => client,
            Connected::Refused(message) => panic!("connection refused: {message}"),
        }
    }

    /// Connects as `user` (API key `key-{user}`) over `transport`, or panics.
    pub async fn user(url: &str, user: &str, transport: TransportType) -> RustClient {
        RustClient::connect(url, json!({"apikey": format!("key-{user}")}), transport).await
    }

    /// Connects as `user` (see [`RustClient::user`]) over WebSocket, or panics.
    pub async fn websocket(url: &str, user: &str) -> RustClient {
        RustClient::user(url, user, TransportType::Websocket).await
    }

    /// The next event, or None after `wait` without one.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        tokio::time::timeout(wait, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Exactly `count` events, panicking on timeout.
    pub async fn take(&mut self, count: usize) -> Vec<(String, Value)> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            match self.next(Duration::from_secs(10)).await {
                Some(event) => events.push(event),
                None => panic!(
                    "timed out after {} of {count} events; last: {:?}",
                    events.len(),
                    events.last()
                ),
            }
        }
        events
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}

/// The real client peers outside Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// npm socket.io-client 4 (tests/node/socketio_client.mjs).
    Node,
    /// PyPI python-socketio AsyncClient (tests/python/socketio_client.py).
    Python,
}

/// Runs a peer that connects with `auth` over `transports` ("polling", "websocket" or
/// "polling,websocket") and collects `expect` events; resolves to its output lines.
pub fn spawn_peer(
    kind: PeerKind,
    url: &str,
    auth: Value,
    transports: &str,
    expect: usize,
) -> tokio::task::JoinHandle<Vec<Value>> {
    let env = vec![
        ("OA_URL", url.to_string()),
        ("OA_AUTH", auth.to_string()),
        ("OA_TRANSPORTS", transports.to_string()),
        ("OA_EXPECT", expect.to_string()),
        ("OA_DEBUG", std::env::var("OA_DEBUG").unwrap_or_default()),
    ];
    tokio::task::spawn_blocking(move || {
        let stdout = match kind {
            PeerKind::Node => run_node_script("socketio_client.mjs", &env),
            PeerKind::Python => oa_e2e::run_python_script("socketio_client.py", &env),
        };
        let stdout = stdout.unwrap_or_else(|error| panic!("{kind:?} peer failed: {error:#}"));
        stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("bad line {line:?}")))
            .collect()
    })
}

/// Runs a Node script from tests/node with the given environment, returning its standard
/// output; fails with its output when it exits non-zero.
pub fn run_node_script(script: &str, env: &[(&str, String)]) -> anyhow::Result<String> {
    oa_e2e::node_modules()?;
    let path = oa_e2e::workspace_root().join("tests/node").join(script);
    let output = std::process::Command::new("node")
        .arg(&path)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .output()
        .map_err(|error| anyhow::anyhow!("starting node {}: {error}", path.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        anyhow::bail!(
            "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}
