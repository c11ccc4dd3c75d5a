//! Candle history in the real `oa-server`: a replayed tick file becomes 1-minute bars that
//! `history` serves (the replay feed goes through the same recorder as every feed).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::TestServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_session_becomes_history() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.csv");
    let prices = [812.5, 815.0, 809.25, 813.75];
    let mut csv = String::from("timestamp,exchange,symbol,ltp,volume\n");
    for (index, price) in prices.iter().enumerate() {
        let time = 1_769_682_645_000_i64 + index as i64 * 100;
        csv.push_str(&format!("{time},NSE,INFY,{price},{}\n", 1_000 + index * 10));
    }
    std::fs::write(&file, csv).unwrap();
    let server = TestServer::start(&[
        ("OA_FEED", "replay"),
        ("OA_REPLAY_FILE", file.to_str().unwrap()),
        ("OA_REPLAY_SPEED", "0"),
    ])
    .unwrap();
    // The ticks are replayed at once: one bar of the current minute (Indian date).
    let today = (chrono::Utc::now() + chrono::Duration::minutes(330))
        .date_naive()
        .to_string();
    let request = json!({"apikey": server.admin_key, "symbol": "INFY", "exchange": "NSE",
                         "interval": "D", "start_date": today, "end_date": today});
    let mut body = json!(null);
    for _ in 0..100 {
        let (status, answer) = server.post("history", request.clone()).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        body = answer;
        if body["data"].as_array().is_some_and(|rows| !rows.is_empty())
            && body["data"][0]["close"] == json!(813.75)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let candle = &body["data"][0];
    assert_eq!(
        (
            &candle["open"],
            &candle["high"],
            &candle["low"],
            &candle["close"],
            &candle["volume"]
        ),
        (
            &json!(812.5),
            &json!(815.0),
            &json!(809.25),
            &json!(813.75),
            &json!(30)
        ),
        "{body}\n{}",
        server.log()
    );
}
