//! Settings of the Socket.IO layer (`oa-events-socketio`, its `ENV_VARS`).

use oa_events_socketio::SocketIoConfig;

use super::Checker;

/// Checks every Socket.IO setting. `login_rate` is `OA_LOGIN_RATE_LIMIT`, shared with the
/// WebSocket proxy (checked there).
pub(super) fn validate(
    check: &mut Checker,
    login_rate: Option<oa_net::RateSpec>,
) -> Option<SocketIoConfig> {
    let replay_buffer_size = check.positive("OA_SOCKETIO_REPLAY_BUFFER");
    let replay_max_age = check.seconds("OA_SOCKETIO_REPLAY_MAX_AGE_SECONDS");
    let socket_buffer_size = check.positive("OA_SOCKETIO_SOCKET_BUFFER");
    let replay_buffer_bytes = check.positive("OA_SOCKETIO_REPLAY_BUFFER_BYTES");
    let connections = check.connection_limits(
        "OA_SOCKETIO_MAX_CONNECTIONS",
        "OA_SOCKETIO_MAX_CONNECTIONS_PER_IP",
    );
    let config = SocketIoConfig {
        replay_buffer_size: replay_buffer_size?,
        replay_buffer_bytes: replay_buffer_bytes?,
        replay_max_age: replay_max_age?,
        socket_buffer_size: socket_buffer_size?,
        connections: connections?,
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
