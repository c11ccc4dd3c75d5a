//! The WebSocket proxy under abuse, with real sockets: oversized frames are refused from their
//! header, connections are capped per IP (another address is not affected), logins are rate
//! limited per IP, a user's sessions are capped by MAX_WEBSOCKET_CONNECTIONS, and a
//! `password_change` (key rotated or revoked) ends the user's sessions.

// Test helpers outside #[test] fns unwrap too; `.err().expect()` reads better than the
// alternatives when the Ok type is not Debug.
#![allow(clippy::unwrap_used, clippy::err_expect)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Client, KEY_ALICE, KEY_BOB, start, start_configured};
use futures_util::StreamExt;
use oa_e2e::net::{announce_a_16_mib_frame, websocket_from};
use oa_events_core::Event;
use oa_events_core::catalog::PasswordChange;
use oa_marketdata_zmq::{CLOSE_KEY_REVOKED, MarketDataConfig};
use serde_json::json;
use tokio::io::AsyncReadExt;

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn client_from(source: Ipv4Addr, server: SocketAddr) -> Result<Client, String> {
    websocket_from(source, server, &format!("ws://{server}"))
        .await
        .map(|ws| Client { ws })
}

#[tokio::test]
async fn a_16_mib_frame_is_refused_from_its_header_before_login() {
    let harness = start(MarketDataConfig::ephemeral()).await;
    // A masked text frame announcing 16 MiB, then only 4 KiB of it.
    let mut tcp = announce_a_16_mib_frame(harness.md.ws_addr(), "/")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server waited for the rest of a 16 MiB frame instead of refusing it"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_per_ip_cap_refuses_with_503_and_spares_other_addresses() {
    let harness = start_configured(|config| config.ws_max_connections_per_ip = 3).await;
    let addr = harness.md.ws_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(client_from(ATTACKER, addr).await.expect("under the cap"));
    }
    let refused = client_from(ATTACKER, addr).await.err().expect("refused");
    assert!(refused.starts_with("503"), "{refused}");
    assert!(refused.contains("MAX_CONNECTIONS_REACHED"), "{refused}");
    assert!(refused.contains("from your address"), "{refused}");

    let mut good = client_from(Ipv4Addr::LOCALHOST, addr)
        .await
        .expect("other IP");
    assert_eq!(good.authenticate(KEY_ALICE).await["status"], "success");

    drop(held);
    oa_e2e::retry_until_ok(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "slots were not freed",
        || client_from(ATTACKER, addr),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_ip() {
    let harness = start_configured(|config| {
        config.login_rate_limit = oa_net::RateSpec::parse("5 per minute").unwrap()
    })
    .await;
    let addr = harness.md.ws_addr();
    let mut attacker = client_from(ATTACKER, addr).await.unwrap();
    for _ in 0..5 {
        let reply = attacker.authenticate("bogus").await;
        assert_eq!(reply["code"], "AUTHENTICATION_ERROR", "{reply}");
    }
    let reply = attacker.authenticate(KEY_ALICE).await;
    assert_eq!(
        reply["code"], "RATE_LIMITED",
        "even a good key waits: {reply}"
    );

    let mut good = client_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
    assert_eq!(good.authenticate(KEY_ALICE).await["status"], "success");
}

#[tokio::test]
async fn max_websocket_connections_caps_a_users_sessions() {
    let harness = start_configured(|config| config.max_websocket_connections = 2).await;
    let url = harness.ws_url();
    let first = Client::authenticated(&url, KEY_ALICE).await;
    let _second = Client::authenticated(&url, KEY_ALICE).await;
    let mut third = Client::connect(&url).await;
    let reply = third.authenticate(KEY_ALICE).await;
    assert_eq!(reply["code"], "MAX_CONNECTIONS_REACHED", "{reply}");
    let _bob = Client::authenticated(&url, KEY_BOB).await;

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = third.authenticate(KEY_ALICE).await;
        if reply["status"] == "success" {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was not freed: {reply}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn password_change_ends_the_users_older_sessions() {
    let harness = start(MarketDataConfig::ephemeral()).await;
    let url = harness.ws_url();
    let mut alice = Client::authenticated(&url, KEY_ALICE).await;
    let mut bob = Client::authenticated(&url, KEY_BOB).await;
    harness.events.publish(Event::for_user(
        "alice",
        PasswordChange::success("alice", "API key revoked"),
    ));
    let started = Instant::now();
    let notice = alice.recv().await;
    assert_eq!(notice["code"], "API_KEY_REVOKED", "{notice}");
    let frame = alice
        .closed(Duration::from_secs(2))
        .await
        .expect("close frame");
    assert_eq!(u16::from(frame.code), CLOSE_KEY_REVOKED);
    assert!(started.elapsed() < Duration::from_secs(2));

    // Bob is untouched, and alice can log in again (with her new key, here the same one).
    bob.send(json!({"action": "ping"})).await;
    let _ = bob.recv_within(Duration::from_millis(500)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bob.ws.next())
            .await
            .is_err(),
        "bob's connection stays open and quiet"
    );
    let _again = Client::authenticated(&url, KEY_ALICE).await;
}
