//! The subscription index: for each instrument, the clients subscribed to it and at which
//! modes. Read by the fan-out for every tick, changed by subscribe and unsubscribe requests.
//!
//! Each instrument gets a number when its first subscriber arrives; the fan-out uses it with
//! the mode as the send queue conflation key.

use std::collections::HashMap;
use std::sync::Arc;

use oa_marketdata_core::tick::{ALL_MODES, TickMode};

use crate::feed::SubscriptionHint;
use crate::ws::registry::Client;

/// One instrument, as subscriptions name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct InstrumentKey {
    pub exchange: String,
    pub symbol: String,
}

/// A set of modes, as a bit mask (bit `code - 1` for each mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TickModeSet(u8);

impl TickModeSet {
    fn bit(mode: TickMode) -> u8 {
        1 << (mode.code() - 1)
    }

    /// True when no mode is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when `mode` is in the set.
    pub fn contains(self, mode: TickMode) -> bool {
        self.0 & Self::bit(mode) != 0
    }

    /// The set with `mode` added.
    pub fn with(self, mode: TickMode) -> TickModeSet {
        TickModeSet(self.0 | Self::bit(mode))
    }

    /// The set with `mode` removed.
    pub fn without(self, mode: TickMode) -> TickModeSet {
        TickModeSet(self.0 & !Self::bit(mode))
    }

    /// How many modes are in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The modes in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = TickMode> {
        ALL_MODES
            .into_iter()
            .filter(move |mode| self.contains(*mode))
    }

    /// The highest mode in the set that is at most `limit`.
    pub fn best(self, limit: TickMode) -> Option<TickMode> {
        ALL_MODES
            .iter()
            .rev()
            .find(|mode| **mode <= limit && self.contains(**mode))
            .copied()
    }

    /// The highest mode in the set.
    pub fn highest(self) -> Option<TickMode> {
        self.best(TickMode::Depth)
    }
}

/// One client subscribed to an instrument.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub client: Arc<Client>,
    pub modes: TickModeSet,
}

/// The subscribers of one instrument.
#[derive(Debug)]
pub(crate) struct InstrumentSubscribers {
    /// The instrument's number (part of the conflation key).
    pub number: u32,
    pub subscribers: Vec<Subscriber>,
}

impl InstrumentSubscribers {
    /// The highest mode any subscriber wants: what the feed adapter must deliver.
    fn max_mode(&self) -> Option<TickMode> {
        self.subscribers
            .iter()
            .fold(TickModeSet::default(), |all, s| {
                TickModeSet(all.0 | s.modes.0)
            })
            .highest()
    }
}

/// Exchange, then symbol, to subscribers: looked up by `&str` without allocating.
#[derive(Debug)]
pub(crate) struct SubscriptionIndex {
    by_exchange: HashMap<String, HashMap<String, InstrumentSubscribers>>,
    next_instrument: u32,
    /// Subscriptions (client x instrument x mode).
    total: u64,
}

impl Default for SubscriptionIndex {
    fn default() -> Self {
        SubscriptionIndex {
            by_exchange: HashMap::new(),
            next_instrument: 1,
            total: 0,
        }
    }
}

impl SubscriptionIndex {
    /// The subscribers of one instrument.
    pub fn get(&self, exchange: &str, symbol: &str) -> Option<&InstrumentSubscribers> {
        self.by_exchange
            .get(exchange)
            .and_then(|by_symbol| by_symbol.get(symbol))
    }

    /// Subscriptions (client x instrument x mode).
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Adds `mode` of `key` for `client` (not yet subscribed to it). Returns the hint for the
    /// feed adapter when the instrument's highest wanted mode changed.
    pub fn add(
        &mut self,
        key: &InstrumentKey,
        client: &Arc<Client>,
        mode: TickMode,
    ) -> Option<SubscriptionHint> {
        let subs = self
            .by_exchange
            .entry(key.exchange.clone())
            .or_default()
            .entry(key.symbol.clone())
            .or_insert_with(|| {
                let number = self.next_instrument;
                self.next_instrument = self.next_instrument.wrapping_add(1);
                InstrumentSubscribers {
                    number,
                    subscribers: Vec::new(),
                }
            });
        let before = subs.max_mode();
        match subs
            .subscribers
            .iter_mut()
            .find(|s| s.client.id == client.id)
        {
            Some(subscriber) => subscriber.modes = subscriber.modes.with(mode),
            None => subs.subscribers.push(Subscriber {
                client: Arc::clone(client),
                modes: TickModeSet::default().with(mode),
            }),
        }
        let after = subs.max_mode();
        self.total += 1;
        metrics::gauge!("oa_ws_subscriptions").set(self.total as f64);
        (after != before).then(|| hint(key, after))
    }

    /// Removes one mode of `key` for client `client_id`, whose modes of it are now
    /// `remaining`. Returns the hint for the feed adapter when the instrument's highest wanted
    /// mode changed.
    pub fn remove(
        &mut self,
        key: &InstrumentKey,
        client_id: u64,
        remaining: TickModeSet,
    ) -> Option<SubscriptionHint> {
        let mut changed = None;
        if let Some(by_symbol) = self.by_exchange.get_mut(&key.exchange) {
            if let Some(subs) = by_symbol.get_mut(&key.symbol) {
                let before = subs.max_mode();
                if remaining.is_empty() {
                    subs.subscribers.retain(|s| s.client.id != client_id);
                } else if let Some(s) = subs
                    .subscribers
                    .iter_mut()
                    .find(|s| s.client.id == client_id)
                {
                    s.modes = remaining;
                }
                let after = subs.max_mode();
                if after != before {
                    changed = Some(hint(key, after));
                }
                if subs.subscribers.is_empty() {
                    by_symbol.remove(&key.symbol);
                }
            }
            if by_symbol.is_empty() {
                self.by_exchange.remove(&key.exchange);
            }
        }
        self.total = self.total.saturating_sub(1);
        metrics::gauge!("oa_ws_subscriptions").set(self.total as f64);
        changed
    }
}

fn hint(key: &InstrumentKey, mode: Option<TickMode>) -> SubscriptionHint {
    SubscriptionHint {
        exchange: key.exchange.clone(),
        symbol: key.symbol.clone(),
        mode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_mode_follows_the_hierarchy() {
        let ltp_and_depth = TickModeSet::default()
            .with(TickMode::Ltp)
            .with(TickMode::Depth);
        assert_eq!(ltp_and_depth.best(TickMode::Depth), Some(TickMode::Depth));
        assert_eq!(ltp_and_depth.best(TickMode::Quote), Some(TickMode::Ltp));
        assert_eq!(
            TickModeSet::default()
                .with(TickMode::Depth)
                .best(TickMode::Quote),
            None
        );
        assert_eq!(TickModeSet::default().best(TickMode::Depth), None);
        assert_eq!(
            ltp_and_depth.iter().collect::<Vec<_>>(),
            [TickMode::Ltp, TickMode::Depth]
        );
        assert_eq!(ltp_and_depth.without(TickMode::Ltp).len(), 1);
    }
}
