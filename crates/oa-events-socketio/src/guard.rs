//! [`mount`]: the Socket.IO layer behind its connection caps.
//!
//! Every request that opens an Engine.IO session (a handshake without `sid`, on long-polling or
//! straight on websocket) takes a slot of the layer's global and per-IP caps
//! ([`SocketIoConfig::connections`](crate::SocketIoConfig)). The slot travels in the request's
//! extensions, which socketioxide keeps with the session, so it is freed when the session ends,
//! whether or not the client ever logged in. A refused handshake gets `503` with an Engine.IO
//! error body (`{"code":4,"message":...}`) and is counted in
//! `oa_connections_refused_total{listener="socketio"}`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use oa_net::{ConnectionLimiter, ConnectionPermit};
use socketioxide::layer::SocketIoLayer;

use crate::sink::SocketIoSink;

/// A session's connection slot, kept alive by socketioxide with the session's request parts.
#[derive(Debug, Clone)]
struct SessionSlot(#[allow(dead_code)] Arc<ConnectionPermit>);

/// Mounts the Socket.IO `layer` on `router`, behind the connection caps of `sink`'s config.
/// Serve the result with `ConnectInfo<SocketAddr>` on requests (axum's
/// `into_make_service_with_connect_info` or `oa_net::serve`) so caps apply per client IP.
pub fn mount(router: Router, layer: SocketIoLayer, sink: &SocketIoSink) -> Router {
    router
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            sink.session_limiter(),
            cap_sessions,
        ))
}

/// True for a request that opens a new Engine.IO session.
fn opens_session(uri: &Uri) -> bool {
    uri.path().starts_with("/socket.io")
        && !uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|pair| pair.starts_with("sid="))
}

async fn cap_sessions(
    State(limiter): State<ConnectionLimiter>,
    mut request: Request,
    next: Next,
) -> Response {
    if opens_session(request.uri()) {
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
                peer.ip()
            });
        match limiter.try_acquire(ip) {
            Ok(permit) => {
                request
                    .extensions_mut()
                    .insert(SessionSlot(Arc::new(permit)));
            }
            Err(refused) => {
                let body = serde_json::json!({"code": 4, "message": refused.to_string()});
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_handshakes_open_sessions() {
        let uri = |text: &str| text.parse::<Uri>().unwrap();
        assert!(opens_session(&uri("/socket.io/?EIO=4&transport=polling")));
        assert!(opens_session(&uri("/socket.io/?EIO=4&transport=websocket")));
        assert!(!opens_session(&uri(
            "/socket.io/?EIO=4&transport=polling&sid=abc"
        )));
        assert!(!opens_session(&uri("/socket.io/?sid=abc&EIO=4")));
        assert!(!opens_session(&uri("/api/v1/placeorder")));
    }
}
