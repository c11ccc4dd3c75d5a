//! Leadership of `core` processes on one PostgreSQL store (`oa_api::leadership`): a standby
//! refuses writes until it leads; a leader whose epoch was taken over is fenced (its write
//! fails, nothing of it is stored) and stands by; when a leader's lock session ends, a
//! standby takes over and reloads what the old leader committed. Two real order engines on
//! one real PostgreSQL database; the takeover is real (the lock session is closed).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{StoreDir, postgres_store_dir, serve};
use oa_api::leadership::{LeaderState, Leadership};
use oa_api::{Api, ApiConfig};
use oa_events_core::EventPublisher;
use oa_marketdata_core::{PriceCache, SymbolMaster};
use serde_json::{Value, json};

/// One core: an API on the shared store, started as a standby.
struct Core {
    url: String,
    api: Api,
    prices: PriceCache,
    client: reqwest::Client,
}

async fn start_core(dir: &StoreDir) -> Core {
    let config = ApiConfig {
        standby: true,
        order_rate_limit: "1000 per second".to_string(),
        api_rate_limit: "1000 per second".to_string(),
        ..common::store_config(dir)
    };
    let prices = PriceCache::new();
    let api = oa_api::build(
        config,
        EventPublisher::builder().build(),
        prices.clone(),
        Arc::new(SymbolMaster::bundled()),
    )
    .await
    .unwrap();
    let url = serve(api.router()).await;
    let core = Core {
        url,
        api,
        prices,
        client: reqwest::Client::new(),
    };
    core.prices
        .update(&common::depth_tick("NSE", "SBIN", 812.5, 812.4, 812.6));
    core
}

impl Core {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, text) =
            common::post_text(&self.client, &format!("{}/api/v1/{path}", self.url), &body).await;
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn place(&self, key: &str) -> (u16, Value) {
        self.post(
            "placeorder",
            json!({"apikey": key, "strategy": "test", "exchange": "NSE", "symbol": "SBIN",
                   "action": "BUY", "quantity": "1", "pricetype": "MARKET", "product": "MIS"}),
        )
        .await
    }

    async fn order_ids(&self, key: &str) -> Vec<String> {
        let (status, book) = self.post("orderbook", json!({"apikey": key})).await;
        assert_eq!(status, 200, "{book}");
        book["data"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|order| order["orderid"].as_str().unwrap().to_string())
            .collect()
    }

    fn campaign(&self, dir: &StoreDir, holder: &str) -> Leadership {
        Leadership::campaign(
            &dir.location(),
            holder.to_string(),
            self.api.service().engine().clone(),
        )
        .unwrap()
    }
}

async fn lead(leadership: &mut Leadership) -> i64 {
    tokio::time::timeout(Duration::from_secs(30), leadership.leading())
        .await
        .expect("took the lead within 30 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_leads_only_with_the_lock_and_a_deposed_leader_is_fenced() {
    let dir = postgres_store_dir();
    let a = start_core(&dir).await;
    let key = a.api.ensure_default_user().await.unwrap().unwrap();

    // A standby refuses writes, with the reason, before it leads.
    let (status, body) = a.place(&key).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("standby"),
        "{body}"
    );
    assert!(a.api.service().engine().is_standby());

    let mut a_lead = a.campaign(&dir, "core a");
    let a_epoch = lead(&mut a_lead).await;
    assert!(!a.api.service().engine().is_standby());
    let (status, first) = a.place(&key).await;
    assert_eq!(status, 200, "{first}");
    let first = first["orderid"].as_str().unwrap().to_string();

    // A second core stands by while the first holds the lock.
    let b = start_core(&dir).await;
    let mut b_lead = b.campaign(&dir, "core b");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b_lead.state(), LeaderState::Standby);
    let (status, body) = b.place(&key).await;
    assert_eq!(status, 503, "{body}");

    // Another core takes over the epoch while A still believes it leads (as after a pause):
    // A's next write is fenced, nothing of it is stored, and A stands by.
    let orders_before = dir.query_i64("SELECT COUNT(*) FROM orders");
    dir.execute("UPDATE oa_leadership SET epoch = epoch + 1, holder = 'core z' WHERE id = 1");
    let (status, body) = a.place(&key).await;
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("epoch {a_epoch}")) && message.contains("core z"),
        "{body}"
    );
    assert_eq!(dir.query_i64("SELECT COUNT(*) FROM orders"), orders_before);
    assert!(a.api.service().engine().is_standby());
    let (status, body) = a.place(&key).await;
    assert_eq!(status, 503, "{body}");

    // A's lock session ends (its campaign is dropped): B takes the lead, in a later epoch,
    // with A's committed order reloaded from the store.
    drop(a_lead);
    let b_epoch = lead(&mut b_lead).await;
    assert!(b_epoch > a_epoch + 1, "{b_epoch} after {a_epoch}");
    assert!(b.order_ids(&key).await.contains(&first));
    let (status, second) = b.place(&key).await;
    assert_eq!(status, 200, "{second}");
    let holder = dir.query_rows("SELECT holder FROM oa_leadership");
    assert_eq!(holder, ["core b"]);
}
