//! Order events end to end, in the suite's event mode: orders placed over REST on the real
//! server reach a real python-socketio client (SOCKETIO, BOTH) and kafka-python reading the
//! events topic (KAFKA, BOTH) with the exact OpenAlgo payloads, never reach another user's
//! client, and go nowhere the mode does not send them (`oa_e2e::events`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::time::Duration;

use oa_e2e::{PeerProcess, TestServer, depth_tick};
use oa_marketdata_zmq::{Publisher, PublisherOptions};
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

/// A server in the suite's event mode: its order events go to Socket.IO, Kafka or both, and
/// the sessions below read them back from wherever the mode sends them.
fn start_server() -> TestServer {
    TestServer::start(&[
        ("ORDER_RATE_LIMIT", "1000 per second"),
        ("API_RATE_LIMIT", "1000 per second"),
        ("OA_FEED_TICKS_PER_SECOND", "500"),
    ])
    .unwrap()
}

/// A server that serves Socket.IO whatever the suite's mode (for handshake and shutdown tests).
fn start_socketio_server() -> TestServer {
    TestServer::start(&[("ORDER_EVENT_MODE", "SOCKETIO")]).unwrap()
}

/// The next `analyzer_update` the collector prints whose request is of `api_type`.
fn analyzer_update(client: &mut PeerProcess, api_type: &str) -> Value {
    client
        .wait_for(WAIT, |line| {
            line["name"] == "analyzer_update" && line["data"]["request"]["api_type"] == api_type
        })
        .unwrap()
}

fn collector(server: &TestServer, key: &str, transports: &str, stop: &str) -> PeerProcess {
    PeerProcess::socketio_events(
        &server.http_url(),
        key,
        &[
            ("OA_TRANSPORTS", transports),
            ("OA_STOP_EVENT", stop),
            ("OA_TIMEOUT_S", "60"),
        ],
    )
    .unwrap()
}

/// The order ids and responses of one live session, which every channel must report.
struct Session {
    market_id: String,
    limit_id: String,
    analyzed: Value,
    marker_id: String,
}

/// The owner's user id (the first-start user).
const OWNER: &str = "admin";
const STRANGER: &str = "someone-else";

async fn place_market(server: &TestServer, key: &str) -> String {
    server.place_market_order(key, "e2e").await.unwrap()
}

