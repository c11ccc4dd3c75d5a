//! Order events over Socket.IO, end to end: orders placed over REST on the real server reach
//! a real python-socketio client with the exact OpenAlgo payloads, and never reach another
//! user's client.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::{PeerProcess, TestServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// The payload without the keys oa adds for replay (`event_id`, `seq`), which old clients ignore.
fn upstream_keys(mut data: Value) -> Value {
    if let Some(object) = data.as_object_mut() {
        object.remove("event_id");
        object.remove("seq");
    }
    data
}

fn start_server() -> TestServer {
    // Socket.IO delivery is what these tests check: pinned to SOCKETIO whatever the suite's
    // mode (BOTH is covered in kafka_events.rs).
    TestServer::start(&[
        ("ORDER_EVENT_MODE", "SOCKETIO"),
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ])
    .unwrap()
}

fn collector(server: &TestServer, key: &str, transports: &str, stop: &str) -> PeerProcess {
    let mut peer = PeerProcess::python(
        "e2e_socketio_collect.py",
        &[
            ("OA_URL", server.http_url()),
            ("OA_APIKEY", key.to_string()),
            ("OA_TRANSPORTS", transports.to_string()),
            ("OA_STOP_EVENT", stop.to_string()),
            ("OA_TIMEOUT_S", "60".to_string()),
        ],
    )
    .unwrap();
    peer.wait_for(WAIT, |line| line["type"] == "connect")
        .unwrap();
    peer
}

