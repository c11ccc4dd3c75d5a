//! ESB commands in process: the same validation and order service as REST, at most once per
//! id, offsets and results in the store (a real SQLite file); only for users who exist, have
//! an active key and allowed ESB control; the REST rate limits counted per user.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use oa_api::esb::{
    EsbOutcome, EsbPosition, EsbRequest, MAX_ACK_DATA_BYTES, OUTCOME_UNKNOWN, OffsetKey,
    OffsetWrite, RejectKind,
};
use oa_api::{Api, ApiConfig, StaticSymbols};
use oa_events_core::EventPublisher;
use serde_json::{Map, Value, json};

const GROUP: &str = "g";
const TOPIC: &str = "esb";

async fn api(dir: &common::StoreDir) -> Api {
    api_with(dir, ApiConfig::default()).await
}

/// An API on a fresh store whose default user `admin` allowed ESB control.
async fn api_with(dir: &common::StoreDir, config: ApiConfig) -> Api {
    let store = common::store_config(dir);
    let config = ApiConfig {
        database_url: store.database_url,
        api_key_pepper: store.api_key_pepper,
        ..config
    };
    let symbols = StaticSymbols::new().with("NSE", "SBIN", 1.0);
    let api = common::static_api(config, EventPublisher::builder().build(), symbols).await;
    api.keys().set_esb_allowed("admin", true).await.unwrap();
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

/// The stored offset's key of `partition` of the test topic.
fn key(partition: i32) -> OffsetKey<'static> {
    OffsetKey {
        group: GROUP,
        topic: TOPIC,
        partition,
    }
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
    book.body().data.orders.len()
}

fn row(dir: &common::StoreDir, id: &str) -> Option<(String, String)> {
    let column = |name: &str| {
        dir.query_rows(&format!(
            "SELECT {name} FROM esb_commands WHERE id = '{id}'"
        ))
        .pop()
    };
    Some((column("status")?, column("response")?))
}

#[tokio::test]
async fn a_command_runs_once_per_id_and_stores_its_offset_with_the_result() {
    let dir = common::store_dir();
    let api = api(&dir).await;
    let esb = api.esb_commands();
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), None);

    let outcome = esb.execute(&place("c1"), &at(0, 5)).await.unwrap();
    assert_eq!(
        outcome,
        EsbOutcome::Executed {
            status: "success".into()
        }
    );
    assert_eq!(orders(&api).await, 1);
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(6));
    let (status, response) = row(&dir, "c1").unwrap();
    assert_eq!(status, "success");
    let response: Value = serde_json::from_str(&response).unwrap();
    assert!(response["orderid"].is_string(), "{response}");

    // Replayed (even at a later offset): not executed, the offset moves on.
    let replay = esb.execute(&place("c1"), &at(0, 9)).await.unwrap();
    assert_eq!(replay, EsbOutcome::Duplicate);
    assert_eq!(orders(&api).await, 1);
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(10));
    // Offsets are per partition and never move backwards.
    assert_eq!(esb.stored_offset(key(1)).await.unwrap(), None);
    esb.reject(None, RejectKind::Invalid, "late", &at(0, 3))
        .await
        .unwrap();
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(10));
}

