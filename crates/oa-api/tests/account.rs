//! `holdings`, `margin`, `market/holidays` and `market/timings` over HTTP and through the
//! official SDK. Each test names the upstream file whose behaviour it pins.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use common::Server;
use serde_json::{Value, json};

fn cnc_buy(quantity: &str) -> Value {
    json!({"strategy": "hold", "exchange": "NSE", "symbol": "SBIN", "action": "BUY",
           "quantity": quantity, "pricetype": "MARKET", "product": "CNC"})
}

/// A server in analyzer mode that bought 10 SBIN CNC at 800.1 today, and its config (for
/// restarts).
async fn analyzer_bought_ten_sbin_cnc_at_800() -> (Server, oa_api::ApiConfig) {
    let dir = common::store_dir();
    let config = common::config(&dir);
    let server = common::start_with(dir, config.clone()).await;
    server.set_analyze(true).await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    server.ok("placeorder", cnc_buy("10")).await;
    (server, config)
}

/// Moves every stored trade a day back, as if the orders had filled in yesterday's session.
fn age_trades_by_a_day(server: Server) -> (common::StoreDir, String) {
    let Server { dir, key, .. } = server;
    dir.execute("UPDATE trades SET created_ms = created_ms - 86400000");
    (dir, key)
}

/// Upstream sandbox/holdings_manager.py `get_holdings` (analyzer mode: CNC quantity from
/// earlier sessions, its keys and statistics) and services/holdings_service.py (live mode:
/// the broker mappings' keys); today's CNC buys are positions, not holdings, until the
/// next session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdings_are_cnc_positions_carried_from_an_earlier_session() {
    let (server, config) = analyzer_bought_ten_sbin_cnc_at_800().await;
    let today = server.ok("holdings", json!({})).await;
    assert_eq!(
        today,
        json!({"status": "success", "data": {"holdings": [], "statistics": {
            "totalholdingvalue": 0.0, "totalinvvalue": 0.0, "totalprofitandloss": 0.0,
            "totalpnlpercentage": 0.0}}, "mode": "analyze"})
    );
    // Next session: the ten shares are held; a CNC buy of today is not (yet).
    let (dir, key) = age_trades_by_a_day(server);
    let server = common::restart(dir, config.clone(), key).await;
    server.price("NSE", "SBIN", 820.0, 819.9, 820.1);
    server.ok("placeorder", cnc_buy("5")).await;
    let held = server.ok("holdings", json!({})).await;
    let session_date = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(19_800).unwrap())
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        held["data"]["holdings"],
        json!([{"symbol": "SBIN", "exchange": "NSE", "product": "CNC", "quantity": 10,
                "average_price": 800.1, "ltp": 820.0, "pnl": 199.0, "pnlpercent": 2.49,
                "current_value": 8200.0, "settlement_date": session_date}])
    );
    assert_eq!(
        held["data"]["statistics"],
        json!({"totalholdingvalue": 8200.0, "totalinvvalue": 8001.0,
               "totalprofitandloss": 199.0, "totalpnlpercentage": 2.49})
    );
    assert_eq!(held["mode"], "analyze");

    // Live mode (the simulator broker): the broker mappings' keys, no mode.
    server.set_analyze(false).await;
    server.ok("placeorder", cnc_buy("4")).await;
    let (dir, key) = age_trades_by_a_day(server);
    let server = common::restart(dir, config, key).await;
    server.price("NSE", "SBIN", 790.0, 789.9, 790.1);
    let live = server.ok("holdings", json!({})).await;
    assert_eq!(
        live,
        json!({"status": "success", "data": {"holdings": [
            {"symbol": "SBIN", "exchange": "NSE", "quantity": 4, "product": "CNC",
             "pnl": -120.4, "pnlpercent": -3.67}],
            "statistics": {"totalholdingvalue": 3160.0, "totalinvvalue": 3280.4,
                           "totalprofitandloss": -120.4, "totalpnlpercentage": -3.67}}})
    );
    let (status, body) = server.call("holdings", json!({"extra": 1})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "extra: unknown field; allowed fields: apikey"
    );
}

