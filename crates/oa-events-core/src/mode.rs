//! Which transports carry order events: `ORDER_EVENT_MODE`.

use std::str::FromStr;

/// The environment variable that selects the event mode.
pub const ORDER_EVENT_MODE_VAR: &str = "ORDER_EVENT_MODE";

crate::spelled_enum! {
    /// Where order events and notifications are published.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
    pub enum EventMode {
        /// Socket.IO clients only (OpenAlgo's default).
        #[default]
        SocketIo = "SOCKETIO",
        /// Kafka only (plus the inbound ESB consumer).
        Kafka = "KAFKA",
        /// Both Socket.IO and Kafka: useful while migrating consumers.
        Both = "BOTH",
    }
}

/// An `ORDER_EVENT_MODE` value that is not one of the allowed ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{ORDER_EVENT_MODE_VAR}={value:?} is not valid; allowed values: {}",
    EventMode::ALLOWED
)]
pub struct InvalidEventMode {
    /// The rejected value, as given.
    pub value: String,
}

impl EventMode {
    /// Whether events go to Socket.IO clients in this mode.
    pub fn uses_socketio(self) -> bool {
        matches!(self, EventMode::SocketIo | EventMode::Both)
    }

    /// Whether events go to Kafka in this mode.
    pub fn uses_kafka(self) -> bool {
        matches!(self, EventMode::Kafka | EventMode::Both)
    }
}

impl FromStr for EventMode {
    type Err = InvalidEventMode;

    /// Parses a mode case-insensitively, ignoring surrounding white space.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        EventMode::from_spelling(value).ok_or_else(|| InvalidEventMode {
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_mode_case_insensitively() {
        assert_eq!("socketio".parse(), Ok(EventMode::SocketIo));
        assert_eq!("Kafka".parse(), Ok(EventMode::Kafka));
        assert_eq!(" BOTH ".parse(), Ok(EventMode::Both));
        for mode in EventMode::ALL {
            assert_eq!(mode.as_str().parse(), Ok(mode));
        }
    }

    #[test]
    fn default_is_socketio() {
        assert_eq!(EventMode::default(), EventMode::SocketIo);
    }

    #[test]
    fn invalid_mode_names_the_variable_value_and_allowed_values() {
        let error = "bogus".parse::<EventMode>().unwrap_err();
        let message = error.to_string();
        assert!(message.contains("ORDER_EVENT_MODE"), "{message}");
        assert!(message.contains("bogus"), "{message}");
        assert!(message.contains("SOCKETIO, KAFKA, BOTH"), "{message}");
    }

    #[test]
    fn sinks_per_mode() {
        assert!(EventMode::SocketIo.uses_socketio() && !EventMode::SocketIo.uses_kafka());
        assert!(!EventMode::Kafka.uses_socketio() && EventMode::Kafka.uses_kafka());
        assert!(EventMode::Both.uses_socketio() && EventMode::Both.uses_kafka());
    }
}
