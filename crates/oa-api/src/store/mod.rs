//! The store: one interface ([`Queries`], [`Database`]) over two backends, chosen by
//! `DATABASE_URL`: SQLite ([`sqlite`], the default: one file, WAL) and PostgreSQL
//! ([`postgres`], `postgres://`: a server several oa processes can share).
//!
//! Every query oa makes is a method of [`Queries`], written once ([`queries`]) over what each
//! backend implements its own way ([`sql::Backend`]), on a connection outside a transaction
//! and inside one; the tables are written once too ([`schema`]). [`Database`] owns a connection and runs work in a
//! transaction that commits when the work succeeds and rolls back when it fails (or panics).
//! All calls are blocking and must run off the async executor (the engine's worker thread or
//! `spawn_blocking`). Three connections are used: the order engine's worker thread owns one
//! (orders, trades, positions, funds, order log, outbox, settings, idempotency records, ESB
//! offsets and commands), the key store owns another (users, API keys), the outbox relay a
//! third.
//!
//! Same-transaction guarantees (every backend): an order change, its order-log row, its
//! idempotency record and (when `durable_outbox` is on) its outbox envelopes commit in one
//! transaction; an ESB command's record, the events it produces and the consumer's next
//! offset commit together; a key change and its `key_events` row commit together.

use std::path::{Path, PathBuf};

use oa_marketdata_core::candles::{Bar, IST_OFFSET_SECONDS, InstrumentBar, Interval};

use crate::types::{Book, Choice, Exchange};

/// One instrument's 1-minute bars with `from <= time < until` (bar starts, epoch seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BarRange {
    /// Exchange.
    pub exchange: String,
    /// Symbol.
    pub symbol: String,
    /// First bar start included.
    pub from: i64,
    /// First bar start no longer included.
    pub until: i64,
}

impl BarRange {
    /// Whether `bar` belongs to this range (its instrument is the caller's to check).
    pub(crate) fn holds(&self, bar: &Bar) -> bool {
        bar.time >= self.from && bar.time < self.until
    }

    /// The same instrument over `from <= time < until`.
    pub(crate) fn with_times(&self, from: i64, until: i64) -> BarRange {
        BarRange {
            exchange: self.exchange.clone(),
            symbol: self.symbol.clone(),
            from,
            until,
        }
    }
}

/// A table of stored bars: the 1-minute bars, or one of their rollups (`bars_hour`,
/// `bars_day`), which the store keeps equal to the 1-minute bars aggregated to `60m` and `D`
/// (rebuilt for the buckets every write and every prune touches, in the same transaction),
/// so that `history` over long ranges reads one row per candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BarTable {
    /// `bars`: one row per instrument and minute.
    Minutes,
    /// `bars_hour`: [`Interval::Minutes`]`(60)` candles (aligned to 09:15 IST).
    Hours,
    /// `bars_day`: [`Interval::Day`] candles (stamped with their Indian date at 00:00 UTC).
    Days,
    /// `bars_packed`: one row per instrument and hour (a [`BarTable::Hours`] bucket) holding
    /// that hour's 1-minute bars ([`packs`]); read as the 1-minute bars it holds.
    Packs,
}

impl BarTable {
    /// The rollups, which every write and prune of 1-minute bars keeps up to date.
    pub(crate) const ROLLUPS: [BarTable; 2] = [BarTable::Hours, BarTable::Days];

    /// The table `history` reads for `interval` (`W` and `M` are made of daily candles).
    pub(crate) fn for_interval(interval: Interval) -> BarTable {
        match interval {
            Interval::Minutes(60) => BarTable::Hours,
            Interval::Day
            | Interval::Week
            | Interval::Month
            | Interval::Quarter
            | Interval::Year => BarTable::Days,
            Interval::Minutes(_) => BarTable::Minutes,
        }
    }

    /// The interval of one row.
    fn interval(self) -> Interval {
        match self {
            BarTable::Minutes => Interval::Minutes(1),
            BarTable::Hours | BarTable::Packs => Interval::Minutes(60),
            BarTable::Days => Interval::Day,
        }
    }

