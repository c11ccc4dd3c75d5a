//! `cargo xtask kafka up|down|status|bench`: a real Kafka-protocol broker for development
//! and tests, tansu 0.6, on 127.0.0.1.
//!
//! - The binary is built once with `cargo install tansu --locked --features dynostore,libsql`
//!   (without a storage feature tansu maps every storage URL to a null engine that silently
//!   discards data) into `$OA_TOOLS_DIR` (default `$HOME/.cache/oa/tools`), outside the work
//!   tree, so `cargo clean` and fresh clones keep it. `OA_TANSU_BIN=/path/to/tansu` copies an
//!   already built binary instead of building.
//! - Run state (pid, log, `sqlite://` database) lives in `target/oa-kafka/<port>/`.
//! - `up` creates oa's topics explicitly (tansu does not auto-create them).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};

use crate::util::{root, run as run_command};

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

/// What to do with the local broker.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Install tansu if missing, start it on 127.0.0.1:<port>, create oa's topics.
    Up {
        /// Port of the listener (and advertised listener) on 127.0.0.1.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Storage engine.
        #[arg(long, value_enum, default_value_t = Storage::Sqlite)]
        storage: Storage,
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
    /// memory-storage broker on a free port, and compares with kafka-python).
    Bench,
}

/// Runs one action.
pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Up { port, storage } => up(port, storage),
        Action::Down { port } => down(port),
        Action::Status { port } => status(port),
        Action::Bench => bench(),
    }
}

fn tools_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OA_TOOLS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set OA_TOOLS_DIR")?;
    Ok(PathBuf::from(home).join(".cache/oa/tools"))
}

/// The cached tansu binary (what the tests look for too).
pub fn tansu_path() -> anyhow::Result<PathBuf> {
    Ok(tools_dir()?.join("tansu/bin/tansu"))
}

