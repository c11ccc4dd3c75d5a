//! Fan-out: a tick to every subscriber of its instrument, an order update to its user's
//! clients.
//!
//! ```text
//! tick ──▶ index[(exchange, symbol)] ──▶ [(client, modes)] ──▶ render once per mode ──▶ send queues
//! ```
//!
//! A tick of mode M reaches every client subscribed to its instrument at mode M or lower as
//! one message, tagged with the highest mode the client subscribed at or below M (upstream
//! websocket_proxy/server.py `zmq_listener`): a client subscribed to LTP, Quote and Depth of
//! one symbol receives one Depth message per depth tick, not three. Each tick is serialised
//! at most once per mode (1-3 times) and the resulting [`Utf8Bytes`] is shared by every
//! subscriber (a reference-count increment per client). Pushing to a send queue never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::Utf8Bytes;
use oa_marketdata_core::tick::Tick;

use crate::ws::protocol;
use crate::ws::registry::Client;
use crate::ws::send_queue::{ConflationKey, Outgoing, Pushed};
use crate::ws::subscriptions::SubscriptionIndex;

/// Delivers ticks and order updates, and counts what it delivered.
#[derive(Debug)]
pub(crate) struct FanOut {
    /// The broker named in `market_data` messages.
    broker: String,
    ticks_dispatched: AtomicU64,
    fanned_out: AtomicU64,
    conflated: AtomicU64,
    dropped: AtomicU64,
    fanned_out_counter: metrics::Counter,
    conflated_counter: metrics::Counter,
    dropped_counter: metrics::Counter,
}

/// What [`FanOut`] has delivered so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FanOutCounts {
    pub ticks_dispatched: u64,
    pub fanned_out: u64,
    pub conflated: u64,
    pub dropped: u64,
}

impl FanOut {
    /// A fan-out naming `broker` in its `market_data` messages.
    pub fn new(broker: String) -> Self {
        FanOut {
            broker,
            ticks_dispatched: AtomicU64::new(0),
            fanned_out: AtomicU64::new(0),
            conflated: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            fanned_out_counter: metrics::counter!("oa_ticks_fanned_out_total"),
            conflated_counter: metrics::counter!("oa_ticks_conflated_total"),
            dropped_counter: metrics::counter!("oa_ticks_dropped_total", "reason" => "client_outbox_full"),
        }
    }

    /// Fans a tick out to every subscriber of its instrument at the tick's mode or lower: one
    /// message per client, at the client's highest subscribed mode up to the tick's.
    pub fn tick(&self, index: &SubscriptionIndex, tick: &Tick) {
        self.ticks_dispatched.fetch_add(1, Ordering::Relaxed);
        let Some(subs) = index.get(&tick.exchange, &tick.symbol) else {
            return;
        };
        let mut rendered: [Option<Utf8Bytes>; 3] = [None, None, None];
        let mut fanned = 0u64;
        let mut conflated = 0u64;
        let mut dropped = 0u64;
        for subscriber in &subs.subscribers {
            let Some(mode) = subscriber.modes.best(tick.mode) else {
                continue;
            };
            let slot = &mut rendered[usize::from(mode.code() - 1)];
            let message = slot
                .get_or_insert_with(|| {
                    Utf8Bytes::from(protocol::market_data(tick, mode, &self.broker))
                })
                .clone();
            // Conflated per (instrument, mode): a newer LTP message never replaces a queued
            // Depth one, whose book the client would otherwise miss.
            let key: ConflationKey = (u64::from(subs.number) << 2) | u64::from(mode.code());
            match subscriber.client.queue.push_data(key, message) {
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

    /// Queues one rendered control message (an order update) to each of `targets`.
    pub fn control(&self, targets: &[Arc<Client>], message: String) {
        let message = Utf8Bytes::from(message);
        for client in targets {
            client.queue.push_control(Outgoing::Text(message.clone()));
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> FanOutCounts {
        FanOutCounts {
            ticks_dispatched: self.ticks_dispatched.load(Ordering::Relaxed),
            fanned_out: self.fanned_out.load(Ordering::Relaxed),
            conflated: self.conflated.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}
