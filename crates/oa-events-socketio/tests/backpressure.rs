//! A client that stops reading neither grows server memory nor delays other clients; what it
//! misses is counted in `oa_events_dropped_total{sink="socketio",reason="slow_client"}` and
//! announced to it with `replay_gap` once it reads again.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::{Duration, Instant};

use common::{RustClient, TestServer};
use metrics_exporter_prometheus::PrometheusBuilder;
use oa_events_core::Event;
use oa_events_core::catalog::OrderNotification;
use oa_events_socketio::SocketIoConfig;
use serde_json::{Value, json};

fn note(user: &str, n: usize) -> Event {
    Event::for_user(user, OrderNotification::info("SBIN", format!("{user}-{n}")))
}

/// The body of a GET of `url`.
async fn get_text(http: &reqwest::Client, url: &str) -> String {
    let response = http.get(url).send().await.unwrap();
    response.text().await.unwrap()
}

/// A raw Engine.IO long-polling session that connects and then stops polling.
struct StalledClient {
    http: reqwest::Client,
    url: String,
}

impl StalledClient {
    async fn connect(base: &str, auth: Value) -> StalledClient {
        let http = reqwest::Client::new();
        let open = get_text(&http, &format!("{base}/socket.io/?EIO=4&transport=polling")).await;
        let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
        let sid = handshake["sid"].as_str().unwrap();
        let url = format!("{base}/socket.io/?EIO=4&transport=polling&sid={sid}");
        let response = http
            .post(&url)
            .body(format!("40{auth}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        StalledClient { http, url }
    }

    /// One poll: the Socket.IO packets the server had buffered.
    async fn poll(&self) -> Vec<String> {
        let body = get_text(&self.http, &self.url).await;
        body.split('\u{1e}').map(str::to_string).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_stall_others_and_drops_are_counted() {
    let metrics = PrometheusBuilder::new().install_recorder().unwrap();
    let config = SocketIoConfig {
        replay_buffer_size: 64,
        socket_buffer_size: 32,
        ping_interval: Duration::from_secs(60),
        ping_timeout: Duration::from_secs(60),
        ..SocketIoConfig::default()
    };
    let server = TestServer::start(config).await;
    let url = server.url();
    let stalled = StalledClient::connect(&url, json!({"apikey": "key-alice"})).await;
    server.wait_clients(1).await;
    let mut alice = RustClient::websocket(&url, "alice").await;
    let mut bob = RustClient::websocket(&url, "bob").await;
    server.wait_clients(3).await;

    const PER_USER: usize = 1000;
    let started = Instant::now();
    // Bursts of 20 per user every 2 ms: far faster than the stalled socket takes (never), well
    // within what a reading client takes.
    for n in 0..PER_USER {
        server.publisher.publish(note("alice", n));
        server.publisher.publish(note("bob", n));
        if n % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for (client, user) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let received = client.take(PER_USER).await;
        for (n, (_, data)) in received.iter().enumerate() {
            assert_eq!(data["message"], format!("{user}-{n}"));
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "others were delayed: {elapsed:?}"
    );

    // The stalled socket took at most its buffer; the rest of what it missed beyond the
    // replay buffer is counted as dropped.
    let stats = server.sink.stats();
    assert!(stats.deferred > 0, "{stats:?}");
    assert!(
        stats.dropped_slow_client >= (PER_USER - 64 - 32) as u64,
        "{stats:?}"
    );
    let rendered = metrics.render();
    let line = rendered
        .lines()
        .find(|line| {
            line.starts_with("oa_events_dropped_total")
                && line.contains("sink=\"socketio\"")
                && line.contains("reason=\"slow_client\"")
        })
        .unwrap_or_else(|| panic!("no drop counter in:\n{rendered}"));
    let counted: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(counted as u64, stats.dropped_slow_client);
    assert_eq!(server.publisher.stats()[0].queued, 0);

    // When it reads again: its buffered events, then replay_gap, then the newest 64.
    let latest = server.sink.latest_seq("alice").unwrap();
    let mut packets = Vec::new();
    for _ in 0..50 {
        packets.extend(stalled.poll().await);
        if packets
            .iter()
            .any(|packet| packet.contains(&format!("\"seq\":{latest}}}")))
        {
            break;
        }
    }
    let events: Vec<Value> = packets
        .iter()
        .filter_map(|packet| packet.strip_prefix("42"))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
    // Every seq from the first to the latest is accounted for exactly once, in order: received,
    // or covered by a replay_gap announced at the point of the loss.
    let mut expected: Option<u64> = None;
    let mut gaps = 0;
    for event in &events {
        let data = &event[1];
        if event[0] == "replay_gap" {
            gaps += 1;
            assert_eq!(data["reason"], "expired");
            assert_eq!(
                Some(data["from_seq"].as_u64().unwrap()),
                expected,
                "{event}"
            );
            expected = Some(data["to_seq"].as_u64().unwrap() + 1);
        } else {
            let seq = data["seq"].as_u64().unwrap();
            if let Some(expected) = expected {
                assert_eq!(seq, expected, "{event}");
            }
            expected = Some(seq + 1);
        }
    }
    assert!(gaps >= 1, "no replay_gap in {packets:?}");
    assert_eq!(
        expected,
        Some(latest + 1),
        "did not catch up to the latest event"
    );
    alice.close().await;
    bob.close().await;
}
