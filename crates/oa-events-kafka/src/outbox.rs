//! The transactional outbox the relay drains: the [`Outbox`] trait a store implements, and
//! [`MemoryOutbox`], a non-durable implementation for tests, benchmarks and services that
//! accept losing undelivered events on a crash.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use oa_events_core::Envelope;
use parking_lot::Mutex;
use uuid::Uuid;

/// One undelivered event of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    /// Position in the outbox: strictly increasing in the order events were appended.
    pub seq: i64,
    /// The event, exactly as it goes on the wire.
    pub envelope: Arc<Envelope>,
}

/// The outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox holds its configured maximum of undelivered events.
    #[error("outbox full: {backlog} undelivered events (limit {limit})")]
    Full {
        /// Undelivered events now.
        backlog: u64,
        /// The configured bound.
        limit: u64,
    },
    /// The storage behind the outbox failed.
    #[error("outbox storage error: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl OutboxError {
    /// Wraps a storage error (SQLite, I/O, ...).
    pub fn storage(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        OutboxError::Storage(Box::new(error))
    }
}

/// Durable store of events waiting for Kafka, drained by the [`crate::KafkaRelay`].
///
/// The store writes an order's events into the outbox in the same transaction as the order
/// change, so an acknowledged order's events survive a crash. The relay reads pending rows in
/// `seq` order, produces them, and marks them delivered once the broker acknowledged them.
///
/// Contract:
/// - `seq` is strictly increasing in append order; `pending` returns the oldest undelivered
///   rows first.
/// - [`Outbox::append`] is idempotent by envelope `id`: the [`crate::KafkaSink`] calls it for
///   every published envelope, including those the store already wrote in the order's
///   transaction (and possibly already delivered: an id still known to the outbox, delivered
///   or not, is skipped), so that events published outside a store transaction (system
///   notifications) reach Kafka too.
/// - [`Outbox::mark_delivered`] of an unknown or already delivered `seq` is not an error.
/// - Delivered rows may be pruned whenever the store likes (after a retention period).
pub trait Outbox: Send + Sync + 'static {
    /// Appends envelopes whose `id` is not already in the outbox, in the given order.
    fn append<'a>(
        &'a self,
        envelopes: &'a [Arc<Envelope>],
    ) -> BoxFuture<'a, Result<(), OutboxError>>;

    /// Up to `limit` undelivered rows, oldest (`seq`) first.
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxRecord>, OutboxError>>;

    /// Marks rows delivered (the broker acknowledged them).
    fn mark_delivered<'a>(&'a self, seqs: &'a [i64]) -> BoxFuture<'a, Result<(), OutboxError>>;

    /// How many rows are undelivered.
    fn backlog(&self) -> BoxFuture<'_, Result<u64, OutboxError>>;
}

impl<T: Outbox + ?Sized> Outbox for Arc<T> {
    fn append<'a>(
        &'a self,
        envelopes: &'a [Arc<Envelope>],
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        (**self).append(envelopes)
    }
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxRecord>, OutboxError>> {
        (**self).pending(limit)
    }
    fn mark_delivered<'a>(&'a self, seqs: &'a [i64]) -> BoxFuture<'a, Result<(), OutboxError>> {
        (**self).mark_delivered(seqs)
    }
    fn backlog(&self) -> BoxFuture<'_, Result<u64, OutboxError>> {
        (**self).backlog()
    }
}

/// An in-memory [`Outbox`]. **Not durable**: undelivered events are lost when the process
/// exits. Bounded: `append` fails with [`OutboxError::Full`] beyond its capacity.
///
/// Right for tests, benchmarks, and services that publish to Kafka without a store; the
/// server in KAFKA mode uses its SQLite outbox instead. It forgets an id once delivered,
/// which is enough when the [`crate::KafkaSink`] is its only writer.
#[derive(Debug)]
pub struct MemoryOutbox {
    capacity: usize,
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    next_seq: i64,
    rows: BTreeMap<i64, Arc<Envelope>>,
    ids: HashSet<Uuid>,
}

