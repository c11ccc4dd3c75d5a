//! The hub: what a client's requests do. It owns the [`Registry`] (clients and users), the
//! [`SubscriptionIndex`] and the [`FanOut`], and answers every request with a reply built in
//! [`protocol`].
//!
//! The dispatcher takes the index's read lock per tick; subscription changes take the write
//! lock briefly.
//!
//! Lock order: session, then users, then index.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use oa_events_core::{ApiKeyVerifier, AuthenticatedUser, Envelope};
use oa_marketdata_core::symbols::{EXCHANGES, SymbolMaster, is_known_exchange};
use oa_marketdata_core::tick::{Tick, TickMode, now_ms};
use oa_net::LoginLimiter;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::feed::SubscriptionHint;
use crate::ws::fanout::FanOut;
use crate::ws::protocol::{self, ErrorCode, ProtocolError, Request, SymbolRef};
use crate::ws::registry::{Client, ClientStats, Registry, Session, UserState};
use crate::ws::send_queue::Outgoing;
use crate::ws::subscriptions::{InstrumentKey, SubscriptionIndex, TickModeSet};

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
    /// Ticks replaced in send queues by newer ones.
    pub conflated: u64,
    /// Ticks evicted from full send queues.
    pub dropped: u64,
}

/// Shared state of the WebSocket proxy.
pub(crate) struct Hub {
    config: HubConfig,
    symbols: Arc<SymbolMaster>,
    verifier: Arc<dyn ApiKeyVerifier>,
    registry: Registry,
    index: RwLock<SubscriptionIndex>,
    fanout: FanOut,
    hints: Option<mpsc::Sender<SubscriptionHint>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one subscription change did to the feed adapter's view, collected while the locks are
/// held and sent after.
type Hints = Vec<SubscriptionHint>;

impl Hub {
    pub(crate) fn new(
        config: HubConfig,
        symbols: Arc<SymbolMaster>,
        verifier: Arc<dyn ApiKeyVerifier>,
        hints: Option<mpsc::Sender<SubscriptionHint>>,
    ) -> Self {
        Hub {
            registry: Registry::new(config.max_queue, config.control_limit),
            fanout: FanOut::new(config.broker.clone()),
            config,
            symbols,
            verifier,
            index: RwLock::new(SubscriptionIndex::default()),
            hints,
        }
    }

    /// Registers a new connection from `ip`.
    pub(crate) fn register(&self, ip: IpAddr) -> Arc<Client> {
        self.registry.register(ip)
    }

