//! End-to-end with the rust_socketio client (websocket and polling) against a real axum server
//! fed by a real EventPublisher.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    Connected, RustClient, TestServer, assert_samples_cover_catalog, catalog_samples, connect_rust,
    publish_samples, test_config,
};
use oa_events_core::Event;
use oa_events_core::catalog::OrderNotification;
use rust_socketio::TransportType;
use serde_json::{Value, json};

fn note(user: &str, n: usize) -> Event {
    Event::for_user(user, OrderNotification::info("SBIN", format!("{user}-{n}")))
}

fn message(payload: &Value) -> &str {
    payload["message"].as_str().unwrap_or_default()
}

fn seq(payload: &Value) -> u64 {
    payload["seq"].as_u64().expect("seq")
}

async fn every_catalog_event_arrives_exactly(transport: TransportType) {
    let server = TestServer::start(test_config()).await;
    let mut alice = RustClient::user(&server.url(), "alice", transport.clone()).await;
    let mut bob = RustClient::user(&server.url(), "bob", transport).await;
    server.wait_clients(2).await;
    let samples = catalog_samples("alice");
    assert_samples_cover_catalog(&samples);
    let expected = publish_samples(&server, samples);
    let received = alice.take(expected.len()).await;
    for (got, want) in received.iter().zip(&expected) {
        assert_eq!(got, want);
        // Exact keys and order: the catalog object first, then ours.
        assert_eq!(got.1.to_string(), want.1.to_string());
    }
    // Bob only sees the system-wide event.
    let (name, payload) = bob.take(1).await.remove(0);
    assert_eq!(name, "master_contract_download");
    assert_eq!(payload["broker"], "simulator");
    assert!(bob.next(Duration::from_millis(300)).await.is_none());
    assert!(alice.next(Duration::from_millis(100)).await.is_none());
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_event_arrives_exactly_over_websocket() {
    every_catalog_event_arrives_exactly(TransportType::Websocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_event_arrives_exactly_over_polling() {
    every_catalog_event_arrives_exactly(TransportType::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_event_arrives_exactly_after_upgrade() {
    every_catalog_event_arrives_exactly(TransportType::WebsocketUpgrade).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_keys_are_refused_with_a_reason() {
    let server = TestServer::start(test_config()).await;
    for (auth, reason) in [
        (json!({}), "missing apikey"),
        (json!({"apikey": ""}), "missing apikey"),
        (json!({"apikey": "wrong"}), "Invalid openalgo apikey"),
        (
            json!({"apikey": "key-alice", "offset": -3}),
            "invalid offset",
        ),
    ] {
        for transport in [TransportType::Websocket, TransportType::Polling] {
            match connect_rust(&server.url(), auth.clone(), transport).await {
                Connected::Refused(message) => {
                    assert!(message.contains(reason), "{auth}: {message}")
                }
                Connected::Ok(_) => panic!("{auth} was accepted"),
            }
        }
    }
    assert_eq!(server.sink.stats().refused, 8);
    assert_eq!(server.sink.stats().clients, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_never_see_each_others_events() {
    let server = TestServer::start(test_config()).await;
    let url = server.url();
    let mut alice = RustClient::websocket(&url, "alice").await;
    // rust_socketio 0.6's polling transport mis-parses a response split across reads, so the
    // long runs use websocket with it; the Node and Python clients cover polling in bulk.
    let mut bob = RustClient::websocket(&url, "bob").await;
    let mut carol = RustClient::websocket(&url, "carol").await;
    server.wait_clients(3).await;
    const EVENTS: usize = 600;
    for n in 0..EVENTS {
        let user = if n % 2 == 0 { "alice" } else { "bob" };
        server.publisher.publish(note(user, n));
    }
    for (client, user) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let received = client.take(EVENTS / 2).await;
        let mut previous = None;
        for (n, (name, payload)) in received.iter().enumerate() {
            assert_eq!(name, "order_notification");
            let parity = if user == "alice" { 0 } else { 1 };
            assert_eq!(message(payload), format!("{user}-{}", 2 * n + parity));
            if let Some(previous) = previous {
                assert_eq!(seq(payload), previous + 1, "seq is contiguous per user");
            }
            previous = Some(seq(payload));
        }
        assert!(client.next(Duration::from_millis(200)).await.is_none());
    }
    assert!(
        carol.next(Duration::from_millis(200)).await.is_none(),
        "carol got someone's event"
    );
    alice.close().await;
    bob.close().await;
    carol.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_offset_replays_exactly_the_missed_events_in_order() {
    let server = TestServer::start(test_config()).await;
    let url = server.url();
    for transport in [TransportType::Websocket, TransportType::Polling] {
        let mut alice = RustClient::user(&url, "alice", transport.clone()).await;
        server.wait_clients(1).await;
        for n in 0..5 {
            server.publisher.publish(note("alice", n));
        }
        let seen = alice.take(5).await;
        let last = seq(&seen[4].1);
        alice.close().await;
        wait_no_clients(&server).await;
        let mut missed_ids = Vec::new();
        for n in 5..25 {
            missed_ids.push(server.publisher.publish(note("alice", n)).id);
        }
        // Let the sink append them before we reconnect.
        wait_latest(&server, "alice", last + 20).await;
        let mut again = RustClient::connect(
            &url,
            json!({"apikey": "key-alice", "offset": last}),
            transport,
        )
        .await;
        let replayed = again.take(20).await;
        for (i, (name, payload)) in replayed.iter().enumerate() {
            assert_eq!(name, "order_notification");
            assert_eq!(seq(payload), last + 1 + i as u64);
            assert_eq!(message(payload), format!("alice-{}", 5 + i));
            assert_eq!(payload["event_id"], missed_ids[i].to_string());
        }
        server.publisher.publish(note("alice", 25));
        let (_, live) = again.take(1).await.remove(0);
        assert_eq!(seq(&live), last + 21);
        assert!(
            again.next(Duration::from_millis(200)).await.is_none(),
            "duplicate"
        );
        again.close().await;
        wait_no_clients(&server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_during_a_stream_of_events_loses_and_duplicates_nothing() {
    let server = TestServer::start(test_config()).await;
    let url = server.url();
    let last = first_session(&server, &url).await;
    // Publish continuously (slower than the buffer turns over) while the client reconnects.
    let running = Arc::new(AtomicBool::new(true));
    let publisher = server.publisher.clone();
    let flag = Arc::clone(&running);
    let producer = tokio::spawn(async move {
        let mut n = 1;
        while flag.load(Ordering::Relaxed) {
            publisher.publish(note("alice", n));
            n += 1;
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut again = RustClient::connect(
        &url,
        json!({"apikey": "key-alice", "offset": last}),
        TransportType::Websocket,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    running.store(false, Ordering::Relaxed);
    let published = producer.await.unwrap();
    let total = published - 1;
    let received = again.take(total).await;
    for (i, (_, payload)) in received.iter().enumerate() {
        assert_eq!(seq(payload), last + 1 + i as u64, "{payload}");
        assert_eq!(message(payload), format!("alice-{}", i + 1));
    }
    assert!(
        again.next(Duration::from_millis(200)).await.is_none(),
        "duplicate"
    );
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_older_than_the_buffer_yields_replay_gap_then_the_buffer() {
    let server = TestServer::start(test_config()).await; // buffer: 64 events per user
    let url = server.url();
    let last = first_session(&server, &url).await;
    for n in 1..=100 {
        server.publisher.publish(note("alice", n));
    }
    wait_latest(&server, "alice", last + 100).await;
    let (mut again, gap) = reconnect_expecting_a_gap(&url, last).await;
    assert_eq!(gap["to_seq"], json!(last + 36));
    assert_eq!(gap["latest_seq"], json!(last + 100));
    assert_eq!(gap["reason"], "expired");
    let replayed = again.take(64).await;
    for (i, (_, payload)) in replayed.iter().enumerate() {
        assert_eq!(seq(payload), last + 37 + i as u64);
    }
    assert_eq!(server.sink.stats().replay_missed, 36);
    again.close().await;

    // An offset this server never issued.
    let mut odd = RustClient::connect(
        &url,
        json!({"apikey": "key-alice", "offset": u64::MAX / 2}),
        TransportType::Websocket,
    )
    .await;
    let (name, gap) = odd.take(1).await.remove(0);
    assert_eq!(name, "replay_gap");
    assert_eq!(gap["reason"], "unknown_offset");
    assert_eq!(gap["to_seq"], json!(last + 100));
    odd.close().await;
}

/// Alice's first session: connects, receives one event, disconnects; returns its `seq`.
/// Reconnects alice over WebSocket from `last` and takes the first event, which must be a
/// `replay_gap` starting right after `last`; returns the client and the gap.
async fn reconnect_expecting_a_gap(url: &str, last: u64) -> (RustClient, Value) {
    let mut again = RustClient::connect(
        url,
        json!({"apikey": "key-alice", "offset": last}),
        TransportType::Websocket,
    )
    .await;
    let (name, gap) = again.take(1).await.remove(0);
    assert_eq!(name, "replay_gap");
    assert_eq!(gap["from_seq"], json!(last + 1));
    (again, gap)
}

async fn first_session(server: &TestServer, url: &str) -> u64 {
    let mut alice = RustClient::websocket(url, "alice").await;
    server.wait_clients(1).await;
    server.publisher.publish(note("alice", 0));
    let last = seq(&alice.take(1).await[0].1);
    alice.close().await;
    wait_no_clients(server).await;
    last
}

async fn wait_no_clients(server: &TestServer) {
    for _ in 0..500 {
        if server.sink.stats().clients == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("clients did not disconnect");
}

async fn wait_latest(server: &TestServer, user: &str, seq: u64) {
    for _ in 0..500 {
        if server.sink.latest_seq(user) >= Some(seq) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stream of {user} did not reach seq {seq}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aged_out_events_yield_replay_gap_and_idle_users_are_forgotten() {
    let server = TestServer::start(oa_events_socketio::SocketIoConfig {
        replay_max_age: Duration::from_millis(200),
        sweep_interval: Duration::from_millis(50),
        ..test_config()
    })
    .await;
    let url = server.url();
    let last = first_session(&server, &url).await;
    server.publisher.publish(note("alice", 1));
    wait_latest(&server, "alice", last + 1).await;
    // Older than replay_max_age: swept, and the user, now idle, forgotten.
    for _ in 0..100 {
        if server.sink.users() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.sink.users(), 0);
    let (mut again, gap) = reconnect_expecting_a_gap(&url, last).await;
    assert_eq!(gap["reason"], "expired");
    // The new stream continues above everything issued before.
    server.publisher.publish(note("alice", 2));
    let (_, live) = again.take(1).await.remove(0);
    assert!(seq(&live) > last + 1, "{live}");
    assert_eq!(gap["to_seq"], json!(seq(&live) - 1));
    again.close().await;
}
