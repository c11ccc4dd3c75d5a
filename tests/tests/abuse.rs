//! The abuse suite: the real server, a well-behaved client on 127.0.0.1 trading over REST,
//! receiving its order events on Socket.IO (python-socketio) and ticks on the WebSocket proxy,
//! while an attacker on 127.0.0.2 (the whole 127.0.0.0/8 reaches a server bound to 127.0.0.1)
//! throws, one after the other:
//!
//! 1. 16 MiB frames before login, on the WebSocket proxy and Socket.IO's websocket transport;
//! 2. 10,000 logins with bogus keys (WebSocket `authenticate` and Socket.IO handshakes);
//! 3. 2,000 unauthenticated WebSocket connections and 2,000 unauthenticated Socket.IO
//!    (Engine.IO websocket) sessions, held open;
//!
//! and, all along, slowloris HTTP heads and a ZeroMQ publisher flooding unknown symbols.
//!
//! It asserts that the server's peak RSS stays under [`RSS_BOUND_MIB`], that every order of the
//! good client is accepted and its event arrives, that ticks keep flowing, and that each kind
//! of refusal is counted in /metrics. It prints the peak RSS and the good client's order
//! latency during the attack (figures, not pass/fail). Every loop is bounded; only loopback
//! addresses are used.
//!
//! Run: `cargo test -p oa-e2e --test abuse -- --nocapture` (`OA_SERVER_BIN` picks another
//! build, for example `target/release/oa-server`).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use oa_e2e::{PeerProcess, TestServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The server's resident memory must stay under this, attack included.
const RSS_BOUND_MIB: u64 = 256;
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const FLOOD_CONNECTIONS: usize = 2_000;

/// Fails unless a flood of `what` connections from one address was capped at 100 per IP
/// (`accepted`, `refused` of [`FLOOD_CONNECTIONS`]) and `counted` (the refusal counters in
/// `metrics`) covers every refusal.
fn assert_flood_capped(
    what: &str,
    (accepted, refused): (usize, usize),
    counted: f64,
    metrics: &str,
) {
    assert!(accepted <= 100, "per-IP {what} cap: {accepted} accepted");
    assert!(
        refused >= FLOOD_CONNECTIONS - 100 - 50,
        "{what}: {refused} refused"
    );
    assert!(
        counted >= refused as f64,
        "{what} refusals not counted ({counted} of {refused}):\n{metrics}"
    );
}
const BOGUS_LOGINS_WS: usize = 9_000;
const BOGUS_LOGINS_SOCKETIO: usize = 1_000;
const OVERSIZED_FRAMES: usize = 10;
const SLOWLORIS_CONNECTIONS: usize = 100;
const UNKNOWN_TICKS: usize = 200_000;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn tcp_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    socket.connect(server).await
}

/// A WebSocket from `source`, or the refusal's HTTP status (0 for other failures).
async fn ws_from(source: Ipv4Addr, server: SocketAddr, path: &str) -> Result<Ws, u16> {
    let stream = tcp_from(source, server).await.map_err(|_| 0u16)?;
    let url = format!("ws://{server}{path}");
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        _ => Err(0),
    }
}

fn address(server: &TestServer, name: &str) -> SocketAddr {
    server.addresses[name].parse().unwrap()
}

/// VmHWM and VmRSS of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Sum of the samples of `name` whose labels include every `(label, value)` of `filter`.
fn metric(text: &str, name: &str, filter: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, labels) = match series.split_once('{') {
                Some((metric_name, labels)) => (metric_name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric_name != name {
                return None;
            }
            let matches = filter
                .iter()
                .all(|(label, wanted)| labels.contains(&format!("{label}=\"{wanted}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Opens `count` connections with `open` (at most 200 at a time), holds the accepted ones
/// until all were tried, then closes them. Returns (accepted, refused with 503).
async fn flood<F, Fut>(count: usize, open: F) -> (usize, usize)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Ws, u16>> + Send,
{
    let open = Arc::new(open);
    let gate = Arc::new(Semaphore::new(200));
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let open = Arc::clone(&open);
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            open().await
        }));
    }
    let mut held = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(ws) => held.push(ws),
            Err(503) => refused += 1,
            Err(_) => {}
        }
    }
    let accepted = held.len();
    for mut ws in held {
        let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
    }
    (accepted, refused)
}

