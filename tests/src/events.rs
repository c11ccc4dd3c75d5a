//! Where a test server's order events go, per event mode, and how a test reads them back.
//!
//! `cargo xtask test-both-modes` runs the suite once per `ORDER_EVENT_MODE` with a real broker
//! (`OA_E2E_KAFKA_BOOTSTRAP`). Each server of the suite gets topics of its own on that broker,
//! so that a test can check, in every pass, that its events went exactly where the mode says:
//!
//! | mode | Socket.IO clients | the events topic |
//! |---|---|---|
//! | SOCKETIO | receive them | receives none (the server is given the broker and ignores it) |
//! | KAFKA | cannot connect (Socket.IO is not served) | receives them, read by kafka-python |
//! | BOTH | receive them | receives the same events |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::kafka_topic::{KafkaRecord, read_topic_with};
use crate::{PeerProcess, TestServer, run_python_script_with_status};

/// The event mode the whole suite runs in, from `OA_E2E_EVENT_MODE` (set by
/// `cargo xtask test-both-modes`; default SOCKETIO). A test that needs a particular mode sets
/// `ORDER_EVENT_MODE` itself, which overrides this.
pub fn suite_event_mode() -> String {
    std::env::var("OA_E2E_EVENT_MODE")
        .unwrap_or_else(|_| "SOCKETIO".to_string())
        .to_ascii_uppercase()
}

/// The suite's broker and client settings (`OA_E2E_KAFKA_BOOTSTRAP`, `OA_E2E_KAFKA_ENV`).
#[derive(Debug, Clone)]
pub struct SuiteKafka {
    /// `host:port` of the suite's broker.
    pub bootstrap: String,
    /// This server's own outbound topic.
    pub events_topic: String,
    /// This server's own ESB command topic.
    pub esb_topic: String,
    /// Client security settings (`KAFKA_SECURITY_PROTOCOL=...` and the like) that both oa and
    /// kafka-python need for the suite's broker, from `OA_E2E_KAFKA_ENV` (`NAME=VALUE;...`).
    pub client_env: Vec<(String, String)>,
}

/// How one test server delivers order events.
#[derive(Debug, Clone)]
pub struct EventRoute {
    /// The server's final `ORDER_EVENT_MODE`, upper case.
    pub mode: String,
    /// The suite's broker, when the suite has one and the test did not point the server at
    /// a broker of its own.
    pub kafka: Option<SuiteKafka>,
    /// Whether the test chose the mode itself (then the suite's health checks stay out of it).
    mode_pinned: bool,
}

/// Unique topic names per server, so parallel tests and passes never read each other's records.
fn unique_topic(kind: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "e2e_{kind}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl EventRoute {
    /// The route of a server started with the test's own settings `test_env` on top of the
    /// suite's.
    pub fn for_server(test_env: &[(&str, &str)]) -> EventRoute {
        let given = |name: &str| {
            test_env
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        };
        let pinned_mode = given("ORDER_EVENT_MODE");
        let mode = pinned_mode
            .clone()
            .map_or_else(suite_event_mode, |mode| mode.to_ascii_uppercase());
        let suite_bootstrap = std::env::var("OA_E2E_KAFKA_BOOTSTRAP").ok();
        let kafka = if given("KAFKA_BOOTSTRAP_SERVERS").is_some() {
            None
        } else {
            let bootstrap = suite_bootstrap.or_else(|| {
                // Without a suite broker a KAFKA/BOTH run still needs one: the default port.
                (mode != "SOCKETIO").then(|| "127.0.0.1:9092".to_string())
            });
            bootstrap.map(|bootstrap| SuiteKafka {
                bootstrap,
                events_topic: given("KAFKA_ORDER_EVENTS_TOPIC")
                    .unwrap_or_else(|| unique_topic("events")),
                esb_topic: given("KAFKA_ESB_EVENTS_TOPIC").unwrap_or_else(|| unique_topic("esb")),
                client_env: suite_client_env(),
            })
        };
        EventRoute {
            mode,
            kafka,
            mode_pinned: pinned_mode.is_some(),
        }
    }

    /// True when Socket.IO clients receive this server's events.
    pub fn socketio(&self) -> bool {
        self.mode == "SOCKETIO" || self.mode == "BOTH"
    }

    /// True when this server publishes its events to Kafka.
    pub fn kafka(&self) -> bool {
        self.mode == "KAFKA" || self.mode == "BOTH"
    }

    /// True when the server must be connected to the suite's broker before its test runs.
    pub(crate) fn uses_suite_broker(&self) -> bool {
        self.kafka() && self.kafka.is_some() && !self.mode_pinned
    }

    /// The settings the suite adds to the server's environment (the test's own come after
    /// and win).
    pub(crate) fn suite_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("ORDER_EVENT_MODE".to_string(), self.mode.clone())];
        if let Some(kafka) = &self.kafka {
            env.extend([
                (
                    "KAFKA_BOOTSTRAP_SERVERS".to_string(),
                    kafka.bootstrap.clone(),
                ),
                (
                    "KAFKA_ORDER_EVENTS_TOPIC".to_string(),
                    kafka.events_topic.clone(),
                ),
                (
                    "KAFKA_ESB_EVENTS_TOPIC".to_string(),
                    kafka.esb_topic.clone(),
                ),
                ("KAFKA_CREATE_TOPICS".to_string(), "true".to_string()),
                ("KAFKA_RETRY_BACKOFF_MAX_MS".to_string(), "500".to_string()),
            ]);
            env.extend(kafka.client_env.iter().cloned());
        }
        env
    }
}

