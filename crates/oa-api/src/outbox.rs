//! [`OutboxTable`]: the store's side of the transactional outbox, for the Kafka relay.
//!
//! With `durable_outbox` on, the engine writes each order action's envelopes into the
//! `outbox` table in the same transaction as the order change (see [`crate::store`]). This
//! type reads that table from its own connection: the oldest undelivered rows, marking rows
//! delivered, the backlog, pruning, and appending envelopes published outside an order
//! transaction (idempotent by envelope id). `oa-server` adapts it to the relay's `Outbox`
//! trait.

use std::path::Path;
use std::sync::Arc;

use oa_events_core::Envelope;
use parking_lot::Mutex;
use rusqlite::{Connection, params};

use crate::store::{self, StoreError};

/// The outbox table, on a connection of its own (WAL: readers never block the engine).
#[derive(Debug, Clone)]
pub struct OutboxTable {
    conn: Arc<Mutex<Connection>>,
}

impl OutboxTable {
    /// Opens the store at `path` (applying migrations if needed).
    pub fn open(path: &Path) -> Result<OutboxTable, StoreError> {
        Ok(OutboxTable {
            conn: Arc::new(Mutex::new(store::open(path)?)),
        })
    }

    /// Appends envelopes not already in the outbox (by id), in the given order.
    pub fn append_if_absent(&self, envelopes: &[Arc<Envelope>]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (id, user_id, event_type, payload, created_at)
                 VALUES (?1,?2,?3,?4,?5)",
            )?;
            for envelope in envelopes {
                insert.execute(params![
                    envelope.id.to_string(),
                    envelope.user_id,
                    envelope.event_type(),
                    envelope.to_json_bytes(),
                    envelope.timestamp_rfc3339(),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` undelivered rows, oldest first, as (seq, envelope).
    pub fn pending(&self, limit: usize) -> Result<Vec<(i64, Envelope)>, StoreError> {
        let conn = self.conn.lock();
        let mut select = conn.prepare_cached(
            "SELECT seq, payload FROM outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT ?1",
        )?;
        let rows = select.query_map([limit as i64], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut pending = Vec::new();
        for row in rows {
            let (seq, payload) = row?;
            let envelope =
                Envelope::from_json_slice(&payload).map_err(|error| StoreError::Corrupt {
                    table: "outbox",
                    reason: format!("row {seq}: {error}"),
                })?;
            pending.push((seq, envelope));
        }
        Ok(pending)
    }

    /// Marks rows delivered (unknown or already delivered rows are ignored).
    pub fn mark_delivered(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let mut update = tx.prepare_cached(
                "UPDATE outbox SET delivered_at = ?2 WHERE seq = ?1 AND delivered_at IS NULL",
            )?;
            for seq in seqs {
                update.execute(params![seq, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// How many rows are undelivered.
    pub fn backlog(&self) -> Result<u64, StoreError> {
        let conn = self.conn.lock();
        let count: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")?
            .query_row([], |row| row.get(0))?;
        Ok(count.max(0) as u64)
    }

    /// Deletes delivered rows created before `cutoff` (RFC 3339); returns how many.
    pub fn prune_delivered_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        let conn = self.conn.lock();
        Ok(conn
            .prepare_cached(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND created_at < ?1",
            )?
            .execute([cutoff])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_events_core::Event;
    use oa_events_core::catalog::OrderNotification;

    fn envelope(n: usize) -> Arc<Envelope> {
        Arc::new(Envelope::new(Event::for_user(
            "u1",
            OrderNotification::info("SBIN", format!("m{n}")),
        )))
    }

    #[test]
    fn rows_flow_from_append_to_delivered_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let table = OutboxTable::open(&dir.path().join("oa.db")).unwrap();
        let envelopes: Vec<_> = (0..5).map(envelope).collect();
        table.append_if_absent(&envelopes).unwrap();
        // Idempotent by id.
        table.append_if_absent(&envelopes[..2]).unwrap();
        assert_eq!(table.backlog().unwrap(), 5);

        let pending = table.pending(3).unwrap();
        assert_eq!(pending.len(), 3);
        assert!(pending.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert_eq!(pending[0].1.id, envelopes[0].id);
        assert_eq!(pending[0].1.data, envelopes[0].data);
        table
            .mark_delivered(&pending.iter().map(|(seq, _)| *seq).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(table.backlog().unwrap(), 2);
        assert_eq!(table.pending(10).unwrap()[0].1.id, envelopes[3].id);

        let pruned = table
            .prune_delivered_before("9999-01-01T00:00:00Z")
            .unwrap();
        assert_eq!(pruned, 3);
        assert_eq!(table.backlog().unwrap(), 2);
    }

    #[test]
    fn a_corrupt_row_is_reported_with_its_seq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oa.db");
        let table = OutboxTable::open(&path).unwrap();
        store::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO outbox (id, user_id, event_type, payload, created_at) VALUES ('x','u','order_event',x'7b','now')",
                [],
            )
            .unwrap();
        let error = table.pending(10).unwrap_err();
        assert!(error.to_string().contains("outbox"), "{error}");
    }
}
