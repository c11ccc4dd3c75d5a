//! The store's outbox table, adapted to the Kafka relay's [`Outbox`] trait.
//!
//! Neither library depends on the other (`oa-api` owns the table, `oa-events-kafka` the
//! relay), so the binary joins them. SQLite calls run on the blocking pool.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use oa_api::outbox::OutboxTable;
use oa_events_core::Envelope;
use oa_events_kafka::{Outbox, OutboxError, OutboxRecord};

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

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&OutboxTable) -> Result<T, oa_api::StoreError> + Send + 'static,
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

/// Housekeeping of the outbox table while the server runs: prunes delivered rows older than
/// the retention and warns while the undelivered backlog is above its threshold (the relay
/// exports the backlog as `oa_kafka_outbox_backlog`).
#[derive(Debug, Clone, Copy)]
pub struct Maintenance {
    /// Delivered rows are kept this long (for audits and re-reads), then deleted.
    pub retention: std::time::Duration,
    /// Undelivered rows above which a warning is logged at every check.
    pub warn_backlog: u64,
    /// How often the checks run.
    pub interval: std::time::Duration,
}

impl StoreOutbox {
    /// Runs [`Maintenance`] until the task is aborted.
    pub fn spawn_maintenance(&self, maintenance: Maintenance) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(maintenance.interval);
            loop {
                ticker.tick().await;
                let retention = chrono::Duration::from_std(maintenance.retention)
                    .unwrap_or(chrono::Duration::MAX);
                let cutoff = (chrono::Utc::now() - retention)
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                match outbox
                    .blocking(move |table| table.prune_delivered_before(&cutoff))
                    .await
                {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned delivered outbox rows"),
                    Err(error) => tracing::warn!(%error, "cannot prune the outbox"),
                }
                match outbox.backlog().await {
                    Ok(backlog) if backlog > maintenance.warn_backlog => tracing::warn!(
                        backlog,
                        threshold = maintenance.warn_backlog,
                        "Kafka outbox backlog is high: is the broker reachable? Orders are still accepted; their events wait on disk"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "cannot read the outbox backlog"),
                }
            }
        })
    }
}
