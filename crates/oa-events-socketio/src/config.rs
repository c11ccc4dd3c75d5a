//! [`SocketIoConfig`]: the layer's settings, a plain struct the server fills from its own
//! configuration; [`ENV_VARS`] names its environment variables (the parsing is the server's).

use std::time::Duration;

use oa_events_core::EnvVar;
use oa_net::{ConnectionLimits, RateSpec};

/// Every environment variable of the Socket.IO layer, with its default and help. `oa-server`
/// builds its flags from this table and parses them into a [`SocketIoConfig`] (whose
/// `login_rate` is `OA_LOGIN_RATE_LIMIT`, shared with the WebSocket proxy); its tests check
/// that these defaults give `SocketIoConfig::default()`.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar::new(
        "OA_SOCKETIO_REPLAY_BUFFER",
        "1024",
        "events kept per user for replay after a reconnect",
    ),
    EnvVar::new(
        "OA_SOCKETIO_REPLAY_MAX_AGE_SECONDS",
        "300",
        "oldest event kept for replay, in seconds",
    ),
    EnvVar::new(
        "OA_SOCKETIO_SOCKET_BUFFER",
        "256",
        "packets buffered per connected socket before a slow client is skipped",
    ),
    EnvVar::new(
        "OA_SOCKETIO_REPLAY_BUFFER_BYTES",
        "1048576",
        "event bytes kept per user for replay (the newest event is always kept)",
    ),
    EnvVar::new(
        "OA_SOCKETIO_MAX_CONNECTIONS",
        "10000",
        "Socket.IO sessions in total (logged in or not); more are refused with 503",
    ),
    EnvVar::new(
        "OA_SOCKETIO_MAX_CONNECTIONS_PER_IP",
        "100",
        "Socket.IO sessions from one client IP; more are refused with 503",
    ),
];

/// Settings of the Socket.IO layer and sink. [`Default`] gives production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketIoConfig {
    /// Events kept per user for replay after a reconnect (the newest ones). Default 1024.
    pub replay_buffer_size: usize,
    /// Payload bytes kept per user for replay (the newest event is always kept). Default 1 MiB.
    pub replay_buffer_bytes: usize,
    /// Oldest event kept for replay. Default 5 minutes.
    pub replay_max_age: Duration,
    /// Packets buffered per connected socket before emits to it are deferred (socketioxide
    /// `max_buffer_size`). A socket whose buffer is full catches up from the replay buffer
    /// once it drains, or receives `replay_gap` if the events it missed were evicted.
    /// Default 256.
    pub socket_buffer_size: usize,
    /// Largest incoming payload accepted from a client, bytes: the long-polling body limit
    /// (socketioxide `max_payload`) and the websocket frame and message limit. Clients only
    /// send the handshake here. Default 64 KiB.
    pub max_payload: u64,
    /// Engine.IO sessions (polling or websocket, before and after login) in total and per
    /// client IP; enforced by [`mount`](crate::mount). Default 10000 and 100.
    pub connections: ConnectionLimits,
    /// Handshakes (API-key checks) per client IP. Default 10 per second.
    pub login_rate: RateSpec,
    /// Engine.IO heartbeat: the server pings every `ping_interval`. Default 25 s.
    pub ping_interval: Duration,
    /// Engine.IO heartbeat: a client that does not answer within `ping_timeout` is dropped.
    /// Default 20 s.
    pub ping_timeout: Duration,
    /// A client that opened a transport but did not connect to the namespace within this time
    /// is dropped. Default 10 s.
    pub connect_timeout: Duration,
    /// Most packets handed to a long-polling socket per `catch_up_interval` (so 400 events/s
    /// with the defaults; websocket sockets are not paced). python-engineio clients abort on a
    /// polling response of more than 16 packets, so keep it at most 14. Default 8.
    pub polling_burst: usize,
    /// How often sockets that fell behind (full buffer) are retried from the replay buffer.
    /// Default 20 ms.
    pub catch_up_interval: Duration,
    /// How often expired replay entries and idle users are swept. Default 1 s.
    pub sweep_interval: Duration,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            replay_buffer_size: 1024,
            replay_buffer_bytes: 1024 * 1024,
            replay_max_age: Duration::from_secs(300),
            socket_buffer_size: 256,
            max_payload: 64 * 1024,
            connections: ConnectionLimits {
                max_total: 10_000,
                max_per_ip: 100,
            },
            login_rate: RateSpec {
                count: std::num::NonZeroU32::MIN.saturating_add(9),
                period: Duration::from_secs(1),
            },
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            polling_burst: 8,
            catch_up_interval: Duration::from_millis(20),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// A [`SocketIoConfig`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Socket.IO setting {field} = {value}: {expected}")]
pub struct ConfigError {
    /// The offending field of [`SocketIoConfig`].
    pub field: &'static str,
    /// Its value, as given.
    pub value: String,
    /// What is allowed.
    pub expected: &'static str,
}

impl SocketIoConfig {
    /// Checks every setting, naming the first one that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        /// `Err` naming `field`, its `value` and what is `expected`, unless `ok`.
        fn require(
            ok: bool,
            field: &'static str,
            value: impl std::fmt::Display,
            expected: &'static str,
        ) -> Result<(), ConfigError> {
            if ok {
                return Ok(());
            }
            Err(ConfigError {
                field,
                value: value.to_string(),
                expected,
            })
        }
        require(
            self.replay_buffer_size > 0,
            "replay_buffer_size",
            self.replay_buffer_size,
            "at least 1 event",
        )?;
        require(
            self.replay_buffer_bytes >= 1024,
            "replay_buffer_bytes",
            self.replay_buffer_bytes,
            "at least 1024 bytes",
        )?;
        require(
            self.connections.max_total > 0 && self.connections.max_per_ip > 0,
            "connections",
            format_args!("{:?}", self.connections),
            "at least 1 connection in total and per IP",
        )?;
        require(
            self.socket_buffer_size >= 2,
            "socket_buffer_size",
            self.socket_buffer_size,
            "at least 2 packets",
        )?;
        require(
            (1024..=16 * 1024 * 1024).contains(&self.max_payload),
            "max_payload",
            self.max_payload,
            "1024 bytes to 16 MiB",
        )?;
        require(
            (1..=14).contains(&self.polling_burst),
            "polling_burst",
            self.polling_burst,
            "1 to 14 packets",
        )?;
        for (field, value) in [
            ("replay_max_age", self.replay_max_age),
            ("ping_interval", self.ping_interval),
            ("ping_timeout", self.ping_timeout),
            ("connect_timeout", self.connect_timeout),
            ("catch_up_interval", self.catch_up_interval),
            ("sweep_interval", self.sweep_interval),
        ] {
            require(
                !value.is_zero(),
                field,
                format_args!("{value:?}"),
                "a duration greater than zero",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(SocketIoConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let config = SocketIoConfig {
            replay_buffer_size: 0,
            ..SocketIoConfig::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("replay_buffer_size"), "{message}");
        let config = SocketIoConfig {
            ping_timeout: Duration::ZERO,
            ..SocketIoConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "ping_timeout");
    }
}
