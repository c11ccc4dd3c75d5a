//! examples/ema_crossover.py (official SDK only: `history` and `placesmartorder`) runs
//! unmodified against the real `oa-server` in analyzer mode with the simulated feed and its
//! backfilled history, and trades: its orders are in the sandbox order book and its
//! positions in the position book.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::process::Command;

use oa_e2e::{TestServer, python, workspace_root};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_ema_crossover_example_trades_in_analyzer_mode() {
    let server = TestServer::start(&[
        ("OA_DEFAULT_ANALYZE_MODE", "true"),
        ("OA_FEED_TICKS_PER_SECOND", "200"),
        ("OA_HISTORY_BACKFILL_DAYS", "2"),
    ])
    .unwrap();
    server
        .wait_for_price(&server.admin_key, "NSE", "SBIN")
        .await
        .unwrap();
    let script = workspace_root().join("examples/ema_crossover.py");
    let output = tokio::task::spawn_blocking({
        let host = server.http_url();
        let key = server.admin_key.clone();
        move || {
            Command::new(python().unwrap())
                .arg(script)
                .env("OPENALGO_HOST", host)
                .env("OPENALGO_API_KEY", key)
                .env("POLL_SECONDS", "2")
                .env("RUN_SECONDS", "20")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{stderr}\n--- server log\n{}",
        server.log()
    );
    assert!(
        stdout.contains("placesmartorder -> {"),
        "{stdout}\n{stderr}"
    );

    let (status, book) = server
        .post("orderbook", json!({"apikey": server.admin_key}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{book}");
    assert_eq!(book["mode"], "analyze", "{book}");
    let orders: Vec<&serde_json::Value> =
        book["data"]["orders"].as_array().unwrap().iter().collect();
    // A fresh store: every order is the strategy's.
    assert!(!orders.is_empty(), "no orders: {book}\n{stdout}");
    assert!(
        orders
            .iter()
            .all(|order| order["order_status"] == "complete" && order["symbol"] == "SBIN"),
        "{book}"
    );
    let (_, positions) = server
        .post("positionbook", json!({"apikey": server.admin_key}))
        .await
        .unwrap();
    let quantity = positions["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["symbol"] == "SBIN")
        .map(|row| row["quantity"].as_f64().unwrap());
    assert!(
        matches!(quantity, Some(q) if q.abs() == 1.0),
        "the strategy holds one share long or short: {positions}"
    );
}
