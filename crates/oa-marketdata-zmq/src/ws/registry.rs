//! The client registry: connected clients, each one's session (user, subscriptions, order
//! updates), and per user the sessions, instruments and order-update clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use oa_events_core::AuthenticatedUser;
use oa_marketdata_core::tick::now_ms;
use parking_lot::{Mutex, MutexGuard};

use crate::ws::protocol::ProtocolError;
use crate::ws::send_queue::{Outgoing, SendQueue, SendQueueStats};
use crate::ws::subscriptions::{InstrumentKey, TickModeSet};

/// What a client is, as seen by the hub.
#[derive(Debug)]
pub(crate) struct Client {
    pub id: u64,
    /// The peer's address (login rate limit).
    pub ip: IpAddr,
    pub queue: SendQueue,
    session: Mutex<Session>,
    /// Last inbound frame, epoch ms (keepalive).
    pub last_seen_ms: AtomicI64,
    /// When the current login succeeded, epoch ms (0 before): a key revoked after it ends
    /// the session.
    pub authenticated_at_ms: AtomicI64,
}

/// A client's state behind its lock.
#[derive(Debug, Default)]
pub(crate) struct Session {
    pub user: Option<AuthenticatedUser>,
    /// Subscribed modes per instrument.
    pub subscriptions: HashMap<InstrumentKey, TickModeSet>,
    pub orders: bool,
}

impl Client {
    /// True once authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.session.lock().user.is_some()
    }

    /// Marks the client alive now.
    pub fn touch(&self) {
        self.last_seen_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The client's session (lock order: session, then users, then index).
    pub fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock()
    }

    /// Queues a reply (control queue: never conflated).
    pub fn send_text(&self, text: String) {
        self.queue
            .push_control(Outgoing::Text(Utf8Bytes::from(text)));
    }

    /// Queues an error reply.
    pub fn send_error(&self, error: &ProtocolError) {
        self.send_text(error.to_json());
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        let session = self.session.lock();
        ClientStats {
            id: self.id,
            user_id: session.user.as_ref().map(|user| user.user_id.clone()),
            subscriptions: session
                .subscriptions
                .values()
                .map(|modes| modes.len())
                .sum(),
            queue: self.queue.stats(),
        }
    }
}

/// Counters of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStats {
    /// Connection id.
    pub id: u64,
    /// The authenticated user, if any.
    pub user_id: Option<String>,
    /// Subscriptions (instrument x mode).
    pub subscriptions: usize,
    /// SendQueue counters.
    pub queue: SendQueueStats,
}

/// One user's connections and instruments.
#[derive(Debug, Default)]
pub(crate) struct UserState {
    /// Instruments subscribed by any of the user's connections, with the number of them.
    pub instruments: HashMap<InstrumentKey, usize>,
    /// The user's connections that asked for order updates.
    pub order_clients: HashMap<u64, Arc<Client>>,
    /// The user's authenticated connections (at most `MAX_WEBSOCKET_CONNECTIONS`).
    pub sessions: HashMap<u64, Arc<Client>>,
}

impl UserState {
    /// True when nothing of the user is left (the entry can go).
    pub fn is_unused(&self) -> bool {
        self.instruments.is_empty() && self.order_clients.is_empty() && self.sessions.is_empty()
    }

    /// Forgets a connection of this user (sessions and order updates).
    pub fn forget(&mut self, client_id: u64) {
        self.order_clients.remove(&client_id);
        self.sessions.remove(&client_id);
    }
}

/// Connected clients and users.
#[derive(Debug)]
pub(crate) struct Registry {
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    users: Mutex<HashMap<String, UserState>>,
    next_client: AtomicU64,
    /// Market-data capacity of each send queue.
    max_queue: usize,
    /// Control-message capacity of each send queue.
    control_limit: usize,
}

impl Registry {
    /// An empty registry whose clients get send queues of these capacities.
    pub fn new(max_queue: usize, control_limit: usize) -> Self {
        Registry {
            clients: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            max_queue,
            control_limit,
        }
    }

    /// Registers a new connection from `ip`.
    pub fn register(&self, ip: IpAddr) -> Arc<Client> {
        let client = Arc::new(Client {
            id: self.next_client.fetch_add(1, Ordering::Relaxed),
            ip,
            queue: SendQueue::new(self.max_queue, self.control_limit),
            session: Mutex::new(Session::default()),
            last_seen_ms: AtomicI64::new(now_ms()),
            authenticated_at_ms: AtomicI64::new(0),
        });
        let count = {
            let mut clients = self.clients.lock();
            clients.insert(client.id, Arc::clone(&client));
            clients.len()
        };
        metrics::gauge!("oa_ws_clients").set(count as f64);
        client
    }

    /// Forgets a connection (its subscriptions must be removed first).
    pub fn remove(&self, client: &Arc<Client>) {
        {
            let session = client.session.lock();
            if let Some(user) = &session.user {
                let mut users = self.users.lock();
                if let Some(state) = users.get_mut(&user.user_id) {
                    state.forget(client.id);
                    if state.is_unused() {
                        users.remove(&user.user_id);
                    }
                }
            }
        }
        let count = {
            let mut clients = self.clients.lock();
            clients.remove(&client.id);
            clients.len()
        };
        metrics::gauge!("oa_ws_clients").set(count as f64);
    }

    /// The users' state (lock order: session, then users, then index).
    pub fn users(&self) -> MutexGuard<'_, HashMap<String, UserState>> {
        self.users.lock()
    }

    /// Every connected client.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.clients.lock().values().cloned().collect()
    }

    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    /// The authenticated connections of `user_id`.
    pub fn sessions_of(&self, user_id: &str) -> Vec<Arc<Client>> {
        self.users
            .lock()
            .get(user_id)
            .map(|state| state.sessions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The connections of `user_id` that asked for order updates.
    pub fn order_clients_of(&self, user_id: &str) -> Vec<Arc<Client>> {
        self.users
            .lock()
            .get(user_id)
            .map(|state| state.order_clients.values().cloned().collect())
            .unwrap_or_default()
    }
}
