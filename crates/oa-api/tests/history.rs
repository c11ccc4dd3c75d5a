//! Candle history: 1-minute bars recorded from ticks into the store (both backends with
//! `OA_TEST_DATABASE=postgres`), retention, the recording switch, and the `history` and
//! `ticker` endpoints as upstream serves them (restx_api/history.py, restx_api/ticker.py,
//! services/history_service.py), including through the official SDK.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::time::Duration;

use common::Server;

use oa_api::{ApiConfig, HistoryConfig};
use oa_marketdata_core::candles::{
    Bar, InstrumentBar, Interval, Trade, aggregate, bars_from_trades,
};
use oa_marketdata_core::{Quote, Tick};
use serde_json::{Value, json};

/// 2026-11-30 09:15:00 IST (a Monday).
const SESSION_OPEN: i64 = 1_796_010_300;
const DAY: &str = "2026-11-30";

/// A trade tick: last price, the day's cumulative volume, at `time` (epoch seconds).
fn trade_tick(symbol: &str, time: i64, ltp: f64, volume: f64) -> Tick {
    let mut tick = Tick::ltp("NSE", symbol, ltp);
    tick.timestamp = time * 1000;
    tick.ltt = time * 1000;
    tick.mode = oa_marketdata_core::TickMode::Quote;
    tick.quote = Some(Quote {
        volume,
        open: ltp,
        high: ltp,
        low: ltp,
        close: ltp,
        ..Quote::default()
    });
    tick
}

/// Ticks over seven minutes from the session open: (seconds after the open, price, volume).
const TICKS: &[(i64, f64, f64)] = &[
    (5, 800.0, 1_000.0),
    (20, 804.5, 1_010.0),
    (50, 799.0, 1_025.0),
    (61, 801.0, 1_030.0),
    (130, 802.0, 1_040.0),
    (170, 806.0, 1_060.0),
    (200, 803.5, 1_061.0),
    (290, 798.0, 1_100.0),
    (310, 797.5, 1_150.0),
    (420, 799.5, 1_160.0),
];

fn publish(server: &common::Server, symbol: &str) {
    for (offset, price, volume) in TICKS {
        server
            .prices
            .update(&trade_tick(symbol, SESSION_OPEN + offset, *price, *volume));
    }
}

/// The bars the ticks make, computed directly from them (the first tick's volume is the
/// day's volume before it, so it trades 0).
fn expected_bars(interval: Interval) -> Vec<Bar> {
    let mut previous = TICKS[0].2;
    let trades: Vec<Trade> = TICKS
        .iter()
        .map(|(offset, price, volume)| {
            let quantity = volume - previous;
            previous = *volume;
            Trade {
                time: SESSION_OPEN + offset,
                price: *price,
                quantity,
                oi: 0.0,
            }
        })
        .collect();
    bars_from_trades(&trades, interval)
}

