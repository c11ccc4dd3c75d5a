//! The SQLite backend: one file, WAL journal, `synchronous=FULL` by default ([`StoreSync`]:
//! every commit is on disk before it is acknowledged; `NORMAL` survives a process crash but
//! may lose the last commits on a power loss). `PRAGMA user_version` counts the migrations
//! applied.

use std::ops::ControlFlow;
use std::path::Path;

use oa_events_core::Envelope;
use oa_marketdata_core::candles::InstrumentBar;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Transaction, TransactionBehavior, params, params_from_iter};

use super::packs::{Pack, Packer};
use super::queries::{EVERY_MINUTE, append_envelopes};
use super::schema::SQLITE_TYPES;
use super::sql::{Backend, EachRow, Sql, StoredRow, Values, Work, bar_from};
use super::{Database, OutboxRow, Queries, StoreError, StoreSync, TxKind, now_text};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    schema!(
        SQLITE_TYPES,
        "
CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);",
        engine_tables!()
    ),
    schema!(SQLITE_TYPES, esb_tables!()),
    // Per-user consent to ESB control of the account (`oa-server esb allow|deny`), off by
    // default: commands for a user without it are dead-lettered `unauthenticated`.
    r#"
ALTER TABLE users ADD COLUMN esb_allowed INTEGER NOT NULL DEFAULT 0;
"#,
    schema!(SQLITE_TYPES, key_events_table!()),
    schema!(SQLITE_TYPES, idempotency_table!()),
    // 1-minute bars recorded from ticks (and backfilled by the simulated feed), served by
    // `history`; `time` is the bar's start in epoch seconds. Pruned by retention.
    schema!(SQLITE_TYPES, bars_table!("bars")),
    schema!(SQLITE_TYPES, rollup_tables!()),
    // Filled by `pack_every_bar`. A table with rowids: a row is kilobytes.
    schema!(SQLITE_TYPES, packed_bars_table!()),
];

/// How long a connection waits for another one's write lock before it fails with "database is
/// locked". The server's own connections and `oa-server apikey ...` run beside a busy server
/// share the file; SQLite's busy handler polls, so a waiting writer can miss many short gaps
/// between a loaded server's commits. Transactions here are short, so a long wait only
/// happens when the machine is overloaded, and then waiting beats failing an order or a key
/// change.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What SQL cannot express of a migration: (the migration's number, counted from 1, code
/// run right after its SQL in the same transaction).
type Fill = (usize, fn(&Connection) -> Result<(), StoreError>);

/// The fills of [`MIGRATIONS`].
const FILLS: &[Fill] = &[(PACKS_MIGRATION, pack_every_bar)];

/// The number of the migration that adds `bars_packed`.
pub(crate) const PACKS_MIGRATION: usize = 8;

/// Inserts a pack (see [`packs`](super::packs)).
const PACKED_INSERT: &str =
    "INSERT INTO bars_packed (exchange, symbol, time, data) VALUES (?1, ?2, ?3, ?4)";

/// Fills `bars_packed` from every stored 1-minute bar (the migration that adds it), inserting
/// each pack as soon as it is complete.
fn pack_every_bar(conn: &Connection) -> Result<(), StoreError> {
    let mut packer = Packer::default();
    conn.read_rows(EVERY_MINUTE, &[], &mut |row| {
        packer.push(row.text(0)?, row.text(1)?, bar_from(row, 2)?)?;
        conn.insert_packs(&packer.take_complete())?;
        Ok(ControlFlow::Continue(()))
    })?;
    conn.insert_packs(&packer.finish()?)
}

/// Opens (creating if needed) the database file with `synchronous=FULL`, sets WAL and
/// applies pending migrations.
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    open_with_sync(path, StoreSync::Full)
}

/// [`open`] with the given commit synchronisation.
pub(crate) fn open_with_sync(path: &Path, sync: StoreSync) -> Result<Connection, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|error| StoreError::Open {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
    }
    let mut conn = Connection::open(path).map_err(|error| StoreError::Open {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    conn.busy_timeout(LOCK_WAIT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.as_str())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -16_000)?;
    // Checkpoints (which fsync) run on a background thread (`checkpoint`), never inside an
    // order transaction's commit, where they stalled the engine for milliseconds.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Copies committed WAL frames into the database file without blocking writers
/// (`PRAGMA wal_checkpoint(PASSIVE)`). Returns (WAL frames, frames checkpointed).
pub(crate) fn checkpoint(conn: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })?)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    // A store that is up to date is not locked for writing: opening it (the server's extra
    // connections, an `apikey` command beside a running server) only reads the version.
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if usize::try_from(version).is_ok_and(|applied| applied >= MIGRATIONS.len()) {
        return Ok(());
    }
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the pending migrations up to number `last` (counted from 1) with their fills.
pub(crate) fn migrate_to(conn: &mut Connection, last: usize) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let start = usize::try_from(version).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().take(last).skip(start) {
        tx.execute_batch(sql)?;
        for (_, fill) in FILLS.iter().filter(|(number, _)| *number == index + 1) {
            fill(&tx)?;
        }
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tracing::info!(migration = index + 1, "applied store migration");
    }
    tx.commit()?;
    Ok(())
}

