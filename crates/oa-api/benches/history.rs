//! Candle history: `history` over HTTP for one symbol with a year of 1-minute bars in the
//! store, and the tick path (`PriceCache::update`) with bar recording on and off.
//!
//! ```text
//! cargo bench -p oa-api --bench history   # OA_BENCH_DATABASE_URL (a temporary SQLite file)
//! ```
//!
//! Prints a table: per query, the bars read, the candles returned and p50/p99 latency; per
//! recording setting, p50/p99/p99.9 of one tick's cache update.
//!
//! The `history` client runs in a process of its own (this benchmark started again with
//! `OA_BENCH_HISTORY_CLIENT` set), so that reading a 9 MB body neither shares the server's
//! runtime threads nor its heap: in one process the client's work showed up in the server's
//! timings (about 60% of the samples of a profile were the client's).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_api::{ApiConfig, HistoryConfig};
use oa_events_core::EventPublisher;
use oa_marketdata_core::backfill::{session_minutes, simulated_minute_bars};
use oa_marketdata_core::candles::InstrumentBar;
use oa_marketdata_core::{PriceCache, Quote, SymbolMaster, Tick};
use serde_json::json;

#[path = "../tests/common/serve.rs"]
mod serve;
use serve::serve;

const PEPPER: &str = "bench-pepper-bench-pepper-bench-pepper";

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn api(database_url: String, recording: bool, prices: PriceCache) -> oa_api::Api {
    let config = ApiConfig {
        database_url,
        api_key_pepper: PEPPER.to_string(),
        api_rate_limit: "100000 per second".to_string(),
        history: HistoryConfig {
            recording,
            retention_days: 0,
            backfill_days: 0,
        },
        ..ApiConfig::default()
    };
    oa_api::build(
        config,
        EventPublisher::builder().build(),
        prices,
        Arc::new(SymbolMaster::bundled()),
    )
    .await
    .unwrap()
}

/// A year of bars for NSE:SBIN: 250 sessions of 375 minutes, or every minute of 365 days.
fn year_of_bars(every_minute: bool) -> Vec<InstrumentBar> {
    let master = SymbolMaster::bundled();
    let sbin = master.lookup("NSE", "SBIN").unwrap();
    let now = chrono::Utc::now().timestamp();
    let minutes: Vec<i64> = if every_minute {
        let start = now / 60 * 60 - 365 * 86_400;
        (0..365 * 1440).map(|minute| start + minute * 60).collect()
    } else {
        session_minutes(250, now)
    };
    simulated_minute_bars(sbin, 812.5, &minutes, 7)
}

/// The rounds of one query; the first three warm up and are not timed.
const ROUNDS: usize = 23;
const WARM_UP_ROUNDS: usize = 3;

/// The environment variable that makes this benchmark the `history` client: its value is
/// the JSON request `{"url", "body"}`.
const CLIENT_ENV: &str = "OA_BENCH_HISTORY_CLIENT";

/// What the client process reports on its last line of output.
#[derive(serde::Serialize, serde::Deserialize)]
struct ClientReport {
    /// The candles in the body, or a refused range's status and reason.
    candles: String,
    /// Milliseconds from sending the request to the body's last byte, one per timed round.
    samples_ms: Vec<f64>,
}

/// The `history` request for NSE:SBIN at `interval` over the last `days` days.
fn history_request(key: &str, interval: &str, days: i64) -> serde_json::Value {
    let today = chrono::Utc::now().date_naive();
    json!({"apikey": key, "symbol": "SBIN", "exchange": "NSE", "interval": interval,
           "start_date": (today - chrono::Duration::days(days)).to_string(),
           "end_date": today.to_string()})
}

/// p50 and p99 of `history` for `interval` over the last `days` days, timed by a client in
/// another process.
fn history_latency(url: &str, key: &str, interval: &str, days: i64) -> (String, f64, f64) {
    let body = history_request(key, interval, days);
    let request = json!({"url": format!("{url}/api/v1/history"), "body": body});
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CLIENT_ENV, request.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "the history client failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let report: ClientReport = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let mut samples = report.samples_ms;
    samples.sort_by(f64::total_cmp);
    (
        report.candles,
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
    )
}

/// The client process: sends the request [`ROUNDS`] times on one connection and prints a
/// [`ClientReport`].
async fn run_history_client(request: &str) {
    let request: serde_json::Value = serde_json::from_str(request).unwrap();
    let url = request["url"].as_str().unwrap();
    let client = reqwest::Client::new();
    let mut samples_ms = Vec::new();
    let mut candles = String::new();
    let mut first_body = None;
    for round in 0..ROUNDS {
        let started = Instant::now();
        let response = client
            .post(url)
            .json(&request["body"])
            .send()
            .await
            .unwrap();
        let bytes = response.bytes().await.unwrap();
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        // Parsing 9 MB into a `Value` takes longer than the request: the body is parsed
        // once, outside the timing; later rounds must return the same bytes.
        match &first_body {
            None => {
                candles = candle_count(&bytes);
                first_body = Some(bytes);
            }
            Some(first) => assert!(first == &bytes, "the same query changed its answer"),
        }
        if round >= WARM_UP_ROUNDS {
            samples_ms.push(elapsed);
        }
    }
    let report = ClientReport {
        candles,
        samples_ms,
    };
    println!("{}", serde_json::to_string(&report).unwrap());
}

