//! Test harness: the real router on 127.0.0.1:0 over a real store, the real price cache and
//! the bundled symbol master.
//!
//! The store is a SQLite file in a tempdir, or with `OA_TEST_DATABASE=postgres` a PostgreSQL
//! database of the test's own ([`oa_e2e::postgres::TestDatabase`]: on the server of
//! `OA_TEST_POSTGRES_URL`, else a throw-away server); `cargo xtask test` runs the suites both
//! ways.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oa_api::{Api, ApiConfig, PriceSource, StaticPrices, StaticSymbols};
use oa_events_core::{Envelope, EventPublisher};
use oa_marketdata_core::{PriceCache, SymbolMaster, Tick};
use serde_json::{Value, json};
use tokio::sync::broadcast;

mod serve;
pub use serve::serve;

pub const PEPPER: &str = "test-pepper-that-is-at-least-32-characters-long";

pub struct Server {
    pub url: String,
    pub key: String,
    pub api: Api,
    pub prices: PriceCache,
    pub publisher: EventPublisher,
    pub client: reqwest::Client,
    pub dir: StoreDir,
}

/// A test's folder and store: SQLite `oa.db` in the folder, or its own PostgreSQL database.
pub struct StoreDir {
    dir: tempfile::TempDir,
    database: Option<oa_e2e::postgres::TestDatabase>,
}

/// A fresh [`StoreDir`] on the backend `OA_TEST_DATABASE` names (SQLite by default).
pub fn store_dir() -> StoreDir {
    StoreDir {
        dir: tempfile::tempdir().unwrap(),
        database: oa_e2e::postgres::test_backend_is_postgres()
            .then(|| oa_e2e::postgres::TestDatabase::create().unwrap()),
    }
}

/// A fresh [`StoreDir`] on PostgreSQL, whatever `OA_TEST_DATABASE` says (for what only
/// PostgreSQL has: several processes on one store).
pub fn postgres_store_dir() -> StoreDir {
    StoreDir {
        dir: tempfile::tempdir().unwrap(),
        database: Some(oa_e2e::postgres::TestDatabase::create().unwrap()),
    }
}

