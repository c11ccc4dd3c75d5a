//! A broker adapter written outside the crate plugs in as the live broker.

mod common;

use std::sync::Arc;

use oa_api::Journal;
use oa_api::broker::{Broker, BrokerFuture, EngineBroker, FundsView, PositionView};
use oa_api::engine::{CancelAllOutcome, ModifyOrder, NewOrder, Order, PlaceOutcome, Trade};
use oa_api::{StaticPrices, StaticSymbols};
use oa_events_core::EventPublisher;
use serde_json::{Value, json};

/// A "paper" adapter: delegates to the engine but answers under its own name, and counts
/// the orders it sees, as an adapter translating to a broker API would.
struct Paper {
    inner: EngineBroker,
    placed: Arc<std::sync::atomic::AtomicU64>,
}

/// Broker methods that `Paper` hands to its engine unchanged.
macro_rules! forward {
    ($($method:ident($($arg:ident: $type:ty),* $(,)?) -> $output:ty;)*) => {
        $(
            fn $method(&self, $($arg: $type),*) -> BrokerFuture<'_, $output> {
                self.inner.$method($($arg),*)
            }
        )*
    };
}

impl Broker for Paper {
    fn name(&self) -> &'static str {
        "paper"
    }
    fn place_order(
        &self,
        order: NewOrder,
        journal: Journal<PlaceOutcome>,
    ) -> BrokerFuture<'_, PlaceOutcome> {
        self.placed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.place_order(order, journal)
    }
    forward! {
        modify_order(user_id: &str, change: ModifyOrder, journal: Journal<String>) -> String;
        cancel_order(user_id: &str, orderid: &str, journal: Journal<String>) -> String;
        cancel_all_orders(user_id: &str, journal: Journal<CancelAllOutcome>) -> CancelAllOutcome;
        close_positions(
            user_id: &str,
            strategy: &str,
            journal: Journal<Vec<PlaceOutcome>>
        ) -> Vec<PlaceOutcome>;
        order_book(user_id: &str) -> Vec<Order>;
        order_status(user_id: &str, orderid: &str) -> Order;
        trade_book(user_id: &str) -> Vec<Trade>;
        position_book(user_id: &str) -> Vec<PositionView>;
        funds(user_id: &str) -> FundsView;
    }
}

#[tokio::test]
async fn a_custom_live_broker_serves_live_mode() {
    let dir = common::store_dir();
    let config = common::store_config(&dir);
    let prices = common::sbin_prices();
    let placed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&placed);
    let api = oa_api::build_with_broker(
        config,
        EventPublisher::builder().build(),
        prices,
        Arc::new(StaticSymbols::new().with("NSE", "SBIN", 1.0)),
        Box::new(move |engine| {
            Arc::new(Paper {
                inner: EngineBroker::simulator(engine, Default::default()),
                placed: counter,
            })
        }),
    )
    .await
    .unwrap();
    let key = api.ensure_default_user().await.unwrap().unwrap();
    let user = api.verifier().verify(&key).await.unwrap().unwrap();
    assert_eq!(
        (user.user_id.as_str(), user.broker.as_str()),
        ("admin", "paper")
    );

    let url = format!("{}/api/v1", common::serve(api.router()).await);
    let client = reqwest::Client::new();
    let ping: Value =
        common::post_json(&client, &format!("{url}/ping"), &json!({"apikey": key})).await;
    assert_eq!(ping["data"]["broker"], "paper");
    let placed_body: Value = common::post_json(
        &client,
        &format!("{url}/placeorder"),
        &json!({"apikey": key, "strategy": "s", "exchange": "NSE", "symbol": "SBIN",
                      "action": "BUY", "quantity": 1}),
    )
    .await;
    assert_eq!(placed_body["status"], "success", "{placed_body}");
    assert_eq!(placed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_panicking_job_fails_alone_and_the_engine_keeps_serving() {
    let dir = common::store_dir();
    let config = common::store_config(&dir);
    let prices = StaticPrices::new();
    prices.set("NSE", "SBIN", 800.0, None, None);
    let slot: Arc<std::sync::Mutex<Option<oa_api::EngineHandle>>> = Arc::default();
    let keep = Arc::clone(&slot);
    let api = oa_api::build_with_broker(
        config,
        EventPublisher::builder().build(),
        Arc::new(prices),
        Arc::new(StaticSymbols::new().with("NSE", "SBIN", 1.0)),
        Box::new(move |engine| {
            *keep.lock().unwrap() = Some(engine.clone());
            Arc::new(EngineBroker::simulator(engine, Default::default()))
        }),
    )
    .await
    .unwrap();
    let engine = slot.lock().unwrap().clone().unwrap();
    let failed = engine.run(|_| -> u32 { panic!("a bug in a job") }).await;
    assert!(failed.is_err());
    let request = serde_json::Map::from_iter([
        ("strategy".to_string(), json!("s")),
        ("exchange".to_string(), json!("NSE")),
        ("symbol".to_string(), json!("SBIN")),
        ("action".to_string(), json!("BUY")),
        ("quantity".to_string(), json!(1)),
    ]);
    let fields = oa_api::Fields::new(request, oa_api::requests::PLACE_ORDER_FIELDS).unwrap();
    let order = oa_api::requests::PlaceOrder::read(&fields).unwrap();
    let placed = api
        .service()
        .place_order("admin", order, fields.without_apikey())
        .await
        .unwrap();
    assert!(!placed.body().orderid.is_empty(), "{placed:?}");
}