impl Backend for Connection {
    fn write(&self, sql: Sql, values: Values<'_>) -> Result<usize, StoreError> {
        Ok(self
            .prepare_cached(sql.sqlite)?
            .execute(params_from_iter(values))?)
    }

    fn read_rows(&self, sql: Sql, values: Values<'_>, each: EachRow<'_>) -> Result<(), StoreError> {
        let mut statement = self.prepare_cached(sql.sqlite)?;
        let mut rows = statement.query(params_from_iter(values))?;
        while let Some(row) = rows.next()? {
            if each(row)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    fn atomically(&self, work: Work<'_>) -> Result<(), StoreError> {
        let tx = Transaction::new_unchecked(self, TransactionBehavior::Deferred)?;
        work(&*tx)?;
        tx.commit()?;
        Ok(())
    }

    fn insert_bar_rows(
        &self,
        bars: &[InstrumentBar],
        overwrite: bool,
    ) -> Result<usize, StoreError> {
        let sql = if overwrite {
            "INSERT INTO bars (exchange, symbol, time, open, high, low, close, volume, oi)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)
             ON CONFLICT(exchange, symbol, time) DO UPDATE SET open = ?4, high = ?5, low = ?6,
             close = ?7, volume = ?8, oi = ?9"
        } else {
            "INSERT INTO bars (exchange, symbol, time, open, high, low, close, volume, oi)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT(exchange, symbol, time) DO NOTHING"
        };
        let mut statement = self.prepare_cached(sql)?;
        let mut written = 0;
        for item in bars {
            written += statement.execute(bar_params(item))?;
        }
        Ok(written)
    }

    fn insert_packs(&self, packs: &[Pack]) -> Result<(), StoreError> {
        let mut insert = self.prepare_cached(PACKED_INSERT)?;
        for pack in packs {
            insert.execute(params![pack.exchange, pack.symbol, pack.start, pack.data])?;
        }
        Ok(())
    }
}

/// The queries SQLite runs its own way; the others are [`Queries`]' own.
impl Queries for Connection {
    /// Deletes up to `limit` records created before `before_ms`; returns how many.
    fn prune_idempotency(&self, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
        Ok(self
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE rowid IN
                 (SELECT rowid FROM idempotency_keys WHERE created_ms < ?1 LIMIT ?2)",
            )?
            .execute(params![before_ms, limit as i64])?)
    }

    fn outbox_prepare(&self) -> Result<(), StoreError> {
        // The quarantine belongs to the relay's reader only, so it is created here rather
        // than as a store migration.
        self.execute_batch(schema!(SQLITE_TYPES, outbox_quarantine_table!()))?;
        Ok(())
    }

    fn outbox_append_if_absent(&self, envelopes: &[&Envelope]) -> Result<(), StoreError> {
        // Most envelopes are already there (the order's transaction wrote them): find the
        // missing ones with a read, so that the usual call takes no write lock. Waiting for
        // the write lock behind the engine's commits (SQLite's busy handler sleeps in steps
        // of milliseconds) would hold up every event behind this one.
        let missing: Vec<&Envelope> = {
            let mut exists = self.prepare_cached("SELECT 1 FROM outbox WHERE id = ?1")?;
            let mut missing = Vec::new();
            for envelope in envelopes {
                if !exists.exists([envelope.id.to_string()])? {
                    missing.push(*envelope);
                }
            }
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        append_envelopes(self, &missing)
    }

    fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let mut select = self.prepare_cached(
            "SELECT seq, id, payload FROM outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT ?1",
        )?;
        let mut rows = select.query([limit as i64])?;
        let mut pending = Vec::new();
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let id = match row.get_ref(1)? {
                ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
                other => format!("{other:?}"),
            };
            let payload = match row.get_ref(2)? {
                ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Ok(bytes.to_vec()),
                other => Err(format!("payload is {:?}, not JSON", other.data_type())),
            };
            pending.push(OutboxRow { seq, id, payload });
        }
        Ok(pending)
    }

