//! Users and API keys: create, rotate, revoke, list, verify.
//!
//! A key is 32 random bytes written as 64 hex characters and shown once. The store keeps
//! only:
//! - `key_hash`: an Argon2id PHC string of `key + pepper` (salted, slow);
//! - `key_id`: the first 16 hex characters of `sha256(pepper + key)`, a non-reversible
//!   identifier that finds the candidate row without trying every hash.
//!
//! Verified keys are cached by `sha256(key)` with a bounded size and TTL, so the order path
//! pays Argon2 once per key and TTL; rotating or revoking a user's key drops that user's
//! cache entries at once. Keys are never logged.
//!
//! Verification never runs SQLite or Argon2 on an async worker: both run on the blocking
//! pool, at most `VERIFY_CONCURRENCY` at a time (a flood of logins waits for a slot instead
//! of occupying every blocking thread and ~19 MiB of Argon2 memory each).
//!
//! Every rotation and revocation is also appended to the store's `key_events` log, which
//! [`crate::revocation`] polls so that a change made by another process reaches the running
//! server's sessions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use oa_events_core::auth::VerifyFuture;
use oa_events_core::catalog::PasswordChange;
use oa_events_core::{ApiKeyVerifier, AuthenticatedUser, Event, EventPublisher, VerifierError};
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::{
    self, Database, Queries, StoreError, StoreLocation, StoreSync, TxKind, UserKeyInfo,
};

/// Why a key-management call failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `create` for a user that already has an active key.
    #[error("user {0:?} already has an active API key; use rotate to replace it")]
    AlreadyHasKey(String),
    /// `rotate`/`revoke` for a user without an active key.
    #[error("user {0:?} has no active API key")]
    NoActiveKey(String),
    /// The user id is empty or too long.
    #[error("invalid user id {0:?}: expected 1 to 64 characters, no whitespace")]
    InvalidUser(String),
    /// Hashing failed.
    #[error("hashing the API key failed: {0}")]
    Hash(String),
    /// The user does not exist.
    #[error("no such user {0:?}; create it with `oa-server apikey create --user {0}`")]
    NoSuchUser(String),
}

#[derive(Debug)]
struct CacheEntry {
    user: AuthenticatedUser,
    expires: Instant,
}

/// A bounded, expiring map from `sha256(key)` to the verified user.
#[derive(Debug)]
struct KeyCache {
    entries: HashMap<[u8; 32], CacheEntry>,
    capacity: usize,
    ttl: Duration,
}

impl KeyCache {
    fn get(&mut self, digest: &[u8; 32]) -> Option<AuthenticatedUser> {
        let entry = self.entries.get(digest)?;
        if entry.expires > Instant::now() {
            return Some(entry.user.clone());
        }
        self.entries.remove(digest);
        None
    }

    fn insert(&mut self, digest: [u8; 32], user: AuthenticatedUser) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            let now = Instant::now();
            self.entries.retain(|_, entry| entry.expires > now);
        }
        if self.entries.len() >= self.capacity {
            // Still full of live entries: drop the one closest to expiry.
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.expires)
                .map(|(digest, _)| *digest)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            digest,
            CacheEntry {
                user,
                expires: Instant::now() + self.ttl,
            },
        );
    }

    fn forget_user(&mut self, user_id: &str) {
        self.entries
            .retain(|_, entry| entry.user.user_id != user_id);
    }
}

/// Most key verifications running at once (each on a blocking thread).
pub(crate) const VERIFY_CONCURRENCY: usize = 16;

#[derive(Debug)]
struct Inner {
    conn: Mutex<Box<dyn Database>>,
    pepper: String,
    broker: String,
    cache: Mutex<KeyCache>,
    publisher: EventPublisher,
    /// `key_events` written by this process (already announced): the watcher skips them.
    own_key_events: Mutex<HashSet<i64>>,
    verify_slots: tokio::sync::Semaphore,
}

