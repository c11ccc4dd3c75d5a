//! The PostgreSQL backend (`DATABASE_URL=postgres://...`): tokio-postgres through its
//! blocking front end (`postgres`), since every store call already runs on a blocking
//! thread.
//!
//! - Its own migrations ([`MIGRATIONS`], counted in `oa_schema_migrations`), applied in one
//!   transaction under an advisory lock so that processes starting together migrate once.
//! - Statements are prepared once per connection and cached.
//! - A connection that was closed (server restart, network) is opened again by the next
//!   call, so a reload of the order engine after a failure recovers once the server is back.
//! - Inside a transaction a failed statement aborts the whole transaction, unlike SQLite:
//!   [`Queries::prune_idempotency`], which must not take the batch down with it, runs under
//!   a savepoint.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use oa_events_core::Envelope;
use oa_marketdata_core::candles::InstrumentBar;
use parking_lot::Mutex;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use super::packs::{Pack, Packer};
use super::queries::{EVERY_MINUTE, append_envelopes};
use super::schema::POSTGRES_TYPES;
use super::sql::{Backend, EachRow, Sql, StoredRow, Values, Work, bar_from};
use super::{Database, OutboxRow, Queries, StoreError, TxKind, now_text};

/// Schema migrations, applied in order; `oa_schema_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    schema!(
        POSTGRES_TYPES,
        "
CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    esb_allowed BOOLEAN NOT NULL DEFAULT FALSE
);",
        engine_tables!(),
        "
CREATE INDEX orders_updated ON orders(updated_ms);
CREATE INDEX trades_created ON trades(created_ms);
CREATE INDEX order_log_user_mode ON order_log(mode, user_id);",
        outbox_quarantine_table!(),
        esb_tables!(),
        key_events_table!(),
        idempotency_table!()
    ),
    // 1-minute bars recorded from ticks (and backfilled by the simulated feed), served by
    // `history`; `time` is the bar's start in epoch seconds. Pruned by retention.
    schema!(POSTGRES_TYPES, bars_table!("bars")),
    // The leading `core`'s epoch: bumped on every takeover and checked by every engine write
    // transaction, which fences a deposed leader (see `leadership`).
    r#"
CREATE TABLE oa_leadership (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    epoch   BIGINT NOT NULL,
    holder  TEXT NOT NULL,
    since   TEXT NOT NULL
);
INSERT INTO oa_leadership (id, epoch, holder, since) VALUES (1, 0, '', '');
"#,
    schema!(POSTGRES_TYPES, rollup_tables!()),
    // Filled by `pack_every_bar`. A pack (about 2 KB) is kept in the row, compressed if need
    // be, rather than moved to a TOAST table.
    schema!(
        POSTGRES_TYPES,
        packed_bars_table!(),
        "ALTER TABLE bars_packed ALTER COLUMN data SET STORAGE MAIN;"
    ),
];

/// What SQL cannot express of a migration: (the migration's number, counted from 1, code
/// run right after its SQL in the same transaction).
type Fill = (
    usize,
    fn(&mut postgres::Transaction<'_>) -> Result<(), StoreError>,
);

/// The fills of [`MIGRATIONS`].
const FILLS: &[Fill] = &[(PACKS_MIGRATION, pack_every_bar)];

/// The number of the migration that adds `bars_packed`.
pub(crate) const PACKS_MIGRATION: usize = 5;

/// Inserts packs (see [`packs`](super::packs)), given as arrays of their columns.
const PACKED_INSERT: &str = "INSERT INTO bars_packed (exchange, symbol, time, data)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bytea[])";

/// Bar rows fetched at a time while filling `bars_packed` in the migration.
const FILL_FETCH_ROWS: i32 = 20_000;

/// Fills `bars_packed` from every stored 1-minute bar (the migration that adds it), reading
/// the bars through a cursor so that memory stays bounded.
fn pack_every_bar(tx: &mut postgres::Transaction<'_>) -> Result<(), StoreError> {
    let cursor = tx.bind(EVERY_MINUTE.postgres, &[])?;
    let mut packer = Packer::default();
    loop {
        let rows = tx.query_portal(&cursor, FILL_FETCH_ROWS)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            packer.push(row.text(0)?, row.text(1)?, bar_from(row, 2)?)?;
        }
        insert_packs(tx, &packer.take_complete())?;
    }
    insert_packs(tx, &packer.finish()?)
}

