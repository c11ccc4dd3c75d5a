//! The SQL that keeps the hourly and daily rollups (`bars_hour`, `bars_day`) equal to the
//! 1-minute bars aggregated ([`super::BarTable`]), shared by both backends.

use super::BarTable;
use super::sql::Sql;

/// The `time` of the hourly row a minute belongs to (`Interval::Minutes(60)`, anchored at
/// 09:15 IST = 13,500 s after a UTC midnight); integer division floors positive times.
macro_rules! HOUR_BUCKET {
    () => {
        "(13500 + ((time - 13500) / 3600) * 3600)"
    };
}

/// The `time` of the daily row a minute belongs to (`Interval::Day`: the Indian date at
/// 00:00 UTC; IST is 19,800 s ahead of UTC).
macro_rules! DAY_BUCKET {
    () => {
        "(((time + 19800) / 86400) * 86400)"
    };
}

/// `INSERT INTO table ... SELECT` the rollup rows of the 1-minute bars matching `filter`
/// (first open, highest high, lowest low, last close, summed volume, last open interest).
macro_rules! rollup_insert {
    ($table:literal, $bucket:ident, $filter:expr) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (exchange, symbol, time, open, high, low, close, volume, oi)
             SELECT exchange, symbol, bucket, min(first_open), max(high), min(low),
                 min(last_close), sum(volume), min(last_oi)
             FROM (SELECT exchange, symbol, high, low, volume, ",
            $bucket!(),
            " AS bucket,
                 first_value(open) OVER w AS first_open, last_value(close) OVER w AS last_close,
                 last_value(oi) OVER w AS last_oi
                 FROM bars ",
            $filter,
            " WINDOW w AS (PARTITION BY exchange, symbol, ",
            $bucket!(),
            " ORDER BY time ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) AS minutes
             GROUP BY exchange, symbol, bucket"
        )
    };
}

/// The [`RollupSql`] of one table: the deletes and the inserts share their `WHERE` clauses.
macro_rules! rollup_sql {
    ($table:literal, $bucket:ident) => {
        rollup_sql!(
            @filters $table,
            $bucket,
            "WHERE exchange = $1 AND symbol = $2 AND time >= $3 AND time < $4",
            "WHERE time >= $1 AND time < $2"
        )
    };
    (@filters $table:literal, $bucket:ident, $instrument:expr, $all:expr) => {
        RollupSql {
            delete_instrument: sql!(concat!("DELETE FROM ", $table, " ", $instrument)),
            insert_instrument: sql!(rollup_insert!($table, $bucket, $instrument)),
            delete_all: sql!(concat!("DELETE FROM ", $table, " ", $all)),
            insert_all: sql!(rollup_insert!($table, $bucket, $all)),
        }
    };
}

/// The statements that rebuild one rollup table's rows: the deletes take the rows' `time`
/// range (stamps), the inserts the range of the 1-minute bars they are made of; for one
/// instrument (exchange, symbol, from, until) or for all (from, until).
pub(crate) struct RollupSql {
    pub(crate) delete_instrument: Sql,
    pub(crate) insert_instrument: Sql,
    pub(crate) delete_all: Sql,
    pub(crate) insert_all: Sql,
}

/// The rebuild statements of `bars_hour` and `bars_day` (`None` for the other tables).
pub(crate) fn rollup_statements(table: BarTable) -> Option<RollupSql> {
    match table {
        BarTable::Minutes | BarTable::Packs => None,
        BarTable::Hours => Some(rollup_sql!("bars_hour", HOUR_BUCKET)),
        BarTable::Days => Some(rollup_sql!("bars_day", DAY_BUCKET)),
    }
}
