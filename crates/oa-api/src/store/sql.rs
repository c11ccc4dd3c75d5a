//! What the two backends share to run one query written once: its SQL in both dialects
//! ([`Sql`], made by `sql!` from the PostgreSQL text), its values ([`SqlValue`], which both
//! drivers bind), the rows it reads ([`StoredRow`]) and the few operations each backend
//! implements its own way ([`Backend`]). [`super::Queries`] is written over these.

use std::ops::ControlFlow;

use oa_marketdata_core::candles::{Bar, InstrumentBar};

use super::StoreError;
use super::packs::Pack;

/// One statement in both dialects: SQLite's text numbers its placeholders `?1`, `?2`...,
/// PostgreSQL's `$1`, `$2`...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sql {
    /// The SQLite text.
    pub(crate) sqlite: &'static str,
    /// The PostgreSQL text.
    pub(crate) postgres: &'static str,
}

/// `postgres` with every placeholder `$N` turned into `?N` (the same length), for
/// `sql!`.
pub(crate) const fn question_mark_placeholders<const N: usize>(postgres: &str) -> [u8; N] {
    let bytes = postgres.as_bytes();
    let mut sqlite = [0u8; N];
    let mut index = 0;
    while index < N {
        let byte = bytes[index];
        let placeholder = byte == b'$' && index + 1 < N && bytes[index + 1].is_ascii_digit();
        sqlite[index] = if placeholder { b'?' } else { byte };
        index += 1;
    }
    sqlite
}

/// A [`Sql`], made at compile time from one text where the dialects agree, or from a text
/// for each where they do not; every text is written with PostgreSQL placeholders (`$1`...).
macro_rules! sql {
    (@question_marks $text:expr) => {{
        const TEXT: &str = $text;
        const BYTES: [u8; TEXT.len()] = $crate::store::sql::question_mark_placeholders(TEXT);
        const SQLITE: &str = match ::std::str::from_utf8(&BYTES) {
            Ok(text) => text,
            Err(_) => panic!("SQL text is not UTF-8"),
        };
        SQLITE
    }};
    (sqlite: $sqlite:expr, postgres: $postgres:expr $(,)?) => {
        $crate::store::sql::Sql {
            sqlite: sql!(@question_marks $sqlite),
            postgres: $postgres,
        }
    };
    ($both:expr) => {
        sql!(sqlite: $both, postgres: $both)
    };
}

/// A value both drivers bind (text, numbers, booleans, bytes).
pub(crate) trait SqlValue: rusqlite::ToSql + postgres::types::ToSql + Sync {}

impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync> SqlValue for T {}