/// Places, modifies, cancels, smart-orders, closes, then one analyzer-mode order, then (back
/// in live mode) a marker order whose event comes after every other in the user's order.
async fn run_orders(server: &TestServer, key: &str) -> Session {
    let order = |extra: Value| {
        let mut body = json!({"apikey": key, "strategy": "e2e", "exchange": "NSE", "symbol": "SBIN",
            "action": "BUY", "quantity": "1", "product": "MIS"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let market_id = place_market(server, key).await;

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
        .post_order_id("cancelorder", key, "e2e", &limit_id)
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
    // Quantity 0 with the position matched: upstream's sandbox_place_smart_order message
    // (services/sandbox_service.py).
    assert_eq!(
        smart["message"], "No OpenPosition Found. Not placing Exit order.",
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

    let (status, toggled) = server
        .post("analyzer/toggle", json!({"apikey": key, "mode": false}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{toggled}");
    let marker_id = place_market(server, key).await;
    Session {
        market_id,
        limit_id,
        analyzed,
        marker_id,
    }
}

fn is_order_event_of(name: &str, data: &Value, orderid: &str) -> bool {
    name == "order_event" && data["orderid"] == orderid
}

/// Reads the collector's lines until the `order_event` of `orderid`.
fn wait_for_order_event(client: &mut PeerProcess, orderid: &str) {
    client
        .wait_for(WAIT, |line| {
            line["type"] == "event"
                && is_order_event_of(
                    line["name"].as_str().unwrap_or_default(),
                    &line["data"],
                    orderid,
                )
        })
        .unwrap_or_else(|error| panic!("no order_event of {orderid}: {error:#}"));
}

/// Every event of the session, with the exact upstream payloads, as one channel delivered
/// them (everything up to and including the marker's order_event).
fn check_session(channel: &str, events: &[(String, Value)], session: &Session) {
    let marker_at = events
        .iter()
        .position(|(name, data)| is_order_event_of(name, data, &session.marker_id))
        .unwrap_or_else(|| panic!("{channel}: no marker order_event among {events:#?}"));
    let events: Vec<(String, Value)> = events[..=marker_at]
        .iter()
        .map(|(name, data)| (name.clone(), upstream_keys(data.clone())))
        .collect();
    let find = |name: &str, predicate: &dyn Fn(&Value) -> bool| -> Value {
        events
            .iter()
            .find(|(event, data)| event == name && predicate(data))
            .map(|(_, data)| data.clone())
            .unwrap_or_else(|| panic!("{channel}: no matching {name} among {events:#?}"))
    };
    let (market_id, limit_id) = (session.market_id.as_str(), session.limit_id.as_str());

    assert_eq!(
        find("order_event", &|d| d["orderid"] == market_id),
        json!({"symbol": "SBIN", "action": "BUY", "orderid": market_id, "exchange": "NSE",
            "price_type": "MARKET", "product_type": "MIS", "mode": "live"}),
        "{channel}"
    );
    assert_eq!(
        find("order_event", &|d| d["orderid"] == limit_id),
        json!({"symbol": "SBIN", "action": "BUY", "orderid": limit_id, "exchange": "NSE",
            "price_type": "LIMIT", "product_type": "MIS", "mode": "live"}),
        "{channel}"
    );
    assert_eq!(
        find("modify_order_event", &|d| d["orderid"] == limit_id),
        json!({"status": "success", "orderid": limit_id, "mode": "live"}),
        "{channel}"
    );
    assert_eq!(
        find("cancel_order_event", &|d| d["orderid"] == limit_id),
        json!({"status": "success", "orderid": limit_id, "mode": "live"}),
        "{channel}"
    );
    assert_eq!(
        find("order_notification", &|_| true),
        json!({"symbol": "SBIN", "status": "info",
            "message": "No OpenPosition Found. Not placing Exit order."}),
        "{channel}"
    );
    assert_eq!(
        find("close_position_event", &|_| true),
        json!({"status": "success", "message": "All Open Positions Squared Off", "mode": "live"}),
        "{channel}"
    );
    let filled = find("order_update", &|d| {
        d["orderid"] == market_id && d["order_status"] == "complete"
    });
    assert_eq!(filled["mode"], "live", "{channel}");
    assert_eq!(filled["broker"], "simulator", "{channel}");
    assert_eq!(filled["symbol"], "SBIN", "{channel}");
    assert_eq!(filled["quantity"], 1, "{channel}");
    assert_eq!(filled["filled_quantity"], 1, "{channel}");
    assert_eq!(filled["pending_quantity"], 0, "{channel}");
    assert!(
        filled["average_price"].as_f64().unwrap() > 0.0,
        "{channel}: {filled}"
    );
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
            "{channel}: order_update lacks {key}: {filled}"
        );
    }
    let cancelled_update = find("order_update", &|d| {
        d["orderid"] == limit_id && d["order_status"] == "cancelled"
    });
    assert_eq!(
        cancelled_update["price"], 2.0,
        "{channel}: {cancelled_update}"
    );

    let analyzer = find("analyzer_update", &|_| true);
    assert_eq!(
        analyzer["request"]["api_type"], "placeorder",
        "{channel}: {analyzer}"
    );
    assert_eq!(
        analyzer["request"]["symbol"], "SBIN",
        "{channel}: {analyzer}"
    );
    assert!(
        analyzer["request"].get("apikey").is_none(),
        "{channel}: the API key must not travel: {analyzer}"
    );
    assert_eq!(
        analyzer["response"], session.analyzed,
        "{channel}: {analyzer}"
    );
    // In analyzer mode the live event name is replaced, never sent as well: the channel was
    // read up to the marker order placed after it, so an order_event would have arrived.
    let analyzed_id = session.analyzed["orderid"].as_str().unwrap();
    assert!(
        !events
            .iter()
            .any(|(name, data)| is_order_event_of(name, data, analyzed_id)),
        "{channel}: order_event emitted in analyzer mode"
    );
}

async fn run_live_session(transports: &str) {
    let server = start_server();
    let route = server.events.clone();
    let key = server.admin_key.clone();
    let other_key = server.create_user(STRANGER).unwrap();
    server.wait_for_price(&key, "NSE", "SBIN").await.unwrap();
    let (mut client, mut stranger) = if route.socketio() {
        (
            Some(collector(&server, &key, transports, "never")),
            Some(collector(&server, &other_key, transports, "never")),
        )
    } else {
        server.assert_socketio_not_served(&key);
        (None, None)
    };

    let session = run_orders(&server, &key).await;
    // The other user's own order: the positive control of the isolation checks below.
    let stranger_order = place_market(&server, &other_key).await;

    let mut channels: Vec<(&str, Vec<(String, Value)>)> = Vec::new();
    if let Some(client) = &mut client {
        wait_for_order_event(client, &session.marker_id);
        // Every event carries a per-user sequence that increases by one.
        let seqs: Vec<u64> = client
            .events()
            .iter()
            .filter_map(|(_, data)| data["seq"].as_u64())
            .collect();
        assert!(seqs.len() >= 10, "too few sequenced events: {seqs:?}");
        assert!(
            seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "{seqs:?}"
        );
        channels.push(("socketio", client.events()));
    }
    if route.kafka() {
        let events = server.kafka_events(OWNER, |events| {
            events
                .iter()
                .any(|(name, data)| is_order_event_of(name, data, &session.marker_id))
        });
        channels.push(("kafka", events));
    } else if route.kafka.is_some() {
        server.assert_no_kafka_records();
    }
    assert!(
        !channels.is_empty(),
        "mode {} delivered on no channel",
        route.mode
    );
    for (channel, events) in &channels {
        check_session(channel, events, &session);
    }
    if let [(_, socketio), (_, kafka)] = channels.as_slice() {
        // BOTH: the same user events, in the same order, on both channels.
        // Compared up to the marker: each channel may have read a little past it.
        let order_names = |events: &[(String, Value)]| -> Vec<(String, Value)> {
            events
                .iter()
                .filter(|(name, _)| name != "master_contract_download")
                .take_while(|(name, data)| !is_order_event_of(name, data, &session.marker_id))
                .map(|(name, data)| (name.clone(), upstream_keys(data.clone())))
                .collect()
        };
        assert_eq!(order_names(socketio), order_names(kafka));
    }

    // Isolation: the other user gets its own order's event and none of the owner's.
    let owner_ids = [
        session.market_id.as_str(),
        session.limit_id.as_str(),
        session.marker_id.as_str(),
    ];
    let stranger_events = match &mut stranger {
        Some(stranger) => {
            wait_for_order_event(stranger, &stranger_order);
            stranger.events()
        }
        None => server.kafka_events(STRANGER, |events| {
            events
                .iter()
                .any(|(name, data)| is_order_event_of(name, data, &stranger_order))
        }),
    };
    assert!(
        !stranger_events
            .iter()
            .any(|(_, data)| owner_ids.iter().any(|id| data["orderid"] == *id)),
        "another user received the owner's events: {stranger_events:#?}"
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
    let server = start_socketio_server();
    let mut peer = PeerProcess::socketio_login_attempt(&server.http_url(), "wrong-key").unwrap();
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
    let mut server = start_socketio_server();
    let key = server.admin_key.clone();
    let _websocket = collector(&server, &key, "websocket", "never");
    let _polling = collector(&server, &key, "polling", "never");
    let status = server.signal("TERM", Duration::from_secs(15)).unwrap();
    assert!(status.success(), "exit {status}:\n{}", server.log());
}

/// `analyzer_update` for every analyzer-mode action upstream reports, over a real
/// python-socketio client: openposition (upstream services/openposition_service.py), a
/// refusal of the service's own checks (the sandbox's "Symbol ... not found" reaches
/// subscribers/socketio_subscriber.py `on_order_placed` as an analyze-mode event), and a
/// resting sandbox order's fill (sandbox/execution_engine.py `_publish_fill_event` ->
/// `on_sandbox_order_filled`), so OpenAlgo's web UI refreshes its books when it fills.
#[tokio::test(flavor = "multi_thread")]
async fn analyzer_mode_reports_openposition_refusals_and_sandbox_fills() {
    // The test sets every price itself on the bus (no simulated feed), so the resting
    // order below rests and fills when the test says, however loaded the machine is.
    let server =
        TestServer::start(&[("ORDER_EVENT_MODE", "SOCKETIO"), ("OA_FEED", "none")]).unwrap();
    let mut bus = Publisher::connect_and_wait(
        &server.addresses["zmq"],
        PublisherOptions::default(),
        Duration::from_secs(10),
    )
    .unwrap();
    bus.publish(&depth_tick("NSE", "SBIN", 800.0, 799.95, 800.05))
        .unwrap();
    let key = server.admin_key.clone();
    server.wait_for_price(&key, "NSE", "SBIN").await.unwrap();
    let mut client = collector(&server, &key, "websocket", "never");
    let (status, toggled) = server
        .post("analyzer/toggle", json!({"apikey": key, "mode": true}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{toggled}");

    let position = json!({"apikey": key, "strategy": "e2e", "exchange": "NSE",
                          "symbol": "SBIN", "product": "MIS"});
    let (status, open) = server.post("openposition", position).await.unwrap();
    assert_eq!(status, 200, "{open}");
    let update = analyzer_update(&mut client, "openposition");
    assert_eq!(
        update["data"]["request"],
        json!({"strategy": "e2e", "exchange": "NSE", "symbol": "SBIN", "product": "MIS",
               "api_type": "openposition"})
    );
    assert_eq!(
        update["data"]["response"],
        json!({"status": "success", "quantity": 0, "mode": "analyze"})
    );

    let order = |symbol: &str, action: &str, extra: Value| {
        let mut body = json!({"apikey": key, "strategy": "e2e", "exchange": "NSE",
            "symbol": symbol, "action": action, "quantity": "1", "product": "MIS"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, refused) = server
        .post("placeorder", order("NOSUCHSYMBOL", "BUY", json!({})))
        .await
        .unwrap();
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["mode"], "analyze", "{refused}");
    let update = client
        .wait_for(WAIT, |line| {
            line["name"] == "analyzer_update" && line["data"]["response"]["status"] == "error"
        })
        .unwrap();
    assert_eq!(
        update["data"]["request"]["api_type"], "placeorder",
        "{update}"
    );
    assert_eq!(
        update["data"]["request"]["symbol"], "NOSUCHSYMBOL",
        "{update}"
    );
    assert_eq!(update["data"]["response"], refused);
    assert!(
        update["data"]["request"].get("apikey").is_none(),
        "{update}"
    );

    // A BUY limit below the ask rests; a tick whose ask reaches it fills it.
    let (status, placed) = server
        .post(
            "placeorder",
            order(
                "SBIN",
                "BUY",
                json!({"pricetype": "LIMIT", "price": "799.50"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{placed}");
    let orderid = placed["orderid"].as_str().unwrap().to_string();
    let (_, resting) = server
        .post_order_id("orderstatus", &key, "e2e", &orderid)
        .await
        .unwrap();
    assert_eq!(resting["data"]["order_status"], "open", "{resting}");
    bus.publish(&depth_tick("NSE", "SBIN", 799.4, 799.35, 799.45))
        .unwrap();
    let filled = client
        .wait_for(WAIT, |line| {
            line["name"] == "order_update"
                && line["data"]["order_status"] == "complete"
                && line["data"]["orderid"] == orderid.as_str()
        })
        .unwrap();
    // The tick's fill also emits analyzer_update, after the order_update of that batch.
    let fill = analyzer_update(&mut client, "sandbox.fill");
    assert_eq!(
        upstream_keys(fill["data"].clone()),
        json!({"request": {"api_type": "sandbox.fill"}, "response": {}}),
        "after {filled}"
    );
}
