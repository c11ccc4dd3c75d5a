//! The option calls over the bundled NFO universe, priced as the simulated feed prices it
//! (Black-76 on the index with the feed's volatility smile): `optionsymbol`, `optionchain`,
//! `syntheticfuture`, `optiongreeks`, `multioptiongreeks`, `optionsorder` and
//! `optionsmultiorder`, over HTTP and through the official SDK. Each test names the upstream
//! file whose behaviour it pins.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use common::{Server, drain, drain_data, key_list};
use oa_marketdata_core::option_universe::{BUNDLED_SERIES, OptionSeries, expiries, today_in_india};
use oa_marketdata_core::options::{OptionInputs, OptionKind, smile_volatility};
use oa_marketdata_core::{SymbolMaster, SymbolSource};
use serde_json::{Value, json};

/// The simulated feed's smile (oa-marketdata-zmq feed/simulated.rs).
const SMILE_SKEW: f64 = -1.2;
const SMILE_CURVATURE: f64 = 6.0;

/// A server over the bundled universe with its generated futures and options, its NIFTY
/// market priced (see [`price_market`]).
async fn start() -> (Server, Market) {
    let symbols = Arc::new(SymbolMaster::load(&SymbolSource::Bundled).unwrap());
    let server = common::start_with_symbols(Arc::clone(&symbols)).await;
    let market = price_market(&server, &symbols);
    (server, market)
}

fn nifty() -> &'static OptionSeries {
    BUNDLED_SERIES
        .iter()
        .find(|series| series.name == "NIFTY")
        .unwrap()
}

/// A NIFTY market: the index at `spot`, the options of one expiry priced from it.
struct Market {
    /// `DDMMMYY`.
    expiry: String,
    expiry_date: NaiveDate,
    /// The listed strike nearest the spot.
    atm: f64,
    spot: f64,
}

impl Market {
    fn symbol(&self, strike: f64, kind: OptionKind) -> String {
        format!("NIFTY{}{strike:.0}{}", self.expiry, kind.code())
    }

    /// The model price of an option as the simulated feed computes it, to the tick.
    fn model(&self, strike: f64, kind: OptionKind) -> (f64, f64) {
        let expiry = Utc
            .from_utc_datetime(&self.expiry_date.and_hms_opt(10, 0, 0).unwrap())
            .timestamp_millis();
        let years = (expiry - Utc::now().timestamp_millis()) as f64 / (365.0 * 86_400_000.0);
        let volatility = smile_volatility(
            self.spot,
            strike,
            nifty().atm_volatility,
            SMILE_SKEW,
            SMILE_CURVATURE,
        );
        let price = OptionInputs {
            kind,
            forward: self.spot,
            strike,
            years,
            rate: 0.0,
            volatility,
        }
        .price();
        // To the tick, without binary noise (as the feed's `round_to`).
        let ticked = ((price / 0.05).round() * 0.05 * 100.0).round() / 100.0;
        (ticked.max(0.05), volatility)
    }
}

/// Prices NIFTY a little above a listed strike and every option of its first expiry after
/// today, with a one-level book around each price.
fn price_market(server: &Server, symbols: &SymbolMaster) -> Market {
    let base = symbols.lookup("NSE_INDEX", "NIFTY").unwrap().base_price;
    let step = nifty().strike_step;
    let atm = (base / step).round() * step;
    let spot = atm + 12.0;
    let today = today_in_india();
    let (expiry_date, _) = expiries(nifty(), today)
        .into_iter()
        .find(|(date, _)| *date > today)
        .unwrap();
    let market = Market {
        expiry: expiry_date
            .format("%d%b%y")
            .to_string()
            .to_ascii_uppercase(),
        expiry_date,
        atm,
        spot,
    };
    server.price("NSE_INDEX", "NIFTY", spot, spot - 0.5, spot + 0.5);
    for instrument in symbols.iter() {
        let Some(contract) = &instrument.contract else {
            continue;
        };
        let Some(kind) = contract.kind else { continue };
        if instrument.name != "NIFTY" || contract.expiry != expiry_date {
            continue;
        }
        let (price, _) = market.model(contract.strike, kind);
        server.price("NFO", &instrument.symbol, price, price - 0.05, price + 0.05);
    }
    market
}

