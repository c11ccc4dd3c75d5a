//! placeorder through HTTP in sandbox (analyzer) mode at a fixed concurrency, side by side
//! with a baseline axum handler that parses the same body and returns the same JSON. oa runs
//! three times: on SQLite with the store's default `OA_STORE_SYNC=full` (every commit flushed
//! to disk) and with `normal` (flushed at checkpoints), and on PostgreSQL (a local server
//! from Debian's package on a free port, with its durable defaults: fsync and
//! `synchronous_commit=on`), each on its own database. The CPU column counts this process
//! only, so it leaves out the PostgreSQL server's own CPU.
//!
//! ```text
//! cargo bench -p oa-api --bench placeorder            # 32 connections, 10 s per target (3)
//! OA_BENCH_CONNECTIONS=64 OA_BENCH_SECS=20 cargo bench -p oa-api --bench placeorder
//! ```
//!
//! The load generator is a minimal keep-alive HTTP/1.1 client in the same process (so it
//! shares the CPU with the server, for both targets alike). Each request waits for its
//! response (closed loop); latency is measured per request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use oa_api::{ApiConfig, StoreSync};
use oa_events_core::EventPublisher;
use oa_marketdata_core::{Depth, DepthLevel, PriceCache, SymbolMaster, Tick};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}

async fn baseline() -> SocketAddr {
    async fn handler(Json(body): Json<Value>) -> Json<Value> {
        let _ = body.get("apikey");
        Json(json!({"status": "success", "orderid": "26112900000001", "mode": "analyze"}))
    }
    serve(Router::new().route("/api/v1/placeorder", post(handler))).await
}

/// The SQLite `DATABASE_URL` of the run with `store_sync`.
fn sqlite_url(dir: &tempfile::TempDir, store_sync: StoreSync) -> String {
    format!(
        "sqlite:///{}",
        dir.path()
            .join(format!("bench-{}.db", store_sync.as_str()))
            .display()
    )
}

async fn oa(database_url: String, store_sync: StoreSync) -> (SocketAddr, String) {
    let config = ApiConfig {
        database_url,
        store_sync,
        api_key_pepper: "bench-pepper-bench-pepper-bench-pepper".to_string(),
        order_rate_limit: "10000000 per second".to_string(),
        smart_order_rate_limit: "10000000 per second".to_string(),
        api_rate_limit: "10000000 per second".to_string(),
        default_analyze_mode: true,
        starting_funds: 1e15,
        ..ApiConfig::default()
    };
    let prices = PriceCache::new();
    let mut tick = Tick::ltp("NSE", "SBIN", 812.5);
    tick.depth = Some(Depth {
        buy: vec![DepthLevel {
            price: 812.4,
            quantity: 100.0,
            orders: 1,
        }],
        sell: vec![DepthLevel {
            price: 812.6,
            quantity: 100.0,
            orders: 1,
        }],
    });
    prices.update(&tick);
    let api = oa_api::build(
        config,
        EventPublisher::builder().build(),
        prices,
        Arc::new(SymbolMaster::bundled()),
    )
    .await
    .unwrap();
    let key = api.ensure_default_user().await.unwrap().unwrap();
    (serve(api.router()).await, key)
}

/// One keep-alive connection sending `request` in a closed loop until `deadline`.
async fn connection(
    address: SocketAddr,
    request: Arc<Vec<u8>>,
    start_at: Instant,
    deadline: Instant,
) -> (Vec<u32>, u64) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        stream.write_all(&request).await.unwrap();
        let mut filled = 0;
        let (status, total) = loop {
            let read = stream.read(&mut buffer[filled..]).await.unwrap();
            assert!(read > 0, "server closed the connection");
            filled += read;
            let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&buffer[..end]).unwrap();
            let status: u16 = head[9..12].parse().unwrap();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            break (status, end + 4 + length);
        };
        while filled < total {
            filled += stream.read(&mut buffer[filled..]).await.unwrap();
        }
        if status != 200 {
            errors += 1;
            if errors == 1 {
                eprintln!(
                    "first error: {}",
                    String::from_utf8_lossy(&buffer[..filled])
                );
            }
        }
        if now >= start_at {
            latencies.push(now.elapsed().as_micros() as u32);
        }
    }
    (latencies, errors)
}

