//! Kafka transport-security flags (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`).
//!
//! The library parses and checks them together (`SecurityConfig::from_lookup`, every problem
//! on its own line); this module only declares them as flags. The password's value is never
//! shown by `--help` or `Debug`.

use clap::Args;

/// Kafka TLS and SASL settings as given.
#[derive(Clone, Args)]
pub struct RawKafkaSecurity {
    /// Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL [PLAINTEXT].
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (required with SASL_*).
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user name (required with SASL_*).
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password (required with SASL_*; never logged; prefer the environment to the flag).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM file of the CA certificates to trust with SSL/SASL_SSL [the system's trust store].
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,
    /// PEM client certificate (chain) for mutual TLS; needs KAFKA_SSL_KEY_LOCATION.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<String>,
    /// PEM private key (unencrypted) of the client certificate; needs KAFKA_SSL_CERTIFICATE_LOCATION.
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<String>,
    /// Check that the broker certificate names the broker host: https or none [https].
    #[arg(long, env = "KAFKA_SSL_ENDPOINT_IDENTIFICATION")]
    pub kafka_ssl_endpoint_identification: Option<String>,
}

impl RawKafkaSecurity {
    /// The value given for the variable `name`, if it is one of these.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        match name {
            "KAFKA_SECURITY_PROTOCOL" => self.kafka_security_protocol.clone(),
            "KAFKA_SASL_MECHANISM" => self.kafka_sasl_mechanism.clone(),
            "KAFKA_SASL_USERNAME" => self.kafka_sasl_username.clone(),
            "KAFKA_SASL_PASSWORD" => self.kafka_sasl_password.clone(),
            "KAFKA_SSL_CA_LOCATION" => self.kafka_ssl_ca_location.clone(),
            "KAFKA_SSL_CERTIFICATE_LOCATION" => self.kafka_ssl_certificate_location.clone(),
            "KAFKA_SSL_KEY_LOCATION" => self.kafka_ssl_key_location.clone(),
            "KAFKA_SSL_ENDPOINT_IDENTIFICATION" => self.kafka_ssl_endpoint_identification.clone(),
            _ => None,
        }
    }
}

impl std::fmt::Debug for RawKafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawKafkaSecurity")
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field(
                "kafka_sasl_password",
                &self.kafka_sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("kafka_ssl_ca_location", &self.kafka_ssl_ca_location)
            .field(
                "kafka_ssl_certificate_location",
                &self.kafka_ssl_certificate_location,
            )
            .field("kafka_ssl_key_location", &self.kafka_ssl_key_location)
            .field(
                "kafka_ssl_endpoint_identification",
                &self.kafka_ssl_endpoint_identification,
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_security_variable_has_a_flag_and_debug_hides_the_password() {
        let raw = RawKafkaSecurity {
            kafka_security_protocol: Some("x".into()),
            kafka_sasl_mechanism: Some("x".into()),
            kafka_sasl_username: Some("x".into()),
            kafka_sasl_password: Some("hunter2-secret".into()),
            kafka_ssl_ca_location: Some("x".into()),
            kafka_ssl_certificate_location: Some("x".into()),
            kafka_ssl_key_location: Some("x".into()),
            kafka_ssl_endpoint_identification: Some("x".into()),
        };
        for (name, _) in oa_events_kafka::security::VARIABLES {
            assert!(raw.get(name).is_some(), "{name} has no flag in oa-server");
        }
        let debug = format!("{raw:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