#[tokio::test]
async fn unknown_users_and_invalid_data_are_rejected_without_writing_anything() {
    let dir = common::store_dir();
    let api = api(&dir).await;
    let esb = api.esb_commands();

    let mut ghost = place("g1");
    ghost.user_id = "ghost".into();
    let EsbOutcome::Rejected { kind, reason } = esb.execute(&ghost, &at(0, 0)).await.unwrap()
    else {
        panic!("an unknown user must be rejected");
    };
    assert_eq!(kind, RejectKind::Unauthenticated);
    assert!(reason.contains("unknown user_id \"ghost\""), "{reason}");

    let invalid = request(
        "bad",
        "modify_order",
        "admin",
        json!({"strategy": "s", "apikey": "k"}),
    );
    let EsbOutcome::Rejected { kind, reason } = esb.execute(&invalid, &at(0, 1)).await.unwrap()
    else {
        panic!("invalid data must be rejected");
    };
    assert_eq!(kind, RejectKind::Invalid);
    assert!(reason.starts_with("apikey: unknown field"), "{reason}");
    assert_eq!(row(&dir, "bad"), None);
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), None);

    // Once dead-lettered, the consumer records it: the id is done, the offset moves.
    esb.reject(Some(&invalid), kind, &reason, &at(0, 1))
        .await
        .unwrap();
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(2));
    assert_eq!(row(&dir, "bad").unwrap().0, "rejected");
    assert_eq!(
        esb.execute(&invalid, &at(0, 2)).await.unwrap(),
        EsbOutcome::Duplicate
    );
    assert_eq!(orders(&api).await, 0);
}

#[tokio::test]
async fn a_command_interrupted_by_a_crash_is_reported_as_unknown_and_never_rerun() {
    let dir = common::store_dir();
    let api = api(&dir).await;
    let esb = api.esb_commands();
    // What a crash between the claim and the result leaves behind.
    dir.execute(
        r#"INSERT INTO esb_commands (id, user_id, event_type, status, response, topic, partition, "offset", created_at)
           VALUES ('c9', 'admin', 'place_order', 'started', 'null', 'esb', 0, 4, 'now')"#,
    );
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
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(5));
}

#[tokio::test]
async fn an_acknowledgment_is_recorded_without_order_effect() {
    let dir = common::store_dir();
    let api = api(&dir).await;
    let esb = api.esb_commands();
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
    assert_eq!(esb.stored_offset(key(2)).await.unwrap(), Some(1));
}

/// Opens the same store file the way `oa-server esb allow|deny` and `apikey revoke` do: a
/// separate key store with its own connection.
fn operator(dir: &common::StoreDir) -> oa_api::KeyStore {
    oa_api::KeyStore::open(
        dir.location(),
        common::PEPPER,
        "simulator",
        4,
        std::time::Duration::from_secs(1),
        EventPublisher::builder().build(),
    )
    .unwrap()
}

#[tokio::test]
async fn users_who_did_not_allow_esb_or_are_disabled_are_refused_and_nothing_is_recorded() {
    let dir = common::store_dir();
    let api = api(&dir).await;
    let esb = api.esb_commands();
    let operator = operator(&dir);
    operator.create_user_key("quiet").await.unwrap();
    let mut quiet = place("q1");
    quiet.user_id = "quiet".into();
    let EsbOutcome::Rejected { kind, reason } = esb.execute(&quiet, &at(0, 0)).await.unwrap()
    else {
        panic!("ESB control is off by default");
    };
    assert_eq!(kind, RejectKind::Unauthenticated);
    assert!(reason.contains("has not allowed ESB control"), "{reason}");
    assert!(
        reason.contains("oa-server esb allow --user quiet"),
        "{reason}"
    );
    // Recording the refusal stores the offset only: the id stays free, no result is made.
    esb.reject(Some(&quiet), kind, &reason, &at(0, 0))
        .await
        .unwrap();
    assert_eq!(row(&dir, "q1"), None);
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(1));

    // Allowed from "another process": the next command sees it.
    operator.set_esb_allowed("quiet", true).await.unwrap();
    assert_eq!(
        esb.execute(&quiet, &at(0, 1)).await.unwrap(),
        EsbOutcome::Executed {
            status: "success".into()
        }
    );
    // Denied again, then allowed but with the key revoked: disabled.
    operator.set_esb_allowed("quiet", false).await.unwrap();
    let mut again = place("q2");
    again.user_id = "quiet".into();
    assert!(matches!(
        esb.execute(&again, &at(0, 2)).await.unwrap(),
        EsbOutcome::Rejected {
            kind: RejectKind::Unauthenticated,
            ..
        }
    ));
    operator.set_esb_allowed("quiet", true).await.unwrap();
    operator.revoke_user_key("quiet").await.unwrap();
    let EsbOutcome::Rejected { kind, reason } = esb.execute(&again, &at(0, 3)).await.unwrap()
    else {
        panic!("a user without an active key is disabled");
    };
    assert_eq!(kind, RejectKind::Unauthenticated);
    assert!(reason.contains("is disabled"), "{reason}");
    assert_eq!(row(&dir, "q2"), None);
    assert!(matches!(
        operator.set_esb_allowed("ghost", true).await,
        Err(oa_api::KeyError::NoSuchUser(_))
    ));
    let listed = operator.list_users().await.unwrap();
    let quiet = listed.iter().find(|user| user.user_id == "quiet").unwrap();
    assert!(quiet.esb_allowed);
}

