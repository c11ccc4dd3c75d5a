//! The revocation watcher: makes a key rotated or revoked by another process (the
//! `oa-server apikey rotate|revoke` command writes the SQLite file directly) bite in the
//! running server within [`POLL_INTERVAL`].
//!
//! Every rotation and revocation appends a row to the store's `key_events` log (in the same
//! transaction as the key change). The watcher reads the rows after the last `seq` it saw (a
//! primary-key range read, so polling costs one indexed lookup when nothing changed). For
//! each row this process did not write itself, it drops the user's cached verifications and
//! publishes `password_change` for the user, as an in-process rotation does: the Socket.IO
//! layer delivers it and then disconnects the user's sessions that logged in before it, and
//! the WebSocket proxy closes them (code 4403). REST needs nothing: every call re-checks that
//! its key is still active.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::keys::KeyStore;

/// How often the watcher polls `key_events`.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Most events read per poll (more are read at the next poll).
const BATCH: usize = 256;

impl KeyStore {
    /// Starts the revocation watcher on the current runtime; abort the handle to stop it.
    pub fn spawn_revocation_watcher(&self) -> JoinHandle<()> {
        tokio::spawn(watch(self.clone(), POLL_INTERVAL))
    }
}

async fn watch(keys: KeyStore, interval: Duration) {
    // Changes made before this start ended no session of this process: begin at the end.
    let mut last = loop {
        match keys.with_connection(|db| db.last_key_event()).await {
            Ok(seq) => break seq,
            Err(error) => {
                tracing::error!(%error, "revocation watcher cannot read key_events; retrying");
                tokio::time::sleep(interval).await;
            }
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let after = last;
        let events = match keys
            .with_connection(move |db| db.key_events_after(after, BATCH))
            .await
        {
            Ok(events) => {
                failing = false;
                events
            }
            Err(error) => {
                if !failing {
                    tracing::error!(%error, "revocation watcher cannot read key_events");
                }
                failing = true;
                continue;
            }
        };
        for event in events {
            last = event.seq;
            if keys.take_own_key_event(event.seq) {
                continue;
            }
            tracing::info!(
                user_id = %event.user_id,
                action = %event.action,
                seq = event.seq,
                "API key changed by another process: ending its sessions"
            );
            metrics::counter!("oa_key_changes_from_other_process_total").increment(1);
            keys.key_changed_elsewhere(&event.user_id, &event.action);
        }
    }
}
