//! What an order action records beside its state change, in the same transaction:
//! a request/response pair for the order log and the events to publish.
//!
//! A [`Journal`] is a hook a broker calls with the outcome of an action, inside the
//! transaction that stores the outcome; the envelopes of the [`Record`] it returns are written
//! to the outbox of that transaction (when durable) and published after it commits.

use oa_events_core::Event;
use serde_json::Value;

use crate::broker::BrokerError;
use crate::types::AccountMode;

/// One order-log row: the API request (without `apikey`) and the response body returned.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// The user.
    pub user_id: String,
    /// The mode the action ran in.
    pub mode: AccountMode,
    /// The endpoint ("placeorder", ...).
    pub api_type: &'static str,
    /// The request body without `apikey`.
    pub request: Value,
    /// The response body.
    pub response: Value,
    /// When the request carried an `Idempotency-Key`: the record that answers its retries,
    /// written with the log row.
    pub(crate) replay: Option<IdempotencyEntry>,
}

/// The first response to a request with an `Idempotency-Key`, as stored for its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyEntry {
    /// The user.
    pub user_id: String,
    /// The key as the client sent it.
    pub key: String,
    /// The stored fingerprint, status and body.
    pub row: crate::store::IdempotencyRow,
}

/// What an action records: an optional log row and the events it causes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// The order-log row.
    pub log: Option<LogEntry>,
    /// Events, in publication order.
    pub events: Vec<Event>,
}

impl Record {
    /// Records nothing.
    pub fn none() -> Self {
        Record::default()
    }
}

/// The hook a broker calls with an action's outcome, inside the transaction that stores it.
pub type Journal<T> = Box<dyn FnOnce(&Result<T, BrokerError>) -> Record + Send>;