/// Waits until the simulated feed has priced SBIN, so market orders fill.
async fn wait_for_price(server: &TestServer, key: &str) {
    for _ in 0..200 {
        let (status, body) = server
            .post(
                "quotes",
                json!({"apikey": key, "exchange": "NSE", "symbol": "SBIN"}),
            )
            .await
            .unwrap();
        if status == 200 && body["data"]["ltp"].as_f64().unwrap_or(0.0) > 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no SBIN price from the simulated feed");
}

async fn run_live_session(transports: &str) {
    let server = start_server();
    let key = server.admin_key.clone();
    let other_key = server.create_user("someone-else").unwrap();
    wait_for_price(&server, &key).await;
    let mut client = collector(&server, &key, transports, "analyzer_update");
    let mut stranger = collector(&server, &other_key, transports, "never");

    let order = |extra: Value| {
        let mut body = json!({"apikey": key, "strategy": "e2e", "exchange": "NSE", "symbol": "SBIN",
            "action": "BUY", "quantity": "1", "product": "MIS"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };

    let (status, market) = server
        .post("placeorder", order(json!({"pricetype": "MARKET"})))
        .await
        .unwrap();
    assert_eq!(status, 200, "{market}");
    let market_id = market["orderid"].as_str().unwrap().to_string();

    let (status, limit) = server
        .post(
            "placeorder",
            order(json!({"pricetype": "LIMIT", "price": "1.0"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{limit}");
    let limit_id = limit["orderid"].as_str().unwrap().to_string();

    let (status, modified) = server
        .post(
            "modifyorder",
            json!({"apikey": key, "strategy": "e2e", "exchange": "NSE", "symbol": "SBIN",
                "orderid": limit_id, "action": "BUY", "product": "MIS", "pricetype": "LIMIT",
                "price": "2.0", "quantity": "1", "disclosed_quantity": "0", "trigger_price": "0"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{modified}");

    let (status, cancelled) = server
        .post(
            "cancelorder",
            json!({"apikey": key, "strategy": "e2e", "orderid": limit_id}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{cancelled}");

    let (status, smart) = server
        .post(
            "placesmartorder",
            order(json!({"pricetype": "MARKET", "quantity": "0", "position_size": "1"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{smart}");
    assert_eq!(
        smart["message"], "Positions Already Matched. No Action needed.",
        "{smart}"
    );

    let (status, closed) = server
        .post("closeposition", json!({"apikey": key, "strategy": "e2e"}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{closed}");

    let (status, toggled) = server
        .post("analyzer/toggle", json!({"apikey": key, "mode": true}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{toggled}");
    let (status, analyzed) = server
        .post("placeorder", order(json!({"pricetype": "MARKET"})))
        .await
        .unwrap();
    assert_eq!(status, 200, "{analyzed}");
    assert_eq!(analyzed["mode"], "analyze", "{analyzed}");

    client
        .wait_for(WAIT, |line| line["name"] == "analyzer_update")
        .unwrap();
    let events: Vec<(String, Value)> = client
        .events()
        .into_iter()
        .map(|(name, data)| (name, upstream_keys(data)))
        .collect();
    let find = |name: &str, predicate: &dyn Fn(&Value) -> bool| -> Value {
        events
            .iter()
            .find(|(event, data)| event == name && predicate(data))
            .map(|(_, data)| data.clone())
            .unwrap_or_else(|| panic!("no matching {name} among {events:#?}"))
    };

    assert_eq!(
        find("order_event", &|d| d["orderid"] == market_id.as_str()),
        json!({"symbol": "SBIN", "action": "BUY", "orderid": market_id, "exchange": "NSE",
            "price_type": "MARKET", "product_type": "MIS", "mode": "live"})
    );
    assert_eq!(
        find("order_event", &|d| d["orderid"] == limit_id.as_str()),
        json!({"symbol": "SBIN", "action": "BUY", "orderid": limit_id, "exchange": "NSE",
            "price_type": "LIMIT", "product_type": "MIS", "mode": "live"})
    );
    assert_eq!(
        find("modify_order_event", &|d| d["orderid"] == limit_id.as_str()),
        json!({"status": "success", "orderid": limit_id, "mode": "live"})
    );
    assert_eq!(
        find("cancel_order_event", &|d| d["orderid"] == limit_id.as_str()),
        json!({"status": "success", "orderid": limit_id, "mode": "live"})
    );
    assert_eq!(
        find("order_notification", &|_| true),
        json!({"symbol": "SBIN", "status": "info",
            "message": "Positions Already Matched. No Action needed."})
    );
    assert_eq!(
        find("close_position_event", &|_| true),
        json!({"status": "success", "message": "All Open Positions Squared Off", "mode": "live"})
    );
    let filled = find("order_update", &|d| {
        d["orderid"] == market_id.as_str() && d["order_status"] == "complete"
    });
    assert_eq!(filled["mode"], "live");
    assert_eq!(filled["broker"], "simulator");
    assert_eq!(filled["symbol"], "SBIN");
    assert_eq!(filled["quantity"], 1);
    assert_eq!(filled["filled_quantity"], 1);
    assert_eq!(filled["pending_quantity"], 0);
    assert!(filled["average_price"].as_f64().unwrap() > 0.0, "{filled}");
    for key in [
        "exchange",
        "action",
        "price",
        "trigger_price",
        "pricetype",
        "product",
        "rejection_reason",
    ] {
        assert!(
            filled.get(key).is_some(),
            "order_update lacks {key}: {filled}"
        );
    }
    let cancelled_update = find("order_update", &|d| {
        d["orderid"] == limit_id.as_str() && d["order_status"] == "cancelled"
    });
    assert_eq!(cancelled_update["price"], 2.0, "{cancelled_update}");

    let analyzer = find("analyzer_update", &|_| true);
    assert_eq!(analyzer["request"]["api_type"], "placeorder", "{analyzer}");
    assert_eq!(analyzer["request"]["symbol"], "SBIN", "{analyzer}");
    assert!(
        analyzer["request"].get("apikey").is_none(),
        "the API key must not travel: {analyzer}"
    );
    assert_eq!(analyzer["response"], analyzed, "{analyzer}");
    // In analyzer mode the live event name is replaced, never sent as well.
    let analyzed_id = analyzed["orderid"].as_str().unwrap();
    assert!(
        !events
            .iter()
            .any(|(name, data)| name == "order_event" && data["orderid"] == analyzed_id),
        "order_event emitted in analyzer mode"
    );

    // Every event carries a per-user sequence that increases by one.
    let seqs: Vec<u64> = client
        .events()
        .iter()
        .filter_map(|(_, data)| data["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );

    // The other user's client saw none of it.
    std::thread::sleep(Duration::from_millis(300));
    drop(stranger.wait_for(Duration::from_millis(200), |_| false));
    assert!(
        stranger.events().is_empty(),
        "another user's client received {:#?}",
        stranger.events()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn live_and_analyzer_events_reach_the_owner_over_websocket() {
    run_live_session("websocket").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_and_analyzer_events_reach_the_owner_over_polling() {
    run_live_session("polling").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_a_bad_key_is_refused_with_a_reason() {
    let server = start_server();
    let mut peer = PeerProcess::python(
        "e2e_socketio_collect.py",
        &[
            ("OA_URL", server.http_url()),
            ("OA_APIKEY", "wrong-key".to_string()),
            ("OA_TIMEOUT_S", "10".to_string()),
        ],
    )
    .unwrap();
    let refused = peer
        .wait_for(WAIT, |line| line["type"] == "connect_error")
        .unwrap();
    let message = refused["message"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        message.contains("invalid") || message.contains("key"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_connected_clients_shuts_down_promptly() {
    let mut server = start_server();
    let key = server.admin_key.clone();
    let _websocket = collector(&server, &key, "websocket", "never");
    let _polling = collector(&server, &key, "polling", "never");
    let status = server.signal("TERM", Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", server.log());
}