/// The user and API-key store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn valid_user(user_id: &str) -> Result<(), KeyError> {
    if user_id.is_empty() || user_id.len() > 64 || user_id.chars().any(char::is_whitespace) {
        return Err(KeyError::InvalidUser(user_id.to_string()));
    }
    Ok(())
}

impl KeyStore {
    /// Opens the key store on the database at `location` (a SQLite path or a
    /// [`StoreLocation`]; migrating it if needed). `broker` is the name reported to
    /// authenticated clients. Blocking.
    pub fn open(
        location: impl Into<StoreLocation>,
        pepper: &str,
        broker: &str,
        cache_capacity: usize,
        cache_ttl: Duration,
        publisher: EventPublisher,
    ) -> Result<KeyStore, StoreError> {
        let conn = store::open(&location.into(), StoreSync::Full)?;
        Ok(Self::with_connection_to(
            conn,
            pepper,
            broker,
            cache_capacity,
            cache_ttl,
            publisher,
        ))
    }

    /// Opens the key store described by `config` for verifying keys only (an edge): the
    /// shared PostgreSQL store, not migrated, in a session that cannot write (the server
    /// refuses it). Key management calls on it fail. Blocking.
    pub fn open_read_only(
        config: &crate::config::ApiConfig,
        publisher: EventPublisher,
    ) -> Result<KeyStore, crate::error::ApiError> {
        let (_, location) = config.validate()?;
        let conn = store::open_read_only(&location)?;
        Ok(Self::with_connection_to(
            conn,
            &config.api_key_pepper,
            crate::types::Book::Simulator.as_str(),
            config.key_cache_capacity,
            config.key_cache_ttl,
            publisher,
        ))
    }

