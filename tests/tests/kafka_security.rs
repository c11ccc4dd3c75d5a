//! Kafka transport security end to end: the real server in KAFKA mode, tansu (one per test)
//! with SASL (`--authentication`, SCRAM users made with `tansu user create`) behind a TLS
//! terminator (tansu 0.6 does not terminate TLS itself, see oa_e2e::tls_proxy), and
//! kafka-python, configured with the very same variables, reading every event back.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::HashSet;
use std::time::{Duration, Instant};

use oa_e2e::TestServer;
use oa_e2e::kafka_topic::{order_ids, read_topic_with};
use oa_e2e::pki::Pki;
use oa_e2e::tansu::{SecureOptions, Tansu};
use serde_json::Value;

const TOPIC: &str = "secure_order_events";
const USER: &str = "oa";
const PASSWORD: &str = "oa-scram-secret-7f3a";

type Env = Vec<(String, String)>;

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

/// SASL_SSL with `mechanism`, the broker's test CA, and the test user.
fn sasl_ssl(broker: &Tansu, mechanism: &str) -> Env {
    let pki = broker.pki().unwrap();
    vec![
        var("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        var("KAFKA_SASL_MECHANISM", mechanism),
        var("KAFKA_SASL_USERNAME", USER),
        var("KAFKA_SASL_PASSWORD", PASSWORD),
        var("KAFKA_SSL_CA_LOCATION", pki.ca.display().to_string()),
    ]
}

fn start_server(broker: &Tansu, security: &Env) -> TestServer {
    let bootstrap = broker.bootstrap();
    let mut env: Vec<(&str, &str)> = vec![
        ("ORDER_EVENT_MODE", "KAFKA"),
        ("KAFKA_BOOTSTRAP_SERVERS", &bootstrap),
        ("KAFKA_ORDER_EVENTS_TOPIC", TOPIC),
        ("KAFKA_CREATE_TOPICS", "true"),
        ("KAFKA_RETRY_BACKOFF_MAX_MS", "500"),
        ("KAFKA_REQUEST_TIMEOUT_MS", "3000"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ];
    env.extend(
        security
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    TestServer::start(&env).unwrap()
}

/// Places `count` market orders over REST; every one must succeed.
async fn place_orders(server: &TestServer, count: usize) -> HashSet<String> {
    server.wait_for_sbin().await.unwrap();
    let mut ids = HashSet::new();
    for _ in 0..count {
        ids.insert(
            server
                .place_market_order(&server.admin_key, "secure")
                .await
                .unwrap(),
        );
    }
    ids
}

/// kafka-python, with the same settings as oa, reads every placed order's event.
fn assert_delivered(broker: &Tansu, security: &Env, placed: &HashSet<String>) {
    let records = read_topic_with(&broker.bootstrap(), TOPIC, security, |records| {
        order_ids(records, "order_event").is_superset(placed)
    });
    assert!(order_ids(&records, "order_event").is_superset(placed));
}

/// Waits until /health's `kafka.last_error` contains `expected` and the outbox holds at
/// least `backlog` events; returns /health.
async fn wait_for_refusal(server: &TestServer, expected: &str, backlog: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.health().await.unwrap();
        if health["kafka"]["last_error"]
            .as_str()
            .is_some_and(|error| error.contains(expected))
            && health["kafka"]["outbox_backlog"].as_u64().unwrap_or(0) >= backlog as u64
        {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "kafka.last_error never said {expected:?}: {health}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the relay reports `count` events acknowledged (fails with /health and the log).
async fn wait_for_delivery(server: &TestServer, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.health().await.unwrap();
        if health["kafka"]["delivered"].as_u64().unwrap_or(0) >= count as u64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "oa did not deliver {count} events: {health}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_scram_sha512_deliver_every_event_to_kafka_python() {
    let broker = Tansu::start_secure(&SecureOptions::tls_and_sasl(USER, PASSWORD)).unwrap();
    let security = sasl_ssl(&broker, "SCRAM-SHA-512");
    let server = start_server(&broker, &security);
    let placed = place_orders(&server, 5).await;
    assert_delivered(&broker, &security, &placed);

    let health = server.health().await.unwrap();
    assert_eq!(health["kafka"]["connected"], true, "{health}");
    assert!(!health.to_string().contains(PASSWORD), "{health}");
    assert!(
        !server.log().contains(PASSWORD),
        "the log shows the password"
    );
}

/// A setting the broker refuses: orders still succeed, /health and the log name the cause,
/// and once the setting is fixed and oa restarted every event reaches kafka-python.
async fn refused_then_fixed(variable: &str, bad_value: &str, expected: &str) {
    let broker = Tansu::start_secure(&SecureOptions::tls_and_sasl(USER, PASSWORD)).unwrap();
    let good = sasl_ssl(&broker, "SCRAM-SHA-512");
    let good_value = good
        .iter()
        .find(|(name, _)| name == variable)
        .map(|(_, value)| value.clone())
        .unwrap();
    let mut bad = good.clone();
    bad.retain(|(name, _)| name != variable);
    bad.push(var(variable, bad_value));
    let mut server = start_server(&broker, &bad);

    let placed = place_orders(&server, 5).await;
    let health = wait_for_refusal(&server, expected, placed.len()).await;
    assert_eq!(health["kafka"]["connected"], false, "{health}");
    assert!(
        health["kafka"]["outbox_backlog"].as_u64().unwrap_or(0) >= placed.len() as u64,
        "{health}"
    );
    assert!(server.log().contains(expected), "{}", server.log());
    assert!(!health.to_string().contains(PASSWORD), "{health}");
    assert!(
        !server.log().contains(PASSWORD),
        "the log shows the password"
    );

    server.signal("TERM", Duration::from_secs(30)).unwrap();
    server.set_env(variable, &good_value);
    server.start_again().unwrap();
    assert_delivered(&broker, &good, &placed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_refused_by_name_and_the_outbox_waits() {
    refused_then_fixed(
        "KAFKA_SASL_PASSWORD",
        "not-the-password",
        "SASL authentication failed for user 'oa' (SCRAM-SHA-512)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_that_does_not_match_is_refused_by_name_and_the_outbox_waits() {
    let other = tempfile::tempdir().unwrap();
    let other_ca = Pki::generate(other.path(), "other").unwrap().ca;
    refused_then_fixed(
        "KAFKA_SSL_CA_LOCATION",
        &other_ca.display().to_string(),
        "TLS: certificate signed by unknown authority",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tansu 0.6 closes the connection during a SASL PLAIN exchange with rskafka (early eof): run against a real Kafka broker"]
async fn sasl_plain_over_tls_round_trip() {
    let broker = Tansu::start_secure(&SecureOptions::tls_and_sasl(USER, PASSWORD)).unwrap();
    let security = sasl_ssl(&broker, "PLAIN");
    let server = start_server(&broker, &security);
    let placed = place_orders(&server, 3).await;
    wait_for_delivery(&server, placed.len()).await;
    assert_delivered(&broker, &security, &placed);
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_round_trip_and_a_missing_client_certificate_is_refused() {
    let broker = Tansu::start_secure(&SecureOptions {
        tls: true,
        require_client_certificate: true,
        authentication: false,
        users: Vec::new(),
    })
    .unwrap();
    let pki = broker.pki().unwrap().clone();
    let without_certificate = vec![
        var("KAFKA_SECURITY_PROTOCOL", "SSL"),
        var("KAFKA_SSL_CA_LOCATION", pki.ca.display().to_string()),
    ];
    let mut server = start_server(&broker, &without_certificate);
    let placed = place_orders(&server, 3).await;
    wait_for_refusal(
        &server,
        "TLS: the broker refused the handshake",
        placed.len(),
    )
    .await;

    server.signal("TERM", Duration::from_secs(30)).unwrap();
    server.set_env(
        "KAFKA_SSL_CERTIFICATE_LOCATION",
        &pki.client_cert.display().to_string(),
    );
    server.set_env(
        "KAFKA_SSL_KEY_LOCATION",
        &pki.client_key.display().to_string(),
    );
    server.start_again().unwrap();
    let mut with_certificate = without_certificate;
    with_certificate.push(var(
        "KAFKA_SSL_CERTIFICATE_LOCATION",
        pki.client_cert.display().to_string(),
    ));
    with_certificate.push(var(
        "KAFKA_SSL_KEY_LOCATION",
        pki.client_key.display().to_string(),
    ));
    let more = place_orders(&server, 2).await;
    assert_delivered(
        &broker,
        &with_certificate,
        &placed.union(&more).cloned().collect(),
    );
}
