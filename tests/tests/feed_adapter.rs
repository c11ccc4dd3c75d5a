//! The feed-adapter example (`crates/oa-marketdata-zmq/examples/feed_adapter.rs`) against the
//! real server: its ticks travel over the ZeroMQ bus and the WebSocket proxy to the official
//! OpenAlgo SDK's feed client, and into the price cache behind `/api/v1/quotes`.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use oa_e2e::{PeerProcess, TestServer, example_binary};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// Rounds the example publishes (one tick per instrument each).
const ROUNDS: u64 = 40;
/// The instruments and base prices given to the example (in the bundled symbol master).
const INSTRUMENTS: [(&str, &str, f64); 2] = [("NSE", "SBIN", 812.5), ("NSE", "INFY", 1500.0)];

/// The example's documented price walk: the n-th tick has ltp base + 0.05 × ((n − 1) mod 100).
fn expected_ltp(base: f64, volume: f64) -> f64 {
    base + 0.05 * ((volume as u64 - 1) % 100) as f64
}

fn market_data_of<'a>(lines: &'a [Value], symbol: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| line["type"] == "market_data" && line["symbol"] == symbol)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_adapter_example_reaches_websocket_clients_and_the_price_cache() -> anyhow::Result<()>
{
    let example = example_binary("oa-marketdata-zmq", "feed_adapter")?;
    // No bundled feed: every tick a client sees comes from the example.
    let server = TestServer::start(&[("OA_FEED", "none")])?;
    let instruments: Vec<String> = INSTRUMENTS
        .iter()
        .map(|(exchange, symbol, _)| format!("{exchange}:{symbol}"))
        .collect();
    let mut client = PeerProcess::python(
        "marketdata_ws_collect.py",
        &[
            ("OA_WS_URL", server.ws_url()),
            ("OA_API_KEY", server.admin_key.clone()),
            ("OA_INSTRUMENTS", instruments.join(",")),
            ("OA_TIMEOUT_S", "90".to_string()),
        ],
    )?;
    client.wait_for(WAIT, |line| line["type"] == "subscribed")?;

    let mut feed = Command::new(&example);
    feed.args(["--endpoint", &server.addresses["zmq"]])
        .args(["--interval-ms", "50", "--count", &ROUNDS.to_string()])
        .args(
            INSTRUMENTS
                .iter()
                .map(|(exchange, symbol, base)| format!("{exchange}:{symbol}@{base}")),
        );
    let output = tokio::task::spawn_blocking(move || feed.output())
        .await?
        .context("running the feed_adapter example")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "feed_adapter failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("published {ROUNDS} round(s)")),
        "{stdout}"
    );

    // The last round reaches the client for every instrument (older ticks may be conflated:
    // the latest price always wins).
    for (_, symbol, _) in INSTRUMENTS {
        client.wait_for(WAIT, |line| {
            line["type"] == "market_data"
                && line["symbol"] == symbol
                && line["data"]["volume"] == json!(ROUNDS)
        })?;
    }
    for (exchange, symbol, base) in INSTRUMENTS {
        let received = market_data_of(&client.seen, symbol);
        let mut last_volume = 0.0;
        for message in &received {
            assert_eq!(message["exchange"], exchange, "{message}");
            assert_eq!(message["mode"], 2, "{message}");
            let volume = message["data"]["volume"]
                .as_f64()
                .with_context(|| format!("no volume in {message}"))?;
            let ltp = message["data"]["ltp"]
                .as_f64()
                .with_context(|| format!("no ltp in {message}"))?;
            assert!(volume > last_volume, "ticks in order: {received:#?}");
            last_volume = volume;
            assert!(
                (ltp - expected_ltp(base, volume)).abs() < 1e-6,
                "tick {volume} of {symbol} has the example's price: {message}"
            );
            assert_eq!(message["data"]["open"], json!(base), "{message}");
        }
    }

    // The price cache has the last tick of each instrument.
    for (exchange, symbol, base) in INSTRUMENTS {
        let (status, body) = server
            .post(
                "quotes",
                json!({"apikey": server.admin_key, "exchange": exchange, "symbol": symbol}),
            )
            .await?;
        assert_eq!(status, 200, "{body}");
        let ltp = body["data"]["ltp"]
            .as_f64()
            .with_context(|| format!("no ltp in {body}"))?;
        assert!(
            (ltp - expected_ltp(base, ROUNDS as f64)).abs() < 1e-6,
            "quotes {exchange}:{symbol} after the feed: {body}"
        );
    }
    Ok(())
}
