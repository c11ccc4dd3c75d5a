//! [`TestServer`]: the real `oa-server` binary on free ports, stopped when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::events::EventRoute;
use crate::workspace_root;

/// Path of the `oa-server` binary (`OA_SERVER_BIN` overrides; a relative path is read from
/// the workspace root, where `cargo test` is typed, not from the test's own folder). The
/// first call in a test process runs `cargo build -p oa-server` (a no-op when it is up to
/// date), so a plain `cargo test` never runs a stale binary; `cargo xtask test` builds it
/// first.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OA_SERVER_BIN") {
        let binary = workspace_root().join(path);
        anyhow::ensure!(
            binary.is_file(),
            "OA_SERVER_BIN={} is not a file (relative paths are read from {})",
            binary.display(),
            workspace_root().display()
        );
        return Ok(binary);
    }
    // Test executables live in target/<profile>/deps; the binary in target/<profile>.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("unexpected test executable location")?;
    let binary = profile_dir.join("oa-server");
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "oa-server"])
            .current_dir(workspace_root())
            .status()
            .map_err(|error| format!("running cargo build -p oa-server: {error}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build -p oa-server failed ({status})"))
        }
    });
    if let Err(reason) = built {
        bail!("{reason}");
    }
    Ok(binary)
}

/// A running `oa-server` with its own data directory and ephemeral ports.
#[derive(Debug)]
pub struct TestServer {
    child: Option<Child>,
    /// The data directory (database, ready file); removed on drop.
    pub data_dir: tempfile::TempDir,
    /// Addresses the server reported in its ready file (`http`, `websocket`, `zmq`, ...).
    pub addresses: HashMap<String, String>,
    /// The default user's API key, printed once by the server on its first start.
    pub admin_key: String,
    /// How this server delivers order events (its final ORDER_EVENT_MODE and, when the
    /// suite has a broker, the topic its events go to or must not go to).
    pub events: EventRoute,
    log_path: PathBuf,
    database_url: String,
    env: Vec<(String, String)>,
}

impl TestServer {
    /// Starts the server with ports 0 and the given extra environment, and waits until it
    /// reports ready (up to 60 s).
    pub fn start(env: &[(&str, &str)]) -> anyhow::Result<TestServer> {
        TestServer::start_inner(env, String::new())
    }

    /// Starts another server on the store an earlier one created (its `DATABASE_URL` in
    /// `env`, PostgreSQL): no first-start key is printed, `admin_key` is the earlier one's.
    pub fn start_sharing(env: &[(&str, &str)], admin_key: &str) -> anyhow::Result<TestServer> {
        TestServer::start_inner(env, admin_key.to_string())
    }

    fn start_inner(env: &[(&str, &str)], admin_key: String) -> anyhow::Result<TestServer> {
        let data_dir = tempfile::tempdir().context("creating a data directory")?;
        let log_path = data_dir.path().join("server.log");
        let database = env
            .iter()
            .find(|(name, _)| *name == "DATABASE_URL")
            .map_or_else(
                || format!("sqlite:///{}", data_dir.path().join("oa.db").display()),
                |(_, url)| url.to_string(),
            );
        let events = EventRoute::for_server(env);
        let mut server = TestServer {
            child: None,
            data_dir,
            addresses: HashMap::new(),
            admin_key,
            events,
            log_path,
            database_url: database,
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts the process on this server's data directory and waits for its ready file.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let ready_file = self.data_dir.path().join("ready.json");
        let _ = std::fs::remove_file(&ready_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("opening the server log")?;
        let mut command = Command::new(server_binary()?);
        command
            .current_dir(self.data_dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("OA_ENV_FILE", self.data_dir.path().join("absent.env"))
            .env("FLASK_PORT", "0")
            .env("WEBSOCKET_PORT", "0")
            .env("ZMQ_PORT", "0")
            .env("DATABASE_URL", &self.database_url)
            .env("OA_READY_FILE", &ready_file)
            .envs(self.events.suite_env())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(command.spawn().context("starting oa-server")?);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                self.addresses = serde_json::from_str(&text)
                    .with_context(|| format!("parsing ready file {text:?}"))?;
                if self.admin_key.is_empty() {
                    self.admin_key = first_start_key(&self.log()).with_context(|| {
                        format!("no first-start key in the log:\n{}", self.log())
                    })?;
                }
                if self.events.uses_suite_broker() {
                    self.wait_for_kafka_connected()?;
                }
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                bail!("oa-server exited early ({status}):\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("oa-server not ready after 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again after [`TestServer::signal`] stopped it, on the same data
    /// directory and settings.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the server is still running");
        }
        self.spawn()
    }

    /// Kills the process with SIGKILL (no shutdown, nothing flushed) and starts it again on
    /// the same data directory and settings.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.signal("KILL", Duration::from_secs(10))?;
        self.spawn()
    }

    /// `http://host:port` of the HTTP server.
    pub fn http_url(&self) -> String {
        format!(
            "http://{}",
            self.addresses.get("http").map_or("", String::as_str)
        )
    }

    /// POSTs a JSON body to `/api/v1/<endpoint>` and returns (HTTP status, JSON body).
    pub async fn post(
        &self,
        endpoint: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v1/{endpoint}", self.http_url()))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {endpoint}"))?;
        let status = response.status().as_u16();
        let body = response
            .json()
            .await
            .with_context(|| format!("POST {endpoint}: response is not JSON"))?;
        Ok((status, body))
    }

