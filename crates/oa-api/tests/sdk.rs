//! The official OpenAlgo Python SDK (openalgo==1.0.47) against the real router.
//! Needs the project venv (`cargo xtask setup`); fails with a hint when it is missing.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_runs_unmodified() {
    let server = common::start().await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    server
        .run_sdk_script("rest_sdk.py", &[], "all SDK checks passed")
        .await;
}
