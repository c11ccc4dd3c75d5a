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
}

impl RawSocketIoConfig {
    /// Checks every Socket.IO setting.
    pub(super) fn validate(&self, check: &mut Checker) -> Option<SocketIoConfig> {
        let replay_buffer_size = check.positive("OA_SOCKETIO_REPLAY_BUFFER", &self.replay_buffer);
        let replay_max_age = check
            .positive(
                "OA_SOCKETIO_REPLAY_MAX_AGE_SECONDS",
                &self.replay_max_age_seconds,
            )
            .map(|seconds| Duration::from_secs(seconds as u64));
        let socket_buffer_size = check.positive("OA_SOCKETIO_SOCKET_BUFFER", &self.socket_buffer);
        let config = SocketIoConfig {
            replay_buffer_size: replay_buffer_size?,
            replay_max_age: replay_max_age?,
            socket_buffer_size: socket_buffer_size?,
            ..SocketIoConfig::default()
        };
        if let Err(error) = config.validate() {
            check.problems.push(error.to_string());
            return None;
        }
        Some(config)
    }
}
