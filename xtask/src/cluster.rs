//! `cargo xtask cluster up|down|status`: a local oa cluster (docs/scaling.md): the broker of
//! `kafka up`, the PostgreSQL server of `pg up`, two `core` processes (one leads, one stands
//! by) and two `edge` processes, each `oa-server` built from the current sources.
//!
//! - Run state (per process: working folder, `server.log`, `oa-server.pid`, `ready.json`)
//!   lives in `target/oa-cluster/<name>/`. The store and the topic survive `down`/`up`.
//! - Fixed ports on 127.0.0.1 (HTTP, WebSocket, ZMQ bus): core-1 5101/8101/5601, core-2
//!   5102/8102/5602, edge-1 5111/8111/5611, edge-2 5112/8112/5612.
//! - `up` prints where to point clients; the first `up` prints the default user's API key
//!   (also in `target/oa-cluster/core-1/server.log`).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::kafka::{self, pid_of, stop_pid};
use crate::pg;
use crate::util::{self, root};

/// The broker port `cluster` uses unless told otherwise (not 9092: the tests use it).
pub const DEFAULT_KAFKA_PORT: u16 = 9096;

/// What to do with the local cluster.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Build oa-server, start the broker and PostgreSQL (as `kafka up` and `pg up`), then two
    /// cores and two edges; print where to point clients.
    Up {
        /// Port of the broker on 127.0.0.1.
        #[arg(long, default_value_t = DEFAULT_KAFKA_PORT)]
        kafka_port: u16,
        /// Port of PostgreSQL on 127.0.0.1.
        #[arg(long, default_value_t = pg::DEFAULT_PORT)]
        pg_port: u16,
    },
    /// Stop the four oa-server processes, then the broker and PostgreSQL (their data stay).
    Down {
        /// Port of the broker on 127.0.0.1.
        #[arg(long, default_value_t = DEFAULT_KAFKA_PORT)]
        kafka_port: u16,
        /// Port of PostgreSQL on 127.0.0.1.
        #[arg(long, default_value_t = pg::DEFAULT_PORT)]
        pg_port: u16,
    },
    /// Print each process's pid and `/health`.
    Status,
}

/// One oa-server process of the cluster.
struct Member {
    name: &'static str,
    role: &'static str,
    http: u16,
    websocket: u16,
    zmq: u16,
}

const MEMBERS: [Member; 4] = [
    Member {
        name: "core-1",
        role: "core",
        http: 5101,
        websocket: 8101,
        zmq: 5601,
    },
    Member {
        name: "core-2",
        role: "core",
        http: 5102,
        websocket: 8102,
        zmq: 5602,
    },
    Member {
        name: "edge-1",
        role: "edge",
        http: 5111,
        websocket: 8111,
        zmq: 5611,
    },
    Member {
        name: "edge-2",
        role: "edge",
        http: 5112,
        websocket: 8112,
        zmq: 5612,
    },
];

impl Member {
    fn dir(&self) -> PathBuf {
        root().join("target/oa-cluster").join(self.name)
    }

    fn pid(&self) -> Option<u32> {
        pid_of(&self.dir().join("oa-server.pid"), "oa-server")
    }

    /// Starts the process (in its own process group: it outlives this command) and waits
    /// for its ready file.
    fn start(&self, database_url: &str, bootstrap: &str) -> anyhow::Result<()> {
        if let Some(pid) = self.pid() {
            println!("{}: already running (pid {pid})", self.name);
            return Ok(());
        }
        let dir = self.dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ready = dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log_path = dir.join("server.log");
        let log = util::append_log(&log_path)?;
        let mut child = Command::new(util::debug_binary("oa-server"))
            .current_dir(&dir)
            .env("OA_ENV_FILE", dir.join("absent.env"))
            .env("OA_ROLE", self.role)
            .env("DATABASE_URL", database_url)
            .env("ORDER_EVENT_MODE", "KAFKA")
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("FLASK_PORT", self.http.to_string())
            .env("WEBSOCKET_PORT", self.websocket.to_string())
            .env("ZMQ_PORT", self.zmq.to_string())
            .env("OA_READY_FILE", &ready)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("starting oa-server")?;
        let pid = child.id();
        std::fs::write(dir.join("oa-server.pid"), pid.to_string())
            .context("writing the pid file")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready.exists() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited early ({status}); its log: {}",
                    self.name,
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after 120 s; its log: {}",
                    self.name,
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "{}: started pid {pid} (log {})",
            self.name,
            log_path.display()
        );
        // It keeps running after this command exits.
        std::mem::forget(child);
        Ok(())
    }
}

