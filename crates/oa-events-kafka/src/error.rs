//! Errors of this crate: one for settings, one for everything that talks to a broker.

use std::time::Duration;

pub use crate::outbox::OutboxError;

/// The underlying rskafka error.
pub type RsKafkaError = rskafka::client::error::Error;

/// A setting has a value oa cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable (setting) name.
    pub variable: &'static str,
    /// The rejected value.
    pub value: String,
    /// Why, with the allowed values.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &'static str, value: &str, reason: String) -> Self {
        ConfigError {
            variable,
            value: value.to_string(),
            reason,
        }
    }
}

/// Talking to Kafka failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No broker of the bootstrap list answered.
    #[error("cannot reach Kafka at {brokers} (KAFKA_BOOTSTRAP_SERVERS): {source}")]
    Connect {
        /// The bootstrap list.
        brokers: String,
        /// The client's error.
        #[source]
        source: RsKafkaError,
    },
    /// The brokers refused the security settings: a failed SASL login, a certificate that
    /// does not verify, a handshake the broker ended. `reason` names the cause and the
    /// variable to look at (never the password).
    #[error("{reason} (Kafka at {brokers}, KAFKA_SECURITY_PROTOCOL={protocol})")]
    Refused {
        /// The bootstrap list.
        brokers: String,
        /// `KAFKA_SECURITY_PROTOCOL`.
        protocol: crate::security::SecurityProtocol,
        /// The cause, in one line.
        reason: String,
    },
    /// A broker did not answer in time.
    #[error("Kafka at {brokers} did not answer {what} within {after:?}")]
    Timeout {
        /// The bootstrap list.
        brokers: String,
        /// The request that timed out.
        what: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// The topic does not exist and creating it is not allowed.
    #[error(
        "Kafka topic {topic:?} does not exist on {brokers}: create it (docs/kafka.md) or set KAFKA_CREATE_TOPICS=true"
    )]
    TopicMissing {
        /// The topic.
        topic: String,
        /// The bootstrap list.
        brokers: String,
    },
    /// Creating the topic failed.
    #[error("cannot create Kafka topic {topic:?} on {brokers}: {source}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The bootstrap list.
        brokers: String,
        /// The broker's error.
        #[source]
        source: RsKafkaError,
    },
    /// A request about a topic (metadata, produce) failed.
    #[error("Kafka request {what} for topic {topic:?} on {brokers} failed: {source}")]
    Request {
        /// The request.
        what: &'static str,
        /// The topic.
        topic: String,
        /// The bootstrap list.
        brokers: String,
        /// The broker's error.
        #[source]
        source: RsKafkaError,
    },
    /// A send task failed unexpectedly (a bug); its events stay pending.
    #[error("Kafka send task failed: {0}")]
    Internal(String),
    /// The outbox could not be read or updated.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}
