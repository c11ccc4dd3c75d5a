//! Leadership among `core` processes sharing a PostgreSQL store (`OA_ROLE=core`).
//!
//! Exactly one core leads: the one whose dedicated *lock session* holds the PostgreSQL
//! session advisory lock [`LEADER_LOCK`]. The others are standbys: they poll
//! `pg_try_advisory_lock` every [`POLL_INTERVAL`] and their order engine refuses writes.
//!
//! - **Taking the lead.** The winner bumps the leadership epoch (`oa_leadership.epoch`) on
//!   its lock session, hands the new epoch to its order engine, which reloads its whole state
//!   from the store, and only then reports [`LeaderState::Leading`] (the server starts the
//!   outbox relay and the ESB consumer then).
//! - **Fencing.** Every write transaction of the engine checks, under `FOR SHARE`, that the
//!   epoch is still its own (see `store::postgres::check_fence`). The bump waits for those
//!   share locks, so a deposed leader's write either committed before the bump (and the new
//!   leader's reload sees it) or fails: it never interleaves with the new leader's writes.
//! - **Losing the lead.** The lock is released when the lock session ends: the process died
//!   (the kernel closes its socket), or it stayed silent for [`SESSION_TIMEOUT`] (paused,
//!   partitioned: the server's `idle_session_timeout` ends the session; the leader pings
//!   every [`HEARTBEAT_INTERVAL`]). A leader whose ping fails stands its engine by at once
//!   and reports [`LeaderState::Lost`]; `oa-server` then exits, to be restarted as a standby.
//!   A transaction open when the process paused is ended by `idle_in_transaction_session_timeout`
//!   ([`SESSION_TIMEOUT`] too, set in every fenced transaction), so it cannot hold up the bump.

use std::time::Duration;

use tokio::sync::watch;

use crate::engine::worker::EngineHandle;
use crate::store::{StoreError, StoreLocation, connect_postgres, now_text};

/// The advisory lock whose holder leads ("oa" leader lock; migrations use `0x6f61_0001`).
pub const LEADER_LOCK: i64 = 0x6f61_0002;
/// How often a standby tries to take the lock.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often the leader pings its lock session.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a silent lock session (or an idle open transaction) lives on the server.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Where this process stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderState {
    /// Another core leads (or none yet): writes are refused.
    Standby,
    /// This core leads in `epoch`; its engine has reloaded and takes writes.
    Leading {
        /// The leadership epoch (grows with every takeover).
        epoch: i64,
    },
    /// This core led and lost the lead (or could not take it); writes are refused for good.
    Lost {
        /// Why.
        reason: String,
    },
}

/// Why a campaign cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LeadershipError {
    /// Leadership needs a store several processes share.
    #[error("leadership needs a PostgreSQL store (DATABASE_URL=postgres://...), not {0}")]
    NotPostgres(String),
    /// The campaign thread could not start.
    #[error("cannot start the leadership thread: {0}")]
    Thread(String),
}

/// A running campaign for the lead. Dropping every clone ends the lock session (a leader
/// steps down within [`HEARTBEAT_INTERVAL`]).
#[derive(Debug, Clone)]
pub struct Leadership {
    state: watch::Receiver<LeaderState>,
}

impl Leadership {
    /// Starts campaigning on the store of `database_url` for `engine`, which must have been
    /// started as a standby (`ApiConfig::standby`). `holder` names this process in
    /// `oa_leadership` and in deposed leaders' errors.
    pub fn campaign(
        location: &StoreLocation,
        holder: String,
        engine: EngineHandle,
    ) -> Result<Leadership, LeadershipError> {
        let StoreLocation::Postgres(url) = location else {
            return Err(LeadershipError::NotPostgres(location.to_string()));
        };
        let url = url.clone();
        let (sender, state) = watch::channel(LeaderState::Standby);
        std::thread::Builder::new()
            .name("oa-leadership".to_string())
            .spawn(move || campaign(&url, &holder, &engine, &sender))
            .map_err(|error| LeadershipError::Thread(error.to_string()))?;
        Ok(Leadership { state })
    }