    /// Seconds of 1-minute bars one row covers.
    pub(crate) fn bucket_seconds(self) -> i64 {
        match self {
            BarTable::Minutes => 60,
            BarTable::Hours | BarTable::Packs => 3_600,
            BarTable::Days => 86_400,
        }
    }

    /// The first minute (epoch seconds) of the row that the minute at `time` belongs to.
    pub(crate) fn bucket_first_minute(self, time: i64) -> i64 {
        self.stamp_to_minute(self.interval().bucket_start(time))
    }

    /// The `time` a row holds for the bucket whose first minute is `minute` (a daily row is
    /// stamped with its Indian date at 00:00 UTC, 05:30 after its first minute).
    pub(crate) fn stamp(self, minute: i64) -> i64 {
        match self {
            BarTable::Days => minute + IST_OFFSET_SECONDS,
            BarTable::Minutes | BarTable::Hours | BarTable::Packs => minute,
        }
    }

    fn stamp_to_minute(self, stamp: i64) -> i64 {
        match self {
            BarTable::Days => stamp - IST_OFFSET_SECONDS,
            BarTable::Minutes | BarTable::Hours | BarTable::Packs => stamp,
        }
    }

    /// The minutes `[first, end)` of whole rows of this table that cover the minutes
    /// `first_minute..=last_minute`.
    pub(crate) fn covering(self, first_minute: i64, last_minute: i64) -> (i64, i64) {
        (
            self.bucket_first_minute(first_minute),
            self.bucket_first_minute(last_minute) + self.bucket_seconds(),
        )
    }
}

/// Per instrument in `bars`, its first and last minute: the spans whose rollup rows a write
/// of `bars` changes.
pub(crate) fn instrument_spans(bars: &[InstrumentBar]) -> Vec<(&str, &str, i64, i64)> {
    let mut spans: std::collections::HashMap<(&str, &str), (i64, i64)> =
        std::collections::HashMap::new();
    for item in bars {
        let time = item.bar.time;
        spans
            .entry((item.exchange.as_str(), item.symbol.as_str()))
            .and_modify(|(first, last)| {
                *first = (*first).min(time);
                *last = (*last).max(time);
            })
            .or_insert((time, time));
    }
    spans
        .into_iter()
        .map(|((exchange, symbol), (first, last))| (exchange, symbol, first, last))
        .collect()
}

#[macro_use]
pub(crate) mod sql;
pub(crate) mod packs;
#[cfg(test)]
mod packs_store_tests;
#[macro_use]
pub(crate) mod rollups;
#[macro_use]
mod schema;
mod queries;
pub(crate) use queries::{EsbCommandRow, Queries};
pub(crate) mod postgres;
pub(crate) use postgres::connect as connect_postgres;
pub(crate) mod sqlite;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (or the connection failed).
    #[error("database error: {}", postgres_message(.0))]
    Postgres(#[from] ::postgres::Error),
    /// The database file or its folder could not be created.
    #[error("cannot open database {path}: {reason}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A stored row holds a value this build cannot read.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The store's worker is gone (shutting down).
    #[error("the store is shut down")]
    Closed,
    /// A transaction failed and was rolled back.
    #[error("the transaction failed and was rolled back: {0}")]
    Transaction(String),
    /// A blocking task failed.
    #[error("store task failed: {0}")]
    Task(String),
    /// The order engine stopped taking writes: it could not reload its state from the
    /// store after a failed commit or a panicked job, or this `core` is a standby.
    #[error("{0}")]
    WritesStopped(String),
    /// A write transaction of a deposed leader: another `core` took over since (see
    /// [`crate::leadership`]). Nothing of the transaction was committed.
    #[error("{0}")]
    Fenced(String),
}

/// A PostgreSQL error with the server's message (the driver's own text is only "db error").
fn postgres_message(error: &::postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.to_string();
    }
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// How hard a commit waits for the disk (SQLite `PRAGMA synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreSync {
    /// `FULL` (default): the WAL is flushed to disk at every commit, so an acknowledged
    /// order survives a power loss. The engine's group commit shares one flush between
    /// all the orders of a batch.
    #[default]
    Full,
    /// `NORMAL`: commits reach the OS but are flushed only at checkpoints. Survives a
    /// process crash, not a power loss or kernel panic; faster on slow disks.
    Normal,
}