/// The candles in a `history` body, or a refused range's status and reason.
fn candle_count(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    match value["data"].as_array() {
        Some(data) => data.len().to_string(),
        None => format!(
            "400: {}",
            value["message"]
                .as_str()
                .unwrap_or_default()
                .split(',')
                .next()
                .unwrap_or_default()
        ),
    }
}

/// Latency of `PriceCache::update` for ticks of 40 instruments at about `rate` per second.
fn tick_path(prices: &PriceCache, seconds: f64, rate: f64) -> Vec<f64> {
    let symbols: Vec<String> = (0..40).map(|index| format!("SYM{index}")).collect();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut sent = 0u64;
    let mut price = 100.0;
    while started.elapsed().as_secs_f64() < seconds {
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let symbol = &symbols[(sent % 40) as usize];
            price += if sent.is_multiple_of(3) { 0.05 } else { -0.04 };
            let mut tick = Tick::ltp("NSE", symbol.as_str(), price);
            tick.quote = Some(Quote {
                volume: sent as f64,
                ..Quote::default()
            });
            let begin = Instant::now();
            prices.update(&tick);
            samples.push(begin.elapsed().as_secs_f64() * 1e6);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    samples.sort_by(f64::total_cmp);
    samples
}

#[tokio::main]
async fn main() {
    if let Ok(request) = std::env::var(CLIENT_ENV) {
        run_history_client(&request).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "| query (one symbol, SQLite) | 1-minute bars stored | candles returned | p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, every_minute) in [("a year of sessions", false), ("365 x 24 h", true)] {
        let file = dir.path().join(format!("history-{every_minute}.db"));
        let url = std::env::var("OA_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| format!("sqlite:///{}", file.display()));
        let api = api(url, false, PriceCache::new()).await;
        let key = api.ensure_default_user().await.unwrap().unwrap();
        let bars = year_of_bars(every_minute);
        let stored = bars.len();
        for chunk in bars.chunks(50_000) {
            api.backfill_bars(chunk.to_vec()).await.unwrap();
        }
        let url = serve(api.router()).await;
        for (interval, days) in [("D", 366), ("1h", 366), ("1m", 366), ("5m", 30), ("1m", 5)] {
            let (candles, p50, p99) = tokio::task::spawn_blocking({
                let (url, key) = (url.clone(), key.clone());
                move || history_latency(&url, &key, interval, days)
            })
            .await
            .unwrap();
            println!(
                "| {label}: {interval} over {days} days | {stored} | {candles} | {p50:.1} | {p99:.1} |"
            );
        }
        // The peer: the same year-of-1m body served from memory by a bare axum route, the
        // floor that moving it through hyper and the socket sets on any server.
        let body = reqwest::Client::new()
            .post(format!("{url}/api/v1/history"))
            .json(&history_request(&key, "1m", 366))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let floor_url = serve(axum::Router::new().route(
            "/api/v1/history",
            axum::routing::post(move || {
                let body = body.clone();
                async move { body }
            }),
        ))
        .await;
        let (candles, p50, p99) =
            tokio::task::spawn_blocking(move || history_latency(&floor_url, &key, "1m", 366))
                .await
                .unwrap();
        println!(
            "| {label}: the 1m over 366 days body from memory (peer: bare axum) | - | {candles} | {p50:.1} | {p99:.1} |"
        );
    }
    println!();
    println!(
        "| tick path (PriceCache::update, 2,000 ticks/s, 40 symbols) | ticks | p50 us | p99 us | p99.9 us |"
    );
    println!("|---|---:|---:|---:|---:|");
    for recording in [false, true] {
        let file = dir.path().join(format!("ticks-{recording}.db"));
        let prices = PriceCache::new();
        let api = api(
            format!("sqlite:///{}", file.display()),
            recording,
            prices.clone(),
        )
        .await;
        let samples = tokio::task::spawn_blocking({
            let prices = prices.clone();
            move || tick_path(&prices, 10.0, 2_000.0)
        })
        .await
        .unwrap();
        println!(
            "| recording {} | {} | {:.2} | {:.2} | {:.2} |",
            if recording { "on" } else { "off" },
            samples.len(),
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            percentile(&samples, 0.999)
        );
        api.stop_recording_bars().await.unwrap();
    }
}