/// A statement's values, for its placeholders `1..`.
pub(crate) type Values<'a> = &'a [&'a dyn SqlValue];

/// A row read by a query, by column index. A column of another type than asked for is the
/// driver's error.
pub(crate) trait StoredRow {
    /// A `TEXT` column.
    fn text(&self, index: usize) -> Result<&str, StoreError>;
    /// A `TEXT` column that may be `NULL`.
    fn optional_text(&self, index: usize) -> Result<Option<&str>, StoreError>;
    /// An integer column (any width).
    fn integer(&self, index: usize) -> Result<i64, StoreError>;
    /// A floating-point column.
    fn real(&self, index: usize) -> Result<f64, StoreError>;
    /// A boolean (SQLite: an integer, true when not 0).
    fn flag(&self, index: usize) -> Result<bool, StoreError>;
    /// A `BLOB` (`BYTEA`) column.
    fn bytes(&self, index: usize) -> Result<&[u8], StoreError>;
}

/// What [`Backend::read_rows`] does with a row: go on to the next one, or stop.
pub(crate) type EachRow<'a> =
    &'a mut dyn FnMut(&dyn StoredRow) -> Result<ControlFlow<()>, StoreError>;

/// Work [`Backend::atomically`] runs in a transaction.
pub(crate) type Work<'a> = &'a mut dyn FnMut(&dyn Backend) -> Result<(), StoreError>;

/// What each backend does its own way; every other query is written once over it (see
/// [`super::Queries`]).
pub(crate) trait Backend {
    /// Runs a statement; returns how many rows it changed.
    fn write(&self, sql: Sql, values: Values<'_>) -> Result<usize, StoreError>;
    /// Runs a query and hands each row to `each`, in order, until it breaks.
    fn read_rows(&self, sql: Sql, values: Values<'_>, each: EachRow<'_>) -> Result<(), StoreError>;
    /// Runs `work` in a transaction of its own: committed when it returns `Ok`, rolled back
    /// otherwise.
    fn atomically(&self, work: Work<'_>) -> Result<(), StoreError>;
    /// Writes 1-minute bar rows, replacing a stored bar of the same instrument and minute
    /// when `overwrite`, keeping it otherwise; returns the rows written.
    fn insert_bar_rows(&self, bars: &[InstrumentBar], overwrite: bool)
    -> Result<usize, StoreError>;
    /// Inserts packs into `bars_packed`.
    fn insert_packs(&self, packs: &[Pack]) -> Result<(), StoreError>;
}

/// A statement with its values, to read with [`Query::rows`], [`Query::first`] or
/// [`Query::count`].
pub(crate) struct Query<'q, B: ?Sized> {
    backend: &'q B,
    sql: Sql,
    values: Values<'q>,
}

/// `sql` with `values`, to read on `backend`.
pub(crate) fn query<'q, B: Backend + ?Sized>(
    backend: &'q B,
    sql: Sql,
    values: Values<'q>,
) -> Query<'q, B> {
    Query {
        backend,
        sql,
        values,
    }
}

impl<B: Backend + ?Sized> Query<'_, B> {
    /// Every row, mapped by `map`.
    pub(crate) fn rows<T>(
        self,
        map: impl Fn(&dyn StoredRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.mapped(usize::MAX, map)
    }

    /// The first row, mapped by `map` (`None` when there is none).
    pub(crate) fn first<T>(
        self,
        map: impl Fn(&dyn StoredRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.mapped(1, map)?.pop())
    }

    /// The non-negative integer in the first column of the first row (a count; 0 without
    /// a row).
    pub(crate) fn count(self) -> Result<u64, StoreError> {
        let count = self.first(|row| row.integer(0))?;
        Ok(count.unwrap_or(0).max(0) as u64)
    }

    /// The rows, at most `at_most` of them, mapped by `map`.
    fn mapped<T>(
        self,
        at_most: usize,
        map: impl Fn(&dyn StoredRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut mapped = Vec::new();
        self.backend.read_rows(self.sql, self.values, &mut |row| {
            mapped.push(map(row)?);
            Ok(if mapped.len() < at_most {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            })
        })?;
        Ok(mapped)
    }
}

/// The bar in columns `first..first + 7` of a row (time, open, high, low, close, volume, oi).
pub(crate) fn bar_from(row: &dyn StoredRow, first: usize) -> Result<Bar, StoreError> {
    Ok(Bar {
        time: row.integer(first)?,
        open: row.real(first + 1)?,
        high: row.real(first + 2)?,
        low: row.real(first + 3)?,
        close: row.real(first + 4)?,
        volume: row.real(first + 5)?,
        oi: row.real(first + 6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::Sql;

    #[test]
    fn sqlite_text_numbers_the_same_placeholders_with_question_marks() {
        const SELECT: Sql = sql!("SELECT $1, '^[0-9]{1,18}$' FROM t WHERE a = $12 AND b = $2");
        assert_eq!(
            SELECT.sqlite,
            "SELECT ?1, '^[0-9]{1,18}$' FROM t WHERE a = ?12 AND b = ?2"
        );
        assert_eq!(
            SELECT.postgres,
            "SELECT $1, '^[0-9]{1,18}$' FROM t WHERE a = $12 AND b = $2"
        );
        let both = sql!(sqlite: "SELECT max($1, 0)", postgres: "SELECT GREATEST($1, 0)");
        assert_eq!(both.sqlite, "SELECT max(?1, 0)");
        assert_eq!(both.postgres, "SELECT GREATEST($1, 0)");
    }
}
