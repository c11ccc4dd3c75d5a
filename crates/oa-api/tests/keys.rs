//! The revocation watcher against a real SQLite file: key changes made by another process are
//! announced (as `password_change`) once.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use oa_api::KeyStore;
use oa_events_core::EventPublisher;

fn open(path: &std::path::Path, publisher: EventPublisher) -> KeyStore {
    KeyStore::open(
        path,
        "a-test-pepper-of-at-least-32-characters!!",
        "simulator",
        100,
        Duration::from_secs(300),
        publisher,
    )
    .unwrap()
}

/// A rotation written by another process (here: a second KeyStore on the same file, as
/// `oa-server apikey rotate` does) is announced by the watcher as `password_change` within a
/// second; the watcher's own process's changes are not announced twice.
#[tokio::test]
async fn the_watcher_announces_changes_made_by_another_process_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oa.db");
    let publisher = EventPublisher::builder().build();
    let mut events = publisher.subscribe();
    let server_keys = open(&path, publisher.clone());
    server_keys.create_user_key("alice").await.unwrap();
    server_keys.create_user_key("bob").await.unwrap();
    let watcher = server_keys.spawn_revocation_watcher();
    // Let the watcher read its starting point.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cli = open(&path, EventPublisher::builder().build());
    let started = Instant::now();
    cli.rotate_user_key("alice").await.unwrap();
    let envelope = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("password_change within 2 s")
        .unwrap();
    assert_eq!(envelope.event_type(), "password_change");
    assert_eq!(envelope.user_id, "alice");
    assert!(started.elapsed() < Duration::from_secs(1));

    // A change by the server itself: announced once, at once, not again by the watcher.
    server_keys.revoke_user_key("bob").await.unwrap();
    let envelope = events.recv().await.unwrap();
    assert_eq!(envelope.user_id, "bob");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(events.try_recv().is_err(), "announced twice");
    watcher.abort();
}