/// Upstream services/option_symbol_service.py `get_option_symbol`: the ATM strike is the
/// listed strike nearest the underlying's price; ITM calls and OTM puts are lower strikes;
/// `strike_int` computes the grid instead; restx_api/option_symbol.py's answer keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optionsymbol_resolves_offsets_from_the_underlyings_price() {
    let (server, market) = start().await;
    let request = |offset: &str, kind: &str| {
        json!({"strategy": "s", "underlying": "NIFTY", "exchange": "NSE_INDEX",
               "expiry_date": market.expiry, "offset": offset, "option_type": kind})
    };
    let resolve = |offset: &str, kind: &str| server.call("optionsymbol", request(offset, kind));
    let (status, body) = resolve("ATM", "CE").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "symbol": market.symbol(market.atm, OptionKind::Call),
               "exchange": "NFO", "lotsize": 75, "tick_size": 0.05, "freeze_qty": 1,
               "underlying_ltp": market.spot})
    );
    for (offset, kind, strike) in [
        ("ITM2", "CE", market.atm - 100.0),
        ("otm2", "ce", market.atm + 100.0),
        ("ITM2", "PE", market.atm + 100.0),
        ("OTM3", "PE", market.atm - 150.0),
    ] {
        let (_, body) = resolve(offset, kind).await;
        let kind = OptionKind::parse(kind).unwrap();
        assert_eq!(
            body["symbol"],
            market.symbol(strike, kind),
            "{offset} {kind:?}"
        );
    }
    // The expiry embedded in a future's symbol; an NFO request quotes the index.
    let (_, body) = server
        .call(
            "optionsymbol",
            json!({"underlying": format!("NIFTY{}FUT", market.expiry), "exchange": "NFO",
                   "offset": "ATM", "option_type": "PE"}),
        )
        .await;
    assert_eq!(
        body["symbol"],
        market.symbol(market.atm, OptionKind::Put),
        "{body}"
    );
    // The legacy grid: round(ltp / 100) * 100, then 1 grid point up for OTM1 CE.
    let (_, body) = server
        .call(
            "optionsymbol",
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": market.expiry,
                   "strike_int": "100", "offset": "OTM1", "option_type": "CE"}),
        )
        .await;
    let grid = (market.spot / 100.0).round() * 100.0 + 100.0;
    assert_eq!(
        body["symbol"],
        market.symbol(grid, OptionKind::Call),
        "{body}"
    );
    let refusals = [
        // Upstream's errors and statuses.
        (
            request("OTM50", "CE"),
            400,
            "Offset OTM50 is out of range for available strikes. Please use a smaller offset.",
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "offset": "ATM", "option_type": "CE"}),
            400,
            "Expiry date required. Provide via expiry_date parameter or embed in underlying (e.g., NIFTY28OCT25FUT).",
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": "01JAN20",
                   "offset": "ATM", "option_type": "CE"}),
            404,
            "No strikes found for NIFTY expiring 01JAN20. Please check expiry date or update master contract.",
        ),
        // Field errors name the field.
        (
            request("ITM51", "CE"),
            400,
            "offset: expected ATM, ITM1-ITM50 or OTM1-OTM50, got \"ITM51\"",
        ),
        (
            request("ATM", "XX"),
            400,
            "option_type: expected one of CE, PE, got \"XX\"",
        ),
    ];
    for (body, status, message) in refusals {
        assert_eq!(
            server.refusal("optionsymbol", body.clone()).await,
            (status, message.to_string()),
            "{body}"
        );
    }
}

