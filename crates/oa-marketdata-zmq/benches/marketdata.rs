//! Market-data benchmark: ZeroMQ -> bus -> WebSocket proxy -> 100 WebSocket clients, on
//! loopback, with a raw ZeroMQ PUB -> SUB peer measured side by side as the baseline.
//!
//! Run: `cargo bench -p oa-marketdata-zmq --bench marketdata` (about 30 s).
//! Knobs (environment): `BENCH_TICKS` (burst size, default 500000), `BENCH_CLIENTS` (100),
//! `BENCH_FANOUT` (symbols of 100 per client, default 10: each tick reaches 10 clients),
//! `BENCH_RATE` (paced rate for latency, 10000/s), `BENCH_SECONDS` (paced duration, 5),
//! `BENCH_SDK_MODES` (0; 1: each client subscribes its symbols at LTP, Quote and Depth, as the
//! official SDK does, and every tick is a Depth tick), `BENCH_SDK_RATE` (scenario 3, 1000/s).
//!
//! The notes under the table give the messages queued per tick and per subscribed client:
//! 1 since the proxy sends one message per client per tick (it was 3 with `BENCH_SDK_MODES=1`
//! when each subscribed mode got its own message).
//!
//! Scenarios:
//! 1. burst: publish `BENCH_TICKS` pre-serialised LTP ticks as fast as one PUB socket can;
//!    report ticks/s ingested (decoded, cached and fanned out by the proxy) and deliveries/s
//!    (frames the clients read) while every client reads. Each tick concerns one of 100
//!    symbols; each client subscribes to 10 of them, so every tick fans out to 10 clients.
//! 2. paced: `BENCH_RATE` ticks/s for `BENCH_SECONDS`; tick -> client latency percentiles
//!    (publish call to the client having read and parsed the frame).
//! 3. SDK client: one more client subscribes LTP, Quote and Depth of a symbol no other client
//!    watches (as the official SDK does on one connection); Depth ticks of that symbol are
//!    published at `BENCH_SDK_RATE` (1000/s) for `BENCH_SECONDS`. The row gives the messages
//!    that client read per tick fanned out (published minus those the dispatcher coalesced
//!    when it fell behind): 1 since the proxy sends one message per client per tick, 3 when
//!    each subscribed mode got its own message; and its deliveries/s and latency.
//!
//! Baseline: the same two scenarios with a raw SUB socket and no proxy (receive only).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use oa_events_core::auth::VerifyFuture;
use oa_events_core::{ApiKeyVerifier, AuthenticatedUser, EventPublisher};
use oa_marketdata_zmq::{
    Depth, DepthLevel, MarketDataConfig, Publisher, PublisherOptions, Quote, Tick, TickMode,
};
use tokio_tungstenite::tungstenite::Message;

const SYMBOLS: usize = 100;

/// The symbol of the SDK-client scenario, watched by that client only.
const SDK_SYMBOL: &str = "BENCHSDK";

/// `BENCH_SDK_MODES`: clients subscribe LTP, Quote and Depth; ticks are Depth ticks.
static SDK_MODES: AtomicBool = AtomicBool::new(false);

struct AnyKey;

impl ApiKeyVerifier for AnyKey {
    fn verify<'a>(&'a self, api_key: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            Ok(Some(AuthenticatedUser {
                user_id: api_key.to_string(),
                broker: "bench".to_string(),
            }))
        })
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn symbol(i: usize) -> String {
    format!("BENCH{i:03}")
}

/// Pre-serialised `[topic, payload]` frames; `ltp` carries the sequence number. A Depth tick
/// (one level a side) with `BENCH_SDK_MODES`.
fn frames(sequence: u64) -> (Vec<u8>, Vec<u8>) {
    let symbol = symbol((sequence as usize) % SYMBOLS);
    if SDK_MODES.load(Ordering::Relaxed) {
        return depth_frames(&symbol, sequence);
    }
    let tick = Tick::ltp("NSE", symbol.as_str(), sequence as f64);
    (
        format!("NSE_{symbol}_LTP").into_bytes(),
        tick.to_json_bytes(),
    )
}

