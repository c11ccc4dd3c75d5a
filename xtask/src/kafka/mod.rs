//! `cargo xtask kafka up|down|status|bench|bench-latency`: a real Kafka-protocol broker for development
//! and tests, tansu 0.6, on 127.0.0.1.
//!
//! - The binary is built once with `cargo install tansu --locked --features dynostore,libsql`
//!   (without a storage feature tansu maps every storage URL to a null engine that silently
//!   discards data) into `$OA_TOOLS_DIR` (default `$HOME/.cache/oa/tools`), outside the work
//!   tree, so `cargo clean` and fresh clones keep it. `OA_TANSU_BIN=/path/to/tansu` copies an
//!   already built binary instead of building.
//! - Run state (pid, log, `sqlite://` database) lives in `target/oa-kafka/<port>/`.
//! - `up` creates oa's topics explicitly (tansu does not auto-create them).
//! - `up --secure`: SASL (SCRAM) and TLS, see [`secure`].
//! - `up` prints the exact environment an oa-server needs to use the broker.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::util::{cargo_command, run as run_command};

mod broker;
mod latency;
pub(crate) mod secure;

pub(crate) use broker::{
    addr, answers_kafka, create_topics, install, is_running, pid_of, print_client_env, run_dir,
    running_pid, start_tansu, stop_pid, storage_url,
};
use broker::{down, status, up};

/// The tansu release line oa is tested with.
const TANSU_VERSION: &str = "0.6";

/// oa's topics and their partition counts, created by `up`.
const TOPICS: &[(&str, u32)] = &[
    ("from_openalgo_order_events", 3),
    ("from_esb_order_events", 3),
    ("from_esb_order_events.dlq", 1),
];

/// Seven days, the production retention of oa's topics.
const RETENTION_MS: &str = "604800000";

/// Where tansu keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Storage {
    /// `sqlite://` file in the run folder: survives restarts.
    Sqlite,
    /// `memory://`: fastest, lost when the broker stops (benchmarks).
    Memory,
}

impl From<Storage> for oa_e2e::tansu::Storage {
    fn from(storage: Storage) -> Self {
        match storage {
            Storage::Sqlite => oa_e2e::tansu::Storage::Sqlite,
            Storage::Memory => oa_e2e::tansu::Storage::Memory,
        }
    }
}

/// What to do with the local broker.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Install tansu if missing, start it on 127.0.0.1:PORT, create oa's topics.
    Up {
        /// Port of the listener (and advertised listener) on 127.0.0.1.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Storage engine.
        #[arg(long, value_enum, default_value_t = Storage::Sqlite)]
        storage: Storage,
        /// TLS + SASL SCRAM: a CA and broker certificate generated into the run folder, the
        /// user `oa` with a generated password, `--authentication`; sqlite storage only.
        #[arg(long)]
        secure: bool,
    },
    /// (internal) The TLS terminator `up --secure` runs in front of tansu.
    #[command(hide = true)]
    TlsProxy {
        /// Address to accept TLS connections on.
        #[arg(long)]
        listen: SocketAddr,
        /// The plaintext broker to forward to.
        #[arg(long)]
        upstream: SocketAddr,
        /// Server certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
    },
    /// Stop the broker started by `up`.
    Down {
        /// Port the broker listens on.
        #[arg(long, default_value_t = 9092)]
        port: u16,
    },
    /// Report whether the broker runs and answers Kafka requests.
    Status {
        /// Port the broker listens on.
        #[arg(long, default_value_t = 9092)]
        port: u16,
    },
    /// Install tansu if missing, then run the Kafka sink benchmark (it starts its own
    /// broker on a free port, and compares with kafka-python).
    Bench {
        /// Over TLS + SASL SCRAM-SHA-512 (a secure broker with sqlite storage, as `up --secure`).
        #[arg(long)]
        secure: bool,
        /// The broker's storage for a plaintext run (`--secure` always uses sqlite); `sqlite`
        /// makes a plaintext run comparable with a `--secure` one.
        #[arg(long, value_enum, default_value_t = Storage::Memory, conflicts_with = "secure")]
        storage: Storage,
    },
    /// Install tansu if missing, build the release oa-server, then measure order placed ->
    /// `order_event` at a Kafka consumer at a paced rate (its own memory-storage broker
    /// and server on free loopback ports; about 30 s after the build).
    BenchLatency {
        /// The consumer's fetch max-wait in milliseconds, 1-10 (tansu waits all of it on
        /// every fetch, so it adds up to this much to each event).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=10))]
        fetch_wait_ms: i32,
        /// Orders per second, 1-5000 (a broker that cannot keep up with the default, such as
        /// tansu on sqlite storage, gets its events late or not within the drain window).
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=5_000))]
        rate: u64,
        /// Over TLS + SASL SCRAM-SHA-512 (server, broker and consumer).
        #[arg(long)]
        secure: bool,
        /// The broker's storage for a plaintext run (`--secure` always uses sqlite); `sqlite`
        /// makes a plaintext run comparable with a `--secure` one.
        #[arg(long, value_enum, default_value_t = Storage::Memory, conflicts_with = "secure")]
        storage: Storage,
    },
}

/// Runs one action.
pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Up {
            port,
            storage,
            secure: false,
        } => up(port, storage),
        Action::Up {
            port,
            storage,
            secure: true,
        } => secure::up(port, storage),
        Action::TlsProxy {
            listen,
            upstream,
            cert,
            key,
        } => secure::run_proxy(listen, upstream, &cert, &key),
        Action::Down { port } => down(port),
        Action::Status { port } => status(port),
        Action::Bench { secure, storage } => bench(secure, storage),
        Action::BenchLatency {
            rate,
            fetch_wait_ms,
            secure,
            storage,
        } => latency::run(rate, fetch_wait_ms, secure, storage.into()),
    }
}

fn bench(secure: bool, storage: Storage) -> anyhow::Result<()> {
    let binary = install()?;
    println!(
        "running the Kafka sink benchmark{} (bounded to a few minutes)",
        if secure {
            " over TLS + SASL SCRAM-SHA-512"
        } else {
            ""
        }
    );
    run_command(
        cargo_command()
            .args([
                "bench",
                "-p",
                "oa-events-kafka",
                "--bench",
                "kafka_throughput",
            ])
            .env("OA_TANSU_BIN", &binary)
            .env("OA_KAFKA_BENCH_SECURE", if secure { "1" } else { "0" })
            .env(
                "OA_KAFKA_BENCH_STORAGE",
                if storage == Storage::Sqlite {
                    "sqlite"
                } else {
                    "memory"
                },
            ),
    )
}
