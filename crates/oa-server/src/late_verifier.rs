//! [`LateVerifier`]: breaks the start-up cycle between the event sinks and the key store.
//!
//! The Socket.IO sink and the WebSocket proxy need an API-key verifier when they are built,
//! but the verifier (the REST layer's key store) is built after them, because the REST layer
//! needs the event publisher those sinks belong to. The server hands them this wrapper and
//! fills it in once the store is open, before any client can connect.

use std::sync::{Arc, OnceLock};

use oa_events_core::auth::VerifyFuture;
use oa_events_core::{ApiKeyVerifier, VerifierError};

/// A verifier that is set once, after construction.
#[derive(Default)]
pub struct LateVerifier {
    inner: OnceLock<Arc<dyn ApiKeyVerifier>>,
}

impl std::fmt::Debug for LateVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateVerifier")
            .field("ready", &self.inner.get().is_some())
            .finish()
    }
}

impl LateVerifier {
    /// Installs the real verifier; later calls are ignored.
    pub fn set(&self, verifier: Arc<dyn ApiKeyVerifier>) {
        let _ = self.inner.set(verifier);
    }
}

impl ApiKeyVerifier for LateVerifier {
    fn verify<'a>(&'a self, api_key: &'a str) -> VerifyFuture<'a> {
        match self.inner.get() {
            Some(verifier) => verifier.verify(api_key),
            None => Box::pin(async {
                Err(VerifierError {
                    reason: "the server is still starting".to_string(),
                })
            }),
        }
    }
}
