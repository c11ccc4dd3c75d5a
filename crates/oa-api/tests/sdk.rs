//! The official OpenAlgo Python SDK (openalgo==1.0.47) against the real router: each script
//! of tests/python runs unmodified on a server of its own.
//! Needs the project venv (`cargo xtask setup`); fails with a hint when it is missing.

mod common;

/// The scripts: (file in tests/python, NSE:SBIN's ltp, bid and ask as the script expects
/// them, what the script prints when every check passed).
const SCRIPTS: &[(&str, [f64; 3], &str)] = &[
    // The REST API v1 calls.
    (
        "rest_sdk.py",
        [812.5, 812.4, 812.6],
        "all SDK checks passed",
    ),
    // `holdings`, `margin`, `holidays`, `timings`.
    (
        "account_sdk.py",
        [800.0, 799.9, 800.1],
        "all account SDK checks passed",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_scripts_run_unmodified() {
    for (script, [ltp, bid, ask], passed) in SCRIPTS {
        let server = common::start_quoting("SBIN", *ltp, *bid, *ask).await;
        server.run_sdk_script(script, &[], passed).await;
    }
}
