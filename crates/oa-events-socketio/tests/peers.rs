//! End-to-end with the official clients: npm socket.io-client 4 (Node) and PyPI
//! python-socketio, over polling only, websocket only, and polling upgraded to websocket.
//! Needs `cargo xtask setup` (node_modules in tests/node, .venv with tests/python/requirements.txt).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::Duration;

use common::{
    PeerKind, TestServer, catalog_samples, numbers_as_f64, publish_samples, spawn_peer, test_config,
};
use oa_e2e::peer_events;
use oa_events_core::Event;
use oa_events_core::catalog::OrderNotification;
use oa_events_socketio::SocketIoConfig;
use serde_json::{Value, json};

fn note(user: &str, n: usize) -> Event {
    Event::for_user(user, OrderNotification::info("SBIN", format!("{user}-{n}")))
}

/// JavaScript keeps no difference between 0 and 0.0; Python and Rust do.
fn comparable(kind: PeerKind, value: &Value) -> Value {
    match kind {
        PeerKind::Node => numbers_as_f64(value),
        PeerKind::Python => value.clone(),
    }
}

async fn catalog_exact(kind: PeerKind, transports: &str) {
    let server = TestServer::start(test_config()).await;
    let samples = catalog_samples("alice");
    let peer = spawn_peer(
        kind,
        &server.url(),
        json!({"apikey": "key-alice"}),
        transports,
        samples.len(),
    );
    server.wait_clients(1).await;
    if transports.contains(',') {
        // Let the client finish its upgrade to websocket first.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let expected = publish_samples(&server, samples);
    let lines = peer.await.unwrap();
    let connect = lines
        .iter()
        .find(|line| line["type"] == "connect")
        .unwrap_or_else(|| panic!("no connect: {lines:?}"));
    let events = peer_events(&lines);
    assert_eq!(events.len(), expected.len(), "{lines:?}");
    for ((name, data), (want_name, want)) in events.iter().zip(&expected) {
        assert_eq!(name, want_name);
        assert_eq!(comparable(kind, data), comparable(kind, want));
        if kind == PeerKind::Python {
            // Key order too: Python keeps it.
            assert_eq!(data.to_string(), want.to_string());
        }
    }
    match (kind, transports) {
        (PeerKind::Node, "polling,websocket") => assert!(
            lines
                .iter()
                .any(|line| line["type"] == "upgrade" && line["transport"] == "websocket"),
            "no upgrade: {lines:?}"
        ),
        (_, "polling") => assert_eq!(connect["transport"], "polling"),
        (_, "websocket") => assert_eq!(connect["transport"], "websocket"),
        _ => {}
    }
}

async fn refusal(kind: PeerKind) {
    let server = TestServer::start(test_config()).await;
    for (auth, reason, transports) in [
        (
            json!({"apikey": "nope"}),
            "Invalid openalgo apikey",
            "websocket",
        ),
        (json!({}), "missing apikey", "polling"),
    ] {
        let lines = spawn_peer(kind, &server.url(), auth, transports, 0)
            .await
            .unwrap();
        let refusal = lines
            .iter()
            .find(|line| line["type"] == "connect_error")
            .unwrap_or_else(|| panic!("not refused: {lines:?}"));
        assert!(
            refusal["message"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{lines:?}"
        );
    }
    assert_eq!(server.sink.stats().clients, 0);
}

async fn replay(kind: PeerKind, transports: &str) {
    let server = TestServer::start(test_config()).await;
    server.publisher.publish(note("alice", 0));
    // The client saw seq `last`; ten more happen while it is away.
    let last = wait_latest(&server, "alice", 0).await;
    for n in 1..=10 {
        server.publisher.publish(note("alice", n));
    }
    wait_latest(&server, "alice", last + 10).await;
    let peer = spawn_peer(
        kind,
        &server.url(),
        json!({"apikey": "key-alice", "offset": last}),
        transports,
        11,
    );
    server.wait_clients(1).await;
    server.publisher.publish(note("alice", 11));
    let events = peer_events(&peer.await.unwrap());
    let seqs: Vec<u64> = events
        .iter()
        .map(|(_, data)| data["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (last + 1..=last + 11).collect::<Vec<_>>());
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["message"], format!("alice-{}", i + 1));
    }
}

async fn isolation(kind: PeerKind) {
    // python-engineio clients abort on a polling response of more than 16 packets; the server
    // paces polling sockets, but on a loaded machine a client that polls late can still see
    // more, so the Python bulk run goes over the upgraded transport. Node takes any size.
    let alice_transports = match kind {
        PeerKind::Node => "polling",
        PeerKind::Python => "polling,websocket",
    };
    // Polling sockets are paced (10 packets per 20 ms): the burst must fit the replay buffer.
    let server = TestServer::start(SocketIoConfig {
        replay_buffer_size: 1024,
        ..test_config()
    })
    .await;
    const PER_USER: usize = 200;
    let alice = spawn_peer(
        kind,
        &server.url(),
        json!({"apikey": "key-alice"}),
        alice_transports,
        PER_USER + 1,
    );
    let bob = spawn_peer(
        kind,
        &server.url(),
        json!({"apikey": "key-bob"}),
        "websocket",
        PER_USER + 1,
    );
    server.wait_clients(2).await;
    if kind == PeerKind::Python {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for n in 0..2 * PER_USER {
        server
            .publisher
            .publish(note(if n % 2 == 0 { "alice" } else { "bob" }, n));
    }
    // A system-wide sentinel: everyone's last event. A foreign event would arrive before it.
    server.publisher.publish(catalog_samples("x").remove(8).0);
    for (peer, user, parity) in [(alice, "alice", 0), (bob, "bob", 1)] {
        let events = peer_events(&peer.await.unwrap());
        assert_eq!(events.len(), PER_USER + 1);
        for (i, (name, data)) in events[..PER_USER].iter().enumerate() {
            assert_eq!(name, "order_notification");
            assert_eq!(data["message"], format!("{user}-{}", 2 * i + parity));
        }
        assert_eq!(events[PER_USER].0, "master_contract_download");
    }
}

async fn wait_latest(server: &TestServer, user: &str, at_least: u64) -> u64 {
    for _ in 0..500 {
        if let Some(latest) = server.sink.latest_seq(user)
            && latest >= at_least
        {
            return latest;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stream of {user} did not reach {at_least}");
}

/// One multi-threaded test named `$name` that awaits `$check`.
macro_rules! peer_test {
    ($name:ident, $check:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $check.await;
        }
    };
}

/// The peer suite for one client kind, in a module of its own.
macro_rules! peer_tests {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            peer_test!(
                catalog_payloads_over_polling,
                catalog_exact($kind, "polling")
            );
            peer_test!(
                catalog_payloads_over_websocket,
                catalog_exact($kind, "websocket")
            );
            peer_test!(
                catalog_payloads_after_upgrade,
                catalog_exact($kind, "polling,websocket")
            );
            peer_test!(refused_with_reason, refusal($kind));
            peer_test!(replay_over_polling, replay($kind, "polling"));
            peer_test!(replay_over_websocket, replay($kind, "websocket"));
            peer_test!(users_are_isolated, isolation($kind));
        }
    };
}

peer_tests!(node, PeerKind::Node);
peer_tests!(python, PeerKind::Python);
