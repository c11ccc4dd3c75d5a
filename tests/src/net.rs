//! Raw sockets for limit tests: connections from a chosen loopback source address (per-IP
//! caps), WebSocket handshakes whose refusal is read as "status body", and a frame header
//! announcing more than any limit allows.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket client over plain TCP.
pub type PlainWebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A TCP connection to `server` from the loopback address `source` (e.g. 127.0.0.2, to act
/// as another client IP).
pub async fn tcp_from(source: Ipv4Addr, server: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("socket")?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .with_context(|| format!("bind the loopback source address {source}"))?;
    socket
        .connect(server)
        .await
        .with_context(|| format!("connect to {server}"))
}

/// A WebSocket handshake for `url` on a connection from `source`; a refusal is returned as
/// the HTTP status and body ("503 Service Unavailable ...").
pub async fn websocket_from(
    source: Ipv4Addr,
    server: SocketAddr,
    url: &str,
) -> Result<PlainWebSocket, String> {
    let stream = tcp_from(source, server)
        .await
        .map_err(|error| format!("{error:#}"))?;
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
        .map_err(|error| match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => format!(
                "{} {}",
                response.status(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
            ),
            other => other.to_string(),
        })
}

/// Upgrades `path` on `server` to a WebSocket by hand and sends the header of a masked text
/// frame announcing 16 MiB, then only 4 KiB of it; returns the connection, which a server
/// that checks frame sizes from the header closes at once.
pub async fn announce_a_16_mib_frame(server: SocketAddr, path: &str) -> anyhow::Result<TcpStream> {
    let mut tcp = TcpStream::connect(server).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 1024];
    let read = tcp.read(&mut head).await?;
    ensure!(
        head[..read].starts_with(b"HTTP/1.1 101"),
        "no upgrade: {}",
        String::from_utf8_lossy(&head[..read])
    );
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(16u64 * 1024 * 1024).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[b'x'; 4096]);
    tcp.write_all(&frame).await?;
    Ok(tcp)
}
