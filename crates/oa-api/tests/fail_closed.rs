//! Fail closed: when a commit fails and the engine cannot reload its state from the store, it
//! stops taking writes (503 naming the cause) while reads keep answering; once the store can
//! be read again, writes resume. The fault is real: another connection moves the `orders`
//! table away under the running server (as a bad manual migration or a partial restore
//! would), so the commit and the reload both fail inside the database (SQLite or
//! PostgreSQL).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use oa_api::EngineHandle;
use serde_json::{Value, json};

fn order(quantity: &str) -> Value {
    json!({"strategy": "test", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
           "quantity": quantity, "pricetype": "MARKET", "product": "MIS"})
}

/// A server with SBIN quoted and one order placed (its answer returned), and its engine.
async fn start_with_an_order() -> (common::Server, Value, EngineHandle) {
    let server = common::start_quoting("SBIN", 812.5, 812.4, 812.6).await;
    let placed = server.ok("placeorder", order("1")).await;
    let engine = server.api.service().engine().clone();
    (server, placed, engine)
}

/// The store's own words for the missing `orders` table (SQLite, PostgreSQL).
fn names_the_missing_table(reason: &str) -> bool {
    reason.contains("no such table: orders")
        || reason.contains(r#"relation "orders" does not exist"#)
}

#[tokio::test]
async fn a_failed_commit_with_a_failed_reload_stops_writes_until_the_store_is_readable() {
    let (server, placed, engine) = start_with_an_order().await;
    assert_eq!(engine.writes_stopped(), None);

    server
        .dir
        .execute("ALTER TABLE orders RENAME TO orders_moved_away");

    // The commit fails (500: the outcome is known, nothing was stored), and so does the reload.
    let (status, body) = server.call("placeorder", order("2")).await;
    assert_eq!(status, 500, "{body}");
    let reason = engine.writes_stopped().expect("writes stop");
    assert!(names_the_missing_table(&reason), "{reason}");

    // Every order-changing endpoint now answers 503 with the reason.
    let basket = json!({"strategy": "test", "orders": [{"exchange": "NSE", "symbol": "SBIN",
        "action": "BUY", "quantity": "1", "pricetype": "MARKET", "product": "MIS"}]});
    let mut split = order("4");
    split["splitsize"] = json!("2");
    for (path, body) in [
        ("placeorder", order("3")),
        ("cancelallorder", json!({"strategy": "test"})),
        ("closeposition", json!({"strategy": "test"})),
        ("basketorder", basket),
        ("splitorder", split),
        ("analyzer/toggle", json!({"mode": true})),
    ] {
        let (status, body) = server.call(path, body).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("The order engine stopped taking writes"),
            "{path}: {body}"
        );
    }
    // Reads keep answering from memory.
    let book = server.ok("orderbook", json!({})).await;
    let ids: Vec<&str> = book["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|order| order["orderid"].as_str())
        .collect();
    assert!(ids.contains(&placed["orderid"].as_str().unwrap()), "{book}");
    server.ok("funds", json!({})).await;
    server.ok("positionbook", json!({})).await;

    // Repaired: the next request after the retry interval reloads and writes resume.
    server
        .dir
        .execute("ALTER TABLE orders_moved_away RENAME TO orders");
    let deadline = Instant::now() + Duration::from_secs(20);
    let resumed = loop {
        let (status, body) = server.call("placeorder", order("5")).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes did not resume");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(engine.writes_stopped(), None);
    let book = server.ok("orderbook", json!({})).await;
    let quantities: Vec<&Value> = book["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|order| &order["quantity"])
        .collect();
    // The first order and the one after recovery; nothing of the failed batch.
    assert_eq!(quantities.len(), 2, "{book}");
    assert_ne!(resumed["orderid"], placed["orderid"]);
}

/// A job that panics rolls its batch back and the engine reloads; when that reload fails too,
/// the engine stops taking writes naming the panic as the cause, instead of going on with
/// memory the store may not match. Repaired, it takes writes again.
#[tokio::test]
async fn a_panicked_job_with_a_failed_reload_stops_writes_until_the_store_is_readable() {
    let (server, _, engine) = start_with_an_order().await;

    server
        .dir
        .execute("ALTER TABLE orders RENAME TO orders_moved_away");
    let panicked = engine.run(|_| -> u32 { panic!("a bug in a job") }).await;
    assert!(panicked.is_err(), "the panicked job's caller gets an error");

    // The caller hears of the panic while the batch unwinds; the reload follows it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let reason = loop {
        if let Some(reason) = engine.writes_stopped() {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not stop after the failed reload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reason.contains("after a job panicked"), "{reason}");
    assert!(names_the_missing_table(&reason), "{reason}");
    let (status, body) = server.call("placeorder", order("2")).await;
    assert_eq!(status, 503, "{body}");
    server.ok("funds", json!({})).await;

    server
        .dir
        .execute("ALTER TABLE orders_moved_away RENAME TO orders");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.call("placeorder", order("3")).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes did not resume");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(engine.writes_stopped(), None);
}

/// The Kafka relay's delivered marks are written by the engine (in its group commit, not on a
/// connection of their own that waits for SQLite's write lock behind every order commit), so
/// an engine that stopped taking writes marks nothing either: the rows stay pending and are
/// sent again once writes resume (same envelope ids), never dropped.
#[cfg(feature = "kafka")]
#[tokio::test]
async fn relay_marks_go_through_the_engine_and_stop_with_its_writes() {
    use oa_api::kafka_outbox::StoreOutbox;
    use oa_api::outbox::OutboxTable;
    use oa_events_kafka::Outbox;

    let (server, _, engine) = start_with_an_order().await;
    let outbox = StoreOutbox::new(OutboxTable::open(server.dir.location()).unwrap());
    outbox.mark_through_engine(engine.clone());
    let envelope = |message: &str| {
        std::sync::Arc::new(oa_events_core::Envelope::new(
            oa_events_core::Event::for_user(
                "u1",
                oa_events_core::catalog::OrderNotification::info("SBIN", message.to_string()),
            ),
        ))
    };
    outbox
        .append(&[envelope("first"), envelope("second")])
        .await
        .unwrap();
    let pending = outbox.pending(10).await.unwrap();
    assert_eq!(pending.len(), 2);
    outbox.mark_delivered(&[pending[0].seq]).await.unwrap();
    assert_eq!(outbox.backlog().await.unwrap(), 1);

    // The engine stops taking writes (see the tests above); the relay's mark is refused with
    // the engine's reason and the row stays pending.
    server
        .dir
        .execute("ALTER TABLE orders RENAME TO orders_moved_away");
    let (status, body) = server.call("placeorder", order("2")).await;
    assert_eq!(status, 500, "{body}");
    assert!(engine.writes_stopped().is_some());
    let refused = outbox.mark_delivered(&[pending[1].seq]).await;
    assert!(
        refused.is_err(),
        "a mark while writes are stopped: {refused:?}"
    );
    assert_eq!(outbox.backlog().await.unwrap(), 1);
    assert_eq!(outbox.pending(10).await.unwrap()[0].seq, pending[1].seq);
}
