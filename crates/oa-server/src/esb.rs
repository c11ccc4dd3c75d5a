//! The store's ESB command runner, adapted to the Kafka consumer's [`CommandExecutor`].
//!
//! `oa-events-kafka` owns the consumer and does not depend on `oa-api`, which owns the order
//! service and the store; the binary joins them.

use futures_util::future::BoxFuture;
use oa_api::esb::{
    EsbCommands, EsbOutcome, EsbPosition, EsbRequest, OffsetKey, OffsetWrite, RejectKind,
};
use oa_events_kafka::{
    CommandExecutor, DeadLetterCode, EsbMessage, Execution, ExecutorError, OffsetFuture,
    OffsetStore, OffsetStoreError, TopicPartition,
};

/// [`EsbCommands`] as the consumer's [`CommandExecutor`].
#[derive(Debug, Clone)]
pub struct StoreExecutor {
    commands: EsbCommands,
    /// `KAFKA_CONSUMER_GROUP`: whose offsets the consumer reads and resets.
    group: String,
}

impl StoreExecutor {
    /// Wraps the API's command runner; the consumer's offsets are kept under `group`.
    pub fn new(commands: EsbCommands, group: String) -> Self {
        StoreExecutor { commands, group }
    }

    fn write_offset<'a>(
        &'a self,
        at: TopicPartition<'a>,
        offset: i64,
        write: OffsetWrite,
    ) -> OffsetFuture<'a, ()> {
        Box::pin(async move {
            let saved = self.commands.save_offset(self.key(at), offset, write);
            saved.await.map_err(OffsetStoreError::new)
        })
    }

    fn key<'a>(&'a self, at: TopicPartition<'a>) -> OffsetKey<'a> {
        OffsetKey {
            group: &self.group,
            topic: at.topic,
            partition: at.partition,
        }
    }
}

fn request(message: &EsbMessage) -> EsbRequest {
    EsbRequest {
        id: message.id.clone(),
        event_type: message.event_type.clone(),
        user_id: message.user_id.clone(),
        data: message.data.clone(),
    }
}

fn code(kind: RejectKind) -> DeadLetterCode {
    match kind {
        RejectKind::Invalid => DeadLetterCode::Invalid,
        RejectKind::Unauthenticated => DeadLetterCode::Unauthenticated,
        RejectKind::Expired => DeadLetterCode::Expired,
        RejectKind::RateLimited => DeadLetterCode::RateLimited,
        RejectKind::TooLarge => DeadLetterCode::TooLarge,
    }
}

fn kind(code: DeadLetterCode) -> RejectKind {
    match code {
        DeadLetterCode::Invalid => RejectKind::Invalid,
        DeadLetterCode::Unauthenticated => RejectKind::Unauthenticated,
        DeadLetterCode::Expired => RejectKind::Expired,
        DeadLetterCode::RateLimited => RejectKind::RateLimited,
        DeadLetterCode::TooLarge => RejectKind::TooLarge,
    }
}

fn failed(error: oa_api::StoreError) -> ExecutorError {
    ExecutorError(error.to_string())
}

impl CommandExecutor for StoreExecutor {
    fn execute<'a>(
        &'a self,
        message: &'a EsbMessage,
        at: &'a EsbPosition,
    ) -> BoxFuture<'a, Result<Execution, ExecutorError>> {
        Box::pin(async move {
            let outcome = self
                .commands
                .execute(&request(message), at)
                .await
                .map_err(failed)?;
            Ok(match outcome {
                EsbOutcome::Executed { status } => Execution::Executed { status },
                EsbOutcome::Duplicate => Execution::Duplicate,
                EsbOutcome::Rejected { kind, reason } => Execution::Rejected {
                    code: code(kind),
                    reason,
                },
            })
        })
    }

    fn reject<'a>(
        &'a self,
        message: Option<&'a EsbMessage>,
        code: DeadLetterCode,
        reason: &'a str,
        at: &'a EsbPosition,
    ) -> BoxFuture<'a, Result<(), ExecutorError>> {
        Box::pin(async move {
            let request = message.map(request);
            self.commands
                .reject(request.as_ref(), kind(code), reason, at)
                .await
                .map_err(failed)
        })
    }
}

/// The ESB consumer's offsets, kept under the executor's consumer group in the server's store.
impl OffsetStore for StoreExecutor {
    fn load<'a>(&'a self, at: TopicPartition<'a>) -> OffsetFuture<'a, Option<i64>> {
        Box::pin(async move {
            let stored = self.commands.stored_offset(self.key(at));
            stored.await.map_err(OffsetStoreError::new)
        })
    }

    fn save<'a>(&'a self, at: TopicPartition<'a>, offset: i64) -> OffsetFuture<'a, ()> {
        self.write_offset(at, offset, OffsetWrite::Replace)
    }

    /// Never moves a stored offset backwards.
    fn save_start<'a>(&'a self, at: TopicPartition<'a>, offset: i64) -> OffsetFuture<'a, ()> {
        self.write_offset(at, offset, OffsetWrite::Advance)
    }
}
