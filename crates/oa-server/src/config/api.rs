//! Settings of the REST layer (`oa-api`, its `ENV_VARS`): rate limits, sandbox, simulator,
//! users, store.

use std::time::Duration;

use oa_api::{ApiConfig, HistoryConfig, SimulatorConfig, StoreSync};

use super::Checker;

/// Checks every REST setting; `database_url` and `pepper` are checked by the caller.
pub(super) fn validate(check: &mut Checker, database_url: &str, pepper: &str) -> Option<ApiConfig> {
    let raw = check.raw;
    for setting in [
        "ORDER_RATE_LIMIT",
        "SMART_ORDER_RATE_LIMIT",
        "API_RATE_LIMIT",
    ] {
        if let Err(error) = oa_api::parse_rate_limit(setting, raw.text(setting)) {
            check.problems.push(error.to_string());
        }
    }
    if let Err(error) = oa_api::parse_database_url(database_url) {
        check.problems.push(error.to_string());
    }
    let starting_funds = check
        .number::<f64>("OA_SANDBOX_STARTING_FUNDS", "a positive amount")
        .filter(|funds| {
            let ok = funds.is_finite() && *funds > 0.0;
            if !ok {
                check.problems.push(format!(
                    "OA_SANDBOX_STARTING_FUNDS={:?} is not valid: expected a positive amount",
                    raw.text("OA_SANDBOX_STARTING_FUNDS")
                ));
            }
            ok
        });
    let ack_latency = check
        .number::<u64>("OA_SIMULATOR_ACK_LATENCY_MS", "milliseconds")
        .map(Duration::from_millis);
    let rejection_rate = check
        .number::<f64>("OA_SIMULATOR_REJECTION_RATE", "a fraction from 0 to 1")
        .filter(|rate| {
            let ok = (0.0..=1.0).contains(rate);
            if !ok {
                check.problems.push(format!(
                    "OA_SIMULATOR_REJECTION_RATE={:?} is not valid: expected a fraction from 0 to 1",
                    raw.text("OA_SIMULATOR_REJECTION_RATE")
                ));
            }
            ok
        });
    let default_analyze_mode = check.boolean("OA_DEFAULT_ANALYZE_MODE");
    let store_sync = check
        .one_of("OA_STORE_SYNC", &["full", "normal"])
        .and_then(|value| StoreSync::parse(&value));
    let history_recording = check.boolean("OA_HISTORY_RECORDING");
    let history_retention_days = check.number::<u32>(
        "OA_HISTORY_RETENTION_DAYS",
        "a whole number of days (0 keeps bars forever)",
    );
    let history_backfill_days =
        check.number::<u32>("OA_HISTORY_BACKFILL_DAYS", "a whole number of trading days");
    let market_calendar = match raw.text("OA_MARKET_CALENDAR").trim() {
        "" => None,
        path => Some(std::path::PathBuf::from(path)),
    };
    let default_user = raw.text("OA_DEFAULT_USER").trim();
    if default_user.is_empty() {
        check
            .problems
            .push("OA_DEFAULT_USER is empty: expected a user id".to_string());
    }
    Some(ApiConfig {
        database_url: database_url.to_string(),
        api_key_pepper: pepper.to_string(),
        order_rate_limit: raw.text("ORDER_RATE_LIMIT").to_string(),
        smart_order_rate_limit: raw.text("SMART_ORDER_RATE_LIMIT").to_string(),
        api_rate_limit: raw.text("API_RATE_LIMIT").to_string(),
        starting_funds: starting_funds?,
        simulator: SimulatorConfig {
            ack_latency: ack_latency?,
            rejection_rate: rejection_rate?,
        },
        default_user: default_user.to_string(),
        default_analyze_mode: default_analyze_mode?,
        store_sync: store_sync?,
        history: HistoryConfig {
            recording: history_recording?,
            retention_days: history_retention_days?,
            backfill_days: history_backfill_days?,
        },
        market_calendar,
        ..ApiConfig::default()
    })
}
