//! `bars_packed` on a real store (a SQLite file; a PostgreSQL database of the test's own with
//! `OA_TEST_DATABASE=postgres`): the 1-minute bars read from the packs are, bit for bit, the
//! bars read from the `bars` rows, through writes in batches (recorded bars replacing stored
//! ones, backfilled bars keeping them, bars arriving late for an hour already packed), reads
//! of any range and row bound, and pruning; and the migration that adds the packs fills them
//! from the bars of a store created with the schema before it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use oa_marketdata_core::candles::{Bar, InstrumentBar};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{BarRange, BarTable, Database, StoreError, StoreLocation, StoreSync, TxKind};

/// 2026-12-01 07:15 IST: an hour's first second, two hours before the session opens.
const FIRST_HOUR: i64 = 1_796_096_700 - 2 * 3_600;

/// A store of the backend `OA_TEST_DATABASE` names, removed when dropped.
struct TestStore {
    location: StoreLocation,
    _dir: tempfile::TempDir,
    _postgres: Option<oa_e2e::postgres::TestDatabase>,
}

fn test_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    if oa_e2e::postgres::test_backend_is_postgres() {
        let database = oa_e2e::postgres::TestDatabase::create().unwrap();
        TestStore {
            location: StoreLocation::Postgres(database.url().to_string()),
            _dir: dir,
            _postgres: Some(database),
        }
    } else {
        TestStore {
            location: StoreLocation::Sqlite(dir.path().join("oa.db")),
            _dir: dir,
            _postgres: None,
        }
    }
}

/// A bar's time and the bits of its values (`f64 ==` would hide `-0.0` against `0.0`).
fn bits(bars: &[Bar]) -> Vec<(i64, [u64; 6])> {
    bars.iter()
        .map(|bar| {
            let values = [bar.open, bar.high, bar.low, bar.close, bar.volume, bar.oi];
            (bar.time, values.map(f64::to_bits))
        })
        .collect()
}

fn range(symbol: &str, from: i64, until: i64) -> BarRange {
    BarRange {
        exchange: "NSE".to_string(),
        symbol: symbol.to_string(),
        from,
        until,
    }
}

fn load(database: &dyn Database, table: BarTable, range: &BarRange, limit: usize) -> Vec<Bar> {
    database.queries().load_bars(table, range, limit).unwrap()
}

/// One generated bar: (minute after [`FIRST_HOUR`], second inside it, price kind, price,
/// volume, oi).
type BarSpec = (i64, i64, u8, i32, u32, u32);

fn bar_of((minute, second, kind, price, volume, oi): BarSpec) -> Bar {
    // Kinds 0 and 1: prices in paise (packed as hundredths); 2: any price (packed as floats).
    let price_of = |step: i32| match kind {
        0 | 1 => f64::from(price + step) / 100.0,
        _ => f64::from(price + step) / 7.0,
    };
    Bar {
        time: FIRST_HOUR + minute * 60 + second,
        open: price_of(0),
        high: price_of(9),
        low: price_of(-4),
        close: price_of(3),
        volume: f64::from(volume) + if kind == 1 { 0.25 } else { 0.0 },
        oi: f64::from(oi),
    }
}

fn bar_spec() -> impl Strategy<Value = BarSpec> {
    (
        0i64..360,
        prop_oneof![9 => Just(0i64), 1 => 1i64..60],
        0u8..3,
        5i32..2_000_000,
        0u32..1_000_000,
        0u32..5_000,
    )
}

/// Batches of bars written one after the other, each recorded (replacing stored bars) or
/// backfilled (keeping them): over six hours, so later batches land in hours packed before.
fn batches() -> impl Strategy<Value = Vec<(Vec<BarSpec>, bool)>> {
    prop::collection::vec(
        (prop::collection::vec(bar_spec(), 1..40), any::<bool>()),
        1..7,
    )
}

/// A range in seconds after [`FIRST_HOUR`] (partial hours at both ends, or none), and a row
/// bound.
fn read() -> impl Strategy<Value = (i64, i64, usize)> {
    (-5_400i64..25_000, 0i64..25_000, 0usize..500)
}

/// What the store must hold: the bars by time.
type Model = BTreeMap<i64, Bar>;