struct Row {
    name: &'static str,
    cpu_us_per_request: f64,
    requests_per_second: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
}

async fn run(
    name: &'static str,
    address: SocketAddr,
    body: &Value,
    connections: u64,
    seconds: u64,
) -> Row {
    let body = serde_json::to_vec(body).unwrap();
    let mut request = format!(
        "POST /api/v1/placeorder HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let request = Arc::new(request);
    let warmup = Duration::from_secs(1);
    let start_at = Instant::now() + warmup;
    let deadline = start_at + Duration::from_secs(seconds);
    let cpu_before = oa_e2e::process_cpu_seconds();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(connection(
                address,
                Arc::clone(&request),
                start_at,
                deadline,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut samples, failed) = task.await.unwrap();
        latencies.append(&mut samples);
        errors += failed;
    }
    let cpu_ms = (oa_e2e::process_cpu_seconds() - cpu_before) * 1000.0;
    let measured = latencies.len() as f64 * (seconds as f64 + 1.0) / seconds as f64;
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        f64::from(latencies.get(index).copied().unwrap_or(0)) / 1000.0
    };
    Row {
        name,
        cpu_us_per_request: cpu_ms * 1000.0 / measured.max(1.0),
        requests_per_second: latencies.len() as f64 / seconds as f64,
        p50: percentile(0.50),
        p99: percentile(0.99),
        p999: percentile(0.999),
        errors,
    }
}

#[tokio::main]
async fn main() {
    let connections = env_number("OA_BENCH_CONNECTIONS", 32);
    // Four targets of (1 s warm-up + seconds) each: at most 104 s in all.
    let seconds = env_number("OA_BENCH_SECS", 10).clamp(1, 25);
    let dir = tempfile::tempdir().unwrap();
    let (full_address, full_key) = oa(sqlite_url(&dir, StoreSync::Full), StoreSync::Full).await;
    let (normal_address, normal_key) =
        oa(sqlite_url(&dir, StoreSync::Normal), StoreSync::Normal).await;
    let postgres =
        match oa_e2e::postgres::Postgres::start_with(oa_e2e::postgres::Durability::Durable) {
            Ok(server) => {
                let target = oa(server.url(), StoreSync::Full).await;
                Some((server, target))
            }
            Err(error) => {
                eprintln!("the PostgreSQL row is left out: {error:#}");
                None
            }
        };
    let baseline_address = baseline().await;
    let body = |key: &str| {
        json!({"apikey": key, "strategy": "bench", "exchange": "NSE", "symbol": "SBIN",
                      "action": "BUY", "quantity": "1", "pricetype": "MARKET", "product": "MIS",
                      "price": "0", "trigger_price": "0", "disclosed_quantity": "0"})
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "placeorder over HTTP, {connections} keep-alive connections, {seconds} s per target (+1 s warm-up), {cores} cores, client in-process"
    );
    let mut rows = vec![
        run(
            "baseline axum handler (same JSON in/out)",
            baseline_address,
            &body(&full_key),
            connections,
            seconds,
        )
        .await,
        run(
            "oa-api placeorder, SQLite, OA_STORE_SYNC=full (default)",
            full_address,
            &body(&full_key),
            connections,
            seconds,
        )
        .await,
        run(
            "oa-api placeorder, SQLite, OA_STORE_SYNC=normal",
            normal_address,
            &body(&normal_key),
            connections,
            seconds,
        )
        .await,
    ];
    if let Some((_server, (address, key))) = &postgres {
        rows.push(
            run(
                "oa-api placeorder, PostgreSQL (local, synchronous_commit=on)",
                *address,
                &body(key),
                connections,
                seconds,
            )
            .await,
        );
    }
    println!();
    println!(
        "| target | req/s | p50 ms | p99 ms | p99.9 ms | CPU us/req (server+client) | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.0} | {} |",
            row.name,
            row.requests_per_second,
            row.p50,
            row.p99,
            row.p999,
            row.cpu_us_per_request,
            row.errors
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average during the run: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
