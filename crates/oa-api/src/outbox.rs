//! [`OutboxTable`]: the store's side of the transactional outbox, for the Kafka relay.
//!
//! With `durable_outbox` on, the engine writes each order action's envelopes into the
//! `outbox` table in the same transaction as the order change (see the `store` module). This
//! type reads that table from its own connection: the oldest undelivered rows, marking rows
//! delivered, the backlog, pruning, and appending envelopes published outside an order
//! transaction (idempotent by envelope id). `oa-server` adapts it to the relay's `Outbox`
//! trait.
//!
//! A row whose payload cannot be decoded (a damaged file, a manual edit) would stop Kafka
//! delivery for everyone if it were retried forever: [`OutboxTable::pending`] moves it aside
//! instead, into `outbox_quarantine` (with the reason), marks it delivered so the relay goes
//! on, logs its seq and id and counts it in `oa_kafka_outbox_quarantined_total`.
//!
//! Two connections, two commit disciplines. Appends are accepted events: they commit with
//! `synchronous=FULL`, so an acknowledged append survives a power loss. The relay's own
//! writes (delivered marks, quarantine moves, pruning) commit with `synchronous=NORMAL`: a
//! mark lost to a power loss only makes the relay send that row again, with the same envelope
//! id, which the at-least-once contract already allows. An fsync per delivered batch cost the
//! order-to-consumer latency hundreds of milliseconds (p50 470 ms against 26 ms). (SQLite
//! settings; on PostgreSQL both connections commit as the server is configured.) The server
//! goes further and has the order engine write the marks in its own group commits
//! (`kafka_outbox::StoreOutbox::mark_through_engine`), so they never wait for the write lock.

use std::sync::Arc;

use oa_events_core::Envelope;
use parking_lot::Mutex;

use crate::store::{self, Database, StoreError, StoreLocation, StoreSync};

/// The outbox table, on a connection of its own (SQLite WAL: readers never block the
/// engine).
#[derive(Clone)]
pub struct OutboxTable {
    /// Reads and the relay's bookkeeping (`synchronous=NORMAL`).
    conn: Arc<Mutex<Box<dyn Database>>>,
    /// [`OutboxTable::append_if_absent`] only (`synchronous=FULL`).
    append_conn: Arc<Mutex<Box<dyn Database>>>,
}

impl std::fmt::Debug for OutboxTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxTable").finish_non_exhaustive()
    }
}

impl OutboxTable {
    /// Opens the store at `location` (a SQLite path or a [`StoreLocation`]; applying
    /// migrations if needed). Blocking.
    pub fn open(location: impl Into<StoreLocation>) -> Result<OutboxTable, StoreError> {
        let location = location.into();
        let conn = store::open(&location, StoreSync::Normal)?;
        let append_conn = store::open(&location, StoreSync::Full)?;
        conn.queries().outbox_prepare()?;
        Ok(OutboxTable {
            conn: Arc::new(Mutex::new(conn)),
            append_conn: Arc::new(Mutex::new(append_conn)),
        })
    }

    /// Appends envelopes not already in the outbox (by id), in the given order; durable
    /// (`synchronous=FULL`) when it returns.
    pub fn append_if_absent(&self, envelopes: &[Arc<Envelope>]) -> Result<(), StoreError> {
        let envelopes: Vec<&Envelope> = envelopes.iter().map(Arc::as_ref).collect();
        self.append_conn
            .lock()
            .queries()
            .outbox_append_if_absent(&envelopes)
    }

    /// Up to `limit` undelivered rows, oldest first, as (seq, envelope). Rows that cannot be
    /// decoded are moved to `outbox_quarantine` (see the module documentation) and skipped.
    pub fn pending(&self, limit: usize) -> Result<Vec<(i64, Envelope)>, StoreError> {
        let conn = self.conn.lock();
        let mut pending = Vec::new();
        let mut undecodable = Vec::new();
        for row in conn.queries().outbox_pending(limit)? {
            let decoded = row.payload.and_then(|bytes| {
                Envelope::from_json_slice(&bytes).map_err(|error| error.to_string())
            });
            match decoded {
                Ok(envelope) => pending.push((row.seq, envelope)),
                Err(reason) => undecodable.push((row.seq, row.id, reason)),
            }
        }
        if !undecodable.is_empty() {
            conn.queries().outbox_quarantine(&undecodable)?;
            for (seq, id, reason) in &undecodable {
                tracing::error!(
                    seq,
                    id = %id,
                    %reason,
                    "undecodable outbox row moved to outbox_quarantine; Kafka delivery goes on without it"
                );
            }
            metrics::counter!("oa_kafka_outbox_quarantined_total")
                .increment(undecodable.len() as u64);
        }
        Ok(pending)
    }

    /// Rows moved to `outbox_quarantine`, as (seq, id, reason), oldest first.
    pub fn quarantined(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        self.conn.lock().queries().outbox_quarantined()
    }

    /// Marks rows delivered (unknown or already delivered rows are ignored).
    pub fn mark_delivered(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.conn.lock().queries().outbox_mark_delivered(seqs)
    }

    /// How many rows are undelivered.
    pub fn backlog(&self) -> Result<u64, StoreError> {
        self.conn.lock().queries().outbox_backlog()
    }

