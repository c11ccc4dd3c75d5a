//! Kafka settings (`KAFKA_*`), used in ORDER_EVENT_MODE=KAFKA and BOTH.
//!
//! The library owns their names, defaults and parsing (`KafkaConfig::from_lookup`, the same
//! code a standalone consumer service uses); this module exposes them as flags and adds the
//! server's one rule: in KAFKA or BOTH mode `KAFKA_BOOTSTRAP_SERVERS` must be given
//! explicitly, so a forgotten setting never silently points at localhost.

use clap::Args;
use oa_events_core::EventMode;
use oa_events_kafka::KafkaConfig;

use super::Checker;
use super::kafka_security::RawKafkaSecurity;

/// Declares the Kafka flags once: field, variable, help.
macro_rules! kafka_flags {
    ($($field:ident = $var:literal : $help:literal;)+) => {
        /// Kafka settings as given (unset = the library default, see `.sample.env`).
        #[derive(Debug, Clone, Args)]
        pub struct RawKafkaConfig {
            $(
                #[doc = $help]
                #[arg(long, env = $var)]
                pub $field: Option<String>,
            )+
            /// TLS and SASL (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`).
            #[command(flatten)]
            pub security: RawKafkaSecurity,
        }

        impl RawKafkaConfig {
            /// The value given for the variable `name`, if any.
            fn get(&self, name: &str) -> Option<String> {
                match name {
                    $($var => self.$field.clone(),)+
                    _ => self.security.get(name),
                }
            }
        }
    };
}

kafka_flags! {
    kafka_bootstrap_servers = "KAFKA_BOOTSTRAP_SERVERS": "Kafka brokers, comma separated (required in KAFKA and BOTH modes).";
    kafka_order_events_topic = "KAFKA_ORDER_EVENTS_TOPIC": "Outbound topic of order events [from_openalgo_order_events].";
    kafka_esb_events_topic = "KAFKA_ESB_EVENTS_TOPIC": "Inbound topic of ESB commands [from_esb_order_events].";
    kafka_producer_compression = "KAFKA_PRODUCER_COMPRESSION": "Producer compression: none, gzip, snappy, lz4, zstd [lz4].";
    kafka_producer_batch_size = "KAFKA_PRODUCER_BATCH_SIZE": "Producer batch size in bytes [16384].";
    kafka_producer_linger_ms = "KAFKA_PRODUCER_LINGER_MS": "Milliseconds the producer waits to fill a batch [10].";
    kafka_producer_acks = "KAFKA_PRODUCER_ACKS": "Producer acknowledgements: all [all].";
    kafka_consumer_group = "KAFKA_CONSUMER_GROUP": "Consumer group name of the ESB consumer [openalgo-order-consumer].";
    kafka_consumer_auto_offset_reset = "KAFKA_CONSUMER_AUTO_OFFSET_RESET": "Where the ESB consumer starts without a stored offset: earliest, latest [latest].";
    kafka_client_id = "KAFKA_CLIENT_ID": "Client id sent to the brokers [oa].";
    kafka_create_topics = "KAFKA_CREATE_TOPICS": "Create missing topics at start-up: true or false [false].";
    kafka_topic_partitions = "KAFKA_TOPIC_PARTITIONS": "Partitions of topics oa creates [3].";
    kafka_topic_replication_factor = "KAFKA_TOPIC_REPLICATION_FACTOR": "Replication factor of topics oa creates [1].";
    kafka_request_timeout_ms = "KAFKA_REQUEST_TIMEOUT_MS": "Timeout of one Kafka request, ms [30000].";
    kafka_retry_backoff_ms = "KAFKA_RETRY_BACKOFF_MS": "First retry delay after a failed send, ms [100].";
    kafka_retry_backoff_max_ms = "KAFKA_RETRY_BACKOFF_MAX_MS": "Longest retry delay, ms [5000].";
    kafka_relay_max_rows = "KAFKA_RELAY_MAX_ROWS": "Outbox rows the relay sends per round [10000].";
    kafka_relay_poll_ms = "KAFKA_RELAY_POLL_MS": "How often the relay looks at the outbox when not woken, ms [1000].";
}

impl RawKafkaConfig {
    /// Parses the settings when `mode` uses Kafka; `None` (and nothing checked) otherwise.
    pub(super) fn validate(&self, check: &mut Checker, mode: EventMode) -> Option<KafkaConfig> {
        if !mode.uses_kafka() {
            return None;
        }
        if self
            .kafka_bootstrap_servers
            .as_deref()
            .unwrap_or("")
            .trim()
            .is_empty()
        {
            check.problems.push(format!(
                "KAFKA_BOOTSTRAP_SERVERS is required when ORDER_EVENT_MODE={mode}: a comma-separated list of host:port, for example localhost:9092"
            ));
            return None;
        }
        match KafkaConfig::from_lookup_all(|name| self.get(name)) {
            Ok(config) => Some(config),
            Err(problems) => {
                check
                    .problems
                    .extend(problems.iter().map(ToString::to_string));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_variable_has_a_flag() {
        let raw = RawKafkaConfig {
            kafka_bootstrap_servers: Some("x".into()),
            kafka_order_events_topic: Some("x".into()),
            kafka_esb_events_topic: Some("x".into()),
            kafka_producer_compression: Some("x".into()),
            kafka_producer_batch_size: Some("x".into()),
            kafka_producer_linger_ms: Some("x".into()),
            kafka_producer_acks: Some("x".into()),
            kafka_consumer_group: Some("x".into()),
            kafka_consumer_auto_offset_reset: Some("x".into()),
            kafka_client_id: Some("x".into()),
            kafka_create_topics: Some("x".into()),
            kafka_topic_partitions: Some("x".into()),
            kafka_topic_replication_factor: Some("x".into()),
            kafka_request_timeout_ms: Some("x".into()),
            kafka_retry_backoff_ms: Some("x".into()),
            kafka_retry_backoff_max_ms: Some("x".into()),
            kafka_relay_max_rows: Some("x".into()),
            kafka_relay_poll_ms: Some("x".into()),
            security: RawKafkaSecurity {
                kafka_security_protocol: None,
                kafka_sasl_mechanism: None,
                kafka_sasl_username: None,
                kafka_sasl_password: None,
                kafka_ssl_ca_location: None,
                kafka_ssl_certificate_location: None,
                kafka_ssl_key_location: None,
                kafka_ssl_endpoint_identification: None,
            },
        };
        for (name, _) in oa_events_kafka::config::VARIABLES {
            assert!(raw.get(name).is_some(), "{name} has no flag in oa-server");
        }
    }
}
