//! Delivery fed by a durable, partitioned log (an edge reading the order-events topic): each
//! event's `seq` is its position in the log ([`LogPosition`]), so the offset a client holds
//! means the same on every server reading that log, and what it missed is read back from
//! the log ([`EventLog`]).

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use oa_events_core::Envelope;

/// Bits of a `seq` that hold the offset (+1); the partition is above them.
const OFFSET_BITS: u32 = 40;
/// Partitions a `seq` can name: the whole `seq` stays below 2^53, exact in JavaScript.
pub const MAX_LOG_PARTITIONS: i32 = 1 << 13;

/// Where an event is in the log: its partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The partition (the user's: one user's events are on one partition).
    pub partition: i32,
    /// The offset within the partition; `-1` is the position before the first record.
    pub offset: i64,
}

impl LogPosition {
    /// The `seq` clients receive for the event at this position:
    /// `partition * 2^40 + offset + 1`. `None` when the position cannot be written so
    /// (a partition >= [`MAX_LOG_PARTITIONS`] or an offset >= 2^40 - 1).
    pub fn to_seq(self) -> Option<u64> {
        let partition = u64::try_from(self.partition)
            .ok()
            .filter(|_| self.partition < MAX_LOG_PARTITIONS)?;
        let offset = u64::try_from(self.offset.checked_add(1)?)
            .ok()
            .filter(|offset| *offset < 1 << OFFSET_BITS)?;
        Some(partition << OFFSET_BITS | offset)
    }

    /// The position a `seq` names (the inverse of [`LogPosition::to_seq`]; `0` is the
    /// position before the first record of partition 0).
    pub fn from_seq(seq: u64) -> LogPosition {
        let partition = i32::try_from(seq >> OFFSET_BITS).unwrap_or(i32::MAX);
        let offset = i64::try_from(seq & ((1 << OFFSET_BITS) - 1)).unwrap_or(0) - 1;
        LogPosition { partition, offset }
    }
}

/// What [`EventLog::read`] is asked for: one user's events in a range of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery<'a> {
    /// Whose events.
    pub user_id: &'a str,
    /// The user's partition.
    pub partition: i32,
    /// The offsets to read (`from..until`).
    pub offsets: Range<i64>,
    /// At most this many events, the newest.
    pub limit: usize,
}

/// What [`EventLog::read`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRead {
    /// The earliest offset the partition still holds: what was asked for before it is gone.
    pub earliest: i64,
    /// The user's events in the range, in offset order (at most the `limit` newest).
    pub events: Vec<(i64, Envelope)>,
    /// User events left out for the `limit` (the oldest ones).
    pub left_out: u64,
    /// The offset of the newest event left out for the `limit`.
    pub left_out_through: Option<i64>,
}

/// The log could not be read (the broker is unreachable, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event log cannot be read: {reason}")]
pub struct LogError {
    /// What failed, for logs.
    pub reason: String,
}

/// A boxed future returned by [`EventLog::read`].
pub type LogReadFuture<'a> = Pin<Box<dyn Future<Output = Result<LogRead, LogError>> + Send + 'a>>;

/// A boxed future returned by [`EventLog::end`].
pub type LogEndFuture<'a> = Pin<Box<dyn Future<Output = Result<i64, LogError>> + Send + 'a>>;

/// The log a Socket.IO layer built with
/// [`SocketIoSink::fed_by_log`](crate::SocketIoSink::fed_by_log) is fed from.
pub trait EventLog: Send + Sync + 'static {
    /// The partition that holds `user_id`'s events.
    fn partition_of(&self, user_id: &str) -> i32;

    /// The events the query asks for, at most its `limit` newest (the offsets before the
    /// partition's earliest are skipped and reported).
    fn read<'a>(&'a self, query: LogQuery<'a>) -> LogReadFuture<'a>;

    /// The offset the next record of `partition` gets: a position before it exists even
    /// when this server has not read it yet.
    fn end(&self, partition: i32) -> LogEndFuture<'_>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_is_the_position_packed_below_two_to_the_53() {
        for (partition, offset) in [(0, -1), (0, 0), (3, 41), (8191, (1 << 40) - 2)] {
            let position = LogPosition { partition, offset };
            let seq = position.to_seq().unwrap();
            assert!(seq < 1 << 53, "{position:?}");
            assert_eq!(LogPosition::from_seq(seq), position);
        }
        assert_eq!(
            LogPosition {
                partition: 0,
                offset: 0
            }
            .to_seq(),
            Some(1)
        );
        assert_eq!(
            LogPosition {
                partition: 2,
                offset: 9
            }
            .to_seq(),
            Some((2 << 40) + 10),
            "seq arithmetic follows offsets within a partition"
        );
        assert_eq!(
            LogPosition::from_seq(0),
            LogPosition {
                partition: 0,
                offset: -1
            }
        );
        for (partition, offset) in [(8192, 0), (-1, 0), (0, 1 << 40), (0, -2)] {
            assert_eq!(
                LogPosition { partition, offset }.to_seq(),
                None,
                "{partition} {offset}"
            );
        }
    }
}
