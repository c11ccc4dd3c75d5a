//! Every query of the store ([`Queries`]), written once over a [`Backend`]: the statements in
//! both dialects (`sql!`), their values and the mapping of their rows. A backend implements
//! only what it does its own way: the [`Backend`] operations and a few queries.

use std::ops::ControlFlow;

use oa_events_core::Envelope;
use oa_marketdata_core::candles::{Bar, InstrumentBar};

use super::packs::{PACK_SECONDS, PackScope, Packer, decode_into, pack_start};
use super::rollups::rollup_statements;
use super::sql::{Backend, Sql, StoredRow, Values, bar_from, query};
use super::{
    BarRange, BarTable, EsbAccess, IdempotencyRow, KeyEvent, KeyRow, OffsetKey, OffsetWrite,
    OutboxRow, StoreError, UserKeyInfo, instrument_spans, now_text, parse_book, parse_choice,
    parse_exchange,
};
use crate::engine::{Account, AccountKey, Order, Position, PositionKey, Trade};
use crate::esb::{EsbPosition, EsbRequest};
use crate::journal::{IdempotencyEntry, LogEntry};
use crate::requests::OrderFields;
use crate::types::{Action, OrderStatus, PriceType, Product};

/// An ESB command as [`Queries::esb_insert_command`] records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EsbCommandRow<'a> {
    /// The command.
    pub request: &'a EsbRequest,
    /// Where it was read.
    pub position: &'a EsbPosition,
    /// Its status so far.
    pub status: &'a str,
    /// Its response so far (JSON text).
    pub response: &'a str,
}

