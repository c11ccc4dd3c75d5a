//! [`StoreOutbox`]: the store's outbox table ([`OutboxTable`]) as the Kafka relay's
//! [`Outbox`] (feature `kafka`). The server and the relay's tests and benchmark use this one
//! adapter; SQLite calls run on the blocking pool.
//!
//! Delivered marks are the relay's only frequent write. On their own connection they compete
//! for SQLite's single write lock with the order engine, which holds it through each commit's
//! fsync; a waiter sleeps in SQLite's busy handler (steps of up to 100 ms) even after the lock
//! is free, and every event behind the marked batch waits with it (order-to-consumer p50
//! 401 ms with `OA_STORE_SYNC=full`). Once the server hands it the engine
//! ([`StoreOutbox::mark_through_engine`]), marks are queued on the engine instead and commit in
//! its next group commit: no lock to wait for.

use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use oa_events_core::Envelope;
use oa_events_kafka::{Outbox, OutboxError, OutboxRecord};

use crate::engine::worker::EngineHandle;
use crate::outbox::OutboxTable;
use crate::store::StoreError;

/// [`OutboxTable`] as the relay's [`Outbox`]. Clones share the engine handed to
/// [`StoreOutbox::mark_through_engine`].
#[derive(Debug, Clone)]
pub struct StoreOutbox {
    table: OutboxTable,
    engine: Arc<OnceLock<EngineHandle>>,
}

impl StoreOutbox {
    /// Wraps the store's outbox table. Marks are written on the table's own connection until
    /// [`StoreOutbox::mark_through_engine`] is called.
    pub fn new(table: OutboxTable) -> Self {
        StoreOutbox {
            table,
            engine: Arc::new(OnceLock::new()),
        }
    }

    /// From now on (for this value and every clone), delivered marks are written by the order
    /// engine, in its next batch's transaction, instead of on the table's own connection (see
    /// the module documentation). The relay is started before the engine exists, hence a
    /// setter; a second call is ignored.
    pub fn mark_through_engine(&self, engine: EngineHandle) {
        let _ = self.engine.set(engine);
    }

    /// Deletes delivered rows written before `cutoff` (RFC 3339); returns how many.
    pub async fn prune_delivered_before(&self, cutoff: String) -> Result<usize, OutboxError> {
        self.blocking(move |table| table.prune_delivered_before(&cutoff))
            .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&OutboxTable) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let table = self.table.clone();
        match tokio::task::spawn_blocking(move || work(&table)).await {
            Ok(result) => result.map_err(OutboxError::storage),
            Err(error) => Err(OutboxError::storage(error)),
        }
    }
}

impl Outbox for StoreOutbox {
    fn append<'a>(
        &'a self,
        envelopes: &'a [Arc<Envelope>],
    ) -> BoxFuture<'a, Result<(), OutboxError>> {
        let envelopes = envelopes.to_vec();
        Box::pin(self.blocking(move |table| table.append_if_absent(&envelopes)))
    }

    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxRecord>, OutboxError>> {
        Box::pin(async move {
            let rows = self.blocking(move |table| table.pending(limit)).await?;
            Ok(rows
                .into_iter()
                .map(|(seq, envelope)| OutboxRecord {
                    seq,
                    envelope: Arc::new(envelope),
                })
                .collect())
        })
    }

    fn mark_delivered<'a>(&'a self, seqs: &'a [i64]) -> BoxFuture<'a, Result<(), OutboxError>> {
        let seqs = seqs.to_vec();
        Box::pin(async move {
            match self.engine.get() {
                Some(engine) => engine
                    .run(move |ctx| ctx.tx().outbox_mark_delivered(&seqs))
                    .await
                    .and_then(|marked| marked)
                    .map_err(OutboxError::storage),
                None => {
                    self.blocking(move |table| table.mark_delivered(&seqs))
                        .await
                }
            }
        })
    }

    fn backlog(&self) -> BoxFuture<'_, Result<u64, OutboxError>> {
        Box::pin(self.blocking(|table| table.backlog()))
    }
}