/// T+1 (upstream sandbox/execution_engine.py `_update_position`: a CNC sell "deliberately
/// does NOT reduce the holding at fill time"; sandbox/holdings_manager.py
/// `process_t1_settlement` nets it against the holding at the next session): selling held
/// shares leaves the holding whole until the next session, which holds what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_of_held_shares_settles_into_holdings_at_the_next_session() {
    let (server, config) = analyzer_bought_ten_sbin_cnc_at_800().await;
    let (dir, key) = age_trades_by_a_day(server);
    let server = common::restart(dir, config.clone(), key).await;
    server.price("NSE", "SBIN", 810.0, 809.9, 810.1);
    let mut sell = cnc_buy("4");
    sell["action"] = json!("SELL");
    server.ok("placeorder", sell).await;
    let held = |body: &Value| {
        body["data"]["holdings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|holding| {
                (
                    holding["quantity"].as_f64().unwrap(),
                    holding["average_price"].as_f64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let same_session = server.ok("holdings", json!({})).await;
    assert_eq!(held(&same_session), vec![(10.0, 800.1)], "{same_session}");
    assert_eq!(
        same_session["data"]["statistics"]["totalholdingvalue"],
        json!(8100.0)
    );
    let (dir, key) = age_trades_by_a_day(server);
    let server = common::restart(dir, config, key).await;
    server.price("NSE", "SBIN", 810.0, 809.9, 810.1);
    let settled = server.ok("holdings", json!({})).await;
    assert_eq!(held(&settled), vec![(6.0, 800.1)], "{settled}");
    // Selling all of it: oa's position is flat and has lost the average, so the holding
    // goes at once (upstream keeps it until T+1; docs/compatibility.md).
    let mut rest = cnc_buy("6");
    rest["action"] = json!("SELL");
    server.ok("placeorder", rest).await;
    let flat = server.ok("holdings", json!({})).await;
    assert_eq!(held(&flat), vec![], "{flat}");
}

/// The sandbox's margin rule (upstream sandbox/fund_manager.py `calculate_margin_required`:
/// trade value / leverage, `_get_leverage`: NSE/BSE MIS 5x, CNC and NRML 1x) for upstream's
/// `margin` request (restx_api/margin.py, MarginCalculatorSchema: 1 to 50 positions), in the
/// broker margin mappings' keys (`total_margin_required`, `span_margin`, `exposure_margin`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn margin_is_what_the_sandbox_would_block() {
    let server = common::start().await;
    server.price("NSE", "SBIN", 800.0, 799.9, 800.1);
    let margin = server
        .ok(
            "margin",
            json!({"positions": [
                // MARKET BUY at the ask, MIS 5x: 10 x 800.1 / 5.
                {"symbol": "SBIN", "exchange": "NSE", "action": "BUY", "quantity": "10",
                 "product": "MIS", "pricetype": "MARKET"},
                // LIMIT SELL at its price, CNC 1x: 2 x 805.
                {"symbol": "sbin", "exchange": "NSE", "action": "sell", "quantity": 2,
                 "product": "CNC", "pricetype": "LIMIT", "price": "805"},
                // SL-M at its trigger, NRML 1x: 1 x 790.
                {"symbol": "SBIN", "exchange": "NSE", "action": "SELL", "quantity": "1",
                 "product": "NRML", "pricetype": "SL-M", "trigger_price": "790"}]}),
        )
        .await;
    assert_eq!(
        margin,
        json!({"status": "success", "data": {"total_margin_required": 1600.2 + 1610.0 + 790.0,
                                             "span_margin": 0.0, "exposure_margin": 0.0}})
    );
    for (position, message) in [
        (
            json!({"symbol": "NOPE", "exchange": "NSE", "action": "BUY", "quantity": "1",
                   "product": "MIS", "pricetype": "MARKET"}),
            "positions[0].symbol: NOPE is not a known symbol on exchange NSE",
        ),
        (
            json!({"symbol": "SBIN", "exchange": "NSE", "action": "BUY", "quantity": "1",
                   "product": "MIS", "pricetype": "LIMIT"}),
            "positions[0].price: expected a number > 0 for LIMIT orders, got 0",
        ),
        (
            json!({"symbol": "SBIN", "exchange": "NSE", "action": "BUY", "quantity": "-1",
                   "product": "MIS", "pricetype": "MARKET"}),
            "positions[0].quantity: expected a positive integer (number or numeric string), got \"-1\"",
        ),
    ] {
        let (status, body) = server
            .call("margin", json!({"positions": [position]}))
            .await;
        assert_eq!((status, body["message"].as_str().unwrap()), (400, message));
    }
}

/// F&O leverage (upstream sandbox/fund_manager.py `_get_leverage` with its defaults): futures
/// 10x whatever the product, options 1x bought or sold (not the product's: an MIS option
/// buy blocks its whole premium); futures and sold options are the SPAN part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn margin_leverage_follows_the_instrument_on_fno_exchanges() {
    let server = common::start().await;
    let listed = server
        .ok("search", json!({"query": "NIFTY", "exchange": "NFO"}))
        .await;
    let first = |suffix: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["symbol"].as_str().unwrap().to_string())
            .find(|symbol| symbol.starts_with("NIFTY") && symbol.ends_with(suffix))
            .unwrap_or_else(|| panic!("no NIFTY ...{suffix} in {listed}"))
    };
    let (future, call) = (first("FUT"), first("CE"));
    let position = |symbol: &str, action: &str, product: &str, price: &str| {
        json!({"symbol": symbol, "exchange": "NFO", "action": action, "quantity": "75",
               "product": product, "pricetype": "LIMIT", "price": price})
    };
    for (positions, total, span) in [
        // 75 x 24,000 / 10, NRML or MIS alike.
        (
            vec![position(&future, "BUY", "NRML", "24000")],
            180_000.0,
            180_000.0,
        ),
        (
            vec![position(&future, "SELL", "MIS", "24000")],
            180_000.0,
            180_000.0,
        ),
        // 75 x 100 / 1: an MIS option buy is not 5x; a buy is no SPAN, a sale is.
        (vec![position(&call, "BUY", "MIS", "100")], 7_500.0, 0.0),
        (
            vec![position(&call, "SELL", "NRML", "100")],
            7_500.0,
            7_500.0,
        ),
        (
            vec![
                position(&future, "BUY", "NRML", "24000"),
                position(&call, "BUY", "NRML", "100"),
            ],
            187_500.0,
            180_000.0,
        ),
    ] {
        let body = server
            .ok("margin", json!({"positions": positions.clone()}))
            .await;
        assert_eq!(
            body["data"],
            json!({"total_margin_required": total, "span_margin": span, "exposure_margin": 0.0}),
            "{positions:?}"
        );
    }
}

