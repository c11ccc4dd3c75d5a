//! The cost of the Kafka hop: Socket.IO deliveries of orders placed over REST, to 100
//! clients of one user, side by side from one `all` process (SOCKETIO mode) and from one
//! edge fed by Kafka (`OA_ROLE=edge` beside a `core`, PostgreSQL, tansu), with the edge's CPU
//! time per delivery.
//!
//! `cargo bench -p oa-e2e --bench edge_delivery` (a minute or two: real oa-server processes,
//! a throw-away PostgreSQL server, tansu). `OA_BENCH_ORDERS` sets the burst (default 200
//! orders, placed by 8 concurrent REST clients), `OA_BENCH_CLIENTS` the clients (default 100);
//! each order's `order_event` goes to every client. Latency is from the REST request's start
//! to a client's receipt; the table also gives the REST answer's p50 and the time from the
//! answer to the receipt, and a last line splits the Kafka hop with the core's
//! `oa_kafka_delivery_seconds` (event created -> broker acknowledged) and the edge's
//! `oa_edge_delivery_seconds` (event created -> handed to the edge's sockets). `KAFKA_*`
//! variables of the bench's environment go to the core and the edge, to compare settings.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use oa_e2e::TestServer;
use oa_e2e::postgres::Postgres;
use oa_e2e::socketio::connect_listeners;
use oa_e2e::tansu::{Storage, Tansu};
use serde_json::json;
use tokio::sync::mpsc;