impl StoreSync {
    /// The pragma value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreSync::Full => "FULL",
            StoreSync::Normal => "NORMAL",
        }
    }

    /// Reads `full` or `normal` (any case).
    pub fn parse(value: &str) -> Option<StoreSync> {
        match value.trim().to_ascii_lowercase().as_str() {
            "full" => Some(StoreSync::Full),
            "normal" => Some(StoreSync::Normal),
            _ => None,
        }
    }
}

/// Where the store is: what `DATABASE_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its `postgres://` URL (libpq's URL form).
    Postgres(String),
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => write!(f, "{}", postgres::redact(url)),
        }
    }
}

impl From<&Path> for StoreLocation {
    fn from(path: &Path) -> Self {
        StoreLocation::Sqlite(path.to_path_buf())
    }
}

impl From<&PathBuf> for StoreLocation {
    fn from(path: &PathBuf) -> Self {
        StoreLocation::Sqlite(path.clone())
    }
}

impl From<PathBuf> for StoreLocation {
    fn from(path: PathBuf) -> Self {
        StoreLocation::Sqlite(path)
    }
}

impl From<&StoreLocation> for StoreLocation {
    fn from(location: &StoreLocation) -> Self {
        location.clone()
    }
}

/// How a transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxKind {
    /// Will write: takes the write lock up front where the backend has one (SQLite
    /// `BEGIN IMMEDIATE`), instead of failing a read-to-write upgrade later.
    Write,
    /// Only reads.
    Read,
}

/// A store connection: runs [`Queries`] outside a transaction or inside one.
pub(crate) trait Database: Send + std::fmt::Debug {
    /// The queries, outside a transaction (each statement commits on its own).
    fn queries(&self) -> &dyn Queries;

    /// Runs `work` in a transaction: committed when it returns `Ok`, rolled back when it
    /// returns `Err` or panics.
    fn transaction(
        &mut self,
        kind: TxKind,
        work: &mut dyn FnMut(&dyn Queries) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// The SQLite file, for the WAL checkpointer (`None` on other backends).
    fn sqlite_path(&self) -> Option<PathBuf> {
        self.sqlite_connection()?
            .path()
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
    }

    /// The SQLite connection, for SQLite-only settings (`None` on other backends).
    fn sqlite_connection(&self) -> Option<&rusqlite::Connection>;

    /// From now on, every write transaction first checks that the leadership epoch is still
    /// `epoch` and fails with [`StoreError::Fenced`] otherwise (PostgreSQL; `None`: no
    /// check). SQLite has no leadership: one process owns the file.
    fn set_fence(&mut self, _epoch: Option<i64>) {}
}

impl dyn Database + '_ {
    /// [`Database::transaction`] with a value and the caller's error type: `work`'s error
    /// rolls back and is returned as is; a failed begin or commit is a [`StoreError`].
    pub(crate) fn in_transaction<T, E, F>(&mut self, kind: TxKind, work: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&dyn Queries) -> Result<T, E>,
    {
        let mut work = Some(work);
        let mut outcome: Option<Result<T, E>> = None;
        let result = self.transaction(kind, &mut |queries| {
            let Some(work) = work.take() else {
                return Err(StoreError::Transaction(
                    "a transaction's work ran twice".to_string(),
                ));
            };
            match work(queries) {
                Ok(value) => {
                    outcome = Some(Ok(value));
                    Ok(())
                }
                Err(error) => {
                    outcome = Some(Err(error));
                    Err(StoreError::Transaction("rolled back".to_string()))
                }
            }
        });
        match (result, outcome) {
            (Ok(()), Some(Ok(value))) => Ok(value),
            (_, Some(Err(error))) => Err(error),
            (Err(error), _) => Err(error.into()),
            (Ok(()), None) => Err(StoreError::Transaction(
                "the transaction's work did not run".to_string(),
            )
            .into()),
        }
    }
}

