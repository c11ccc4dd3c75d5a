//! ESB commands in process: the same validation and order service as REST, at most once per
//! id, offsets and results in the store (a real SQLite file); only for users who exist, have
//! an active key and allowed ESB control; the REST rate limits counted per user.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use oa_api::esb::{
    EsbCommands, EsbOutcome, EsbPosition, EsbRequest, MAX_ACK_DATA_BYTES, OUTCOME_UNKNOWN,
    OffsetKey, OffsetWrite, RejectKind,
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

/// A `place_order` of `user`.
fn place_as(id: &str, user: &str) -> EsbRequest {
    let mut command = place(id);
    command.user_id = user.to_string();
    command
}

/// An `order_acknowledgment` of `admin` carrying `data`.
fn acknowledgment(id: &str, data: Value) -> EsbRequest {
    request(id, "order_acknowledgment", "admin", data)
}

/// The outcome of a command that ran and ended with `status`.
fn executed(status: &str) -> EsbOutcome {
    EsbOutcome::Executed {
        status: status.into(),
    }
}

/// Executes `command` at `position`, expecting a rejection of `kind`; returns its reason.
async fn rejection(
    esb: &EsbCommands,
    command: &EsbRequest,
    position: &EsbPosition,
    kind: RejectKind,
) -> String {
    match esb.execute(command, position).await.unwrap() {
        EsbOutcome::Rejected {
            kind: rejected,
            reason,
        } if rejected == kind => reason,
        other => {
            panic!("{command:?} at {position:?}: expected a {kind:?} rejection, got {other:?}")
        }
    }
}

/// A fresh store, the API over it and its ESB command handler.
async fn start() -> (common::StoreDir, Api, EsbCommands) {
    let dir = common::store_dir();
    let api = api(&dir).await;
    let esb = api.esb_commands();
    (dir, api, esb)
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
    let (dir, api, esb) = start().await;
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), None);

    let outcome = esb.execute(&place("c1"), &at(0, 5)).await.unwrap();
    assert_eq!(outcome, executed("success"));
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
    let (dir, api, esb) = start().await;

    let ghost = place_as("g1", "ghost");
    let kind = RejectKind::Unauthenticated;
    let reason = rejection(&esb, &ghost, &at(0, 0), kind).await;
    assert!(reason.contains("unknown user_id \"ghost\""), "{reason}");

    let invalid = request(
        "bad",
        "modify_order",
        "admin",
        json!({"strategy": "s", "apikey": "k"}),
    );
    let kind = RejectKind::Invalid;
    let reason = rejection(&esb, &invalid, &at(0, 1), kind).await;
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
    let (dir, api, esb) = start().await;
    // What a crash between the claim and the result leaves behind.
    dir.execute(
        r#"INSERT INTO esb_commands (id, user_id, event_type, status, response, topic, partition, "offset", created_at)
           VALUES ('c9', 'admin', 'place_order', 'started', 'null', 'esb', 0, 4, 'now')"#,
    );
    let outcome = esb.execute(&place("c9"), &at(0, 4)).await.unwrap();
    assert_eq!(outcome, executed("unknown"));
    assert_eq!(orders(&api).await, 0);
    let (status, response) = row(&dir, "c9").unwrap();
    assert_eq!(status, "error");
    let response: Value = serde_json::from_str(&response).unwrap();
    assert_eq!(response["message"], OUTCOME_UNKNOWN);
    assert_eq!(esb.stored_offset(key(0)).await.unwrap(), Some(5));
}

#[tokio::test]
async fn an_acknowledgment_is_recorded_without_order_effect() {
    let (dir, api, esb) = start().await;
    let ack = acknowledgment("a1", json!({"orderid": "123", "note": "booked"}));
    assert_eq!(
        esb.execute(&ack, &at(2, 0)).await.unwrap(),
        executed("acknowledged")
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
    let (dir, _api, esb) = start().await;
    let operator = operator(&dir);
    operator.create_user_key("quiet").await.unwrap();
    let quiet = place_as("q1", "quiet");
    let kind = RejectKind::Unauthenticated;
    let reason = rejection(&esb, &quiet, &at(0, 0), kind).await;
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
        executed("success")
    );
    // Denied again, then allowed but with the key revoked: disabled.
    operator.set_esb_allowed("quiet", false).await.unwrap();
    let again = place_as("q2", "quiet");
    rejection(&esb, &again, &at(0, 2), RejectKind::Unauthenticated).await;
    operator.set_esb_allowed("quiet", true).await.unwrap();
    operator.revoke_user_key("quiet").await.unwrap();
    let kind = RejectKind::Unauthenticated;
    let reason = rejection(&esb, &again, &at(0, 3), kind).await;
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
            executed("success")
        );
    }
    let kind = RejectKind::RateLimited;
    let reason = rejection(&esb, &place("r3"), &at(0, 2), kind).await;
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
    let (dir, _api, esb) = start().await;
    let big = acknowledgment("big", json!({"note": "x".repeat(MAX_ACK_DATA_BYTES)}));
    let kind = RejectKind::TooLarge;
    let reason = rejection(&esb, &big, &at(0, 0), kind).await;
    assert!(reason.contains("at most 4096"), "{reason}");
    assert_eq!(row(&dir, "big"), None);
    let fits = acknowledgment("fits", json!({"note": "x".repeat(MAX_ACK_DATA_BYTES - 20)}));
    assert_eq!(
        esb.execute(&fits, &at(0, 1)).await.unwrap(),
        executed("acknowledged")
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
