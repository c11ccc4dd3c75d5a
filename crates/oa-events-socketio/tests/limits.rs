//! The Socket.IO layer under abuse, with real sockets: a 16 MiB websocket frame is refused
//! from its header before login, Engine.IO sessions are capped per IP (refused with 503; other
//! addresses are not affected), handshakes are rate limited per IP, and `password_change`
//! (key rotated or revoked) is delivered and then ends the user's sessions.

// Test helpers outside #[test] fns unwrap too; `.err().expect()` reads better than the
// alternatives when the Ok type is not Debug.
#![allow(clippy::unwrap_used, clippy::err_expect)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{RustClient, TestServer, test_config};
use futures_util::{SinkExt, StreamExt};
use oa_e2e::net::{PlainWebSocket, announce_a_16_mib_frame, websocket_from};
use oa_events_core::Event;
use oa_events_core::catalog::PasswordChange;
use oa_events_socketio::SocketIoConfig;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

type Ws = PlainWebSocket;

/// Opens an Engine.IO session straight on websocket from `source`; returns it after the open
/// packet, or the HTTP status and body of the refusal.
async fn engine_session(source: Ipv4Addr, server: SocketAddr) -> Result<Ws, String> {
    let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
    let mut ws = websocket_from(source, server, &url).await?;
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "Engine.IO open packet: {open}");
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a packet within 5 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let text = text.to_string();
            if text == "2" {
                // Engine.IO ping: answer and keep reading.
                let _ = ws.send(Message::Text("3".into())).await;
                continue;
            }
            return text;
        }
    }
}

/// Sends a namespace CONNECT with `auth` and returns the reply packet (`40...` or `44...`).
async fn login(ws: &mut Ws, auth: serde_json::Value) -> String {
    ws.send(Message::Text(format!("40{auth}").into()))
        .await
        .unwrap();
    next_text(ws).await
}

#[tokio::test]
async fn a_16_mib_websocket_frame_is_refused_from_its_header_before_login() {
    let server = TestServer::start(test_config()).await;
    let mut tcp = announce_a_16_mib_frame(server.addr, "/socket.io/?EIO=4&transport=websocket")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server waited for the rest of a 16 MiB frame instead of refusing it"
    );
}

#[tokio::test]
async fn engine_sessions_are_capped_per_ip_with_503_and_other_addresses_are_served() {
    let mut config = test_config();
    config.connections.max_per_ip = 3;
    // socketioxide keeps a session that never logged in until its connect timeout.
    config.connect_timeout = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            engine_session(ATTACKER, server.addr)
                .await
                .expect("under the cap"),
        );
    }
    let refused = engine_session(ATTACKER, server.addr)
        .await
        .err()
        .expect("refused");
    assert!(refused.starts_with("503"), "{refused}");
    assert!(refused.contains("from your address"), "{refused}");
    // Long-polling handshakes count against the same cap.
    let polling = reqwest::Client::builder()
        .local_address(IpAddr::V4(ATTACKER))
        .build()
        .unwrap()
        .get(format!(
            "{}/socket.io/?EIO=4&transport=polling",
            server.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(polling.status().as_u16(), 503);

    let alice = RustClient::websocket(&server.url(), "alice").await;
    alice.close().await;

    // Sessions that end free their slots (one that never logged in: at its connect timeout).
    for mut ws in held {
        let _ = ws.close(None).await;
    }
    oa_e2e::retry_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(100),
        "slots were not freed",
        || engine_session(ATTACKER, server.addr),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn handshakes_are_rate_limited_per_ip() {
    let config = SocketIoConfig {
        login_rate: oa_net::RateSpec::parse("3 per minute").unwrap(),
        ..test_config()
    };
    let server = TestServer::start(config).await;
    let mut attacker = engine_session(ATTACKER, server.addr).await.unwrap();
    for _ in 0..3 {
        let reply = login(&mut attacker, json!({"apikey": "bogus"})).await;
        assert!(reply.starts_with("44"), "{reply}");
        assert!(reply.contains("Invalid openalgo apikey"), "{reply}");
    }
    let reply = login(&mut attacker, json!({"apikey": "key-alice"})).await;
    assert!(reply.starts_with("44"), "{reply}");
    assert!(reply.contains("Too many login attempts"), "{reply}");

    let mut good = engine_session(Ipv4Addr::LOCALHOST, server.addr)
        .await
        .unwrap();
    let reply = login(&mut good, json!({"apikey": "key-alice"})).await;
    assert!(reply.starts_with("40"), "{reply}");
}

#[tokio::test]
async fn password_change_is_delivered_then_the_users_sessions_end() {
    let server = TestServer::start(test_config()).await;
    let mut alice = RustClient::websocket(&server.url(), "alice").await;
    let mut bob = RustClient::websocket(&server.url(), "bob").await;
    server.wait_clients(2).await;
    let started = Instant::now();
    server.publisher.publish(Event::for_user(
        "alice",
        PasswordChange::success("alice", "API key revoked"),
    ));
    let (name, data) = alice
        .next(Duration::from_secs(2))
        .await
        .expect("the notice");
    assert_eq!(name, "password_change");
    assert_eq!(data["message"], "API key revoked");
    // Then the server ends the session.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.sink.stats().clients > 1 {
        assert!(Instant::now() < deadline, "alice's session is still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        bob.next(Duration::from_millis(300)).await.is_none(),
        "bob saw nothing"
    );
    assert_eq!(server.sink.stats().clients, 1, "bob is still connected");
}
