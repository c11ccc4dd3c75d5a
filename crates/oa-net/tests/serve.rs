//! `serve` against real sockets: slowloris heads are cut off, idle kept-alive connections are
//! closed, and the per-IP cap refuses one address without touching another.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use oa_net::{ConnectionLimits, ServeOptions, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(options: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route(
        "/ip",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, router, options, async move {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
    }
}

/// Connects from `source` (any 127.0.0.0/8 address reaches a server on 127.0.0.1).
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the peer closes (or `limit` passes); returns what was read and when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut text = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buffer),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&text).into(),
                    Some(started.elapsed()),
                );
            }
            Ok(Ok(read)) => text.extend_from_slice(&buffer[..read]),
            Err(_) => return (String::from_utf8_lossy(&text).into(), None),
        }
    }
}

fn options() -> ServeOptions {
    ServeOptions {
        header_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(800),
        ..ServeOptions::new("test")
    }
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_at_the_header_timeout() {
    let server = start(options()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /ip HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // One more header line every 200 ms: never a complete head.
    let dripping = async {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), dripping).await;
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(2)).await;
    let closed = closed.expect("the server kept a slowloris connection open for 4 s");
    assert!(closed < Duration::from_secs(3), "closed after {closed:?}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = start(options()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET /ip HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (text, closed) = read_until_closed(&mut client, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("127.0.0.1"), "{text}");
    let closed = closed.expect("an idle kept-alive connection stayed open for 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {closed:?}"
    );
}

#[tokio::test]
async fn the_per_ip_cap_refuses_one_address_with_503_and_serves_another() {
    let server = start(ServeOptions {
        connections: ConnectionLimits {
            max_total: 100,
            max_per_ip: 3,
        },
        header_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        ..ServeOptions::new("test")
    })
    .await;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(attacker, server.addr).await);
    }
    // Let the server accept the three before the fourth arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = connect_from(attacker, server.addr).await;
    let (text, closed) = read_until_closed(&mut refused, Duration::from_secs(2)).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.contains("too many connections from your address"),
        "{text}"
    );
    assert!(closed.is_some());

    let mut good = connect_from(Ipv4Addr::LOCALHOST, server.addr).await;
    good.write_all(b"GET /ip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_until_closed(&mut good, Duration::from_secs(2)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(attacker, server.addr).await;
    again
        .write_all(b"GET /ip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (text, _) = read_until_closed(&mut again, Duration::from_secs(2)).await;
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "slots are freed on close: {text}"
    );
    assert!(text.ends_with("127.0.0.2"), "{text}");
}