/// Writes one batch like the bar worker does and applies it to `model`.
fn write(
    database: &mut dyn Database,
    model: &mut Model,
    symbol: &str,
    specs: &[BarSpec],
    overwrite: bool,
) {
    // A batch holds one bar per minute (the recorder completes each minute once).
    let mut batch: BTreeMap<i64, Bar> = BTreeMap::new();
    for spec in specs {
        let bar = bar_of(*spec);
        batch.entry(bar.time).or_insert(bar);
    }
    let items: Vec<InstrumentBar> = batch
        .values()
        .rev()
        .map(|bar| InstrumentBar {
            exchange: "NSE".to_string(),
            symbol: symbol.to_string(),
            bar: *bar,
        })
        .collect();
    database
        .in_transaction(TxKind::Write, |queries| {
            queries.save_bars(&items, overwrite)
        })
        .map_err(|error: StoreError| error)
        .unwrap();
    for (time, bar) in batch {
        if overwrite {
            model.insert(time, bar);
        } else {
            model.entry(time).or_insert(bar);
        }
    }
}

/// A read of every stored bar: (from, until, limit) for [`check`].
const EVERYTHING: (i64, i64, usize) = (i64::MIN / 2, i64::MAX / 2, usize::MAX);

/// The packed read, the plain read and the model agree on `from..until` with `limit`.
fn check(
    database: &dyn Database,
    model: &Model,
    symbol: &str,
    (from, until, limit): (i64, i64, usize),
) -> Result<(), TestCaseError> {
    let range = range(symbol, from, until);
    let expected: Vec<Bar> = model
        .range(from..until.max(from))
        .map(|(_, bar)| *bar)
        .take(limit)
        .collect();
    let packed = load(database, BarTable::Packs, &range, limit);
    let plain = load(database, BarTable::Minutes, &range, limit);
    prop_assert_eq!(
        bits(&plain),
        bits(&expected),
        "plain {}..{} limit {}",
        from,
        until,
        limit
    );
    prop_assert_eq!(
        bits(&packed),
        bits(&expected),
        "packed {}..{} limit {}",
        from,
        until,
        limit
    );
    Ok(())
}

#[test]
fn packed_reads_equal_plain_reads_through_writes_late_bars_and_pruning() {
    let store = test_store();
    let database = RefCell::new(super::open(&store.location, StoreSync::Normal).unwrap());
    let case = RefCell::new(0u32);
    let cases = if oa_e2e::postgres::test_backend_is_postgres() {
        24
    } else {
        64
    };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        batches(),
        prop::collection::vec(read(), 1..6),
        0i64..25_000,
        read(),
    );
    runner
        .run(&strategy, |(batches, reads, prune_at, after_prune)| {
            // Each case has an instrument of its own (the store is shared).
            let symbol = {
                let mut case = case.borrow_mut();
                *case += 1;
                format!("P{case}")
            };
            let mut database = database.borrow_mut();
            let mut model = Model::new();
            for (specs, overwrite) in &batches {
                write(database.as_mut(), &mut model, &symbol, specs, *overwrite);
                // Everything, after every batch: the current (last) hour grows batch by batch.
                check(database.as_ref(), &model, &symbol, EVERYTHING)?;
            }
            for (from, length, limit) in reads {
                let from = FIRST_HOUR + from;
                for limit in [limit, usize::MAX] {
                    check(
                        database.as_ref(),
                        &model,
                        &symbol,
                        (from, from + length, limit),
                    )?;
                }
            }
            // Pruning cuts through an hour: the pack of that hour keeps the minutes after it.
            let before = FIRST_HOUR + prune_at;
            database.queries().prune_bars(before).unwrap();
            model.retain(|time, _| *time >= before);
            check(database.as_ref(), &model, &symbol, EVERYTHING)?;
            let (from, length, limit) = after_prune;
            check(
                database.as_ref(),
                &model,
                &symbol,
                (FIRST_HOUR + from, FIRST_HOUR + from + length, limit),
            )?;
            Ok(())
        })
        .unwrap();
}

