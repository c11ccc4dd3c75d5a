//! Kafka settings (`KAFKA_*`: `oa_events_kafka`'s `config`, `security` and `esb_auth`
//! tables), used in ORDER_EVENT_MODE=KAFKA and BOTH.
//!
//! The library owns their parsing (`KafkaConfig::from_lookup_all`,
//! `EsbSecurity::from_lookup`, the same code a standalone consumer service uses); the server
//! adds one rule: in KAFKA or BOTH mode `KAFKA_BOOTSTRAP_SERVERS` must be given explicitly, so
//! a forgotten setting never silently points at localhost.

use oa_events_core::EventMode;
use oa_events_kafka::{EsbSecurity, KafkaConfig};

use super::Checker;

/// Parses the Kafka settings when `mode` uses Kafka; `None` (and nothing checked) otherwise.
pub(super) fn validate(check: &mut Checker, mode: EventMode) -> Option<KafkaConfig> {
    if !mode.uses_kafka() {
        return None;
    }
    let raw = check.raw;
    if raw.text("KAFKA_BOOTSTRAP_SERVERS").trim().is_empty() {
        check.problems.push(format!(
            "KAFKA_BOOTSTRAP_SERVERS is required when ORDER_EVENT_MODE={mode}: a comma-separated list of host:port, for example localhost:9092"
        ));
        return None;
    }
    match KafkaConfig::from_lookup_all(|name| raw.get(name)) {
        Ok(config) => Some(config),
        Err(problems) => {
            check
                .problems
                .extend(problems.iter().map(ToString::to_string));
            None
        }
    }
}

/// Parses ESB command authentication when `mode` uses Kafka; `None` otherwise.
pub(super) fn validate_esb(check: &mut Checker, mode: EventMode) -> Option<EsbSecurity> {
    if !mode.uses_kafka() {
        return None;
    }
    let raw = check.raw;
    match EsbSecurity::from_lookup(|name| raw.get(name)) {
        Ok(security) => Some(security),
        Err(problems) => {
            check.problems.extend(problems);
            None
        }
    }
}