/// Opens (creating and migrating if needed) the store at `location`.
pub(crate) fn open(
    location: &StoreLocation,
    sync: StoreSync,
) -> Result<Box<dyn Database>, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => Ok(Box::new(sqlite::SqliteDatabase::open(path, sync)?)),
        // PostgreSQL commits are durable by its own `synchronous_commit` setting.
        StoreLocation::Postgres(url) => Ok(Box::new(postgres::PostgresDatabase::open(url)?)),
    }
}

/// Opens the PostgreSQL store at `location` without migrating it, in a session that can only
/// read (an edge). SQLite stores are refused: they have one process, which owns them.
pub(crate) fn open_read_only(location: &StoreLocation) -> Result<Box<dyn Database>, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => Err(StoreError::Open {
            path: path.display().to_string(),
            reason:
                "read-only access is for a shared PostgreSQL store (DATABASE_URL=postgres://...)"
                    .to_string(),
        }),
        StoreLocation::Postgres(url) => {
            Ok(Box::new(postgres::PostgresDatabase::open_read_only(url)?))
        }
    }
}

/// A stored first response to a request with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRow {
    /// Hash of the endpoint and the request body (without `apikey`).
    pub fingerprint: String,
    /// The HTTP status of the first response.
    pub status: u16,
    /// The first response body (JSON text).
    pub response: String,
}

/// Whether ESB commands may act for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EsbAccess {
    /// No such user.
    NoSuchUser,
    /// The user has no active API key (revoked, or never issued): disabled everywhere.
    Disabled,
    /// The user has not allowed ESB control (`oa-server esb allow --user ...`).
    NotAllowed,
    /// The user exists, has an active key and allows ESB control.
    Allowed,
}

/// A stored API key row (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRow {
    /// Owner.
    pub user_id: String,
    /// Argon2 PHC string of key + pepper.
    pub key_hash: String,
}

/// A key rotation or revocation recorded in `key_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyEvent {
    /// Position in the log (grows with every event).
    pub seq: i64,
    /// Whose key changed.
    pub user_id: String,
    /// `rotated` or `revoked`.
    pub action: String,
}

/// One line of `apikey list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKeyInfo {
    /// The user.
    pub user_id: String,
    /// When the user was created (RFC 3339).
    pub user_created_at: String,
    /// When the active key was created, if the user has one.
    pub key_created_at: Option<String>,
    /// How many keys were revoked so far.
    pub revoked_keys: u64,
    /// Whether ESB commands may act for the user (`oa-server esb allow`).
    pub esb_allowed: bool,
}

/// An undelivered outbox row as stored: its payload, or why it is not bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxRow {
    /// Position in the outbox.
    pub seq: i64,
    /// The envelope id (as text).
    pub id: String,
    /// The JSON payload, or why the stored value is not one.
    pub payload: Result<Vec<u8>, String>,
}

/// The key of a stored ESB offset: a consumer group's position in one partition of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetKey<'a> {
    /// `KAFKA_CONSUMER_GROUP`.
    pub group: &'a str,
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
}

/// How a stored ESB offset is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetWrite {
    /// Never moves it backwards (the offset after a processed command, a start position).
    Advance,
    /// Replaces it, also with a smaller one (a partition restarted from its earliest
    /// retained record).
    Replace,
}

/// The current time as RFC 3339 text (for `created_at` columns).
pub(crate) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn corrupt(table: &'static str, reason: String) -> StoreError {
    StoreError::Corrupt { table, reason }
}

fn parse_choice<T: Choice>(table: &'static str, value: &str) -> Result<T, StoreError> {
    T::parse(value).ok_or_else(|| corrupt(table, format!("unknown value {value:?}")))
}

fn parse_book(table: &'static str, value: &str) -> Result<Book, StoreError> {
    Book::parse(value).ok_or_else(|| corrupt(table, format!("unknown book {value:?}")))
}

fn parse_exchange(table: &'static str, value: &str) -> Result<Exchange, StoreError> {
    Exchange::parse(value).ok_or_else(|| corrupt(table, format!("unknown exchange {value:?}")))
}
