//! The parts used on their own, as another service would: a `WsProxy` fed directly (no bus)
//! that reports subscription hints for a feed adapter, and a `Bus` with a `Publisher`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Client, KEY_ALICE, KEY_BOB, depth_tick};
use oa_marketdata_zmq::{
    Bus, BusConfig, Publisher, PublisherOptions, SubscriptionHint, SymbolMaster, Tick, TickMode,
    WsConfig, WsProxy,
};
use serde_json::json;

fn hint(symbol: &str, mode: Option<TickMode>) -> SubscriptionHint {
    SubscriptionHint {
        exchange: "NSE".into(),
        symbol: symbol.into(),
        mode,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_fed_directly_reports_subscription_hints() {
    let (hints, mut hint_rx) = tokio::sync::mpsc::channel(64);
    let proxy = WsProxy::start(
        &WsConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            broker: "direct".into(),
            ..WsConfig::default()
        },
        Arc::new(SymbolMaster::bundled()),
        Arc::new(common::MapVerifier::new()),
        None,
        Some(hints),
    )
    .await
    .unwrap();
    let url = format!("ws://{}", proxy.local_addr());
    let mut alice = Client::authenticated(&url, KEY_ALICE).await;
    let mut bob = Client::authenticated(&url, KEY_BOB).await;

    alice.subscribe("NSE", "SBIN", json!(1)).await;
    assert_eq!(
        hint_rx.recv().await,
        Some(hint("SBIN", Some(TickMode::Ltp)))
    );
    bob.subscribe("NSE", "SBIN", json!(3)).await;
    assert_eq!(
        hint_rx.recv().await,
        Some(hint("SBIN", Some(TickMode::Depth)))
    );
    // A lower mode on top changes nothing for the feed.
    alice.subscribe("NSE", "SBIN", json!(2)).await;

    proxy.dispatch(&depth_tick("NSE", "SBIN", 812.5));
    let m = bob.recv_until(|m| m["type"] == "market_data").await;
    assert_eq!(
        (m["mode"].as_i64(), m["broker"].as_str()),
        (Some(3), Some("direct"))
    );

    bob.send(json!({"action": "unsubscribe", "symbol": "SBIN", "exchange": "NSE", "mode": 3}))
        .await;
    assert_eq!(bob.recv().await["status"], "success");
    assert_eq!(
        hint_rx.recv().await,
        Some(hint("SBIN", Some(TickMode::Quote)))
    );
    // The last client leaving (connection closed) releases the instrument.
    drop(alice);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), hint_rx.recv())
            .await
            .unwrap(),
        Some(hint("SBIN", None))
    );
    assert_eq!(proxy.stats().subscriptions, 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_and_a_publisher_alone() {
    let (bus, mut ticks) = Bus::bind(&BusConfig::tcp("127.0.0.1", 0)).unwrap();
    assert!(!bus.endpoint().ends_with(":*") && !bus.endpoint().ends_with(":0"));
    let endpoint = bus.endpoint().to_string();
    // A feed-adapter thread owning its publisher.
    let feeder = std::thread::spawn(move || {
        let mut publisher = Publisher::connect_and_wait(
            &endpoint,
            PublisherOptions::default(),
            Duration::from_secs(5),
        )
        .unwrap();
        for i in 0..1000 {
            publisher
                .publish(&Tick::ltp("CRYPTO", "BTC_USDT", 97_000.0 + f64::from(i)))
                .unwrap();
        }
    });
    for i in 0..1000 {
        let tick = tokio::time::timeout(Duration::from_secs(10), ticks.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tick.symbol, "BTC_USDT");
        assert_eq!(tick.ltp, 97_000.0 + f64::from(i));
    }
    feeder.join().unwrap();
    assert_eq!(bus.stats().received, 1000);
    assert_eq!(bus.stats().malformed_total(), 0);
    let started = std::time::Instant::now();
    bus.shutdown();
    // A hang detector, not a timing goal: the thread polls its stop flag every 100 ms.
    assert!(started.elapsed() < Duration::from_secs(10));
}