    /// Forgets a connection and all its subscriptions.
    pub(crate) fn unregister(&self, client: &Arc<Client>) {
        self.unsubscribe_all(client);
        self.registry.remove(client);
        let stats = client.queue.stats();
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
        for client in self.registry.clients() {
            client.queue.push_control(Outgoing::Close(code, reason));
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
            Request::GetSupportedBrokers => {
                client.send_text(protocol::supported_brokers(&[self.config.broker.as_str()]));
            }
            other => {
                let user = client.session().user.clone();
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
                        let successful = self
                            .unsubscribe_all(client)
                            .iter()
                            .map(|(key, mode)| {
                                protocol::unsubscribed(
                                    &key.exchange,
                                    &key.symbol,
                                    *mode,
                                    &user.broker,
                                )
                            })
                            .collect();
                        client.send_text(protocol::unsubscribe_reply(
                            successful,
                            Vec::new(),
                            &user.broker,
                            &request_id,
                        ));
                    }
                    Request::SubscribeOrders { request_id } => {
                        client.session().orders = true;
                        self.registry
                            .users()
                            .entry(user.user_id.clone())
                            .or_default()
                            .order_clients
                            .insert(client.id, Arc::clone(client));
                        client.send_text(protocol::subscribe_orders_reply(
                            &user.user_id,
                            &user.broker,
                            &request_id,
                        ));
                    }
                    Request::UnsubscribeOrders { request_id } => {
                        client.session().orders = false;
                        if let Some(state) = self.registry.users().get_mut(&user.user_id) {
                            state.order_clients.remove(&client.id);
                        }
                        client.send_text(protocol::unsubscribe_orders_reply(
                            &user.broker,
                            &request_id,
                        ));
                    }
                    Request::GetBrokerInfo => {
                        client.send_text(protocol::broker_info(&user.broker, &user.user_id));
                    }
                    Request::Authenticate { .. }
                    | Request::Ping { .. }
                    | Request::GetSupportedBrokers => {}
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
                let previous = client.session().user.clone();
                if let Some(previous) = previous
                    && previous.user_id != user.user_id
                {
                    // Switching users: nothing of the previous user may leak.
                    self.unsubscribe_all(client);
                    if let Some(state) = self.registry.users().get_mut(&previous.user_id) {
                        state.forget(client.id);
                    }
                    client.session().orders = false;
                    client.session().user = None;
                }
                {
                    let mut users = self.registry.users();
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
                client.session().user = Some(user);
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
                    EXCHANGES.join(", ")
                ),
            ));
        }
        if !self.symbols.contains(exchange, symbol) {
            return Err((
                ErrorCode::SymbolNotFound,
                format!("Symbol {exchange}:{symbol} not found in the master contract"),
            ));
        }
        Ok(InstrumentKey {
            exchange: exchange.clone(),
            symbol: symbol.clone(),
        })
    }

    fn subscribe(
        &self,
        client: &Arc<Client>,
        user: &AuthenticatedUser,
        symbols: Vec<SymbolRef>,
        mode: TickMode,
        depth: u64,
        request_id: Option<Value>,
    ) {
        let capacity = self.config.capacity_per_user();
        let mut results = Vec::with_capacity(symbols.len());
        let mut failed = false;
        let mut capacity_hit = false;
        let mut hints = Hints::new();
        {
            let mut session = client.session();
            let mut users = self.registry.users();
            let user_state = users.entry(user.user_id.clone()).or_default();
            let mut index = self.index.write();
            for entry in &symbols {
                let key = match self.validate(entry) {
                    Ok(key) => key,
                    Err((code, message)) => {
                        failed = true;
                        results.push(protocol::symbol_failed(
                            &entry.symbol,
                            &entry.exchange,
                            code,
                            &message,
                            &user.broker,
                        ));
                        continue;
                    }
                };
                let modes = session.subscriptions.get(&key).copied().unwrap_or_default();
                if !modes.contains(mode) {
                    if modes.is_empty() {
                        // A new instrument for this connection: check the user's capacity.
                        if !user_state.instruments.contains_key(&key)
                            && user_state.instruments.len() >= capacity
                        {
                            failed = true;
                            capacity_hit = true;
                            results.push(protocol::symbol_failed(
                                &entry.symbol,
                                &entry.exchange,
                                ErrorCode::MaxCapacityReached,
                                &format!(
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
                    session.subscriptions.insert(key.clone(), modes.with(mode));
                    hints.extend(index.add(&key, client, mode));
                }
                results.push(protocol::subscribed(
                    &key.exchange,
                    &key.symbol,
                    mode,
                    depth,
                    &user.broker,
                ));
            }
        }
        self.send_hints(hints);
        if capacity_hit {
            client.send_error(
                &ProtocolError::new(
                    ErrorCode::MaxCapacityReached,
                    format!(
                        "Maximum capacity reached ({capacity} symbols per user); some symbols were not subscribed"
                    ),
                )
                .with_request_id(&request_id),
            );
        }
        client.send_text(protocol::subscribe_reply(
            results,
            failed,
            &user.broker,
            &request_id,
        ));
    }

    /// Removes one (instrument, mode) of a client. Caller holds session, users and index.
    fn remove_subscription(
        client_id: u64,
        session: &mut Session,
        user_state: Option<&mut UserState>,
        index: &mut SubscriptionIndex,
        (key, mode): (&InstrumentKey, TickMode),
        hints: &mut Hints,
    ) -> bool {
        let Some(modes) = session.subscriptions.get(key).copied() else {
            return false;
        };
        if !modes.contains(mode) {
            return false;
        }
        let remaining = modes.without(mode);
        if remaining.is_empty() {
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
        hints.extend(index.remove(key, client_id, remaining));
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
        let mut hints = Hints::new();
        {
            let mut session = client.session();
            let mut users = self.registry.users();
            let mut index = self.index.write();
            for entry in symbols {
                let mode = match entry.mode {
                    Ok(mode) => mode,
                    Err(error) => {
                        failed.push(protocol::symbol_failed(
                            &entry.symbol,
                            &entry.exchange,
                            ErrorCode::InvalidMode,
                            &error.to_string(),
                            &user.broker,
                        ));
                        continue;
                    }
                };
                let (Some(symbol), Some(exchange)) = (&entry.symbol, &entry.exchange) else {
                    failed.push(protocol::symbol_failed(
                        &entry.symbol,
                        &entry.exchange,
                        ErrorCode::InvalidParameters,
                        "each symbol needs \"symbol\" and \"exchange\"",
                        &user.broker,
                    ));
                    continue;
                };
                let key = InstrumentKey {
                    exchange: exchange.clone(),
                    symbol: symbol.clone(),
                };
                // Whether it was subscribed or not, success, as upstream's unsubscribe_client
                // answers.
                Self::remove_subscription(
                    client.id,
                    &mut session,
                    users.get_mut(&user.user_id),
                    &mut index,
                    (&key, mode),
                    &mut hints,
                );
                successful.push(protocol::unsubscribed(exchange, symbol, mode, &user.broker));
            }
        }
        self.send_hints(hints);
        client.send_text(protocol::unsubscribe_reply(
            successful,
            failed,
            &user.broker,
            &request_id,
        ));
    }

    /// Removes every subscription of a client; returns what was removed.
    fn unsubscribe_all(&self, client: &Arc<Client>) -> Vec<(InstrumentKey, TickMode)> {
        let mut removed = Vec::new();
        let mut hints = Hints::new();
        {
            let mut session = client.session();
            let user_id = session.user.as_ref().map(|user| user.user_id.clone());
            let mut users = self.registry.users();
            let mut index = self.index.write();
            let all: Vec<(InstrumentKey, TickModeSet)> = session
                .subscriptions
                .iter()
                .map(|(key, modes)| (key.clone(), *modes))
                .collect();
            for (key, modes) in all {
                for mode in modes.iter() {
                    let user_state = user_id.as_ref().and_then(|id| users.get_mut(id));
                    if Self::remove_subscription(
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
        self.send_hints(hints);
        removed
    }

    fn send_hints(&self, hints: Hints) {
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
        self.fanout.tick(&self.index.read(), tick);
    }

    /// Ends the sessions of `user_id` that logged in at or before `revoked_at_ms` (the key they
    /// used was rotated or revoked then): an `API_KEY_REVOKED` error, then close code
    /// [`CLOSE_KEY_REVOKED`](crate::ws::CLOSE_KEY_REVOKED). Returns how many were ended.
    pub(crate) fn revoke(&self, user_id: &str, revoked_at_ms: i64) -> usize {
        let mut ended = 0;
        for client in self.registry.sessions_of(user_id) {
            if client.authenticated_at_ms.load(Ordering::Relaxed) > revoked_at_ms {
                continue;
            }
            client.send_error(&ProtocolError::new(
                ErrorCode::KeyRevoked,
                "The API key of this session was rotated or revoked",
            ));
            client.queue.push_control(Outgoing::Close(
                crate::ws::CLOSE_KEY_REVOKED,
                "API key revoked",
            ));
            ended += 1;
        }
        if ended > 0 {
            oa_events_core::auth::record_revoked_sessions("websocket", user_id, ended);
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
        let targets = self.registry.order_clients_of(&envelope.user_id);
        if targets.is_empty() {
            return;
        }
        self.fanout
            .control(&targets, protocol::order_update(envelope));
    }

    /// Sends an order update relayed from the bus (already the client-facing message) to the
    /// user's clients that subscribed to orders.
    pub(crate) fn relay_order_update(&self, user_id: &str, message: String) {
        let targets = self.registry.order_clients_of(user_id);
        if !targets.is_empty() {
            self.fanout.control(&targets, message);
        }
    }

    /// Proxy-wide counters.
    pub(crate) fn stats(&self) -> ProxyStats {
        let counts = self.fanout.counts();
        ProxyStats {
            clients: self.registry.len() as u64,
            subscriptions: self.index.read().len(),
            ticks_dispatched: counts.ticks_dispatched,
            fanned_out: counts.fanned_out,
            conflated: counts.conflated,
            dropped: counts.dropped,
        }
    }

    /// Per-client counters, by connection id.
    pub(crate) fn client_stats(&self) -> Vec<ClientStats> {
        let mut stats: Vec<ClientStats> = self
            .registry
            .clients()
            .iter()
            .map(|client| client.stats())
            .collect();
        stats.sort_by_key(|s| s.id);
        stats
    }
}
