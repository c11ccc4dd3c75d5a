//! The SQLite backend: one file, WAL journal, `synchronous=FULL` by default ([`StoreSync`]:
//! every commit is on disk before it is acknowledged; `NORMAL` survives a process crash but
//! may lose the last commits on a power loss). `PRAGMA user_version` counts the migrations
//! applied.

use std::path::Path;

use oa_events_core::Envelope;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use oa_marketdata_core::candles::{Bar, InstrumentBar};

use super::packs::{PACK_SECONDS, PackScope, decode_into, pack_start};
use super::{
    BarRange, BarTable, Database, EsbAccess, IdempotencyRow, KeyEvent, KeyRow, OffsetKey,
    OffsetWrite, OutboxRow, Queries, StoreError, StoreSync, TxKind, UserKeyInfo, corrupt,
    instrument_spans, now_text, parse_book, parse_choice, parse_exchange,
};
use crate::engine::{Account, AccountKey, Order, Position, PositionKey, Trade};
use crate::requests::OrderFields;
use crate::types::{Action, OrderStatus, PriceType, Product};

/// The rebuild statements of `bars_hour` and `bars_day`.
fn rollup_statements(table: BarTable) -> Option<super::rollups::RollupSql> {
    match table {
        BarTable::Minutes | BarTable::Packs => None,
        BarTable::Hours => Some(rollup_sql!(
            "bars_hour",
            HOUR_BUCKET,
            "?1",
            "?2",
            "?3",
            "?4"
        )),
        BarTable::Days => Some(rollup_sql!("bars_day", DAY_BUCKET, "?1", "?2", "?3", "?4")),
    }
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(user_id),
    key_id      TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX api_keys_user ON api_keys(user_id);
CREATE TABLE settings (
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
CREATE TABLE orders (
    orderid             TEXT PRIMARY KEY,
    book                TEXT NOT NULL,
    user_id             TEXT NOT NULL,
    strategy            TEXT NOT NULL,
    exchange            TEXT NOT NULL,
    symbol              TEXT NOT NULL,
    action              TEXT NOT NULL,
    quantity            REAL NOT NULL,
    pricetype           TEXT NOT NULL,
    product             TEXT NOT NULL,
    price               REAL NOT NULL,
    trigger_price       REAL NOT NULL,
    disclosed_quantity  REAL NOT NULL,
    status              TEXT NOT NULL,
    filled_quantity     REAL NOT NULL,
    average_price       REAL NOT NULL,
    blocked_margin      REAL NOT NULL,
    rejection_reason    TEXT NOT NULL,
    created_ms          INTEGER NOT NULL,
    updated_ms          INTEGER NOT NULL
);
CREATE INDEX orders_user ON orders(book, user_id);
CREATE TABLE trades (
    tradeid     INTEGER PRIMARY KEY,
    orderid     TEXT NOT NULL,
    book        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    action      TEXT NOT NULL,
    product     TEXT NOT NULL,
    quantity    REAL NOT NULL,
    price       REAL NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE positions (
    book            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    exchange        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    product         TEXT NOT NULL,
    quantity        REAL NOT NULL,
    average_price   REAL NOT NULL,
    realized_pnl    REAL NOT NULL,
    margin          REAL NOT NULL,
    PRIMARY KEY (book, user_id, exchange, symbol, product)
);
CREATE TABLE funds (
    book            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    starting        REAL NOT NULL,
    cash            REAL NOT NULL,
    order_margin    REAL NOT NULL,
    position_margin REAL NOT NULL,
    realized_pnl    REAL NOT NULL,
    PRIMARY KEY (book, user_id)
);
CREATE TABLE order_log (
    id          INTEGER PRIMARY KEY,
    user_id     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    api_type    TEXT NOT NULL,
    request     TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE outbox (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    delivered_at  TEXT
);
CREATE INDEX outbox_undelivered ON outbox(seq) WHERE delivered_at IS NULL;
"#,
    r#"
CREATE TABLE esb_commands (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    status        TEXT NOT NULL,
    response      TEXT NOT NULL,
    topic         TEXT NOT NULL,
    partition     INTEGER NOT NULL,
    offset        INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE TABLE esb_offsets (
    consumer_group  TEXT NOT NULL,
    topic           TEXT NOT NULL,
    partition       INTEGER NOT NULL,
    next_offset     INTEGER NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
"#,
    // Per-user consent to ESB control of the account (`oa-server esb allow|deny`), off by
    // default: commands for a user without it are dead-lettered `unauthenticated`.
    r#"
ALTER TABLE users ADD COLUMN esb_allowed INTEGER NOT NULL DEFAULT 0;
"#,
    // Key rotations and revocations, in order: a running server polls the newest `seq` to
    // end the sessions of keys changed by another process (`oa-server apikey ...`).
    r#"
CREATE TABLE key_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          TEXT NOT NULL
);
"#,
    // Idempotency-Key records: the first response to a keyed request, written in the same
    // transaction as the change it made.
    r#"
CREATE TABLE idempotency_keys (
    user_id       TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_ms);
"#,
    // 1-minute bars recorded from ticks (and backfilled by the simulated feed), served by
    // `history`; `time` is the bar's start in epoch seconds. Pruned by retention.
    r#"
CREATE TABLE bars (
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    time        INTEGER NOT NULL,
    open        REAL NOT NULL,
    high        REAL NOT NULL,
    low         REAL NOT NULL,
    close       REAL NOT NULL,
    volume      REAL NOT NULL,
    oi          REAL NOT NULL,
    PRIMARY KEY (exchange, symbol, time)
) WITHOUT ROWID;
CREATE INDEX bars_time ON bars(time);
"#,
    // Hourly and daily rollups of `bars` (see `BarTable`), filled from the bars stored so far.
    concat!(
        "CREATE TABLE bars_hour (exchange TEXT NOT NULL, symbol TEXT NOT NULL,
            time INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL,
            close REAL NOT NULL, volume REAL NOT NULL, oi REAL NOT NULL,
            PRIMARY KEY (exchange, symbol, time)) WITHOUT ROWID;
        CREATE INDEX bars_hour_time ON bars_hour(time);
        CREATE TABLE bars_day (exchange TEXT NOT NULL, symbol TEXT NOT NULL,
            time INTEGER NOT NULL, open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL,
            close REAL NOT NULL, volume REAL NOT NULL, oi REAL NOT NULL,
            PRIMARY KEY (exchange, symbol, time)) WITHOUT ROWID;
        CREATE INDEX bars_day_time ON bars_day(time);
        ",
        rollup_insert!("bars_hour", HOUR_BUCKET, ""),
        ";",
        rollup_insert!("bars_day", DAY_BUCKET, ""),
        ";"
    ),
    // Packed hours of 1-minute bars (see `packs`), filled from the bars stored so far by
    // `pack_every_bar` in the same transaction. A table with rowids: a row is kilobytes.
    r#"
CREATE TABLE bars_packed (
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    time        INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (exchange, symbol, time)
);
CREATE INDEX bars_packed_time ON bars_packed(time);
"#,
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

/// The statements that rebuild `bars_packed` from `bars` (see [`repack`]).
const PACKED_DELETE_INSTRUMENT: &str =
    "DELETE FROM bars_packed WHERE exchange = ?1 AND symbol = ?2 AND time >= ?3 AND time < ?4";
const PACKED_DELETE_ALL: &str = "DELETE FROM bars_packed WHERE time >= ?1 AND time < ?2";
const PACKED_INSERT: &str =
    "INSERT INTO bars_packed (exchange, symbol, time, data) VALUES (?1, ?2, ?3, ?4)";
const MINUTES_OF_INSTRUMENT: &str =
    "SELECT exchange, symbol, time, open, high, low, close, volume, oi FROM bars
     WHERE exchange = ?1 AND symbol = ?2 AND time >= ?3 AND time < ?4 ORDER BY time";
const MINUTES_OF_ALL: &str =
    "SELECT exchange, symbol, time, open, high, low, close, volume, oi FROM bars
     WHERE time >= ?1 AND time < ?2 ORDER BY exchange, symbol, time";
const EVERY_MINUTE: &str = "SELECT exchange, symbol, time, open, high, low, close, volume, oi
     FROM bars ORDER BY exchange, symbol, time";

/// Rebuilds the packs of `scope` from the 1-minute bars (a pack left without bars goes).
fn repack(conn: &Connection, scope: PackScope<'_>) -> Result<(), StoreError> {
    let mut select = match scope {
        PackScope::Instrument(exchange, symbol, from, until) => {
            conn.prepare_cached(PACKED_DELETE_INSTRUMENT)?
                .execute(params![exchange, symbol, from, until])?;
            let mut select = conn.prepare_cached(MINUTES_OF_INSTRUMENT)?;
            select.raw_bind_parameter(1, exchange)?;
            select.raw_bind_parameter(2, symbol)?;
            select.raw_bind_parameter(3, from)?;
            select.raw_bind_parameter(4, until)?;
            select
        }
        PackScope::Hours(from, until) => {
            conn.prepare_cached(PACKED_DELETE_ALL)?
                .execute(params![from, until])?;
            let mut select = conn.prepare_cached(MINUTES_OF_ALL)?;
            select.raw_bind_parameter(1, from)?;
            select.raw_bind_parameter(2, until)?;
            select
        }
    };
    pack_rows(conn, select.raw_query())
}

/// Fills `bars_packed` from every stored 1-minute bar (the migration that adds it).
fn pack_every_bar(conn: &Connection) -> Result<(), StoreError> {
    let mut select = conn.prepare(EVERY_MINUTE)?;
    pack_rows(conn, select.raw_query())
}

/// Packs the bar rows `rows` returns (in `(exchange, symbol, time)` order) and inserts the
/// packs.
fn pack_rows(conn: &Connection, mut rows: rusqlite::Rows<'_>) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(PACKED_INSERT)?;
    let mut write = |packs: Vec<super::packs::Pack>| -> Result<(), StoreError> {
        for pack in packs {
            insert.execute(params![pack.exchange, pack.symbol, pack.start, pack.data])?;
        }
        Ok(())
    };
    let mut packer = super::packs::Packer::default();
    while let Some(row) = rows.next()? {
        let exchange = text_at(row, 0)?;
        let symbol = text_at(row, 1)?;
        packer.push(exchange, symbol, bar_at(row, 2)?)?;
        write(packer.take_complete())?;
    }
    write(packer.finish()?)
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

impl Queries for Connection {
    // ------------------------------------------------------------------ engine rows

    /// Writes an order row (insert or replace).
    fn save_order(&self, order: &Order) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT INTO orders (orderid, book, user_id, strategy, exchange, symbol, action,
             quantity, pricetype, product, price, trigger_price, disclosed_quantity, status,
             filled_quantity, average_price, blocked_margin, rejection_reason, created_ms, updated_ms)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)
             ON CONFLICT(orderid) DO UPDATE SET quantity = ?8, pricetype = ?9, product = ?10,
             price = ?11, trigger_price = ?12, disclosed_quantity = ?13, status = ?14,
             filled_quantity = ?15, average_price = ?16, blocked_margin = ?17,
             rejection_reason = ?18, updated_ms = ?20",
        )?
        .execute(params![
            order.orderid,
            order.book.as_str(),
            order.user_id,
            order.strategy,
            order.terms.exchange.as_str(),
            order.terms.symbol,
            order.terms.action.as_str(),
            order.terms.quantity,
            order.terms.pricetype.as_str(),
            order.terms.product.as_str(),
            order.terms.price,
            order.terms.trigger_price,
            order.terms.disclosed_quantity,
            order.status.as_str(),
            order.filled_quantity,
            order.average_price,
            order.blocked_margin,
            order.rejection_reason,
            order.created_ms,
            order.updated_ms,
        ])?;
        Ok(())
    }

    /// Inserts a trade.
    fn insert_trade(&self, trade: &Trade) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT INTO trades (tradeid, orderid, book, user_id, exchange, symbol, action, product,
             quantity, price, created_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
        )?
        .execute(params![
            trade.tradeid as i64,
            trade.orderid,
            trade.book.as_str(),
            trade.user_id,
            trade.exchange.as_str(),
            trade.symbol,
            trade.action.as_str(),
            trade.product.as_str(),
            trade.quantity,
            trade.price,
            trade.created_ms,
        ])?;
        Ok(())
    }

    /// Writes a position row.
    fn save_position(&self, key: &PositionKey, position: &Position) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT INTO positions (book, user_id, exchange, symbol, product, quantity,
             average_price, realized_pnl, margin) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)
             ON CONFLICT(book, user_id, exchange, symbol, product) DO UPDATE SET quantity = ?6,
             average_price = ?7, realized_pnl = ?8, margin = ?9",
        )?
        .execute(params![
            key.book.as_str(),
            key.user_id,
            key.exchange.as_str(),
            key.symbol,
            key.product.as_str(),
            position.quantity,
            position.average_price,
            position.realized_pnl,
            position.margin,
        ])?;
        Ok(())
    }

    /// Writes an account's funds row.
    fn save_account(&self, key: &AccountKey, account: &Account) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT INTO funds (book, user_id, starting, cash, order_margin,
             position_margin, realized_pnl) VALUES (?1,?2,?3,?4,?5,?6,?7)
             ON CONFLICT(book, user_id) DO UPDATE SET cash = ?4, order_margin = ?5,
             position_margin = ?6, realized_pnl = ?7",
        )?
        .execute(params![
            key.book.as_str(),
            key.user_id,
            account.starting,
            account.cash,
            account.order_margin,
            account.position_margin,
            account.realized_pnl,
        ])?;
        Ok(())
    }

    /// Appends a request/response pair to the order log.
    fn insert_log(
        &self,
        user_id: &str,
        mode: &str,
        api_type: &str,
        request: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT INTO order_log (user_id, mode, api_type, request, response, created_ms)
             VALUES (?1,?2,?3,?4,?5,?6)",
        )?
        .execute(params![user_id, mode, api_type, request, response, now_ms])?;
        Ok(())
    }

    /// Appends an envelope to the outbox (same transaction as its cause).
    fn insert_outbox(&self, envelope: &Envelope) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT INTO outbox (id, user_id, event_type, payload, created_at) VALUES (?1,?2,?3,?4,?5)",
        )?
        .execute(params![
            envelope.id.to_string(),
            envelope.user_id,
            envelope.event_type(),
            envelope.to_json_bytes(),
            envelope.timestamp_rfc3339(),
        ])?;
        Ok(())
    }

    // ------------------------------------------------------------------ idempotency keys

    /// The live record of `(user_id, key)`: one created at or after `since_ms`.
    fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
        since_ms: i64,
    ) -> Result<Option<IdempotencyRow>, StoreError> {
        let tx = self;
        Ok(tx
            .prepare_cached(
                "SELECT fingerprint, status, response FROM idempotency_keys
                 WHERE user_id = ?1 AND idem_key = ?2 AND created_ms >= ?3",
            )?
            .query_row(params![user_id, key, since_ms], |row| {
                Ok(IdempotencyRow {
                    fingerprint: row.get(0)?,
                    status: row.get::<_, i64>(1)?.clamp(0, 999) as u16,
                    response: row.get(2)?,
                })
            })
            .optional()?)
    }

    /// Stores the first response to `(user_id, key)`, replacing an expired record of the key.
    fn save_idempotency(
        &self,
        user_id: &str,
        key: &str,
        row: &IdempotencyRow,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO idempotency_keys
                (user_id, idem_key, fingerprint, status, response, created_ms)
             VALUES (?1,?2,?3,?4,?5,?6)",
        )?
        .execute(params![
            user_id,
            key,
            row.fingerprint,
            i64::from(row.status),
            row.response,
            now_ms
        ])?;
        Ok(())
    }

    /// Deletes up to `limit` records created before `before_ms`; returns how many.
    fn prune_idempotency(&self, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
        let tx = self;
        Ok(tx
            .prepare_cached(
                "DELETE FROM idempotency_keys WHERE rowid IN
                 (SELECT rowid FROM idempotency_keys WHERE created_ms < ?1 LIMIT ?2)",
            )?
            .execute(params![before_ms, limit as i64])?)
    }

    // ------------------------------------------------------------------ ESB consumer

    /// The status of a processed ESB command id, if it was seen before.
    fn esb_command_status(&self, id: &str) -> Result<Option<String>, StoreError> {
        let tx = self;
        Ok(tx
            .prepare_cached("SELECT status FROM esb_commands WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()?)
    }

    /// Records an ESB command id (first sighting wins: a later insert of the same id is ignored).
    fn esb_insert_command(
        &self,
        id: &str,
        user_id: &str,
        event_type: &str,
        status: &str,
        response: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT OR IGNORE INTO esb_commands
                (id, user_id, event_type, status, response, topic, partition, offset, created_at)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        )?
        .execute(params![
            id,
            user_id,
            event_type,
            status,
            response,
            topic,
            partition,
            offset,
            now_text()
        ])?;
        Ok(())
    }

    /// Sets the final status and response of an ESB command.
    fn esb_finish_command(&self, id: &str, status: &str, response: &str) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "UPDATE esb_commands SET status = ?2, response = ?3, finished_at = ?4 WHERE id = ?1",
        )?
        .execute(params![id, status, response, now_text()])?;
        Ok(())
    }

    fn esb_save_offset(
        &self,
        key: OffsetKey<'_>,
        next_offset: i64,
        write: OffsetWrite,
    ) -> Result<(), StoreError> {
        let sql = match write {
            OffsetWrite::Advance => {
                "INSERT INTO esb_offsets (consumer_group, topic, partition, next_offset, updated_at)
                 VALUES (?1,?2,?3,?4,?5)
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE
                 SET next_offset = MAX(next_offset, excluded.next_offset), updated_at = excluded.updated_at"
            }
            OffsetWrite::Replace => {
                "INSERT INTO esb_offsets (consumer_group, topic, partition, next_offset, updated_at)
                 VALUES (?1,?2,?3,?4,?5)
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE
                 SET next_offset = excluded.next_offset, updated_at = excluded.updated_at"
            }
        };
        let (group, topic, partition) = (key.group, key.topic, key.partition);
        self.prepare_cached(sql)?.execute(params![
            group,
            topic,
            partition,
            next_offset,
            now_text()
        ])?;
        Ok(())
    }

    fn esb_stored_offset(&self, key: OffsetKey<'_>) -> Result<Option<i64>, StoreError> {
        let (group, topic, partition) = (key.group, key.topic, key.partition);
        Ok(self
            .prepare_cached(
                "SELECT next_offset FROM esb_offsets
                 WHERE consumer_group = ?1 AND topic = ?2 AND partition = ?3",
            )?
            .query_row(params![group, topic, partition], |row| row.get(0))
            .optional()?)
    }
    /// The user's [`EsbAccess`], read in the caller's transaction (so a change made by another
    /// process, such as `oa-server esb deny`, is seen by the next command).
    fn esb_access(&self, user_id: &str) -> Result<EsbAccess, StoreError> {
        let conn = self;
        let row: Option<(bool, bool)> = conn
            .prepare_cached(
                "SELECT u.esb_allowed != 0,
                        EXISTS (SELECT 1 FROM api_keys k
                                WHERE k.user_id = u.user_id AND k.revoked_at IS NULL)
                 FROM users u WHERE u.user_id = ?1",
            )?
            .query_row([user_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        Ok(match row {
            None => EsbAccess::NoSuchUser,
            Some((_, false)) => EsbAccess::Disabled,
            Some((false, true)) => EsbAccess::NotAllowed,
            Some((true, true)) => EsbAccess::Allowed,
        })
    }

    /// Sets a user's ESB consent; false when the user does not exist.
    fn set_esb_allowed(&self, user_id: &str, allowed: bool) -> Result<bool, StoreError> {
        let tx = self;
        Ok(tx.execute(
            "UPDATE users SET esb_allowed = ?2 WHERE user_id = ?1",
            params![user_id, allowed],
        )? == 1)
    }

    /// Writes a per-user setting.
    fn set_setting(&self, user_id: &str, name: &str, value: &str) -> Result<(), StoreError> {
        let tx = self;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO settings (user_id, name, value) VALUES (?1,?2,?3)",
        )?
        .execute(params![user_id, name, value])?;
        Ok(())
    }

    /// Every user's value of one setting.
    fn load_setting(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self;
        let mut statement = conn.prepare("SELECT user_id, value FROM settings WHERE name = ?1")?;
        let rows = statement
            .query_map([name], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Counts of order-log entries per user for one mode.
    fn load_log_counts(&self, mode: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self;
        let mut statement = conn
            .prepare("SELECT user_id, COUNT(*) FROM order_log WHERE mode = ?1 GROUP BY user_id")?;
        let rows = statement
            .query_map([mode], |row| {
                Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The orders of the current session: active ones and those changed at or after
    /// `since_ms`, oldest first. Older orders stay in the table.
    fn load_orders(&self, since_ms: i64) -> Result<Vec<Order>, StoreError> {
        let conn = self;
        const T: &str = "orders";
        let mut statement = conn.prepare(
            "SELECT orderid, book, user_id, strategy, exchange, symbol, action, quantity, pricetype,
             product, price, trigger_price, disclosed_quantity, status, filled_quantity,
             average_price, blocked_margin, rejection_reason, created_ms, updated_ms
             FROM orders WHERE updated_ms >= ?1 OR status IN ('open', 'trigger pending')
             ORDER BY created_ms, CAST(orderid AS INTEGER)",
        )?;
        let mut rows = statement.query([since_ms])?;
        let mut orders = Vec::new();
        while let Some(row) = rows.next()? {
            let text =
                |index: usize| -> Result<String, StoreError> { Ok(row.get::<_, String>(index)?) };
            orders.push(Order {
                orderid: text(0)?,
                book: parse_book(T, &text(1)?)?,
                user_id: text(2)?,
                strategy: text(3)?,
                terms: OrderFields {
                    exchange: parse_exchange(T, &text(4)?)?,
                    symbol: text(5)?,
                    action: parse_choice::<Action>(T, &text(6)?)?,
                    quantity: row.get(7)?,
                    pricetype: parse_choice::<PriceType>(T, &text(8)?)?,
                    product: parse_choice::<Product>(T, &text(9)?)?,
                    price: row.get(10)?,
                    trigger_price: row.get(11)?,
                    disclosed_quantity: row.get(12)?,
                },
                status: parse_choice::<OrderStatus>(T, &text(13)?)?,
                filled_quantity: row.get(14)?,
                average_price: row.get(15)?,
                blocked_margin: row.get(16)?,
                rejection_reason: text(17)?,
                created_ms: row.get(18)?,
                updated_ms: row.get(19)?,
            });
        }
        Ok(orders)
    }

    /// The trades made at or after `since_ms`, oldest first.
    fn load_trades(&self, since_ms: i64) -> Result<Vec<Trade>, StoreError> {
        let conn = self;
        const T: &str = "trades";
        let mut statement = conn.prepare(
            "SELECT tradeid, orderid, book, user_id, exchange, symbol, action, product, quantity,
             price, created_ms FROM trades WHERE created_ms >= ?1 ORDER BY tradeid",
        )?;
        let mut rows = statement.query([since_ms])?;
        let mut trades = Vec::new();
        while let Some(row) = rows.next()? {
            let text =
                |index: usize| -> Result<String, StoreError> { Ok(row.get::<_, String>(index)?) };
            trades.push(Trade {
                tradeid: row.get::<_, i64>(0)? as u64,
                orderid: text(1)?,
                book: parse_book(T, &text(2)?)?,
                user_id: text(3)?,
                exchange: parse_exchange(T, &text(4)?)?,
                symbol: text(5)?,
                action: parse_choice::<Action>(T, &text(6)?)?,
                product: parse_choice::<Product>(T, &text(7)?)?,
                quantity: row.get(8)?,
                price: row.get(9)?,
                created_ms: row.get(10)?,
            });
        }
        Ok(trades)
    }

    /// The highest order id and trade id ever stored (ids stay unique across sessions).
    fn max_ids(&self) -> Result<(u64, u64), StoreError> {
        let conn = self;
        let order: i64 = conn.query_row(
            "SELECT COALESCE(MAX(CAST(orderid AS INTEGER)), 0) FROM orders",
            [],
            |row| row.get(0),
        )?;
        let trade: i64 =
            conn.query_row("SELECT COALESCE(MAX(tradeid), 0) FROM trades", [], |row| {
                row.get(0)
            })?;
        Ok((order.max(0) as u64, trade.max(0) as u64))
    }

    /// Every stored position.
    fn load_positions(&self) -> Result<Vec<(PositionKey, Position)>, StoreError> {
        let conn = self;
        const T: &str = "positions";
        let mut statement = conn.prepare(
            "SELECT book, user_id, exchange, symbol, product, quantity, average_price, realized_pnl,
             margin FROM positions",
        )?;
        let mut rows = statement.query([])?;
        let mut positions = Vec::new();
        while let Some(row) = rows.next()? {
            let text =
                |index: usize| -> Result<String, StoreError> { Ok(row.get::<_, String>(index)?) };
            let key = PositionKey {
                book: parse_book(T, &text(0)?)?,
                user_id: text(1)?,
                exchange: parse_exchange(T, &text(2)?)?,
                symbol: text(3)?,
                product: parse_choice::<Product>(T, &text(4)?)?,
            };
            positions.push((
                key,
                Position {
                    quantity: row.get(5)?,
                    average_price: row.get(6)?,
                    realized_pnl: row.get(7)?,
                    margin: row.get(8)?,
                },
            ));
        }
        Ok(positions)
    }

    /// Every stored account.
    fn load_accounts(&self) -> Result<Vec<(AccountKey, Account)>, StoreError> {
        let conn = self;
        const T: &str = "funds";
        let mut statement = conn.prepare(
            "SELECT book, user_id, starting, cash, order_margin, position_margin, realized_pnl
             FROM funds",
        )?;
        let mut rows = statement.query([])?;
        let mut accounts = Vec::new();
        while let Some(row) = rows.next()? {
            let book = parse_book(T, &row.get::<_, String>(0)?)?;
            accounts.push((
                AccountKey {
                    book,
                    user_id: row.get(1)?,
                },
                Account {
                    starting: row.get(2)?,
                    cash: row.get(3)?,
                    order_margin: row.get(4)?,
                    position_margin: row.get(5)?,
                    realized_pnl: row.get(6)?,
                },
            ));
        }
        Ok(accounts)
    }

    // ------------------------------------------------------------------ users and keys

    /// Creates a user if missing.
    fn ensure_user(&self, user_id: &str) -> Result<(), StoreError> {
        let tx = self;
        tx.execute(
            "INSERT OR IGNORE INTO users (user_id, created_at) VALUES (?1, ?2)",
            params![user_id, now_text()],
        )?;
        Ok(())
    }

    /// Number of users.
    fn count_users(&self) -> Result<u64, StoreError> {
        let conn = self;
        Ok(conn.query_row("SELECT COUNT(*) FROM users", [], |row| row.get::<_, i64>(0))? as u64)
    }

    /// True when the user has an active (not revoked) key.
    fn has_active_key(&self, user_id: &str) -> Result<bool, StoreError> {
        let conn = self;
        Ok(conn
            .query_row(
                "SELECT 1 FROM api_keys WHERE user_id = ?1 AND revoked_at IS NULL LIMIT 1",
                [user_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Revokes the user's active keys; returns how many.
    fn revoke_keys(&self, user_id: &str) -> Result<usize, StoreError> {
        let tx = self;
        Ok(tx.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
            params![user_id, now_text()],
        )?)
    }

    /// Stores a new key's identifier and hash.
    fn insert_key(&self, user_id: &str, key_id: &str, key_hash: &str) -> Result<(), StoreError> {
        let tx = self;
        tx.execute(
            "INSERT INTO api_keys (user_id, key_id, key_hash, created_at) VALUES (?1,?2,?3,?4)",
            params![user_id, key_id, key_hash, now_text()],
        )?;
        Ok(())
    }

    /// The active key row with this identifier.
    fn find_key(&self, key_id: &str) -> Result<Option<KeyRow>, StoreError> {
        let conn = self;
        Ok(conn
            .prepare_cached(
                "SELECT user_id, key_hash FROM api_keys WHERE key_id = ?1 AND revoked_at IS NULL",
            )?
            .query_row([key_id], |row| {
                Ok(KeyRow {
                    user_id: row.get(0)?,
                    key_hash: row.get(1)?,
                })
            })
            .optional()?)
    }

    /// Records a key rotation or revocation; returns its `seq`.
    fn insert_key_event(&self, user_id: &str, action: &str) -> Result<i64, StoreError> {
        let tx = self;
        tx.execute(
            "INSERT INTO key_events (user_id, action, at) VALUES (?1, ?2, ?3)",
            params![user_id, action, now_text()],
        )?;
        Ok(tx.last_insert_rowid())
    }

    /// The newest key event's `seq` (0 when there is none).
    fn last_key_event(&self) -> Result<i64, StoreError> {
        let conn = self;
        Ok(
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM key_events", [], |row| {
                row.get(0)
            })?,
        )
    }

    /// Key events after `seq`, oldest first, at most `limit`.
    fn key_events_after(&self, seq: i64, limit: usize) -> Result<Vec<KeyEvent>, StoreError> {
        let conn = self;
        let mut statement = conn.prepare_cached(
            "SELECT seq, user_id, action FROM key_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = statement
            .query_map(params![seq, limit as i64], |row| {
                Ok(KeyEvent {
                    seq: row.get(0)?,
                    user_id: row.get(1)?,
                    action: row.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every user with key metadata (never keys or hashes).
    fn list_users(&self) -> Result<Vec<UserKeyInfo>, StoreError> {
        let conn = self;
        let mut statement = conn.prepare(
            "SELECT u.user_id, u.created_at,
               (SELECT created_at FROM api_keys k WHERE k.user_id = u.user_id AND k.revoked_at IS NULL
                ORDER BY id DESC LIMIT 1),
               (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.user_id AND k.revoked_at IS NOT NULL),
               u.esb_allowed != 0
             FROM users u ORDER BY u.user_id",
        )?;
        let rows = statement
            .query_map([], |row| {
                Ok(UserKeyInfo {
                    user_id: row.get(0)?,
                    user_created_at: row.get(1)?,
                    key_created_at: row.get(2)?,
                    revoked_keys: row.get::<_, i64>(3)? as u64,
                    esb_allowed: row.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // ------------------------------------------------------------------ outbox relay

    fn outbox_prepare(&self) -> Result<(), StoreError> {
        // The quarantine belongs to the relay's reader only, so it is created here rather
        // than as a store migration.
        self.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox_quarantine (
                seq             INTEGER PRIMARY KEY,
                id              TEXT NOT NULL,
                user_id         TEXT NOT NULL,
                event_type      TEXT NOT NULL,
                payload         BLOB,
                created_at      TEXT NOT NULL,
                reason          TEXT NOT NULL,
                quarantined_at  TEXT NOT NULL
            );",
        )?;
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
        let tx = Transaction::new_unchecked(self, TransactionBehavior::Deferred)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO outbox (id, user_id, event_type, payload, created_at)
                 VALUES (?1,?2,?3,?4,?5)",
            )?;
            for envelope in missing {
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

    fn outbox_quarantine(&self, rows: &[(i64, String, String)]) -> Result<(), StoreError> {
        let now = now_text();
        let tx = Transaction::new_unchecked(self, TransactionBehavior::Deferred)?;
        {
            let mut copy = tx.prepare_cached(
                "INSERT OR REPLACE INTO outbox_quarantine
                     (seq, id, user_id, event_type, payload, created_at, reason, quarantined_at)
                 SELECT seq, id, user_id, event_type, payload, created_at, ?2, ?3
                 FROM outbox WHERE seq = ?1",
            )?;
            let mut mark =
                tx.prepare_cached("UPDATE outbox SET delivered_at = ?2 WHERE seq = ?1")?;
            for (seq, _, reason) in rows {
                copy.execute(params![seq, reason, now])?;
                mark.execute(params![seq, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn outbox_quarantined(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let mut select =
            self.prepare_cached("SELECT seq, id, reason FROM outbox_quarantine ORDER BY seq")?;
        let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
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

    fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .prepare_cached("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")?
            .query_row([], |row| row.get(0))?;
        Ok(count.max(0) as u64)
    }

    fn outbox_prune_delivered_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        Ok(self
            .prepare_cached(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND created_at < ?1",
            )?
            .execute([cutoff])?)
    }

    fn save_bars(&self, bars: &[InstrumentBar], overwrite: bool) -> Result<usize, StoreError> {
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
        for (exchange, symbol, first, last) in instrument_spans(bars) {
            for table in BarTable::ROLLUPS {
                let Some(sql) = rollup_statements(table) else {
                    continue;
                };
                let (from, until) = table.covering(first, last);
                self.prepare_cached(sql.delete_instrument)?
                    .execute(params![
                        exchange,
                        symbol,
                        table.stamp(from),
                        table.stamp(until)
                    ])?;
                self.prepare_cached(sql.insert_instrument)?
                    .execute(params![exchange, symbol, from, until])?;
            }
            let (from, until) = BarTable::Packs.covering(first, last);
            repack(self, PackScope::Instrument(exchange, symbol, from, until))?;
        }
        Ok(written)
    }

    fn load_bars(
        &self,
        table: BarTable,
        range: &BarRange,
        limit: usize,
    ) -> Result<Vec<Bar>, StoreError> {
        let sql = match table {
            BarTable::Minutes => {
                "SELECT time, open, high, low, close, volume, oi FROM bars
                 WHERE exchange = ?1 AND symbol = ?2 AND time >= ?3 AND time < ?4
                 ORDER BY time LIMIT ?5"
            }
            BarTable::Hours => {
                "SELECT time, open, high, low, close, volume, oi FROM bars_hour
                 WHERE exchange = ?1 AND symbol = ?2 AND time >= ?3 AND time < ?4
                 ORDER BY time LIMIT ?5"
            }
            BarTable::Days => {
                "SELECT time, open, high, low, close, volume, oi FROM bars_day
                 WHERE exchange = ?1 AND symbol = ?2 AND time >= ?3 AND time < ?4
                 ORDER BY time LIMIT ?5"
            }
            BarTable::Packs => return load_packed(self, range, limit),
        };
        let mut statement = self.prepare_cached(sql)?;
        let bound = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = statement.query(params![
            range.exchange,
            range.symbol,
            range.from,
            range.until,
            bound
        ])?;
        // A year of 1-minute bars is about 94,000 rows: read each column once, by position,
        // into a vector that grows from a size that fits a few sessions.
        let mut bars = Vec::with_capacity(limit.min(4096));
        while let Some(row) = rows.next()? {
            bars.push(bar_at(row, 0)?);
        }
        Ok(bars)
    }

    fn prune_bars(&self, before: i64) -> Result<usize, StoreError> {
        let deleted = self
            .prepare_cached("DELETE FROM bars WHERE time < ?1")?
            .execute([before])?;
        for table in BarTable::ROLLUPS {
            let Some(sql) = rollup_statements(table) else {
                continue;
            };
            // Rows made only of pruned minutes go; the row `before` falls in is rebuilt from
            // the minutes it keeps.
            let straddling = table.bucket_first_minute(before);
            let end = straddling + table.bucket_seconds();
            self.prepare_cached(sql.delete_all)?
                .execute(params![i64::MIN / 2, table.stamp(end)])?;
            self.prepare_cached(sql.insert_all)?
                .execute(params![straddling, end])?;
        }
        let straddling = BarTable::Packs.bucket_first_minute(before);
        self.prepare_cached(PACKED_DELETE_ALL)?
            .execute(params![i64::MIN / 2, straddling])?;
        repack(
            self,
            PackScope::Hours(straddling, straddling + PACK_SECONDS),
        )?;
        Ok(deleted)
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

/// The 1-minute bars of `range` unpacked from the packs it overlaps, at most `limit`.
fn load_packed(conn: &Connection, range: &BarRange, limit: usize) -> Result<Vec<Bar>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT time, data FROM bars_packed
             WHERE exchange = ?1 AND symbol = ?2 AND time >= ?3 AND time < ?4 ORDER BY time",
    )?;
    let mut rows = statement.query(params![
        range.exchange,
        range.symbol,
        pack_start(range.from),
        range.until
    ])?;
    let mut bars = Vec::with_capacity(limit.min(4096));
    while let Some(row) = rows.next()? {
        let start: i64 = row.get(0)?;
        let data = match row.get_ref(1)? {
            ValueRef::Blob(data) => data,
            other => {
                return Err(corrupt(
                    "bars_packed",
                    format!("data holds {:?}, not a BLOB", other.data_type()),
                ));
            }
        };
        decode_into(start, data, range.from, range.until, &mut bars)?;
        if bars.len() >= limit {
            bars.truncate(limit);
            break;
        }
    }
    Ok(bars)
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

/// Column `index` of a row as text.
fn text_at<'row>(row: &'row rusqlite::Row<'_>, index: usize) -> Result<&'row str, StoreError> {
    row.get_ref(index)?
        .as_str()
        .map_err(|error| corrupt("bars", format!("column {index}: {error}")))
}

/// The bar in columns `first..first + 7` of a row (time, open, high, low, close, volume, oi).
fn bar_at(row: &rusqlite::Row<'_>, first: usize) -> Result<Bar, StoreError> {
    Ok(Bar {
        time: row.get(first)?,
        open: real(row, first + 1)?,
        high: real(row, first + 2)?,
        low: real(row, first + 3)?,
        close: real(row, first + 4)?,
        volume: real(row, first + 5)?,
        oi: real(row, first + 6)?,
    })
}

/// Column `index` of a bar row as a float (REAL, or an INTEGER SQLite stored it as).
fn real(row: &rusqlite::Row<'_>, index: usize) -> Result<f64, StoreError> {
    match row.get_ref(index)? {
        ValueRef::Real(value) => Ok(value),
        ValueRef::Integer(value) => Ok(value as f64),
        other => Err(corrupt(
            "bars",
            format!("column {index} holds {:?}, not a number", other.data_type()),
        )),
    }
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
