//! The order service without HTTP: placeorder through `OrderService` (validation already
//! done) into the engine worker and SQLite, at a fixed concurrency. Shows how much of the
//! HTTP benchmark's cost is the order path itself.
//!
//! ```text
//! cargo bench -p oa-api --bench order_service      # OA_BENCH_SECS (5), OA_BENCH_CONNECTIONS (32)
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oa_api::Fields;
use oa_api::requests::{PLACE_ORDER_FIELDS, PlaceOrder};
use oa_api::{ApiConfig, PriceSource, StaticPrices, StaticSymbols};
use oa_events_core::EventPublisher;
use serde_json::json;

fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).copied().unwrap_or(0.0) + fields.get(12).copied().unwrap_or(0.0)) * 10.0
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("OA_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .clamp(1, 50);
    let tasks: u64 = std::env::var("OA_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let dir = tempfile::tempdir().unwrap();
    let config = ApiConfig {
        database_url: format!("sqlite:///{}", dir.path().join("bench.db").display()),
        api_key_pepper: "bench-pepper-bench-pepper-bench-pepper".to_string(),
        default_analyze_mode: true,
        starting_funds: 1e15,
        ..ApiConfig::default()
    };
    let prices = StaticPrices::new();
    prices.set("NSE", "SBIN", 812.5, Some(812.4), Some(812.6));
    let prices: Arc<dyn PriceSource> = Arc::new(prices);
    let api = oa_api::build_with_sources(
        config,
        EventPublisher::builder().build(),
        prices,
        Arc::new(StaticSymbols::new().with("NSE", "SBIN", 1.0)),
    )
    .await
    .unwrap();
    let body = json!({"strategy": "bench", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
                      "quantity": "1", "pricetype": "MARKET", "product": "MIS"});
    let serde_json::Value::Object(map) = body else {
        unreachable!()
    };
    let fields = Fields::new(map, PLACE_ORDER_FIELDS).unwrap();
    let request = PlaceOrder::read(&fields).unwrap();
    let log = fields.without_apikey();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let before = cpu_ms();
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let service = Arc::clone(api.service());
            let request = request.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    service
                        .place_order("admin", request.clone(), log.clone())
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_ms() - before;
    println!(
        "| order service placeorder (no HTTP) | {:.0} orders/s | {:.1} CPU us/order | {} concurrent |",
        total as f64 / elapsed,
        cpu * 1000.0 / total as f64,
        tasks
    );
}