impl StoreDir {
    /// The folder (files other than the store go here).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// True on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database.is_some()
    }

    /// The store's `DATABASE_URL`.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(database) => database.url().to_string(),
            None => format!("sqlite:///{}", self.dir.path().join("oa.db").display()),
        }
    }

    /// The store's location (for `KeyStore::open`, `OutboxTable::open`).
    pub fn location(&self) -> oa_api::StoreLocation {
        oa_api::parse_database_url(&self.database_url()).unwrap()
    }

    /// Runs a statement (SQL both backends accept) from outside the server, as another
    /// process would.
    pub fn execute(&self, sql: &str) {
        match &self.database {
            Some(database) => {
                let bin = oa_e2e::postgres::bin_dir().unwrap();
                oa_e2e::postgres::psql(&bin, database.url(), sql).unwrap();
            }
            None => {
                let conn = rusqlite::Connection::open(self.dir.path().join("oa.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
        }
    }

    /// The first column of every row `sql` (SQL both backends accept) returns, as text,
    /// read from outside.
    pub fn query_rows(&self, sql: &str) -> Vec<String> {
        match &self.database {
            Some(database) => {
                let bin = oa_e2e::postgres::bin_dir().unwrap();
                let text = oa_e2e::postgres::psql(&bin, database.url(), sql).unwrap();
                text.lines().map(str::to_string).collect()
            }
            None => {
                use rusqlite::types::Value as Sql;
                let conn = rusqlite::Connection::open(self.dir.path().join("oa.db")).unwrap();
                let mut statement = conn.prepare(sql).unwrap();
                statement
                    .query_map([], |row| {
                        Ok(match row.get::<_, Sql>(0)? {
                            Sql::Null => String::new(),
                            Sql::Integer(number) => number.to_string(),
                            Sql::Real(number) => number.to_string(),
                            Sql::Text(text) => text,
                            Sql::Blob(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        })
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
        }
    }

    /// The one integer `sql` returns (see [`StoreDir::query_rows`]).
    pub fn query_i64(&self, sql: &str) -> i64 {
        let rows = self.query_rows(sql);
        let first = rows.first().unwrap_or_else(|| panic!("{sql}: no row"));
        first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql}: {first:?}"))
    }
}

pub fn store_config(dir: &StoreDir) -> ApiConfig {
    ApiConfig {
        database_url: dir.database_url(),
        api_key_pepper: PEPPER.to_string(),
        ..ApiConfig::default()
    }
}

/// Static prices with SBIN at 800 (bid 799, ask 801), for tests without a market-data feed.
pub fn sbin_prices() -> Arc<dyn PriceSource> {
    let prices = StaticPrices::new();
    prices.set("NSE", "SBIN", 800.0, Some(799.0), Some(801.0));
    Arc::new(prices)
}

/// The API over [`sbin_prices`] and `symbols`, its default user created.
pub async fn static_api(
    config: ApiConfig,
    publisher: EventPublisher,
    symbols: StaticSymbols,
) -> Api {
    let api = oa_api::build_with_sources(config, publisher, sbin_prices(), Arc::new(symbols))
        .await
        .unwrap();
    api.ensure_default_user().await.unwrap();
    api
}

/// Posts `body` to `url`; returns the status and the raw body.
pub async fn post_text(client: &reqwest::Client, url: &str, body: &Value) -> (u16, String) {
    let response = client.post(url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Posts `body` to `url`; returns the JSON body (any status).
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn config(dir: &StoreDir) -> ApiConfig {
    ApiConfig {
        order_rate_limit: "1000 per second".to_string(),
        smart_order_rate_limit: "1000 per second".to_string(),
        api_rate_limit: "1000 per second".to_string(),
        ..store_config(dir)
    }
}

pub async fn start() -> Server {
    let dir = store_dir();
    let config = config(&dir);
    start_with(dir, config).await
}

/// Starts a server on a fresh store with the test configuration as `configure` adjusts it.
pub async fn start_configured(configure: impl FnOnce(&mut ApiConfig)) -> Server {
    let dir = store_dir();
    let mut config = config(&dir);
    configure(&mut config);
    start_with(dir, config).await
}

/// Starts a server (see [`start`]) with `symbol` on NSE quoted at `ltp` (`bid`, `ask`).
pub async fn start_quoting(symbol: &str, ltp: f64, bid: f64, ask: f64) -> Server {
    let server = start().await;
    server.price("NSE", symbol, ltp, bid, ask);
    server
}

pub async fn start_with(dir: StoreDir, config: ApiConfig) -> Server {
    launch(dir, config, None, Arc::new(SymbolMaster::bundled())).await
}

/// Starts a server with the default configuration over `symbols`.
pub async fn start_with_symbols(symbols: Arc<SymbolMaster>) -> Server {
    let dir = store_dir();
    let config = config(&dir);
    launch(dir, config, None, symbols).await
}

/// Starts a server again on the store of an earlier one (whose users and key stay).
pub async fn restart(dir: StoreDir, config: ApiConfig, key: String) -> Server {
    launch(dir, config, Some(key), Arc::new(SymbolMaster::bundled())).await
}

async fn launch(
    dir: StoreDir,
    config: ApiConfig,
    key: Option<String>,
    symbols: Arc<SymbolMaster>,
) -> Server {
    let publisher = EventPublisher::builder().build();
    let prices = PriceCache::new();
    let api = oa_api::build(config, publisher.clone(), prices.clone(), symbols)
        .await
        .unwrap();
    let created = api.ensure_default_user().await.unwrap();
    let key = match key {
        Some(key) => key,
        None => created.expect("fresh store has no users"),
    };
    let url = serve(api.router()).await;
    Server {
        url,
        key,
        api,
        prices,
        publisher,
        client: reqwest::Client::new(),
        dir,
    }
}

pub use oa_e2e::depth_tick;

impl Server {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, text) = self.post_text(path, &body).await;
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{path}: non-JSON body {text:?}: {error}"));
        (status, value)
    }

    /// Posts to `/api/v1/{path}`; returns the status and the raw body.
    pub async fn post_text(&self, path: &str, body: &Value) -> (u16, String) {
        post_text(&self.client, &format!("{}/api/v1/{path}", self.url), body).await
    }

    /// GETs `/api/v1/{path}?apikey=...` with `query` (`name=value&...`, or empty) after the
    /// key; returns the status, the headers and the raw body.
    pub async fn get(&self, path: &str, query: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let separator = if query.is_empty() { "" } else { "&" };
        let url = format!(
            "{}/api/v1/{path}?apikey={}{separator}{query}",
            self.url, self.key
        );
        let response = self.client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    /// Posts with `apikey` added.
    pub async fn call(&self, path: &str, mut body: Value) -> (u16, Value) {
        body["apikey"] = Value::from(self.key.clone());
        self.post(path, body).await
    }

    pub async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.call(path, body).await;
        assert_eq!(status, 200, "{path}: {value}");
        assert_eq!(value["status"], "success", "{path}: {value}");
        value
    }

    /// Calls `path` (with `apikey` added) expecting a refusal: returns the status and the
    /// message of the `{"status": "error"}` body.
    pub async fn refusal(&self, path: &str, body: Value) -> (u16, String) {
        let (status, value) = self.call(path, body).await;
        assert_eq!(value["status"], "error", "{path}: {value}");
        (status, message(&value))
    }

    /// Places `order` (which must succeed); returns its order id.
    pub async fn place(&self, order: Value) -> String {
        orderid(&self.ok("placeorder", order).await)
    }

    /// The `data` of `orderstatus` for `orderid`.
    pub async fn order_status(&self, orderid: &str) -> Value {
        let body = self
            .ok("orderstatus", json!({"strategy": "t", "orderid": orderid}))
            .await;
        body["data"].clone()
    }

    /// The `openposition` quantity of `symbol` on `exchange` in `product`.
    pub async fn open_position(&self, exchange: &str, symbol: &str, product: &str) -> Value {
        let body =
            json!({"strategy": "t", "symbol": symbol, "exchange": exchange, "product": product});
        self.ok("openposition", body).await["quantity"].clone()
    }

    /// Sends `method` to `{url}{path}` with `body` as `content_type` (no body when `None`);
    /// returns the status and the JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{path}: non-JSON body {text:?}: {error}"));
        (status, value)
    }

    /// Runs `tests/python/<script>` (the official SDK) against this server with `OA_HOST`,
    /// `OA_APIKEY` and `extra_env`; fails the test unless its output says `passed`.
    pub async fn run_sdk_script(&self, script: &str, extra_env: &[(&str, String)], passed: &str) {
        let script = script.to_string();
        let mut env = vec![
            ("OA_HOST".to_string(), self.url.clone()),
            ("OA_APIKEY".to_string(), self.key.clone()),
        ];
        env.extend(
            extra_env
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone())),
        );
        let output = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, String)> = env
                .iter()
                .map(|(name, value)| (name.as_str(), value.clone()))
                .collect();
            oa_e2e::run_python_script(&script, &env)
        })
        .await
        .unwrap();
        match output {
            Ok(stdout) => assert!(stdout.contains(passed), "{stdout}"),
            Err(error) => panic!("{error:#}"),
        }
    }

    /// Runs `tests/python/{suite}_sdk.py` with `expected` (JSON) in `OA_{SUITE}_EXPECTED`;
    /// fails the test unless it says `all {suite} SDK checks passed`.
    pub async fn run_sdk_checks(&self, suite: &str, expected: &Value) {
        let variable = format!("OA_{}_EXPECTED", suite.to_ascii_uppercase());
        self.run_sdk_script(
            &format!("{suite}_sdk.py"),
            &[(variable.as_str(), expected.to_string())],
            &format!("all {suite} SDK checks passed"),
        )
        .await;
    }

    pub fn price(&self, exchange: &str, symbol: &str, ltp: f64, bid: f64, ask: f64) {
        self.prices
            .update(&depth_tick(exchange, symbol, ltp, bid, ask));
    }

    pub fn ltp(&self, exchange: &str, symbol: &str, ltp: f64) {
        self.prices.update(&Tick::ltp(exchange, symbol, ltp));
    }

    pub async fn set_analyze(&self, analyze: bool) {
        self.ok("analyzer/toggle", json!({"mode": analyze})).await;
    }
}

