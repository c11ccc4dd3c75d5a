//! The library crates' examples run as their `//! Run with:` headers say: the custom
//! `EventSink` writes its JSON-lines file, and Socket.IO mounted in a foreign axum app
//! delivers each user's events to that user's clients (python-socketio, a client that is not
//! ours). The risk-service example has its own test (`kafka_risk_service.rs`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::PeerProcess;
use serde_json::Value;

#[test]
fn the_custom_sink_example_writes_every_published_event_as_a_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let binary = oa_e2e::example_binary("oa-events-core", "custom_sink").unwrap();
    let output = std::process::Command::new(binary)
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("published 3 events; the jsonl sink wrote 3"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&path).unwrap();
    let envelopes: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = envelopes
        .iter()
        .map(|envelope| {
            (
                envelope["event_type"].as_str().unwrap(),
                envelope["user_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("order_event", "alice"),
            ("order_notification", "bob"),
            ("master_contract_download", "admin"),
        ]
    );
    for envelope in &envelopes {
        assert_eq!(envelope["source"], "openalgo");
        assert_eq!(envelope["version"], "1.0");
        assert!(envelope["id"].as_str().is_some_and(|id| id.len() == 36));
    }
}

fn collector(url: &str, key: &str) -> PeerProcess {
    PeerProcess::socketio_events(
        url,
        key,
        &[
            ("OA_STOP_EVENT", "order_notification"),
            ("OA_TIMEOUT_S", "30"),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standalone_socketio_example_delivers_each_users_events_in_a_foreign_app() {
    let mut app = PeerProcess::example(
        "oa-events-socketio",
        "standalone",
        &["127.0.0.1:0"],
        &[("DEMO_API_KEYS", "key-a=alice,key-b=bob".to_string())],
    )
    .unwrap();
    app.wait_for_text(Duration::from_secs(30), |lines| {
        lines.iter().any(|line| line.starts_with("listening on "))
    })
    .unwrap();
    let url = app.text[0].trim_start_matches("listening on ").to_string();

    // The app's own route still answers beside Socket.IO.
    let home = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(home.contains("foreign app"), "{home}");

    let mut alice = collector(&url, "key-a");
    let mut bob = collector(&url, "key-b");
    let http = reqwest::Client::new();
    // Bob's first: were users not isolated, alice's first notification would be his.
    for (user, message) in [("bob", "for bob"), ("alice", "for alice")] {
        let response = http
            .post(format!("{url}/notify/{user}"))
            .body(message)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
    for (client, message) in [(&mut alice, "for alice"), (&mut bob, "for bob")] {
        let event = client
            .wait_for(Duration::from_secs(30), |line| {
                line["name"] == "order_notification"
            })
            .unwrap();
        assert_eq!(event["data"]["message"], message, "{event}");
        assert_eq!(event["data"]["symbol"], "DEMO");
        assert!(event["data"]["seq"].as_u64().is_some(), "{event}");
        assert!(event["data"]["event_id"].is_string(), "{event}");
    }

    // A key the app does not know is refused with a reason.
    let mut stranger = PeerProcess::socketio_login_attempt(&url, "key-unknown").unwrap();
    let refused = stranger
        .wait_for(Duration::from_secs(30), |line| {
            line["type"] == "connect" || line["type"] == "connect_error"
        })
        .unwrap();
    assert_eq!(refused["type"], "connect_error", "{refused}");
}