/// Inserts packs, in one statement.
fn insert_packs<C: GenericClient>(client: &mut C, packs: &[Pack]) -> Result<(), StoreError> {
    if packs.is_empty() {
        return Ok(());
    }
    let exchanges: Vec<&str> = packs.iter().map(|pack| pack.exchange.as_str()).collect();
    let symbols: Vec<&str> = packs.iter().map(|pack| pack.symbol.as_str()).collect();
    let starts: Vec<i64> = packs.iter().map(|pack| pack.start).collect();
    let data: Vec<&[u8]> = packs.iter().map(|pack| pack.data.as_slice()).collect();
    client.execute(PACKED_INSERT, &[&exchanges, &symbols, &starts, &data])?;
    Ok(())
}

/// The advisory lock key under which migrations run ("oa" schema lock).
const MIGRATION_LOCK: i64 = 0x6f61_0001;

/// Prepared statements of one connection, by SQL text.
type StatementCache = Arc<Mutex<HashMap<&'static str, Statement>>>;

/// The queries on a client: the connection itself, or a transaction on it.
pub(crate) struct PgQueries<C> {
    /// `None` only while the connection is being dropped.
    client: RefCell<Option<C>>,
    statements: StatementCache,
    in_transaction: bool,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl<C: GenericClient> PgQueries<C> {
    fn new(client: C, statements: StatementCache, in_transaction: bool) -> Self {
        PgQueries {
            client: RefCell::new(Some(client)),
            statements,
            in_transaction,
        }
    }

    /// Runs `work` with the client.
    fn with_client<T>(
        &self,
        work: impl FnOnce(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.client.borrow_mut();
        work(client.as_mut().ok_or(StoreError::Closed)?)
    }

    fn statement(&self, client: &mut C, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.lock().get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.statements.lock().insert(sql, statement.clone());
        Ok(statement)
    }

    fn execute(&self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        self.with_client(|client| {
            let statement = self.statement(client, sql)?;
            Ok(client.execute(&statement, params)?)
        })
    }

    fn query(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        self.with_client(|client| {
            let statement = self.statement(client, sql)?;
            Ok(client.query(&statement, params)?)
        })
    }
}

impl PgQueries<postgres::Transaction<'_>> {
    fn commit(self) -> Result<(), StoreError> {
        match self.client.into_inner() {
            Some(tx) => Ok(tx.commit()?),
            None => Err(StoreError::Closed),
        }
    }
}

/// The values of a shared statement as the driver takes them.
fn postgres_values<'a>(values: Values<'a>) -> Vec<&'a (dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| *value as &(dyn ToSql + Sync))
        .collect()
}

impl<C: GenericClient> Backend for PgQueries<C> {
    fn write(&self, sql: Sql, values: Values<'_>) -> Result<usize, StoreError> {
        Ok(self.execute(sql.postgres, &postgres_values(values))? as usize)
    }

    fn read_rows(&self, sql: Sql, values: Values<'_>, each: EachRow<'_>) -> Result<(), StoreError> {
        for row in &self.query(sql.postgres, &postgres_values(values))? {
            if each(row)?.is_break() {
                break;
            }
        }
        Ok(())
    }

    /// A savepoint when already in a transaction.
    fn atomically(&self, work: Work<'_>) -> Result<(), StoreError> {
        self.with_client(|client| {
            let tx = client.transaction()?;
            let inner = PgQueries::new(tx, Arc::clone(&self.statements), true);
            work(&inner)?;
            inner.commit()
        })
    }