/// Upstream services/option_chain_service.py `get_option_chain` and
/// `get_strikes_with_labels` (labels per side, `strike_count` strikes each side of the
/// money), `_forward_from_chain` and `calculate_chain_greeks` (with_greeks);
/// services/synthetic_future_service.py (ATM strike + call - put).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optionchain_lists_the_strikes_around_the_money_with_quotes_and_greeks() {
    let (server, market) = start().await;
    let chain = server
        .ok(
            "optionchain",
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": market.expiry,
                   "strike_count": 2}),
        )
        .await;
    assert_eq!(chain["underlying"], "NIFTY");
    assert_eq!(chain["underlying_symbol"], "NIFTY");
    assert_eq!(chain["underlying_exchange"], "NSE_INDEX");
    assert_eq!(chain["underlying_ltp"], json!(market.spot));
    assert_eq!(chain["expiry_date"], json!(market.expiry));
    assert_eq!(chain["atm_strike"], json!(market.atm));
    assert_eq!(chain["greeks_included"], false);
    assert_eq!(chain["forward_price"], Value::Null);
    let expiry_ts = Utc
        .from_utc_datetime(&market.expiry_date.and_hms_opt(10, 0, 0).unwrap())
        .timestamp();
    assert_eq!(chain["expiry_ts"], json!(expiry_ts));
    let rows = chain["chain"].as_array().unwrap();
    let strikes: Vec<f64> = rows
        .iter()
        .map(|row| row["strike"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = (-2..=2).map(|i| market.atm + 50.0 * f64::from(i)).collect();
    assert_eq!(strikes, expected);
    let labels: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row["ce"]["label"].as_str().unwrap(),
                row["pe"]["label"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            ("ITM2", "OTM2"),
            ("ITM1", "OTM1"),
            ("ATM", "ATM"),
            ("OTM1", "ITM1"),
            ("OTM2", "ITM2")
        ]
    );
    let atm_row = &rows[2];
    let (call_price, _) = market.model(market.atm, OptionKind::Call);
    let (put_price, _) = market.model(market.atm, OptionKind::Put);
    let ce = &atm_row["ce"];
    assert_eq!(
        key_list(ce),
        "symbol label ltp bid ask bid_qty ask_qty open high low prev_close volume oi lotsize \
         tick_size"
    );
    assert_eq!(
        ce["symbol"],
        json!(market.symbol(market.atm, OptionKind::Call))
    );
    assert!((ce["ltp"].as_f64().unwrap() - call_price).abs() < 1e-6);
    assert_eq!(ce["bid_qty"], 100);
    assert_eq!(ce["lotsize"], 75);

    // With greeks: the forward from the ATM legs, each leg's IV the smile's volatility.
    let chain = server
        .ok(
            "optionchain",
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": market.expiry,
                   "strike_count": 1, "with_greeks": true}),
        )
        .await;
    assert_eq!(chain["greeks_included"], true);
    assert_eq!(
        key_list(&chain["chain"][0]["ce"]),
        "symbol label ltp bid ask bid_qty ask_qty open high low prev_close volume oi lotsize \
         tick_size implied_volatility delta gamma theta vega"
    );
    let forward = chain["forward_price"].as_f64().unwrap();
    assert!(
        (forward - (market.atm + call_price - put_price)).abs() < 1e-6,
        "{forward}"
    );
    for row in chain["chain"].as_array().unwrap() {
        let strike = row["strike"].as_f64().unwrap();
        for (side, kind) in [("ce", OptionKind::Call), ("pe", OptionKind::Put)] {
            let (_, volatility) = market.model(strike, kind);
            let iv = row[side]["implied_volatility"].as_f64().unwrap();
            // Prices are rounded to the tick: the implied volatility is the smile's within
            // a few hundredths of a point.
            assert!(
                (iv - volatility * 100.0).abs() < 0.3,
                "{side} {strike}: {iv} vs {volatility}"
            );
            let delta = row[side]["delta"].as_f64().unwrap();
            assert!(if kind == OptionKind::Call {
                delta > 0.0
            } else {
                delta < 0.0
            });
        }
    }

    let synthetic = server
        .ok(
            "syntheticfuture",
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": market.expiry}),
        )
        .await;
    let price = ((market.atm + call_price - put_price) * 100.0).round() / 100.0;
    assert_eq!(
        synthetic,
        json!({"status": "success", "underlying": "NIFTY", "underlying_ltp": market.spot,
               "expiry": market.expiry, "atm_strike": market.atm, "synthetic_future_price": price})
    );
    let no_expiry = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strike_count": 1});
    let (status, message) = server.refusal("optionchain", no_expiry).await;
    assert_eq!(status, 400, "{message}");
    assert!(message.starts_with("expiry_date: "), "{message}");
    let bad_rate = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX",
        "expiry_date": market.expiry, "with_greeks": true, "interest_rate": 101});
    assert_eq!(
        server.refusal("optionchain", bad_rate).await,
        (
            400,
            "interest_rate: expected a percentage from 0 to 100, got 101".to_string()
        )
    );
}

