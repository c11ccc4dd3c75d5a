//! Settings of the REST layer (`oa-api`): rate limits, sandbox, simulator, users.

use std::time::Duration;

use clap::Args;
use oa_api::{ApiConfig, SimulatorConfig, StoreSync};

use super::Checker;

/// REST settings as given.
#[derive(Debug, Clone, Args)]
pub struct RawApiConfig {
    /// Rate limit of order endpoints per client IP ("10 per second", "600 per minute", "5/second").
    #[arg(long, env = "ORDER_RATE_LIMIT", default_value = "10 per second")]
    pub order_rate_limit: String,
    /// Rate limit of placesmartorder per client IP.
    #[arg(long, env = "SMART_ORDER_RATE_LIMIT", default_value = "10 per second")]
    pub smart_order_rate_limit: String,
    /// Rate limit of every other endpoint per client IP.
    #[arg(long, env = "API_RATE_LIMIT", default_value = "50 per second")]
    pub api_rate_limit: String,
    /// Virtual funds of each sandbox and simulator account.
    #[arg(long, env = "OA_SANDBOX_STARTING_FUNDS", default_value = "10000000")]
    pub starting_funds: String,
    /// Simulator broker: delay before acknowledging an order action, in milliseconds.
    #[arg(long, env = "OA_SIMULATOR_ACK_LATENCY_MS", default_value = "0")]
    pub simulator_ack_latency_ms: String,
    /// Simulator broker: fraction of new orders rejected (0 to 1), for fault tests.
    #[arg(long, env = "OA_SIMULATOR_REJECTION_RATE", default_value = "0")]
    pub simulator_rejection_rate: String,
    /// User created on first start when the store has none; its key is printed once.
    #[arg(long, env = "OA_DEFAULT_USER", default_value = "admin")]
    pub default_user: String,
    /// Whether new users start in analyzer (sandbox) mode: true or false.
    #[arg(long, env = "OA_DEFAULT_ANALYZE_MODE", default_value = "false")]
    pub default_analyze_mode: String,
    /// Store commit durability: full (an acknowledged order survives a power loss) or normal
    /// (survives a process crash only; faster on slow disks).
    #[arg(long, env = "OA_STORE_SYNC", default_value = "full")]
    pub store_sync: String,
}

impl RawApiConfig {
    /// Checks every REST setting; `database_url` and `pepper` come from the shared settings.
    pub(super) fn validate(
        &self,
        check: &mut Checker,
        database_url: &str,
        pepper: &str,
    ) -> Option<ApiConfig> {
        for (setting, value) in [
            ("ORDER_RATE_LIMIT", &self.order_rate_limit),
            ("SMART_ORDER_RATE_LIMIT", &self.smart_order_rate_limit),
            ("API_RATE_LIMIT", &self.api_rate_limit),
        ] {
            if let Err(error) = oa_api::parse_rate_limit(setting, value) {
                check.problems.push(error.to_string());
            }
        }
        if let Err(error) = oa_api::parse_database_url(database_url) {
            check.problems.push(error.to_string());
        }
        let starting_funds = check
            .number::<f64>(
                "OA_SANDBOX_STARTING_FUNDS",
                &self.starting_funds,
                "a positive amount",
            )
            .filter(|funds| {
                let ok = funds.is_finite() && *funds > 0.0;
                if !ok {
                    check.problems.push(format!(
                        "OA_SANDBOX_STARTING_FUNDS={:?} is not valid: expected a positive amount",
                        self.starting_funds
                    ));
                }
                ok
            });
        let ack_latency = check
            .number::<u64>(
                "OA_SIMULATOR_ACK_LATENCY_MS",
                &self.simulator_ack_latency_ms,
                "milliseconds",
            )
            .map(Duration::from_millis);
        let rejection_rate = check
            .number::<f64>(
                "OA_SIMULATOR_REJECTION_RATE",
                &self.simulator_rejection_rate,
                "a fraction from 0 to 1",
            )
            .filter(|rate| {
                let ok = (0.0..=1.0).contains(rate);
                if !ok {
                    check.problems.push(format!(
                        "OA_SIMULATOR_REJECTION_RATE={:?} is not valid: expected a fraction from 0 to 1",
                        self.simulator_rejection_rate
                    ));
                }
                ok
            });
        let default_analyze_mode =
            check.boolean("OA_DEFAULT_ANALYZE_MODE", &self.default_analyze_mode);
        let store_sync = check
            .one_of("OA_STORE_SYNC", &self.store_sync, &["full", "normal"])
            .and_then(|value| StoreSync::parse(&value));
        if self.default_user.trim().is_empty() {
            check
                .problems
                .push("OA_DEFAULT_USER is empty: expected a user id".to_string());
        }
        Some(ApiConfig {
            database_url: database_url.to_string(),
            api_key_pepper: pepper.to_string(),
            order_rate_limit: self.order_rate_limit.clone(),
            smart_order_rate_limit: self.smart_order_rate_limit.clone(),
            api_rate_limit: self.api_rate_limit.clone(),
            starting_funds: starting_funds?,
            simulator: SimulatorConfig {
                ack_latency: ack_latency?,
                rejection_rate: rejection_rate?,
            },
            default_user: self.default_user.trim().to_string(),
            default_analyze_mode: default_analyze_mode?,
            store_sync: store_sync?,
            ..ApiConfig::default()
        })
    }
}
