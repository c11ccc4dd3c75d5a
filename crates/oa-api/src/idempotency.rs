//! Safe retries: the `Idempotency-Key` request header (IETF draft
//! `draft-ietf-httpapi-idempotency-key-header`) on every order-changing endpoint.
//!
//! - The first request with a key runs; its response (status and body) is stored in the same
//!   transaction as the change it made, so a crash keeps both or neither.
//! - A later request from the same user with the same key within 24 hours
//!   ([`RETENTION`](crate::engine::worker::IDEMPOTENCY_RETENTION_MS)) and the same endpoint and
//!   body gets that response again (with `Idempotent-Replayed: true`) and changes nothing.
//! - The same key with another endpoint or body: 422. While the first request with a key is
//!   still running, a second one gets 409 (the draft's convention); the client retries later.
//! - Requests without the header behave as before (the OpenAlgo SDK sends none).
//!
//! Responses that changed nothing and were decided before the order service ran (400 for a
//! bad field, 403 for a bad key, 429, 503 while writes are stopped, 500 when the store failed)
//! are not stored: a retry is simply evaluated again.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::HttpError;
use crate::journal::IdempotencyEntry;
use crate::store::IdempotencyRow;

/// The request header.
pub(crate) const HEADER: &str = "idempotency-key";
/// The response header set on a replayed response.
pub(crate) const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest accepted key, in characters.
pub(crate) const MAX_KEY_CHARS: usize = 255;

/// A validated `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of `headers`, if the header is present. The draft sends it as a structured
    /// field string (`"abc"`); a bare token (`abc`) is accepted too. 1 to 255 printable
    /// ASCII characters; anything else is a 400 naming the header.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, HttpError> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(HttpError::bad_request(
                "Idempotency-Key: expected one header, got several",
            ));
        }
        let text = value.to_str().map_err(|_| {
            HttpError::bad_request("Idempotency-Key: expected printable ASCII characters")
        })?;
        let text = text.trim();
        let key = match text
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        {
            Some(quoted) => unescape(quoted)?,
            None => text.to_string(),
        };
        if key.is_empty() {
            return Err(HttpError::bad_request("Idempotency-Key: must not be empty"));
        }
        if key.chars().count() > MAX_KEY_CHARS {
            return Err(HttpError::bad_request(format!(
                "Idempotency-Key: expected at most {MAX_KEY_CHARS} characters, got {}",
                key.chars().count()
            )));
        }
        if !key.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(HttpError::bad_request(
                "Idempotency-Key: expected printable ASCII characters",
            ));
        }
        Ok(Some(IdempotencyKey(key)))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Undoes the `\"` and `\\` escapes of a structured-field string.
fn unescape(quoted: &str) -> Result<String, HttpError> {
    let mut key = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => key.push(escaped),
                _ => {
                    return Err(HttpError::bad_request(
                        "Idempotency-Key: a quoted key may only escape \" and \\",
                    ));
                }
            },
            '"' => {
                return Err(HttpError::bad_request(
                    "Idempotency-Key: an unescaped \" inside a quoted key",
                ));
            }
            c => key.push(c),
        }
    }
    Ok(key)
}

/// The fingerprint of a request: SHA-256 of the endpoint and the body without `apikey`, with
/// object keys sorted (so key order and whitespace do not matter; values do).
pub(crate) fn fingerprint(endpoint: &str, body: &Map<String, Value>) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(key, value)| (key.clone(), canonical(value)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let body: Map<String, Value> = body
        .iter()
        .filter(|(key, _)| key.as_str() != "apikey")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let mut hasher = Sha256::new();
    hasher.update(endpoint.as_bytes());
    hasher.update([0]);
    hasher.update(canonical(&Value::Object(body)).to_string().as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A keyed request the order service runs: who, which key, and what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The user.
    pub user_id: String,
    /// The key.
    pub key: IdempotencyKey,
    /// [`fingerprint`] of the request.
    pub fingerprint: String,
    /// Keys a stored success answer gains before its `mode` (an `optionsorder` runs a
    /// `placeorder`; its stored answer is the options answer). Usually empty.
    pub answer_extra: serde_json::Map<String, Value>,
}

impl Claim {
    /// The record of the first response, stored with the action's log row.
    pub fn entry(&self, status: StatusCode, body: &Value) -> IdempotencyEntry {
        let response = match body {
            Value::Object(answer) if status == StatusCode::OK && !self.answer_extra.is_empty() => {
                let mut merged = serde_json::Map::new();
                for (name, value) in answer.iter().filter(|(name, _)| *name != "mode") {
                    merged.insert(name.clone(), value.clone());
                }
                for (name, value) in &self.answer_extra {
                    merged.entry(name.clone()).or_insert_with(|| value.clone());
                }
                if let Some(mode) = answer.get("mode") {
                    merged.insert("mode".to_string(), mode.clone());
                }
                Value::Object(merged).to_string()
            }
            _ => body.to_string(),
        };
        IdempotencyEntry {
            user_id: self.user_id.clone(),
            key: self.key.as_str().to_string(),
            row: IdempotencyRow {
                fingerprint: self.fingerprint.clone(),
                status: status.as_u16(),
                response,
            },
        }
    }
}

/// What a stored record says about a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stored {
    /// No live record: run the request.
    None,
    /// The same request ran before: its status and body.
    Replay(StatusCode, Value),
    /// The key was used for another endpoint or body.
    Mismatch,
}

