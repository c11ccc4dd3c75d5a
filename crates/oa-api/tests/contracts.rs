//! `expiry` and `instruments` from the symbol master with the bundled NFO universe, as
//! upstream serves them (restx_api/expiry.py, services/expiry_service.py,
//! restx_api/instruments.py, services/instruments_service.py), over HTTP and through the
//! official SDK (`client.expiry`, `client.instruments`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::sync::Arc;

use oa_marketdata_core::option_universe::{BUNDLED_SERIES, expiries, expiry_label, today_in_india};
use oa_marketdata_core::{SymbolMaster, SymbolSource};
use serde_json::{Value, json};

/// A server over the bundled universe with its generated futures and options.
async fn start() -> (common::Server, Arc<SymbolMaster>) {
    let symbols = Arc::new(SymbolMaster::load(&SymbolSource::Bundled).unwrap());
    (
        common::start_with_symbols(Arc::clone(&symbols)).await,
        symbols,
    )
}

/// The NFO expiries of a bundled series, as `DD-MMM-YY`, earliest first.
fn series_expiries(name: &str) -> Vec<String> {
    expiries_of(name, false)
}

/// The monthly NFO expiries of a bundled series, as `DD-MMM-YY`, earliest first.
fn monthly_expiries(name: &str) -> Vec<String> {
    expiries_of(name, true)
}

fn expiries_of(name: &str, monthly_only: bool) -> Vec<String> {
    let series = BUNDLED_SERIES
        .iter()
        .find(|series| series.name == name)
        .unwrap();
    expiries(series, today_in_india())
        .into_iter()
        .filter(|(_, monthly)| *monthly || !monthly_only)
        .map(|(date, _)| expiry_label(date))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_lists_the_contracts_dates_of_an_underlying() {
    let (server, _) = start().await;
    let call = |symbol: &str, kind: &str| {
        server.call(
            "expiry",
            json!({"symbol": symbol, "exchange": "NFO", "instrumenttype": kind}),
        )
    };
    let (status, body) = call("NIFTY", "options").await;
    assert_eq!(status, 200, "{body}");
    let nifty = series_expiries("NIFTY");
    assert_eq!(
        body,
        json!({"status": "success",
               "message": format!("Found {} expiry dates for NIFTY options in NFO", nifty.len()),
               "data": nifty})
    );
    // Futures expire with the monthly options; BANKNIFTY has monthly expiries only.
    let (_, body) = call("nifty", "futures").await;
    assert_eq!(body["data"], json!(monthly_expiries("NIFTY")));
    let (_, body) = call("BANKNIFTY", "options").await;
    assert_eq!(body["data"], json!(series_expiries("BANKNIFTY")));
    let (status, body) = call("SBIN", "options").await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "success", "message": "No expiry dates found for SBIN options in NFO", "data": []})
        )
    );
    for (request, message) in [
        (
            json!({"symbol": "NIFTY", "exchange": "NSE", "instrumenttype": "options"}),
            "exchange: expected one of NFO, BFO, MCX, CDS, NCO, BCD, NCDEX, CRYPTO, got \"NSE\"",
        ),
        (
            json!({"symbol": "NIFTY", "exchange": "NFO", "instrumenttype": "swaps"}),
            "instrumenttype: expected one of futures, options, got \"swaps\"",
        ),
        (
            json!({"exchange": "NFO", "instrumenttype": "options"}),
            "symbol: missing required field (expected a non-empty string)",
        ),
    ] {
        let (status, body) = server.call("expiry", request).await;
        assert_eq!((status, body["message"].as_str().unwrap()), (400, message));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instruments_downloads_the_symbol_master_as_json_or_csv() {
    let (server, symbols) = start().await;
    let get = |query| server.get("instruments", query);
    let (status, _, text) = get("exchange=NFO").await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let nfo = symbols.iter().filter(|item| item.exchange == "NFO").count();
    assert_eq!(body["message"], format!("Found {nfo} instruments"));
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), nfo);
    // A call of the generated universe (the bundled CSV's own NFO rows carry no contract
    // terms, so their expiry is empty and strike 0).
    let option = rows
        .iter()
        .find(|row| {
            row["instrumenttype"] == "CE"
                && symbols
                    .lookup("NFO", row["symbol"].as_str().unwrap())
                    .is_some_and(|listed| listed.contract.is_some())
        })
        .unwrap();
    let keys: Vec<&str> = option
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "brexchange",
            "brsymbol",
            "exchange",
            "expiry",
            "instrumenttype",
            "lotsize",
            "name",
            "strike",
            "symbol",
            "tick_size",
            "token"
        ]
    );
    let listed = symbols
        .lookup("NFO", option["symbol"].as_str().unwrap())
        .unwrap();
    let contract = listed.contract.as_ref().unwrap();
    assert_eq!(option["expiry"], expiry_label(contract.expiry));
    assert_eq!(option["strike"], json!(contract.strike));
    assert_eq!(option["lotsize"], json!(75));
    // Every exchange without the filter.
    let (_, _, text) = get("").await;
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), symbols.len());
    // CSV, as upstream's csv.DictWriter writes it.
    let (status, headers, text) = get("exchange=NSE&format=csv").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/csv");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=instruments_NSE.csv"
    );
    let mut lines = text.split("\r\n");
    assert_eq!(
        lines.next(),
        Some(
            "symbol,brsymbol,name,exchange,brexchange,token,expiry,strike,lotsize,instrumenttype,tick_size"
        )
    );
    assert_eq!(
        lines.next(),
        Some("SBIN,SBIN,STATE BANK OF INDIA,NSE,NSE,,,0.0,1,EQ,0.05")
    );
    // Errors name the parameter; a bad key is 403.
    let (status, _, text) = get("exchange=NASDAQ").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("exchange: "), "{text}");
    let (status, _, text) = get("format=xml").await;
    assert_eq!(status, 400);
    assert!(
        text.contains("format: expected one of json, csv, got \\\"xml\\\""),
        "{text}"
    );
    let response = server
        .client
        .get(format!("{}/api/v1/instruments?apikey=wrong", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_reads_expiries_and_instruments() {
    let (server, symbols) = start().await;
    let count = |exchange: &str| {
        symbols
            .iter()
            .filter(|item| item.exchange == exchange)
            .count()
    };
    // The SDK's `instruments()` asks these exchanges one by one (openalgo data.py).
    let all_count: usize = [
        "NSE",
        "BSE",
        "NFO",
        "BFO",
        "MCX",
        "CDS",
        "BCD",
        "NSE_INDEX",
        "BSE_INDEX",
    ]
    .iter()
    .map(|exchange| count(exchange))
    .sum();
    let expected = json!({
        "nifty_expiries": series_expiries("NIFTY"),
        "nfo_count": count("NFO"),
        "all_count": all_count,
    });
    server.run_sdk_checks("contracts", &expected).await;
}
