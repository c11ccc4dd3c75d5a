//! API-key verification against a real SQLite file: it never blocks the async worker on the
//! store, and the revocation watcher announces key changes made by another process.

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

/// A verification that waits on a locked store must not stall the runtime's only worker: a
/// ticker on the same current-thread runtime keeps ticking.
#[test]
fn a_verification_waiting_on_the_store_does_not_block_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oa.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = open(&path, EventPublisher::builder().build());
    let key = runtime.block_on(keys.create_user_key("alice")).unwrap();
    assert!(runtime.block_on(keys.verify_key(&key)).unwrap().is_some());

    // Another process holds the database exclusively for a second.
    let (locked, lock_taken) = std::sync::mpsc::channel();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
                .unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE held (x); ")
                .unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(1000));
            conn.execute_batch("ROLLBACK").unwrap();
        })
    };
    lock_taken.recv().unwrap();

    let longest_gap = runtime.block_on(async {
        let verify = tokio::spawn({
            let keys = keys.clone();
            let key = key.clone();
            async move { keys.verify_key(&key).await }
        });
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        while !verify.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
            longest = longest.max(last.elapsed());
            last = Instant::now();
        }
        let verified = verify.await.unwrap();
        assert!(
            verified.unwrap().is_some(),
            "the key is valid once the lock is gone"
        );
        longest
    });
    holder.join().unwrap();
    assert!(
        longest_gap < Duration::from_millis(500),
        "the worker was blocked for {longest_gap:?}"
    );
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
