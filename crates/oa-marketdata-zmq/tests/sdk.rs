//! The official OpenAlgo Python SDK feed client (`openalgo==1.0.47`) against the proxy, fed
//! by the simulated market: connect, subscribe_ltp/quote/depth, get_ltp/get_quotes/get_depth,
//! unsubscribe. The assertions live in tests/python/marketdata_sdk_feed.py.

mod common;

use common::{KEY_ALICE, start};
use oa_marketdata_zmq::{FeedKind, MarketDataConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_feed_client_works_unmodified() {
    // A missing peer fails the test with what to run; it never passes silently.
    if let Err(missing) = oa_e2e::python() {
        panic!("{missing:#}");
    }
    let h = start(MarketDataConfig {
        feed: FeedKind::Simulated,
        feed_symbols: vec![
            "NSE:SBIN".into(),
            "NSE_INDEX:NIFTY".into(),
            "NSE:INFY".into(),
        ],
        feed_ticks_per_second: 60.0,
        ..MarketDataConfig::ephemeral()
    })
    .await;
    let url = h.ws_url();
    let result = tokio::task::spawn_blocking(move || {
        oa_e2e::run_python_script(
            "marketdata_sdk_feed.py",
            &[("OA_WS_URL", url), ("OA_API_KEY", KEY_ALICE.to_string())],
        )
    })
    .await
    .expect("the script runs");
    let output = match result {
        Ok(output) => output,
        Err(error) => panic!("{error:#}"),
    };
    assert!(output.contains("sdk feed ok"), "{output}");
    // The SDK's connection is gone and every subscription was released.
    let stats = h.md.stats().proxy;
    assert_eq!(stats.subscriptions, 0, "{stats:?}");
    h.md.shutdown().await;
}
