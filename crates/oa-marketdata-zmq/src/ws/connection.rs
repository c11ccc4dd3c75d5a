//! One WebSocket connection: a reader loop (requests, auth grace timer) and a writer task
//! (drains the send queue, sends keepalive pings, enforces the ping timeout).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use oa_net::ConnectionPermit;

use crate::ws::hub::Hub;
use crate::ws::protocol::{ErrorCode, ProtocolError};
use crate::ws::registry::Client;
use crate::ws::send_queue::Outgoing;
use oa_marketdata_core::tick::now_ms;

/// Close code sent when a client did not authenticate within the grace period.
pub const CLOSE_AUTH_TIMEOUT: u16 = 4401;
/// Close code sent when a client stopped answering keepalive pings.
pub const CLOSE_PING_TIMEOUT: u16 = 1011;
/// Close code sent when the API key a client logged in with was rotated or revoked.
pub const CLOSE_KEY_REVOKED: u16 = 4403;

/// Connection timings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub auth_grace: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// How long a closed connection waits for the peer's close frame before dropping the socket.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most messages written between two flushes.
const WRITE_BATCH: usize = 128;

/// Serves one upgraded socket from `ip` until it closes; `permit` holds its connection slot.
pub(crate) async fn serve(
    socket: WebSocket,
    ip: IpAddr,
    permit: ConnectionPermit,
    hub: Arc<Hub>,
    timing: Timing,
) {
    let _permit = permit;
    let client = hub.register(ip);
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(sink, Arc::clone(&client), timing));
    let grace = tokio::time::sleep(timing.auth_grace);
    tokio::pin!(grace);
    let mut grace_pending = true;
    loop {
        tokio::select! {
            frame = stream.next() => {
                client.touch();
                match frame {
                    Some(Ok(Message::Text(text))) => hub.handle_text(&client, text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        client.queue.push_control(Outgoing::Text(Utf8Bytes::from(
                            ProtocolError::new(ErrorCode::InvalidJson, "Invalid JSON message: binary frames are not supported").to_json(),
                        )));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(error)) => {
                        // tungstenite reports a frame or message over the limit as "Space limit
                        // exceeded" (its capacity error); anything else is a broken socket.
                        let reason = if error.to_string().contains("Space limit exceeded") {
                            "too_large"
                        } else {
                            "read_error"
                        };
                        metrics::counter!("oa_ws_read_refused_total", "reason" => reason).increment(1);
                        tracing::debug!(client = client.id, %error, reason, "websocket read failed");
                        break;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                }
            }
            () = &mut grace, if grace_pending => {
                grace_pending = false;
                if !client.is_authenticated() {
                    tracing::debug!(client = client.id, "closing unauthenticated websocket after the grace period");
                    client.queue.push_control(Outgoing::Close(CLOSE_AUTH_TIMEOUT, "Authentication timeout"));
                }
            }
            _ = &mut writer => {
                // The writer ended (close sent, ping timeout or socket error). Give the peer
                // a moment to answer the close frame, so it sees a clean closing handshake.
                hub.unregister(&client);
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
                    while let Some(Ok(frame)) = stream.next().await {
                        if matches!(frame, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
                return;
            }
        }
    }
    hub.unregister(&client);
    client.queue.close();
    let _ = writer.await;
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, client: Arc<Client>, timing: Timing) {
    let mut ping = tokio::time::interval(timing.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the first ping goes out one interval after connecting.
    ping.tick().await;
    let dead_after_ms =
        i64::try_from((timing.ping_interval + timing.ping_timeout).as_millis()).unwrap_or(i64::MAX);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let finished = client.queue.take(&mut batch, WRITE_BATCH);
        let mut written = 0u64;
        for message in batch.drain(..) {
            let result = match message {
                Outgoing::Text(text) => sink.feed(Message::Text(text)).await,
                Outgoing::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: Utf8Bytes::from_static(reason),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    let _ = sink.close().await;
                    client.queue.close();
                    return;
                }
            };
            if result.is_err() {
                client.queue.close();
                return;
            }
            written += 1;
        }
        if written > 0 {
            if sink.flush().await.is_err() {
                client.queue.close();
                return;
            }
            client.queue.record_sent(written);
        }
        if finished {
            let _ = sink.close().await;
            return;
        }
        if written > 0 {
            // More may have arrived while writing: drain before sleeping.
            continue;
        }
        tokio::select! {
            () = client.queue.notified() => {}
            _ = ping.tick() => {
                let silent_ms = now_ms() - client.last_seen_ms.load(std::sync::atomic::Ordering::Relaxed);
                if silent_ms > dead_after_ms {
                    tracing::debug!(client = client.id, silent_ms, "websocket keepalive timed out");
                    client.queue.push_control(Outgoing::Close(CLOSE_PING_TIMEOUT, "keepalive ping timeout"));
                } else if sink.send(Message::Ping(Default::default())).await.is_err() {
                    client.queue.close();
                    return;
                }
            }
        }
    }
}
