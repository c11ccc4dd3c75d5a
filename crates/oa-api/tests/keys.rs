//! The revocation watcher against a real store (SQLite file, or PostgreSQL with
//! `OA_TEST_DATABASE=postgres`): key changes made by another process are announced (as
//! `password_change`) once.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use oa_api::KeyStore;
use oa_events_core::EventPublisher;

fn open(dir: &common::StoreDir, publisher: EventPublisher) -> KeyStore {
    KeyStore::open(
        dir.location(),
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
    let dir = common::store_dir();
    let publisher = EventPublisher::builder().build();
    let mut events = publisher.subscribe();
    let server_keys = open(&dir, publisher.clone());
    server_keys.create_user_key("alice").await.unwrap();
    server_keys.create_user_key("bob").await.unwrap();
    let watcher = server_keys.spawn_revocation_watcher();
    // Let the watcher read its starting point.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cli = open(&dir, EventPublisher::builder().build());
    // The 2 s of the revocation contract count from the committed change (the rotation's
    // Argon2 hashing before it is not the watcher's to bound).
    cli.rotate_user_key("alice").await.unwrap();
    let envelope = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("password_change within 2 s")
        .unwrap();
    assert_eq!(envelope.event_type(), "password_change");
    assert_eq!(envelope.user_id, "alice");

    // A change by the server itself: announced once, at once, not again by the watcher.
    server_keys.revoke_user_key("bob").await.unwrap();
    let envelope = events.recv().await.unwrap();
    assert_eq!(envelope.user_id, "bob");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(events.try_recv().is_err(), "announced twice");
    watcher.abort();
}

/// Key verification (the store lookup and Argon2) runs off the async workers: on a runtime
/// with a single thread, another task keeps running while keys are verified. Were the
/// verification done inline, each would finish within its first poll and the other task would
/// not run once before it ended; WebSocket and Socket.IO logins would then stall every
/// connection served by that worker for the length of an Argon2 verification. Three users'
/// keys are verified so that one scheduling accident cannot decide the outcome.
#[tokio::test(flavor = "current_thread")]
async fn verifying_a_key_leaves_the_async_worker_free_for_other_tasks() {
    let dir = common::store_dir();
    let issuer = open(&dir, EventPublisher::builder().build());
    let mut keys_of = Vec::new();
    for user in ["alice", "bob", "carol"] {
        keys_of.push((user, issuer.create_user_key(user).await.unwrap()));
    }
    // A fresh store: nothing cached, so each verification reads the store and runs Argon2.
    let keys = open(&dir, EventPublisher::builder().build());

    let mut turns_while_verifying = 0u64;
    for (user, key) in &keys_of {
        let done = std::sync::atomic::AtomicBool::new(false);
        let verify = async {
            let verified = keys.verify_key(key).await.unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            verified
        };
        let other_task = async {
            let mut turns = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                turns += 1;
                tokio::task::yield_now().await;
            }
            turns
        };
        let (verified, turns) = tokio::join!(verify, other_task);
        assert_eq!(verified.map(|found| found.user_id).as_deref(), Some(*user));
        turns_while_verifying += turns;
    }
    assert!(
        turns_while_verifying >= 1,
        "the other task never ran while three keys were verified"
    );
}

/// An edge's key store (`KeyStore::open_read_only`) verifies the keys a core manages on the
/// shared PostgreSQL store, sees a revocation at the next check even for a cached key,
/// cannot write (PostgreSQL refuses it in its read-only session), and refuses a store no
/// core has migrated yet, or a SQLite file.
#[tokio::test]
async fn an_edge_verifies_keys_read_only_and_sees_revocations_at_once() {
    let unmigrated = common::postgres_store_dir();
    let config = |dir: &common::StoreDir| oa_api::ApiConfig {
        api_key_pepper: "a-test-pepper-of-at-least-32-characters!!".to_string(),
        ..common::store_config(dir)
    };
    let refused = KeyStore::open_read_only(&config(&unmigrated), EventPublisher::builder().build())
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no oa schema yet"), "{refused}");
    let sqlite = KeyStore::open_read_only(
        &oa_api::ApiConfig {
            database_url: format!("sqlite:///{}", unmigrated.path().join("oa.db").display()),
            ..config(&unmigrated)
        },
        EventPublisher::builder().build(),
    )
    .unwrap_err()
    .to_string();
    assert!(sqlite.contains("PostgreSQL"), "{sqlite}");

    let dir = common::postgres_store_dir();
    let core = open(&dir, EventPublisher::builder().build());
    let alice = core.create_user_key("alice").await.unwrap();
    let edge = KeyStore::open_read_only(&config(&dir), EventPublisher::builder().build()).unwrap();
    let user = edge.verify_key(&alice).await.unwrap().unwrap();
    assert_eq!(user.user_id, "alice");
    // Cached now; the revocation on the core still bites at the next check.
    assert!(edge.verify_key(&alice).await.unwrap().is_some());
    assert!(edge.verify_key("not-a-key").await.unwrap().is_none());
    let written = edge
        .create_user_key("mallory")
        .await
        .unwrap_err()
        .to_string();
    assert!(written.contains("read-only"), "{written}");
    core.revoke_user_key("alice").await.unwrap();
    assert!(edge.verify_key(&alice).await.unwrap().is_none());
    assert!(
        core.list_users()
            .await
            .unwrap()
            .iter()
            .all(|user| user.user_id != "mallory"),
        "the edge wrote nothing"
    );
}

/// A key change beside a server that holds the SQLite write lock (a loaded server commits
/// back to back; `oa-server apikey ...` is another process on the same file) waits for the
/// lock instead of failing with "database is locked" after a few seconds; opening a store
/// that is up to date takes no write lock at all.
#[tokio::test]
async fn a_key_change_waits_for_another_connections_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oa.db");
    drop(open_sqlite(&path)); // creates and migrates the file
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Opening while the lock is held: no write lock needed for an up-to-date store.
    let cli = open_sqlite(&path);
    // Longer than the 5 s a connection used to wait.
    let held_for = Duration::from_secs(7);
    let started = std::time::Instant::now();
    let release = std::thread::spawn(move || {
        std::thread::sleep(held_for);
        holder.execute_batch("COMMIT").unwrap();
    });
    let key = cli.create_user_key("carol").await.unwrap();
    assert!(
        started.elapsed() >= held_for,
        "wrote while the lock was held"
    );
    assert!(!key.is_empty());
    release.join().unwrap();
}

fn open_sqlite(path: &std::path::Path) -> KeyStore {
    KeyStore::open(
        path,
        "a-test-pepper-of-at-least-32-characters!!",
        "simulator",
        100,
        Duration::from_secs(300),
        EventPublisher::builder().build(),
    )
    .unwrap()
}