    /// Deletes delivered rows created before `cutoff` (RFC 3339); returns how many.
    pub fn prune_delivered_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        self.conn
            .lock()
            .queries()
            .outbox_prune_delivered_before(cutoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oa_events_core::Event;
    use oa_events_core::catalog::OrderNotification;

    /// A fresh store on the backend `OA_TEST_DATABASE` names: (folder, PostgreSQL database
    /// if any, location).
    fn fresh_store() -> (
        tempfile::TempDir,
        Option<oa_e2e::postgres::TestDatabase>,
        StoreLocation,
    ) {
        let dir = tempfile::tempdir().unwrap();
        if oa_e2e::postgres::test_backend_is_postgres() {
            let database = oa_e2e::postgres::TestDatabase::create().unwrap();
            let location = StoreLocation::Postgres(database.url().to_string());
            (dir, Some(database), location)
        } else {
            let location = StoreLocation::Sqlite(dir.path().join("oa.db"));
            (dir, None, location)
        }
    }

    fn envelope(n: usize) -> Arc<Envelope> {
        Arc::new(Envelope::new(Event::for_user(
            "u1",
            OrderNotification::info("SBIN", format!("m{n}")),
        )))
    }

    #[test]
    fn rows_flow_from_append_to_delivered_and_pruned() {
        let (_dir, _database, location) = fresh_store();
        let table = OutboxTable::open(&location).unwrap();
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

    /// SQLite's `synchronous` of a connection (1 = NORMAL, 2 = FULL); `None` on PostgreSQL.
    fn synchronous(conn: &Mutex<Box<dyn Database>>) -> Option<i64> {
        conn.lock().sqlite_connection().map(|conn| {
            conn.pragma_query_value(None, "synchronous", |row| row.get(0))
                .unwrap()
        })
    }

    #[test]
    fn appends_commit_with_full_sync_and_the_relays_marks_with_normal() {
        let dir = tempfile::tempdir().unwrap();
        let location = StoreLocation::Sqlite(dir.path().join("oa.db"));
        let table = OutboxTable::open(&location).unwrap();
        if matches!(location, StoreLocation::Sqlite(_)) {
            assert_eq!(synchronous(&table.append_conn), Some(2));
            assert_eq!(synchronous(&table.conn), Some(1));
        }
        // Both see the same table: an append is pending for the relay's connection at once.
        table.append_if_absent(&[envelope(0)]).unwrap();
        let pending = table.pending(10).unwrap();
        assert_eq!(pending.len(), 1);
        table.mark_delivered(&[pending[0].0]).unwrap();
        assert_eq!(table.backlog().unwrap(), 0);
    }

    /// The relay's append of envelopes the order's transaction already wrote must not wait
    /// for the write lock, which the engine holds through each commit's fsync.
    #[test]
    fn appending_envelopes_already_stored_takes_no_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oa.db");
        let table = OutboxTable::open(StoreLocation::Sqlite(path.clone())).unwrap();
        let envelopes: Vec<_> = (0..3).map(envelope).collect();
        table.append_if_absent(&envelopes).unwrap();
        // Another writer holds the write lock (as the engine does while it commits).
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        // Waiting for the lock would fail after the store's 5 s busy timeout
        // ("database is locked").
        table
            .append_if_absent(&envelopes)
            .expect("an append of stored envelopes needs no write lock");
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(table.backlog().unwrap(), 3);
    }

    #[test]
    fn an_undecodable_row_is_quarantined_and_the_others_still_flow() {
        let (_dir, database, location) = fresh_store();
        let table = OutboxTable::open(&location).unwrap();
        let envelopes: Vec<_> = (0..2).map(envelope).collect();
        table.append_if_absent(&envelopes[..1]).unwrap();
        // A payload that is not JSON, written from outside.
        let poison = "INSERT INTO outbox (id, user_id, event_type, payload, created_at) VALUES ('poison','u','order_event',{payload},'now')";
        match (&database, &location) {
            (Some(database), _) => {
                let bin = oa_e2e::postgres::bin_dir().unwrap();
                let sql = poison.replace("{payload}", r"'\x7b'::bytea");
                oa_e2e::postgres::psql(&bin, database.url(), &sql).unwrap();
            }
            (None, StoreLocation::Sqlite(path)) => {
                store::sqlite::open(path)
                    .unwrap()
                    .execute(&poison.replace("{payload}", "x'7b'"), [])
                    .unwrap();
            }
            (None, other) => panic!("unexpected store {other}"),
        }
        table.append_if_absent(&envelopes[1..]).unwrap();

        let pending = table.pending(10).unwrap();
        let ids: Vec<_> = pending.iter().map(|(_, envelope)| envelope.id).collect();
        assert_eq!(ids, [envelopes[0].id, envelopes[1].id]);
        let quarantined = table.quarantined().unwrap();
        assert_eq!(quarantined.len(), 1, "{quarantined:?}");
        assert_eq!(quarantined[0].1, "poison");
        assert!(!quarantined[0].2.is_empty());
        // It no longer counts as undelivered, and is not offered again.
        assert_eq!(table.backlog().unwrap(), 2);
        assert_eq!(table.pending(10).unwrap().len(), 2);
    }
}
