//! Socket.IO delivery of oa events mounted in a foreign axum app: the app keeps its own
//! routes, serves with plain `axum::serve`, and publishes catalog events that authenticated
//! Socket.IO clients receive (the OpenAlgo Socket.IO contract, docs/socketio.md).
//!
//! Run with:
//!
//! ```not_rust
//! DEMO_API_KEYS=demo-key-alice=alice,demo-key-bob=bob \
//!     cargo run -p oa-events-socketio --example standalone -- 127.0.0.1:3000
//! ```
//!
//! then connect a Socket.IO client to `http://127.0.0.1:3000` with
//! `auth: {"apikey": "demo-key-alice"}` and send alice a notification:
//!
//! ```not_rust
//! curl -X POST --data 'hello' http://127.0.0.1:3000/notify/alice
//! ```
//!
//! The client receives an `order_notification` event with `message: "hello"`, plus the
//! `event_id` and `seq` keys every oa Socket.IO event carries; bob's clients receive nothing.
//! `DEMO_API_KEYS` (`key=user` pairs, comma-separated; default
//! `demo-key-alice=alice,demo-key-bob=bob`) stands in for the app's own key store: implement
//! [`ApiKeyVerifier`] on it. The first line printed is `listening on http://<address>`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use oa_events_core::auth::VerifyFuture;
use oa_events_core::catalog::OrderNotification;
use oa_events_core::{ApiKeyVerifier, AuthenticatedUser, Event, EventPublisher, SinkOptions};
use oa_events_socketio::{SocketIoConfig, SocketIoSink};

/// The app's API keys: key -> user.
#[derive(Debug)]
struct DemoKeys(HashMap<String, AuthenticatedUser>);

impl DemoKeys {
    /// Reads `key=user,key=user` pairs.
    fn parse(spec: &str) -> Result<DemoKeys, String> {
        let mut keys = HashMap::new();
        for pair in spec
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (key, user) = pair
                .split_once('=')
                .filter(|(key, user)| !key.is_empty() && !user.is_empty())
                .ok_or_else(|| {
                    format!("DEMO_API_KEYS: {pair:?} is not key=user (expected e.g. demo-key-alice=alice)")
                })?;
            keys.insert(
                key.to_string(),
                AuthenticatedUser {
                    user_id: user.to_string(),
                    broker: "demo".to_string(),
                },
            );
        }
        Ok(DemoKeys(keys))
    }
}

impl ApiKeyVerifier for DemoKeys {
    fn verify<'a>(&'a self, api_key: &'a str) -> VerifyFuture<'a> {
        let user = self.0.get(api_key).cloned();
        Box::pin(async move { Ok(user) })
    }
}

/// `POST /notify/{user}`: the body becomes an `order_notification` for that user.
async fn notify(
    State(publisher): State<EventPublisher>,
    Path(user): Path<String>,
    message: String,
) -> String {
    let envelope = publisher.publish(Event::for_user(
        user,
        OrderNotification::info("DEMO", message),
    ));
    format!("{}\n", envelope.id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_string());
    let keys = std::env::var("DEMO_API_KEYS")
        .unwrap_or_else(|_| "demo-key-alice=alice,demo-key-bob=bob".to_string());
    let verifier = Arc::new(DemoKeys::parse(&keys)?);

    let (layer, sink) = SocketIoSink::new(SocketIoConfig::default(), verifier)?;
    let publisher = EventPublisher::builder()
        .sink(sink.clone(), SinkOptions::default())
        .build();
    // The app's own routes, then Socket.IO at /socket.io/ behind its connection caps.
    let app = axum::Router::new()
        .route(
            "/",
            get(|| async { "a foreign app with oa's Socket.IO events\n" }),
        )
        .route("/notify/{user}", post(notify))
        .with_state(publisher);
    let app = oa_events_socketio::mount(app, layer, &sink);

    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Client addresses on requests, so the per-IP caps apply.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
