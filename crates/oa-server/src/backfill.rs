//! The simulated feed's history backfill (`OA_HISTORY_BACKFILL_DAYS`): at start, 1-minute
//! bars for the trading days before now are generated for the simulated cash and index
//! instruments (a deterministic random walk ending at each one's live price) and stored,
//! keeping any bar already stored. Runs in the background: the server serves meanwhile.

use std::sync::Arc;

use oa_marketdata_core::backfill::{session_minutes, simulated_minute_bars};
use oa_marketdata_core::{Instrument, PriceCache};

/// Bars written per store call.
const CHUNK: usize = 20_000;

/// Starts the backfill of `days` trading days for `instruments` (futures and options are
/// priced from their underlying live and are left out).
pub fn spawn(
    api: &oa_api::Api,
    instruments: Vec<Instrument>,
    prices: PriceCache,
    days: u32,
    seed: u64,
) -> tokio::task::JoinHandle<()> {
    let api = api.clone();
    tokio::spawn(async move {
        let now = chrono::Utc::now().timestamp();
        let minutes = Arc::new(session_minutes(days, now));
        let mut written = 0usize;
        let mut generated = 0usize;
        for instrument in instruments.iter().filter(|item| item.contract.is_none()) {
            let start_price = if instrument.base_price > 0.0 {
                instrument.base_price
            } else {
                100.0
            };
            let live = prices
                .ltp(&instrument.exchange, &instrument.symbol)
                .filter(|price| price.is_finite() && *price > 0.0)
                .unwrap_or(start_price);
            let bars = simulated_minute_bars(instrument, live, &minutes, seed);
            generated += bars.len();
            for chunk in bars.chunks(CHUNK) {
                match api.backfill_bars(chunk.to_vec()).await {
                    Ok(count) => written += count,
                    Err(error) => {
                        tracing::warn!(%error, "history backfill stopped: the store refused bars");
                        return;
                    }
                }
            }
        }
        tracing::info!(
            days,
            generated,
            written,
            "simulated history backfilled (minutes already stored were kept)"
        );
    })
}
