//! Commands from an external system (the Kafka ESB consumer, docs/esb.md), run in process
//! exactly as the REST routes run them, at most once per command id.
//!
//! Each command costs three steps, the store writes of each in one transaction on the engine
//! worker:
//!
//! 1. dedupe and claim: a known id is not executed again (its offset is stored); a user who
//!    does not exist, is disabled (no active API key) or has not allowed ESB control, a
//!    command over the user's rate limit, invalid data or an oversized acknowledgment is
//!    rejected without writing anything (the caller dead-letters the record, then calls
//!    [`EsbCommands::reject`]); otherwise the id is recorded as `started`;
//! 2. the command runs through the order service (its own transaction, as over REST);
//! 3. its result is recorded, the `esb_command_result` event appended to the outbox and the
//!    consumer's next offset stored, in one transaction.
//!
//! A crash between 1 and 3 leaves the id `started`: when the record is read again it is not
//! executed a second time but answered with an error result saying its outcome is unknown
//! (it may or may not have placed the order). A crash never executes a command twice.

use std::sync::Arc;

use oa_events_core::Event;
use oa_events_core::catalog::{ESB_ACKNOWLEDGMENT, EsbCommandResult};
use serde_json::{Map, Value};

use crate::commands::{CommandKind, read_command, run_command};
use crate::config::RateLimits;
use crate::error::HttpError;
use crate::journal::Record;
use crate::ratelimit::UserRateLimiter;
use crate::service::OrderService;
use crate::store::{EsbAccess, EsbCommandRow, Queries, StoreError};
pub use crate::store::{OffsetKey, OffsetWrite};
pub use oa_events_core::EsbPosition;

/// Status of an id being executed.
const STARTED: &str = "started";
/// Message of a command whose execution was interrupted by a crash.
pub const OUTCOME_UNKNOWN: &str = "oa stopped while this command was executing; its outcome is unknown: check the orderbook before sending it again with a new id";

/// Largest `data` of an `order_acknowledgment`, serialized as JSON (4 KiB): larger ones are
/// rejected as [`RejectKind::TooLarge`] instead of being stored.
pub const MAX_ACK_DATA_BYTES: usize = 4096;

/// Why a command was not executed (the dead letter's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// Unreadable, or `data` fails the REST validation.
    Invalid,
    /// Not authenticated, or the user does not exist, is disabled or has not allowed ESB
    /// control: nothing about it is recorded or answered.
    Unauthenticated,
    /// The command's timestamp is too old (decided by the consumer).
    Expired,
    /// Over the user's rate limit (the REST limits, counted per user).
    RateLimited,
    /// An acknowledgment whose `data` exceeds [`MAX_ACK_DATA_BYTES`].
    TooLarge,
}

/// Stores the offset after the record at `position` (never moving it backwards), in `tx`.
fn advance(position: &EsbPosition, tx: &dyn Queries) -> Result<(), StoreError> {
    let key = OffsetKey {
        group: &position.group,
        topic: &position.topic,
        partition: position.partition,
    };
    tx.esb_save_offset(key, position.next_offset(), OffsetWrite::Advance)
}

/// An inbound command (or acknowledgment), already read from its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct EsbRequest {
    /// The command id.
    pub id: String,
    /// An ESB command name (`place_order`, ...) or `order_acknowledgment`.
    pub event_type: String,
    /// The user it runs as.
    pub user_id: String,
    /// The REST body without `apikey`.
    pub data: Map<String, Value>,
}

/// What [`EsbCommands::execute`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsbOutcome {
    /// Executed (or recorded); `status` is the result's ("success", "error",
    /// "acknowledged").
    Executed {
        /// The result status.
        status: String,
    },
    /// Seen before: not executed again.
    Duplicate,
    /// Not executed, nothing stored.
    Rejected {
        /// The dead letter's code.
        kind: RejectKind,
        /// The reason (for invalid data, the REST error message).
        reason: String,
    },
}

/// The REST rate limits, counted per user for ESB commands.
#[derive(Debug, Clone)]
struct EsbLimiters {
    order: UserRateLimiter,
    smart_order: UserRateLimiter,
    api: UserRateLimiter,
}

impl EsbLimiters {
    /// The limiter of a command: `ORDER_RATE_LIMIT` for the order commands,
    /// `SMART_ORDER_RATE_LIMIT` for `place_smart_order`, `API_RATE_LIMIT` for
    /// acknowledgments.
    fn for_command(&self, event_type: &str) -> &UserRateLimiter {
        match CommandKind::from_esb_name(event_type) {
            Some(CommandKind::PlaceSmartOrder) => &self.smart_order,
            Some(_) => &self.order,
            None => &self.api,
        }
    }
}

/// Runs ESB commands on the order service and keeps the consumer's state in the store.
#[derive(Debug, Clone)]
pub struct EsbCommands {
    service: Arc<OrderService>,
    limiters: EsbLimiters,
}

enum Claim {
    Duplicate,
    Unknown { user_id: String, event_type: String },
    Refused(EsbAccess),
    RateLimited,
    Invalid,
    Claimed,
    Acknowledged,
}

