//! The option calls against the real `oa-server` whose simulated feed prices the bundled NFO
//! universe (Black-76 on the index, the feed's smile): the chain is centred on the simulated
//! index, its ATM call and put price the synthetic future near the index, the greeks imply
//! the smile's at-the-money volatility, and an `optionsorder` at offset ATM fills in the
//! sandbox (upstream services/option_chain_service.py, services/synthetic_future_service.py,
//! services/option_greeks_service.py, services/place_options_order_service.py).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::{Duration, Instant};

use oa_e2e::TestServer;
use serde_json::{Value, json};

/// NIFTY's strike step in the bundled universe.
const NIFTY_STEP: f64 = 50.0;

#[tokio::test(flavor = "multi_thread")]
async fn the_simulated_feed_prices_the_chain_and_an_atm_order_fills() {
    let server = TestServer::start(&[
        ("OA_DEFAULT_ANALYZE_MODE", "true"),
        ("OA_FEED_TICKS_PER_SECOND", "2000"),
        ("OA_HISTORY_BACKFILL_DAYS", "0"),
    ])
    .unwrap();
    let key = server.admin_key.clone();
    server
        .wait_for_price(&key, "NSE_INDEX", "NIFTY")
        .await
        .unwrap();
    // The first NIFTY expiry after today (one expiring today may be past its 15:30 cut-off).
    let (_, expiries) = server
        .post(
            "expiry",
            json!({"apikey": key, "symbol": "NIFTY", "exchange": "NFO", "instrumenttype": "options"}),
        )
        .await
        .unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(19_800).unwrap())
        .date_naive();
    let expiry = expiries["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|label| label.as_str().unwrap().to_string())
        .find(|label| {
            let title = format!("{}{}", &label[..4], label[4..].to_ascii_lowercase());
            chrono::NaiveDate::parse_from_str(&title, "%d-%b-%y").unwrap() > today
        })
        .unwrap()
        .replace('-', "");

    // The feed reaches every option within a few seconds: wait until the five strikes
    // around the money are priced on both sides.
    let started = Instant::now();
    let chain = loop {
        let (status, chain) = server
            .post(
                "optionchain",
                json!({"apikey": key, "underlying": "NIFTY", "exchange": "NSE_INDEX",
                       "expiry_date": expiry, "strike_count": 2}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{chain}");
        let priced = chain["chain"].as_array().unwrap().iter().all(|row| {
            row["ce"]["ltp"].as_f64().unwrap() > 0.0 && row["pe"]["ltp"].as_f64().unwrap() > 0.0
        });
        if priced {
            break chain;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "options unpriced after 60 s: {chain}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let spot = chain["underlying_ltp"].as_f64().unwrap();
    let atm = chain["atm_strike"].as_f64().unwrap();
    assert!(
        (atm - spot).abs() <= NIFTY_STEP / 2.0,
        "ATM {atm} for NIFTY at {spot}"
    );
    let rows = chain["chain"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{chain}");
    assert_eq!(rows[2]["strike"].as_f64().unwrap(), atm);
    assert_eq!(
        (
            rows[2]["ce"]["label"].as_str(),
            rows[2]["pe"]["label"].as_str()
        ),
        (Some("ATM"), Some("ATM"))
    );
    // Calls fall and puts rise with the strike. Compared on each option's first price
    // (`open`): the start-up burst prices every instrument at once, at nearly one underlying
    // price, while later paced ticks reach the options one at a time as the underlying walks,
    // so two strikes' last prices can come from underlying prices far apart (a run saw the
    // 24100 call repriced 137 points lower while the 24150 call still had the old price).
    for pair in rows.windows(2) {
        let price = |row: &Value, side: &str| row[side]["open"].as_f64().unwrap();
        assert!(price(&pair[0], "ce") > price(&pair[1], "ce"), "{chain}");
        assert!(price(&pair[0], "pe") < price(&pair[1], "pe"), "{chain}");
    }

    // Futures are priced at the index (no carry): the synthetic future is near it.
    let (status, synthetic) = server
        .post(
            "syntheticfuture",
            json!({"apikey": key, "underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": expiry}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{synthetic}");
    let forward = synthetic["synthetic_future_price"].as_f64().unwrap();
    assert!(
        (forward - spot).abs() / spot < 0.005,
        "{synthetic} vs {spot}"
    );

    // The ATM call implies the smile's at-the-money volatility (13 % for NIFTY).
    let atm_call = rows[2]["ce"]["symbol"].as_str().unwrap().to_string();
    let (status, greeks) = server
        .post(
            "optiongreeks",
            json!({"apikey": key, "symbol": atm_call, "exchange": "NFO"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{greeks}");
    let iv = greeks["implied_volatility"].as_f64().unwrap();
    assert!((11.0..16.0).contains(&iv), "{greeks}");
    let delta = greeks["greeks"]["delta"].as_f64().unwrap();
    assert!((0.3..0.7).contains(&delta), "{greeks}");

    // optionsorder at ATM: the contract nearest the index when it was placed, filled.
    let (status, placed) = server
        .post(
            "optionsorder",
            json!({"apikey": key, "strategy": "atm", "underlying": "NIFTY", "exchange": "NSE_INDEX",
                   "expiry_date": expiry, "offset": "ATM", "option_type": "CE", "action": "BUY",
                   "quantity": 75, "product": "NRML"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{placed}\n{}", server.log());
    assert_eq!(placed["mode"], "analyze");
    let placed_spot = placed["underlying_ltp"].as_f64().unwrap();
    let symbol = placed["symbol"].as_str().unwrap();
    let strike: f64 = symbol
        .strip_prefix(&format!("NIFTY{expiry}"))
        .and_then(|rest| rest.strip_suffix("CE"))
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not a NIFTY {expiry} call: {placed}"));
    assert!((strike - placed_spot).abs() <= NIFTY_STEP / 2.0, "{placed}");
    let (_, status_body) = server
        .post_order_id(
            "orderstatus",
            &key,
            "atm",
            placed["orderid"].as_str().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        status_body["data"]["order_status"], "complete",
        "{status_body}"
    );
    assert_eq!(
        status_body["data"]["symbol"], placed["symbol"],
        "{status_body}"
    );
}
