//! Errors: [`ApiError`] for building the API, [`HttpError`] for responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::config::ConfigError;
use crate::store::StoreError;

/// Why the API could not be built or a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key management refused the operation.
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

/// An error response: `{"status":"error","message":...}` plus optional extra keys.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message for the client.
    pub message: String,
    /// Extra keys of the body (for example the `orderid` of a rejected order).
    pub extra: Map<String, Value>,
}

impl HttpError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403 with OpenAlgo's message.
    pub fn invalid_apikey() -> Self {
        HttpError::new(StatusCode::FORBIDDEN, "Invalid openalgo apikey")
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        HttpError::new(StatusCode::NOT_FOUND, message)
    }

    /// 429 with OpenAlgo's body ([`RATE_LIMIT_BODY`](crate::ratelimit::RATE_LIMIT_BODY)).
    pub fn rate_limited() -> Self {
        HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded. Please slow down your requests.",
        )
        .with("retry_after", 60)
    }

    /// 500, with a generic message (details go to the log only).
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// Adds `"mode":"analyze"` in analyzer mode.
    pub fn with_mode(self, mode: crate::types::AccountMode) -> Self {
        if mode == crate::types::AccountMode::Analyze {
            self.with("mode", "analyze")
        } else {
            self
        }
    }

    /// Adds a key to the body (after `status`, `message` and the keys added before; not
    /// `status` or `message` themselves).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        crate::responses::to_value(self)
    }
}

/// The body: `{"status":"error","message":...}`, then the extra keys in the order added.
impl Serialize for HttpError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2 + self.extra.len()))?;
        map.serialize_entry("status", "error")?;
        map.serialize_entry("message", &self.message)?;
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(&self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_body_is_openalgos_byte_for_byte() {
        let body = serde_json::to_string(&HttpError::rate_limited()).ok();
        assert_eq!(body.as_deref(), Some(crate::ratelimit::RATE_LIMIT_BODY));
    }

    #[test]
    fn extra_keys_follow_status_and_message_in_the_order_added() {
        let error = HttpError::bad_request("no")
            .with("orderid", "7")
            .with_mode(crate::types::AccountMode::Analyze);
        assert_eq!(
            serde_json::to_string(&error).ok().as_deref(),
            Some(r#"{"status":"error","message":"no","orderid":"7","mode":"analyze"}"#)
        );
    }
}
