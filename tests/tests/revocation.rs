//! Revocation that bites: `oa-server apikey rotate|revoke`, run as a separate process against
//! the running server's store, ends the key's open WebSocket and Socket.IO sessions within
//! 2 seconds (Socket.IO receives `password_change` first) and its next REST call is refused.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use oa_e2e::TestServer;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a session saw after the key change, and when it ended.
#[derive(Debug, Default)]
struct Ending {
    messages: Vec<String>,
    close_code: Option<u16>,
    ended_at: Option<Instant>,
}

/// Reads until the session ends (or `limit` passes), answering Engine.IO pings.
async fn read_until_end(mut ws: Ws, limit: Duration) -> Ending {
    let mut ending = Ending::default();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return ending,
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(Message::Close(frame)))) => {
                ending.close_code = frame.map(|frame| u16::from(frame.code));
                break;
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                let text = text.to_string();
                if text == "2" {
                    let _ = ws.send(Message::Text("3".into())).await;
                    continue;
                }
                // Socket.IO DISCONNECT of the namespace ends the session too.
                let disconnect = text == "41";
                ending.messages.push(text);
                if disconnect {
                    break;
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    ending.ended_at = Some(Instant::now());
    ending
}

/// A market-data session logged in with `key`.
async fn websocket_session(server: &TestServer, key: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"action": "authenticate", "api_key": key})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["status"], "success", "{reply}");
    ws
}

/// A Socket.IO session (Engine.IO over websocket) connected to `/` with `key`.
async fn socketio_session(server: &TestServer, key: &str) -> Ws {
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        server.addresses["http"]
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
    ws.send(Message::Text(
        format!("40{}", json!({"apikey": key})).into(),
    ))
    .await
    .unwrap();
    loop {
        let packet = ws.next().await.unwrap().unwrap();
        let text = packet.to_text().unwrap().to_string();
        if text == "2" {
            // An Engine.IO ping may come first: answer it.
            ws.send(Message::Text("3".into())).await.unwrap();
            continue;
        }
        assert!(text.starts_with("40"), "{text}");
        return ws;
    }
}

async fn funds_status(server: &TestServer, key: &str) -> u16 {
    server
        .post("funds", json!({"apikey": key}))
        .await
        .unwrap()
        .0
}

/// Runs `oa-server apikey <args>` (a separate process) and returns its output and when it
/// finished.
async fn apikey(server: &TestServer, args: &[&str]) -> (String, Instant) {
    let output = tokio::task::block_in_place(|| server.apikey(args)).unwrap();
    (output, Instant::now())
}

/// Fails unless the `what` session ended (at `ended_at`) within 2 s of `changed_at`.
fn assert_ended_soon_after(what: &str, ended_at: Option<Instant>, changed_at: Instant) {
    let ended = ended_at.unwrap_or_else(|| panic!("the {what} session is still open"));
    let after = ended.saturating_duration_since(changed_at);
    assert!(
        after < Duration::from_secs(2),
        "{what} session ended {after:?} after the change"
    );
}

async fn assert_sessions_end(
    server: &TestServer,
    key: &str,
    change: &[&str],
    expected_message: &str,
) -> String {
    let limit = Duration::from_secs(10);
    let ws = tokio::spawn(read_until_end(websocket_session(server, key).await, limit));
    let sio = tokio::spawn(read_until_end(socketio_session(server, key).await, limit));
    // Both sessions are logged in before the key changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (output, changed_at) = apikey(server, change).await;

    let ws = ws.await.unwrap();
    assert_ended_soon_after("WebSocket", ws.ended_at, changed_at);
    assert!(
        ws.messages.iter().any(|m| m.contains("API_KEY_REVOKED")),
        "{ws:?}"
    );
    assert_eq!(ws.close_code, Some(4403), "{ws:?}");

    let sio = sio.await.unwrap();
    assert_ended_soon_after("Socket.IO", sio.ended_at, changed_at);
    // The notice came first (reading stops at the end of the session).
    let notice = sio
        .messages
        .iter()
        .find(|m| m.starts_with(r#"42["password_change""#))
        .unwrap_or_else(|| panic!("no password_change before the end: {sio:?}"));
    assert!(notice.contains(expected_message), "{sio:?}");

    assert_eq!(
        funds_status(server, key).await,
        403,
        "the old key still works"
    );
    output
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_or_revoking_from_the_cli_ends_sessions_and_refuses_rest() {
    let server = TestServer::start(&[
        ("ORDER_EVENT_MODE", "SOCKETIO"),
        ("API_RATE_LIMIT", "1000 per second"),
    ])
    .unwrap();
    let old_key = server.create_user("trader").unwrap();
    let bystander = server.admin_key.clone();
    let bystander_ws = websocket_session(&server, &bystander).await;
    let bystander_watch = tokio::spawn(read_until_end(bystander_ws, Duration::from_secs(120)));

    assert_eq!(funds_status(&server, &old_key).await, 200);
    let new_key = assert_sessions_end(
        &server,
        &old_key,
        &["rotate", "--user", "trader"],
        "API key rotated",
    )
    .await;
    assert_eq!(new_key.len(), 64, "{new_key:?}");
    assert_eq!(funds_status(&server, &new_key).await, 200);

    // Sessions opened with the new key are not ended by the past rotation...
    let fresh = socketio_session(&server, &new_key).await;
    let fresh_watch = tokio::spawn(read_until_end(fresh, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!fresh_watch.is_finished(), "a new-key session was ended");
    fresh_watch.abort();

    // ... and revoking the new key ends those.
    assert_sessions_end(
        &server,
        &new_key,
        &["revoke", "--user", "trader"],
        "API key revoked",
    )
    .await;

    // Another user's session was never touched.
    assert!(
        !bystander_watch.is_finished(),
        "the bystander was disconnected"
    );
    bystander_watch.abort();
    assert_eq!(funds_status(&server, &bystander).await, 200);
}