/// The frames of a Depth tick (one level a side) of `symbol` whose `ltp` is `sequence`.
fn depth_frames(symbol: &str, sequence: u64) -> (Vec<u8>, Vec<u8>) {
    let level = |price: f64| DepthLevel {
        price,
        quantity: 10.0,
        orders: 1,
    };
    let mut tick = Tick::ltp("NSE", symbol, sequence as f64);
    tick.mode = TickMode::Depth;
    tick.quote = Some(Quote::default());
    tick.depth = Some(Depth {
        buy: vec![level(sequence as f64 - 0.05)],
        sell: vec![level(sequence as f64 + 0.05)],
    });
    (
        format!("NSE_{symbol}_DEPTH").into_bytes(),
        tick.to_json_bytes(),
    )
}

/// Microseconds since `origin`.
fn micros(origin: Instant) -> u64 {
    origin.elapsed().as_micros() as u64
}

/// The sequence number (`"ltp":N`) in a market_data frame, without a full JSON parse.
fn sequence_of(text: &str) -> Option<u64> {
    let start = text.find("\"ltp\":")? + 6;
    let rest = &text[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse::<f64>().ok().map(|v| v as u64)
}

struct Percentiles {
    count: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn percentiles(mut samples: Vec<u64>) -> Percentiles {
    samples.sort_unstable();
    let at = |q: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index] as f64 / 1000.0
    };
    Percentiles {
        count: samples.len(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

/// Publishes `count` ticks at `rate` per second (0 = as fast as possible) from a thread,
/// recording each tick's send time (µs since `origin`) in `sent_at`.
/// A publisher connected to the bus under test (the bench cannot run without one).
fn connected_publisher(endpoint: &str) -> Publisher {
    Publisher::connect_and_wait(
        endpoint,
        PublisherOptions::default(),
        Duration::from_secs(5),
    )
    .expect("benchmark publisher connects")
}

/// Sleeps until tick `sequence` of a stream paced at `rate` per second is due. Sleeps, never
/// spins (it would steal a core from the system under test), and only when the tick is more
/// than 1 ms away: ticks go out in groups of about rate/1000, each timed individually, so
/// pacing itself costs little CPU.
fn wait_until_due(started: Instant, sequence: u64, rate: f64) {
    let due = Duration::from_secs_f64(sequence as f64 / rate);
    let left = due.saturating_sub(started.elapsed());
    if left > Duration::from_millis(1) {
        std::thread::sleep(left);
    }
}

fn spawn_publisher(
    endpoint: String,
    count: u64,
    rate: f64,
    origin: Instant,
    sent_at: Arc<Vec<AtomicU64>>,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let publisher = connected_publisher(&endpoint);
        let prepared: Vec<(Vec<u8>, Vec<u8>)> = (0..SYMBOLS as u64 * 4).map(frames).collect();
        let started = Instant::now();
        for sequence in 0..count {
            if rate > 0.0 {
                wait_until_due(started, sequence, rate);
            }
            let (topic, payload) = if rate > 0.0 {
                frames(sequence)
            } else {
                // Bursts reuse prepared frames (the sequence is then only approximate).
                prepared[(sequence as usize) % prepared.len()].clone()
            };
            if let Some(slot) = sent_at.get(sequence as usize) {
                slot.store(micros(origin), Ordering::Relaxed);
            }
            publisher
                .publish_frames(&[&topic, &payload])
                .expect("publish");
        }
        started.elapsed()
    })
}

struct Row {
    name: String,
    /// Process CPU seconds (all threads: publisher, bus, proxy and clients) in the scenario.
    cpu: f64,
    ingest: Option<f64>,
    deliveries: Option<f64>,
    /// Messages one client read per tick fanned out (the SDK-client row only).
    per_client_tick: Option<f64>,
    latency: Option<Percentiles>,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| {:<44} | {:>12} | {:>12} | {:>11} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>6} |",
        "scenario",
        "ticks/s in",
        "deliveries/s",
        "msgs/client",
        "samples",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "CPU s"
    );
    println!("|{}|", "-".repeat(162));
    for row in rows {
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let (samples, p50, p99, p999, max) = match &row.latency {
            Some(p) => (
                p.count.to_string(),
                format!("{:.0}", p.p50),
                format!("{:.0}", p.p99),
                format!("{:.0}", p.p999),
                format!("{:.0}", p.max),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {:<44} | {:>12} | {:>12} | {:>11} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>6.2} |",
            row.name,
            fmt(row.ingest),
            fmt(row.deliveries),
            row.per_client_tick
                .map_or("-".to_string(), |v| format!("{v:.2}/tick")),
            samples,
            p50,
            p99,
            p999,
            max,
            row.cpu
        );
    }
}

