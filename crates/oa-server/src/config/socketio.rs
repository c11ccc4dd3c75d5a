//! Settings of the Socket.IO layer (`oa-events-socketio`).

use std::time::Duration;

use clap::Args;
use oa_events_socketio::SocketIoConfig;

use super::Checker;

/// Socket.IO settings as given.
#[derive(Debug, Clone, Args)]
pub struct RawSocketIoConfig {
    /// Events kept per user for replay after a reconnect.
    #[arg(long, env = "OA_SOCKETIO_REPLAY_BUFFER", default_value = "1024")]
    pub replay_buffer: String,
    /// Oldest event kept for replay, in seconds.
    #[arg(
        long,
        env = "OA_SOCKETIO_REPLAY_MAX_AGE_SECONDS",
        default_value = "300"
    )]
    pub replay_max_age_seconds: String,
    /// Packets buffered per connected socket before a slow client is skipped.
    #[arg(long, env = "OA_SOCKETIO_SOCKET_BUFFER", default_value = "256")]
    pub socket_buffer: String,
    /// Event bytes kept per user for replay (the newest event is always kept).
    #[arg(
        long,
        env = "OA_SOCKETIO_REPLAY_BUFFER_BYTES",
        default_value = "1048576"
    )]
    pub replay_buffer_bytes: String,
    /// Socket.IO sessions in total (logged in or not); more are refused with 503.
    #[arg(long, env = "OA_SOCKETIO_MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: String,
    /// Socket.IO sessions from one client IP; more are refused with 503.
    #[arg(
        long,
        env = "OA_SOCKETIO_MAX_CONNECTIONS_PER_IP",
        default_value = "100"
    )]
    pub max_connections_per_ip: String,
}

impl RawSocketIoConfig {
    /// Checks every Socket.IO setting.
    /// `login_rate` is `OA_LOGIN_RATE_LIMIT`, shared with the WebSocket proxy (checked there).
    pub(super) fn validate(
        &self,
        check: &mut Checker,
        login_rate: Option<oa_net::RateSpec>,
    ) -> Option<SocketIoConfig> {
        let replay_buffer_size = check.positive("OA_SOCKETIO_REPLAY_BUFFER", &self.replay_buffer);
        let replay_max_age = check
            .positive(
                "OA_SOCKETIO_REPLAY_MAX_AGE_SECONDS",
                &self.replay_max_age_seconds,
            )
            .map(|seconds| Duration::from_secs(seconds as u64));
        let socket_buffer_size = check.positive("OA_SOCKETIO_SOCKET_BUFFER", &self.socket_buffer);
        let replay_buffer_bytes =
            check.positive("OA_SOCKETIO_REPLAY_BUFFER_BYTES", &self.replay_buffer_bytes);
        let max_connections = check.positive("OA_SOCKETIO_MAX_CONNECTIONS", &self.max_connections);
        let max_connections_per_ip = check.positive(
            "OA_SOCKETIO_MAX_CONNECTIONS_PER_IP",
            &self.max_connections_per_ip,
        );
        let config = SocketIoConfig {
            replay_buffer_size: replay_buffer_size?,
            replay_buffer_bytes: replay_buffer_bytes?,
            replay_max_age: replay_max_age?,
            socket_buffer_size: socket_buffer_size?,
            connections: oa_net::ConnectionLimits {
                max_total: max_connections?,
                max_per_ip: max_connections_per_ip?,
            },
            login_rate: login_rate?,
            ..SocketIoConfig::default()
        };
        if let Err(error) = config.validate() {
            let variable = match error.field {
                "replay_buffer_bytes" => "OA_SOCKETIO_REPLAY_BUFFER_BYTES",
                "replay_buffer_size" => "OA_SOCKETIO_REPLAY_BUFFER",
                "socket_buffer_size" => "OA_SOCKETIO_SOCKET_BUFFER",
                _ => "Socket.IO",
            };
            check.problems.push(format!("{variable}: {error}"));
            return None;
        }
        Some(config)
    }
}