impl MemoryOutbox {
    /// An outbox holding at most `capacity` undelivered events.
    pub fn new(capacity: usize) -> Self {
        MemoryOutbox {
            capacity: capacity.max(1),
            state: Mutex::new(MemoryState {
                next_seq: 1,
                ..MemoryState::default()
            }),
        }
    }

    /// Appends envelopes (skipping ids already pending) and returns how many were added.
    /// Appends what fits and then fails with [`OutboxError::Full`].
    pub fn push(&self, envelopes: &[Arc<Envelope>]) -> Result<usize, OutboxError> {
        let mut state = self.state.lock();
        let mut added = 0;
        for envelope in envelopes {
            if state.ids.contains(&envelope.id) {
                continue;
            }
            if state.rows.len() >= self.capacity {
                return Err(OutboxError::Full {
                    backlog: state.rows.len() as u64,
                    limit: self.capacity as u64,
                });
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            state.ids.insert(envelope.id);
            state.rows.insert(seq, Arc::clone(envelope));
            added += 1;
        }
        Ok(added)
    }

    /// Undelivered events now.
    pub fn len(&self) -> usize {
        self.state.lock().rows.len()
    }

    /// True when every appended event was delivered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Outbox for MemoryOutbox {
    fn append<'a>(
        &'a self,
        envelopes: &'a [Arc<Envelope>],
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        let result = self.push(envelopes).map(|_| ());
        Box::pin(async move { result })
    }

    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxRecord>, OutboxError>> {
        let rows = self
            .state
            .lock()
            .rows
            .iter()
            .take(limit)
            .map(|(seq, envelope)| OutboxRecord {
                seq: *seq,
                envelope: Arc::clone(envelope),
            })
            .collect();
        Box::pin(async move { Ok(rows) })
    }

    fn mark_delivered<'a>(&'a self, seqs: &'a [i64]) -> BoxFuture<'a, Result<(), OutboxError>> {
        {
            let mut state = self.state.lock();
            for seq in seqs {
                if let Some(envelope) = state.rows.remove(seq) {
                    state.ids.remove(&envelope.id);
                }
            }
        }
        Box::pin(async move { Ok(()) })
    }

    fn backlog(&self) -> BoxFuture<'_, Result<u64, OutboxError>> {
        let backlog = self.len() as u64;
        Box::pin(async move { Ok(backlog) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_events_core::Event;
    use oa_events_core::catalog::OrderNotification;

    fn envelope(user: &str) -> Arc<Envelope> {
        Arc::new(Envelope::new(Event::for_user(
            user,
            OrderNotification::info("SBIN", "m"),
        )))
    }

    #[tokio::test]
    async fn memory_outbox_is_ordered_idempotent_and_bounded() {
        let outbox = MemoryOutbox::new(3);
        let (a, b, c, d) = (envelope("u"), envelope("u"), envelope("v"), envelope("w"));
        outbox.append(&[a.clone(), b.clone()]).await.unwrap();
        outbox.append(&[a.clone(), c.clone()]).await.unwrap();
        assert_eq!(outbox.backlog().await.unwrap(), 3);
        let pending = outbox.pending(10).await.unwrap();
        let ids: Vec<Uuid> = pending.iter().map(|r| r.envelope.id).collect();
        assert_eq!(ids, vec![a.id, b.id, c.id]);
        assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(matches!(
            outbox.append(std::slice::from_ref(&d)).await,
            Err(OutboxError::Full {
                backlog: 3,
                limit: 3
            })
        ));
        outbox
            .mark_delivered(&[pending[0].seq, pending[1].seq, 999])
            .await
            .unwrap();
        assert_eq!(outbox.pending(10).await.unwrap()[0].envelope.id, c.id);
        outbox.append(&[d]).await.unwrap();
        assert_eq!(outbox.pending(1).await.unwrap().len(), 1);
        assert_eq!(outbox.backlog().await.unwrap(), 2);
    }
}