/// Bars of an older store: two instruments, gaps, a bar that does not start on a minute,
/// prices in paise and prices that are not.
fn older_bars() -> Vec<InstrumentBar> {
    let mut bars = Vec::new();
    for (symbol, minutes, kind) in [
        ("SBIN", vec![0, 1, 2, 59, 60, 61, 185, 186, 300], 0u8),
        ("INFY", vec![3, 4, 64, 64 + 60 * 24], 2u8),
    ] {
        for (index, minute) in minutes.into_iter().enumerate() {
            let price = 81_235 + i32::try_from(index).unwrap_or(0) * 5;
            bars.push(InstrumentBar {
                exchange: "NSE".to_string(),
                symbol: symbol.to_string(),
                bar: bar_of((minute, 0, kind, price, 1_000, 7)),
            });
        }
    }
    bars.push(InstrumentBar {
        exchange: "NSE".to_string(),
        symbol: "SBIN".to_string(),
        bar: bar_of((2, 30, 0, 81_300, 5, 0)),
    });
    bars
}

/// Creates a store with the schema before the packs and `bars` in it, as an older build did.
fn create_older_store(location: &StoreLocation, bars: &[InstrumentBar]) {
    let insert = "INSERT INTO bars (exchange, symbol, time, open, high, low, close, volume, oi)";
    match location {
        StoreLocation::Sqlite(path) => {
            let mut conn = rusqlite::Connection::open(path).unwrap();
            super::sqlite::migrate_to(&mut conn, super::sqlite::PACKS_MIGRATION - 1).unwrap();
            let tables: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'bars_packed'",
                    [],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(tables, 0, "the older schema has no packs");
            let sql = format!("{insert} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
            for item in bars {
                conn.execute(&sql, super::sqlite::bar_params(item)).unwrap();
            }
        }
        StoreLocation::Postgres(url) => {
            let bars = bars.to_vec();
            let sql = format!("{insert} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
            super::postgres::connect(url, move |client| {
                super::postgres::migrate_to(client, super::postgres::PACKS_MIGRATION - 1)?;
                let packs: Option<String> = client
                    .query_one("SELECT to_regclass('bars_packed')::text", &[])?
                    .try_get(0)?;
                assert_eq!(packs, None, "the older schema has no packs");
                for item in &bars {
                    let bar = &item.bar;
                    client.execute(
                        &sql,
                        &[
                            &item.exchange,
                            &item.symbol,
                            &bar.time,
                            &bar.open,
                            &bar.high,
                            &bar.low,
                            &bar.close,
                            &bar.volume,
                            &bar.oi,
                        ],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        }
    }
}

#[test]
fn the_migration_packs_the_bars_of_an_older_store() {
    let store = test_store();
    let bars = older_bars();
    create_older_store(&store.location, &bars);
    let database = super::open(&store.location, StoreSync::Normal).unwrap();
    for symbol in ["SBIN", "INFY"] {
        let mut expected: Vec<Bar> = bars
            .iter()
            .filter(|item| item.symbol == symbol)
            .map(|item| item.bar)
            .collect();
        expected.sort_by_key(|bar| bar.time);
        let everything = range(symbol, i64::MIN / 2, i64::MAX / 2);
        let packed = load(database.as_ref(), BarTable::Packs, &everything, usize::MAX);
        assert_eq!(bits(&packed), bits(&expected), "{symbol}");
        // One pack per hour holding bars: SBIN's minutes fall in four hours, INFY's in three.
        let hours: std::collections::BTreeSet<i64> = expected
            .iter()
            .map(|bar| super::packs::pack_start(bar.time))
            .collect();
        assert_eq!(
            hours.len(),
            if symbol == "SBIN" { 4 } else { 3 },
            "{symbol}"
        );
    }
    let packs = match &store.location {
        StoreLocation::Sqlite(path) => rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM bars_packed", [], |row| {
                row.get::<_, i64>(0)
            })
            .unwrap(),
        StoreLocation::Postgres(url) => {
            let mut count = 0;
            super::postgres::connect(url, |client| {
                count = client
                    .query_one("SELECT COUNT(*) FROM bars_packed", &[])?
                    .try_get(0)?;
                Ok(())
            })
            .unwrap();
            count
        }
    };
    assert_eq!(packs, 7);
}