/// Appends an envelope to the outbox, with `sql` (the plain insert, or [`OUTBOX_APPEND`]).
fn insert_envelope(
    backend: &(impl Backend + ?Sized),
    sql: Sql,
    envelope: &Envelope,
) -> Result<(), StoreError> {
    backend.write(
        sql,
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

/// Appends an envelope unless the outbox holds its id already.
const OUTBOX_APPEND: Sql = sql!(
    "INSERT INTO outbox (id, user_id, event_type, payload, created_at)
     VALUES ($1,$2,$3,$4,$5) ON CONFLICT (id) DO NOTHING"
);

/// Appends the envelopes the outbox does not hold yet (by id), in order, in one transaction
/// of their own.
pub(crate) fn append_envelopes(
    backend: &(impl Backend + ?Sized),
    envelopes: &[&Envelope],
) -> Result<(), StoreError> {
    backend.atomically(&mut |tx| {
        for envelope in envelopes {
            insert_envelope(tx, OUTBOX_APPEND, envelope)?;
        }
        Ok(())
    })
}

/// Every 1-minute bar, in `(exchange, symbol, time)` order, for packing.
pub(crate) const EVERY_MINUTE: Sql = sql!(
    "SELECT exchange, symbol, time, open, high, low, close, volume, oi
     FROM bars ORDER BY exchange, symbol, time"
);

/// Every query of the store. Backends implement the [`Backend`] operations and the few
/// queries without a body here, on a connection and inside a transaction; see the module
/// documentation of [`super`] for what commits together.
pub(crate) trait Queries: Backend {
    // -------------------------------------------------------------- engine rows

    /// Writes an order row (insert or replace).
    fn save_order(&self, order: &Order) -> Result<(), StoreError> {
        let terms = &order.terms;
        self.write(
            sql!(
                "INSERT INTO orders (orderid, book, user_id, strategy, exchange, symbol, action,
                 quantity, pricetype, product, price, trigger_price, disclosed_quantity, status,
                 filled_quantity, average_price, blocked_margin, rejection_reason, created_ms,
                 updated_ms)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)
                 ON CONFLICT (orderid) DO UPDATE SET quantity = $8, pricetype = $9,
                 product = $10, price = $11, trigger_price = $12, disclosed_quantity = $13,
                 status = $14, filled_quantity = $15, average_price = $16,
                 blocked_margin = $17, rejection_reason = $18, updated_ms = $20"
            ),
            &[
                &order.orderid,
                &order.book.as_str(),
                &order.user_id,
                &order.strategy,
                &terms.exchange.as_str(),
                &terms.symbol,
                &terms.action.as_str(),
                &terms.quantity,
                &terms.pricetype.as_str(),
                &terms.product.as_str(),
                &terms.price,
                &terms.trigger_price,
                &terms.disclosed_quantity,
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

    /// Inserts a trade.
    fn insert_trade(&self, trade: &Trade) -> Result<(), StoreError> {
        self.write(
            sql!(
                "INSERT INTO trades (tradeid, orderid, book, user_id, exchange, symbol, action,
                 product, quantity, price, created_ms)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
            ),
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

    /// Writes a position row.
    fn save_position(&self, key: &PositionKey, position: &Position) -> Result<(), StoreError> {
        self.write(
            sql!(
                "INSERT INTO positions (book, user_id, exchange, symbol, product, quantity,
                 average_price, realized_pnl, margin) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
                 ON CONFLICT (book, user_id, exchange, symbol, product) DO UPDATE
                 SET quantity = $6, average_price = $7, realized_pnl = $8, margin = $9"
            ),
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

    /// Writes an account's funds row.
    fn save_account(&self, key: &AccountKey, account: &Account) -> Result<(), StoreError> {
        self.write(
            sql!(
                "INSERT INTO funds (book, user_id, starting, cash, order_margin,
                 position_margin, realized_pnl) VALUES ($1,$2,$3,$4,$5,$6,$7)
                 ON CONFLICT (book, user_id) DO UPDATE SET cash = $4, order_margin = $5,
                 position_margin = $6, realized_pnl = $7"
            ),
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

    /// Appends a request/response pair to the order log, stamped `now_ms`.
    fn insert_log(&self, entry: &LogEntry, now_ms: i64) -> Result<(), StoreError> {
        self.write(
            sql!(
                "INSERT INTO order_log (user_id, mode, api_type, request, response, created_ms)
                 VALUES ($1,$2,$3,$4,$5,$6)"
            ),
            &[
                &entry.user_id,
                &entry.mode.as_str(),
                &entry.api_type,
                &entry.request.to_string(),
                &entry.response.to_string(),
                &now_ms,
            ],
        )?;
        Ok(())
    }

    /// Appends an envelope to the outbox (same transaction as its cause).
    fn insert_outbox(&self, envelope: &Envelope) -> Result<(), StoreError> {
        insert_envelope(
            self,
            sql!(
                "INSERT INTO outbox (id, user_id, event_type, payload, created_at)
                 VALUES ($1,$2,$3,$4,$5)"
            ),
            envelope,
        )
    }

    /// Writes a per-user setting.
    fn set_setting(&self, user_id: &str, name: &str, value: &str) -> Result<(), StoreError> {
        self.write(
            sql!(
                "INSERT INTO settings (user_id, name, value) VALUES ($1,$2,$3)
                 ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value"
            ),
            &[&user_id, &name, &value],
        )?;
        Ok(())
    }

    /// Every user's value of one setting.
    fn load_setting(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        query(
            self,
            sql!("SELECT user_id, value FROM settings WHERE name = $1"),
            &[&name],
        )
        .rows(|row| Ok((row.text(0)?.to_owned(), row.text(1)?.to_owned())))
    }

    /// Counts of order-log entries per user for one mode.
    fn load_log_counts(&self, mode: &str) -> Result<Vec<(String, u64)>, StoreError> {
        query(
            self,
            sql!("SELECT user_id, COUNT(*) FROM order_log WHERE mode = $1 GROUP BY user_id"),
            &[&mode],
        )
        .rows(|row| Ok((row.text(0)?.to_owned(), row.integer(1)?.max(0) as u64)))
    }

    /// The orders of the current session: active ones and those changed at or after
    /// `since_ms`, oldest first. Older orders stay in the table.
    fn load_orders(&self, since_ms: i64) -> Result<Vec<Order>, StoreError> {
        macro_rules! select_orders {
            ($by_id:literal) => {
                concat!(
                    "SELECT orderid, book, user_id, strategy, exchange, symbol, action, quantity,
                     pricetype, product, price, trigger_price, disclosed_quantity, status,
                     filled_quantity, average_price, blocked_margin, rejection_reason,
                     created_ms, updated_ms
                     FROM orders WHERE updated_ms >= $1 OR status IN ('open', 'trigger pending')
                     ORDER BY created_ms, ",
                    $by_id
                )
            };
        }
        query(
            self,
            sql!(
                sqlite: select_orders!("CAST(orderid AS INTEGER)"),
                // Order ids are decimal numbers: by length, then text, is by number.
                postgres: select_orders!("length(orderid), orderid"),
            ),
            &[&since_ms],
        )
        .rows(order_from)
    }

    /// The trades made at or after `since_ms`, oldest first.
    fn load_trades(&self, since_ms: i64) -> Result<Vec<Trade>, StoreError> {
        query(
            self,
            sql!(
                "SELECT tradeid, orderid, book, user_id, exchange, symbol, action, product,
                 quantity, price, created_ms FROM trades WHERE created_ms >= $1 ORDER BY tradeid"
            ),
            &[&since_ms],
        )
        .rows(trade_from)
    }

    /// The highest order id and trade id ever stored (ids stay unique across sessions).
    fn max_ids(&self) -> Result<(u64, u64), StoreError> {
        macro_rules! max_ids {
            ($order_id:literal) => {
                concat!(
                    "SELECT COALESCE((SELECT MAX(",
                    $order_id,
                    "), 0), COALESCE((SELECT MAX(tradeid) FROM trades), 0)"
                )
            };
        }
        let ids = query(
            self,
            sql!(
                sqlite: max_ids!("CAST(orderid AS INTEGER)) FROM orders"),
                postgres: max_ids!(
                    "CAST(orderid AS BIGINT)) FROM orders WHERE orderid ~ '^[0-9]{1,18}$'"
                ),
            ),
            &[],
        )
        .first(|row| Ok((row.integer(0)?, row.integer(1)?)))?;
        let (order, trade) = ids.unwrap_or_default();
        Ok((order.max(0) as u64, trade.max(0) as u64))
    }

    /// Every stored position.
    fn load_positions(&self) -> Result<Vec<(PositionKey, Position)>, StoreError> {
        query(
            self,
            sql!(
                "SELECT book, user_id, exchange, symbol, product, quantity, average_price,
                 realized_pnl, margin FROM positions"
            ),
            &[],
        )
        .rows(position_from)
    }

    /// Every stored account.
    fn load_accounts(&self) -> Result<Vec<(AccountKey, Account)>, StoreError> {
        query(
            self,
            sql!(
                "SELECT book, user_id, starting, cash, order_margin, position_margin,
                 realized_pnl FROM funds"
            ),
            &[],
        )
        .rows(account_from)
    }

    // -------------------------------------------------------------- idempotency keys

    /// The live record of `(user_id, key)`: one created at or after `since_ms`.
    fn find_idempotency(
        &self,
        user_id: &str,
        key: &str,
        since_ms: i64,
    ) -> Result<Option<IdempotencyRow>, StoreError> {
        query(
            self,
            sql!(
                "SELECT fingerprint, status, response FROM idempotency_keys
                 WHERE user_id = $1 AND idem_key = $2 AND created_ms >= $3"
            ),
            &[&user_id, &key, &since_ms],
        )
        .first(|row| {
            Ok(IdempotencyRow {
                fingerprint: row.text(0)?.to_owned(),
                status: row.integer(1)?.clamp(0, 999) as u16,
                response: row.text(2)?.to_owned(),
            })
        })
    }

    /// Stores the first response to a request with an `Idempotency-Key`, created `now_ms`,
    /// replacing an expired record of the key.
    fn save_idempotency(&self, entry: &IdempotencyEntry, now_ms: i64) -> Result<(), StoreError> {
        let row = &entry.row;
        self.write(
            sql!(
                "INSERT INTO idempotency_keys
                    (user_id, idem_key, fingerprint, status, response, created_ms)
                 VALUES ($1,$2,$3,$4,$5,$6)
                 ON CONFLICT (user_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint,
                 status = excluded.status, response = excluded.response,
                 created_ms = excluded.created_ms"
            ),
            &[
                &entry.user_id,
                &entry.key,
                &row.fingerprint,
                &i32::from(row.status),
                &row.response,
                &now_ms,
            ],
        )?;
        Ok(())
    }

    /// Deletes up to `limit` records created before `before_ms`; returns how many. A failure
    /// undoes only this statement, never the surrounding transaction.
    fn prune_idempotency(&self, before_ms: i64, limit: usize) -> Result<usize, StoreError>;

    // -------------------------------------------------------------- ESB consumer

    /// The status of a processed ESB command id, if it was seen before.
    fn esb_command_status(&self, id: &str) -> Result<Option<String>, StoreError> {
        query(
            self,
            sql!("SELECT status FROM esb_commands WHERE id = $1"),
            &[&id],
        )
        .first(|row| Ok(row.text(0)?.to_owned()))
    }

    /// Records an ESB command (first sighting wins: a later insert of the same id is
    /// ignored).
    fn esb_insert_command(&self, command: &EsbCommandRow<'_>) -> Result<(), StoreError> {
        let (request, position) = (command.request, command.position);
        self.write(
            sql!(
                r#"INSERT INTO esb_commands
                    (id, user_id, event_type, status, response, topic, partition, "offset",
                     created_at)
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO NOTHING"#
            ),
            &[
                &request.id,
                &request.user_id,
                &request.event_type,
                &command.status,
                &command.response,
                &position.topic,
                &position.partition,
                &position.offset,
                &now_text(),
            ],
        )?;
        Ok(())
    }

    /// Sets the final status and response of an ESB command.
    fn esb_finish_command(&self, id: &str, status: &str, response: &str) -> Result<(), StoreError> {
        self.write(
            sql!(
                "UPDATE esb_commands SET status = $2, response = $3, finished_at = $4
                 WHERE id = $1"
            ),
            &[&id, &status, &response, &now_text()],
        )?;
        Ok(())
    }

    /// Stores the next offset of a consumer group's partition, as `write` says.
    fn esb_save_offset(
        &self,
        key: OffsetKey<'_>,
        next_offset: i64,
        write: OffsetWrite,
    ) -> Result<(), StoreError> {
        macro_rules! save_offset {
            ($next_offset:literal) => {
                concat!(
                    "INSERT INTO esb_offsets
                        (consumer_group, topic, partition, next_offset, updated_at)
                     VALUES ($1,$2,$3,$4,$5)
                     ON CONFLICT (consumer_group, topic, partition) DO UPDATE
                     SET next_offset = ",
                    $next_offset,
                    ", updated_at = excluded.updated_at"
                )
            };
        }
        let sql = match write {
            OffsetWrite::Advance => sql!(
                sqlite: save_offset!("MAX(next_offset, excluded.next_offset)"),
                postgres: save_offset!("GREATEST(esb_offsets.next_offset, excluded.next_offset)"),
            ),
            OffsetWrite::Replace => sql!(save_offset!("excluded.next_offset")),
        };
        self.write(
            sql,
            &[
                &key.group,
                &key.topic,
                &key.partition,
                &next_offset,
                &now_text(),
            ],
        )?;
        Ok(())
    }

    /// The stored next offset of a consumer group's partition.
    fn esb_stored_offset(&self, key: OffsetKey<'_>) -> Result<Option<i64>, StoreError> {
        query(
            self,
            sql!(
                "SELECT next_offset FROM esb_offsets
                 WHERE consumer_group = $1 AND topic = $2 AND partition = $3"
            ),
            &[&key.group, &key.topic, &key.partition],
        )
        .first(|row| row.integer(0))
    }

    /// The user's [`EsbAccess`] (read in the caller's transaction, so a change made by
    /// another process, such as `oa-server esb deny`, is seen by the next command).
    fn esb_access(&self, user_id: &str) -> Result<EsbAccess, StoreError> {
        let access = query(
            self,
            sql!(
                "SELECT u.esb_allowed,
                        EXISTS (SELECT 1 FROM api_keys k
                                WHERE k.user_id = u.user_id AND k.revoked_at IS NULL)
                 FROM users u WHERE u.user_id = $1"
            ),
            &[&user_id],
        )
        .first(|row| Ok((row.flag(0)?, row.flag(1)?)))?;
        Ok(match access {
            None => EsbAccess::NoSuchUser,
            Some((_, false)) => EsbAccess::Disabled,
            Some((false, true)) => EsbAccess::NotAllowed,
            Some((true, true)) => EsbAccess::Allowed,
        })
    }

    /// Sets a user's ESB consent; false when the user does not exist.
    fn set_esb_allowed(&self, user_id: &str, allowed: bool) -> Result<bool, StoreError> {
        Ok(self.write(
            sql!("UPDATE users SET esb_allowed = $2 WHERE user_id = $1"),
            &[&user_id, &allowed],
        )? == 1)
    }

    // -------------------------------------------------------------- users and keys

    /// Creates a user if missing.
    fn ensure_user(&self, user_id: &str) -> Result<(), StoreError> {
        self.write(
            sql!("INSERT INTO users (user_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            &[&user_id, &now_text()],
        )?;
        Ok(())
    }

    /// Number of users.
    fn count_users(&self) -> Result<u64, StoreError> {
        query(self, sql!("SELECT COUNT(*) FROM users"), &[]).count()
    }

    /// True when the user has an active (not revoked) key.
    fn has_active_key(&self, user_id: &str) -> Result<bool, StoreError> {
        let found = query(
            self,
            sql!("SELECT 1 FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL LIMIT 1"),
            &[&user_id],
        )
        .first(|_| Ok(()))?;
        Ok(found.is_some())
    }

    /// Revokes the user's active keys; returns how many.
    fn revoke_keys(&self, user_id: &str) -> Result<usize, StoreError> {
        self.write(
            sql!("UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL"),
            &[&user_id, &now_text()],
        )
    }

    /// Stores a new key's identifier and hash.
    fn insert_key(&self, user_id: &str, key_id: &str, key_hash: &str) -> Result<(), StoreError> {
        self.write(
            sql!(
                "INSERT INTO api_keys (user_id, key_id, key_hash, created_at)
                 VALUES ($1,$2,$3,$4)"
            ),
            &[&user_id, &key_id, &key_hash, &now_text()],
        )?;
        Ok(())
    }

    /// The active key row with this identifier.
    fn find_key(&self, key_id: &str) -> Result<Option<KeyRow>, StoreError> {
        query(
            self,
            sql!("SELECT user_id, key_hash FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL"),
            &[&key_id],
        )
        .first(|row| {
            Ok(KeyRow {
                user_id: row.text(0)?.to_owned(),
                key_hash: row.text(1)?.to_owned(),
            })
        })
    }

    /// Records a key rotation or revocation; returns its `seq`.
    fn insert_key_event(&self, user_id: &str, action: &str) -> Result<i64, StoreError> {
        let seq = query(
            self,
            sql!("INSERT INTO key_events (user_id, action, at) VALUES ($1, $2, $3) RETURNING seq"),
            &[&user_id, &action, &now_text()],
        )
        .first(|row| row.integer(0))?;
        seq.ok_or_else(|| StoreError::Transaction("a key event was not recorded".to_string()))
    }

    /// The newest key event's `seq` (0 when there is none).
    fn last_key_event(&self) -> Result<i64, StoreError> {
        let seq = query(
            self,
            sql!("SELECT COALESCE(MAX(seq), 0) FROM key_events"),
            &[],
        )
        .first(|row| row.integer(0))?;
        Ok(seq.unwrap_or(0))
    }

    /// Key events after `seq`, oldest first, at most `limit`.
    fn key_events_after(&self, seq: i64, limit: usize) -> Result<Vec<KeyEvent>, StoreError> {
        query(
            self,
            sql!(
                "SELECT seq, user_id, action FROM key_events WHERE seq > $1 ORDER BY seq LIMIT $2"
            ),
            &[&seq, &(limit as i64)],
        )
        .rows(|row| {
            Ok(KeyEvent {
                seq: row.integer(0)?,
                user_id: row.text(1)?.to_owned(),
                action: row.text(2)?.to_owned(),
            })
        })
    }

    /// Every user with key metadata (never keys or hashes).
    fn list_users(&self) -> Result<Vec<UserKeyInfo>, StoreError> {
        query(
            self,
            sql!(
                "SELECT u.user_id, u.created_at,
                   (SELECT created_at FROM api_keys k
                    WHERE k.user_id = u.user_id AND k.revoked_at IS NULL
                    ORDER BY id DESC LIMIT 1),
                   (SELECT COUNT(*) FROM api_keys k
                    WHERE k.user_id = u.user_id AND k.revoked_at IS NOT NULL),
                   u.esb_allowed
                 FROM users u ORDER BY u.user_id"
            ),
            &[],
        )
        .rows(|row| {
            Ok(UserKeyInfo {
                user_id: row.text(0)?.to_owned(),
                user_created_at: row.text(1)?.to_owned(),
                key_created_at: row.optional_text(2)?.map(str::to_owned),
                revoked_keys: row.integer(3)?.max(0) as u64,
                esb_allowed: row.flag(4)?,
            })
        })
    }

    // -------------------------------------------------------------- outbox relay

    /// Creates what the relay's reader needs beyond the migrations (SQLite: the quarantine
    /// table, which belongs to the reader only).
    fn outbox_prepare(&self) -> Result<(), StoreError>;
    /// Appends envelopes not already in the outbox (by id), in the given order.
    fn outbox_append_if_absent(&self, envelopes: &[&Envelope]) -> Result<(), StoreError>;
    /// Up to `limit` undelivered rows, oldest first.
    fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError>;

    /// Copies rows to `outbox_quarantine` with their reasons and marks them delivered.
    fn outbox_quarantine(&self, rows: &[(i64, String, String)]) -> Result<(), StoreError> {
        let now = now_text();
        self.atomically(&mut |tx| {
            for (seq, _, reason) in rows {
                tx.write(
                    sql!(
                        "INSERT INTO outbox_quarantine
                             (seq, id, user_id, event_type, payload, created_at, reason,
                              quarantined_at)
                         SELECT seq, id, user_id, event_type, payload, created_at, $2, $3
                         FROM outbox WHERE seq = $1
                         ON CONFLICT (seq) DO UPDATE SET reason = excluded.reason,
                         quarantined_at = excluded.quarantined_at"
                    ),
                    &[seq, reason, &now],
                )?;
                tx.write(
                    sql!("UPDATE outbox SET delivered_at = $2 WHERE seq = $1"),
                    &[seq, &now],
                )?;
            }
            Ok(())
        })
    }

    /// Rows moved to `outbox_quarantine`, as (seq, id, reason), oldest first.
    fn outbox_quarantined(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        query(
            self,
            sql!("SELECT seq, id, reason FROM outbox_quarantine ORDER BY seq"),
            &[],
        )
        .rows(|row| {
            Ok((
                row.integer(0)?,
                row.text(1)?.to_owned(),
                row.text(2)?.to_owned(),
            ))
        })
    }

    /// Marks rows delivered (unknown or already delivered rows are ignored).
    fn outbox_mark_delivered(&self, seqs: &[i64]) -> Result<(), StoreError>;

    /// How many rows are undelivered.
    fn outbox_backlog(&self) -> Result<u64, StoreError> {
        query(
            self,
            sql!("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"),
            &[],
        )
        .count()
    }

    /// Deletes delivered rows created before `cutoff` (RFC 3339); returns how many.
    fn outbox_prune_delivered_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        self.write(
            sql!("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND created_at < $1"),
            &[&cutoff],
        )
    }

    // -------------------------------------------------------------- 1-minute bars

    /// Writes 1-minute bars; an existing bar of the same instrument and minute is replaced
    /// when `overwrite` (recorded bars), kept otherwise (backfilled bars); rebuilds the rollup
    /// rows and packs of the hours and days they fall in. Returns the rows written.
    fn save_bars(&self, bars: &[InstrumentBar], overwrite: bool) -> Result<usize, StoreError> {
        let written = self.insert_bar_rows(bars, overwrite)?;
        for (exchange, symbol, first, last) in instrument_spans(bars) {
            for table in BarTable::ROLLUPS {
                let Some(sql) = rollup_statements(table) else {
                    continue;
                };
                let (from, until) = table.covering(first, last);
                self.write(
                    sql.delete_instrument,
                    &[&exchange, &symbol, &table.stamp(from), &table.stamp(until)],
                )?;
                self.write(sql.insert_instrument, &[&exchange, &symbol, &from, &until])?;
            }
            let (from, until) = BarTable::Packs.covering(first, last);
            repack(self, PackScope::Instrument(exchange, symbol, from, until))?;
        }
        Ok(written)
    }

    /// The rows of `table` whose `time` is in `range`, oldest first, at most `limit`; for
    /// [`BarTable::Packs`] the 1-minute bars in `range` unpacked from the hours it overlaps
    /// (the same bars as [`BarTable::Minutes`] reads).
    fn load_bars(
        &self,
        table: BarTable,
        range: &BarRange,
        limit: usize,
    ) -> Result<Vec<Bar>, StoreError> {
        macro_rules! select_bars {
            ($table:literal) => {
                sql!(concat!(
                    "SELECT time, open, high, low, close, volume, oi FROM ",
                    $table,
                    " WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4
                     ORDER BY time LIMIT $5"
                ))
            };
        }
        let sql = match table {
            BarTable::Minutes => select_bars!("bars"),
            BarTable::Hours => select_bars!("bars_hour"),
            BarTable::Days => select_bars!("bars_day"),
            BarTable::Packs => return load_packed(self, range, limit),
        };
        let bound = i64::try_from(limit).unwrap_or(i64::MAX);
        // A year of 1-minute bars is about 94,000 rows: read them into a vector that grows
        // from a size that fits a few sessions.
        let mut bars = Vec::with_capacity(limit.min(4096));
        self.read_rows(
            sql,
            &[
                &range.exchange,
                &range.symbol,
                &range.from,
                &range.until,
                &bound,
            ],
            &mut |row| {
                bars.push(bar_from(row, 0)?);
                Ok(ControlFlow::Continue(()))
            },
        )?;
        Ok(bars)
    }

    /// Deletes every 1-minute bar that starts before `before` (epoch seconds) and the rollup
    /// rows and packs made of them only; rebuilds the rollup rows and the pack that keep some
    /// minutes. Returns how many 1-minute bars were deleted.
    fn prune_bars(&self, before: i64) -> Result<usize, StoreError> {
        let deleted = self.write(sql!("DELETE FROM bars WHERE time < $1"), &[&before])?;
        for table in BarTable::ROLLUPS {
            let Some(sql) = rollup_statements(table) else {
                continue;
            };
            // Rows made only of pruned minutes go; the row `before` falls in is rebuilt from
            // the minutes it keeps.
            let straddling = table.bucket_first_minute(before);
            let end = straddling + table.bucket_seconds();
            self.write(sql.delete_all, &[&(i64::MIN / 2), &table.stamp(end)])?;
            self.write(sql.insert_all, &[&straddling, &end])?;
        }
        let straddling = BarTable::Packs.bucket_first_minute(before);
        self.write(PACKED_DELETE_ALL, &[&(i64::MIN / 2), &straddling])?;
        repack(
            self,
            PackScope::Hours(straddling, straddling + PACK_SECONDS),
        )?;
        Ok(deleted)
    }
}

/// Deletes the packs of every instrument whose `time` is in `[$1, $2)`.
const PACKED_DELETE_ALL: Sql = sql!("DELETE FROM bars_packed WHERE time >= $1 AND time < $2");

/// Rebuilds the packs of `scope` from the 1-minute bars (a pack left without bars goes).
fn repack(backend: &(impl Backend + ?Sized), scope: PackScope<'_>) -> Result<(), StoreError> {
    let mut packer = Packer::default();
    let mut pack = |row: &dyn StoredRow| -> Result<ControlFlow<()>, StoreError> {
        packer.push(row.text(0)?, row.text(1)?, bar_from(row, 2)?)?;
        Ok(ControlFlow::Continue(()))
    };
    match scope {
        PackScope::Instrument(exchange, symbol, from, until) => {
            let values: Values<'_> = &[&exchange, &symbol, &from, &until];
            backend.write(
                sql!(
                    "DELETE FROM bars_packed
                     WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4"
                ),
                values,
            )?;
            backend.read_rows(
                sql!(
                    "SELECT exchange, symbol, time, open, high, low, close, volume, oi FROM bars
                     WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4
                     ORDER BY time"
                ),
                values,
                &mut pack,
            )?;
        }
        PackScope::Hours(from, until) => {
            backend.write(PACKED_DELETE_ALL, &[&from, &until])?;
            backend.read_rows(
                sql!(
                    "SELECT exchange, symbol, time, open, high, low, close, volume, oi FROM bars
                     WHERE time >= $1 AND time < $2 ORDER BY exchange, symbol, time"
                ),
                &[&from, &until],
                &mut pack,
            )?;
        }
    }
    backend.insert_packs(&packer.finish()?)
}

/// The 1-minute bars of `range` unpacked from the packs it overlaps, at most `limit`.
fn load_packed(
    backend: &(impl Backend + ?Sized),
    range: &BarRange,
    limit: usize,
) -> Result<Vec<Bar>, StoreError> {
    let mut bars = Vec::with_capacity(limit.min(4096));
    backend.read_rows(
        sql!(
            "SELECT time, data FROM bars_packed
             WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4 ORDER BY time"
        ),
        &[
            &range.exchange,
            &range.symbol,
            &pack_start(range.from),
            &range.until,
        ],
        &mut |row| {
            decode_into(
                row.integer(0)?,
                row.bytes(1)?,
                range.from,
                range.until,
                &mut bars,
            )?;
            if bars.len() >= limit {
                bars.truncate(limit);
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        },
    )?;
    Ok(bars)
}

fn order_from(row: &dyn StoredRow) -> Result<Order, StoreError> {
    const T: &str = "orders";
    let text = |index| row.text(index).map(str::to_owned);
    Ok(Order {
        orderid: text(0)?,
        book: parse_book(T, row.text(1)?)?,
        user_id: text(2)?,
        strategy: text(3)?,
        terms: OrderFields {
            exchange: parse_exchange(T, row.text(4)?)?,
            symbol: text(5)?,
            action: parse_choice::<Action>(T, row.text(6)?)?,
            quantity: row.real(7)?,
            pricetype: parse_choice::<PriceType>(T, row.text(8)?)?,
            product: parse_choice::<Product>(T, row.text(9)?)?,
            price: row.real(10)?,
            trigger_price: row.real(11)?,
            disclosed_quantity: row.real(12)?,
        },
        status: parse_choice::<OrderStatus>(T, row.text(13)?)?,
        filled_quantity: row.real(14)?,
        average_price: row.real(15)?,
        blocked_margin: row.real(16)?,
        rejection_reason: text(17)?,
        created_ms: row.integer(18)?,
        updated_ms: row.integer(19)?,
    })
}

fn trade_from(row: &dyn StoredRow) -> Result<Trade, StoreError> {
    const T: &str = "trades";
    Ok(Trade {
        tradeid: row.integer(0)?.max(0) as u64,
        orderid: row.text(1)?.to_owned(),
        book: parse_book(T, row.text(2)?)?,
        user_id: row.text(3)?.to_owned(),
        exchange: parse_exchange(T, row.text(4)?)?,
        symbol: row.text(5)?.to_owned(),
        action: parse_choice::<Action>(T, row.text(6)?)?,
        product: parse_choice::<Product>(T, row.text(7)?)?,
        quantity: row.real(8)?,
        price: row.real(9)?,
        created_ms: row.integer(10)?,
    })
}

fn position_from(row: &dyn StoredRow) -> Result<(PositionKey, Position), StoreError> {
    const T: &str = "positions";
    let key = PositionKey {
        book: parse_book(T, row.text(0)?)?,
        user_id: row.text(1)?.to_owned(),
        exchange: parse_exchange(T, row.text(2)?)?,
        symbol: row.text(3)?.to_owned(),
        product: parse_choice::<Product>(T, row.text(4)?)?,
    };
    let position = Position {
        quantity: row.real(5)?,
        average_price: row.real(6)?,
        realized_pnl: row.real(7)?,
        margin: row.real(8)?,
    };
    Ok((key, position))
}

fn account_from(row: &dyn StoredRow) -> Result<(AccountKey, Account), StoreError> {
    let key = AccountKey {
        book: parse_book("funds", row.text(0)?)?,
        user_id: row.text(1)?.to_owned(),
    };
    let account = Account {
        starting: row.real(2)?,
        cash: row.real(3)?,
        order_margin: row.real(4)?,
        position_margin: row.real(5)?,
        realized_pnl: row.real(6)?,
    };
    Ok((key, account))
}
