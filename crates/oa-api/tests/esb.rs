//! ESB commands in process: the same validation and order service as REST, at most once per
//! id, offsets and results in the store (a real SQLite file).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::sync::Arc;

use oa_api::esb::{EsbCommands, EsbOutcome, EsbPosition, EsbRequest, OUTCOME_UNKNOWN};
use oa_api::{Api, ApiConfig, PriceSource, StaticPrices, StaticSymbols};
use oa_events_core::EventPublisher;
use serde_json::{Map, Value, json};

const GROUP: &str = "g";
const TOPIC: &str = "esb";

async fn api(dir: &tempfile::TempDir) -> Api {
    let config = ApiConfig {
        database_url: format!("sqlite:///{}", dir.path().join("oa.db").display()),
        api_key_pepper: "p".repeat(40),
        ..ApiConfig::default()
    };
    let prices = StaticPrices::new();
    prices.set("NSE", "SBIN", 800.0, Some(799.0), Some(801.0));
    let prices: Arc<dyn PriceSource> = Arc::new(prices);
    let api = oa_api::build_with_sources(
        config,
        EventPublisher::builder().build(),
        prices,
        Arc::new(StaticSymbols::new().with("NSE", "SBIN", 1.0)),
    )
    .await
    .unwrap();
    api.ensure_default_user().await.unwrap();
    api
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn request(id: &str, event_type: &str, user: &str, data: Value) -> EsbRequest {
    EsbRequest {
        id: id.to_string(),
        event_type: event_type.to_string(),
        user_id: user.to_string(),
        data: object(data),
    }
}

fn place(id: &str) -> EsbRequest {
    request(
        id,
        "place_order",
        "admin",
        json!({"strategy": "s", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
            "quantity": "1", "product": "MIS", "pricetype": "MARKET"}),
    )
}

fn at(partition: i32, offset: i64) -> EsbPosition {
    EsbPosition {
        group: GROUP.to_string(),
        topic: TOPIC.to_string(),
        partition,
        offset,
    }
}

async fn orders(api: &Api) -> usize {
    let book = api.service().order_book("admin").await.unwrap();
    book["data"]["orders"].as_array().unwrap().len()
}

fn row(dir: &tempfile::TempDir, id: &str) -> Option<(String, String)> {
    let conn = rusqlite::Connection::open(dir.path().join("oa.db")).unwrap();
    conn.query_row(
        "SELECT status, response FROM esb_commands WHERE id = ?1",
        [id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .ok()
}

#[tokio::test]
async fn a_command_runs_once_per_id_and_stores_its_offset_with_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir).await;
    let esb = EsbCommands::new(Arc::clone(api.service()));
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 0).await.unwrap(), None);

    let outcome = esb.execute(&place("c1"), &at(0, 5)).await.unwrap();
    assert_eq!(
        outcome,
        EsbOutcome::Executed {
            status: "success".into()
        }
    );
    assert_eq!(orders(&api).await, 1);
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 0).await.unwrap(), Some(6));
    let (status, response) = row(&dir, "c1").unwrap();
    assert_eq!(status, "success");
    let response: Value = serde_json::from_str(&response).unwrap();
    assert!(response["orderid"].is_string(), "{response}");

    // Replayed (even at a later offset): not executed, the offset moves on.
    let replay = esb.execute(&place("c1"), &at(0, 9)).await.unwrap();
    assert_eq!(replay, EsbOutcome::Duplicate);
    assert_eq!(orders(&api).await, 1);
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 0).await.unwrap(), Some(10));
    // Offsets are per partition and never move backwards.
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 1).await.unwrap(), None);
    esb.reject(None, "late", &at(0, 3)).await.unwrap();
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 0).await.unwrap(), Some(10));
}

#[tokio::test]
async fn unknown_users_and_invalid_data_are_rejected_without_writing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir).await;
    let esb = EsbCommands::new(Arc::clone(api.service()));

    let mut ghost = place("g1");
    ghost.user_id = "ghost".into();
    let EsbOutcome::Rejected { reason } = esb.execute(&ghost, &at(0, 0)).await.unwrap() else {
        panic!("an unknown user must be rejected");
    };
    assert!(reason.contains("unknown user_id \"ghost\""), "{reason}");

    let invalid = request(
        "bad",
        "modify_order",
        "admin",
        json!({"strategy": "s", "apikey": "k"}),
    );
    let EsbOutcome::Rejected { reason } = esb.execute(&invalid, &at(0, 1)).await.unwrap() else {
        panic!("invalid data must be rejected");
    };
    assert!(reason.starts_with("apikey: unknown field"), "{reason}");
    assert_eq!(row(&dir, "bad"), None);
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 0).await.unwrap(), None);

    // Once dead-lettered, the consumer records it: the id is done, the offset moves.
    esb.reject(Some(&invalid), &reason, &at(0, 1))
        .await
        .unwrap();
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 0).await.unwrap(), Some(2));
    assert_eq!(row(&dir, "bad").unwrap().0, "rejected");
    assert_eq!(
        esb.execute(&invalid, &at(0, 2)).await.unwrap(),
        EsbOutcome::Duplicate
    );
    assert_eq!(orders(&api).await, 0);
}

#[tokio::test]
async fn a_command_interrupted_by_a_crash_is_reported_as_unknown_and_never_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir).await;
    let esb = EsbCommands::new(Arc::clone(api.service()));
    // What a crash between the claim and the result leaves behind.
    {
        let conn = rusqlite::Connection::open(dir.path().join("oa.db")).unwrap();
        conn.execute(
            "INSERT INTO esb_commands (id, user_id, event_type, status, response, topic, partition, offset, created_at)
             VALUES ('c9', 'admin', 'place_order', 'started', 'null', 'esb', 0, 4, 'now')",
            [],
        )
        .unwrap();
    }
    let outcome = esb.execute(&place("c9"), &at(0, 4)).await.unwrap();
    assert_eq!(
        outcome,
        EsbOutcome::Executed {
            status: "unknown".into()
        }
    );
    assert_eq!(orders(&api).await, 0);
    let (status, response) = row(&dir, "c9").unwrap();
    assert_eq!(status, "error");
    let response: Value = serde_json::from_str(&response).unwrap();
    assert_eq!(response["message"], OUTCOME_UNKNOWN);
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 0).await.unwrap(), Some(5));
}

#[tokio::test]
async fn an_acknowledgment_is_recorded_without_order_effect() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(&dir).await;
    let esb = EsbCommands::new(Arc::clone(api.service()));
    let ack = request(
        "a1",
        "order_acknowledgment",
        "admin",
        json!({"orderid": "123", "note": "booked"}),
    );
    assert_eq!(
        esb.execute(&ack, &at(2, 0)).await.unwrap(),
        EsbOutcome::Executed {
            status: "acknowledged".into()
        }
    );
    let (status, data) = row(&dir, "a1").unwrap();
    assert_eq!(status, "acknowledged");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap()["note"],
        "booked"
    );
    assert_eq!(orders(&api).await, 0);
    assert_eq!(esb.stored_offset(GROUP, TOPIC, 2).await.unwrap(), Some(1));
}