fn version_of(binary: &Path) -> Option<String> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Installs tansu into the tools folder unless it is already there.
pub fn install() -> anyhow::Result<PathBuf> {
    let target = tansu_path()?;
    if let Some(version) = version_of(&target) {
        println!("tansu: {version} at {}", target.display());
        return Ok(target);
    }
    let bin_dir = target
        .parent()
        .context("tansu path has no parent folder")?
        .to_path_buf();
    std::fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    if let Some(prebuilt) = std::env::var_os("OA_TANSU_BIN") {
        let prebuilt = PathBuf::from(prebuilt);
        let version = version_of(&prebuilt)
            .with_context(|| format!("OA_TANSU_BIN={} does not run", prebuilt.display()))?;
        std::fs::copy(&prebuilt, &target)
            .with_context(|| format!("copying {} to {}", prebuilt.display(), target.display()))?;
        println!("tansu: copied {version} from {}", prebuilt.display());
        return Ok(target);
    }
    let install_root = bin_dir.parent().context("tansu bin folder has no parent")?;
    println!(
        "tansu: not installed; building tansu {TANSU_VERSION} with cargo install into {} \
         (first build takes about 15 minutes on 2 cores; cargo prints its progress)",
        install_root.display()
    );
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run_command(
        Command::new(cargo)
            .args([
                "install",
                "tansu",
                "--version",
                &format!("~{TANSU_VERSION}"),
                "--locked",
                "--features",
                "dynostore,libsql",
                "--root",
            ])
            .arg(install_root)
            // Never build into the workspace's target folder.
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    let version = version_of(&target)
        .with_context(|| format!("{} does not run after install", target.display()))?;
    println!("tansu: built {version} in {:.0?}", started.elapsed());
    Ok(target)
}

fn run_dir(port: u16) -> PathBuf {
    root().join("target/oa-kafka").join(port.to_string())
}

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// True once something on `addr` answers a Kafka ApiVersions request.
fn answers_kafka(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let client_id = b"oa-xtask";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // v0
    body.extend_from_slice(&42i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).is_ok()
        && i32::from_be_bytes([header[4], header[5], header[6], header[7]]) == 42
}

/// The pid recorded by `up`, when that process still runs tansu.
fn running_pid(port: u16) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(run_dir(port).join("tansu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains("tansu")
        .then_some(pid)
}

/// True when a broker started by `up` runs on `port` and answers.
pub fn is_running(port: u16) -> bool {
    running_pid(port).is_some() && answers_kafka(addr(port))
}

fn up(port: u16, storage: Storage) -> anyhow::Result<()> {
    let binary = install()?;
    let dir = run_dir(port);
    if let Some(pid) = running_pid(port)
        && answers_kafka(addr(port))
    {
        println!("tansu already running (pid {pid}) on 127.0.0.1:{port}");
        create_topics(&binary, port)?;
        return Ok(());
    }
    if answers_kafka(addr(port)) {
        bail!(
            "something else already answers Kafka requests on 127.0.0.1:{port}; stop it or use --port"
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = format!("tcp://127.0.0.1:{port}");
    let storage_url = match storage {
        // Relative to the broker's working folder (the run folder).
        Storage::Sqlite => "sqlite://tansu.db",
        Storage::Memory => "memory://tansu/",
    };
    let log_path = dir.join("tansu.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(&binary);
    command
        .arg("broker")
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", storage_url])
        .env_remove("STORAGE_ENGINE")
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a Ctrl-C in this terminal must not stop the broker.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    std::fs::write(dir.join("tansu.pid"), pid.to_string()).context("writing the pid file")?;
    std::fs::write(dir.join("storage"), storage_url).context("writing the storage file")?;
    println!(
        "tansu: started pid {pid} on {url} with {storage_url} (log {})",
        log_path.display()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if answers_kafka(addr(port)) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "tansu exited at start-up ({status}); its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "tansu did not answer Kafka requests on {url} within 30 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("tansu: accepting Kafka connections on 127.0.0.1:{port}");
    create_topics(&binary, port)?;
    Ok(())
}

fn create_topics(binary: &Path, port: u16) -> anyhow::Result<()> {
    let broker = format!("tcp://127.0.0.1:{port}");
    let listed = Command::new(binary)
        .args(["topic", "list", "--broker", &broker])
        .output()
        .context("running tansu topic list")?;
    let existing = String::from_utf8_lossy(&listed.stdout).into_owned();
    for (topic, partitions) in TOPICS {
        if existing
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .any(|word| word == *topic)
        {
            println!("topic {topic}: exists");
            continue;
        }
        let output = Command::new(binary)
            .args(["topic", "create", topic, "--broker", &broker])
            .args(["--partitions", &partitions.to_string()])
            .args(["--config", &format!("retention.ms={RETENTION_MS}")])
            .output()
            .context("running tansu topic create")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() && !text.contains("Error") {
            println!("topic {topic}: created ({partitions} partitions, 7-day retention)");
        } else if text.contains("TopicAlreadyExists") {
            println!("topic {topic}: exists");
        } else {
            bail!(
                "tansu topic create {topic} failed ({}): {text}",
                output.status
            );
        }
    }
    Ok(())
}

fn down(port: u16) -> anyhow::Result<()> {
    let dir = run_dir(port);
    let Some(pid) = running_pid(port) else {
        let _ = std::fs::remove_file(dir.join("tansu.pid"));
        println!(
            "tansu: not running (no live pid recorded in {})",
            dir.display()
        );
        return Ok(());
    };
    let signal = |name: &str| {
        Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .map(|status| status.success())
            .unwrap_or(false)
    };
    signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        println!("tansu: pid {pid} ignored SIGTERM for 10 s; sending SIGKILL");
        signal("KILL");
    }
    let _ = std::fs::remove_file(dir.join("tansu.pid"));
    println!("tansu: stopped pid {pid}");
    Ok(())
}

fn status(port: u16) -> anyhow::Result<()> {
    let binary = tansu_path()?;
    match version_of(&binary) {
        Some(version) => println!("installed: {version} at {}", binary.display()),
        None => println!(
            "installed: no ({} missing; `cargo xtask kafka up` installs it)",
            binary.display()
        ),
    }
    let dir = run_dir(port);
    match running_pid(port) {
        Some(pid) => println!(
            "process:   pid {pid}, storage {}, log {}",
            std::fs::read_to_string(dir.join("storage")).unwrap_or_else(|_| "?".into()),
            dir.join("tansu.log").display()
        ),
        None => println!("process:   not started by `cargo xtask kafka up`"),
    }
    if answers_kafka(addr(port)) {
        println!("broker:    answering Kafka requests on 127.0.0.1:{port}");
        Ok(())
    } else {
        bail!("no Kafka broker answers on 127.0.0.1:{port}: run `cargo xtask kafka up`")
    }
}

fn bench() -> anyhow::Result<()> {
    let binary = install()?;
    println!("running the Kafka sink benchmark (bounded to about two minutes)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    run_command(
        Command::new(cargo)
            .args([
                "bench",
                "-p",
                "oa-events-kafka",
                "--bench",
                "kafka_throughput",
            ])
            .env("OA_TANSU_BIN", &binary)
            .current_dir(root()),
    )
}
