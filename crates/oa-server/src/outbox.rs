//! Housekeeping of the store's outbox table (the relay's [`StoreOutbox`], from `oa-api`)
//! while the server runs.

use oa_api::kafka_outbox::StoreOutbox;
use oa_events_kafka::Outbox;

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

impl Maintenance {
    /// Runs the checks on `outbox` until the task is aborted.
    pub fn spawn(self, outbox: &StoreOutbox) -> tokio::task::JoinHandle<()> {
        let (outbox, maintenance) = (outbox.clone(), self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(maintenance.interval);
            loop {
                ticker.tick().await;
                let retention = chrono::Duration::from_std(maintenance.retention)
                    .unwrap_or(chrono::Duration::MAX);
                let cutoff = (chrono::Utc::now() - retention)
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                match outbox.prune_delivered_before(cutoff).await {
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
