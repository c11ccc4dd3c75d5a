//! The hub: connected clients, their sessions, the subscription index and fan-out.
//!
//! ```text
//! tick ──▶ index[(exchange, symbol)] ──▶ [(client, modes)] ──▶ render once per mode ──▶ outboxes
//! ```
//!
//! A tick of mode M reaches every subscription of its instrument at mode M or lower, each
//! message carrying the subscription's own mode (a client subscribed to LTP and Depth of one
//! symbol receives both views). The dispatcher takes the index's read lock per tick; subscription changes take the write
//! lock briefly. Each tick is serialised at most once per mode (1-3 times) and the resulting
//! [`Utf8Bytes`] is shared by every subscriber (a reference-count increment per client).
//!
//! Lock order: session, then users, then index.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use oa_events_core::{ApiKeyVerifier, AuthenticatedUser, Envelope};
use oa_net::LoginLimiter;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::feed::SubscriptionHint;
use crate::ws::outbox::{ConflationKey, Outbox, OutboxStats, Outgoing, Pushed};
use crate::ws::protocol::{self, ErrorCode, ProtocolError, Request, SymbolRef};
use oa_marketdata_core::symbols::{SymbolMaster, is_known_exchange};
use oa_marketdata_core::tick::{ALL_MODES, Mode, Tick, now_ms};

/// Limits and names the hub applies.
#[derive(Debug, Clone)]
pub(crate) struct HubConfig {
    pub max_symbols_per_websocket: usize,
    pub max_websocket_connections: usize,
    pub max_queue: usize,
    pub control_limit: usize,
    /// The broker named in `market_data` messages.
    pub broker: String,
    /// Per-IP rate limit of `authenticate` requests.
    pub logins: LoginLimiter,
}

impl HubConfig {
    fn capacity_per_user(&self) -> usize {
        self.max_symbols_per_websocket
            .saturating_mul(self.max_websocket_connections)
    }
}

type InstrumentKey = (String, String);

fn mode_bit(mode: Mode) -> u8 {
    1 << (mode.code() - 1)
}

/// The highest mode in `mask` that is at most `limit`.
fn best_mode(mask: u8, limit: Mode) -> Option<Mode> {
    ALL_MODES
        .iter()
        .rev()
        .find(|mode| **mode <= limit && mask & mode_bit(**mode) != 0)
        .copied()
}

fn highest_mode(mask: u8) -> Option<Mode> {
    best_mode(mask, Mode::Depth)
}

/// What a client is, as seen by the hub.
#[derive(Debug)]
pub(crate) struct Client {
    pub id: u64,
    /// The peer's address (login rate limit).
    pub ip: IpAddr,
    pub outbox: Outbox,
    session: Mutex<Session>,
    /// Last inbound frame, epoch ms (keepalive).
    pub last_seen_ms: AtomicI64,
    /// When the current login succeeded, epoch ms (0 before): a key revoked after it ends
    /// the session.
    authenticated_at_ms: AtomicI64,
}

#[derive(Debug, Default)]
struct Session {
    user: Option<AuthenticatedUser>,
    /// Subscribed modes per instrument, as a bit mask.
    subscriptions: HashMap<InstrumentKey, u8>,
    orders: bool,
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

    fn send_text(&self, text: String) {
        self.outbox
            .push_control(Outgoing::Text(Utf8Bytes::from(text)));
    }

    fn send_error(&self, error: &ProtocolError) {
        self.send_text(error.to_json());
    }
}

#[derive(Debug)]
struct Subscriber {
    client: Arc<Client>,
    mask: u8,
}

#[derive(Debug)]
struct InstrumentSubs {
    number: u32,
    subscribers: Vec<Subscriber>,
}

impl InstrumentSubs {
    fn max_mode(&self) -> Option<Mode> {
        highest_mode(self.subscribers.iter().fold(0, |mask, s| mask | s.mask))
    }
}

#[derive(Debug, Default)]
struct UserState {
    /// Instruments subscribed by any of the user's connections, with the number of them.
    instruments: HashMap<InstrumentKey, usize>,
    /// The user's connections that asked for order updates.
    order_clients: HashMap<u64, Arc<Client>>,
    /// The user's authenticated connections (at most `MAX_WEBSOCKET_CONNECTIONS`).
    sessions: HashMap<u64, Arc<Client>>,
}