    /// One statement per batch: the columns as arrays, unnested into rows.
    fn insert_bar_rows(
        &self,
        bars: &[InstrumentBar],
        overwrite: bool,
    ) -> Result<usize, StoreError> {
        let mut exchanges = Vec::with_capacity(bars.len());
        let mut symbols = Vec::with_capacity(bars.len());
        let mut times = Vec::with_capacity(bars.len());
        let mut columns: [Vec<f64>; 6] = Default::default();
        for item in bars {
            exchanges.push(item.exchange.as_str());
            symbols.push(item.symbol.as_str());
            times.push(item.bar.time);
            let bar = &item.bar;
            for (column, value) in columns
                .iter_mut()
                .zip([bar.open, bar.high, bar.low, bar.close, bar.volume, bar.oi])
            {
                column.push(value);
            }
        }
        let sql = if overwrite {
            "INSERT INTO bars (exchange, symbol, time, open, high, low, close, volume, oi)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::float8[],
                 $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float8[])
             ON CONFLICT (exchange, symbol, time) DO UPDATE SET open = EXCLUDED.open,
             high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
             volume = EXCLUDED.volume, oi = EXCLUDED.oi"
        } else {
            "INSERT INTO bars (exchange, symbol, time, open, high, low, close, volume, oi)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::float8[],
                 $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float8[])
             ON CONFLICT (exchange, symbol, time) DO NOTHING"
        };
        let [open, high, low, close, volume, oi] = &columns;
        Ok(self.execute(
            sql,
            &[
                &exchanges, &symbols, &times, open, high, low, close, volume, oi,
            ],
        )? as usize)
    }

    fn insert_packs(&self, packs: &[Pack]) -> Result<(), StoreError> {
        self.with_client(|client| insert_packs(client, packs))
    }
}

/// The queries PostgreSQL runs its own way; the others are [`Queries`]' own.
impl<C: GenericClient> Queries for PgQueries<C> {
    fn prune_idempotency(&self, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
        const DELETE: &str = "DELETE FROM idempotency_keys WHERE ctid IN
             (SELECT ctid FROM idempotency_keys WHERE created_ms < $1 LIMIT $2)";
        let params: Params<'_> = &[&before_ms, &(limit as i64)];
        if !self.in_transaction {
            return Ok(self.execute(DELETE, params)? as usize);
        }
        // A failed statement would abort the caller's transaction: confine it to a savepoint.
        let savepoint = |sql: &str| self.with_client(|client| Ok(client.batch_execute(sql)?));
        savepoint("SAVEPOINT oa_prune_idempotency")?;
        match self.execute(DELETE, params) {
            Ok(deleted) => {
                savepoint("RELEASE SAVEPOINT oa_prune_idempotency")?;
                Ok(deleted as usize)
            }
            Err(error) => {
                savepoint("ROLLBACK TO SAVEPOINT oa_prune_idempotency")?;
                Err(error)
            }
        }
    }

    fn outbox_prepare(&self) -> Result<(), StoreError> {
        // outbox_quarantine is part of the migrations.
        Ok(())
    }

    fn outbox_append_if_absent(&self, envelopes: &[&Envelope]) -> Result<(), StoreError> {
        append_envelopes(self, envelopes)
    }

    fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.query(
            "SELECT seq, id, payload FROM outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT $1",
            &[&(limit as i64)],
        )?
        .iter()
        .map(|row| {
            Ok(OutboxRow {
                seq: row.try_get(0)?,
                id: row.text(1)?.to_owned(),
                payload: Ok(row.try_get::<_, Vec<u8>>(2)?),
            })
        })
        .collect()
    }

    fn outbox_mark_delivered(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET delivered_at = $2
             WHERE seq = ANY($1) AND delivered_at IS NULL",
            &[&seqs, &now_text()],
        )?;
        Ok(())
    }
}

impl StoredRow for Row {
    fn text(&self, index: usize) -> Result<&str, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn optional_text(&self, index: usize) -> Result<Option<&str>, StoreError> {
        Ok(self.try_get(index)?)
    }

    /// `INTEGER` columns widened, `BIGINT` ones as they are.
    fn integer(&self, index: usize) -> Result<i64, StoreError> {
        let column_type = self.columns().get(index).map(|column| column.type_());
        if column_type == Some(&Type::INT4) {
            return Ok(i64::from(self.try_get::<_, i32>(index)?));
        }
        Ok(self.try_get(index)?)
    }

