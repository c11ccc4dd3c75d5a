//! A risk service: reads oa's order events from Kafka and prints each user's running exposure
//! as orders are placed and filled.
//!
//! Run with:
//!
//! ```not_rust
//! cargo xtask kafka up                                 # a local broker with oa's topics (127.0.0.1:9092)
//! ORDER_EVENT_MODE=KAFKA cargo run -p oa-server        # oa, publishing its events to that broker
//! cargo run -p oa-events-kafka --example risk_service  # this service, in another terminal
//! ```
//!
//! then place orders over REST (`POST http://127.0.0.1:5000/api/v1/placeorder` with an API key;
//! docs/kafka.md, "Reading oa's order events from another service"). The service reads the same
//! `KAFKA_*` variables as oa (`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_ORDER_EVENTS_TOPIC`,
//! `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*`), so it connects wherever oa
//! publishes, with the same TLS/SASL settings.
//!
//! **Exposure** of a user is the signed notional of their fills: the sum over the user's
//! orders of `filled_quantity × average_price`, positive for BUY and negative for SELL, each
//! order counted by its latest `order_update` event (so a partial fill that completes later is
//! not counted twice). Positions are the signed filled quantity per `EXCHANGE:SYMBOL`.
//! An `order_event` (an order placed) prints a `placed` line; an `order_update` that changes
//! the user's fills prints the user's new exposure:
//!
//! ```text
//! placed user=alice orderid=25120100000001 BUY NSE:SBIN MARKET
//! exposure user=alice orders=1 notional=+1625.40 positions=NSE:SBIN:+2
//! ```
//!
//! The exposure is derived state kept in memory, so the service rebuilds it from the whole
//! topic on every start ([`StartPosition::Earliest`], offsets in a [`MemoryOffsetStore`]). A
//! service that keeps its state in a database would store its offsets with it
//! (`SqliteOffsetStore::save_in` in the same transaction) and start from
//! `StartPosition::Stored`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use oa_events_core::EventPayload;
use oa_events_core::catalog::{OrderEvent, OrderUpdate};
use oa_events_kafka::{KafkaConfig, MemoryOffsetStore, OrderEventConsumer, StartPosition};

/// One order's fills, from its latest `order_update`.
#[derive(Debug, Clone, PartialEq)]
struct Fill {
    /// `EXCHANGE:SYMBOL`.
    instrument: String,
    /// Filled quantity, negative for SELL.
    signed_quantity: f64,
    average_price: f64,
}

impl Fill {
    fn of(update: &OrderUpdate) -> Fill {
        let sign = if update.action.eq_ignore_ascii_case("SELL") {
            -1.0
        } else {
            1.0
        };
        Fill {
            instrument: format!("{}:{}", update.exchange, update.symbol),
            signed_quantity: sign * update.filled_quantity.value(),
            average_price: update.average_price,
        }
    }

    fn notional(&self) -> f64 {
        self.signed_quantity * self.average_price
    }
}

/// Every user's fills, by order id.
#[derive(Debug, Default)]
struct Book {
    fills: HashMap<String, BTreeMap<String, Fill>>,
}

impl Book {
    /// Records an order's latest state; true when the user's fills changed.
    fn apply(&mut self, user: &str, update: &OrderUpdate) -> bool {
        let fill = Fill::of(update);
        let orders = self.fills.entry(user.to_string()).or_default();
        if fill.signed_quantity == 0.0 && !orders.contains_key(&update.orderid) {
            return false; // nothing filled yet
        }
        orders.insert(update.orderid.clone(), fill.clone()) != Some(fill)
    }

    /// `exposure user=<user> orders=<filled orders> notional=<signed> positions=<instrument>:<qty>,...`
    fn exposure_line(&self, user: &str) -> String {
        let orders = self.fills.get(user);
        let filled = orders.map_or(0, |orders| {
            orders
                .values()
                .filter(|fill| fill.signed_quantity != 0.0)
                .count()
        });
        let notional: f64 = orders.map_or(0.0, |orders| orders.values().map(Fill::notional).sum());
        let mut positions: BTreeMap<&str, f64> = BTreeMap::new();
        for fill in orders.into_iter().flat_map(BTreeMap::values) {
            *positions.entry(&fill.instrument).or_default() += fill.signed_quantity;
        }
        let positions: Vec<String> = positions
            .iter()
            .map(|(instrument, quantity)| format!("{instrument}:{quantity:+}"))
            .collect();
        format!(
            "exposure user={user} orders={filled} notional={notional:+.2} positions={}",
            positions.join(",")
        )
    }
}

fn placed_line(user: &str, order: &OrderEvent) -> String {
    format!(
        "placed user={user} orderid={} {} {}:{} {}",
        order.orderid, order.action, order.exchange, order.symbol, order.price_type
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Broker problems are logged here (and retried by the consumer).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let config = KafkaConfig::from_env().context("reading the KAFKA_* settings")?;
    eprintln!(
        "risk service: reading {} on {} from the earliest record",
        config.order_events_topic,
        config.bootstrap_list()
    );
    let mut events = OrderEventConsumer::start(
        config,
        Arc::new(MemoryOffsetStore::new()),
        StartPosition::Earliest,
    )?;
    let mut book = Book::default();
    loop {
        let item = tokio::select! {
            item = events.next() => item,
            _ = tokio::signal::ctrl_c() => break,
        };
        let Some(item) = item else { break };
        let event = match item {
            Ok(event) => event,
            Err(undecodable) => {
                // Reported, then passed: one bad record must not stop the risk view.
                eprintln!("risk service: {undecodable}");
                continue;
            }
        };
        let user = &event.envelope.user_id;
        match &event.envelope.data {
            EventPayload::OrderEvent(order) => println!("{}", placed_line(user, order)),
            EventPayload::OrderUpdate(update) if book.apply(user, update) => {
                println!("{}", book.exposure_line(user));
            }
            _ => {}
        }
    }
    events.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