/// Upstream services/option_greeks_service.py `get_option_greeks` (forward = the expiry's
/// synthetic future, Black-76 on the option's last price; upstream's keys and rounding) and
/// `get_multi_option_greeks` (`partial` with a summary when some fail), restx_api's 401 for
/// a bad key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optiongreeks_implies_the_smiles_volatility() {
    let (server, market) = start().await;
    let strike = market.atm + 100.0;
    let symbol = market.symbol(strike, OptionKind::Call);
    let greeks = server
        .ok("optiongreeks", json!({"symbol": symbol, "exchange": "NFO"}))
        .await;
    assert_eq!(
        key_list(&greeks),
        "status symbol exchange underlying strike option_type expiry_date days_to_expiry \
         spot_price option_price interest_rate implied_volatility greeks"
    );
    let (price, volatility) = market.model(strike, OptionKind::Call);
    assert_eq!(greeks["option_price"], json!(price));
    assert_eq!(greeks["underlying"], "NIFTY");
    assert_eq!(greeks["option_type"], "CE");
    assert_eq!(
        greeks["expiry_date"],
        market.expiry_date.format("%d-%b-%Y").to_string()
    );
    let iv = greeks["implied_volatility"].as_f64().unwrap();
    assert!(
        (iv - volatility * 100.0).abs() < 0.3,
        "{iv} vs {volatility}"
    );
    assert_eq!(key_list(&greeks["greeks"]), "delta gamma theta vega rho");
    let delta = greeks["greeks"]["delta"].as_f64().unwrap();
    assert!((0.0..0.5).contains(&delta), "an OTM call: {delta}");
    // A forward given by the caller is used as is.
    let custom = server
        .ok(
            "optiongreeks",
            json!({"symbol": symbol, "exchange": "NFO", "forward_price": market.spot + 200.0,
                   "interest_rate": 6.5}),
        )
        .await;
    assert_eq!(custom["spot_price"], json!(market.spot + 200.0));
    assert_eq!(custom["interest_rate"], json!(6.5));

    let unpriced = format!("NIFTY{}FUT", market.expiry);
    let (status, multi) = server
        .call(
            "multioptiongreeks",
            json!({"symbols": [
                {"symbol": symbol, "exchange": "NFO"},
                {"symbol": market.symbol(market.atm, OptionKind::Put), "exchange": "NFO"},
                {"symbol": unpriced, "exchange": "NFO"}]}),
        )
        .await;
    assert_eq!(status, 200, "{multi}");
    assert_eq!(multi["status"], "partial");
    assert_eq!(
        multi["summary"],
        json!({"total": 3, "success": 2, "failed": 1})
    );
    assert_eq!(
        multi["data"][0]["implied_volatility"],
        greeks["implied_volatility"]
    );
    assert_eq!(multi["data"][1]["option_type"], "PE");
    let failure = format!(
        "Failed to parse option symbol {unpriced}: Invalid option symbol format: {unpriced}"
    );
    assert_eq!(
        multi["data"][2],
        json!({"status": "error", "symbol": unpriced, "exchange": "NFO", "message": failure})
    );
    assert_eq!(
        multi["message"],
        json!(format!("1 option Greeks calculation(s) failed: {failure}"))
    );
    let wrong_key = json!({"apikey": "wrong", "symbol": symbol, "exchange": "NFO"});
    assert_eq!(
        common::status_and_message(server.post("optiongreeks", wrong_key).await),
        (401, "Invalid openalgo apikey".to_string())
    );
    let (status, message) = server
        .refusal("optiongreeks", json!({"symbol": symbol, "exchange": "NSE"}))
        .await;
    assert_eq!(status, 400, "{message}");
    assert!(
        message.starts_with("exchange: expected one of NFO"),
        "{message}"
    );
}