#[tokio::test]
async fn the_rest_order_rate_limit_applies_per_user_and_answers_with_the_429_body() {
    let dir = common::store_dir();
    let api = api_with(
        &dir,
        ApiConfig {
            order_rate_limit: "2 per minute".into(),
            ..ApiConfig::default()
        },
    )
    .await;
    let esb = api.esb_commands();
    for (offset, id) in ["r1", "r2"].into_iter().enumerate() {
        assert_eq!(
            esb.execute(&place(id), &at(0, offset as i64))
                .await
                .unwrap(),
            EsbOutcome::Executed {
                status: "success".into()
            }
        );
    }
    let EsbOutcome::Rejected { kind, reason } = esb.execute(&place("r3"), &at(0, 2)).await.unwrap()
    else {
        panic!("the third order within a minute is over ORDER_RATE_LIMIT");
    };
    assert_eq!(kind, RejectKind::RateLimited);
    esb.reject(Some(&place("r3")), kind, &reason, &at(0, 2))
        .await
        .unwrap();
    let (status, response) = row(&dir, "r3").unwrap();
    assert_eq!(status, "rejected");
    assert_eq!(response, oa_api::RATE_LIMIT_BODY);
    assert_eq!(orders(&api).await, 2);
    // A replayed id is a duplicate, not another count against the limit.
    assert_eq!(
        esb.execute(&place("r1"), &at(0, 3)).await.unwrap(),
        EsbOutcome::Duplicate
    );
}

#[tokio::test]
async fn an_oversized_acknowledgment_is_rejected_and_a_reset_offset_may_move_backwards() {
    let dir = common::store_dir();
    let api = api(&dir).await;
    let esb = api.esb_commands();
    let big = request(
        "big",
        "order_acknowledgment",
        "admin",
        json!({"note": "x".repeat(MAX_ACK_DATA_BYTES)}),
    );
    let EsbOutcome::Rejected { kind, reason } = esb.execute(&big, &at(0, 0)).await.unwrap() else {
        panic!("acknowledgment data over {MAX_ACK_DATA_BYTES} bytes must be rejected");
    };
    assert_eq!(kind, RejectKind::TooLarge);
    assert!(reason.contains("at most 4096"), "{reason}");
    assert_eq!(row(&dir, "big"), None);
    let fits = request(
        "fits",
        "order_acknowledgment",
        "admin",
        json!({"note": "x".repeat(MAX_ACK_DATA_BYTES - 20)}),
    );
    assert_eq!(
        esb.execute(&fits, &at(0, 1)).await.unwrap(),
        EsbOutcome::Executed {
            status: "acknowledged".into()
        }
    );

    esb.save_offset(key(0), 1000, OffsetWrite::Advance)
        .await
        .unwrap();
    esb.save_offset(key(0), 3, OffsetWrite::Advance)
        .await
        .unwrap();
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(1000));
    esb.save_offset(key(0), 0, OffsetWrite::Replace)
        .await
        .unwrap();
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(0));
}