/// The dead-letter reason of a user ESB commands may not act for.
fn refusal(user_id: &str, access: EsbAccess) -> String {
    match access {
        EsbAccess::NoSuchUser => format!("unknown user_id {user_id:?}: no such oa user"),
        EsbAccess::Disabled => {
            format!("user_id {user_id:?} is disabled: it has no active API key")
        }
        EsbAccess::NotAllowed | EsbAccess::Allowed => format!(
            "user_id {user_id:?} has not allowed ESB control of its account (oa-server esb allow --user {user_id})"
        ),
    }
}

/// The `status` of a result: "success" or "error".
type ResultStatus = &'static str;

fn result_event(
    id: &str,
    user_id: &str,
    command: &str,
    status: ResultStatus,
    response: &Value,
) -> Event {
    Event::for_user(
        user_id,
        EsbCommandResult {
            correlation_id: id.to_string(),
            command: command.to_string(),
            status: status.to_string(),
            response: response.clone(),
        },
    )
}

impl EsbCommands {
    /// Commands on `service` (the one the REST routes use), limited per user by `limits`
    /// (the REST rate limits).
    pub fn new(service: Arc<OrderService>, limits: RateLimits) -> Self {
        EsbCommands {
            service,
            limiters: EsbLimiters {
                order: UserRateLimiter::new(limits.order),
                smart_order: UserRateLimiter::new(limits.smart_order),
                api: UserRateLimiter::new(limits.api),
            },
        }
    }

    /// Executes `request` at most once per id (see the module docs).
    pub async fn execute(
        &self,
        request: &EsbRequest,
        position: &EsbPosition,
    ) -> Result<EsbOutcome, StoreError> {
        let is_ack = request.event_type == ESB_ACKNOWLEDGMENT;
        // Read and validate the body first (pure): the same reading as the REST route. Its
        // verdict applies once the user is known to allow ESB control.
        let command = if is_ack {
            let size = Value::Object(request.data.clone()).to_string().len();
            if size > MAX_ACK_DATA_BYTES {
                Err((
                    RejectKind::TooLarge,
                    format!(
                        "the order_acknowledgment data is {size} bytes of JSON; at most {MAX_ACK_DATA_BYTES} are accepted"
                    ),
                ))
            } else {
                Ok(None)
            }
        } else {
            let Some(kind) = CommandKind::from_esb_name(&request.event_type) else {
                return Ok(EsbOutcome::Rejected {
                    kind: RejectKind::Invalid,
                    reason: format!("unknown command {:?}", request.event_type),
                });
            };
            read_command(kind, request.data.clone(), false)
                .map(Some)
                .map_err(|error| (RejectKind::Invalid, error.message))
        };
        let claim = {
            let request = request.clone();
            let position = position.clone();
            let valid = command.is_ok();
            let limiter = self.limiters.for_command(&request.event_type).clone();
            self.service
                .engine()
                .run(move |ctx| -> Result<Claim, StoreError> {
                    let tx = ctx.tx();
                    if let Some(status) = tx.esb_command_status(&request.id)? {
                        if status == STARTED {
                            return Ok(Claim::Unknown {
                                user_id: request.user_id,
                                event_type: request.event_type,
                            });
                        }
                        advance(&position, tx)?;
                        return Ok(Claim::Duplicate);
                    }
                    let access = tx.esb_access(&request.user_id)?;
                    if access != EsbAccess::Allowed {
                        return Ok(Claim::Refused(access));
                    }
                    if !limiter.check(&request.user_id) {
                        return Ok(Claim::RateLimited);
                    }
                    if !valid {
                        return Ok(Claim::Invalid);
                    }
                    let (status, response) = if is_ack {
                        ("acknowledged", Value::Object(request.data.clone()))
                    } else {
                        (STARTED, Value::Null)
                    };
                    tx.esb_insert_command(&EsbCommandRow {
                        request: &request,
                        position: &position,
                        status,
                        response: &response.to_string(),
                    })?;
                    if is_ack {
                        advance(&position, tx)?;
                        return Ok(Claim::Acknowledged);
                    }
                    Ok(Claim::Claimed)
                })
                .await??
        };
        let (command, fields) = match claim {
            Claim::Duplicate => return Ok(EsbOutcome::Duplicate),
            Claim::Refused(access) => {
                return Ok(EsbOutcome::Rejected {
                    kind: RejectKind::Unauthenticated,
                    reason: refusal(&request.user_id, access),
                });
            }
            Claim::RateLimited => {
                return Ok(EsbOutcome::Rejected {
                    kind: RejectKind::RateLimited,
                    reason: format!(
                        "user_id {:?} is over its {} rate limit (the REST limits, counted per user)",
                        request.user_id, request.event_type
                    ),
                });
            }
            Claim::Invalid => {
                let (kind, reason) = match command {
                    Err(rejection) => rejection,
                    Ok(_) => (RejectKind::Invalid, "invalid command".to_string()),
                };
                return Ok(EsbOutcome::Rejected { kind, reason });
            }
            Claim::Acknowledged => {
                return Ok(EsbOutcome::Executed {
                    status: "acknowledged".to_string(),
                });
            }
            Claim::Unknown {
                user_id,
                event_type,
            } => {
                let response = HttpError::bad_request(OUTCOME_UNKNOWN).body();
                self.finish(
                    &request.id,
                    &user_id,
                    &event_type,
                    "error",
                    response,
                    position,
                )
                .await?;
                return Ok(EsbOutcome::Executed {
                    status: "unknown".to_string(),
                });
            }
            Claim::Claimed => match command {
                Ok(Some(read)) => read,
                Ok(None) | Err(_) => {
                    return Ok(EsbOutcome::Rejected {
                        kind: RejectKind::Invalid,
                        reason: "nothing to execute".to_string(),
                    });
                }
            },
        };
        let (status, response) = match run_command(
            &self.service,
            &request.user_id,
            command,
            fields.without_apikey(),
        )
        .await
        {
            Ok(reply) => ("success", reply.to_value()),
            Err(error) => ("error", error.body()),
        };
        self.finish(
            &request.id,
            &request.user_id,
            &request.event_type,
            status,
            response,
            position,
        )
        .await?;
        Ok(EsbOutcome::Executed {
            status: status.to_string(),
        })
    }