/// Runs one action.
pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Up {
            kafka_port,
            pg_port,
        } => up(kafka_port, pg_port),
        Action::Down {
            kafka_port,
            pg_port,
        } => down(kafka_port, pg_port),
        Action::Status => status(),
    }
}

fn up(kafka_port: u16, pg_port: u16) -> anyhow::Result<()> {
    util::step("build oa-server", || {
        util::cargo(&["build", "-p", "oa-server"])
    })?;
    kafka::run(kafka::Action::Up {
        port: kafka_port,
        storage: kafka::Storage::Sqlite,
        secure: false,
    })?;
    let database_url = pg::start(pg_port)?;
    let bootstrap = format!("127.0.0.1:{kafka_port}");
    // The first core migrates the store and creates the default user before the others
    // start; edges need the migrated store.
    for member in &MEMBERS {
        member.start(&database_url, &bootstrap)?;
    }
    let log = std::fs::read_to_string(MEMBERS[0].dir().join("server.log")).unwrap_or_default();
    let key = first_start_key(&log);
    println!();
    println!("oa cluster up: 2 cores (one leads), 2 edges; Kafka {bootstrap}, {database_url}");
    println!(
        "  REST (orders): http://127.0.0.1:5101 and http://127.0.0.1:5102 (the leader answers; the standby 503s, /health says which)"
    );
    println!(
        "  Socket.IO:     http://127.0.0.1:5111 and http://127.0.0.1:5112 (any edge; resume with the last seq on either)"
    );
    println!(
        "  WebSocket:     ws://127.0.0.1:8111 and ws://127.0.0.1:8112 (market data, subscribe_orders)"
    );
    println!(
        "  Tick feeds:    publish to tcp://127.0.0.1:5611 and tcp://127.0.0.1:5612 (each edge's bus)"
    );
    match key {
        Some(key) => println!("  API key of user admin (shown once, store it now): {key}"),
        None => println!(
            "  API key: printed at the first `cluster up` in {}",
            MEMBERS[0].dir().join("server.log").display()
        ),
    }
    println!("Stop with: cargo xtask cluster down");
    Ok(())
}

/// The key printed after the "First start" line of a server log (the last one).
fn first_start_key(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let at = lines
        .iter()
        .rposition(|line| line.starts_with("First start:"))?;
    lines.get(at + 1).map(|key| key.trim().to_string())
}

fn down(kafka_port: u16, pg_port: u16) -> anyhow::Result<()> {
    // Edges first, then the standby, then the leader: no takeover on the way down.
    for member in MEMBERS.iter().rev() {
        match member.pid() {
            Some(pid) => stop_pid(pid, member.name),
            None => println!("{}: not running", member.name),
        }
        let _ = std::fs::remove_file(member.dir().join("oa-server.pid"));
    }
    kafka::run(kafka::Action::Down { port: kafka_port })?;
    pg::down(pg_port)
}

fn status() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building an HTTP client")?;
    for member in &MEMBERS {
        let Some(pid) = member.pid() else {
            println!("{}: not running", member.name);
            continue;
        };
        let url = format!("http://127.0.0.1:{}/health", member.http);
        let role = runtime.block_on(async {
            let body: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            body["role"].as_str().map(str::to_string)
        });
        println!(
            "{}: pid {pid}, http 127.0.0.1:{}, role {}",
            member.name,
            member.http,
            role.as_deref().unwrap_or("(no answer)")
        );
    }
    Ok(())
}