    fn with_connection_to(
        conn: Box<dyn Database>,
        pepper: &str,
        broker: &str,
        cache_capacity: usize,
        cache_ttl: Duration,
        publisher: EventPublisher,
    ) -> KeyStore {
        KeyStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                pepper: pepper.to_string(),
                broker: broker.to_string(),
                cache: Mutex::new(KeyCache {
                    entries: HashMap::new(),
                    capacity: cache_capacity,
                    ttl: cache_ttl,
                }),
                publisher,
                own_key_events: Mutex::default(),
                verify_slots: tokio::sync::Semaphore::new(VERIFY_CONCURRENCY),
            }),
        }
    }

    /// Opens the key store described by `config` (database URL, pepper, cache settings),
    /// without the rest of the API: for `oa-server apikey ...` commands. Blocking.
    pub fn from_config(
        config: &crate::config::ApiConfig,
        publisher: EventPublisher,
    ) -> Result<KeyStore, crate::error::ApiError> {
        let (_, location) = config.validate()?;
        Ok(KeyStore::open(
            &location,
            &config.api_key_pepper,
            crate::types::Book::Simulator.as_str(),
            config.key_cache_capacity,
            config.key_cache_ttl,
            publisher,
        )?)
    }

    fn key_id(&self, key: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.inner.pepper.as_bytes());
        hasher.update(key.as_bytes());
        hex::encode(&hasher.finalize()[..8])
    }

    fn hash(&self, key: &str) -> Result<String, KeyError> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| KeyError::Hash(e.to_string()))?;
        let secret = format!("{key}{}", self.inner.pepper);
        Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| KeyError::Hash(e.to_string()))
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&KeyStore) -> Result<T, KeyError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|error| KeyError::Store(StoreError::Task(error.to_string())))?
    }

    /// Creates `user_id` if needed and gives it a new key, returned once. Fails when the user
    /// already has an active key.
    pub async fn create_user_key(&self, user_id: &str) -> Result<String, KeyError> {
        valid_user(user_id)?;
        let user = user_id.to_string();
        self.blocking(move |this| this.issue(&user, false)).await
    }

    /// Replaces the user's key with a new one (returned once); the old key stops working at
    /// once. Emits `password_change`.
    pub async fn rotate_user_key(&self, user_id: &str) -> Result<String, KeyError> {
        valid_user(user_id)?;
        let user = user_id.to_string();
        let key = self.blocking(move |this| this.issue(&user, true)).await?;
        self.password_changed(user_id, "API key rotated");
        Ok(key)
    }

    /// Revokes the user's key; it stops working at once. Emits `password_change`.
    pub async fn revoke_user_key(&self, user_id: &str) -> Result<(), KeyError> {
        valid_user(user_id)?;
        let user = user_id.to_string();
        self.blocking(move |this| {
            let mut conn = this.inner.conn.lock();
            this.write_keys(conn.as_mut(), |tx| {
                if tx.revoke_keys(&user)? == 0 {
                    return Err(KeyError::NoActiveKey(user.clone()));
                }
                Ok(((), Some(tx.insert_key_event(&user, "revoked")?)))
            })?;
            this.inner.cache.lock().forget_user(&user);
            Ok(())
        })
        .await?;
        self.password_changed(user_id, "API key revoked");
        Ok(())
    }

    /// Allows (`true`) or forbids ESB commands to act for `user_id`. Takes effect with the
    /// next command the running server reads, also when set from another process.
    pub async fn set_esb_allowed(&self, user_id: &str, allowed: bool) -> Result<(), KeyError> {
        valid_user(user_id)?;
        let user = user_id.to_string();
        self.blocking(move |this| {
            let mut conn = this.inner.conn.lock();
            conn.in_transaction(TxKind::Write, |tx| {
                if !tx.set_esb_allowed(&user, allowed)? {
                    return Err(KeyError::NoSuchUser(user.clone()));
                }
                Ok(())
            })
        })
        .await
    }

    /// Every user with key metadata (never keys or hashes).
    pub async fn list_users(&self) -> Result<Vec<UserKeyInfo>, KeyError> {
        self.blocking(|this| Ok(this.inner.conn.lock().queries().list_users()?))
            .await
    }

    /// On first start (no users at all), creates `user_id` with a key and returns the key
    /// once; otherwise returns `None`.
    pub async fn ensure_default_user(&self, user_id: &str) -> Result<Option<String>, KeyError> {
        valid_user(user_id)?;
        let user = user_id.to_string();
        self.blocking(move |this| {
            if this.inner.conn.lock().queries().count_users()? > 0 {
                return Ok(None);
            }
            this.issue(&user, false).map(Some)
        })
        .await
    }

    /// Creates the user if needed and stores a new key; with `replace`, revokes the old one.
    fn issue(&self, user_id: &str, replace: bool) -> Result<String, KeyError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = hex::encode(bytes);
        let hash = self.hash(&key)?;
        let key_id = self.key_id(&key);
        let mut conn = self.inner.conn.lock();
        self.write_keys(conn.as_mut(), |tx| {
            tx.ensure_user(user_id)?;
            let active = tx.has_active_key(user_id)?;
            if replace {
                if !active {
                    return Err(KeyError::NoActiveKey(user_id.to_string()));
                }
                tx.revoke_keys(user_id)?;
            } else if active {
                return Err(KeyError::AlreadyHasKey(user_id.to_string()));
            }
            tx.insert_key(user_id, &key_id, &hash)?;
            let event = if replace {
                Some(tx.insert_key_event(user_id, "rotated")?)
            } else {
                None
            };
            Ok(((), event))
        })?;
        self.inner.cache.lock().forget_user(user_id);
        Ok(key)
    }

    /// Runs `work` in a write transaction on `db` (the key store's connection, held by the
    /// caller). The key event `work` returns is marked as this process's own before the
    /// commit (the caller holds the connection, so the watcher cannot read it sooner) and
    /// unmarked when the commit fails.
    fn write_keys<T>(
        &self,
        db: &mut dyn Database,
        work: impl FnOnce(&dyn Queries) -> Result<(T, Option<i64>), KeyError>,
    ) -> Result<T, KeyError> {
        let own = &self.inner.own_key_events;
        let mut marked = None;
        let result = db.in_transaction(TxKind::Write, |tx| {
            let (value, event) = work(tx)?;
            if let Some(seq) = event {
                own.lock().insert(seq);
                marked = Some(seq);
            }
            Ok(value)
        });
        if result.is_err()
            && let Some(seq) = marked
        {
            own.lock().remove(&seq);
        }
        result
    }

    /// Forgets `seq` as one of ours; true when it was (so it was already announced).
    pub(crate) fn take_own_key_event(&self, seq: i64) -> bool {
        self.inner.own_key_events.lock().remove(&seq)
    }

    /// Runs `work` on the blocking pool with the key store's connection.
    pub(crate) async fn with_connection<T, F>(&self, work: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Queries) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking(move |this| Ok(work(this.inner.conn.lock().queries())?))
            .await
    }

    /// Drops the cached verifications of `user_id` and announces a key change made elsewhere
    /// (`password_change`), which ends the user's WebSocket and Socket.IO sessions.
    pub(crate) fn key_changed_elsewhere(&self, user_id: &str, action: &str) {
        self.inner.cache.lock().forget_user(user_id);
        let message = match action {
            "rotated" => "API key rotated",
            _ => "API key revoked",
        };
        self.password_changed(user_id, message);
    }

    fn password_changed(&self, user_id: &str, message: &str) {
        self.inner.publisher.publish(Event::for_user(
            user_id,
            PasswordChange::success(user_id, message),
        ));
    }

    /// Checks a key: `Ok(Some(user))` when valid. Cached; the store lookup and Argon2 run on
    /// the blocking pool, at most `VERIFY_CONCURRENCY` at once.
    pub async fn verify_key(&self, key: &str) -> Result<Option<AuthenticatedUser>, KeyError> {
        if key.is_empty() || key.len() > 256 {
            return Ok(None);
        }
        let digest = digest(key);
        let _slot = self
            .inner
            .verify_slots
            .acquire()
            .await
            .map_err(|_| KeyError::Store(StoreError::Closed))?;
        let cached = self.inner.cache.lock().get(&digest);
        if let Some(user) = cached {
            // Another process (`oa-server apikey revoke`) may have revoked the key since it
            // was cached: one indexed lookup keeps revocation immediate everywhere without
            // paying Argon2 again.
            let key_id = self.key_id(key);
            return self
                .blocking(move |this| {
                    let active = this
                        .inner
                        .conn
                        .lock()
                        .queries()
                        .find_key(&key_id)?
                        .is_some_and(|row| row.user_id == user.user_id);
                    if active {
                        return Ok(Some(user));
                    }
                    this.inner.cache.lock().forget_user(&user.user_id);
                    Ok(None)
                })
                .await;
        }
        let key = key.to_string();
        self.blocking(move |this| {
            let key_id = this.key_id(&key);
            let Some(row) = this.inner.conn.lock().queries().find_key(&key_id)? else {
                return Ok(None);
            };
            let secret = format!("{key}{}", this.inner.pepper);
            let valid = PasswordHash::new(&row.key_hash)
                .map(|hash| {
                    Argon2::default()
                        .verify_password(secret.as_bytes(), &hash)
                        .is_ok()
                })
                .unwrap_or(false);
            if !valid {
                return Ok(None);
            }
            let user = AuthenticatedUser {
                user_id: row.user_id,
                broker: this.inner.broker.clone(),
            };
            // Revocation clears the cache while holding the connection lock; re-checking
            // and caching under that lock means a revoked key is never cached.
            let conn = this.inner.conn.lock();
            if conn.queries().find_key(&key_id)?.is_none() {
                return Ok(None);
            }
            this.inner.cache.lock().insert(digest, user.clone());
            drop(conn);
            Ok(Some(user))
        })
        .await
    }
}

impl ApiKeyVerifier for KeyStore {
    fn verify<'a>(&'a self, api_key: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            self.verify_key(api_key)
                .await
                .map_err(|error| VerifierError {
                    reason: error.to_string(),
                })
        })
    }
}