/// Single-thread capacity without sockets: decoding (what the bus thread does per message)
/// and decoding plus the price-cache update (what the dispatcher adds before fan-out).
fn in_process(count: u64) -> (Row, Row) {
    let prepared: Vec<(Vec<u8>, Vec<u8>)> = (0..SYMBOLS as u64 * 4).map(frames).collect();
    let run = |with_cache: bool| {
        let cache = oa_marketdata_zmq::PriceCache::new();
        let cpu = oa_e2e::process_cpu_seconds();
        let started = Instant::now();
        let mut decoded = 0u64;
        for i in 0..count {
            let (topic, payload) = &prepared[(i as usize) % prepared.len()];
            if let Ok(tick) = oa_marketdata_zmq::bus::decode_message(topic, payload, 65536) {
                if with_cache {
                    cache.update(&tick);
                }
                decoded += 1;
            }
        }
        (
            decoded as f64 / started.elapsed().as_secs_f64(),
            oa_e2e::process_cpu_seconds() - cpu,
        )
    };
    let (decode_rate, decode_cpu) = run(false);
    let (cache_rate, cache_cpu) = run(true);
    (
        Row {
            name: "in-process: decode only, 1 thread".to_string(),
            cpu: decode_cpu,
            ingest: Some(decode_rate),
            deliveries: None,
            per_client_tick: None,
            latency: None,
        },
        Row {
            name: "in-process: decode + price cache".to_string(),
            cpu: cache_cpu,
            ingest: Some(cache_rate),
            deliveries: None,
            per_client_tick: None,
            latency: None,
        },
    )
}

/// Raw ZeroMQ SUB without the proxy: the baseline.
fn baseline(count: u64, rate: f64, seconds: f64) -> (Row, Row) {
    let context = zmq::Context::new();
    let sub = context.socket(zmq::SUB).expect("SUB");
    sub.set_rcvhwm(100_000).expect("RCVHWM");
    sub.set_subscribe(b"").expect("SUBSCRIBE");
    sub.set_rcvtimeo(2000).expect("RCVTIMEO");
    sub.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = sub
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8 endpoint");

    // Burst.
    let cpu = oa_e2e::process_cpu_seconds();
    let origin = Instant::now();
    let sent_at = Arc::new(Vec::new());
    let publisher = spawn_publisher(endpoint.clone(), count, 0.0, origin, sent_at);
    let mut received = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while received < count {
        match sub.recv_multipart(0) {
            Ok(parts) => {
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
                // Decode like the bus does, so the baseline is the same work minus the proxy.
                let _ = oa_marketdata_zmq::bus::decode_message(&parts[0], &parts[1], 65536);
                received += 1;
            }
            Err(_) => break,
        }
    }
    // From the first to the last message: ZeroMQ drops what exceeds the HWMs, so the loop
    // usually ends on the receive timeout, which must not count.
    let elapsed = first.map_or(Duration::ZERO, |f| last.duration_since(f));
    let _ = publisher.join();
    let burst = Row {
        name: "baseline: raw ZMQ SUB + decode, burst".to_string(),
        cpu: oa_e2e::process_cpu_seconds() - cpu,
        ingest: Some(received as f64 / elapsed.as_secs_f64().max(1e-9)),
        deliveries: None,
        per_client_tick: None,
        latency: None,
    };

    // Paced latency.
    let cpu = oa_e2e::process_cpu_seconds();
    let paced_count = (rate * seconds) as u64;
    let origin = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..paced_count).map(|_| AtomicU64::new(0)).collect());
    let publisher = spawn_publisher(endpoint, paced_count, rate, origin, Arc::clone(&sent_at));
    let mut samples = Vec::with_capacity(paced_count as usize);
    let mut received = 0u64;
    while received < paced_count {
        match sub.recv_multipart(0) {
            Ok(parts) => {
                let now = micros(origin);
                received += 1;
                if let Ok(tick) =
                    oa_marketdata_zmq::bus::decode_message(&parts[0], &parts[1], 65536)
                    && let Some(slot) = sent_at.get(tick.ltp as usize)
                {
                    samples.push((now.saturating_sub(slot.load(Ordering::Relaxed))) * 1000);
                }
            }
            Err(_) => break,
        }
    }
    let _ = publisher.join();
    let paced = Row {
        name: "baseline: raw ZMQ SUB, paced".to_string(),
        cpu: oa_e2e::process_cpu_seconds() - cpu,
        ingest: Some(rate),
        deliveries: None,
        per_client_tick: None,
        latency: Some(percentiles(samples)),
    };
    (burst, paced)
}