/// Sends one 16 MiB frame (before any login) after `preamble`; true when the server closed
/// the connection before it was all sent or soon after.
async fn oversized_frame(server: SocketAddr, path: &str) -> bool {
    let Ok(mut tcp) = tcp_from(ATTACKER, server).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 512];
    match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut head)).await {
        Ok(Ok(read)) if head[..read].starts_with(b"HTTP/1.1 101") => {}
        _ => return false,
    }
    let size = 16usize * 1024 * 1024;
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(size as u64).to_be_bytes());
    frame.extend_from_slice(&[7, 7, 7, 7]);
    let chunk = vec![0u8; 64 * 1024];
    let sent = async {
        tcp.write_all(&frame).await?;
        for _ in 0..size / chunk.len() {
            tcp.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let refused_while_sending = matches!(
        tokio::time::timeout(Duration::from_secs(10), sent).await,
        Ok(Err(_)) | Err(_)
    );
    if refused_while_sending {
        return true;
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest))
        .await
        .is_ok()
}

/// Drips a request head one header line every 300 ms; returns how long the server let the
/// connection live (capped at 30 s).
async fn slowloris(server: SocketAddr) -> Option<Duration> {
    let mut tcp = tcp_from(ATTACKER, server).await.ok()?;
    let started = Instant::now();
    if tcp
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .is_err()
    {
        return Some(started.elapsed());
    }
    for line in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if tcp
            .write_all(format!("X-Slow-{line}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            return Some(started.elapsed());
        }
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut byte)).await
        {
            return Some(started.elapsed());
        }
    }
    None
}