    /// The current state.
    pub fn state(&self) -> LeaderState {
        self.state.borrow().clone()
    }

    /// Waits until this core leads and returns its epoch, or why it never will.
    pub async fn leading(&mut self) -> Result<i64, String> {
        let state = self
            .state
            .wait_for(|state| !matches!(state, LeaderState::Standby))
            .await
            .map(|state| state.clone());
        match state {
            Ok(LeaderState::Leading { epoch }) => Ok(epoch),
            Ok(LeaderState::Lost { reason }) => Err(reason),
            Ok(LeaderState::Standby) | Err(_) => Err("the leadership thread stopped".to_string()),
        }
    }

    /// Waits until this core has lost the lead (or can never take it) and returns why.
    pub async fn lost(&mut self) -> String {
        match self
            .state
            .wait_for(|state| matches!(state, LeaderState::Lost { .. }))
            .await
        {
            Ok(state) => match &*state {
                LeaderState::Lost { reason } => reason.clone(),
                _ => "the lead was lost".to_string(),
            },
            Err(_) => "the leadership thread stopped".to_string(),
        }
    }
}

/// Opens a lock session: a connection that the server ends after [`SESSION_TIMEOUT`] of
/// silence, which releases the lock it holds.
fn lock_session(url: &str) -> Result<postgres::Client, StoreError> {
    connect_postgres(url, |client| {
        client.batch_execute(&format!(
            "SET idle_session_timeout = {}; SET application_name = 'oa-core leadership'",
            SESSION_TIMEOUT.as_millis()
        ))?;
        Ok(())
    })
}

/// Takes the lock if free and bumps the epoch; `None` while another session holds it.
fn try_lead(client: &mut postgres::Client, holder: &str) -> Result<Option<i64>, StoreError> {
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])?
        .try_get(0)?;
    if !locked {
        return Ok(None);
    }
    let epoch: i64 = client
        .query_one(
            "UPDATE oa_leadership SET epoch = epoch + 1, holder = $1, since = $2 WHERE id = 1 RETURNING epoch",
            &[&holder, &now_text()],
        )?
        .try_get(0)?;
    Ok(Some(epoch))
}

/// The campaign thread: stand by until the lock is ours, lead while the session lives.
fn campaign(url: &str, holder: &str, engine: &EngineHandle, state: &watch::Sender<LeaderState>) {
    let mut warned = false;
    let (mut client, epoch) = loop {
        if state.is_closed() {
            return;
        }
        let mut client = match lock_session(url) {
            Ok(client) => client,
            Err(error) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(%error, "leadership: cannot open the lock session; retrying");
                }
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        let taken = loop {
            if state.is_closed() {
                return;
            }
            match try_lead(&mut client, holder) {
                Ok(Some(epoch)) => break Some(epoch),
                Ok(None) => std::thread::sleep(POLL_INTERVAL),
                Err(error) => {
                    tracing::warn!(%error, "leadership: the lock session failed; opening another");
                    break None;
                }
            }
        };
        match taken {
            Some(epoch) => break (client, epoch),
            None => std::thread::sleep(POLL_INTERVAL),
        }
    };
    tracing::info!(
        epoch,
        holder,
        "leadership: took the lead; reloading the order engine"
    );
    if let Err(error) = engine.lead_blocking(epoch) {
        let reason = format!(
            "this core took the lead (epoch {epoch}) but could not load its state: {error}"
        );
        engine.stand_by_blocking(reason.clone());
        state.send_replace(LeaderState::Lost { reason });
        return;
    }
    state.send_replace(LeaderState::Leading { epoch });
    loop {
        std::thread::sleep(HEARTBEAT_INTERVAL);
        if state.is_closed() {
            // Shutting down: dropping the session releases the lock.
            return;
        }
        if let Err(error) = client.is_valid(SESSION_TIMEOUT) {
            let reason = format!(
                "This oa core lost the lead (epoch {epoch}): its PostgreSQL lock session ended ({}); another core may lead now",
                StoreError::Postgres(error)
            );
            tracing::error!("{reason}");
            engine.stand_by_blocking(reason.clone());
            state.send_replace(LeaderState::Lost { reason });
            return;
        }
    }
}
