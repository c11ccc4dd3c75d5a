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
use oa_marketdata_core::candles::{Bar, InstrumentBar};
use parking_lot::Mutex;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use super::packs::{PACK_SECONDS, Pack, PackScope, Packer, decode_into, pack_start};
use super::{
    BarRange, BarTable, Database, EsbAccess, IdempotencyRow, KeyEvent, KeyRow, OffsetKey,
    OffsetWrite, OutboxRow, Queries, StoreError, TxKind, UserKeyInfo, instrument_spans, now_text,
    parse_book, parse_choice, parse_exchange,
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
            "$1",
            "$2",
            "$3",
            "$4"
        )),
        BarTable::Days => Some(rollup_sql!("bars_day", DAY_BUCKET, "$1", "$2", "$3", "$4")),
    }
}

/// Schema migrations, applied in order; `oa_schema_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    user_id     TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    esb_allowed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
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
    quantity            DOUBLE PRECISION NOT NULL,
    pricetype           TEXT NOT NULL,
    product             TEXT NOT NULL,
    price               DOUBLE PRECISION NOT NULL,
    trigger_price       DOUBLE PRECISION NOT NULL,
    disclosed_quantity  DOUBLE PRECISION NOT NULL,
    status              TEXT NOT NULL,
    filled_quantity     DOUBLE PRECISION NOT NULL,
    average_price       DOUBLE PRECISION NOT NULL,
    blocked_margin      DOUBLE PRECISION NOT NULL,
    rejection_reason    TEXT NOT NULL,
    created_ms          BIGINT NOT NULL,
    updated_ms          BIGINT NOT NULL
);
CREATE INDEX orders_user ON orders(book, user_id);
CREATE INDEX orders_updated ON orders(updated_ms);
CREATE TABLE trades (
    tradeid     BIGINT PRIMARY KEY,
    orderid     TEXT NOT NULL,
    book        TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    action      TEXT NOT NULL,
    product     TEXT NOT NULL,
    quantity    DOUBLE PRECISION NOT NULL,
    price       DOUBLE PRECISION NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX trades_created ON trades(created_ms);
CREATE TABLE positions (
    book            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    exchange        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    product         TEXT NOT NULL,
    quantity        DOUBLE PRECISION NOT NULL,
    average_price   DOUBLE PRECISION NOT NULL,
    realized_pnl    DOUBLE PRECISION NOT NULL,
    margin          DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (book, user_id, exchange, symbol, product)
);
CREATE TABLE funds (
    book            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    starting        DOUBLE PRECISION NOT NULL,
    cash            DOUBLE PRECISION NOT NULL,
    order_margin    DOUBLE PRECISION NOT NULL,
    position_margin DOUBLE PRECISION NOT NULL,
    realized_pnl    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (book, user_id)
);
CREATE TABLE order_log (
    id          BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL,
    mode        TEXT NOT NULL,
    api_type    TEXT NOT NULL,
    request     TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX order_log_user_mode ON order_log(mode, user_id);
CREATE TABLE outbox (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    created_at    TEXT NOT NULL,
    delivered_at  TEXT
);
CREATE INDEX outbox_undelivered ON outbox(seq) WHERE delivered_at IS NULL;
CREATE TABLE outbox_quarantine (
    seq             BIGINT PRIMARY KEY,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         BYTEA,
    created_at      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    quarantined_at  TEXT NOT NULL
);
CREATE TABLE esb_commands (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    status        TEXT NOT NULL,
    response      TEXT NOT NULL,
    topic         TEXT NOT NULL,
    partition     INTEGER NOT NULL,
    "offset"      BIGINT NOT NULL,
    created_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE TABLE esb_offsets (
    consumer_group  TEXT NOT NULL,
    topic           TEXT NOT NULL,
    partition       INTEGER NOT NULL,
    next_offset     BIGINT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
CREATE TABLE key_events (
    seq         BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE TABLE idempotency_keys (
    user_id       TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
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
    time        BIGINT NOT NULL,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION NOT NULL,
    oi          DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (exchange, symbol, time)
);
CREATE INDEX bars_time ON bars(time);
"#,
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
    // Hourly and daily rollups of `bars` (see `BarTable`), filled from the bars stored so far.
    concat!(
        "CREATE TABLE bars_hour (exchange TEXT NOT NULL, symbol TEXT NOT NULL,
            time BIGINT NOT NULL, open DOUBLE PRECISION NOT NULL,
            high DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION NOT NULL,
            close DOUBLE PRECISION NOT NULL, volume DOUBLE PRECISION NOT NULL,
            oi DOUBLE PRECISION NOT NULL, PRIMARY KEY (exchange, symbol, time));
        CREATE INDEX bars_hour_time ON bars_hour(time);
        CREATE TABLE bars_day (exchange TEXT NOT NULL, symbol TEXT NOT NULL,
            time BIGINT NOT NULL, open DOUBLE PRECISION NOT NULL,
            high DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION NOT NULL,
            close DOUBLE PRECISION NOT NULL, volume DOUBLE PRECISION NOT NULL,
            oi DOUBLE PRECISION NOT NULL, PRIMARY KEY (exchange, symbol, time));
        CREATE INDEX bars_day_time ON bars_day(time);
        ",
        rollup_insert!("bars_hour", HOUR_BUCKET, ""),
        ";",
        rollup_insert!("bars_day", DAY_BUCKET, ""),
        ";"
    ),
    // Packed hours of 1-minute bars (see `packs`), filled from the bars stored so far by
    // `pack_every_bar` in the same transaction. A pack (about 2 KB) is kept in the row,
    // compressed if need be, rather than moved to a TOAST table.
    r#"
CREATE TABLE bars_packed (
    exchange    TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    time        BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (exchange, symbol, time)
);
ALTER TABLE bars_packed ALTER COLUMN data SET STORAGE MAIN;
CREATE INDEX bars_packed_time ON bars_packed(time);
"#,
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

/// The statements that rebuild `bars_packed` from `bars` (see [`PgQueries::repack`]).
const PACKED_DELETE_INSTRUMENT: &str =
    "DELETE FROM bars_packed WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4";
const PACKED_DELETE_ALL: &str = "DELETE FROM bars_packed WHERE time >= $1 AND time < $2";
const PACKED_INSERT: &str = "INSERT INTO bars_packed (exchange, symbol, time, data)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bytea[])";
const MINUTES_OF_INSTRUMENT: &str =
    "SELECT exchange, symbol, time, open, high, low, close, volume, oi FROM bars
     WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4 ORDER BY time";
const MINUTES_OF_ALL: &str =
    "SELECT exchange, symbol, time, open, high, low, close, volume, oi FROM bars
     WHERE time >= $1 AND time < $2 ORDER BY exchange, symbol, time";
const EVERY_MINUTE: &str = "SELECT exchange, symbol, time, open, high, low, close, volume, oi
     FROM bars ORDER BY exchange, symbol, time";

/// Bar rows fetched at a time while filling `bars_packed` in the migration.
const FILL_FETCH_ROWS: i32 = 20_000;

/// Fills `bars_packed` from every stored 1-minute bar (the migration that adds it), reading
/// the bars through a cursor so that memory stays bounded.
fn pack_every_bar(tx: &mut postgres::Transaction<'_>) -> Result<(), StoreError> {
    let cursor = tx.bind(EVERY_MINUTE, &[])?;
    let mut packer = Packer::default();
    loop {
        let rows = tx.query_portal(&cursor, FILL_FETCH_ROWS)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            packer.push(row.try_get(0)?, row.try_get(1)?, bar_from(row, 2)?)?;
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

/// The bar in columns `first..first + 7` of a row (time, open, high, low, close, volume, oi).
fn bar_from(row: &Row, first: usize) -> Result<Bar, StoreError> {
    Ok(Bar {
        time: row.try_get(first)?,
        open: row.try_get(first + 1)?,
        high: row.try_get(first + 2)?,
        low: row.try_get(first + 3)?,
        close: row.try_get(first + 4)?,
        volume: row.try_get(first + 5)?,
        oi: row.try_get(first + 6)?,
    })
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

    fn query_opt(&self, sql: &'static str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        self.with_client(|client| {
            let statement = self.statement(client, sql)?;
            Ok(client.query_opt(&statement, params)?)
        })
    }

    fn query_one(&self, sql: &'static str, params: Params<'_>) -> Result<Row, StoreError> {
        self.with_client(|client| {
            let statement = self.statement(client, sql)?;
            Ok(client.query_one(&statement, params)?)
        })
    }

    /// Rebuilds the packs of `scope` from the 1-minute bars (a pack left without bars goes).
    fn repack(&self, scope: PackScope<'_>) -> Result<(), StoreError> {
        let rows = match scope {
            PackScope::Instrument(exchange, symbol, from, until) => {
                let params: Params<'_> = &[&exchange, &symbol, &from, &until];
                self.execute(PACKED_DELETE_INSTRUMENT, params)?;
                self.query(MINUTES_OF_INSTRUMENT, params)?
            }
            PackScope::Hours(from, until) => {
                self.execute(PACKED_DELETE_ALL, &[&from, &until])?;
                self.query(MINUTES_OF_ALL, &[&from, &until])?
            }
        };
        let mut packer = Packer::default();
        for row in &rows {
            packer.push(row.try_get(0)?, row.try_get(1)?, bar_from(row, 2)?)?;
        }
        let packs = packer.finish()?;
        self.with_client(|client| insert_packs(client, &packs))
    }

    /// Runs `work` in a transaction of its own (a savepoint when already in one).
    fn atomically(
        &self,
        work: impl FnOnce(&PgQueries<postgres::Transaction<'_>>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with_client(|client| {
            let tx = client.transaction()?;
            let inner = PgQueries::new(tx, Arc::clone(&self.statements), true);
            work(&inner)?;
            inner.commit()
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

fn text(row: &Row, index: usize) -> Result<String, StoreError> {
    Ok(row.try_get::<_, String>(index)?)
}

fn order_from(row: &Row) -> Result<Order, StoreError> {
    const T: &str = "orders";
    Ok(Order {
        orderid: text(row, 0)?,
        book: parse_book(T, &text(row, 1)?)?,
        user_id: text(row, 2)?,
        strategy: text(row, 3)?,
        terms: OrderFields {
            exchange: parse_exchange(T, &text(row, 4)?)?,
            symbol: text(row, 5)?,
            action: parse_choice::<Action>(T, &text(row, 6)?)?,
            quantity: row.try_get(7)?,
            pricetype: parse_choice::<PriceType>(T, &text(row, 8)?)?,
            product: parse_choice::<Product>(T, &text(row, 9)?)?,
            price: row.try_get(10)?,
            trigger_price: row.try_get(11)?,
            disclosed_quantity: row.try_get(12)?,
        },
        status: parse_choice::<OrderStatus>(T, &text(row, 13)?)?,
        filled_quantity: row.try_get(14)?,
        average_price: row.try_get(15)?,
        blocked_margin: row.try_get(16)?,
        rejection_reason: text(row, 17)?,
        created_ms: row.try_get(18)?,
        updated_ms: row.try_get(19)?,
    })
}

fn trade_from(row: &Row) -> Result<Trade, StoreError> {
    const T: &str = "trades";
    Ok(Trade {
        tradeid: row.try_get::<_, i64>(0)?.max(0) as u64,
        orderid: text(row, 1)?,
        book: parse_book(T, &text(row, 2)?)?,
        user_id: text(row, 3)?,
        exchange: parse_exchange(T, &text(row, 4)?)?,
        symbol: text(row, 5)?,
        action: parse_choice::<Action>(T, &text(row, 6)?)?,
        product: parse_choice::<Product>(T, &text(row, 7)?)?,
        quantity: row.try_get(8)?,
        price: row.try_get(9)?,
        created_ms: row.try_get(10)?,
    })
}

impl<C: GenericClient> Queries for PgQueries<C> {
    fn save_order(&self, order: &Order) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO orders (orderid, book, user_id, strategy, exchange, symbol, action,
             quantity, pricetype, product, price, trigger_price, disclosed_quantity, status,
             filled_quantity, average_price, blocked_margin, rejection_reason, created_ms, updated_ms)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)
             ON CONFLICT (orderid) DO UPDATE SET quantity = $8, pricetype = $9, product = $10,
             price = $11, trigger_price = $12, disclosed_quantity = $13, status = $14,
             filled_quantity = $15, average_price = $16, blocked_margin = $17,
             rejection_reason = $18, updated_ms = $20",
            &[
                &order.orderid,
                &order.book.as_str(),
                &order.user_id,
                &order.strategy,
                &order.terms.exchange.as_str(),
                &order.terms.symbol,
                &order.terms.action.as_str(),
                &order.terms.quantity,
                &order.terms.pricetype.as_str(),
                &order.terms.product.as_str(),
                &order.terms.price,
                &order.terms.trigger_price,
                &order.terms.disclosed_quantity,
                &order.status.as_str(),
                &order.filled_quantity,
                &order.average_price,
                &order.blocked_margin,
                &order.rejection_reason,
                &order.created_ms,
                &order.updated_ms,
            ],
        )?;
        Ok(())
    }

    fn insert_trade(&self, trade: &Trade) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO trades (tradeid, orderid, book, user_id, exchange, symbol, action, product,
             quantity, price, created_ms) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            &[
                &(trade.tradeid as i64),
                &trade.orderid,
                &trade.book.as_str(),
                &trade.user_id,
                &trade.exchange.as_str(),
                &trade.symbol,
                &trade.action.as_str(),
                &trade.product.as_str(),
                &trade.quantity,
                &trade.price,
                &trade.created_ms,
            ],
        )?;
        Ok(())
    }

    fn save_position(&self, key: &PositionKey, position: &Position) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO positions (book, user_id, exchange, symbol, product, quantity,
             average_price, realized_pnl, margin) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
             ON CONFLICT (book, user_id, exchange, symbol, product) DO UPDATE SET quantity = $6,
             average_price = $7, realized_pnl = $8, margin = $9",
            &[
                &key.book.as_str(),
                &key.user_id,
                &key.exchange.as_str(),
                &key.symbol,
                &key.product.as_str(),
                &position.quantity,
                &position.average_price,
                &position.realized_pnl,
                &position.margin,
            ],
        )?;
        Ok(())
    }

    fn save_account(&self, key: &AccountKey, account: &Account) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO funds (book, user_id, starting, cash, order_margin,
             position_margin, realized_pnl) VALUES ($1,$2,$3,$4,$5,$6,$7)
             ON CONFLICT (book, user_id) DO UPDATE SET cash = $4, order_margin = $5,
             position_margin = $6, realized_pnl = $7",
            &[
                &key.book.as_str(),
                &key.user_id,
                &account.starting,
                &account.cash,
                &account.order_margin,
                &account.position_margin,
                &account.realized_pnl,
            ],
        )?;
        Ok(())
    }

    fn insert_log(
        &self,
        user_id: &str,
        mode: &str,
        api_type: &str,
        request: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO order_log (user_id, mode, api_type, request, response, created_ms)
             VALUES ($1,$2,$3,$4,$5,$6)",
            &[&user_id, &mode, &api_type, &request, &response, &now_ms],
        )?;
        Ok(())
    }

    fn insert_outbox(&self, envelope: &Envelope) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO outbox (id, user_id, event_type, payload, created_at)
             VALUES ($1,$2,$3,$4,$5)",
            &[
                &envelope.id.to_string(),
                &envelope.user_id,
                &envelope.event_type(),
                &envelope.to_json_bytes(),
                &envelope.timestamp_rfc3339(),
            ],
        )?;
        Ok(())
    }

    fn set_setting(&self, user_id: &str, name: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO settings (user_id, name, value) VALUES ($1,$2,$3)
             ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value",
            &[&user_id, &name, &value],
        )?;
        Ok(())
    }

    fn load_setting(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.query(
            "SELECT user_id, value FROM settings WHERE name = $1",
            &[&name],
        )?
        .iter()
        .map(|row| Ok((text(row, 0)?, text(row, 1)?)))
        .collect()
    }

    fn load_log_counts(&self, mode: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.query(
            "SELECT user_id, COUNT(*) FROM order_log WHERE mode = $1 GROUP BY user_id",
            &[&mode],
        )?
        .iter()
        .map(|row| Ok((text(row, 0)?, row.try_get::<_, i64>(1)?.max(0) as u64)))
        .collect()
    }

    fn load_orders(&self, since_ms: i64) -> Result<Vec<Order>, StoreError> {
        // Order ids are decimal numbers: by length, then text, is by number.
        self.query(
            "SELECT orderid, book, user_id, strategy, exchange, symbol, action, quantity, pricetype,
             product, price, trigger_price, disclosed_quantity, status, filled_quantity,
             average_price, blocked_margin, rejection_reason, created_ms, updated_ms
             FROM orders WHERE updated_ms >= $1 OR status IN ('open', 'trigger pending')
             ORDER BY created_ms, length(orderid), orderid",
            &[&since_ms],
        )?
        .iter()
        .map(order_from)
        .collect()
    }

    fn load_trades(&self, since_ms: i64) -> Result<Vec<Trade>, StoreError> {
        self.query(
            "SELECT tradeid, orderid, book, user_id, exchange, symbol, action, product, quantity,
             price, created_ms FROM trades WHERE created_ms >= $1 ORDER BY tradeid",
            &[&since_ms],
        )?
        .iter()
        .map(trade_from)
        .collect()
    }

    fn max_ids(&self) -> Result<(u64, u64), StoreError> {
        let row = self.query_one(
            "SELECT
               COALESCE((SELECT MAX(CAST(orderid AS BIGINT)) FROM orders
                         WHERE orderid ~ '^[0-9]{1,18}$'), 0),
               COALESCE((SELECT MAX(tradeid) FROM trades), 0)",
            &[],
        )?;
        let order: i64 = row.try_get(0)?;
        let trade: i64 = row.try_get(1)?;
        Ok((order.max(0) as u64, trade.max(0) as u64))
    }

    fn load_positions(&self) -> Result<Vec<(PositionKey, Position)>, StoreError> {
        const T: &str = "positions";
        self.query(
            "SELECT book, user_id, exchange, symbol, product, quantity, average_price, realized_pnl,
             margin FROM positions",
            &[],
        )?
        .iter()
        .map(|row| {
            Ok((
                PositionKey {
                    book: parse_book(T, &text(row, 0)?)?,
                    user_id: text(row, 1)?,
                    exchange: parse_exchange(T, &text(row, 2)?)?,
                    symbol: text(row, 3)?,
                    product: parse_choice::<Product>(T, &text(row, 4)?)?,
                },
                Position {
                    quantity: row.try_get(5)?,
                    average_price: row.try_get(6)?,
                    realized_pnl: row.try_get(7)?,
                    margin: row.try_get(8)?,
                },
            ))
        })
        .collect()
    }

    fn load_accounts(&self) -> Result<Vec<(AccountKey, Account)>, StoreError> {
        const T: &str = "funds";
        self.query(
            "SELECT book, user_id, starting, cash, order_margin, position_margin, realized_pnl
             FROM funds",
            &[],
        )?
        .iter()
        .map(|row| {
            Ok((
                AccountKey {
                    book: parse_book(T, &text(row, 0)?)?,
                    user_id: text(row, 1)?,
                },
                Account {
                    starting: row.try_get(2)?,
                    cash: row.try_get(3)?,
                    order_margin: row.try_get(4)?,
                    position_margin: row.try_get(5)?,
                    realized_pnl: row.try_get(6)?,
                },
            ))
        })
        .collect()
    }

    fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
        since_ms: i64,
    ) -> Result<Option<IdempotencyRow>, StoreError> {
        self.query_opt(
            "SELECT fingerprint, status, response FROM idempotency_keys
             WHERE user_id = $1 AND idem_key = $2 AND created_ms >= $3",
            &[&user_id, &key, &since_ms],
        )?
        .map(|row| {
            Ok(IdempotencyRow {
                fingerprint: text(&row, 0)?,
                status: row.try_get::<_, i32>(1)?.clamp(0, 999) as u16,
                response: text(&row, 2)?,
            })
        })
        .transpose()
    }

    fn save_idempotency(
        &self,
        user_id: &str,
        key: &str,
        row: &IdempotencyRow,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO idempotency_keys
                (user_id, idem_key, fingerprint, status, response, created_ms)
             VALUES ($1,$2,$3,$4,$5,$6)
             ON CONFLICT (user_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint,
             status = excluded.status, response = excluded.response,
             created_ms = excluded.created_ms",
            &[
                &user_id,
                &key,
                &row.fingerprint,
                &i32::from(row.status),
                &row.response,
                &now_ms,
            ],
        )?;
        Ok(())
    }

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

    fn esb_command_status(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.query_opt("SELECT status FROM esb_commands WHERE id = $1", &[&id])?
            .map(|row| text(&row, 0))
            .transpose()
    }

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
        self.execute(
            r#"INSERT INTO esb_commands
                (id, user_id, event_type, status, response, topic, partition, "offset", created_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO NOTHING"#,
            &[
                &id,
                &user_id,
                &event_type,
                &status,
                &response,
                &topic,
                &partition,
                &offset,
                &now_text(),
            ],
        )?;
        Ok(())
    }

    fn esb_finish_command(&self, id: &str, status: &str, response: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE esb_commands SET status = $2, response = $3, finished_at = $4 WHERE id = $1",
            &[&id, &status, &response, &now_text()],
        )?;
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
                 VALUES ($1,$2,$3,$4,$5)
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE
                 SET next_offset = GREATEST(esb_offsets.next_offset, excluded.next_offset),
                     updated_at = excluded.updated_at"
            }
            OffsetWrite::Replace => {
                "INSERT INTO esb_offsets (consumer_group, topic, partition, next_offset, updated_at)
                 VALUES ($1,$2,$3,$4,$5)
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE
                 SET next_offset = excluded.next_offset, updated_at = excluded.updated_at"
            }
        };
        let (group, topic, partition) = (key.group, key.topic, key.partition);
        self.execute(
            sql,
            &[&group, &topic, &partition, &next_offset, &now_text()],
        )?;
        Ok(())
    }

    fn esb_stored_offset(&self, key: OffsetKey<'_>) -> Result<Option<i64>, StoreError> {
        let (group, topic, partition) = (key.group, key.topic, key.partition);
        self.query_opt(
            "SELECT next_offset FROM esb_offsets
             WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            &[&group, &topic, &partition],
        )?
        .map(|row| Ok(row.try_get(0)?))
        .transpose()
    }
    fn esb_access(&self, user_id: &str) -> Result<EsbAccess, StoreError> {
        let row = self.query_opt(
            "SELECT u.esb_allowed,
                    EXISTS (SELECT 1 FROM api_keys k
                            WHERE k.user_id = u.user_id AND k.revoked_at IS NULL)
             FROM users u WHERE u.user_id = $1",
            &[&user_id],
        )?;
        let access = match row {
            None => None,
            Some(row) => Some((row.try_get::<_, bool>(0)?, row.try_get::<_, bool>(1)?)),
        };
        Ok(match access {
            None => EsbAccess::NoSuchUser,
            Some((_, false)) => EsbAccess::Disabled,
            Some((false, true)) => EsbAccess::NotAllowed,
            Some((true, true)) => EsbAccess::Allowed,
        })
    }

    fn set_esb_allowed(&self, user_id: &str, allowed: bool) -> Result<bool, StoreError> {
        Ok(self.execute(
            "UPDATE users SET esb_allowed = $2 WHERE user_id = $1",
            &[&user_id, &allowed],
        )? == 1)
    }

    fn ensure_user(&self, user_id: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO users (user_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&user_id, &now_text()],
        )?;
        Ok(())
    }

    fn count_users(&self) -> Result<u64, StoreError> {
        let row = self.query_one("SELECT COUNT(*) FROM users", &[])?;
        Ok(row.try_get::<_, i64>(0)?.max(0) as u64)
    }

    fn has_active_key(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL LIMIT 1",
                &[&user_id],
            )?
            .is_some())
    }

    fn revoke_keys(&self, user_id: &str) -> Result<usize, StoreError> {
        Ok(self.execute(
            "UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            &[&user_id, &now_text()],
        )? as usize)
    }

    fn insert_key(&self, user_id: &str, key_id: &str, key_hash: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO api_keys (user_id, key_id, key_hash, created_at) VALUES ($1,$2,$3,$4)",
            &[&user_id, &key_id, &key_hash, &now_text()],
        )?;
        Ok(())
    }

    fn find_key(&self, key_id: &str) -> Result<Option<KeyRow>, StoreError> {
        self.query_opt(
            "SELECT user_id, key_hash FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL",
            &[&key_id],
        )?
        .map(|row| {
            Ok(KeyRow {
                user_id: text(&row, 0)?,
                key_hash: text(&row, 1)?,
            })
        })
        .transpose()
    }

    fn insert_key_event(&self, user_id: &str, action: &str) -> Result<i64, StoreError> {
        let row = self.query_one(
            "INSERT INTO key_events (user_id, action, at) VALUES ($1, $2, $3) RETURNING seq",
            &[&user_id, &action, &now_text()],
        )?;
        Ok(row.try_get(0)?)
    }

    fn last_key_event(&self) -> Result<i64, StoreError> {
        let row = self.query_one("SELECT COALESCE(MAX(seq), 0) FROM key_events", &[])?;
        Ok(row.try_get(0)?)
    }

    fn key_events_after(&self, seq: i64, limit: usize) -> Result<Vec<KeyEvent>, StoreError> {
        self.query(
            "SELECT seq, user_id, action FROM key_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&seq, &(limit as i64)],
        )?
        .iter()
        .map(|row| {
            Ok(KeyEvent {
                seq: row.try_get(0)?,
                user_id: text(row, 1)?,
                action: text(row, 2)?,
            })
        })
        .collect()
    }

    fn list_users(&self) -> Result<Vec<UserKeyInfo>, StoreError> {
        self.query(
            "SELECT u.user_id, u.created_at,
               (SELECT created_at FROM api_keys k WHERE k.user_id = u.user_id AND k.revoked_at IS NULL
                ORDER BY id DESC LIMIT 1),
               (SELECT COUNT(*) FROM api_keys k WHERE k.user_id = u.user_id AND k.revoked_at IS NOT NULL),
               u.esb_allowed
             FROM users u ORDER BY u.user_id",
            &[],
        )?
        .iter()
        .map(|row| {
            Ok(UserKeyInfo {
                user_id: text(row, 0)?,
                user_created_at: text(row, 1)?,
                key_created_at: row.try_get(2)?,
                revoked_keys: row.try_get::<_, i64>(3)?.max(0) as u64,
                esb_allowed: row.try_get(4)?,
            })
        })
        .collect()
    }

    fn outbox_prepare(&self) -> Result<(), StoreError> {
        // outbox_quarantine is part of the migrations.
        Ok(())
    }

    fn outbox_append_if_absent(&self, envelopes: &[&Envelope]) -> Result<(), StoreError> {
        self.atomically(|tx| {
            for envelope in envelopes {
                tx.execute(
                    "INSERT INTO outbox (id, user_id, event_type, payload, created_at)
                     VALUES ($1,$2,$3,$4,$5) ON CONFLICT (id) DO NOTHING",
                    &[
                        &envelope.id.to_string(),
                        &envelope.user_id,
                        &envelope.event_type(),
                        &envelope.to_json_bytes(),
                        &envelope.timestamp_rfc3339(),
                    ],
                )?;
            }
            Ok(())
        })
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
                id: text(row, 1)?,
                payload: Ok(row.try_get::<_, Vec<u8>>(2)?),
            })
        })
        .collect()
    }

    fn outbox_quarantine(&self, rows: &[(i64, String, String)]) -> Result<(), StoreError> {
        let now = now_text();
        self.atomically(|tx| {
            for (seq, _, reason) in rows {
                tx.execute(
                    "INSERT INTO outbox_quarantine
                         (seq, id, user_id, event_type, payload, created_at, reason, quarantined_at)
                     SELECT seq, id, user_id, event_type, payload, created_at, $2, $3
                     FROM outbox WHERE seq = $1
                     ON CONFLICT (seq) DO UPDATE SET reason = excluded.reason,
                     quarantined_at = excluded.quarantined_at",
                    &[seq, reason, &now],
                )?;
                tx.execute(
                    "UPDATE outbox SET delivered_at = $2 WHERE seq = $1",
                    &[seq, &now],
                )?;
            }
            Ok(())
        })
    }

    fn outbox_quarantined(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        self.query(
            "SELECT seq, id, reason FROM outbox_quarantine ORDER BY seq",
            &[],
        )?
        .iter()
        .map(|row| Ok((row.try_get(0)?, text(row, 1)?, text(row, 2)?)))
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

    fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL",
            &[],
        )?;
        Ok(row.try_get::<_, i64>(0)?.max(0) as u64)
    }

    fn outbox_prune_delivered_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        Ok(self.execute(
            "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND created_at < $1",
            &[&cutoff],
        )? as usize)
    }

    fn save_bars(&self, bars: &[InstrumentBar], overwrite: bool) -> Result<usize, StoreError> {
        // One statement per batch: the columns as arrays, unnested into rows.
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
        let written = self.execute(
            sql,
            &[
                &exchanges, &symbols, &times, open, high, low, close, volume, oi,
            ],
        )? as usize;
        for (exchange, symbol, first, last) in instrument_spans(bars) {
            for table in BarTable::ROLLUPS {
                let Some(sql) = rollup_statements(table) else {
                    continue;
                };
                let (from, until) = table.covering(first, last);
                self.execute(
                    sql.delete_instrument,
                    &[&exchange, &symbol, &table.stamp(from), &table.stamp(until)],
                )?;
                self.execute(sql.insert_instrument, &[&exchange, &symbol, &from, &until])?;
            }
            let (from, until) = BarTable::Packs.covering(first, last);
            self.repack(PackScope::Instrument(exchange, symbol, from, until))?;
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
                 WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4
                 ORDER BY time LIMIT $5"
            }
            BarTable::Hours => {
                "SELECT time, open, high, low, close, volume, oi FROM bars_hour
                 WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4
                 ORDER BY time LIMIT $5"
            }
            BarTable::Days => {
                "SELECT time, open, high, low, close, volume, oi FROM bars_day
                 WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4
                 ORDER BY time LIMIT $5"
            }
            BarTable::Packs => return self.load_packed(range, limit),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            sql,
            &[
                &range.exchange,
                &range.symbol,
                &range.from,
                &range.until,
                &limit,
            ],
        )?
        .iter()
        .map(|row| bar_from(row, 0))
        .collect()
    }

    fn prune_bars(&self, before: i64) -> Result<usize, StoreError> {
        let deleted = self.execute("DELETE FROM bars WHERE time < $1", &[&before])? as usize;
        for table in BarTable::ROLLUPS {
            let Some(sql) = rollup_statements(table) else {
                continue;
            };
            // Rows made only of pruned minutes go; the row `before` falls in is rebuilt from
            // the minutes it keeps.
            let straddling = table.bucket_first_minute(before);
            let end = straddling + table.bucket_seconds();
            self.execute(sql.delete_all, &[&(i64::MIN / 2), &table.stamp(end)])?;
            self.execute(sql.insert_all, &[&straddling, &end])?;
        }
        let straddling = BarTable::Packs.bucket_first_minute(before);
        self.execute(PACKED_DELETE_ALL, &[&(i64::MIN / 2), &straddling])?;
        self.repack(PackScope::Hours(straddling, straddling + PACK_SECONDS))?;
        Ok(deleted)
    }
}

impl<C: GenericClient> PgQueries<C> {
    /// The 1-minute bars of `range` unpacked from the packs it overlaps, at most `limit`.
    fn load_packed(&self, range: &BarRange, limit: usize) -> Result<Vec<Bar>, StoreError> {
        let rows = self.query(
            "SELECT time, data FROM bars_packed
             WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4 ORDER BY time",
            &[
                &range.exchange,
                &range.symbol,
                &pack_start(range.from),
                &range.until,
            ],
        )?;
        let mut bars = Vec::with_capacity(limit.min(4096));
        for row in &rows {
            let data: &[u8] = row.try_get(1)?;
            decode_into(row.try_get(0)?, data, range.from, range.until, &mut bars)?;
            if bars.len() >= limit {
                bars.truncate(limit);
                break;
            }
        }
        Ok(bars)
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
