//! Errors: [`ApiError`] for building the API, [`HttpError`] for responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

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

    /// Adds a key to the body.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({"status": "error", "message": self.message});
        if let Value::Object(map) = &mut body {
            for (key, value) in &self.extra {
                map.insert(key.clone(), value.clone());
            }
        }
        body
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