    fn outbox_mark_delivered(&self, seqs: &[i64]) -> Result<(), StoreError> {
        // Inside the engine's batch transaction the marks join it; on a connection of their
        // own they get one transaction for the whole list.
        let own_transaction = if self.is_autocommit() {
            Some(Transaction::new_unchecked(
                self,
                TransactionBehavior::Deferred,
            )?)
        } else {
            None
        };
        {
            let now = now_text();
            let mut update = self.prepare_cached(
                "UPDATE outbox SET delivered_at = ?2 WHERE seq = ?1 AND delivered_at IS NULL",
            )?;
            for seq in seqs {
                update.execute(params![seq, now])?;
            }
        }
        if let Some(transaction) = own_transaction {
            transaction.commit()?;
        }
        Ok(())
    }
}

/// The values of a `bars` row for `?1..?9`: exchange, symbol, time, open, high, low, close,
/// volume, oi.
pub(crate) fn bar_params(item: &InstrumentBar) -> impl rusqlite::Params + '_ {
    let bar = &item.bar;
    (
        item.exchange.as_str(),
        item.symbol.as_str(),
        bar.time,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.oi,
    )
}

/// A SQLite connection as a [`Database`].
#[derive(Debug)]
pub(crate) struct SqliteDatabase {
    conn: Connection,
}

impl SqliteDatabase {
    /// Opens (creating if needed) the file with the given commit synchronisation.
    pub(crate) fn open(path: &Path, sync: StoreSync) -> Result<SqliteDatabase, StoreError> {
        Ok(SqliteDatabase {
            conn: open_with_sync(path, sync)?,
        })
    }
}

impl Database for SqliteDatabase {
    fn queries(&self) -> &dyn Queries {
        &self.conn
    }

    fn transaction(
        &mut self,
        kind: TxKind,
        work: &mut dyn FnMut(&dyn Queries) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let behavior = match kind {
            TxKind::Write => TransactionBehavior::Immediate,
            TxKind::Read => TransactionBehavior::Deferred,
        };
        let tx = Transaction::new_unchecked(&self.conn, behavior)?;
        work(&*tx)?;
        tx.commit()?;
        Ok(())
    }

    fn sqlite_connection(&self) -> Option<&Connection> {
        Some(&self.conn)
    }
}

impl StoredRow for rusqlite::Row<'_> {
    fn text(&self, index: usize) -> Result<&str, StoreError> {
        let value = self.get_ref(index)?;
        value.as_str().map_err(|_| wrong_type(self, index, value))
    }

    fn optional_text(&self, index: usize) -> Result<Option<&str>, StoreError> {
        let value = self.get_ref(index)?;
        value
            .as_str_or_null()
            .map_err(|_| wrong_type(self, index, value))
    }

    fn integer(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.get(index)?)
    }

    /// A REAL, or an INTEGER SQLite stored it as.
    fn real(&self, index: usize) -> Result<f64, StoreError> {
        Ok(self.get(index)?)
    }

    fn flag(&self, index: usize) -> Result<bool, StoreError> {
        Ok(self.get(index)?)
    }

    fn bytes(&self, index: usize) -> Result<&[u8], StoreError> {
        let value = self.get_ref(index)?;
        value.as_blob().map_err(|_| wrong_type(self, index, value))
    }
}

/// The error of reading column `index`, which holds `value`, as another type.
fn wrong_type(row: &rusqlite::Row<'_>, index: usize, value: ValueRef<'_>) -> StoreError {
    let name = row.as_ref().column_name(index).unwrap_or_default();
    rusqlite::Error::InvalidColumnType(index, name.to_string(), value.data_type()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_fully_synchronised_unless_normal_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.db");
        let synchronous = |conn: &Connection| -> i64 {
            conn.pragma_query_value(None, "synchronous", |row| row.get(0))
                .unwrap()
        };
        // SQLite's codes: 1 = NORMAL, 2 = FULL.
        assert_eq!(synchronous(&open(&path).unwrap()), 2);
        assert_eq!(
            synchronous(&open_with_sync(&path, StoreSync::Normal).unwrap()),
            1
        );
        assert_eq!(StoreSync::parse(" Normal "), Some(StoreSync::Normal));
        assert_eq!(StoreSync::parse("off"), None);
        assert_eq!(StoreSync::default(), StoreSync::Full);
    }
}
