//! API-key verification as seen by the transports that accept clients.
//!
//! The key store lives in the REST layer (`oa-api`). The WebSocket proxy and the Socket.IO
//! layer only need to ask "whose key is this?", so they depend on this trait and `oa-server`
//! wires the store's implementation in.

use std::future::Future;
use std::pin::Pin;

/// The user an API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// The user id events are addressed to.
    pub user_id: String,
    /// The broker name reported to clients (`"sandbox"`, `"simulator"`, ...).
    pub broker: String,
}

/// Why a key could not be checked (as opposed to: the key is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("API key verification is unavailable: {reason}")]
pub struct VerifierError {
    /// What failed, for logs. Never contains the key.
    pub reason: String,
}

/// A boxed future returned by [`ApiKeyVerifier::verify`].
pub type VerifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<AuthenticatedUser>, VerifierError>> + Send + 'a>>;

/// Checks API keys. Implementations must be cheap on repeated keys (cache) and must never log
/// the key itself.
pub trait ApiKeyVerifier: Send + Sync + 'static {
    /// `Ok(Some(user))` for a valid key, `Ok(None)` for an unknown or revoked key,
    /// `Err` when the check itself failed (for example the store is unreachable).
    fn verify<'a>(&'a self, api_key: &'a str) -> VerifyFuture<'a>;
}

/// Counts and logs sessions a transport ended because their user's API key was rotated or
/// revoked (`oa_sessions_revoked_total{listener}`), the same way on every listener.
pub fn record_revoked_sessions(listener: &'static str, user_id: &str, ended: usize) {
    metrics::counter!("oa_sessions_revoked_total", "listener" => listener).increment(ended as u64);
    tracing::info!(
        listener,
        user_id,
        ended,
        "sessions ended: API key rotated or revoked"
    );
}