    /// POSTs `{"apikey", "strategy", "orderid"}` to an order endpoint (`orderstatus`,
    /// `cancelorder`) and returns (HTTP status, JSON body).
    pub async fn post_order_id(
        &self,
        endpoint: &str,
        key: &str,
        strategy: &str,
        orderid: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let body = serde_json::json!({"apikey": key, "strategy": strategy, "orderid": orderid});
        self.post(endpoint, body).await
    }

    /// Waits (up to 20 s) until the server quotes `exchange:symbol` with a positive LTP, so
    /// that market orders fill. `key` is any active API key.
    pub async fn wait_for_price(
        &self,
        key: &str,
        exchange: &str,
        symbol: &str,
    ) -> anyhow::Result<()> {
        for _ in 0..400 {
            let (status, body) = self
                .post(
                    "quotes",
                    serde_json::json!({"apikey": key, "exchange": exchange, "symbol": symbol}),
                )
                .await?;
            if status == 200 && body["data"]["ltp"].as_f64().unwrap_or(0.0) > 0.0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("no {exchange}:{symbol} price within 20 s (is the simulated feed on?)")
    }

    /// [`TestServer::wait_for_price`] of NSE:SBIN (the symbol the helpers here trade), asked
    /// with the admin key.
    pub async fn wait_for_sbin(&self) -> anyhow::Result<()> {
        self.wait_for_price(&self.admin_key, "NSE", "SBIN").await
    }

    /// Places a 1-share MIS market BUY of NSE:SBIN for the user of `key`, tagged `strategy`,
    /// and returns its order id; anything but a 200 with an `orderid` is an error.
    pub async fn place_market_order(&self, key: &str, strategy: &str) -> anyhow::Result<String> {
        self.place_order(key, strategy, serde_json::json!({})).await
    }

    /// Places the order of [`TestServer::place_market_order`] with the fields of `changes`
    /// replacing its own (e.g. `{"action": "SELL", "pricetype": "LIMIT", "price": "1.0"}`),
    /// and returns its order id; anything but a 200 with an `orderid` is an error.
    pub async fn place_order(
        &self,
        key: &str,
        strategy: &str,
        changes: serde_json::Value,
    ) -> anyhow::Result<String> {
        let mut body = serde_json::json!({"apikey": key, "strategy": strategy, "exchange": "NSE",
            "symbol": "SBIN", "action": "BUY", "quantity": "1", "product": "MIS",
            "pricetype": "MARKET"});
        if let (Some(body), Some(changes)) = (body.as_object_mut(), changes.as_object()) {
            body.extend(changes.clone());
        }
        let (status, response) = self.post("placeorder", body).await?;
        anyhow::ensure!(status == 200, "placeorder answered {status}: {response}");
        response["orderid"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("placeorder answered without an orderid: {response}"))
    }

    /// The body of `GET /health`.
    pub async fn health(&self) -> anyhow::Result<serde_json::Value> {
        let response = reqwest::get(format!("{}/health", self.http_url()))
            .await
            .context("GET /health")?;
        response.json().await.context("GET /health: not JSON")
    }

    /// The body of `GET /metrics` (Prometheus text).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let response = reqwest::get(format!("{}/metrics", self.http_url()))
            .await
            .context("GET /metrics")?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET /metrics answered {}",
            response.status()
        );
        Ok(response.text().await?)
    }

    /// The order ids in the orderbook of the user of `key`, in the book's order.
    pub async fn order_ids(&self, key: &str) -> anyhow::Result<Vec<String>> {
        let (status, book) = self
            .post("orderbook", serde_json::json!({"apikey": key}))
            .await?;
        anyhow::ensure!(status == 200, "orderbook answered {status}: {book}");
        Ok(book["data"]["orders"]
            .as_array()
            .context("orderbook without data.orders")?
            .iter()
            .filter_map(|order| order["orderid"].as_str().map(str::to_string))
            .collect())
    }

    /// `ws://host:port` of the WebSocket market-data server.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://{}",
            self.addresses.get("websocket").map_or("", String::as_str)
        )
    }

    /// Creates a user with a fresh API key through `oa-server apikey create`, against this
    /// server's store, and returns the key.
    pub fn create_user(&self, user: &str) -> anyhow::Result<String> {
        let key = self.apikey(&["create", "--user", user])?;
        if key.len() < 32 {
            bail!("unexpected apikey output {key:?}");
        }
        Ok(key)
    }

    /// Runs `oa-server apikey <args>` against this server's store (a separate process, as an
    /// operator would) and returns its standard output.
    pub fn apikey(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["apikey"];
        all.extend_from_slice(args);
        self.admin(&all)
    }

    /// Runs `oa-server <args>` (an administration command such as `esb allow --user u`)
    /// against this server's store in a separate process and returns its standard output.
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(server_binary()?)
            .current_dir(self.data_dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OA_ENV_FILE", self.data_dir.path().join("absent.env"))
            .env("DATABASE_URL", &self.database_url)
            .args(args)
            .output()
            .with_context(|| format!("running oa-server {args:?}"))?;
        if !output.status.success() {
            bail!(
                "oa-server {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Changes (or adds) one setting for the next [`TestServer::start_again`].
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_string(), value.to_string()));
    }

    /// The server's SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.path().join("oa.db")
    }

    /// `GET /health` as JSON, without an async runtime (usable from `start`).
    pub fn health_blocking(&self) -> anyhow::Result<serde_json::Value> {
        let address = self.addresses.get("http").context("no http address")?;
        let mut stream = std::net::TcpStream::connect(address.as_str())
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        std::io::Write::write_all(
            &mut stream,
            format!("GET /health HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes(),
        )?;
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response)?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .with_context(|| format!("no HTTP body in {response:?}"))?;
        serde_json::from_str(body).with_context(|| format!("/health is not JSON: {body}"))
    }

    /// In KAFKA and BOTH passes of the suite, a server that cannot reach the suite's broker
    /// fails its test at once: the pass must exercise Kafka, not merely start without it.
    fn wait_for_kafka_connected(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.health_blocking()?;
            if health["kafka"]["connected"] == true {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "ORDER_EVENT_MODE={} but the Kafka relay did not connect to the suite's broker \
                     {} within 30 s (is it running? `cargo xtask test-both-modes` starts it); \
                     /health: {health}\n--- server log\n{}",
                    self.events.mode,
                    self.events
                        .kafka
                        .as_ref()
                        .map_or("(none)", |kafka| kafka.bootstrap.as_str()),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the running process without waiting for anything.
    pub fn send_signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the server is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The exit status, if the server has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("server already stopped"),
        }
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`) and waits up to `timeout` for the exit.
    pub fn signal(&mut self, signal: &str, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("server already stopped");
        };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} failed");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("oa-server did not exit within {timeout:?} of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The key printed after the "First start" line.
fn first_start_key(log: &str) -> Option<String> {
    let mut lines = log.lines();
    lines.find(|line| line.starts_with("First start:"))?;
    lines.next().map(|key| key.trim().to_string())
}

/// Runs the binary with the given environment and arguments to completion (for start-up
/// failures), returning its exit status and combined output.
pub fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<(ExitStatus, String)> {
    run_binary_to_exit(&server_binary()?, env, args)
}

/// [`run_to_exit`] for a given `oa-server` binary (oa-server's own tests pass the one cargo
/// built for them).
pub fn run_binary_to_exit(
    binary: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> anyhow::Result<(ExitStatus, String)> {
    let directory = tempfile::tempdir()?;
    let output = Command::new(binary)
        .current_dir(directory.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OA_ENV_FILE", directory.path().join("absent.env"))
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running oa-server")?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status, text))
}
