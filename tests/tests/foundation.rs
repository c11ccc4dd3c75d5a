//! The server skeleton, end to end: start-up, /health, /metrics, graceful shutdown. Runs the
//! real binary. (Start-up refusals are oa-server's own tests: crates/oa-server/tests/startup.rs.)

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::TestServer;

#[tokio::test]
async fn health_reports_the_layers_and_mode() {
    let server = TestServer::start(&[]).unwrap();
    let health: serde_json::Value = server.health().await.unwrap();
    let route = &server.events;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["order_event_mode"], route.mode, "{health}");
    assert_eq!(health["layers"]["rest"], true, "{health}");
    assert_eq!(health["layers"]["marketdata"], true, "{health}");
    assert_eq!(health["layers"]["socketio"], route.socketio(), "{health}");
    assert_eq!(health["layers"]["kafka"], route.kafka(), "{health}");
    let mut sinks: Vec<&str> = health["event_sinks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|sink| sink["name"].as_str())
        .collect();
    sinks.sort_unstable();
    let mut expected = Vec::new();
    if route.kafka() {
        expected.push("kafka_outbox");
    }
    if route.socketio() {
        expected.push("socketio");
    }
    assert_eq!(sinks, expected, "{health}");
    if route.kafka() {
        // TestServer::start waited for the connection to the suite's broker.
        assert_eq!(health["kafka"]["connected"], true, "{health}");
        assert_eq!(health["kafka"]["outbox_backlog"], 0, "{health}");
    } else {
        assert!(health["kafka"].is_null(), "{health}");
    }
}

/// GETs `path` of the server's HTTP listener.
async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path}", server.http_url()))
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = TestServer::start(&[]).unwrap();
    let response = get(&server, "/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let server = TestServer::start(&[]).unwrap();
    let response = get(&server, "/no/such/path").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "error");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut server = TestServer::start(&[]).unwrap();
    let status = server.signal("TERM", Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", server.log());
    assert!(
        server.log().contains("oa-server stopped"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn first_start_prints_a_working_admin_key_and_apikey_create_adds_users() {
    let server = TestServer::start(&[]).unwrap();
    let client = reqwest::Client::new();
    let ping = |key: String| {
        let client = client.clone();
        let url = format!("{}/api/v1/ping", server.http_url());
        async move {
            let response = client
                .post(url)
                .json(&serde_json::json!({ "apikey": key }))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = ping(server.admin_key.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["message"], "pong");

    let key = server.create_user("trader1").unwrap();
    let (status, _) = ping(key).await;
    assert_eq!(status, 200);

    let (status, body) = ping("not-a-key".into()).await;
    assert_eq!(status, 403);
    assert_eq!(body["message"], "Invalid openalgo apikey");
}

#[tokio::test]
async fn keys_revoked_or_rotated_by_the_cli_stop_working_at_once() {
    let server = TestServer::start(&[("API_RATE_LIMIT", "1000 per second")]).unwrap();
    let key = server.create_user("trader2").unwrap();
    let ping = |key: String| {
        let body = serde_json::json!({ "apikey": key });
        async { server.post("ping", body).await.unwrap().0 }
    };
    // Verified once, so the server has the key in its cache.
    assert_eq!(ping(key.clone()).await, 200);
    assert_eq!(ping(key.clone()).await, 200);

    let rotated = server.apikey(&["rotate", "--user", "trader2"]).unwrap();
    assert_eq!(
        ping(key.clone()).await,
        403,
        "the old key still works after rotate"
    );
    assert_eq!(ping(rotated.clone()).await, 200);

    server.apikey(&["revoke", "--user", "trader2"]).unwrap();
    assert_eq!(ping(rotated).await, 403, "the key still works after revoke");

    let listing = server.apikey(&["list"]).unwrap();
    assert!(listing.contains("trader2"), "{listing}");
    assert!(!listing.contains(&key), "apikey list must never show keys");
}

/// `cp .sample.env .env` must give a working server: every line of the sample is valid dotenv
/// syntax and every value it shows is accepted. The ports and store are overridden (process
/// environment wins over the file) so the test runs beside others.
#[tokio::test]
async fn the_sample_env_file_loads_unchanged_as_dot_env() {
    let sample = oa_e2e::workspace_root().join(".sample.env");
    let copy = tempfile::tempdir().unwrap();
    let dot_env = copy.path().join(".env");
    std::fs::copy(&sample, &dot_env).unwrap();
    let server = TestServer::start(&[("OA_ENV_FILE", dot_env.to_str().unwrap())]).unwrap();
    let health: serde_json::Value = server.health().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    // An unreadable line stops start-up ("cannot read .env"), so reaching here is the proof;
    // the log must not show it either.
    let log = server.log();
    assert!(!log.contains("cannot read"), "{log}");
}