impl UserState {
    fn is_unused(&self) -> bool {
        self.instruments.is_empty() && self.order_clients.is_empty() && self.sessions.is_empty()
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
    /// Outbox counters.
    pub outbox: OutboxStats,
}

/// Counters of the whole proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyStats {
    /// Connected clients.
    pub clients: u64,
    /// Subscriptions (client x instrument x mode).
    pub subscriptions: u64,
    /// Ticks dispatched.
    pub ticks_dispatched: u64,
    /// Messages queued to clients.
    pub fanned_out: u64,
    /// Ticks replaced in outboxes by newer ones.
    pub conflated: u64,
    /// Ticks evicted from full outboxes.
    pub dropped: u64,
}

/// Shared state of the WebSocket proxy.
pub(crate) struct Hub {
    config: HubConfig,
    symbols: Arc<SymbolMaster>,
    verifier: Arc<dyn ApiKeyVerifier>,
    clients: Mutex<HashMap<u64, Arc<Client>>>,
    users: Mutex<HashMap<String, UserState>>,
    index: RwLock<HashMap<String, HashMap<String, InstrumentSubs>>>,
    hints: Option<mpsc::Sender<SubscriptionHint>>,
    next_client: AtomicU64,
    next_instrument: AtomicU32,
    subscriptions: AtomicI64,
    ticks_dispatched: AtomicU64,
    fanned_out: AtomicU64,
    conflated: AtomicU64,
    dropped: AtomicU64,
    fanned_out_counter: metrics::Counter,
    conflated_counter: metrics::Counter,
    dropped_counter: metrics::Counter,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub(crate) fn new(
        config: HubConfig,
        symbols: Arc<SymbolMaster>,
        verifier: Arc<dyn ApiKeyVerifier>,
        hints: Option<mpsc::Sender<SubscriptionHint>>,
    ) -> Self {
        Hub {
            config,
            symbols,
            verifier,
            clients: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            index: RwLock::new(HashMap::new()),
            hints,
            next_client: AtomicU64::new(1),
            next_instrument: AtomicU32::new(1),
            subscriptions: AtomicI64::new(0),
            ticks_dispatched: AtomicU64::new(0),
            fanned_out: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            fanned_out_counter: metrics::counter!("oa_ticks_fanned_out_total"),
            conflated_counter: metrics::counter!("oa_ticks_conflated_total"),
            dropped_counter: metrics::counter!("oa_ticks_dropped_total", "reason" => "client_outbox_full"),
        }
    }