/// Polls `sql`'s rows until there are `count` (10 s at most).
async fn rows_eventually(dir: &common::StoreDir, sql: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = dir.query_rows(sql);
        if rows.len() >= count || tokio::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const STORED_BARS: &str = "SELECT time || ' ' || open || ' ' || high || ' ' || low || ' ' || close || ' ' || volume FROM bars WHERE symbol = 'SBIN' ORDER BY time";

fn row(bar: &Bar) -> Vec<f64> {
    vec![
        bar.time as f64,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
    ]
}

fn parse_row(text: &str) -> Vec<f64> {
    text.split_whitespace()
        .map(|field| field.trim().parse::<f64>().unwrap())
        .collect()
}

/// The stored 1-minute bars of SBIN, as [`row`]s.
fn stored_rows(dir: &common::StoreDir) -> Vec<Vec<f64>> {
    dir.query_rows(STORED_BARS)
        .iter()
        .map(|text| parse_row(text))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_become_stored_minute_bars_in_batches() {
    let server = common::start().await;
    assert!(server.api.is_recording_bars());
    publish(&server, "SBIN");
    let expected = expected_bars(Interval::Minutes(1));
    // Every minute but the last one is complete and reaches the store within a flush.
    let rows = rows_eventually(&server.dir, STORED_BARS, expected.len() - 1).await;
    let stored: Vec<Vec<f64>> = rows.iter().map(|text| parse_row(text)).collect();
    let complete: Vec<Vec<f64>> = expected[..expected.len() - 1].iter().map(row).collect();
    assert_eq!(stored, complete);
    // Stopping stores the bar of the current minute too.
    assert_eq!(server.api.stop_recording_bars().await.unwrap(), 1);
    let stored = stored_rows(&server.dir);
    assert_eq!(stored, expected.iter().map(row).collect::<Vec<_>>());
}

fn with_history(dir: &common::StoreDir, history: HistoryConfig) -> ApiConfig {
    ApiConfig {
        history,
        ..common::config(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_older_than_the_retention_are_pruned() {
    let first = common::start().await;
    let now = chrono::Utc::now().timestamp();
    let old = now - 3 * 86_400;
    let recent = now - 3_600;
    for time in [old, recent] {
        first.dir.execute(&format!(
            "INSERT INTO bars (exchange, symbol, time, open, high, low, close, volume, oi) VALUES ('NSE', 'INFY', {time}, 1, 1, 1, 1, 0, 0)"
        ));
    }
    let count = "SELECT time FROM bars WHERE symbol = 'INFY' ORDER BY time";
    assert_eq!(first.dir.query_rows(count).len(), 2);
    let Server { dir, key, .. } = first;
    // A retention of 2 days prunes at start and then every hour.
    let config = with_history(
        &dir,
        HistoryConfig {
            retention_days: 2,
            ..HistoryConfig::default()
        },
    );
    let second = common::restart(dir, config, key).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while second.dir.query_rows(count).len() > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(second.dir.query_rows(count), vec![recent.to_string()]);
    // The same deletion on demand.
    assert_eq!(second.api.prune_bars_before(now).await.unwrap(), 1);
    assert!(second.dir.query_rows(count).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_can_be_switched_off() {
    let dir = common::store_dir();
    let config = with_history(
        &dir,
        HistoryConfig {
            recording: false,
            ..HistoryConfig::default()
        },
    );
    let server = common::start_with(dir, config).await;
    assert!(!server.api.is_recording_bars());
    publish(&server, "SBIN");
    assert_eq!(server.api.stop_recording_bars().await.unwrap(), 0);
    assert!(server.dir.query_rows(STORED_BARS).is_empty());
    let body = server
        .ok(
            "history",
            json!({"symbol": "SBIN", "exchange": "NSE", "interval": "1m",
                   "start_date": DAY, "end_date": DAY}),
        )
        .await;
    assert_eq!(body["data"], json!([]));
}

fn candle_json(bar: &Bar) -> Value {
    json!({
        "close": bar.close, "high": bar.high, "low": bar.low, "oi": 0,
        "open": bar.open, "timestamp": bar.time, "volume": bar.volume as i64,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_aggregates_the_recorded_bars_to_every_interval() {
    let server = common::start().await;
    publish(&server, "SBIN");
    for (name, interval) in Interval::ALL {
        let (status, body) = server
            .call(
                "history",
                json!({"symbol": "sbin", "exchange": "NSE", "interval": name,
                       "start_date": DAY, "end_date": DAY, "source": "api"}),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let expected: Vec<Value> = expected_bars(*interval).iter().map(candle_json).collect();
        assert_eq!(
            body,
            json!({"status": "success", "data": expected}),
            "{name}"
        );
    }
    // Upstream's keys in upstream's (alphabetical) order.
    let (_, text) = server
        .post_text(
            "history",
            &json!({"apikey": server.key, "symbol": "SBIN", "exchange": "NSE",
                    "interval": "D", "start_date": DAY, "end_date": DAY}),
        )
        .await;
    assert!(
        text.starts_with(r#"{"status":"success","data":[{"close":799.5,"high":806.0,"low":797.5,"oi":0,"open":800.0,"timestamp":1795996800,"volume":160}"#),
        "{text}"
    );
    // The day before holds nothing.
    let body = server
        .ok(
            "history",
            json!({"symbol": "SBIN", "exchange": "NSE", "interval": "5m",
                   "start_date": "2026-11-29", "end_date": "2026-11-29"}),
        )
        .await;
    assert_eq!(body["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_names_the_field_of_a_bad_request() {
    let server = common::start().await;
    let request = |changes: Value| {
        let mut body = json!({"symbol": "SBIN", "exchange": "NSE", "interval": "5m",
                              "start_date": DAY, "end_date": DAY});
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value.clone();
            }
        }
        body
    };
    // An unknown interval, a seconds interval (upstream's schema lists them; oa records
    // 1-minute bars) and a multiple of W (refused by upstream's schema too) get one message.
    for interval in ["7m", "1s", "2W"] {
        let (got, body) = server
            .call("history", request(json!({"interval": interval})))
            .await;
        assert_eq!(
            (got, body["message"].as_str()),
            (
                400,
                Some(
                    format!(
                        "interval: expected one of 1m, 2m, 3m, 5m, 10m, 15m, 20m, 30m, 60m, \
                         1h, 2h, 3h, 4h, D, W, M, Q, Y, got \"{interval}\""
                    )
                    .as_str()
                )
            )
        );
    }
    let cases = [
        (
            json!({"start_date": "30-11-2026"}),
            400,
            "start_date: expected a date YYYY-MM-DD, got \"30-11-2026\"",
        ),
        (
            json!({"end_date": "2026-11-01"}),
            400,
            "end_date: expected a date on or after start_date 2026-11-30, got 2026-11-01",
        ),
        (
            json!({"end_date": null}),
            400,
            "end_date: missing required field (expected a non-empty string)",
        ),
        (
            json!({"source": "broker"}),
            400,
            "source: expected one of api, db, got \"broker\"",
        ),
        (json!({"exchange": "NASDAQ"}), 400, "exchange: "),
        (json!({"colour": "red"}), 400, "colour: unknown field"),
        (
            json!({"symbol": "NOSUCH"}),
            400,
            "Symbol 'NOSUCH' not found for exchange 'NSE'. Please verify the symbol name and ensure master contracts are downloaded.",
        ),
    ];
    for (changes, status, message) in cases {
        let (got, body) = server.call("history", request(changes.clone())).await;
        assert_eq!(got, status, "{changes}: {body}");
        let text = body["message"].as_str().unwrap();
        assert!(text.starts_with(message), "{changes}: {text}");
    }
    let mut body = request(json!({}));
    body["apikey"] = json!("not-a-key");
    let (status, body) = server.post("history", body).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"status": "error", "message": "Invalid openalgo apikey"})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticker_serves_json_and_text_candles() {
    let server = common::start().await;
    publish(&server, "SBIN");
    let ticker = "ticker/NSE:SBIN";
    let (status, _, text) = server
        .get(ticker, &format!("interval=5m&from={DAY}&to={DAY}"))
        .await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let expected: Vec<Value> = expected_bars(Interval::Minutes(5))
        .iter()
        .map(candle_json)
        .collect();
    assert_eq!(body, json!({"status": "success", "data": expected}));
    // Text: EXCHANGE:SYMBOL,date,time,open,high,low,close,volume (Indian time).
    let (status, headers, text) = server
        .get(
            ticker,
            &format!("interval=5m&from={DAY}&to={DAY}&format=txt"),
        )
        .await;
    assert_eq!(
        (status, headers["content-type"].to_str().ok()),
        (200, Some("text/plain"))
    );
    assert_eq!(
        text.lines().next(),
        Some("NSE:SBIN,2026-11-30,09:15:00,800.0,806.0,798.0,798.0,100")
    );
    // Daily candles: the date only; the interval defaults to D.
    let (_, _, text) = server
        .get(ticker, &format!("from={DAY}&to={DAY}&format=txt"))
        .await;
    assert_eq!(text, "NSE:SBIN,2026-11-30,800.0,806.0,797.5,799.5,160");
    let (status, _, text) = server
        .get(ticker, &format!("interval=2w&from={DAY}&to={DAY}"))
        .await;
    assert_eq!(status, 400, "{text}");
    let (status, _, text) = server.get(ticker, "interval=D&from=2026-11-30").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("end_date: missing"), "{text}");
}

/// The official SDK's `client.history(...)` returns a DataFrame with upstream's columns and
/// the candles of the ticks this test published (tests/python/history_sdk.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_gets_a_dataframe_of_the_published_ticks() {
    let server = common::start().await;
    publish(&server, "SBIN");
    let mut intervals = serde_json::Map::new();
    for (name, interval) in [
        ("1m", Interval::Minutes(1)),
        ("5m", Interval::Minutes(5)),
        ("15m", Interval::Minutes(15)),
        ("D", Interval::Day),
        ("W", Interval::Week),
    ] {
        let rows: Vec<Value> = expected_bars(interval)
            .iter()
            .map(|bar| json!([bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume]))
            .collect();
        intervals.insert(name.to_string(), Value::from(rows));
    }
    let expected =
        json!({"symbol": "SBIN", "exchange": "NSE", "date": DAY, "intervals": intervals});
    server
        .run_sdk_script(
            "history_sdk.py",
            &[("OA_HISTORY_EXPECTED", expected.to_string())],
            "all history SDK checks passed",
        )
        .await;
}

/// Minute bars of `symbol` every `step` minutes from `first` (epoch seconds) for `count`
/// bars, around the clock, with whole-number volumes (sums are exact in any order).
fn minute_bars(symbol: &str, first: i64, step: i64, count: i64) -> Vec<InstrumentBar> {
    (0..count)
        .map(|index| {
            let price = 500.0 + ((index * 37) % 101) as f64 * 0.5;
            InstrumentBar {
                exchange: "NSE".into(),
                symbol: symbol.into(),
                bar: Bar {
                    time: first + index * step * 60,
                    open: price,
                    high: price + 1.5,
                    low: price - 2.0,
                    close: price + 0.5,
                    volume: (10 + index % 7) as f64,
                    oi: (index % 3) as f64,
                },
            }
        })
        .collect()
}

/// The rows of a rollup table for `symbol`, as (time, open, high, low, close, volume, oi).
fn rollup_rows(dir: &common::StoreDir, table: &str, symbol: &str) -> Vec<Vec<f64>> {
    dir.query_rows(&format!(
        "SELECT time || ' ' || open || ' ' || high || ' ' || low || ' ' || close || ' ' || volume || ' ' || oi FROM {table} WHERE symbol = '{symbol}' ORDER BY time"
    ))
    .iter()
    .map(|text| parse_row(text))
    .collect()
}

fn full_row(bar: &Bar) -> Vec<f64> {
    let mut row = row(bar);
    row.push(bar.oi);
    row
}

fn aggregated_rows(bars: &[InstrumentBar], interval: Interval) -> Vec<Vec<f64>> {
    let minutes: Vec<Bar> = bars.iter().map(|item| item.bar).collect();
    aggregate(&minutes, interval).iter().map(full_row).collect()
}

/// Asserts that both rollup tables hold, for `symbol`, the 1-minute `bars` aggregated.
fn assert_rollups_aggregate(
    dir: &common::StoreDir,
    symbol: &str,
    bars: &[InstrumentBar],
    when: &str,
) {
    for (table, interval) in [
        ("bars_hour", Interval::Minutes(60)),
        ("bars_day", Interval::Day),
    ] {
        assert_eq!(
            rollup_rows(dir, table, symbol),
            aggregated_rows(bars, interval),
            "{table} {when}"
        );
    }
}

/// Asserts that `history` of NSE `symbol` at interval `name` over the dates `range` answers
/// `minutes` aggregated to `interval`, open interest included.
async fn assert_history_aggregates(
    server: &common::Server,
    symbol: &str,
    name: &str,
    (start, end): (&str, &str),
    minutes: &[Bar],
    interval: Interval,
) {
    let expected: Vec<Value> = aggregate(minutes, interval)
        .iter()
        .map(|bar| {
            let mut candle = candle_json(bar);
            candle["oi"] = json!(bar.oi as i64);
            candle
        })
        .collect();
    let body = server
        .ok(
            "history",
            json!({"symbol": symbol, "exchange": "NSE", "interval": name,
                   "start_date": start, "end_date": end}),
        )
        .await;
    assert_eq!(body["data"], json!(expected), "{name} {start}..{end}");
}

/// The hourly and daily rollups always equal the 1-minute bars aggregated to `60m` and `D`:
/// after a backfill (across IST midnights and hours), after recorded bars replace stored
/// minutes, and after pruning cuts through an hour and a day; and `history` over several
/// days (rollup rows for whole buckets, minutes for partial ones) answers what aggregating
/// the minutes answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_follow_the_minutes_through_backfill_recording_and_pruning() {
    let server = common::start().await;
    // 2026-11-26 23:02 IST to 2026-11-30 02:55 IST, one bar every 7 minutes.
    let first = SESSION_OPEN - 3 * 86_400 - 10 * 3600 - 13 * 60;
    let infy = minute_bars("INFY", first, 7, 650);
    server.api.backfill_bars(infy.clone()).await.unwrap();
    assert_rollups_aggregate(&server.dir, "INFY", &infy, "after the backfill");
    // history reads the rollups for whole buckets and the minutes around them.
    let minutes: Vec<Bar> = infy.iter().map(|item| item.bar).collect();
    for (name, interval) in [("D", Interval::Day), ("1h", Interval::Minutes(60))] {
        for (start, end) in [("2026-11-27", "2026-11-28"), ("2026-11-20", "2026-12-01")] {
            let (from, until) = (
                chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").unwrap(),
                chrono::NaiveDate::parse_from_str(end, "%Y-%m-%d").unwrap(),
            );
            let ist = |date: chrono::NaiveDate| {
                date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() - 19_800
            };
            let inside: Vec<Bar> = minutes
                .iter()
                .filter(|bar| bar.time >= ist(from) && bar.time < ist(until) + 86_400)
                .copied()
                .collect();
            let range = (start, end);
            assert_history_aggregates(&server, "INFY", name, range, &inside, interval).await;
        }
    }

    // Recorded bars replace backfilled minutes of SBIN; the rollups follow.
    let stale: Vec<InstrumentBar> = expected_bars(Interval::Minutes(1))
        .iter()
        .map(|bar| InstrumentBar {
            exchange: "NSE".into(),
            symbol: "SBIN".into(),
            bar: Bar {
                high: 9_999.0,
                volume: 12_345.0,
                ..*bar
            },
        })
        .collect();
    server.api.backfill_bars(stale).await.unwrap();
    publish(&server, "SBIN");
    let recorded = expected_bars(Interval::Minutes(1));
    // The completed minutes reach the store within a flush; stopping stores the last one.
    let complete: Vec<Vec<f64>> = recorded[..recorded.len() - 1].iter().map(row).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored = stored_rows(&server.dir);
        if stored[..complete.len()] == complete[..] || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.api.stop_recording_bars().await.unwrap();
    for (table, interval) in [
        ("bars_hour", Interval::Minutes(60)),
        ("bars_day", Interval::Day),
    ] {
        let expected: Vec<Vec<f64>> = aggregate(&recorded, interval)
            .iter()
            .map(full_row)
            .collect();
        assert_eq!(rollup_rows(&server.dir, table, "SBIN"), expected, "{table}");
    }

    // Pruning in the middle of an hour and a day keeps rollups of the minutes left.
    let before = first + 2 * 86_400 + 25 * 60;
    server.api.prune_bars_before(before).await.unwrap();
    let kept: Vec<InstrumentBar> = infy
        .iter()
        .filter(|item| item.bar.time >= before)
        .cloned()
        .collect();
    assert_rollups_aggregate(&server.dir, "INFY", &kept, "after pruning");
}

/// `history` reads at most 100,000 stored rows per request and names the field and the
/// bound when a range holds more (upstream has no bound: its brokers split long ranges); a
/// `D` or `1h` request over the same range reads the rollups and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_refuses_a_range_holding_more_rows_than_it_reads() {
    let server = common::start().await;
    // 100,001 consecutive minutes from 2026-09-01 00:00 IST.
    let first = 1_788_201_000;
    let bars = minute_bars("TCS", first, 1, 100_001);
    for chunk in bars.chunks(50_000) {
        server.api.backfill_bars(chunk.to_vec()).await.unwrap();
    }
    let request = |interval: &str| {
        json!({"symbol": "TCS", "exchange": "NSE", "interval": interval,
               "start_date": "2026-09-01", "end_date": "2026-11-10"})
    };
    let (status, body) = server.call("history", request("1m")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "start_date: 2026-09-01 to 2026-11-10 holds more than 100000 stored bars of NSE:TCS at interval 1m, the most one request reads; ask for a shorter range or a longer interval (1h and D read one row per candle)"
    );
    let body = server.ok("history", request("D")).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(70));
    let body = server.ok("history", request("1h")).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1_668));
}

/// `history` reads 1-minute bars from the packed hours (`bars_packed`) and answers what
/// aggregating the `bars` rows answers, at every interval: over Indian days (whose ends cut
/// hours aligned to 09:15), with gaps, bars backfilled late into hours already packed, and
/// the recorder's bars of the current hour that are not stored yet (or are, by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_packed_hours_equals_the_minutes_aggregated() {
    let server = common::start().await;
    // 2026-11-29 22:00 IST on, every 3 minutes for 30 hours; then, late, the minutes after
    // those for 10 hours (hours already packed get more bars; stored minutes are kept).
    let first = SESSION_OPEN - 11 * 3_600 - 15 * 60;
    let early = minute_bars("SBIN", first, 3, 600);
    let late = minute_bars("SBIN", first + 60, 3, 200);
    server.api.backfill_bars(early.clone()).await.unwrap();
    server.api.backfill_bars(late.clone()).await.unwrap();
    // The recorder replaces the minutes of 09:15 to 09:22 on 2026-11-30.
    publish(&server, "SBIN");
    let mut minutes: std::collections::BTreeMap<i64, Bar> = std::collections::BTreeMap::new();
    for item in early.iter().chain(&late) {
        minutes.entry(item.bar.time).or_insert(item.bar);
    }
    for bar in expected_bars(Interval::Minutes(1)) {
        minutes.insert(bar.time, bar);
    }
    let day = |text: &str| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
    let ist_midnight =
        |date: chrono::NaiveDate| date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() - 19_800;
    for (start, end) in [
        ("2026-11-29", "2026-11-29"),
        ("2026-11-30", "2026-11-30"),
        ("2026-11-29", "2026-12-01"),
        ("2026-12-01", "2026-12-01"),
    ] {
        let (from, until) = (ist_midnight(day(start)), ist_midnight(day(end)) + 86_400);
        let inside: Vec<Bar> = minutes.range(from..until).map(|(_, bar)| *bar).collect();
        for name in ["1m", "3m", "5m", "10m", "15m", "30m", "1h", "D", "W", "M"] {
            let interval = Interval::parse(name).unwrap();
            let range = (start, end);
            assert_history_aggregates(&server, "SBIN", name, range, &inside, interval).await;
        }
    }
    // The store's rows are the minutes the answers were computed from.
    server.api.stop_recording_bars().await.unwrap();
    let stored = stored_rows(&server.dir);
    assert_eq!(stored, minutes.values().map(row).collect::<Vec<_>>());
}

/// 00:00 IST of a date `YYYY-MM-DD`, epoch seconds.
fn ist_midnight(date: &str) -> i64 {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp() - 19_800
}

/// `W`, `M`, `Q` and `Y` are the daily candles of start..end aggregated, as upstream
/// resamples the daily candles it fetched for the range (broker/hdfcsky/api/data.py `_resample` with
/// `W-MON` / `MS`, `label="left"`, `closed="left"`; database/historify_db.py
/// `_get_daily_aggregated_ohlcv`): a week is stamped with its Monday, a month with its 1st,
/// a quarter and a year with their first day (the date at 00:00 UTC, as daily candles), a range starting mid-week and mid-month
/// gives a first week and month of the days inside the range only, weeks and months
/// without bars have no candle, and the current day (the recorder's bars not stored yet)
/// is in the last week and month. `ticker`'s text shows them with the time of day in IST,
/// as upstream restx_api/ticker.py formats every interval but `D`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weeks_and_months_aggregate_the_daily_candles_of_the_range() {
    let server = common::start().await;
    // Sessions of 25 bars every 15 minutes, on days with gaps: no bars in the weeks of
    // 2026-10-26, 11-09 and 11-16. The range is 2026-10-14 (a Wednesday) to 2026-12-02;
    // the days before and after it must not count.
    let days = [
        "2026-10-12",
        "2026-10-13",
        "2026-10-14",
        "2026-10-16",
        "2026-10-19",
        "2026-10-23",
        "2026-11-04",
        "2026-11-05",
        "2026-11-27",
        "2026-11-30",
        "2026-12-01",
        "2026-12-02",
        "2026-12-03",
    ];
    let mut minutes: std::collections::BTreeMap<i64, Bar> = std::collections::BTreeMap::new();
    for (index, day) in days.iter().enumerate() {
        let session = ist_midnight(day) + 9 * 3_600 + 15 * 60;
        let mut bars = minute_bars("SBIN", session, 15, 25);
        for item in &mut bars {
            let shift = index as f64 * 3.0;
            item.bar.open += shift;
            item.bar.high += shift;
            item.bar.low += shift;
            item.bar.close += shift;
            minutes.insert(item.bar.time, item.bar);
        }
        server.api.backfill_bars(bars).await.unwrap();
    }
    // The recorder's bars of 2026-11-30 (09:15 to 09:22) replace the stored minutes.
    publish(&server, "SBIN");
    for bar in expected_bars(Interval::Minutes(1)) {
        minutes.insert(bar.time, bar);
    }
    let (start, end) = ("2026-10-14", "2026-12-02");
    let inside: Vec<Bar> = minutes
        .range(ist_midnight(start)..ist_midnight(end) + 86_400)
        .map(|(_, bar)| *bar)
        .collect();
    let daily = aggregate(&inside, Interval::Day);
    // The stamps: Mondays (the first one before the range's start), 1sts of months, of the
    // quarter (October) and of the year.
    let weeks: &[&str] = &[
        "2026-10-12",
        "2026-10-19",
        "2026-11-02",
        "2026-11-23",
        "2026-11-30",
    ];
    for (name, interval, dates) in [
        ("W", Interval::Week, weeks),
        (
            "M",
            Interval::Month,
            &["2026-10-01", "2026-11-01", "2026-12-01"],
        ),
        ("Q", Interval::Quarter, &["2026-10-01"]),
        ("Y", Interval::Year, &["2026-01-01"]),
    ] {
        let expected = aggregate(&daily, interval);
        assert_history_aggregates(&server, "SBIN", name, (start, end), &daily, interval).await;
        let stamps: Vec<i64> = expected.iter().map(|bar| bar.time).collect();
        let midnights_utc: Vec<i64> = dates
            .iter()
            .map(|date| ist_midnight(date) + 19_800)
            .collect();
        assert_eq!(stamps, midnights_utc, "{name}");
        // The first candle opens at the range's first bar (2026-10-14), not the week's.
        assert_eq!(expected[0].open, inside[0].open, "{name}");
        assert_eq!(inside[0].time, ist_midnight(start) + 9 * 3_600 + 15 * 60);
    }
    // The week of 2026-11-30 holds the recorded bars and crosses into December.
    let week = aggregate(&daily, Interval::Week);
    let last = week.last().unwrap();
    let first_day_of_week = daily.iter().position(|bar| bar.time == last.time).unwrap();
    let volume: f64 = daily[first_day_of_week..]
        .iter()
        .map(|bar| bar.volume)
        .sum();
    assert_eq!((last.volume, daily.len() - first_day_of_week), (volume, 3));

    // ticker: the same candles; its text has upstream's intraday layout for W.
    let url = format!(
        "{}/api/v1/ticker/NSE:SBIN?apikey={}&interval=W&from={start}&to={end}&format=txt",
        server.url, server.key
    );
    let text = server
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = week[0];
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "NSE:SBIN,2026-10-12,05:30:00,{:?},{:?},{:?},{:?},{}",
                first.open, first.high, first.low, first.close, first.volume as i64
            )
            .as_str()
        )
    );
    assert_eq!(text.lines().count(), week.len());
}
