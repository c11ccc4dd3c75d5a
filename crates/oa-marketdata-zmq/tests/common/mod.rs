//! Helpers shared by the integration tests: an in-memory API-key verifier, a real
//! WebSocket client (tokio-tungstenite) and a started market-data layer on ephemeral ports.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use oa_events_core::auth::VerifyFuture;
use oa_events_core::{ApiKeyVerifier, AuthenticatedUser, EventPublisher};
use oa_marketdata_zmq::{MarketData, MarketDataConfig, Publisher, PublisherOptions, Tick};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// API keys of the tests.
pub const KEY_ALICE: &str = "alice-key-0123456789";
pub const KEY_BOB: &str = "bob-key-0123456789";
/// A key whose check fails as if the key store were down.
pub const KEY_STORE_DOWN: &str = "store-down-key";

/// An in-memory key store.
pub struct MapVerifier {
    keys: HashMap<String, AuthenticatedUser>,
}

impl MapVerifier {
    pub fn new() -> Self {
        let user = |id: &str| AuthenticatedUser {
            user_id: id.to_string(),
            broker: "simulator".to_string(),
        };
        MapVerifier {
            keys: HashMap::from([
                (KEY_ALICE.to_string(), user("alice")),
                (KEY_BOB.to_string(), user("bob")),
            ]),
        }
    }
}

impl ApiKeyVerifier for MapVerifier {
    fn verify<'a>(&'a self, api_key: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            if api_key == KEY_STORE_DOWN {
                return Err(oa_events_core::VerifierError {
                    reason: "key store unreachable".to_string(),
                });
            }
            Ok(self.keys.get(api_key).cloned())
        })
    }
}

/// A started market-data layer with its event publisher.
pub struct Harness {
    pub md: MarketData,
    pub events: EventPublisher,
}

pub async fn start(config: MarketDataConfig) -> Harness {
    let events = EventPublisher::builder().build();
    let md = oa_marketdata_zmq::start(
        config,
        Arc::new(MapVerifier::new()),
        events.clone(),
        "simulator".to_string(),
    )
    .await
    .expect("market data starts");
    Harness { md, events }
}

/// Starts the layer on the ephemeral configuration as `configure` adjusts it.
pub async fn start_configured(configure: impl FnOnce(&mut MarketDataConfig)) -> Harness {
    let mut config = MarketDataConfig::ephemeral();
    configure(&mut config);
    start(config).await
}

pub async fn start_default() -> Harness {
    start(MarketDataConfig::ephemeral()).await
}

impl Harness {
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.md.ws_addr())
    }

    /// A publisher whose connection to the bus is proven: it publishes a warm-up tick until
    /// the bus counted one.
    pub async fn publisher(&self) -> Publisher {
        let mut publisher = Publisher::connect(self.md.zmq_endpoint(), PublisherOptions::default())
            .expect("publisher connects");
        let before = self.md.stats().bus.received;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.md.stats().bus.received == before {
            assert!(
                Instant::now() < deadline,
                "bus never received the warm-up tick"
            );
            publisher
                .publish(&Tick::ltp("NSE", "WARMUP", 1.0))
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        publisher
    }

    /// A WebSocket client of this layer, authenticated with `key`.
    pub async fn client(&self, key: &str) -> Client {
        Client::authenticated(&self.ws_url(), key).await
    }

    /// Waits until the dispatcher saw `count` ticks in total.
    pub async fn wait_dispatched(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.md.stats().proxy.ticks_dispatched < count {
            assert!(
                Instant::now() < deadline,
                "dispatcher stalled at {:?}",
                self.md.stats()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Fails unless every key of `expected` has its value in `message` (other keys may follow).
pub fn assert_includes(message: &Value, expected: Value) {
    for (key, value) in expected.as_object().expect("an object of expected fields") {
        assert_eq!(&message[key], value, "{key} in {message}");
    }
}

/// A real WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Client { ws }
    }

    /// Connects with a tiny TCP receive buffer, so that not reading fills it quickly.
    pub async fn connect_small_buffer(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("tcp connects");
        let (ws, _) =
            tokio_tungstenite::client_async(format!("ws://{addr}"), MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket handshake");
        Client { ws }
    }

    pub async fn authenticated(url: &str, key: &str) -> Client {
        let mut client = Client::connect(url).await;
        let reply = client.authenticate(key).await;
        assert_eq!(reply["type"], "auth", "{reply}");
        assert_eq!(reply["status"], "success", "{reply}");
        client
    }

    /// Sends `authenticate` with `key`; returns the reply.
    pub async fn authenticate(&mut self, key: &str) -> Value {
        self.send(json!({"action": "authenticate", "api_key": key}))
            .await;
        self.recv().await
    }

    /// Fails if a message arrives within `wait`.
    pub async fn assert_silent_for(&mut self, wait: Duration) {
        let message = self.recv_within(wait).await;
        assert!(message.is_none(), "unexpected {message:?}");
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON message (pings skipped), failing after [`TIMEOUT`].
    pub async fn recv(&mut self) -> Value {
        self.recv_within(TIMEOUT)
            .await
            .expect("a message within the timeout")
    }

    /// The next JSON message within `limit`, or None.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame.expect("websocket frame") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(text.as_str()).expect("JSON text frame"));
                }
                Message::Close(frame) => panic!("unexpected close: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Skips messages until one matches.
    pub async fn recv_until(&mut self, mut matches: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .recv_within(left)
                .await
                .expect("the expected message within the timeout");
            if matches(&message) {
                return message;
            }
        }
    }

    /// Waits for the server to close the connection; returns the close frame.
    pub async fn closed(&mut self, limit: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("connection still open after {limit:?}"),
                Ok(None) => return None,
                Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn subscribe(&mut self, exchange: &str, symbol: &str, mode: Value) -> Value {
        self.send(json!({"action": "subscribe", "symbols": [{"symbol": symbol, "exchange": exchange}], "mode": mode}))
            .await;
        let reply = self.recv_until(|m| m["type"] == "subscribe").await;
        assert_eq!(reply["status"], "success", "{reply}");
        reply
    }
}

/// A depth tick with recognisable numbers.
pub fn depth_tick(exchange: &str, symbol: &str, ltp: f64) -> Tick {
    use oa_marketdata_zmq::{Depth, DepthLevel, Quote, TickMode};
    Tick {
        mode: TickMode::Depth,
        quote: Some(Quote {
            open: 100.0,
            high: 110.0,
            low: 90.0,
            close: 99.0,
            volume: 12345.0,
            average_price: 101.5,
            total_buy_quantity: 500.0,
            total_sell_quantity: 600.0,
            last_quantity: 5.0,
            oi: 0.0,
        }),
        depth: Some(Depth {
            buy: (1..=5u32)
                .map(|i| DepthLevel {
                    price: ltp - 0.05 * f64::from(i),
                    quantity: 10.0 * f64::from(i),
                    orders: u64::from(i),
                })
                .collect(),
            sell: (1..=5u32)
                .map(|i| DepthLevel {
                    price: ltp + 0.05 * f64::from(i),
                    quantity: 20.0 * f64::from(i),
                    orders: u64::from(i),
                })
                .collect(),
        }),
        ..Tick::ltp(exchange, symbol, ltp)
    }
}
