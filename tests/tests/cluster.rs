//! Core failover end to end (`OA_ROLE=core`, docs/scaling.md): real `oa-server` processes
//! sharing one real PostgreSQL server and one real Kafka-protocol broker (tansu), orders
//! placed over HTTP, the topic read back by kafka-python.
//!
//! - the leader is SIGKILLed: the standby takes the lead, with the old leader's orders
//!   reloaded, and accepts orders;
//! - the next leader is paused (SIGSTOP): a third core takes over once the paused leader's
//!   lock session times out; the write that waited for the paused leader is refused when it
//!   resumes (SIGCONT), and the deposed leader exits;
//! - every acknowledged order's events are on the topic.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::{Duration, Instant};

use oa_e2e::TestServer;
use oa_e2e::kafka_topic::{order_ids, read_topic};
use oa_e2e::postgres::Postgres;
use oa_e2e::tansu::{Storage, Tansu};
use serde_json::{Value, json};

const TOPIC: &str = "e2e_cluster_order_events";

fn core_env(database_url: &str, bootstrap: &str) -> Vec<(&'static str, String)> {
    [
        ("OA_ROLE", "core"),
        ("DATABASE_URL", database_url),
        ("ORDER_EVENT_MODE", "KAFKA"),
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA_ORDER_EVENTS_TOPIC", TOPIC),
        ("KAFKA_CREATE_TOPICS", "true"),
        ("KAFKA_PRODUCER_COMPRESSION", "lz4"),
        ("KAFKA_RETRY_BACKOFF_MAX_MS", "500"),
        ("KAFKA_REQUEST_TIMEOUT_MS", "2000"),
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "200"),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_string()))
    .collect()
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// `GET /health` with a short timeout (a paused server never answers): (status, body).
async fn health(server: &TestServer) -> Option<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(format!("{}/health", server.http_url()))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Waits (up to 30 s) until `/health` reports `role`; returns its status and body.
async fn wait_for_role(server: &TestServer, role: &str) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = health(server).await;
        if let Some((status, body)) = &answer
            && body["role"] == role
        {
            return (*status, body.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no role {role} within 30 s; last /health: {answer:?}\n--- log\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(
    client: &reqwest::Client,
    server: &TestServer,
    endpoint: &str,
    body: Value,
) -> reqwest::Result<(u16, Value)> {
    let response = client
        .post(format!("{}/api/v1/{endpoint}", server.http_url()))
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

fn order(key: &str) -> Value {
    json!({"apikey": key, "strategy": "cluster", "exchange": "NSE", "symbol": "SBIN",
           "action": "BUY", "quantity": "1", "product": "MIS", "pricetype": "MARKET"})
}

// Ignored by the per-mode end-to-end passes (it pins its own mode and would run four
// times); `cargo xtask test` runs it once, as its own step, with `--ignored`. About 11 s on
// a quiet machine, minutes on a loaded one (three servers, PostgreSQL, a broker, a 5 s
// session timeout).
#[ignore = "run once by `cargo xtask test` (its own step): cargo test -p oa-e2e --test cluster -- --ignored"]
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_core_takes_over_from_a_killed_leader_and_a_paused_leader_is_refused() {
    let pg = Postgres::start().unwrap();
    let broker = Tansu::start(Storage::Memory).unwrap();
    let env = core_env(&pg.url(), &broker.bootstrap());
    let env = borrowed(&env);

    let mut a = TestServer::start(&env).unwrap();
    let key = a.admin_key.clone();
    let (status, _) = wait_for_role(&a, "leader").await;
    assert_eq!(status, 200);
    let mut b = TestServer::start_sharing(&env, &key).unwrap();
    let (status, body) = wait_for_role(&b, "standby").await;
    assert_eq!(
        (status, &body["status"]),
        (503, &json!("standby")),
        "{body}"
    );
    let (status, refused) = b.post("placeorder", order(&key)).await.unwrap();
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("standby"),
        "{refused}"
    );

    a.wait_for_price(&key, "NSE", "SBIN").await.unwrap();
    let first = a.place_market_order(&key, "cluster").await.unwrap();

    // The leader dies: the standby leads, with the first order reloaded from the store.
    a.signal("KILL", Duration::from_secs(10)).unwrap();
    let killed = Instant::now();
    let (status, _) = wait_for_role(&b, "leader").await;
    assert_eq!(status, 200);
    b.wait_for_price(&key, "NSE", "SBIN").await.unwrap();
    let second = b.place_market_order(&key, "cluster").await.unwrap();
    eprintln!(
        "leader SIGKILL -> first order accepted by the new leader: {:?} (informative, not a pass/fail bound)",
        killed.elapsed()
    );
    assert!(b.order_ids(&key).await.unwrap().contains(&first));

    // The new leader pauses: a third core takes over once its lock session times out.
    let c = TestServer::start_sharing(&env, &key).unwrap();
    wait_for_role(&c, "standby").await;
    // A kept-alive connection to the leader, so that a request sent while it is paused
    // waits on an accepted connection and is served when it resumes.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let (status, _) = post(&client, &b, "orderbook", json!({"apikey": key}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    b.send_signal("STOP").unwrap();
    let (status, _) = wait_for_role(&c, "leader").await;
    assert_eq!(status, 200);

    // A write sent to the paused leader is refused when it resumes, and nothing is stored.
    let pending = {
        let url = b.http_url();
        let body = order(&key);
        tokio::spawn(async move {
            let response = client
                .post(format!("{url}/api/v1/placeorder"))
                .json(&body)
                .timeout(Duration::from_secs(30))
                .send()
                .await?;
            let status = response.status().as_u16();
            Ok::<_, reqwest::Error>((status, response.json::<Value>().await?))
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.send_signal("CONT").unwrap();
    match pending.await.unwrap() {
        Ok((status, refused)) => {
            assert_eq!(status, 503, "{refused}\n--- log\n{}", b.log());
            eprintln!("the deposed leader answered: {refused}");
        }
        // The deposed leader may close the connection while shutting down, unanswered.
        Err(error) => eprintln!("the deposed leader closed the connection: {error}"),
    }

    // The deposed leader exits with an error, to be restarted as a standby.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = b.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the deposed leader still runs:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!exit.success(), "{exit}");
    assert!(b.log().contains("lost the lead"), "{}", b.log());

    c.wait_for_price(&key, "NSE", "SBIN").await.unwrap();
    let third = c.place_market_order(&key, "cluster").await.unwrap();
    let mut ids = c.order_ids(&key).await.unwrap();
    ids.sort();
    let mut expected = vec![first.clone(), second.clone(), third.clone()];
    expected.sort();
    assert_eq!(ids, expected, "exactly the acknowledged orders are stored");

    // Every acknowledged order's events reached the topic, whichever core relayed them.
    let bootstrap = broker.bootstrap();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&bootstrap, TOPIC, |records| {
            let placed = order_ids(records, "order_event");
            [&first, &second, &third]
                .iter()
                .all(|id| placed.contains(*id))
        })
    })
    .await
    .unwrap();
    let placed = order_ids(&records, "order_event");
    assert_eq!(placed.len(), 3, "{placed:?}");
    drop(pg);
}