/// Sends `count` bogus `authenticate` requests on one WebSocket; returns how many replies came.
async fn bogus_ws_logins(server: SocketAddr, count: usize) -> usize {
    let Ok(mut ws) = ws_from(ATTACKER, server, "/").await else {
        return 0;
    };
    let mut replies = 0;
    for n in 0..count {
        let login = json!({"action": "authenticate", "api_key": format!("bogus-{n:060}")});
        if ws
            .send(Message::Text(login.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    while replies < count {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => replies += 1,
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    replies
}

/// How a bogus Socket.IO login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketIoLogin {
    /// CONNECT_ERROR (bad key or rate limited).
    Refused,
    /// No session: the handshake got 503 (session cap).
    SessionRefused,
    /// Anything else.
    Failed,
}

/// One Socket.IO handshake with a bogus key on a fresh Engine.IO websocket session.
async fn bogus_socketio_login(server: SocketAddr) -> SocketIoLogin {
    let mut ws = match ws_from(ATTACKER, server, "/socket.io/?EIO=4&transport=websocket").await {
        Ok(ws) => ws,
        Err(503) => return SocketIoLogin::SessionRefused,
        Err(_) => return SocketIoLogin::Failed,
    };
    let answered = async {
        // The Engine.IO open packet, then our namespace CONNECT.
        ws.next().await;
        ws.send(Message::Text(r#"40{"apikey":"bogus"}"#.into()))
            .await
            .ok()?;
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Text(text) = frame
                && text.starts_with("44")
            {
                return Some(());
            }
        }
        None
    };
    let result = tokio::time::timeout(Duration::from_secs(10), answered).await;
    let _ = ws.close(None).await;
    match result {
        Ok(Some(())) => SocketIoLogin::Refused,
        _ => SocketIoLogin::Failed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_stays_bounded_and_serves_a_good_client_under_attack() {
    let server = TestServer::start(&[
        ("ORDER_EVENT_MODE", "SOCKETIO"),
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "200"),
        ("OA_HTTP_HEADER_TIMEOUT_SECONDS", "3"),
    ])
    .unwrap();
    let pid = server.pid().unwrap();
    let key = server.admin_key.clone();
    let http = address(&server, "http");
    let websocket = address(&server, "websocket");
    server.wait_for_price(&key, "NSE", "SBIN").await.unwrap();

    // The good client: Socket.IO events (python-socketio over websocket)...
    let mut events = PeerProcess::socketio_events(
        &server.http_url(),
        &key,
        &[
            ("OA_TRANSPORTS", "websocket"),
            ("OA_STOP_EVENT", "never"),
            ("OA_TIMEOUT_S", "170"),
        ],
    )
    .unwrap();

    // ... ticks on the WebSocket proxy ...
    let ticks = Arc::new(AtomicU64::new(0));
    let mut ticker = ws_from(Ipv4Addr::LOCALHOST, websocket, "/").await.unwrap();
    ticker
        .send(Message::Text(
            json!({"action": "authenticate", "api_key": key})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    ticker
        .send(Message::Text(
            json!({"action": "subscribe", "symbols": [{"exchange": "NSE", "symbol": "SBIN"}], "mode": 1})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let tick_task = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            while let Some(Ok(frame)) = ticker.next().await {
                if let Message::Text(text) = frame
                    && text.contains("\"market_data\"")
                {
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    // ... and orders over REST, one every 20 ms, until the attack is over.
    let attacking = Arc::new(AtomicBool::new(true));
    let order_task = {
        let attacking = Arc::clone(&attacking);
        let url = format!("{}/api/v1/placeorder", server.http_url());
        let key = key.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut placed = Vec::new();
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            // Bounded: at most 10,000 orders (200 s at this pace).
            for _ in 0..10_000 {
                if !attacking.load(Ordering::Relaxed) {
                    break;
                }
                pace.tick().await;
                let body = json!({"apikey": key, "strategy": "abuse", "exchange": "NSE",
                    "symbol": "SBIN", "action": "BUY", "quantity": "1", "product": "MIS",
                    "pricetype": "MARKET"});
                let started = Instant::now();
                let response = client.post(&url).json(&body).send().await;
                let elapsed = started.elapsed();
                match response {
                    Ok(response) if response.status().as_u16() == 200 => {
                        let body: Value = response.json().await.unwrap_or_default();
                        match body["orderid"].as_str() {
                            Some(id) => {
                                placed.push(id.to_string());
                                latencies.push(elapsed);
                            }
                            None => failures.push(body.to_string()),
                        }
                    }
                    Ok(response) => failures.push(format!("HTTP {}", response.status())),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            (placed, latencies, failures)
        })
    };

    // Peak memory, sampled every 100 ms.
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak_rss = Arc::clone(&peak_rss);
        let attacking = Arc::clone(&attacking);
        tokio::spawn(async move {
            while attacking.load(Ordering::Relaxed) {
                let (_, rss) = memory_kib(pid);
                peak_rss.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (_, rss_before) = memory_kib(pid);
    let ticks_before = ticks.load(Ordering::Relaxed);
    let attack_started = Instant::now();

    // In the background all along: slowloris heads and a flood of unknown symbols.
    let slow_task = tokio::spawn(async move {
        let tasks: Vec<_> = (0..SLOWLORIS_CONNECTIONS)
            .map(|_| tokio::spawn(slowloris(http)))
            .collect();
        let mut held = Vec::new();
        for task in tasks {
            held.push(task.await.unwrap());
        }
        held
    });
    let zmq_endpoint = server.addresses["zmq"].clone();
    let zmq_task = tokio::task::spawn_blocking(move || {
        use oa_marketdata_zmq::{Publisher, PublisherOptions, Tick};
        let mut publisher = Publisher::connect_and_wait(
            &zmq_endpoint,
            PublisherOptions::default(),
            Duration::from_secs(10),
        )
        .unwrap();
        let mut sent = 0usize;
        for n in 0..UNKNOWN_TICKS {
            if publisher
                .publish(&Tick::ltp("NSE", format!("FLOOD{n}"), 1.0 + n as f64))
                .is_ok()
            {
                sent += 1;
            }
            if n % 1000 == 999 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        sent
    });

    // 1. 16 MiB frames before login.
    let mut oversized_refused = 0;
    for _ in 0..OVERSIZED_FRAMES {
        if oversized_frame(websocket, "/").await {
            oversized_refused += 1;
        }
        if oversized_frame(http, "/socket.io/?EIO=4&transport=websocket").await {
            oversized_refused += 1;
        }
    }

    // 2. Bogus-key logins.
    let ws_login_tasks: Vec<_> = (0..30)
        .map(|_| tokio::spawn(bogus_ws_logins(websocket, BOGUS_LOGINS_WS / 30)))
        .collect();
    let mut ws_login_replies = 0;
    for task in ws_login_tasks {
        ws_login_replies += task.await.unwrap();
    }
    let gate = Arc::new(Semaphore::new(50));
    let sio_login_tasks: Vec<_> = (0..BOGUS_LOGINS_SOCKETIO)
        .map(|_| {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                bogus_socketio_login(http).await
            })
        })
        .collect();
    let (mut sio_login_refused, mut sio_login_no_session) = (0, 0);
    for task in sio_login_tasks {
        match task.await.unwrap() {
            SocketIoLogin::Refused => sio_login_refused += 1,
            SocketIoLogin::SessionRefused => sio_login_no_session += 1,
            SocketIoLogin::Failed => {}
        }
    }

    // 3. Connection floods (last: Socket.IO sessions that never log in keep their slot until
    // their 10 s connect timeout), held open until all were tried.
    let (ws_accepted, ws_refused) = flood(FLOOD_CONNECTIONS, move || async move {
        ws_from(ATTACKER, websocket, "/").await
    })
    .await;
    let (sio_accepted, sio_refused) = flood(FLOOD_CONNECTIONS, move || async move {
        ws_from(ATTACKER, http, "/socket.io/?EIO=4&transport=websocket").await
    })
    .await;

    let slow_held = slow_task.await.unwrap();
    let unknown_sent = zmq_task.await.unwrap();
    let attack_time = attack_started.elapsed();
    attacking.store(false, Ordering::Relaxed);
    let (placed, mut latencies, failures) = order_task.await.unwrap();
    sampler.await.unwrap();
    let ticks_during = ticks.load(Ordering::Relaxed) - ticks_before;

    // Every acknowledged order's event reached the good client.
    let mut missing: HashSet<String> = placed.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !missing.is_empty() && Instant::now() < deadline {
        let Ok(line) = events
            .wait_for(deadline.saturating_duration_since(Instant::now()), |line| {
                line["type"] == "event" && line["name"] == "order_event"
            })
        else {
            break;
        };
        if let Some(id) = line["data"]["orderid"].as_str() {
            missing.remove(id);
        }
    }
    tick_task.abort();

    let (peak_hwm, rss_after) = memory_kib(pid);
    let peak = peak_rss.load(Ordering::Relaxed).max(peak_hwm);
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let slow_cut: Vec<Duration> = slow_held.iter().flatten().copied().collect();
    let slow_longest = slow_cut.iter().max().copied().unwrap_or_default();
    println!("abuse suite figures (info, not pass/fail):");
    println!(
        "  attack duration {:.1} s; server RSS before {} MiB, peak {} MiB (VmHWM), after {} MiB; bound {RSS_BOUND_MIB} MiB",
        attack_time.as_secs_f64(),
        rss_before / 1024,
        peak / 1024,
        rss_after / 1024
    );
    println!(
        "  good client: {} orders, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} ticks received during the attack",
        placed.len(),
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        ticks_during
    );
    println!(
        "  websocket flood: {ws_accepted} accepted, {ws_refused} refused with 503; socket.io flood: {sio_accepted} accepted, {sio_refused} refused with 503"
    );
    println!(
        "  16 MiB frames refused: {oversized_refused}/{}; slowloris: {} of {SLOWLORIS_CONNECTIONS} cut, longest held {:.1} s",
        OVERSIZED_FRAMES * 2,
        slow_cut.len(),
        slow_longest.as_secs_f64()
    );
    println!(
        "  bogus logins: {ws_login_replies} websocket replies; socket.io: {sio_login_refused} connect_error, {sio_login_no_session} sessions refused with 503 (cap held by earlier attempts until their connect timeout); unknown-symbol ticks sent {unknown_sent}"
    );

    // The good client was served in full.
    assert!(failures.is_empty(), "good orders failed: {failures:?}");
    assert!(placed.len() > 100, "only {} orders placed", placed.len());
    assert!(
        missing.is_empty(),
        "{} of {} order events never arrived",
        missing.len(),
        placed.len()
    );
    assert!(
        ticks_during > 0,
        "no tick reached the good client during the attack"
    );

    // Memory stayed bounded.
    assert!(
        peak / 1024 < RSS_BOUND_MIB,
        "peak RSS {} MiB over the {RSS_BOUND_MIB} MiB bound",
        peak / 1024
    );

    // Every attack was refused and each refusal counted.
    let metrics = server.metrics().await.unwrap();
    let counter = |name: &str, label: (&str, &str)| metric(&metrics, name, &[label]);
    let refused = |listener: &str| counter("oa_connections_refused_total", ("listener", listener));
    let ws_counted = refused("websocket") + refused("websocket_http");
    assert_flood_capped("WebSocket", (ws_accepted, ws_refused), ws_counted, &metrics);
    let sio_counted = refused("socketio") + refused("http");
    assert_flood_capped(
        "Socket.IO",
        (sio_accepted, sio_refused),
        sio_counted,
        &metrics,
    );
    assert_eq!(oversized_refused, OVERSIZED_FRAMES * 2);
    assert!(
        counter("oa_ws_read_refused_total", ("reason", "too_large")) >= OVERSIZED_FRAMES as f64,
        "oversized WebSocket frames not counted"
    );
    assert_eq!(
        slow_cut.len(),
        SLOWLORIS_CONNECTIONS,
        "a slowloris head was never cut"
    );
    assert!(slow_longest < Duration::from_secs(10), "{slow_longest:?}");
    assert!(
        counter("oa_http_header_timeouts_total", ("listener", "http"))
            >= SLOWLORIS_CONNECTIONS as f64,
        "header timeouts not counted"
    );
    assert_eq!(ws_login_replies, BOGUS_LOGINS_WS / 30 * 30);
    assert_eq!(
        sio_login_refused + sio_login_no_session,
        BOGUS_LOGINS_SOCKETIO,
        "every bogus Socket.IO login was refused"
    );
    let logins_refused = metric(&metrics, "oa_logins_refused_total", &[]);
    assert!(
        logins_refused >= (ws_login_replies + sio_login_refused) as f64,
        "bogus logins not all counted: {logins_refused}"
    );
    assert!(
        refused("socketio") + refused("http") >= (sio_refused + sio_login_no_session) as f64,
        "Socket.IO session refusals not counted"
    );
    assert!(
        counter("oa_logins_refused_total", ("reason", "rate_limited")) > 0.0,
        "the login rate limit never bit"
    );
    let unknown_dropped = metric(
        &metrics,
        "oa_ticks_dropped_total",
        &[("reason", "unknown_symbol")],
    );
    assert!(
        unknown_dropped > 0.0 && unknown_dropped <= unknown_sent as f64,
        "unknown-symbol ticks not counted: {unknown_dropped} of {unknown_sent}"
    );
}
