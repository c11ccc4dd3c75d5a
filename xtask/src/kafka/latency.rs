//! `cargo xtask kafka bench-latency`: order placed over HTTP -> its `order_event` record at a
//! Kafka consumer, at a paced rate (1,000 orders/s by default), through the real release `oa-server` in KAFKA
//! mode and a private tansu broker (memory storage unless told), all on loopback.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use oa_e2e::tansu::{SecureOptions, Storage, Tansu};
use oa_events_kafka::{
    ConsumedRecord, ConsumerOptions, Handled, Handling, KafkaConfig, MemoryOffsetStore,
    RecordHandler, SecurityConfig, StartPosition, StopSignal, TopicConsumer,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::util::{cargo_command, root, run as run_command};

/// Warm-up and measured duration (the rate is `--rate`, 1,000 orders/s by default).
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURED: Duration = Duration::from_secs(10);
/// How long to wait for the last events after the last order.
const DRAIN: Duration = Duration::from_secs(5);
/// The whole run after the build: broker, server, price, load, drain, shutdown.
const RUN_BOUND: Duration = Duration::from_secs(60);
/// The server's default outbound topic.
const TOPIC: &str = "from_openalgo_order_events";

/// The SASL login of the `--secure` run.
const USER: &str = "oa";
const PASSWORD: &str = "oa-bench-latency";

pub fn run(rate: u64, fetch_wait_ms: i32, secure: bool, storage: Storage) -> anyhow::Result<()> {
    let tansu = super::install()?;
    let server_binary = build_server()?;
    let load_before = oa_e2e::load_average();
    // Tansu::start looks in the same tools folder install() used, unless told otherwise.
    let started = if secure {
        println!("starting tansu (sqlite storage, SASL SCRAM, behind TLS) on a free loopback port");
        Tansu::start_secure(&SecureOptions::tls_and_sasl(USER, PASSWORD))
    } else {
        println!(
            "starting tansu ({} storage) on a free loopback port",
            storage.name()
        );
        Tansu::start(storage)
    };
    let broker = started.with_context(|| {
        format!(
            "starting {} (set OA_TANSU_BIN to use another binary)",
            tansu.display()
        )
    })?;
    let security: Vec<(String, String)> = match broker.pki() {
        Some(pki) if secure => vec![
            ("KAFKA_SECURITY_PROTOCOL".into(), "SASL_SSL".into()),
            ("KAFKA_SASL_MECHANISM".into(), "SCRAM-SHA-512".into()),
            ("KAFKA_SASL_USERNAME".into(), USER.into()),
            ("KAFKA_SASL_PASSWORD".into(), PASSWORD.into()),
            ("KAFKA_SSL_CA_LOCATION".into(), pki.ca.display().to_string()),
        ],
        _ => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(async {
        match tokio::time::timeout(
            RUN_BOUND,
            measure(
                &server_binary,
                &broker,
                &LoadPlan {
                    rate,
                    fetch_wait_ms,
                    security,
                },
            ),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => bail!("the benchmark did not finish within {RUN_BOUND:?}"),
        }
    });
    // Consumers and request tasks still running after an error end with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(broker);
    let report = result?;
    report.print(&load_before, &oa_e2e::load_average(), secure, storage);
    Ok(())
}

/// The release `oa-server`: `OA_SERVER_BIN` when set (a binary built before, for a run on a
/// quiet machine without a build first), else built now.
fn build_server() -> anyhow::Result<PathBuf> {
    if let Some(binary) = std::env::var_os("OA_SERVER_BIN").map(PathBuf::from) {
        if !binary.exists() {
            bail!("OA_SERVER_BIN={} does not exist", binary.display());
        }
        println!("using OA_SERVER_BIN={} (not built now)", binary.display());
        return Ok(binary);
    }
    println!("building oa-server (cargo build --release -p oa-server; cargo prints progress)");
    let started = Instant::now();
    run_command(cargo_command().args(["build", "--release", "-p", "oa-server"]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let binary = target.join("release/oa-server");
    if !binary.exists() {
        bail!("{} is missing after the build", binary.display());
    }
    println!("oa-server built in {:.0?}", started.elapsed());
    Ok(binary)
}

/// The real server, started with ports 0 in its own folder; killed and removed on drop.
#[derive(Debug)]
struct Server {
    child: Child,
    dir: PathBuf,
    http: String,
    admin_key: String,
}

impl Server {
    fn start(
        binary: &Path,
        bootstrap: &str,
        security: &[(String, String)],
    ) -> anyhow::Result<Server> {
        let dir = root()
            .join("target/oa-kafka")
            .join(format!("bench-latency-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let ready_file = dir.join("ready.json");
        let child = Command::new(binary)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env("OA_ENV_FILE", dir.join("absent.env"))
            .env("FLASK_PORT", "0")
            .env("WEBSOCKET_PORT", "0")
            .env("ZMQ_PORT", "0")
            .env(
                "DATABASE_URL",
                format!("sqlite:///{}", dir.join("oa.db").display()),
            )
            .env("OA_READY_FILE", &ready_file)
            .env("ORDER_EVENT_MODE", "KAFKA")
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("KAFKA_CREATE_TOPICS", "true")
            .env("KAFKA_PRODUCER_LINGER_MS", "1")
            .envs(security.iter().map(|(name, value)| (name, value)))
            .env("ORDER_RATE_LIMIT", "100000 per second")
            .env("API_RATE_LIMIT", "100000 per second")
            .env("OA_FEED_TICKS_PER_SECOND", "500")
            // The store's commit discipline may be compared (OA_STORE_SYNC=normal|full).
            .envs(
                std::env::var("OA_STORE_SYNC")
                    .ok()
                    .map(|sync| ("OA_STORE_SYNC", sync)),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Server {
            child,
            dir,
            http: String::new(),
            admin_key: String::new(),
        };
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                let addresses: HashMap<String, String> = serde_json::from_str(&text)
                    .with_context(|| format!("parsing the ready file {text:?}"))?;
                server.http = format!(
                    "http://{}",
                    addresses
                        .get("http")
                        .context("no http address in the ready file")?
                );
                let text = log();
                let mut lines = text.lines();
                server.admin_key = lines
                    .find(|line| line.starts_with("First start:"))
                    .and_then(|_| lines.next())
                    .map(|key| key.trim().to_string())
                    .with_context(|| format!("no first-start API key in the log:\n{text}"))?;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("oa-server exited at start-up ({status}):\n{}", log());
            }
            if Instant::now() > deadline {
                bail!("oa-server not ready within 30 s:\n{}", log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `order_event` record as the consumer got it.
#[derive(Debug)]
struct Arrival {
    orderid: String,
    at: Instant,
    /// Wall-clock arrival, to compare with the envelope's `timestamp`.
    wall: DateTime<Utc>,
    /// The envelope's `timestamp`: when the server created the event.
    stamped: Option<DateTime<Utc>>,
}

/// One order request.
#[derive(Debug)]
struct Sent {
    at: Instant,
    wall: DateTime<Utc>,
    response_time: Duration,
    orderid: Option<String>,
}

#[derive(Debug)]
struct Report {
    sent: usize,
    failed: usize,
    send_span: Duration,
    rate: u64,
    fetch_wait_ms: i32,
    event_latency: Vec<Duration>,
    response_time: Vec<Duration>,
    /// Wall clock: request sent -> envelope `timestamp` (inside the server).
    to_stamp: Vec<Duration>,
    /// Wall clock: envelope `timestamp` -> at the consumer (outbox, relay, broker, fetch).
    stamp_to_consumer: Vec<Duration>,
    /// The server's `oa_kafka_delivery_seconds` quantiles (event created -> broker ack,
    /// whole run), by quantile name.
    delivery: HashMap<String, f64>,
    duplicates: usize,
}

fn percentile(sorted: &[Duration], q: f64) -> String {
    if sorted.is_empty() {
        return "-".to_string();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    format!("{:.2}", sorted[rank - 1].as_secs_f64() * 1e3)
}

impl Report {
    fn print(mut self, load_before: &str, load_after: &str, secure: bool, storage: Storage) {
        self.event_latency.sort();
        self.response_time.sort();
        self.to_stamp.sort();
        self.stamp_to_consumer.sort();
        let received = self.event_latency.len();
        let ok = self.sent - self.failed;
        println!();
        println!(
            "order placed -> order_event at an rskafka consumer (fetch max-wait {} ms), \
             MARKET orders at {}/s for {MEASURED:?} after a {WARM_UP:?} warm-up, {}",
            self.fetch_wait_ms,
            self.rate,
            if secure {
                "TLS + SASL SCRAM-SHA-512 (tansu sqlite storage behind a rustls proxy)".to_string()
            } else {
                format!("plaintext (tansu {} storage)", storage.name())
            }
        );
        println!(
            "orders sent: {} in {:.2} s ({:.0}/s); HTTP failures: {}; events received: {}; \
             missing: {}; duplicate records: {}",
            self.sent,
            self.send_span.as_secs_f64(),
            self.sent as f64 / self.send_span.as_secs_f64().max(1e-9),
            self.failed,
            received,
            ok.saturating_sub(received),
            self.duplicates
        );
        println!();
        println!("| ms | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|");
        for (name, values) in [
            ("order sent -> event at consumer", &self.event_latency),
            ("HTTP placeorder response", &self.response_time),
            (
                "  part: sent -> event created in the server",
                &self.to_stamp,
            ),
            (
                "  part: event created -> at consumer",
                &self.stamp_to_consumer,
            ),
        ] {
            println!(
                "| {name} | {} | {} | {} | {} |",
                percentile(values, 0.50),
                percentile(values, 0.90),
                percentile(values, 0.99),
                percentile(values, 1.0)
            );
        }
        let quantile = |name: &str| {
            self.delivery
                .get(name)
                .map_or("-".to_string(), |seconds| format!("{:.2}", seconds * 1e3))
        };
        println!(
            "|   of which: created -> broker ack (oa_kafka_delivery_seconds, incl. warm-up) | {} | {} | {} | {} |",
            quantile("0.5"),
            quantile("0.9"),
            quantile("0.99"),
            quantile("1")
        );
        println!();
        println!("load average (1, 5, 15 min): {load_before} before, {load_after} after");
    }
}

/// What a run measures with: the paced order rate, the consumer's fetch max-wait, and the
/// Kafka security settings (`KAFKA_*` variables) of the server and the consumer.
struct LoadPlan {
    rate: u64,
    fetch_wait_ms: i32,
    security: Vec<(String, String)>,
}

async fn measure(server_binary: &Path, broker: &Tansu, plan: &LoadPlan) -> anyhow::Result<Report> {
    let bootstrap = broker.bootstrap();
    println!("starting oa-server (KAFKA mode, broker {bootstrap})");
    let binary = server_binary.to_path_buf();
    let bootstrap_for_server = bootstrap.clone();
    let server_security = plan.security.clone();
    let server = tokio::task::spawn_blocking(move || {
        Server::start(&binary, &bootstrap_for_server, &server_security)
    })
    .await??;
    // Stops the server on every path out of here (Drop).
    let result = load(&server, &bootstrap, plan).await;
    tokio::task::spawn_blocking(move || drop(server)).await?;
    result
}

async fn load(server: &Server, bootstrap: &str, plan: &LoadPlan) -> anyhow::Result<Report> {
    let LoadPlan {
        rate,
        fetch_wait_ms,
        ref security,
    } = *plan;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    wait_for_price(&http, server).await?;

    let security = SecurityConfig::from_lookup(|name| {
        security
            .iter()
            .find(|(variable, _)| variable == name)
            .map(|(_, value)| value.clone())
    })
    .map_err(|problems| anyhow::anyhow!("{problems:?}"))?;
    let config = KafkaConfig {
        bootstrap_servers: vec![bootstrap.to_string()],
        request_timeout: Duration::from_secs(5),
        security,
        ..KafkaConfig::default()
    };
    let partitions = topic_partitions(&config).await?;
    println!(
        "consuming {TOPIC} ({} partitions) with fetch max-wait {fetch_wait_ms} ms",
        partitions.len()
    );
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<Arrival>();
    // oa's own topic consumer: one partition client (one connection) per partition, so a
    // fetch that tansu holds for its whole max-wait delays no other partition.
    let consumer = TopicConsumer::new(config, TOPIC, Arc::new(MemoryOffsetStore::new()))
        .start_at(StartPosition::Earliest)
        .with_options(ConsumerOptions {
            name: "latency bench".to_string(),
            fetch_max_wait: Duration::from_millis(u64::try_from(fetch_wait_ms).unwrap_or(0)),
            ..ConsumerOptions::default()
        })
        .spawn(Arc::new(ArrivalClock {
            arrivals: arrivals_tx,
        }))
        .context("starting the consumer")?;

    let body = serde_json::to_vec(&json!({"apikey": server.admin_key, "strategy": "bench",
        "exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1",
        "product": "MIS", "pricetype": "MARKET"}))?;
    let url = format!("{}/api/v1/placeorder", server.http);
    println!("warm-up: {rate}/s for {WARM_UP:?}");
    let _ = paced(&http, &url, &body, rate, WARM_UP).await;
    println!("measuring: {rate}/s for {MEASURED:?}");
    let started = Instant::now();
    let mut requests = paced(&http, &url, &body, rate, MEASURED).await;
    let send_span = started.elapsed();
    let mut sent = Vec::with_capacity(requests.len());
    for request in requests.drain(..) {
        sent.push(request.await?);
    }

    // Collect arrivals until every acknowledged order's event came, or the drain ends.
    let wanted: HashMap<&str, &Sent> = sent
        .iter()
        .filter_map(|request| request.orderid.as_deref().map(|id| (id, request)))
        .collect();
    let mut arrived: HashMap<String, Arrival> = HashMap::new();
    let mut duplicates = 0;
    let mut matched = 0;
    let deadline = tokio::time::Instant::now() + DRAIN;
    while matched < wanted.len() {
        let next = tokio::time::timeout_at(deadline, arrivals.recv()).await;
        let Ok(Some(arrival)) = next else {
            break;
        };
        let measured = wanted.contains_key(arrival.orderid.as_str());
        if arrived.contains_key(&arrival.orderid) {
            duplicates += usize::from(measured);
            continue;
        }
        matched += usize::from(measured);
        arrived.insert(arrival.orderid.clone(), arrival);
    }
    let delivery = delivery_quantiles(&http, server).await;
    let failures = consumer.monitor().stats().failures;
    if failures > 0 {
        println!("warning: the consumer retried after {failures} broker failure(s)");
    }
    consumer.shutdown(Duration::from_secs(5)).await;

    let pairs: Vec<(&Sent, &Arrival)> = wanted
        .iter()
        .filter_map(|(orderid, request)| arrived.get(*orderid).map(|arrival| (*request, arrival)))
        .collect();
    let event_latency = pairs
        .iter()
        .map(|(request, arrival)| arrival.at.saturating_duration_since(request.at))
        .collect();
    let wall = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).to_std().unwrap_or_default();
    let to_stamp = pairs
        .iter()
        .filter_map(|(request, arrival)| arrival.stamped.map(|stamp| wall(request.wall, stamp)))
        .collect();
    let stamp_to_consumer = pairs
        .iter()
        .filter_map(|(_, arrival)| arrival.stamped.map(|stamp| wall(stamp, arrival.wall)))
        .collect();
    Ok(Report {
        sent: sent.len(),
        failed: sent
            .iter()
            .filter(|request| request.orderid.is_none())
            .count(),
        send_span,
        rate,
        fetch_wait_ms,
        event_latency,
        response_time: sent.iter().map(|request| request.response_time).collect(),
        to_stamp,
        stamp_to_consumer,
        delivery,
        duplicates,
    })
}

/// `oa_kafka_delivery_seconds{quantile="..."}` from the server's /metrics (empty when
/// unavailable: the row then shows dashes).
async fn delivery_quantiles(http: &reqwest::Client, server: &Server) -> HashMap<String, f64> {
    let Ok(response) = http.get(format!("{}/metrics", server.http)).send().await else {
        return HashMap::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("oa_kafka_delivery_seconds{")?;
            let (labels, value) = rest.split_once("} ")?;
            let quantile = labels
                .split(',')
                .find_map(|label| label.strip_prefix("quantile="))?
                .trim_matches('"');
            Some((quantile.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

async fn wait_for_price(http: &reqwest::Client, server: &Server) -> anyhow::Result<()> {
    let body = json!({"apikey": server.admin_key, "exchange": "NSE", "symbol": "SBIN"});
    let url = format!("{}/api/v1/quotes", server.http);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(response) = http.post(&url).json(&body).send().await
            && response.status().is_success()
            && let Ok(quote) = response.json::<Value>().await
            && quote["data"]["ltp"].as_f64().unwrap_or(0.0) > 0.0
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no SBIN price from the simulated feed within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn topic_partitions(config: &KafkaConfig) -> anyhow::Result<Vec<i32>> {
    let client = oa_events_kafka::connect(config)
        .await
        .context("connecting to the broker")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let topics = client.list_topics().await.context("listing topics")?;
        if let Some(topic) = topics.into_iter().find(|topic| topic.name == TOPIC)
            && !topic.partitions.is_empty()
        {
            return Ok(topic.partitions.into_iter().collect());
        }
        if Instant::now() > deadline {
            bail!("the server did not create {TOPIC} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stamps the arrival of every `order_event` record, by its `data.orderid`.
struct ArrivalClock {
    arrivals: mpsc::UnboundedSender<Arrival>,
}

impl RecordHandler for ArrivalClock {
    fn handle<'a>(&'a self, record: &'a ConsumedRecord, _stop: &'a mut StopSignal) -> Handling<'a> {
        let now = Instant::now();
        let wall = Utc::now();
        if let Some(value) = &record.record.value
            && let Ok(envelope) = serde_json::from_slice::<Value>(value)
            && envelope["event_type"] == "order_event"
            && let Some(orderid) = envelope["data"]["orderid"].as_str()
        {
            let stamped = envelope["timestamp"]
                .as_str()
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|time| time.with_timezone(&Utc));
            let _ = self.arrivals.send(Arrival {
                orderid: orderid.to_string(),
                at: now,
                wall,
                stamped,
            });
        }
        Box::pin(async { Ok(Handled::Processed) })
    }
}

/// Sends `rate` orders per second for `duration`, open loop (each request on its own task
/// over the keep-alive pool, so a slow response never delays the next send).
async fn paced(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    rate: u64,
    duration: Duration,
) -> Vec<tokio::task::JoinHandle<Sent>> {
    let total = duration.as_millis() as u64 * rate / 1_000;
    let interval = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    let started = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(total as usize);
    let mut sent = 0;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while sent < due {
            let request = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_vec());
            requests.push(tokio::spawn(async move {
                let at = Instant::now();
                let wall = Utc::now();
                let orderid = match request.send().await {
                    Ok(response) if response.status().is_success() => response
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|body| body["orderid"].as_str().map(str::to_string)),
                    _ => None,
                };
                Sent {
                    at,
                    wall,
                    response_time: at.elapsed(),
                    orderid,
                }
            }));
            sent += 1;
        }
        tokio::time::sleep_until(started + interval * sent as u32).await;
    }
    requests
}