impl Stored {
    /// Reads a stored record against `claim`.
    pub(crate) fn of(row: Option<IdempotencyRow>, claim: &Claim) -> Stored {
        let Some(row) = row else {
            return Stored::None;
        };
        if row.fingerprint != claim.fingerprint {
            return Stored::Mismatch;
        }
        let status = StatusCode::from_u16(row.status).unwrap_or(StatusCode::OK);
        let body = serde_json::from_str(&row.response).unwrap_or(Value::Null);
        Stored::Replay(status, body)
    }
}

/// The 422 of a key reused with another request.
pub(crate) fn mismatch_error() -> HttpError {
    HttpError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Idempotency-Key: this key was already used with a different request (endpoint or body); use a new key for a new request",
    )
}

/// The 409 of a key whose first request is still running.
pub(crate) fn in_progress_error() -> HttpError {
    HttpError::new(
        StatusCode::CONFLICT,
        "Idempotency-Key: a request with this key is still being processed; retry after it completes",
    )
}

/// The keys of requests running now, per user.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlight(Arc<Mutex<HashSet<(String, String)>>>);

impl InFlight {
    /// Marks `(user, key)` running, or `None` when it already is.
    pub(crate) fn claim(&self, user_id: &str, key: &IdempotencyKey) -> Option<InFlightGuard> {
        let entry = (user_id.to_string(), key.as_str().to_string());
        if !self.0.lock().insert(entry.clone()) {
            return None;
        }
        Some(InFlightGuard {
            set: Arc::clone(&self.0),
            entry,
        })
    }
}

/// Running until dropped.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    set: Arc<Mutex<HashSet<(String, String)>>>,
    entry: (String, String),
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set.lock().remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn key(value: &str) -> Result<Option<IdempotencyKey>, HttpError> {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_str(value).unwrap());
        IdempotencyKey::from_headers(&headers)
    }

    #[test]
    fn quoted_and_bare_keys_are_accepted_and_bad_ones_named() {
        assert_eq!(key("\"abc-1\"").unwrap().unwrap().as_str(), "abc-1");
        assert_eq!(key("abc-1").unwrap().unwrap().as_str(), "abc-1");
        assert_eq!(key(r#""a\"b""#).unwrap().unwrap().as_str(), "a\"b");
        assert!(
            IdempotencyKey::from_headers(&HeaderMap::new())
                .unwrap()
                .is_none()
        );
        let long = "k".repeat(MAX_KEY_CHARS + 1);
        let error = key(&long).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(
            error
                .message
                .starts_with("Idempotency-Key: expected at most 255")
        );
        assert!(
            key("\"\"")
                .unwrap_err()
                .message
                .contains("must not be empty")
        );
        assert!(key(&"k".repeat(MAX_KEY_CHARS)).is_ok());
    }

    #[test]
    fn fingerprints_ignore_key_order_and_apikey_but_not_values_or_endpoint() {
        let a = json!({"apikey": "x", "symbol": "SBIN", "quantity": "1"});
        let b = json!({"quantity": "1", "symbol": "SBIN", "apikey": "y"});
        let c = json!({"quantity": "2", "symbol": "SBIN"});
        let map = |v: &Value| v.as_object().unwrap().clone();
        assert_eq!(
            fingerprint("placeorder", &map(&a)),
            fingerprint("placeorder", &map(&b))
        );
        assert_ne!(
            fingerprint("placeorder", &map(&a)),
            fingerprint("placeorder", &map(&c))
        );
        assert_ne!(
            fingerprint("placeorder", &map(&a)),
            fingerprint("splitorder", &map(&a))
        );
    }

    #[test]
    fn a_running_key_cannot_be_claimed_twice() {
        let in_flight = InFlight::default();
        let key = IdempotencyKey("k".to_string());
        let guard = in_flight.claim("u", &key).unwrap();
        assert!(in_flight.claim("u", &key).is_none());
        assert!(in_flight.claim("v", &key).is_some());
        drop(guard);
        assert!(in_flight.claim("u", &key).is_some());
    }
}
