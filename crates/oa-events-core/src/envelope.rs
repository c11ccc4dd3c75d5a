//! The envelope every transport carries, and its CloudEvents mapping.
//!
//! ```json
//! {"id":"0190...","event_type":"order_event","timestamp":"2026-01-29T10:30:45.123456Z",
//!  "user_id":"user123","source":"openalgo","version":"1.0","data":{...}}
//! ```
//!
//! `id` (UUIDv7, time-ordered) is ours: it lets consumers drop duplicates. The other keys are
//! the upstream Kafka envelope's.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::catalog::{Audience, EventPayload, UnknownEvent};

/// The envelope's `source`.
pub const SOURCE: &str = "openalgo";
/// The envelope's `version`.
pub const ENVELOPE_VERSION: &str = "1.0";
/// The `user_id` (and Kafka key) of system-wide events.
pub const SYSTEM_USER_ID: &str = "admin";
/// The CloudEvents spec version written in `ce_specversion`.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";

/// An event as a service hands it to the publisher: whom it concerns and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The user the event belongs to; [`SYSTEM_USER_ID`] for system-wide events.
    pub user_id: String,
    /// What happened.
    pub payload: EventPayload,
}

impl Event {
    /// An event that concerns one user.
    pub fn for_user(user_id: impl Into<String>, payload: impl Into<EventPayload>) -> Self {
        Event {
            user_id: user_id.into(),
            payload: payload.into(),
        }
    }

    /// A system-wide event (user id [`SYSTEM_USER_ID`]).
    pub fn system(payload: impl Into<EventPayload>) -> Self {
        Event {
            user_id: SYSTEM_USER_ID.to_string(),
            payload: payload.into(),
        }
    }
}

/// An event with its identity and time: the unit every sink delivers.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique, time-ordered (UUIDv7). Duplicates of one event always carry the same id.
    pub id: Uuid,
    /// When the event was created, UTC; serialised with microseconds.
    pub timestamp: DateTime<Utc>,
    /// The owning user, or [`SYSTEM_USER_ID`].
    pub user_id: String,
    /// The payload; its name is the envelope's `event_type`.
    pub data: EventPayload,
}

/// An envelope that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON, or a key is missing or of the wrong type.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    /// `event_type` or `data` do not match the catalog.
    #[error(transparent)]
    Payload(#[from] UnknownEvent),
    /// `source` or `version` is not one this build understands.
    #[error("unsupported envelope {field} {value:?} (expected {expected:?})")]
    Unsupported {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Envelope {
    /// Wraps an event with a fresh UUIDv7 and the current time.
    pub fn new(event: Event) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            timestamp: Utc::now(),
            user_id: event.user_id,
            data: event.payload,
        }
    }

    /// The envelope's `event_type`: the payload's wire name.
    pub fn event_type(&self) -> &'static str {
        self.data.name()
    }

    /// Who receives this event.
    pub fn audience(&self) -> Audience<'_> {
        if self.data.is_system_wide() {
            Audience::Everyone
        } else {
            Audience::User(&self.user_id)
        }
    }

    /// The timestamp as written on the wire: RFC 3339, UTC, microseconds, `Z`.
    pub fn timestamp_rfc3339(&self) -> String {
        self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    /// The envelope as JSON bytes.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising owned strings, numbers and JSON values into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an envelope from JSON, checking `event_type` and `data` against the catalog.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let wire: WireEnvelope<serde_json::Value> = serde_json::from_slice(bytes)?;
        Envelope::try_from(wire)
    }

    /// CloudEvents binary-mode attributes, as Kafka header (name, value) pairs.
    pub fn cloudevents_headers(&self) -> [(&'static str, String); 6] {
        [
            ("ce_id", self.id.to_string()),
            ("ce_type", self.event_type().to_string()),
            ("ce_source", SOURCE.to_string()),
            ("ce_time", self.timestamp_rfc3339()),
            ("ce_specversion", CLOUDEVENTS_SPEC_VERSION.to_string()),
            ("content-type", "application/json".to_string()),
        ]
    }
}

/// The envelope's JSON shape, field order as on the wire.
#[derive(Serialize, Deserialize)]
struct WireEnvelope<D> {
    id: Uuid,
    event_type: String,
    timestamp: String,
    user_id: String,
    source: String,
    version: String,
    data: D,
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireEnvelope {
            id: self.id,
            event_type: self.event_type().to_string(),
            timestamp: self.timestamp_rfc3339(),
            user_id: self.user_id.clone(),
            source: SOURCE.to_string(),
            version: ENVELOPE_VERSION.to_string(),
            data: &self.data,
        }
        .serialize(serializer)
    }
}

impl TryFrom<WireEnvelope<serde_json::Value>> for Envelope {
    type Error = EnvelopeError;

