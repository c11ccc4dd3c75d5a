//! Publish -> event received, over loopback websockets, with 1 and with 100 clients of one
//! user, side by side: oa (socketioxide sink behind EventPublisher) and the python-socketio
//! server OpenAlgo's stack uses (tests/python/socketio_bench_server.py, aiohttp), driven by the
//! same client harness (rust_socketio) and the same trigger (HTTP POST /publish, as an order
//! placed over REST would).
//!
//! `cargo bench -p oa-events-socketio --bench delivery` (about a minute). Needs the Python venv
//! (`cargo xtask setup`); without it only oa is measured. OA_BENCH_EVENTS sets the paced sample
//! size (default 400).

#[path = "../tests/common/mod.rs"]
#[allow(dead_code, clippy::all)]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_e2e::socketio::connect_listeners;
use oa_events_core::catalog::OrderNotification;
use oa_events_core::{Event, EventPublisher, SinkOptions};
use oa_events_socketio::{SocketIoConfig, SocketIoSink};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Nanoseconds since the harness epoch: the trigger puts it in the event's message.
fn nanos(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// The server under test: oa in its own runtime, or the Python process.
enum Target {
    Oa {
        url: String,
        _runtime: tokio::runtime::Runtime,
    },
    Python {
        url: String,
        child: Child,
    },
}

impl Target {
    fn url(&self) -> &str {
        match self {
            Target::Oa { url, .. } | Target::Python { url, .. } => url,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Oa { .. } => "oa (socketioxide)",
            Target::Python { .. } => "python-socketio (aiohttp)",
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Python { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// oa's server: the Socket.IO layer and a POST /publish route that publishes through a real
/// EventPublisher, served with TCP_NODELAY on its own 2-thread runtime.
fn start_oa() -> Target {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = runtime.block_on(async {
        let (layer, sink) = SocketIoSink::new(
            SocketIoConfig::default(),
            Arc::new(common::MapVerifier::bench()),
        )
        .expect("layer");
        let publisher = EventPublisher::builder()
            .sink(sink, SinkOptions::default())
            .build();
        let app = axum::Router::new()
            .route(
                "/publish",
                axum::routing::post(
                    |axum::extract::State(publisher): axum::extract::State<EventPublisher>,
                     axum::Json(body): axum::Json<Value>| async move {
                        let data = &body["data"];
                        publisher.publish(Event::for_user(
                            body["user"].as_str().unwrap_or_default(),
                            OrderNotification::info(
                                data["symbol"].as_str().unwrap_or_default(),
                                data["message"].as_str().unwrap_or_default(),
                            ),
                        ));
                        axum::Json(json!({"status": "success"}))
                    },
                ),
            )
            .with_state(publisher)
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    });
    Target::Oa {
        url,
        _runtime: runtime,
    }
}

fn start_python() -> Option<Target> {
    let python = match oa_e2e::python() {
        Ok(python) => python,
        Err(error) => {
            eprintln!("skipping python-socketio baseline: {error:#}");
            return None;
        }
    };
    let script = oa_e2e::workspace_root().join("tests/python/socketio_bench_server.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok()?;
    let port = line.trim().strip_prefix("READY ")?.to_string();
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = stdin.flush();
    }
    Some(Target::Python {
        url: format!("http://127.0.0.1:{port}"),
        child,
    })
}

/// Connects `count` websocket clients of user "bench"; every received event's latency goes to
/// the channel.
async fn connect_clients(
    url: &str,
    count: usize,
    epoch: Instant,
) -> (
    Vec<rust_socketio::asynchronous::Client>,
    mpsc::UnboundedReceiver<u64>,
) {
    let latency = move |data: &Value, received: Instant| {
        let sent = data["message"].as_str()?.parse::<u64>().ok()?;
        let received = received.duration_since(epoch).as_nanos() as u64;
        Some(received.saturating_sub(sent))
    };
    connect_listeners(url, "key-bench", "order_notification", count, latency)
        .await
        .expect("clients connect")
}

async fn trigger(http: &reqwest::Client, url: &str, epoch: Instant) {
    let body = json!({
        "user": "bench",
        "event": "order_notification",
        "data": {"symbol": "SBIN", "status": "info", "message": nanos(epoch).to_string()},
    });
    http.post(format!("{url}/publish"))
        .json(&body)
        .send()
        .await
        .expect("publish");
}

struct Row {
    server: &'static str,
    clients: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    deliveries_per_s: f64,
}

async fn measure(target: &Target, clients: usize, paced: usize, epoch: Instant) -> Row {
    let url = target.url().to_string();
    let (sockets, mut rx) = connect_clients(&url, clients, epoch).await;
    // The connect handler attaches the socket just after the client sees the connect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let http = reqwest::Client::new();
    // Warm-up.
    for _ in 0..20 {
        trigger(&http, &url, epoch).await;
    }
    drain(&mut rx, 20 * clients, Duration::from_secs(10)).await;

    // Latency: paced publishes (one every 2 ms), every delivery measured.
    let mut latencies = Vec::with_capacity(paced * clients);
    let mut ticker = tokio::time::interval(Duration::from_millis(2));
    for _ in 0..paced {
        ticker.tick().await;
        trigger(&http, &url, epoch).await;
        while let Ok(latency) = rx.try_recv() {
            latencies.push(latency);
        }
    }
    latencies.extend(
        drain(
            &mut rx,
            paced * clients - latencies.len(),
            Duration::from_secs(20),
        )
        .await,
    );

    // Throughput: a burst from 8 concurrent publishers, until every client has every event.
    let burst = if clients == 1 { 2000 } else { 200 };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..burst / 8 {
                trigger(&http, &url, epoch).await;
            }
        }));
    }
    let received = drain(&mut rx, burst / 8 * 8 * clients, Duration::from_secs(30))
        .await
        .len();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for socket in sockets {
        let _ = socket.disconnect().await;
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |n| *n as f64 / 1e6)
    };
    Row {
        server: target.name(),
        clients,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
        deliveries_per_s: received as f64 / elapsed,
    }
}

async fn drain(rx: &mut mpsc::UnboundedReceiver<u64>, expected: usize, wait: Duration) -> Vec<u64> {
    let mut out = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(latency)) => out.push(latency),
            _ => {
                eprintln!("  received {} of {expected} before the deadline", out.len());
                break;
            }
        }
    }
    out
}

fn main() {
    let paced: usize = std::env::var("OA_BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(400);
    let epoch = Instant::now();
    let mut targets = vec![start_oa()];
    targets.extend(start_python());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for clients in [1, 100] {
        for target in &targets {
            eprintln!("measuring {} with {clients} client(s)...", target.name());
            rows.push(runtime.block_on(measure(target, clients, paced, epoch)));
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "publish (HTTP POST) -> event received, websocket, loopback, {paced} paced events (1 per 2 ms) + burst"
    );
    println!(
        "{:<28} {:>8} {:>9} {:>9} {:>9} {:>16}",
        "server", "clients", "p50 ms", "p99 ms", "max ms", "deliveries/s"
    );
    for row in rows {
        println!(
            "{:<28} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>16.0}",
            row.server, row.clients, row.p50_ms, row.p99_ms, row.max_ms, row.deliveries_per_s
        );
    }
    drop(targets);
}