    fn real(&self, index: usize) -> Result<f64, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn flag(&self, index: usize) -> Result<bool, StoreError> {
        Ok(self.try_get(index)?)
    }

    fn bytes(&self, index: usize) -> Result<&[u8], StoreError> {
        Ok(self.try_get(index)?)
    }
}

/// A PostgreSQL connection as a [`Database`].
pub(crate) struct PostgresDatabase {
    url: String,
    connection: PgQueries<Client>,
    /// The leadership epoch every write transaction must still see (a `core` leader's
    /// engine connection; `None`: no check).
    fence: Option<i64>,
    /// Every transaction of the session is read-only (an edge's connection).
    read_only: bool,
}

impl std::fmt::Debug for PostgresDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDatabase").finish_non_exhaustive()
    }
}

/// Connects to `url` and applies `then` (on a thread of its own: the blocking client runs a
/// runtime of its own, which must not be driven from a thread that runs async tasks).
pub(crate) fn connect(
    url: &str,
    then: impl FnOnce(&mut Client) -> Result<(), StoreError> + Send,
) -> Result<Client, StoreError> {
    let redacted = redact(url);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut client = Client::connect(url, NoTls).map_err(|error| StoreError::Open {
                    path: redacted.clone(),
                    reason: StoreError::Postgres(error).to_string(),
                })?;
                then(&mut client)?;
                Ok(client)
            })
            .join()
            .map_err(|_| StoreError::Task("connecting to PostgreSQL panicked".to_string()))?
    })
}

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}/{path}")
        }
        None => url.to_string(),
    }
}

impl PostgresDatabase {
    /// Connects and applies pending migrations.
    pub(crate) fn open(url: &str) -> Result<PostgresDatabase, StoreError> {
        let client = connect(url, migrate)?;
        Ok(PostgresDatabase {
            url: url.to_string(),
            connection: PgQueries::new(client, StatementCache::default(), false),
            fence: None,
            read_only: false,
        })
    }

    /// Connects without migrating, in a session where every transaction is read-only (the
    /// server refuses any write): an edge reads the key store that the cores write. Fails
    /// when the store has no oa schema yet, or an older one than this build's.
    pub(crate) fn open_read_only(url: &str) -> Result<PostgresDatabase, StoreError> {
        let client = connect(url, |client| {
            make_read_only(client)?;
            check_schema(client, &redact(url))
        })?;
        Ok(PostgresDatabase {
            url: url.to_string(),
            connection: PgQueries::new(client, StatementCache::default(), false),
            fence: None,
            read_only: true,
        })
    }

    /// Opens the connection again when it was closed (its prepared statements went with it).
    fn reconnect_if_closed(&self) -> Result<(), StoreError> {
        let closed = self
            .connection
            .client
            .borrow()
            .as_ref()
            .is_none_or(Client::is_closed);
        if !closed {
            return Ok(());
        }
        let read_only = self.read_only;
        let client = connect(&self.url, |client| {
            if read_only {
                make_read_only(client)?;
            }
            Ok(())
        })?;
        self.connection.statements.lock().clear();
        *self.connection.client.borrow_mut() = Some(client);
        tracing::warn!("PostgreSQL connection was closed; connected again");
        Ok(())
    }
}

impl Database for PostgresDatabase {
    fn queries(&self) -> &dyn Queries {
        if let Err(error) = self.reconnect_if_closed() {
            // The next query fails with the closed connection's error.
            tracing::warn!(%error, "reconnecting to PostgreSQL failed");
        }
        &self.connection
    }

    fn transaction(
        &mut self,
        kind: TxKind,
        work: &mut dyn FnMut(&dyn Queries) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.reconnect_if_closed()?;
        let statements = Arc::clone(&self.connection.statements);
        let client = self
            .connection
            .client
            .get_mut()
            .as_mut()
            .ok_or(StoreError::Closed)?;
        let mut tx = match kind {
            TxKind::Write => client.transaction()?,
            TxKind::Read => client.build_transaction().read_only(true).start()?,
        };
        if let (TxKind::Write, Some(epoch)) = (kind, self.fence) {
            check_fence(&mut tx, epoch)?;
        }
        let queries = PgQueries::new(tx, statements, true);
        work(&queries)?;
        queries.commit()
    }