/// Upstream services/market_calendar_service.py over database/market_calendar_db.py's
/// seeded calendar: holidays of a year with closed and open exchanges; timings of a date
/// (special sessions, MCX's evening on a trading holiday, nothing when all are closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_calendar_answers_holidays_and_timings() {
    let server = common::start().await;
    let holidays = server.ok("market/holidays", json!({"year": 2026})).await;
    assert_eq!(holidays["year"], 2026);
    assert_eq!(holidays["timezone"], "Asia/Kolkata");
    let days = holidays["data"].as_array().unwrap();
    assert_eq!(days.len(), 17);
    assert_eq!(
        days[1],
        json!({"date": "2026-01-26", "description": "Republic Day",
               "holiday_type": "TRADING_HOLIDAY",
               "closed_exchanges": ["NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"],
               "open_exchanges": []})
    );
    let holi = server
        .ok("market/timings", json!({"date": "2026-03-03"}))
        .await;
    assert_eq!(
        holi,
        json!({"status": "success", "data": [
            {"exchange": "MCX", "start_time": 1_772_537_400_000_i64, "end_time": 1_772_562_300_000_i64}]})
    );
    let christmas = server
        .ok("market/timings", json!({"date": "2026-12-25"}))
        .await;
    assert_eq!(christmas["data"], json!([]));
    let regular = server
        .ok("market/timings", json!({"date": "2026-12-02"}))
        .await;
    let exchanges: Vec<&str> = regular["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["exchange"].as_str().unwrap())
        .collect();
    assert_eq!(
        exchanges,
        [
            "NSE", "BSE", "NFO", "BFO", "MCX", "BCD", "CDS", "NCO", "CRYPTO"
        ]
    );
    assert_eq!(
        regular["data"][0]["start_time"],
        json!(1_796_183_100_000_i64)
    );
    for (path, body, message) in [
        (
            "market/timings",
            json!({"date": "02-12-2026"}),
            "date: expected a date YYYY-MM-DD, got \"02-12-2026\"",
        ),
        (
            "market/timings",
            json!({"date": "2051-01-01"}),
            "Date must be between 2020-01-01 and 2050-12-31",
        ),
        (
            "market/holidays",
            json!({"year": 1999}),
            "year: expected a year from 2020 to 2050, got \"1999\"",
        ),
    ] {
        let (status, answer) = server.call(path, body).await;
        assert_eq!(
            (status, answer["message"].as_str().unwrap()),
            (400, message),
            "{path}"
        );
    }

    // OA_MARKET_CALENDAR replaces the bundled calendar.
    let dir = common::store_dir();
    let mut config = common::config(&dir);
    let file = dir.path().join("calendar.json");
    std::fs::write(
        &file,
        r#"{"sessions": [{"exchange": "NSE", "start": "10:00", "end": "14:00"}],
            "holidays": [{"date": "2027-01-01", "description": "New Year", "holiday_type": "TRADING_HOLIDAY",
                          "closed_exchanges": ["NSE"]}]}"#,
    )
    .unwrap();
    config.market_calendar = Some(file.clone());
    let own = common::start_with(dir, config.clone()).await;
    let holidays = own.ok("market/holidays", json!({"year": "2027"})).await;
    assert_eq!(holidays["data"][0]["description"], "New Year");
    let timings = own
        .ok("market/timings", json!({"date": "2027-01-04"}))
        .await;
    assert_eq!(
        timings["data"],
        json!([{"exchange": "NSE", "start_time": START_2027_01_04, "end_time": END_2027_01_04}])
    );
    // A file that is not a calendar stops the build with the entry named.
    std::fs::write(
        &file,
        r#"{"sessions": [{"exchange": "NSE", "start": "9am", "end": "15:30"}]}"#,
    )
    .unwrap();
    let error = oa_api::build(
        config,
        oa_events_core::EventPublisher::builder().build(),
        oa_marketdata_core::PriceCache::new(),
        std::sync::Arc::new(oa_marketdata_core::SymbolMaster::bundled()),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        error.starts_with("OA_MARKET_CALENDAR: ")
            && error.ends_with("sessions[0].start: expected a time HH:MM, got \"9am\""),
        "{error}"
    );
}

/// 2027-01-04 10:00 and 14:00 IST, epoch ms.
const START_2027_01_04: i64 = 1_799_037_000_000;
const END_2027_01_04: i64 = 1_799_051_400_000;
