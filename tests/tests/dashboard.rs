//! The web dashboard in a real headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/node/dashboard.mjs`) against the real `oa-server`: sign-in,
//! a wrong key, orders from the ticket with live events, positions and funds, modify and
//! cancel, a tick published on the ZMQ bus reaching the price and the chart, a server restart
//! with replay of the missed events, user isolation, and the layout at desktop and phone
//! widths (screenshots in `target/dashboard-screenshots/`, for a reviewer).
//!
//! The page shows Socket.IO order events, so this server pins `ORDER_EVENT_MODE=SOCKETIO` in
//! every pass of `cargo xtask test-both-modes`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use oa_e2e::{TestServer, chromium, free_port, node_modules, workspace_root};
use oa_marketdata_zmq::{Publisher, PublisherOptions};

/// How long the whole browser session may take before the test gives up.
const SESSION_TIMEOUT: Duration = Duration::from_secs(240);

/// Publishes one Quote tick as a feed adapter would (topic and JSON payload frames).
fn publish_quote(
    endpoint: &str,
    exchange: &str,
    symbol: &str,
    ltp: f64,
    close: f64,
) -> anyhow::Result<()> {
    let publisher = Publisher::connect_and_wait(
        endpoint,
        PublisherOptions::default(),
        Duration::from_secs(10),
    )
    .context("connecting a publisher to the bus")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let payload = serde_json::json!({
        "symbol": symbol, "exchange": exchange, "mode": 2, "ltp": ltp, "ltt": now,
        "timestamp": now, "open": close, "high": ltp.max(close), "low": ltp.min(close),
        "close": close, "volume": 1000, "average_price": ltp, "total_buy_quantity": 0,
        "total_sell_quantity": 0, "last_quantity": 1, "oi": 0,
    });
    let topic = format!("{exchange}_{symbol}_QUOTE");
    publisher.publish_frames(&[topic.as_bytes(), payload.to_string().as_bytes()])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_signs_in_trades_and_watches_prices_in_a_real_browser() -> anyhow::Result<()> {
    let chromium = chromium()?;
    node_modules()?;
    let http_port = free_port()?.to_string();
    let ws_port = free_port()?.to_string();
    let mut server = TestServer::start(&[
        ("ORDER_EVENT_MODE", "SOCKETIO"),
        ("FLASK_PORT", &http_port),
        ("WEBSOCKET_PORT", &ws_port),
        // Only SBIN moves on its own: INFY's prices in this test are the ticks it publishes.
        ("OA_FEED_SYMBOLS", "NSE:SBIN"),
    ])?;
    server.wait_for_sbin().await?;
    let other_key = server.create_user("second-user")?;
    let screenshots = workspace_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&screenshots)?;

    let mut browser = Command::new("node")
        .arg(workspace_root().join("tests/node/dashboard.mjs"))
        .current_dir(workspace_root().join("tests/node"))
        .env("OA_URL", format!("{}/", server.http_url()))
        .env("OA_KEY", &server.admin_key)
        .env("OA_OTHER_KEY", &other_key)
        .env("OA_CHROMIUM", &chromium)
        .env("OA_SCREENSHOT_DIR", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting node tests/node/dashboard.mjs")?;
    let mut to_browser = browser.stdin.take().context("no stdin")?;
    let from_browser = browser.stdout.take().context("no stdout")?;
    let (lines_sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from_browser).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = std::time::Instant::now() + SESSION_TIMEOUT;
    let mut passed = Vec::new();
    let mut last_tick: Option<std::time::Instant> = None;
    loop {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match lines.recv_timeout(remaining) {
            Ok(line) => line,
            Err(_) => break,
        };
        println!("browser: {line}");
        let answer = if let Some(step) = line.strip_prefix("OK ") {
            passed.push(step.split(' ').next().unwrap_or_default().to_string());
            continue;
        } else if let Some(reason) = line.strip_prefix("FAIL ") {
            bail!(
                "the browser session failed: {reason}\nserver log:\n{}",
                server.log()
            );
        } else if let Some(request) = line.strip_prefix("NEED ") {
            let words: Vec<&str> = request.split(' ').collect();
            match words.as_slice() {
                ["tick", exchange, symbol, ltp, close] => {
                    // Ticks land in different seconds, so the chart gains a point for each.
                    if let Some(previous) = last_tick {
                        let next = previous + Duration::from_millis(1100);
                        tokio::time::sleep_until(next.into()).await;
                    }
                    publish_quote(
                        &server.addresses["zmq"],
                        exchange,
                        symbol,
                        ltp.parse()?,
                        close.parse()?,
                    )?;
                    last_tick = Some(std::time::Instant::now());
                    String::new()
                }
                ["restart-and-order"] => {
                    server.signal("TERM", Duration::from_secs(20))?;
                    server.start_again()?;
                    server.wait_for_sbin().await?;
                    server
                        .place_market_order(&server.admin_key, "while-away")
                        .await?
                }
                ["other-user-order-then-marker"] => {
                    let other = server.place_market_order(&other_key, "other-user").await?;
                    let marker = server
                        .place_market_order(&server.admin_key, "marker")
                        .await?;
                    format!("{other} {marker}")
                }
                _ => bail!("unknown request from the browser script: {request}"),
            }
        } else {
            continue;
        };
        writeln!(to_browser, "GO {answer}").context("answering the browser script")?;
    }
    let status = browser.wait()?;
    let expected = [
        "wrong-key-refused",
        "signed-in",
        "market-order",
        "modify-and-cancel",
        "api-error-shown",
        "tick-to-price",
        "system-panel",
        "restart-replay",
        "isolation",
        "layout",
        "done",
    ];
    assert_eq!(passed, expected, "steps passed by the browser session");
    assert!(status.success(), "node exited with {status}");
    // The order placed while the page was away reached it by replay, not live delivery.
    let metrics = server.metrics().await?;
    let replayed: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("oa_socketio_replayed_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(replayed >= 1.0, "no event was replayed:\n{metrics}");
    for name in ["dashboard-desktop.png", "dashboard-phone.png"] {
        let size = std::fs::metadata(screenshots.join(name))?.len();
        assert!(size > 10_000, "{name} is {size} bytes");
    }
    Ok(())
}