/// `OA_E2E_KAFKA_ENV`: `NAME=VALUE` pairs separated by `;`.
fn suite_client_env() -> Vec<(String, String)> {
    std::env::var("OA_E2E_KAFKA_ENV")
        .unwrap_or_default()
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .filter(|(name, _)| !name.is_empty())
        .collect()
}

/// One event as a channel delivered it: (event name, payload).
pub type DeliveredEvent = (String, Value);

/// The events of one user in a topic's records, as (event_type, data), in topic order per
/// partition (a user's records share one partition).
pub fn user_events(records: &[KafkaRecord], user_id: &str) -> Vec<DeliveredEvent> {
    let mut own: Vec<&KafkaRecord> = records
        .iter()
        .filter(|record| record.value["user_id"] == user_id)
        .collect();
    own.sort_by_key(|record| (record.partition, record.offset));
    own.iter()
        .map(|record| {
            (
                record.value["event_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                record.value["data"].clone(),
            )
        })
        .collect()
}

impl TestServer {
    /// The suite's broker settings of this server.
    ///
    /// # Panics
    /// When the server has no suite broker (the test must check `events.kafka()` first).
    pub fn suite_kafka(&self) -> &SuiteKafka {
        self.events
            .kafka
            .as_ref()
            .expect("this server has no suite broker (OA_E2E_KAFKA_BOOTSTRAP unset)")
    }

    /// Reads `user_id`'s events back from this server's events topic with kafka-python until
    /// `enough` holds for them.
    ///
    /// # Panics
    /// When the topic does not hold enough within 60 s.
    pub fn kafka_events(
        &self,
        user_id: &str,
        enough: impl Fn(&[DeliveredEvent]) -> bool,
    ) -> Vec<DeliveredEvent> {
        let kafka = self.suite_kafka();
        let records = read_topic_with(
            &kafka.bootstrap,
            &kafka.events_topic,
            &kafka.client_env,
            |records| enough(&user_events(records, user_id)),
        );
        user_events(&records, user_id)
    }

    /// In the SOCKETIO pass: the server was given the suite's broker and topic, and the topic
    /// holds no record (it does not exist, or is empty) after the test's orders.
    ///
    /// # Panics
    /// When the topic holds a record.
    pub fn assert_no_kafka_records(&self) {
        let kafka = self.suite_kafka();
        let mut env = vec![
            ("KAFKA_BOOTSTRAP", kafka.bootstrap.clone()),
            ("KAFKA_TOPIC", kafka.events_topic.clone()),
            ("TIMEOUT_S", "5".to_string()),
        ];
        let client_env: Vec<(&str, String)> = kafka
            .client_env
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        env.extend(client_env);
        let output = run_python_script_with_status("kafka_consume.py", &env)
            .unwrap_or_else(|error| panic!("kafka_consume.py did not run: {error:#}"));
        let records: Vec<&str> = output
            .stdout
            .lines()
            .filter(|line| line.contains("\"offset\""))
            .collect();
        assert!(
            records.is_empty(),
            "ORDER_EVENT_MODE={} published to Kafka topic {}: {records:#?}",
            self.events.mode,
            kafka.events_topic
        );
    }

    /// In the KAFKA pass: a python-socketio client with a valid key cannot connect, so no
    /// Socket.IO client can receive events.
    ///
    /// # Panics
    /// When the client connects.
    pub fn assert_socketio_not_served(&self, key: &str) {
        let mut peer = PeerProcess::socketio_login_attempt(&self.http_url(), key)
            .unwrap_or_else(|error| panic!("starting the Socket.IO client: {error:#}"));
        let first = peer
            .wait_for(Duration::from_secs(30), |line| {
                line["type"] == "connect" || line["type"] == "connect_error"
            })
            .unwrap_or_else(|error| panic!("{error:#}"));
        assert_eq!(
            first["type"], "connect_error",
            "ORDER_EVENT_MODE={} must not serve Socket.IO, yet a client connected",
            self.events.mode
        );
    }
}