/// Upstream services/place_options_order_service.py: the resolved order is a `placeorder`
/// (its `order_event` names the option; in analyzer mode `analyzer_update` with api_type
/// `placeorder` and the underlying's price), answered with the option's details; a split
/// order is one batch with one summary event (subscribers/socketio_subscriber.py
/// `on_options_completed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optionsorder_places_the_resolved_contract_with_its_events() {
    let (server, market) = start().await;
    let atm_call = market.symbol(market.atm, OptionKind::Call);
    let mut tap = server.publisher.subscribe();
    let request = |extra: Value| {
        let mut body = json!({"strategy": "opt", "underlying": "NIFTY", "exchange": "NSE_INDEX",
            "expiry_date": market.expiry, "offset": "ATM", "option_type": "ce",
            "action": "BUY", "quantity": "75", "pricetype": "MARKET", "product": "NRML"});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let order = |extra: Value| server.call("optionsorder", request(extra));
    let (status, placed) = order(json!({})).await;
    assert_eq!(status, 200, "{placed}");
    let orderid = common::orderid(&placed);
    assert_eq!(
        placed,
        json!({"status": "success", "orderid": orderid, "symbol": atm_call, "exchange": "NFO",
               "underlying": "NIFTY", "underlying_ltp": market.spot, "offset": "ATM",
               "option_type": "CE"})
    );
    let events = drain_data(&mut tap, "order_event");
    assert_eq!(
        events,
        [
            json!({"symbol": atm_call, "action": "BUY", "orderid": orderid, "exchange": "NFO",
                "price_type": "MARKET", "product_type": "NRML", "mode": "live"})
        ]
    );
    assert_eq!(server.open_position("NFO", &atm_call, "NRML").await, 75);

    // Split: three children, one summary order_event.
    let (status, split) = order(
        json!({"offset": "OTM1", "option_type": "PE", "quantity": 225,
                                       "splitsize": 75}),
    )
    .await;
    assert_eq!(status, 200, "{split}");
    let otm_put = market.symbol(market.atm - 50.0, OptionKind::Put);
    assert_eq!(split["symbol"], json!(otm_put));
    assert_eq!(split["total_quantity"], 225);
    assert_eq!(split["split_size"], 75);
    let results = split["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(
        results.iter().all(|result| result["status"] == "success"),
        "{split}"
    );
    let events = drain_data(&mut tap, "order_event");
    assert_eq!(
        events,
        [
            json!({"symbol": otm_put, "action": "BUY", "orderid": "3/3 orders", "exchange": "NFO",
                "price_type": "MARKET", "product_type": "NRML", "mode": "live",
                "batch_order": true, "is_last_order": true})
        ]
    );

    // Analyzer mode: the sandbox places it; analyzer_update logs the resolved placeorder.
    server.set_analyze(true).await;
    drain(&mut tap);
    let (status, placed) = order(json!({"offset": "ITM1"})).await;
    assert_eq!(status, 200, "{placed}");
    assert_eq!(placed["mode"], "analyze");
    let itm_call = market.symbol(market.atm - 50.0, OptionKind::Call);
    assert_eq!(placed["symbol"], json!(itm_call));
    let update = drain_data(&mut tap, "analyzer_update")
        .into_iter()
        .next()
        .unwrap();
    assert_eq!(update["request"]["api_type"], "placeorder");
    assert_eq!(update["request"]["symbol"], json!(itm_call));
    assert_eq!(update["request"]["underlying_ltp"], json!(market.spot));
    assert_eq!(update["response"]["orderid"], placed["orderid"]);

    // An Idempotency-Key: a retry gets the stored options answer and places nothing.
    let keyed = || {
        let mut body = json!({"apikey": server.key, "strategy": "opt", "underlying": "NIFTY",
            "exchange": "NSE_INDEX", "expiry_date": market.expiry, "offset": "OTM2",
            "option_type": "CE", "action": "BUY", "quantity": 75});
        body["product"] = json!("NRML");
        server
            .client
            .post(format!("{}/api/v1/optionsorder", server.url))
            .header("Idempotency-Key", "\"options-retry-1\"")
            .json(&body)
            .send()
    };
    let first = keyed().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first["symbol"],
        json!(market.symbol(market.atm + 100.0, OptionKind::Call))
    );
    let retry = keyed().await.unwrap();
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);
    let keys =
        |answer: &Value| -> Vec<String> { answer.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&retry), keys(&first));
    let book = server.ok("orderbook", json!({})).await;
    let placed = book["data"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|order| order["orderid"] == first["orderid"])
        .count();
    assert_eq!(placed, 1, "{book}");

    // Errors: upstream's resolution message; a quantity that is not whole lots.
    let refusal = |extra: Value| server.refusal("optionsorder", request(extra));
    assert_eq!(
        refusal(json!({"offset": "OTM50"})).await,
        (
            400,
            "Offset OTM50 is out of range for available strikes. Please use a smaller offset."
                .to_string()
        )
    );
    let (status, message) = refusal(json!({"quantity": "10"})).await;
    assert_eq!(status, 400, "{message}");
    assert!(
        message.starts_with("quantity: expected a multiple of the lot size 75"),
        "{message}"
    );
    assert_eq!(
        refusal(json!({"product": "CNC"})).await,
        (
            400,
            "product: expected one of MIS, NRML, got \"CNC\"".to_string()
        )
    );
}