type Samples = Arc<parking_lot_free::Mutex<Vec<u64>>>;

/// A tiny mutex wrapper so the bench does not need parking_lot as a dev-dependency.
mod parking_lot_free {
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }
        pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
            let mut guard = match self.0.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut guard)
        }
    }
}

async fn proxy(
    count: u64,
    rate: f64,
    sdk_rate: f64,
    seconds: f64,
    clients: usize,
    per_client: usize,
) -> (Row, Row, Row, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("symbols.csv");
    let mut text = String::from("exchange,symbol,lot_size,tick_size\n");
    for i in 0..SYMBOLS {
        text.push_str(&format!("NSE,{},1,0.05\n", symbol(i)));
    }
    text.push_str(&format!("NSE,{SDK_SYMBOL},1,0.05\n"));
    std::fs::write(&csv, text).expect("write symbols");
    let md = oa_marketdata_zmq::start(
        MarketDataConfig {
            symbol_master_csv: Some(csv),
            // The clients and the SDK client all connect from 127.0.0.1.
            ws_max_connections_per_ip: clients + 1,
            ..MarketDataConfig::ephemeral()
        },
        Arc::new(AnyKey),
        EventPublisher::builder().build(),
        "bench".to_string(),
    )
    .await
    .expect("market data starts");
    let url = format!("ws://{}", md.ws_addr());

    // Clients: each subscribes to 10 symbols at LTP, then reads and counts.
    let delivered = Arc::new(AtomicU64::new(0));
    let recording = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let paced_count = (rate * seconds) as u64;
    let sent_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..paced_count).map(|_| AtomicU64::new(0)).collect());
    let samples: Samples = Arc::new(parking_lot_free::Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for client in 0..clients {
        // tungstenite zeroes its read buffer (128 KiB by default) on every read: keep it small.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(8 * 1024);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(config), true)
            .await
            .expect("connect");
        ws.send(Message::Text(
            format!(
                r#"{{"action":"authenticate","api_key":"user{}"}}"#,
                client % 3
            )
            .into(),
        ))
        .await
        .expect("auth");
        let symbols: Vec<String> = (0..per_client)
            .map(|k| {
                format!(
                    r#"{{"symbol":"{}","exchange":"NSE"}}"#,
                    symbol((client + k * (SYMBOLS / per_client)) % SYMBOLS)
                )
            })
            .collect();
        let modes: &[u8] = if SDK_MODES.load(Ordering::Relaxed) {
            &[1, 2, 3]
        } else {
            &[1]
        };
        for mode in modes {
            ws.send(Message::Text(
                format!(
                    r#"{{"action":"subscribe","mode":{mode},"symbols":[{}]}}"#,
                    symbols.join(",")
                )
                .into(),
            ))
            .await
            .expect("subscribe");
        }
        // Wait for the authentication reply and one reply per subscribe.
        let mut replies = 0;
        while replies < 1 + modes.len() {
            if let Some(Ok(Message::Text(_))) = ws.next().await {
                replies += 1;
            }
        }
        let delivered = Arc::clone(&delivered);
        let recording = Arc::clone(&recording);
        let sent_at = Arc::clone(&sent_at);
        let samples = Arc::clone(&samples);
        readers.push(tokio::spawn(async move {
            let mut local = Vec::new();
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(text) = frame {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if recording.load(Ordering::Relaxed) {
                        let now = micros(origin);
                        if let Some(slot) =
                            sequence_of(text.as_str()).and_then(|s| sent_at.get(s as usize))
                        {
                            let sent = slot.load(Ordering::Relaxed);
                            if sent > 0 {
                                local.push(now.saturating_sub(sent) * 1000);
                            }
                        }
                    } else if !local.is_empty() {
                        samples.with(|all| all.append(&mut local));
                    }
                }
            }
            samples.with(|all| all.append(&mut local));
        }));
    }

    // Burst.
    let cpu = oa_e2e::process_cpu_seconds();
    let before = md.stats();
    let delivered_before = delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    let publisher = spawn_publisher(
        md.zmq_endpoint().to_string(),
        count,
        0.0,
        origin,
        Arc::new(Vec::new()),
    );
    // Ingested = decoded by the bus and dispatched (cache + fan-out). Stop when it stalls.
    let mut last = (0u64, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let stats = md.stats();
        let dispatched = stats.proxy.ticks_dispatched + stats.coalesced
            - before.proxy.ticks_dispatched
            - before.coalesced;
        if dispatched >= count {
            break;
        }
        if dispatched != last.0 {
            last = (dispatched, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) && publisher.is_finished() {
            break;
        }
    }
    // Up to the last progress seen (polled every 20 ms), not the stall detection after it.
    let ingest_elapsed = last.1.duration_since(started);
    let _ = publisher.join();
    let stats = md.stats();
    let dispatched = stats.proxy.ticks_dispatched + stats.coalesced
        - before.proxy.ticks_dispatched
        - before.coalesced;
    // Let clients drain what is queued, then count deliveries over the whole burst.
    let mut previous = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now == previous {
            break;
        }
        previous = now;
    }
    let delivery_elapsed = started.elapsed().saturating_sub(Duration::from_millis(200));
    let delivered_burst = delivered.load(Ordering::Relaxed) - delivered_before;
    let after = md.stats();
    let queued = after.proxy.fanned_out - before.proxy.fanned_out;
    let fanned_ticks = after.proxy.ticks_dispatched - before.proxy.ticks_dispatched;
    let subscribers_per_tick = (clients * per_client / SYMBOLS).max(1);
    let per_tick = queued as f64 / fanned_ticks.max(1) as f64;
    let burst_notes = format!(
        "messages per tick: {per_tick:.2} queued ({:.2} per subscribed client; SDK modes: {})\nburst: published {count}, bus received {}, ingested {dispatched} (of which coalesced by the dispatcher {}), dropped before dispatch {}, queued to clients {}, conflated in send queues {}, evicted {}, read by clients {delivered_burst}",
        per_tick / subscribers_per_tick as f64,
        SDK_MODES.load(Ordering::Relaxed),
        after.bus.received - before.bus.received,
        after.coalesced - before.coalesced,
        after.bus.dropped_channel_full - before.bus.dropped_channel_full,
        after.proxy.fanned_out - before.proxy.fanned_out,
        after.proxy.conflated - before.proxy.conflated,
        after.proxy.dropped - before.proxy.dropped,
    );
    let burst = Row {
        name: format!("oa proxy: burst, {clients} clients"),
        cpu: oa_e2e::process_cpu_seconds() - cpu,
        ingest: Some(dispatched as f64 / ingest_elapsed.as_secs_f64()),
        deliveries: Some(delivered_burst as f64 / delivery_elapsed.as_secs_f64()),
        per_client_tick: None,
        latency: None,
    };

    // Paced latency.
    let cpu = oa_e2e::process_cpu_seconds();
    recording.store(true, Ordering::Relaxed);
    let delivered_before = delivered.load(Ordering::Relaxed);
    let started = Instant::now();
    let publisher = spawn_publisher(
        md.zmq_endpoint().to_string(),
        paced_count,
        rate,
        origin,
        Arc::clone(&sent_at),
    );
    let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paced_elapsed = started.elapsed();
    recording.store(false, Ordering::Relaxed);
    let delivered_paced = delivered.load(Ordering::Relaxed) - delivered_before;
    let paced_cpu = oa_e2e::process_cpu_seconds() - cpu;
    let before = md.stats();
    let (mut sdk, published, read) = sdk_client(&url, md.zmq_endpoint(), sdk_rate, seconds).await;
    let after = md.stats();
    // Ticks the dispatcher coalesced (a newer tick of the symbol was already waiting) are
    // fanned out to nobody: messages per tick counts the ticks it fanned out.
    let coalesced = after.coalesced - before.coalesced;
    let fanned = published.saturating_sub(coalesced).max(1);
    sdk.per_client_tick = Some(read as f64 / fanned as f64);
    let sdk_notes = format!(
        "1 client LTP+Quote+Depth: {sdk_rate} Depth ticks/s for {seconds} s; published {published}, coalesced by the dispatcher {coalesced}, fanned out {fanned}, read by the client {read}; conflated in send queues {}, evicted {}",
        after.proxy.conflated - before.proxy.conflated,
        after.proxy.dropped - before.proxy.dropped,
    );
    md.shutdown().await;
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    let all = samples.with(std::mem::take);
    let paced = Row {
        name: format!("oa proxy: paced, {clients} clients"),
        cpu: paced_cpu,
        ingest: Some(rate),
        deliveries: Some(delivered_paced as f64 / paced_elapsed.as_secs_f64()),
        per_client_tick: None,
        latency: Some(percentiles(all)),
    };
    (burst, paced, sdk, format!("{burst_notes}\n{sdk_notes}"))
}

