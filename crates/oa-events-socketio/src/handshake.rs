//! The Socket.IO handshake `auth` payload and the reasons a connection is refused.

use serde_json::Value;

/// What a client sends as its handshake `auth` payload, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The OpenAlgo API key.
    pub apikey: String,
    /// The `seq` of the last event the client received, when it asks for a replay.
    pub offset: Option<u64>,
}

/// Why a client's connection to the namespace was refused. The `Display` text is what the
/// client receives as its `connect_error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefused {
    /// No `apikey` in the handshake `auth` payload (or it is empty or not a string).
    #[error(
        "missing apikey: connect with auth {{\"apikey\": \"<your OpenAlgo API key>\"}} (optionally with \"offset\": <last seq received>)"
    )]
    MissingApiKey,
    /// The key is not known (or revoked). Same wording as the REST API's 403.
    #[error("Invalid openalgo apikey")]
    InvalidApiKey,
    /// `offset` is present but not a non-negative integer.
    #[error(
        "invalid offset {0}: expected the seq of the last event received, a non-negative integer"
    )]
    InvalidOffset(String),
    /// The key could not be checked right now (store unavailable).
    #[error("API key verification is unavailable, retry later")]
    VerifierUnavailable,
    /// Too many handshakes from the client's address (`OA_LOGIN_RATE_LIMIT`).
    #[error("Too many login attempts from your address; retry later")]
    RateLimited,
    /// The events after the client's offset could not be read back from the event log
    /// (an edge whose broker does not answer).
    #[error("the events after your offset cannot be read back right now, retry later")]
    ReplayUnavailable,
}

impl ConnectRefused {
    /// Short label used in metrics (`oa_socketio_connect_refused_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectRefused::MissingApiKey => "missing_apikey",
            ConnectRefused::InvalidApiKey => "invalid_apikey",
            ConnectRefused::InvalidOffset(_) => "invalid_offset",
            ConnectRefused::VerifierUnavailable => "verifier_unavailable",
            ConnectRefused::RateLimited => "rate_limited",
            ConnectRefused::ReplayUnavailable => "replay_unavailable",
        }
    }
}

impl Handshake {
    /// Reads the handshake from the client's `auth` payload (a JSON object; a client that sends
    /// none gives an empty object). Unknown keys are ignored.
    pub fn parse(auth: &Value) -> Result<Handshake, ConnectRefused> {
        let apikey = match auth.get("apikey") {
            Some(Value::String(key)) if !key.trim().is_empty() => key.trim().to_string(),
            _ => return Err(ConnectRefused::MissingApiKey),
        };
        let offset = match auth.get("offset") {
            None | Some(Value::Null) => None,
            Some(Value::Number(number)) => Some(
                number
                    .as_u64()
                    .ok_or_else(|| ConnectRefused::InvalidOffset(number.to_string()))?,
            ),
            // Some clients keep sequence numbers as strings: accept decimal digits.
            Some(Value::String(text)) => Some(
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| ConnectRefused::InvalidOffset(format!("{text:?}")))?,
            ),
            Some(other) => return Err(ConnectRefused::InvalidOffset(other.to_string())),
        };
        Ok(Handshake { apikey, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_key_and_offset() {
        assert_eq!(
            Handshake::parse(&json!({"apikey": "k", "offset": 42})),
            Ok(Handshake {
                apikey: "k".into(),
                offset: Some(42)
            })
        );
        assert_eq!(
            Handshake::parse(&json!({"apikey": "k", "offset": "42", "other": true})),
            Ok(Handshake {
                apikey: "k".into(),
                offset: Some(42)
            })
        );
        assert_eq!(
            Handshake::parse(&json!({"apikey": "k", "offset": null})),
            Ok(Handshake {
                apikey: "k".into(),
                offset: None
            })
        );
    }

    #[test]
    fn refuses_missing_or_malformed_input_with_reasons() {
        for auth in [
            json!({}),
            json!({"apikey": ""}),
            json!({"apikey": 5}),
            json!("k"),
            json!(null),
        ] {
            assert_eq!(
                Handshake::parse(&auth),
                Err(ConnectRefused::MissingApiKey),
                "{auth}"
            );
        }
        for offset in [json!(-1), json!(1.5), json!("x"), json!([1])] {
            let refused = Handshake::parse(&json!({"apikey": "k", "offset": offset})).unwrap_err();
            assert!(
                matches!(refused, ConnectRefused::InvalidOffset(_)),
                "{offset}"
            );
            assert!(refused.to_string().contains("offset"));
        }
        assert!(ConnectRefused::MissingApiKey.to_string().contains("apikey"));
    }
}