/// Collects the events published within `wait`, after draining what is already queued.
pub async fn next_events(
    tap: &mut broadcast::Receiver<Arc<Envelope>>,
    count: usize,
) -> Vec<Arc<Envelope>> {
    let mut events = Vec::new();
    while events.len() < count {
        match tokio::time::timeout(Duration::from_secs(5), tap.recv()).await {
            Ok(Ok(envelope)) => events.push(envelope),
            other => panic!("expected {count} events, got {}: {other:?}", events.len()),
        }
    }
    events
}

/// Events of the tap that are already there (none expected to be pending afterwards).
pub fn drain(tap: &mut broadcast::Receiver<Arc<Envelope>>) -> Vec<Arc<Envelope>> {
    let mut events = Vec::new();
    while let Ok(envelope) = tap.try_recv() {
        events.push(envelope);
    }
    events
}

/// The `key` string of every row of the `data` array of `body`.
pub fn column<'a>(body: &'a Value, key: &str) -> Vec<&'a str> {
    let rows = body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array in {body}"));
    rows.iter()
        .map(|row| {
            row[key]
                .as_str()
                .unwrap_or_else(|| panic!("no {key} in {row}"))
        })
        .collect()
}

/// The keys of the object `value`, in order, separated by spaces.
pub fn key_list(value: &Value) -> String {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.join(" ")
}

/// The `orderid` of a success body, as a string.
pub fn orderid(body: &Value) -> String {
    body["orderid"]
        .as_str()
        .unwrap_or_else(|| panic!("no orderid in {body}"))
        .to_string()
}

/// The `message` of a body, as a string.
pub fn message(body: &Value) -> String {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
        .to_string()
}

/// The `(status, message)` of an error reply, for comparing both at once.
pub fn status_and_message((status, body): (u16, Value)) -> (u16, String) {
    (status, message(&body))
}

/// The data of the already-published events of `event_type` (others are dropped).
pub fn drain_data(tap: &mut broadcast::Receiver<Arc<Envelope>>, event_type: &str) -> Vec<Value> {
    drain(tap)
        .iter()
        .filter(|envelope| envelope.event_type() == event_type)
        .map(|envelope| data(envelope))
        .collect()
}

pub fn data(envelope: &Envelope) -> Value {
    serde_json::to_value(&envelope.data).unwrap()
}