/// Socket.IO clients of the user (`OA_BENCH_CLIENTS`, default 100).
fn client_count() -> usize {
    std::env::var("OA_BENCH_CLIENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100)
        .max(1)
}
const TOPIC: &str = "bench_edge_order_events";
const LIMITS: [(&str, &str); 4] = [
    ("OA_LOGIN_RATE_LIMIT", "100000 per second"),
    ("ORDER_RATE_LIMIT", "100000 per second"),
    ("API_RATE_LIMIT", "100000 per second"),
    ("OA_FEED_TICKS_PER_SECOND", "20"),
];

struct Row {
    setup: &'static str,
    deliveries_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    rest_p50_ms: f64,
    after_answer_p50_ms: f64,
    cpu_us_per_delivery: Option<f64>,
}

/// User + system CPU seconds of a process so far (Linux `/proc/<pid>/stat`, 100 ticks/s).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Connects the clients; every `order_event` received goes to the channel with its time.
async fn connect(
    url: &str,
    key: &str,
) -> anyhow::Result<(
    Vec<rust_socketio::asynchronous::Client>,
    mpsc::UnboundedReceiver<(String, Instant)>,
)> {
    let order_id = |data: &serde_json::Value, received: Instant| {
        Some((data["orderid"].as_str()?.to_string(), received))
    };
    connect_listeners(url, key, "order_event", client_count(), order_id).await
}

async fn measure(
    setup: &'static str,
    rest: &TestServer,
    socketio: &TestServer,
    orders: usize,
) -> anyhow::Result<Row> {
    let key = rest.admin_key.clone();
    rest.wait_for_price(&key, "NSE", "SBIN").await?;
    let (clients, mut deliveries) = connect(&socketio.http_url(), &key).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Warm-up: every client gets one order.
    rest.place_market_order(&key, "bench").await?;
    for _ in 0..client_count() {
        tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
            .await
            .context("warm-up delivery")?;
    }
    let cpu_before = socketio.pid().and_then(cpu_seconds);
    let started = Instant::now();
    let rest = Arc::new(rest.http_url());
    let mut placers = Vec::new();
    for _ in 0..8 {
        let (url, key) = (Arc::clone(&rest), key.clone());
        placers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut sent = Vec::new();
            for _ in 0..orders / 8 {
                let at = Instant::now();
                let body: serde_json::Value = http
                    .post(format!("{url}/api/v1/placeorder"))
                    .json(
                        &json!({"apikey": key, "strategy": "bench", "exchange": "NSE",
                                  "symbol": "SBIN", "action": "BUY", "quantity": "1",
                                  "product": "MIS", "pricetype": "MARKET"}),
                    )
                    .send()
                    .await?
                    .json()
                    .await?;
                let answered = at.elapsed();
                let orderid = body["orderid"].as_str().context("no orderid")?.to_string();
                sent.push((orderid, (at, answered)));
            }
            anyhow::Ok(sent)
        }));
    }
    let expected = orders / 8 * 8 * client_count();
    let mut received = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while received.len() < expected {
        match tokio::time::timeout_at(deadline, deliveries.recv()).await {
            Ok(Some(delivery)) => received.push(delivery),
            _ => break,
        }
    }
    let last = received.iter().map(|(_, at)| *at).max().unwrap_or(started);
    let cpu_after = socketio.pid().and_then(cpu_seconds);
    let mut sent: HashMap<String, (Instant, Duration)> = HashMap::new();
    for placer in placers {
        sent.extend(placer.await??);
    }
    let mut latencies: Vec<f64> = received
        .iter()
        .filter_map(|(orderid, at)| {
            let (placed, _) = sent.get(orderid)?;
            Some(at.duration_since(*placed).as_secs_f64() * 1e3)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    // From the REST answer to a client's receipt (negative: the event came first).
    let mut after_answer: Vec<f64> = received
        .iter()
        .filter_map(|(orderid, at)| {
            let (placed, answered) = sent.get(orderid)?;
            let answer = *placed + *answered;
            Some(if *at >= answer {
                at.duration_since(answer).as_secs_f64() * 1e3
            } else {
                -(answer.duration_since(*at).as_secs_f64() * 1e3)
            })
        })
        .collect();
    after_answer.sort_by(f64::total_cmp);
    let mut answers: Vec<f64> = sent
        .values()
        .map(|(_, answered)| answered.as_secs_f64() * 1e3)
        .collect();
    answers.sort_by(f64::total_cmp);
    let quantile = |values: &[f64], q: f64| {
        values
            .get(((values.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let pick = |q: f64| quantile(&latencies, q);
    for client in clients {
        let _ = client.disconnect().await;
    }
    if received.len() < expected {
        eprintln!(
            "{setup}: only {} of {expected} deliveries within 60 s",
            received.len()
        );
    }
    let cpu_us_per_delivery = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if !received.is_empty() => {
            Some((after - before) * 1e6 / received.len() as f64)
        }
        _ => None,
    };
    Ok(Row {
        setup,
        deliveries_per_s: received.len() as f64 / last.duration_since(started).as_secs_f64(),
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        rest_p50_ms: quantile(&answers, 0.5),
        after_answer_p50_ms: quantile(&after_answer, 0.5),
        cpu_us_per_delivery,
    })
}

/// The quantiles of the Prometheus summary `name` on `server`'s `/metrics`, in ms
/// (`p50 12.3 / p99 45.6 ms`); `-` when the server has none.
async fn summary_ms(server: &TestServer, name: &str) -> String {
    let Ok(response) = reqwest::get(format!("{}/metrics", server.http_url())).await else {
        return "-".to_string();
    };
    let text = response.text().await.unwrap_or_default();
    let quantile = |q: &str| {
        let prefix = format!("{name}{{quantile=\"{q}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map_or("-".to_string(), |seconds| format!("{:.1}", seconds * 1e3))
    };
    format!("p50 {} / p99 {} ms", quantile("0.5"), quantile("0.99"))
}

fn owned<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

async fn run() -> anyhow::Result<()> {
    let orders: usize = std::env::var("OA_BENCH_ORDERS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200)
        .max(8);
    let mut rows = Vec::new();

    let mut env: Vec<(&'static str, String)> = LIMITS
        .iter()
        .map(|(name, value)| (*name, value.to_string()))
        .collect();
    env.push(("ORDER_EVENT_MODE", "SOCKETIO".to_string()));
    let all = TestServer::start(&owned(&env))?;
    rows.push(measure("all (one process, SOCKETIO)", &all, &all, orders).await?);
    drop(all);

    // KAFKA_* variables of the bench's own environment go to the core and the edge (to
    // compare settings such as KAFKA_PRODUCER_LINGER_MS or KAFKA_EDGE_FETCH_MAX_WAIT_MS).
    let kafka_overrides: Vec<(&'static str, String)> = std::env::vars()
        .filter(|(name, _)| name.starts_with("KAFKA_"))
        .map(|(name, value)| (&*Box::leak(name.into_boxed_str()), value))
        .collect();
    for (name, value) in &kafka_overrides {
        println!("core and edge: {name}={value}");
    }
    let pg = Postgres::start()?;
    let broker = Tansu::start(Storage::Memory)?;
    let cluster = |role: &str| -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> = LIMITS
            .iter()
            .map(|(name, value)| (*name, value.to_string()))
            .collect();
        env.extend([
            ("OA_ROLE", role.to_string()),
            ("DATABASE_URL", pg.url()),
            ("ORDER_EVENT_MODE", "KAFKA".to_string()),
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("KAFKA_ORDER_EVENTS_TOPIC", TOPIC.to_string()),
            ("KAFKA_CREATE_TOPICS", "true".to_string()),
        ]);
        env.extend(kafka_overrides.iter().cloned());
        env
    };
    let core = TestServer::start(&owned(&cluster("core")))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while core
        .health()
        .await
        .ok()
        .and_then(|h| h["role"].as_str().map(str::to_string))
        != Some("leader".to_string())
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the core did not lead within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut edge_env = cluster("edge");
    edge_env.push(("OA_FEED", "none".to_string()));
    let edge = TestServer::start_sharing(&owned(&edge_env), &core.admin_key)?;
    rows.push(measure("edge fed by Kafka (core + tansu)", &core, &edge, orders).await?);
    // Where the Kafka hop's time goes, from each event's creation on the core.
    let acknowledged = summary_ms(&core, "oa_kafka_delivery_seconds").await;
    let read = summary_ms(&edge, "oa_edge_delivery_seconds").await;

    println!();
    println!(
        "Socket.IO order_event deliveries, {orders} orders placed by 8 REST clients, {} clients of one user:",
        client_count()
    );
    println!(
        "| setup | deliveries/s | p50 ms | p99 ms | REST answer p50 ms | answer to receipt p50 ms | CPU of the Socket.IO process per delivery |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            row.setup,
            row.deliveries_per_s,
            row.p50_ms,
            row.p99_ms,
            row.rest_p50_ms,
            row.after_answer_p50_ms,
            row.cpu_us_per_delivery
                .map_or("-".to_string(), |us| format!("{us:.1} µs"))
        );
    }
    println!();
    println!(
        "Kafka hop, from the event's creation on the core: acknowledged by the broker (core oa_kafka_delivery_seconds) {acknowledged}; read by the edge (edge oa_edge_delivery_seconds) {read}"
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