    fn try_from(wire: WireEnvelope<serde_json::Value>) -> Result<Self, Self::Error> {
        if wire.source != SOURCE {
            return Err(EnvelopeError::Unsupported {
                field: "source",
                value: wire.source,
                expected: SOURCE,
            });
        }
        if wire.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::Unsupported {
                field: "version",
                value: wire.version,
                expected: ENVELOPE_VERSION,
            });
        }
        let timestamp = DateTime::parse_from_rfc3339(&wire.timestamp)
            .map_err(|error| {
                serde::de::Error::custom(format!("timestamp {:?}: {error}", wire.timestamp))
            })
            .map_err(EnvelopeError::Malformed)?
            .with_timezone(&Utc);
        Ok(Envelope {
            id: wire.id,
            timestamp,
            user_id: wire.user_id,
            data: EventPayload::from_json(&wire.event_type, wire.data)?,
        })
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireEnvelope::<serde_json::Value>::deserialize(deserializer)?;
        Envelope::try_from(wire).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MasterContractDownload, OrderEvent, OrderNotification};
    use chrono::TimeZone;

    fn fixed_envelope() -> Envelope {
        Envelope {
            id: Uuid::parse_str("01948f5e-8c3a-7b2d-9c4e-123456789abc").unwrap(),
            timestamp: Utc.with_ymd_and_hms(2026, 1, 29, 10, 30, 45).unwrap()
                + chrono::Duration::microseconds(123_456),
            user_id: "user123".into(),
            data: OrderEvent::sbin_market("BUY", "1").into(),
        }
    }

    #[test]
    fn envelope_golden() {
        let json = String::from_utf8(fixed_envelope().to_json_bytes()).unwrap();
        assert_eq!(
            json,
            r#"{"id":"01948f5e-8c3a-7b2d-9c4e-123456789abc","event_type":"order_event","timestamp":"2026-01-29T10:30:45.123456Z","user_id":"user123","source":"openalgo","version":"1.0","data":{"symbol":"SBIN","action":"BUY","orderid":"1","exchange":"NSE","price_type":"MARKET","product_type":"MIS","mode":"live"}}"#
        );
    }

    #[test]
    fn envelope_round_trips() {
        let original = fixed_envelope();
        let back = Envelope::from_json_slice(&original.to_json_bytes()).unwrap();
        assert_eq!(back, original);
        let fresh = Envelope::new(Event::for_user("u", OrderNotification::info("X", "m")));
        let back = Envelope::from_json_slice(&fresh.to_json_bytes()).unwrap();
        // Microsecond precision on the wire: compare at that precision.
        assert_eq!(back.id, fresh.id);
        assert_eq!(back.data, fresh.data);
        assert_eq!(
            back.timestamp.timestamp_micros(),
            fresh.timestamp.timestamp_micros()
        );
    }

    #[test]
    fn new_envelopes_have_time_ordered_unique_ids() {
        let first = Envelope::new(Event::for_user("u", OrderNotification::info("X", "m")));
        let second = Envelope::new(Event::for_user("u", OrderNotification::info("X", "m")));
        assert_ne!(first.id, second.id);
        assert_eq!(first.id.get_version_num(), 7);
        assert!(first.id < second.id);
    }

    #[test]
    fn system_events_go_to_everyone_with_admin_key() {
        let envelope = Envelope::new(Event::system(MasterContractDownload {
            broker: "simulator".into(),
            status: "success".into(),
            message: "ok".into(),
            symbols_count: Some(1),
            download_time_seconds: None,
        }));
        assert_eq!(envelope.user_id, SYSTEM_USER_ID);
        assert_eq!(envelope.audience(), Audience::Everyone);
        assert_eq!(fixed_envelope().audience(), Audience::User("user123"));
    }

    #[test]
    fn cloudevents_headers_map_the_envelope() {
        let headers = fixed_envelope().cloudevents_headers();
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get("ce_id"), "01948f5e-8c3a-7b2d-9c4e-123456789abc");
        assert_eq!(get("ce_type"), "order_event");
        assert_eq!(get("ce_source"), "openalgo");
        assert_eq!(get("ce_time"), "2026-01-29T10:30:45.123456Z");
        assert_eq!(get("ce_specversion"), "1.0");
        assert_eq!(get("content-type"), "application/json");
    }

    #[test]
    fn malformed_envelopes_are_rejected_with_reasons() {
        assert!(matches!(
            Envelope::from_json_slice(b"{not json"),
            Err(EnvelopeError::Malformed(_))
        ));
        let mut value = serde_json::to_value(fixed_envelope()).unwrap();
        value["event_type"] = "no_such_event".into();
        let error = Envelope::from_json_slice(value.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("no_such_event"), "{error}");
        let mut value = serde_json::to_value(fixed_envelope()).unwrap();
        value["version"] = "2.0".into();
        let error = Envelope::from_json_slice(value.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("version"), "{error}");
        let mut value = serde_json::to_value(fixed_envelope()).unwrap();
        value["timestamp"] = "yesterday".into();
        let error = Envelope::from_json_slice(value.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("yesterday"), "{error}");
    }
}