    fn sqlite_connection(&self) -> Option<&rusqlite::Connection> {
        None
    }

    fn set_fence(&mut self, epoch: Option<i64>) {
        self.fence = epoch;
    }
}

/// Fails the transaction unless the leadership epoch is still `epoch`.
///
/// `FOR SHARE` makes this exact: a takeover bumps the epoch with an `UPDATE` of the same row,
/// which waits for every transaction holding the share lock to end. So a write transaction
/// either commits before the bump (and the new leader, which reloads its state after the
/// bump, sees it) or reads the bumped epoch (READ COMMITTED re-reads a locked row's newest
/// version) and fails here: a deposed leader's write never commits after the takeover.
fn check_fence(tx: &mut postgres::Transaction<'_>, epoch: i64) -> Result<(), StoreError> {
    // A leader paused inside this transaction must not hold the share lock (and so the
    // takeover) for ever: the server ends a transaction idle for SESSION_TIMEOUT.
    let row = tx.query_one(
        "SELECT epoch, holder, set_config('idle_in_transaction_session_timeout', $1, true) \
         FROM oa_leadership WHERE id = 1 FOR SHARE",
        &[&crate::leadership::SESSION_TIMEOUT.as_millis().to_string()],
    )?;
    let current: i64 = row.try_get(0)?;
    if current == epoch {
        return Ok(());
    }
    let holder: String = row.try_get(1)?;
    Err(StoreError::Fenced(format!(
        "this core led in leadership epoch {epoch}, but {holder:?} took over in epoch {current}: its write was refused"
    )))
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // The blocking client owns a runtime, which must not be dropped on a thread that
        // drives an async runtime (tokio panics): hand it to a thread of its own there.
        let Some(client) = self.connection.client.get_mut().take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("oa-pg-close".to_string())
                .spawn(move || drop(client));
        }
    }
}

/// Makes every later transaction of the session read-only.
fn make_read_only(client: &mut Client) -> Result<(), StoreError> {
    client.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")?;
    Ok(())
}

/// Fails unless the store holds every migration of this build (applied by a core).
fn check_schema(client: &mut Client, redacted_url: &str) -> Result<(), StoreError> {
    let not_ready = |reason: String| StoreError::Open {
        path: redacted_url.to_string(),
        reason,
    };
    let table: Option<String> = client
        .query_one("SELECT to_regclass('oa_schema_migrations')::text", &[])?
        .try_get(0)?;
    if table.is_none() {
        return Err(not_ready(
            "the store has no oa schema yet: start a core (OA_ROLE=core) on it first".to_string(),
        ));
    }
    let applied: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM oa_schema_migrations",
            &[],
        )?
        .try_get(0)?;
    if usize::try_from(applied).unwrap_or(0) < MIGRATIONS.len() {
        return Err(not_ready(format!(
            "the store's schema is at migration {applied}, this build needs {}: start a core of this build on it first",
            MIGRATIONS.len()
        )));
    }
    Ok(())
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    migrate_to(client, MIGRATIONS.len())
}

/// Applies the pending migrations up to number `last` (counted from 1) with their fills.
pub(crate) fn migrate_to(client: &mut Client, last: usize) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS oa_schema_migrations (
             version     INTEGER PRIMARY KEY,
             applied_at  TEXT NOT NULL
         )",
    )?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM oa_schema_migrations",
            &[],
        )?
        .try_get(0)?;
    let start = usize::try_from(applied).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().take(last).skip(start) {
        tx.batch_execute(sql)?;
        for (_, fill) in FILLS.iter().filter(|(number, _)| *number == index + 1) {
            fill(&mut tx)?;
        }
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO oa_schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_text()],
        )?;
        tracing::info!(migration = index + 1, "applied PostgreSQL store migration");
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://oa:secret@db:5432/oa"),
            "postgres://oa:***@db:5432/oa"
        );
        assert_eq!(redact("postgres://db/oa"), "postgres://db/oa");
    }
}