    /// Records the result, appends its event and stores the next offset, atomically.
    async fn finish(
        &self,
        id: &str,
        user_id: &str,
        event_type: &str,
        status: ResultStatus,
        response: Value,
        position: &EsbPosition,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let user_id = user_id.to_string();
        let event_type = event_type.to_string();
        let position = position.clone();
        self.service
            .engine()
            .run(move |ctx| -> Result<(), StoreError> {
                let tx = ctx.tx();
                tx.esb_finish_command(&id, status, &response.to_string())?;
                advance(&position, tx)?;
                ctx.record(Record {
                    log: None,
                    events: vec![result_event(&id, &user_id, &event_type, status, &response)],
                });
                Ok(())
            })
            .await?
    }

    /// Records a dead-lettered record and stores the next offset, atomically. For an
    /// authenticated command of a user who allows ESB control, its id is recorded (a replay
    /// is a duplicate) and an error `esb_command_result` is published: for
    /// [`RejectKind::RateLimited`] with the REST 429 body, otherwise carrying `reason`.
    /// Nothing but the offset is recorded for [`RejectKind::Unauthenticated`], so that an
    /// unauthenticated record can neither claim a command id nor reach a user's events.
    pub async fn reject(
        &self,
        request: Option<&EsbRequest>,
        kind: RejectKind,
        reason: &str,
        position: &EsbPosition,
    ) -> Result<(), StoreError> {
        let request = request
            .filter(|_| kind != RejectKind::Unauthenticated)
            .cloned();
        let response = match kind {
            RejectKind::RateLimited => HttpError::rate_limited(),
            _ => HttpError::bad_request(reason),
        }
        .body();
        let position = position.clone();
        self.service
            .engine()
            .run(move |ctx| -> Result<(), StoreError> {
                let mut event = None;
                if let Some(request) = &request {
                    let tx = ctx.tx();
                    if tx.esb_access(&request.user_id)? == EsbAccess::Allowed
                        && tx.esb_command_status(&request.id)?.is_none()
                    {
                        tx.esb_insert_command(&EsbCommandRow {
                            request,
                            position: &position,
                            status: "rejected",
                            response: &response.to_string(),
                        })?;
                        if request.event_type != ESB_ACKNOWLEDGMENT {
                            event = Some(result_event(
                                &request.id,
                                &request.user_id,
                                &request.event_type,
                                "error",
                                &response,
                            ));
                        }
                    }
                }
                advance(&position, ctx.tx())?;
                if let Some(event) = event {
                    ctx.record(Record {
                        log: None,
                        events: vec![event],
                    });
                }
                Ok(())
            })
            .await?
    }

    /// Stores the next offset of a consumer group's partition as `write` says: a consumer's
    /// start position ([`OffsetWrite::Advance`]), or a partition restarted from its earliest
    /// retained record ([`OffsetWrite::Replace`]).
    pub async fn save_offset(
        &self,
        key: OffsetKey<'_>,
        next_offset: i64,
        write: OffsetWrite,
    ) -> Result<(), StoreError> {
        self.on_offsets(key, move |tx, key| {
            tx.esb_save_offset(key, next_offset, write)
        })
        .await
    }

    /// The stored next offset of a consumer group's partition.
    pub async fn stored_offset(&self, key: OffsetKey<'_>) -> Result<Option<i64>, StoreError> {
        self.on_offsets(key, |tx, key| tx.esb_stored_offset(key))
            .await
    }

    /// Runs `job` on a stored offset in a transaction of the worker.
    async fn on_offsets<T, F>(&self, key: OffsetKey<'_>, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Queries, OffsetKey<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (group, topic, partition) = (key.group.to_owned(), key.topic.to_owned(), key.partition);
        self.service
            .engine()
            .run(move |ctx| {
                let key = OffsetKey {
                    group: &group,
                    topic: &topic,
                    partition,
                };
                job(ctx.tx(), key)
            })
            .await?
    }
}