/// Scenario 3: one client subscribed to LTP, Quote and Depth of [`SDK_SYMBOL`] (which no
/// other client watches) reads the Depth ticks published at `rate` for `seconds`.
async fn sdk_client(url: &str, endpoint: &str, rate: f64, seconds: f64) -> (Row, u64, u64) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws.send(Message::Text(
        r#"{"action":"authenticate","api_key":"sdk"}"#.into(),
    ))
    .await
    .expect("auth");
    for mode in [1, 2, 3] {
        ws.send(Message::Text(
            format!(
                r#"{{"action":"subscribe","mode":{mode},"symbols":[{{"symbol":"{SDK_SYMBOL}","exchange":"NSE"}}]}}"#
            )
            .into(),
        ))
        .await
        .expect("subscribe");
    }
    let mut replies = 0;
    while replies < 4 {
        if let Some(Ok(Message::Text(_))) = ws.next().await {
            replies += 1;
        }
    }
    let count = (rate * seconds) as u64;
    let origin = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let cpu = oa_e2e::process_cpu_seconds();
    let started = Instant::now();
    let publisher = {
        let endpoint = endpoint.to_string();
        let sent_at = Arc::clone(&sent_at);
        std::thread::spawn(move || {
            let publisher = connected_publisher(&endpoint);
            for sequence in 0..count {
                wait_until_due(started, sequence, rate);
                let (topic, payload) = depth_frames(SDK_SYMBOL, sequence);
                if let Some(slot) = sent_at.get(sequence as usize) {
                    slot.store(micros(origin), Ordering::Relaxed);
                }
                publisher
                    .publish_frames(&[&topic, &payload])
                    .expect("publish");
            }
        })
    };
    let mut read = 0u64;
    let mut samples = Vec::with_capacity(count as usize);
    let deadline = started + Duration::from_secs_f64(seconds) + Duration::from_millis(500);
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), ws.next()).await
    {
        if let Message::Text(text) = frame {
            read += 1;
            let now = micros(origin);
            if let Some(slot) = sequence_of(text.as_str()).and_then(|s| sent_at.get(s as usize)) {
                let sent = slot.load(Ordering::Relaxed);
                if sent > 0 {
                    samples.push(now.saturating_sub(sent) * 1000);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let _ = tokio::task::spawn_blocking(move || publisher.join()).await;
    let row = Row {
        name: "oa proxy: 1 client LTP+Quote+Depth, paced".to_string(),
        cpu: oa_e2e::process_cpu_seconds() - cpu,
        ingest: Some(rate),
        deliveries: Some(read as f64 / elapsed.as_secs_f64()),
        per_client_tick: None,
        latency: Some(percentiles(samples)),
    };
    (row, count, read)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful: run a
    // smoke-sized pass there so the bench stays compiled and working.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let count: u64 = env_or("BENCH_TICKS", if quick { 5_000 } else { 500_000 });
    let clients: usize = env_or("BENCH_CLIENTS", if quick { 10 } else { 100 });
    // Symbols per client (of 100): 10 means every tick fans out to 10 of 100 clients.
    let per_client: usize = env_or::<usize>("BENCH_FANOUT", 10).clamp(1, SYMBOLS);
    let rate: f64 = env_or("BENCH_RATE", 10_000.0);
    let sdk_rate: f64 = env_or("BENCH_SDK_RATE", 1_000.0);
    SDK_MODES.store(env_or::<u8>("BENCH_SDK_MODES", 0) == 1, Ordering::Relaxed);
    let seconds: f64 = env_or("BENCH_SECONDS", if quick { 0.3 } else { 5.0 });
    println!(
        "market-data benchmark: burst of {count} ticks, {clients} WebSocket clients ({per_client} of {SYMBOLS} symbols each, so each tick fans out to {} clients), paced {rate}/s for {seconds}s, loopback",
        clients * per_client / SYMBOLS
    );
    println!("load average before: {}", oa_e2e::load_average());
    let (decode_only, decode_cache) = in_process(count);
    let (baseline_burst, baseline_paced) = baseline(count, rate, seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (burst, paced, sdk, notes) =
        runtime.block_on(proxy(count, rate, sdk_rate, seconds, clients, per_client));
    print_table(&[
        decode_only,
        decode_cache,
        baseline_burst,
        burst,
        baseline_paced,
        paced,
        sdk,
    ]);
    println!();
    println!("{notes}");
    println!("load average after: {}", oa_e2e::load_average());
}
