//! The official OpenAlgo Python SDK (openalgo==1.0.47) against the real router.
//! Needs the project venv (`cargo xtask setup`); fails with a hint when it is missing.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_runs_unmodified() {
    let server = common::start().await;
    server.price("NSE", "SBIN", 812.5, 812.4, 812.6);
    let env = [
        ("OA_HOST", server.url.clone()),
        ("OA_APIKEY", server.key.clone()),
    ];
    let output =
        tokio::task::spawn_blocking(move || oa_e2e::run_python_script("rest_sdk.py", &env))
            .await
            .unwrap();
    match output {
        Ok(stdout) => assert!(stdout.contains("all SDK checks passed"), "{stdout}"),
        Err(error) => panic!("{error:#}"),
    }
}
