//! [`StoreOutbox`]: the store's outbox table ([`OutboxTable`]) as the Kafka relay's
//! [`Outbox`] (feature `kafka`). The server and the relay's tests and benchmark use this one
//! adapter; SQLite calls run on the blocking pool.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use oa_events_core::Envelope;
use oa_events_kafka::{Outbox, OutboxError, OutboxRecord};

use crate::outbox::OutboxTable;
use crate::store::StoreError;

/// [`OutboxTable`] as the relay's [`Outbox`].
#[derive(Debug, Clone)]
pub struct StoreOutbox {
    table: OutboxTable,
}

impl StoreOutbox {
    /// Wraps the store's outbox table.
    pub fn new(table: OutboxTable) -> Self {
        StoreOutbox { table }
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
        Box::pin(self.blocking(move |table| table.mark_delivered(&seqs)))
    }

    fn backlog(&self) -> BoxFuture<'_, Result<u64, OutboxError>> {
        Box::pin(self.blocking(|table| table.backlog()))
    }
}
