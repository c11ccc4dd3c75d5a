//! ESB command authentication (`KAFKA_ESB_*` security settings), used in KAFKA and BOTH
//! modes. The library (`oa_events_kafka::esb_auth`) owns their parsing; this module exposes
//! them as flags. Secrets never appear in `Debug`, `--help` or error messages.

use std::fmt;

use clap::Args;
use oa_events_core::EventMode;
use oa_events_kafka::EsbSecurity;

use super::Checker;

/// ESB security settings as given.
#[derive(Clone, Args)]
pub struct RawEsbConfig {
    /// Signing keys of ESB commands: `id1:secret1,id2:secret2` (each secret at least 32
    /// bytes; several at once to rotate keys). Prefer the environment: flags show in `ps`.
    #[arg(long, env = "KAFKA_ESB_SIGNING_KEYS", hide_env_values = true)]
    pub kafka_esb_signing_keys: Option<String>,
    /// Execute UNSIGNED ESB commands (anyone who can write to the ESB topic can trade for
    /// every user who allowed ESB control): true or false [false].
    #[arg(long, env = "KAFKA_ESB_TRUST_UNSIGNED")]
    pub kafka_esb_trust_unsigned: Option<String>,
    /// Oldest accepted ESB command `timestamp`, in seconds [300].
    #[arg(long, env = "KAFKA_ESB_MAX_AGE_SECONDS")]
    pub kafka_esb_max_age_seconds: Option<String>,
}

impl fmt::Debug for RawEsbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawEsbConfig")
            .field(
                "kafka_esb_signing_keys",
                &self.kafka_esb_signing_keys.as_ref().map(|_| "<redacted>"),
            )
            .field("kafka_esb_trust_unsigned", &self.kafka_esb_trust_unsigned)
            .field("kafka_esb_max_age_seconds", &self.kafka_esb_max_age_seconds)
            .finish()
    }
}

impl RawEsbConfig {
    fn get(&self, name: &str) -> Option<String> {
        match name {
            "KAFKA_ESB_SIGNING_KEYS" => self.kafka_esb_signing_keys.clone(),
            "KAFKA_ESB_TRUST_UNSIGNED" => self.kafka_esb_trust_unsigned.clone(),
            "KAFKA_ESB_MAX_AGE_SECONDS" => self.kafka_esb_max_age_seconds.clone(),
            _ => None,
        }
    }

    /// Parses the settings when `mode` uses Kafka; `None` (and nothing checked) otherwise.
    pub(super) fn validate(&self, check: &mut Checker, mode: EventMode) -> Option<EsbSecurity> {
        if !mode.uses_kafka() {
            return None;
        }
        match EsbSecurity::from_lookup(|name| self.get(name)) {
            Ok(security) => Some(security),
            Err(problems) => {
                check.problems.extend(problems);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_variable_has_a_flag_and_debug_hides_the_secrets() {
        let raw = RawEsbConfig {
            kafka_esb_signing_keys: Some("k1:a-secret-of-at-least-32-bytes-0000".into()),
            kafka_esb_trust_unsigned: Some("x".into()),
            kafka_esb_max_age_seconds: Some("x".into()),
        };
        for (name, _) in oa_events_kafka::esb_auth::VARIABLES {
            assert!(raw.get(name).is_some(), "{name} has no flag in oa-server");
        }
        let debug = format!("{raw:?}");
        assert!(!debug.contains("a-secret"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }
}