/// Upstream services/options_multiorder_service.py: legs resolved against one read of the
/// underlying, BUY legs placed first, results in leg order (an unresolvable leg is an error
/// result), one summary event (subscribers/socketio_subscriber.py `on_multiorder_completed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optionsmultiorder_places_each_leg_and_reports_them_in_order() {
    let (server, market) = start().await;
    let mut tap = server.publisher.subscribe();
    let (status, body) = server
        .call(
            "optionsmultiorder",
            json!({"strategy": "condor", "underlying": "NIFTY", "exchange": "NSE_INDEX",
                   "expiry_date": market.expiry, "legs": [
                {"offset": "OTM2", "option_type": "CE", "action": "SELL", "quantity": 75},
                {"offset": "OTM4", "option_type": "CE", "action": "BUY", "quantity": 75},
                {"offset": "OTM45", "option_type": "PE", "action": "BUY", "quantity": 75},
                {"offset": "ATM", "option_type": "PE", "action": "SELL", "quantity": 150,
                 "splitsize": 75, "product": "NRML"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["underlying"], "NIFTY");
    assert_eq!(body["underlying_ltp"], json!(market.spot));
    let results = body["results"].as_array().unwrap();
    let legs: Vec<i64> = results.iter().map(|r| r["leg"].as_i64().unwrap()).collect();
    assert_eq!(legs, [1, 2, 3, 4]);
    assert_eq!(
        key_list(&results[0]),
        "leg symbol exchange product offset option_type action status orderid mode"
    );
    assert_eq!(
        results[0]["symbol"],
        json!(market.symbol(market.atm + 100.0, OptionKind::Call))
    );
    assert_eq!(
        results[1]["symbol"],
        json!(market.symbol(market.atm + 200.0, OptionKind::Call))
    );
    assert_eq!(
        results[2],
        json!({"leg": 3, "offset": "OTM45", "option_type": "PE", "action": "BUY",
               "status": "error",
               "message": "Offset OTM45 is out of range for available strikes. Please use a smaller offset."})
    );
    assert_eq!(results[3]["status"], "success");
    assert_eq!(
        key_list(&results[3]),
        "leg symbol exchange product offset option_type action status total_quantity \
         split_size split_results mode"
    );
    assert_eq!(results[3]["total_quantity"], 150);
    assert_eq!(results[3]["split_results"].as_array().unwrap().len(), 2);
    // The BUY leg was placed first: its order id is the lower one.
    let id = |index: usize| results[index]["orderid"].as_str().unwrap().to_string();
    assert!(id(1) < id(0), "{} {}", id(1), id(0));
    let events = drain_data(&mut tap, "order_event");
    assert_eq!(
        events,
        [
            json!({"symbol": "NIFTY", "action": "condor", "orderid": "3/4 legs",
                "exchange": "NSE_INDEX", "price_type": "MULTI", "product_type": "OPTIONS",
                "mode": "live", "batch_order": true, "is_last_order": true,
                "multiorder_summary": true, "successful_legs": 3, "failed_legs": 1})
        ]
    );
    let hold = json!({"strategy": "s", "underlying": "NIFTY", "exchange": "NSE_INDEX",
        "expiry_date": market.expiry,
        "legs": [{"offset": "ATM", "option_type": "CE", "action": "HOLD", "quantity": 75}]});
    assert_eq!(
        server.refusal("optionsmultiorder", hold).await,
        (
            400,
            "legs[0].action: expected one of BUY, SELL, got \"HOLD\"".to_string()
        )
    );

    // Analyzer mode: the sandbox places the legs; one analyzer_update (api_type
    // optionsmultiorder) carries the request and the answer.
    server.set_analyze(true).await;
    drain(&mut tap);
    let request = json!({"strategy": "straddle", "underlying": "NIFTY", "exchange": "NSE_INDEX",
        "expiry_date": market.expiry, "legs": [
            {"offset": "ATM", "option_type": "CE", "action": "BUY", "quantity": 75},
            {"offset": "ATM", "option_type": "PE", "action": "BUY", "quantity": 75}]});
    let answer = server.ok("optionsmultiorder", request).await;
    assert_eq!(answer["mode"], "analyze");
    assert_eq!(answer["results"][1]["mode"], "analyze");
    let updates: Vec<Value> = drain_data(&mut tap, "analyzer_update")
        .into_iter()
        // Sandbox fills have their own analyzer_update (api_type sandbox.fill).
        .filter(|update| update["request"]["api_type"] != "sandbox.fill")
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["request"]["api_type"], "optionsmultiorder");
    assert_eq!(updates[0]["request"]["strategy"], "straddle");
    assert_eq!(updates[0]["response"], answer);
}

/// The official SDK (openalgo 1.0.47, options.py and data.py) calls each option function
/// against the real server and reads upstream's fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_calls_the_option_functions() {
    let (server, market) = start().await;
    let (_, volatility) = market.model(market.atm, OptionKind::Call);
    let expected = json!({
        "expiry": market.expiry,
        "atm_strike": market.atm,
        "spot": market.spot,
        "atm_ce": market.symbol(market.atm, OptionKind::Call),
        "itm2_ce": market.symbol(market.atm - 100.0, OptionKind::Call),
        "otm2_ce": market.symbol(market.atm + 100.0, OptionKind::Call),
        "otm4_ce": market.symbol(market.atm + 200.0, OptionKind::Call),
        "atm_iv": volatility * 100.0,
    });
    let mut tap = server.publisher.subscribe();
    server.run_sdk_checks("options", &expected).await;
    // The SDK's optionsorder placed the ATM call: its order_event names it.
    let symbols_placed: Vec<Value> = drain_data(&mut tap, "order_event")
        .iter()
        .map(|order_event| order_event["symbol"].clone())
        .collect();
    assert_eq!(symbols_placed, [json!(expected["atm_ce"]), json!("NIFTY")]);
}

/// The list bounds: 51 symbols to multioptiongreeks and 21 legs to optionsmultiorder are
/// refused with a 400 naming the field and the limit, and no leg is placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_symbol_and_leg_lists_are_refused_by_name() {
    let (server, market) = start().await;
    let symbol = json!({"symbol": market.symbol(market.atm, OptionKind::Call), "exchange": "NFO"});
    let leg = json!({"offset": "ATM", "option_type": "CE", "action": "BUY", "quantity": 75});
    let legs = json!({"strategy": "flood", "underlying": "NIFTY", "exchange": "NSE_INDEX",
                      "expiry_date": market.expiry, "legs": vec![leg; 21]});
    let oversized = [
        (
            "multioptiongreeks",
            json!({"symbols": vec![symbol; 51]}),
            ["symbols", "at most 50"],
        ),
        ("optionsmultiorder", legs, ["legs", "1 to 20"]),
    ];
    for (path, body, names) in oversized {
        let (status, message) = server.refusal(path, body).await;
        assert_eq!(status, 400, "{path}: {message}");
        assert!(
            names.iter().all(|name| message.contains(name)),
            "{path}: {message}"
        );
    }
    let (status, book) = server.call("orderbook", json!({})).await;
    assert_eq!(status, 200, "{book}");
    assert_eq!(book["data"]["orders"], json!([]), "nothing placed: {book}");
}
