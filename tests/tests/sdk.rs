//! The official OpenAlgo Python SDK (openalgo==1.0.47), unmodified, against the real server:
//! its REST client and its WebSocket feed client.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use oa_e2e::{TestServer, run_python_script};

fn start_server() -> TestServer {
    TestServer::start(&[
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("SMART_ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ])
    .unwrap()
}

#[test]
fn rest_client_runs_unmodified() {
    let server = start_server();
    let output = run_python_script(
        "rest_sdk.py",
        &[
            ("OA_HOST", server.http_url()),
            ("OA_APIKEY", server.admin_key.clone()),
        ],
    )
    .unwrap_or_else(|error| panic!("{error:#}\n--- server log\n{}", server.log()));
    assert!(output.contains("ok"), "{output}");
}

#[test]
fn feed_client_runs_unmodified() {
    let server = start_server();
    let output = run_python_script(
        "marketdata_sdk_feed.py",
        &[
            ("OA_WS_URL", server.ws_url()),
            ("OA_API_KEY", server.admin_key.clone()),
        ],
    )
    .unwrap_or_else(|error| panic!("{error:#}\n--- server log\n{}", server.log()));
    assert!(!output.contains("FAIL"), "{output}");
}