    /// Registers a new connection from `ip`.
    pub(crate) fn register(&self, ip: IpAddr) -> Arc<Client> {
        let client = Arc::new(Client {
            id: self.next_client.fetch_add(1, Ordering::Relaxed),
            ip,
            outbox: Outbox::new(self.config.max_queue, self.config.control_limit),
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

    /// Forgets a connection and all its subscriptions.
    pub(crate) fn unregister(&self, client: &Arc<Client>) {
        self.unsubscribe_all(client);
        {
            let session = client.session.lock();
            if let Some(user) = &session.user {
                let mut users = self.users.lock();
                if let Some(state) = users.get_mut(&user.user_id) {
                    state.order_clients.remove(&client.id);
                    state.sessions.remove(&client.id);
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
        let stats = client.outbox.stats();
        tracing::debug!(
            client = client.id,
            sent = stats.sent,
            conflated = stats.conflated,
            dropped = stats.dropped,
            "websocket client left"
        );
    }

    /// Queues a close frame for every client (shutdown).
    pub(crate) fn close_all(&self, code: u16, reason: &'static str) {
        let clients: Vec<Arc<Client>> = self.clients.lock().values().cloned().collect();
        for client in clients {
            client.outbox.push_control(Outgoing::Close(code, reason));
        }
    }

    /// Handles one text frame.
    pub(crate) async fn handle_text(&self, client: &Arc<Client>, text: &str) {
        let request = match protocol::parse_request(text) {
            Ok(request) => request,
            Err(error) => {
                client.send_error(&error);
                return;
            }
        };
        match request {
            Request::Authenticate { api_key } => self.authenticate(client, api_key).await,
            Request::Ping { timestamp, ping_id } => {
                client.send_text(protocol::pong(now_ms(), &timestamp, &ping_id));
            }
            other => {
                let user = client.session.lock().user.clone();
                let Some(user) = user else {
                    client.send_error(&ProtocolError::new(
                        ErrorCode::NotAuthenticated,
                        "You must authenticate first",
                    ));
                    return;
                };
                match other {
                    Request::Subscribe {
                        symbols,
                        mode,
                        depth,
                        request_id,
                    } => self.subscribe(client, &user, symbols, mode, depth, request_id),
                    Request::Unsubscribe {
                        symbols,
                        request_id,
                    } => self.unsubscribe(client, &user, symbols, request_id),
                    Request::UnsubscribeAll { request_id } => {
                        let removed = self.unsubscribe_all(client);
                        let successful: Vec<Value> = removed
                            .iter()
                            .map(|((exchange, symbol), mode)| {
                                json!({"symbol": symbol, "exchange": exchange, "mode": mode.label(), "status": "success", "broker": user.broker})
                            })
                            .collect();
                        client.send_text(protocol::with_request_id(
                            json!({
                                "type": "unsubscribe",
                                "status": "success",
                                "message": "Unsubscription processing complete",
                                "successful": successful,
                                "failed": [],
                                "broker": user.broker,
                            }),
                            &request_id,
                        ));
                    }
                    Request::SubscribeOrders { request_id } => {
                        client.session.lock().orders = true;
                        self.users
                            .lock()
                            .entry(user.user_id.clone())
                            .or_default()
                            .order_clients
                            .insert(client.id, Arc::clone(client));
                        client.send_text(protocol::with_request_id(
                            json!({"type": "subscribe_orders", "status": "success", "message": "Subscribed to order updates", "user_id": user.user_id, "broker": user.broker}),
                            &request_id,
                        ));
                    }
                    Request::UnsubscribeOrders { request_id } => {
                        client.session.lock().orders = false;
                        if let Some(state) = self.users.lock().get_mut(&user.user_id) {
                            state.order_clients.remove(&client.id);
                        }
                        client.send_text(protocol::with_request_id(
                            json!({"type": "unsubscribe_orders", "status": "success", "message": "Unsubscribed from order updates", "broker": user.broker}),
                            &request_id,
                        ));
                    }
                    Request::Authenticate { .. } | Request::Ping { .. } => {}
                }
            }
        }
    }

    async fn authenticate(&self, client: &Arc<Client>, api_key: Option<String>) {
        let Some(api_key) = api_key else {
            client.send_error(&ProtocolError::new(
                ErrorCode::AuthenticationError,
                "API key is required",
            ));
            return;
        };
        if !self.config.logins.check("websocket", client.ip) {
            client.send_error(&ProtocolError::new(
                ErrorCode::RateLimited,
                "Too many login attempts from your address; retry later",
            ));
            return;
        }
        match self.verifier.verify(&api_key).await {
            Ok(Some(user)) => {
                let previous = client.session.lock().user.clone();
                if let Some(previous) = previous
                    && previous.user_id != user.user_id
                {
                    // Switching users: nothing of the previous user may leak.
                    self.unsubscribe_all(client);
                    if let Some(state) = self.users.lock().get_mut(&previous.user_id) {
                        state.order_clients.remove(&client.id);
                        state.sessions.remove(&client.id);
                    }
                    client.session.lock().orders = false;
                    client.session.lock().user = None;
                }
                {
                    let mut users = self.users.lock();
                    let state = users.entry(user.user_id.clone()).or_default();
                    let limit = self.config.max_websocket_connections;
                    if !state.sessions.contains_key(&client.id) && state.sessions.len() >= limit {
                        metrics::counter!("oa_connections_refused_total", "listener" => "websocket", "reason" => "per_user_cap").increment(1);
                        client.send_error(&ProtocolError::new(
                            ErrorCode::MaxConnectionsReached,
                            format!("Maximum WebSocket connections reached ({limit} per user, MAX_WEBSOCKET_CONNECTIONS); close one and retry"),
                        ));
                        if state.is_unused() {
                            users.remove(&user.user_id);
                        }
                        return;
                    }
                    state.sessions.insert(client.id, Arc::clone(client));
                }
                client
                    .authenticated_at_ms
                    .store(now_ms(), Ordering::Relaxed);
                client.send_text(protocol::auth_success(&user.broker, &user.user_id));
                client.session.lock().user = Some(user);
            }
            Ok(None) => {
                metrics::counter!("oa_logins_refused_total", "listener" => "websocket", "reason" => "invalid_apikey").increment(1);
                client.send_error(&ProtocolError::new(
                    ErrorCode::AuthenticationError,
                    "Invalid API key",
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "websocket authentication could not be checked");
                client.send_error(&ProtocolError::new(
                    ErrorCode::ServerError,
                    "Authentication is temporarily unavailable, retry later",
                ));
            }
        }
    }

    fn failed_entry(
        symbol: &Option<String>,
        exchange: &Option<String>,
        code: ErrorCode,
        message: String,
        broker: &str,
    ) -> Value {
        json!({"symbol": symbol, "exchange": exchange, "status": "error", "code": code.as_str(), "message": message, "broker": broker})
    }

    /// Validates a requested instrument against the symbol master.
    fn validate(&self, entry: &SymbolRef) -> Result<InstrumentKey, (ErrorCode, String)> {
        let (Some(symbol), Some(exchange)) = (&entry.symbol, &entry.exchange) else {
            return Err((
                ErrorCode::InvalidParameters,
                "each symbol needs \"symbol\" and \"exchange\"".to_string(),
            ));
        };
        if !is_known_exchange(exchange) {
            return Err((
                ErrorCode::InvalidParameters,
                format!(
                    "Unknown exchange {exchange:?}; expected one of {}",
                    oa_marketdata_core::symbols::EXCHANGES.join(", ")
                ),
            ));
        }
        if !self.symbols.contains(exchange, symbol) {
            return Err((
                ErrorCode::SymbolNotFound,
                format!("Symbol {exchange}:{symbol} not found in the master contract"),
            ));
        }
        Ok((exchange.clone(), symbol.clone()))
    }

    fn subscribe(
        &self,
        client: &Arc<Client>,
        user: &AuthenticatedUser,
        symbols: Vec<SymbolRef>,
        mode: Mode,
        depth: u64,
        request_id: Option<Value>,
    ) {
        let capacity = self.config.capacity_per_user();
        let mut results = Vec::with_capacity(symbols.len());
        let mut failed = false;
        let mut capacity_hit = false;
        let mut hints = Vec::new();
        {
            let mut session = client.session.lock();
            let mut users = self.users.lock();
            let user_state = users.entry(user.user_id.clone()).or_default();
            let mut index = self.index.write();
            for entry in &symbols {
                let key = match self.validate(entry) {
                    Ok(key) => key,
                    Err((code, message)) => {
                        failed = true;
                        results.push(Self::failed_entry(
                            &entry.symbol,
                            &entry.exchange,
                            code,
                            message,
                            &user.broker,
                        ));
                        continue;
                    }
                };
                let mask = session.subscriptions.get(&key).copied().unwrap_or(0);
                if mask & mode_bit(mode) == 0 {
                    if mask == 0 {
                        // A new instrument for this connection: check the user's capacity.
                        if !user_state.instruments.contains_key(&key)
                            && user_state.instruments.len() >= capacity
                        {
                            failed = true;
                            capacity_hit = true;
                            results.push(Self::failed_entry(
                                &entry.symbol,
                                &entry.exchange,
                                ErrorCode::MaxCapacityReached,
                                format!(
                                    "Maximum capacity reached ({capacity} symbols = MAX_SYMBOLS_PER_WEBSOCKET {} x MAX_WEBSOCKET_CONNECTIONS {})",
                                    self.config.max_symbols_per_websocket,
                                    self.config.max_websocket_connections
                                ),
                                &user.broker,
                            ));
                            continue;
                        }
                        *user_state.instruments.entry(key.clone()).or_insert(0) += 1;
                    }
                    session
                        .subscriptions
                        .insert(key.clone(), mask | mode_bit(mode));
                    let subs = index
                        .entry(key.0.clone())
                        .or_default()
                        .entry(key.1.clone())
                        .or_insert_with(|| InstrumentSubs {
                            number: self.next_instrument.fetch_add(1, Ordering::Relaxed),
                            subscribers: Vec::new(),
                        });
                    let before = subs.max_mode();
                    match subs
                        .subscribers
                        .iter_mut()
                        .find(|s| s.client.id == client.id)
                    {
                        Some(subscriber) => subscriber.mask |= mode_bit(mode),
                        None => subs.subscribers.push(Subscriber {
                            client: Arc::clone(client),
                            mask: mode_bit(mode),
                        }),
                    }
                    let after = subs.max_mode();
                    if after != before {
                        hints.push(SubscriptionHint {
                            exchange: key.0.clone(),
                            symbol: key.1.clone(),
                            mode: after,
                        });
                    }
                    let total = self.subscriptions.fetch_add(1, Ordering::Relaxed) + 1;
                    metrics::gauge!("oa_ws_subscriptions").set(total as f64);
                }
                results.push(json!({
                    "symbol": key.1,
                    "exchange": key.0,
                    "status": "success",
                    "mode": mode.label(),
                    "depth": depth,
                    "broker": user.broker,
                }));
            }
        }
        self.send_hints(hints);
        if capacity_hit {
            let mut error = ProtocolError::new(
                ErrorCode::MaxCapacityReached,
                format!(
                    "Maximum capacity reached ({capacity} symbols per user); some symbols were not subscribed"
                ),
            );
            error.request_id.clone_from(&request_id);
            client.send_error(&error);
        }
        client.send_text(protocol::with_request_id(
            json!({
                "type": "subscribe",
                "status": if failed { "partial" } else { "success" },
                "subscriptions": results,
                "message": "Subscription processing complete",
                "broker": user.broker,
            }),
            &request_id,
        ));
    }

    /// Removes one (instrument, mode) of a client. Caller holds session, users and index.
    fn remove_subscription(
        &self,
        client_id: u64,
        session: &mut Session,
        user_state: Option<&mut UserState>,
        index: &mut HashMap<String, HashMap<String, InstrumentSubs>>,
        (key, mode): (&InstrumentKey, Mode),
        hints: &mut Vec<SubscriptionHint>,
    ) -> bool {
        let Some(mask) = session.subscriptions.get(key).copied() else {
            return false;
        };
        if mask & mode_bit(mode) == 0 {
            return false;
        }
        let remaining = mask & !mode_bit(mode);
        if remaining == 0 {
            session.subscriptions.remove(key);
            if let Some(user_state) = user_state
                && let Some(count) = user_state.instruments.get_mut(key)
            {
                *count -= 1;
                if *count == 0 {
                    user_state.instruments.remove(key);
                }
            }
        } else {
            session.subscriptions.insert(key.clone(), remaining);
        }
        if let Some(by_symbol) = index.get_mut(&key.0) {
            if let Some(subs) = by_symbol.get_mut(&key.1) {
                let before = subs.max_mode();
                if remaining == 0 {
                    subs.subscribers.retain(|s| s.client.id != client_id);
                } else if let Some(s) = subs
                    .subscribers
                    .iter_mut()
                    .find(|s| s.client.id == client_id)
                {
                    s.mask = remaining;
                }
                let after = subs.max_mode();
                if after != before {
                    hints.push(SubscriptionHint {
                        exchange: key.0.clone(),
                        symbol: key.1.clone(),
                        mode: after,
                    });
                }
                if subs.subscribers.is_empty() {
                    by_symbol.remove(&key.1);
                }
            }
            if by_symbol.is_empty() {
                index.remove(&key.0);
            }
        }
        let total = self.subscriptions.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("oa_ws_subscriptions").set(total as f64);
        true
    }

    fn unsubscribe(
        &self,
        client: &Arc<Client>,
        user: &AuthenticatedUser,
        symbols: Vec<SymbolRef>,
        request_id: Option<Value>,
    ) {
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        let mut hints = Vec::new();
        {
            let mut session = client.session.lock();
            let mut users = self.users.lock();
            let mut index = self.index.write();
            for entry in symbols {
                let mode = match entry.mode {
                    Ok(mode) => mode,
                    Err(error) => {
                        failed.push(Self::failed_entry(
                            &entry.symbol,
                            &entry.exchange,
                            ErrorCode::InvalidMode,
                            error.to_string(),
                            &user.broker,
                        ));
                        continue;
                    }
                };
                let (Some(symbol), Some(exchange)) = (&entry.symbol, &entry.exchange) else {
                    failed.push(Self::failed_entry(
                        &entry.symbol,
                        &entry.exchange,
                        ErrorCode::InvalidParameters,
                        "each symbol needs \"symbol\" and \"exchange\"".to_string(),
                        &user.broker,
                    ));
                    continue;
                };
                let key = (exchange.clone(), symbol.clone());
                let removed = self.remove_subscription(
                    client.id,
                    &mut session,
                    users.get_mut(&user.user_id),
                    &mut index,
                    (&key, mode),
                    &mut hints,
                );
                if removed {
                    successful.push(json!({"symbol": symbol, "exchange": exchange, "mode": mode.label(), "status": "success", "broker": user.broker}));
                } else {
                    failed.push(json!({"symbol": symbol, "exchange": exchange, "mode": mode.label(), "status": "error", "code": ErrorCode::InvalidParameters.as_str(), "message": format!("Not subscribed to {exchange}:{symbol} in mode {}", mode.label()), "broker": user.broker}));
                }
            }
        }
        self.send_hints(hints);
        let status = match (successful.is_empty(), failed.is_empty()) {
            (_, true) => "success",
            (false, false) => "partial",
            (true, false) => "error",
        };
        client.send_text(protocol::with_request_id(
            json!({
                "type": "unsubscribe",
                "status": status,
                "message": "Unsubscription processing complete",
                "successful": successful,
                "failed": failed,
                "broker": user.broker,
            }),
            &request_id,
        ));
    }

    /// Removes every subscription of a client; returns what was removed.
    fn unsubscribe_all(&self, client: &Arc<Client>) -> Vec<(InstrumentKey, Mode)> {
        let mut removed = Vec::new();
        let mut hints = Vec::new();
        {
            let mut session = client.session.lock();
            let user_id = session.user.as_ref().map(|user| user.user_id.clone());
            let mut users = self.users.lock();
            let mut index = self.index.write();
            let all: Vec<(InstrumentKey, u8)> = session
                .subscriptions
                .iter()
                .map(|(key, mask)| (key.clone(), *mask))
                .collect();
            for (key, mask) in all {
                for mode in ALL_MODES {
                    if mask & mode_bit(mode) != 0 {
                        let user_state = user_id.as_ref().and_then(|id| users.get_mut(id));
                        if self.remove_subscription(
                            client.id,
                            &mut session,
                            user_state,
                            &mut index,
                            (&key, mode),
                            &mut hints,
                        ) {
                            removed.push((key.clone(), mode));
                        }
                    }
                }
            }
        }
        self.send_hints(hints);
        removed
    }

    fn send_hints(&self, hints: Vec<SubscriptionHint>) {
        if let Some(sender) = &self.hints {
            for hint in hints {
                // Hints are advisory: when the feed does not keep up (or stopped), they are
                // dropped rather than queued without bound.
                if let Err(mpsc::error::TrySendError::Full(hint)) = sender.try_send(hint) {
                    metrics::counter!("oa_ws_hints_dropped_total").increment(1);
                    tracing::debug!(exchange = %hint.exchange, symbol = %hint.symbol, "subscription hint dropped: feed adapter is behind");
                }
            }
        }
    }

    /// Fans a tick out to every subscriber of its instrument at the tick's mode or lower.
    pub(crate) fn dispatch(&self, tick: &Tick) {
        self.ticks_dispatched.fetch_add(1, Ordering::Relaxed);
        let index = self.index.read();
        let Some(subs) = index
            .get(&tick.exchange)
            .and_then(|by_symbol| by_symbol.get(&tick.symbol))
        else {
            return;
        };
        let mut rendered: [Option<Utf8Bytes>; 3] = [None, None, None];
        let mut fanned = 0u64;
        let mut conflated = 0u64;
        let mut dropped = 0u64;
        for subscriber in &subs.subscribers {
            // One message per subscribed mode at or below the tick's: a client subscribed to
            // LTP and Depth of one symbol gets both views of a depth tick.
            for mode in ALL_MODES {
                if mode > tick.mode || subscriber.mask & mode_bit(mode) == 0 {
                    continue;
                }
                let slot = &mut rendered[usize::from(mode.code() - 1)];
                let message = slot
                    .get_or_insert_with(|| {
                        Utf8Bytes::from(protocol::market_data(tick, mode, &self.config.broker))
                    })
                    .clone();
                let key: ConflationKey = (u64::from(subs.number) << 2) | u64::from(mode.code());
                match subscriber.client.outbox.push_data(key, message) {
                    Pushed::Queued => fanned += 1,
                    Pushed::Conflated => {
                        fanned += 1;
                        conflated += 1;
                    }
                    Pushed::EvictedOldest => {
                        fanned += 1;
                        dropped += 1;
                    }
                    Pushed::Closed => {}
                }
            }
        }
        drop(index);
        if fanned > 0 {
            self.fanned_out.fetch_add(fanned, Ordering::Relaxed);
            self.fanned_out_counter.increment(fanned);
        }
        if conflated > 0 {
            self.conflated.fetch_add(conflated, Ordering::Relaxed);
            self.conflated_counter.increment(conflated);
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.dropped_counter.increment(dropped);
        }
    }

    /// Ends the sessions of `user_id` that logged in at or before `revoked_at_ms` (the key they
    /// used was rotated or revoked then): an `API_KEY_REVOKED` error, then close code
    /// [`CLOSE_KEY_REVOKED`](crate::ws::CLOSE_KEY_REVOKED). Returns how many were ended.
    pub(crate) fn revoke(&self, user_id: &str, revoked_at_ms: i64) -> usize {
        let sessions: Vec<Arc<Client>> = match self.users.lock().get(user_id) {
            Some(state) => state.sessions.values().cloned().collect(),
            None => return 0,
        };
        let mut ended = 0;
        for client in sessions {
            if client.authenticated_at_ms.load(Ordering::Relaxed) > revoked_at_ms {
                continue;
            }
            client.send_error(&ProtocolError::new(
                ErrorCode::KeyRevoked,
                "The API key of this session was rotated or revoked",
            ));
            client.outbox.push_control(Outgoing::Close(
                crate::ws::CLOSE_KEY_REVOKED,
                "API key revoked",
            ));
            ended += 1;
        }
        if ended > 0 {
            metrics::counter!("oa_sessions_revoked_total", "listener" => "websocket")
                .increment(ended as u64);
            tracing::info!(
                user_id,
                ended,
                "websocket sessions ended: API key rotated or revoked"
            );
        }
        ended
    }

    /// Delivers an `order_update` envelope to its user's clients that subscribed to orders;
    /// a `password_change` ends the user's older sessions.
    pub(crate) fn dispatch_order_event(&self, envelope: &Envelope) {
        if envelope.event_type() == "password_change" {
            self.revoke(&envelope.user_id, envelope.timestamp.timestamp_millis());
            return;
        }
        if envelope.event_type() != "order_update" {
            return;
        }
        let targets: Vec<Arc<Client>> = match self.users.lock().get(&envelope.user_id) {
            Some(state) => state.order_clients.values().cloned().collect(),
            None => return,
        };
        if targets.is_empty() {
            return;
        }
        let mut object = serde_json::Map::new();
        object.insert("type".into(), "order_update".into());
        if let Ok(Value::Object(fields)) = serde_json::to_value(&envelope.data) {
            object.extend(fields);
        }
        object.insert("user_id".into(), envelope.user_id.clone().into());
        let message = Utf8Bytes::from(Value::Object(object).to_string());
        for client in targets {
            client.outbox.push_control(Outgoing::Text(message.clone()));
        }
    }

    /// Proxy-wide counters.
    pub(crate) fn stats(&self) -> ProxyStats {
        ProxyStats {
            clients: self.clients.lock().len() as u64,
            subscriptions: self.subscriptions.load(Ordering::Relaxed).max(0) as u64,
            ticks_dispatched: self.ticks_dispatched.load(Ordering::Relaxed),
            fanned_out: self.fanned_out.load(Ordering::Relaxed),
            conflated: self.conflated.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Per-client counters.
    pub(crate) fn client_stats(&self) -> Vec<ClientStats> {
        let clients: Vec<Arc<Client>> = self.clients.lock().values().cloned().collect();
        let mut stats: Vec<ClientStats> = clients
            .iter()
            .map(|client| {
                let session = client.session.lock();
                ClientStats {
                    id: client.id,
                    user_id: session.user.as_ref().map(|user| user.user_id.clone()),
                    subscriptions: session
                        .subscriptions
                        .values()
                        .map(|mask| mask.count_ones() as usize)
                        .sum(),
                    outbox: client.outbox.stats(),
                }
            })
            .collect();
        stats.sort_by_key(|s| s.id);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_mode_follows_the_hierarchy() {
        let ltp_and_depth = mode_bit(Mode::Ltp) | mode_bit(Mode::Depth);
        assert_eq!(best_mode(ltp_and_depth, Mode::Depth), Some(Mode::Depth));
        assert_eq!(best_mode(ltp_and_depth, Mode::Quote), Some(Mode::Ltp));
        assert_eq!(best_mode(mode_bit(Mode::Depth), Mode::Quote), None);
        assert_eq!(best_mode(0, Mode::Depth), None);
    }
}
