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
    },
    /// Install tansu if missing, build the release oa-server, then measure order placed ->
    /// `order_event` at a Kafka consumer at 1,000 orders/s (its own memory-storage broker
    /// and server on free loopback ports; about 30 s after the build).
    BenchLatency {
        /// The consumer's fetch max-wait in milliseconds, 1-10 (tansu waits all of it on
        /// every fetch, so it adds up to this much to each event).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=10))]
        fetch_wait_ms: i32,
        /// Over TLS + SASL SCRAM-SHA-512 (server, broker and consumer).
        #[arg(long)]
        secure: bool,
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
        Action::Bench { secure } => bench(secure),
        Action::BenchLatency {
            fetch_wait_ms,
            secure,
        } => latency::run(fetch_wait_ms, secure),
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

pub(crate) fn run_dir(port: u16) -> PathBuf {
    root().join("target/oa-kafka").join(port.to_string())
}

pub(crate) fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// True once something on `addr` answers a Kafka ApiVersions request.
pub(crate) fn answers_kafka(addr: SocketAddr) -> bool {
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
    pid_of(&run_dir(port).join("tansu.pid"), "tansu")
}

/// The pid in `file`, when that process still runs and its command line contains `name`.
pub(crate) fn pid_of(file: &Path, name: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(name)
        .then_some(pid)
}

/// True when a broker started by `up` runs on `port` and answers.
pub fn is_running(port: u16) -> bool {
    running_pid(port).is_some() && (answers_kafka(addr(port)) || secure::is_running(port))
}

fn up(port: u16, storage: Storage) -> anyhow::Result<()> {
    let binary = install()?;
    if let Some(pid) = running_pid(port)
        && answers_kafka(addr(port))
    {
        println!("tansu already running (pid {pid}) on 127.0.0.1:{port}");
        create_topics(&binary, port)?;
        print_client_env(port, &[]);
        return Ok(());
    }
    if answers_kafka(addr(port)) {
        bail!(
            "something else already answers Kafka requests on 127.0.0.1:{port}; stop it or use --port"
        );
    }
    start_tansu(
        &binary,
        &run_dir(port),
        port,
        port,
        storage_url(storage),
        false,
    )?;
    create_topics(&binary, port)?;
    print_client_env(port, &[]);
    Ok(())
}

/// The `--storage-engine` of `storage`, relative to the broker's working folder.
pub(crate) fn storage_url(storage: Storage) -> &'static str {
    match storage {
        Storage::Sqlite => "sqlite://tansu.db",
        Storage::Memory => "memory://tansu/",
    }
}

/// Starts tansu in `dir` (pid in `dir/tansu.pid`, log in `dir/tansu.log`) listening on
/// `127.0.0.1:<listen_port>` and advertising `127.0.0.1:<advertised_port>`, in its own process
/// group, and waits until it answers Kafka requests on its listener.
pub(crate) fn start_tansu(
    binary: &Path,
    dir: &Path,
    listen_port: u16,
    advertised_port: u16,
    storage_url: &str,
    authentication: bool,
) -> anyhow::Result<u32> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = format!("tcp://127.0.0.1:{listen_port}");
    let advertised = format!("tcp://127.0.0.1:{advertised_port}");
    let log_path = dir.join("tansu.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", &advertised])
        .args(["--storage-engine", storage_url]);
    if authentication {
        command.arg("--authentication");
    }
    command
        .env_remove("STORAGE_ENGINE")
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .current_dir(dir)
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
        "tansu: started pid {pid} on {url} with {storage_url}{} (log {})",
        if authentication {
            ", --authentication"
        } else {
            ""
        },
        log_path.display()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if answers_kafka(addr(listen_port)) {
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
    println!("tansu: accepting Kafka connections on 127.0.0.1:{listen_port}");
    Ok(pid)
}

/// Prints the environment an oa-server (or any client using oa's variable names) needs.
pub(crate) fn print_client_env(port: u16, security: &[(&str, String)]) {
    println!();
    println!("Start oa with (or put in .env):");
    println!("  ORDER_EVENT_MODE=KAFKA");
    println!("  KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{port}");
    for (name, value) in security {
        println!("  {name}={value}");
    }
}

pub(crate) fn create_topics(binary: &Path, port: u16) -> anyhow::Result<()> {
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
    if let Some(pid) = pid_of(&dir.join(secure::PROXY_PID_FILE), "tls-proxy") {
        stop_pid(pid, "TLS proxy");
    }
    let _ = std::fs::remove_file(dir.join(secure::PROXY_PID_FILE));
    let Some(pid) = running_pid(port) else {
        let _ = std::fs::remove_file(dir.join("tansu.pid"));
        println!(
            "tansu: not running (no live pid recorded in {})",
            dir.display()
        );
        return Ok(());
    };
    stop_pid(pid, "tansu");
    let _ = std::fs::remove_file(dir.join("tansu.pid"));
    Ok(())
}

/// SIGTERM, then SIGKILL after 10 s.
pub(crate) fn stop_pid(pid: u32, what: &str) {
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
        println!("{what}: pid {pid} ignored SIGTERM for 10 s; sending SIGKILL");
        signal("KILL");
    }
    println!("{what}: stopped pid {pid}");
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
    } else if secure::is_running(port) {
        println!(
            "broker:    TLS + SASL on 127.0.0.1:{port} (TLS proxy pid {}), tansu answering behind it",
            pid_of(&dir.join(secure::PROXY_PID_FILE), "tls-proxy").unwrap_or(0)
        );
        Ok(())
    } else {
        bail!("no Kafka broker answers on 127.0.0.1:{port}: run `cargo xtask kafka up`")
    }
}

fn bench(secure: bool) -> anyhow::Result<()> {
    let binary = install()?;
    println!(
        "running the Kafka sink benchmark{} (bounded to a few minutes)",
        if secure {
            " over TLS + SASL SCRAM-SHA-512"
        } else {
            ""
        }
    );
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
            .env("OA_KAFKA_BENCH_SECURE", if secure { "1" } else { "0" })
            .current_dir(root()),
    )
}

/// `cargo xtask kafka up --secure`: tansu with SASL SCRAM behind a TLS terminator.
///
/// tansu 0.6 accepts `--cert/--key` but never uses them (its broker drops the TLS acceptor it
/// builds), so TLS is terminated by `cargo xtask kafka tls-proxy` (a rustls proxy, see
/// `oa_e2e::tls_proxy`), started in the background on the public port; tansu itself listens
/// on a private loopback port and advertises the proxy's address. Its `user create` tool
/// speaks plaintext only and an `--authentication` broker refuses it, so the SCRAM user and
/// oa's topics are created on a first plaintext start of the same sqlite storage, then
/// tansu is restarted with `--authentication`.
pub(crate) mod secure {
    use std::net::{SocketAddr, TcpListener};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use oa_e2e::pki::Pki;

    use super::{Storage, create_topics, install, pid_of, print_client_env, run_dir, start_tansu};

    /// The SASL user `up --secure` creates.
    pub const USER: &str = "oa";
    /// The pid file of the TLS proxy, in the run folder.
    pub const PROXY_PID_FILE: &str = "tls-proxy.pid";
    /// The private port tansu listens on behind the proxy, in the run folder.
    const INNER_PORT_FILE: &str = "inner-port";

    /// True when a secure broker started by `up --secure` runs on `port`.
    pub fn is_running(port: u16) -> bool {
        let dir = run_dir(port);
        pid_of(&dir.join(PROXY_PID_FILE), "tls-proxy").is_some()
            && std::fs::read_to_string(dir.join(INNER_PORT_FILE))
                .ok()
                .and_then(|text| text.trim().parse::<u16>().ok())
                .is_some_and(|inner| super::answers_kafka(super::addr(inner)))
    }

    fn free_port() -> anyhow::Result<u16> {
        Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
    }

    /// The generated password, kept in the run folder (mode 0600) so that a restart reuses it.
    fn password(dir: &Path) -> anyhow::Result<String> {
        let path = dir.join("sasl-password");
        if let Ok(text) = std::fs::read_to_string(&path)
            && !text.trim().is_empty()
        {
            return Ok(text.trim().to_string());
        }
        let mut bytes = [0u8; 16];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        let password: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        std::fs::write(&path, &password).context("writing the password file")?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Ok(password)
    }

    /// The client settings of the secure broker on `port`, as oa's variables.
    pub fn client_env(port: u16) -> anyhow::Result<Vec<(&'static str, String)>> {
        let dir = run_dir(port);
        Ok(vec![
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_string()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_string()),
            ("KAFKA_SASL_USERNAME", USER.to_string()),
            ("KAFKA_SASL_PASSWORD", password(&dir)?),
            (
                "KAFKA_SSL_CA_LOCATION",
                dir.join("pki/ca.pem").display().to_string(),
            ),
        ])
    }

    pub fn up(port: u16, storage: Storage) -> anyhow::Result<()> {
        if storage != Storage::Sqlite {
            bail!(
                "--secure needs --storage sqlite: the SCRAM user is created on a first start and must survive the restart with --authentication"
            );
        }
        let binary = install()?;
        let dir = run_dir(port);
        if is_running(port) {
            println!("secure tansu already running on 127.0.0.1:{port}");
            print_client_env(port, &client_env(port)?);
            return Ok(());
        }
        if super::running_pid(port).is_some() || super::answers_kafka(super::addr(port)) {
            bail!(
                "a plaintext broker already runs on 127.0.0.1:{port}: `cargo xtask kafka down --port {port}` first, or use another --port"
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki_dir = dir.join("pki");
        let pki = if pki_dir.join("ca.pem").exists() {
            existing_pki(&pki_dir)
        } else {
            println!(
                "generating a test CA and a broker certificate for 127.0.0.1/localhost in {}",
                pki_dir.display()
            );
            Pki::generate(&pki_dir, "oa local Kafka")?
        };
        let password = password(&dir)?;
        let inner = free_port()?;
        std::fs::write(dir.join(INNER_PORT_FILE), inner.to_string())?;

        // 1. Plaintext, to create the user and the topics with tansu's own tool.
        let pid = start_tansu(
            &binary,
            &dir,
            inner,
            inner,
            super::storage_url(storage),
            false,
        )?;
        create_topics(&binary, inner)?;
        oa_e2e::tansu::create_scram_user(
            &binary,
            &format!("tcp://127.0.0.1:{inner}"),
            USER,
            &password,
        )?;
        println!("SASL user {USER:?} created (SCRAM-SHA-256 and SCRAM-SHA-512)");
        super::stop_pid(pid, "tansu (plaintext set-up)");

        // 2. With --authentication, advertising the TLS port.
        start_tansu(
            &binary,
            &dir,
            inner,
            port,
            super::storage_url(storage),
            true,
        )?;

        // 3. The TLS terminator on the public port.
        start_proxy(&dir, port, inner, &pki.server_cert, &pki.server_key)?;
        println!(
            "TLS (certificate for 127.0.0.1 and localhost, CA {}) on 127.0.0.1:{port} -> tansu on 127.0.0.1:{inner}",
            pki.ca.display()
        );
        print_client_env(port, &client_env(port)?);
        println!(
            "  (kafka-python: security_protocol=\"SASL_SSL\", sasl_mechanism=\"SCRAM-SHA-512\", ssl_cafile=... ; the password is also in {})",
            dir.join("sasl-password").display()
        );
        Ok(())
    }

    fn existing_pki(dir: &Path) -> Pki {
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }

    fn start_proxy(
        dir: &Path,
        port: u16,
        inner: u16,
        cert: &Path,
        key: &Path,
    ) -> anyhow::Result<()> {
        let exe: PathBuf = std::env::current_exe().context("locating the xtask binary")?;
        let log_path = dir.join("tls-proxy.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(exe);
        command
            .args(["kafka", "tls-proxy"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("127.0.0.1:{inner}")])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().context("starting the TLS proxy")?;
        std::fs::write(dir.join(PROXY_PID_FILE), child.id().to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&super::addr(port), Duration::from_millis(200))
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "the TLS proxy exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("the TLS proxy did not listen on 127.0.0.1:{port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Runs the TLS terminator in the foreground (the hidden `kafka tls-proxy` command).
    pub fn run_proxy(
        listen: SocketAddr,
        upstream: SocketAddr,
        cert: &Path,
        key: &Path,
    ) -> anyhow::Result<()> {
        let acceptor = oa_e2e::tls_proxy::acceptor(cert, key, None)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            println!("TLS proxy: {listen} -> {upstream}");
            oa_e2e::tls_proxy::serve(listener, acceptor, upstream).await;
            Ok(())
        })
    }
}

/// `cargo xtask kafka bench-latency`: order placed over HTTP -> its `order_event` record at a
/// Kafka consumer, at a paced 1,000 orders/s, through the real release `oa-server` in KAFKA
/// mode and a private tansu broker (memory storage), all on loopback.
mod latency {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use chrono::{DateTime, Utc};
    use oa_e2e::tansu::{SecureOptions, Storage, Tansu};
    use oa_events_kafka::rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
    use oa_events_kafka::{KafkaConfig, SecurityConfig};
    use serde_json::{Value, json};
    use tokio::sync::mpsc;

    use crate::util::{root, run as run_command};

    /// Orders per second, warm-up and measured duration.
    const RATE: u64 = 1_000;
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

    pub fn run(fetch_wait_ms: i32, secure: bool) -> anyhow::Result<()> {
        let tansu = super::install()?;
        let server_binary = build_server()?;
        let load_before = load_average();
        // Tansu::start looks in the same tools folder install() used, unless told otherwise.
        let started = if secure {
            println!(
                "starting tansu (sqlite storage, SASL SCRAM, behind TLS) on a free loopback port"
            );
            Tansu::start_secure(&SecureOptions::tls_and_sasl(USER, PASSWORD))
        } else {
            println!("starting tansu (memory storage) on a free loopback port");
            Tansu::start(Storage::Memory)
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
                measure(&server_binary, &broker, fetch_wait_ms, &security),
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
        report.print(&load_before, &load_average(), secure);
        Ok(())
    }

    fn build_server() -> anyhow::Result<PathBuf> {
        println!("building oa-server (cargo build --release -p oa-server; cargo prints progress)");
        let started = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        run_command(
            Command::new(cargo)
                .args(["build", "--release", "-p", "oa-server"])
                .current_dir(root()),
        )?;
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

    fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|_| "?".to_string())
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
        fn print(mut self, load_before: &str, load_after: &str, secure: bool) {
            self.event_latency.sort();
            self.response_time.sort();
            self.to_stamp.sort();
            self.stamp_to_consumer.sort();
            let received = self.event_latency.len();
            let ok = self.sent - self.failed;
            println!();
            println!(
                "order placed -> order_event at an rskafka consumer (fetch max-wait {} ms), \
                 MARKET orders at {RATE}/s for {MEASURED:?} after a {WARM_UP:?} warm-up, {}",
                self.fetch_wait_ms,
                if secure {
                    "TLS + SASL SCRAM-SHA-512 (tansu sqlite storage behind a rustls proxy)"
                } else {
                    "plaintext (tansu memory storage)"
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

    async fn measure(
        server_binary: &Path,
        broker: &Tansu,
        fetch_wait_ms: i32,
        security: &[(String, String)],
    ) -> anyhow::Result<Report> {
        let bootstrap = broker.bootstrap();
        println!("starting oa-server (KAFKA mode, broker {bootstrap})");
        let binary = server_binary.to_path_buf();
        let bootstrap_for_server = bootstrap.clone();
        let server_security = security.to_vec();
        let server = tokio::task::spawn_blocking(move || {
            Server::start(&binary, &bootstrap_for_server, &server_security)
        })
        .await??;
        // Stops the server on every path out of here (Drop).
        let result = load(&server, &bootstrap, fetch_wait_ms, security).await;
        tokio::task::spawn_blocking(move || drop(server)).await?;
        result
    }

    async fn load(
        server: &Server,
        bootstrap: &str,
        fetch_wait_ms: i32,
        security: &[(String, String)],
    ) -> anyhow::Result<Report> {
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
        let stop = Arc::new(AtomicBool::new(false));
        let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<Arrival>();
        let mut consumers = Vec::new();
        for partition in partitions {
            // One client (one connection) per partition: a fetch holds its connection for
            // the whole max-wait on tansu.
            let client = oa_events_kafka::connect(&config)
                .await
                .context("connecting the consumer")?;
            let partition_client = client
                .partition_client(TOPIC, partition, UnknownTopicHandling::Retry)
                .await
                .with_context(|| format!("partition client for {TOPIC}/{partition}"))?;
            consumers.push(tokio::spawn(consume(
                partition_client,
                arrivals_tx.clone(),
                stop.clone(),
                fetch_wait_ms,
            )));
        }
        drop(arrivals_tx);

        let body = serde_json::to_vec(&json!({"apikey": server.admin_key, "strategy": "bench",
            "exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": "1",
            "product": "MIS", "pricetype": "MARKET"}))?;
        let url = format!("{}/api/v1/placeorder", server.http);
        println!("warm-up: {RATE}/s for {WARM_UP:?}");
        let _ = paced(&http, &url, &body, WARM_UP).await;
        println!("measuring: {RATE}/s for {MEASURED:?}");
        let started = Instant::now();
        let mut requests = paced(&http, &url, &body, MEASURED).await;
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
        stop.store(true, Ordering::Relaxed);
        for consumer in consumers {
            if let Err(error) = consumer.await? {
                println!("warning: a consumer stopped with an error: {error:#}");
            }
        }

        let pairs: Vec<(&Sent, &Arrival)> = wanted
            .iter()
            .filter_map(|(orderid, request)| {
                arrived.get(*orderid).map(|arrival| (*request, arrival))
            })
            .collect();
        let event_latency = pairs
            .iter()
            .map(|(request, arrival)| arrival.at.saturating_duration_since(request.at))
            .collect();
        let wall =
            |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).to_std().unwrap_or_default();
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

    /// Reads one partition from its earliest record until `stop`, sending the arrival time of
    /// every `order_event` by its `data.orderid`.
    async fn consume(
        client: oa_events_kafka::rskafka::client::partition::PartitionClient,
        arrivals: mpsc::UnboundedSender<Arrival>,
        stop: Arc<AtomicBool>,
        fetch_wait_ms: i32,
    ) -> anyhow::Result<()> {
        let mut next = client
            .get_offset(OffsetAt::Earliest)
            .await
            .context("earliest offset")?;
        while !stop.load(Ordering::Relaxed) {
            let (records, _high_watermark) = tokio::time::timeout(
                Duration::from_secs(5),
                client.fetch_records(next, 1..1_000_000, fetch_wait_ms),
            )
            .await
            .context("fetch timed out")?
            .context("fetch")?;
            let now = Instant::now();
            let wall = Utc::now();
            for record in records {
                if record.offset < next {
                    continue; // a compressed batch can start before the requested offset
                }
                next = record.offset + 1;
                let Some(value) = record.record.value else {
                    continue;
                };
                let Ok(envelope) = serde_json::from_slice::<Value>(&value) else {
                    continue;
                };
                if envelope["event_type"] == "order_event"
                    && let Some(orderid) = envelope["data"]["orderid"].as_str()
                {
                    let stamped = envelope["timestamp"]
                        .as_str()
                        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                        .map(|time| time.with_timezone(&Utc));
                    let _ = arrivals.send(Arrival {
                        orderid: orderid.to_string(),
                        at: now,
                        wall,
                        stamped,
                    });
                }
            }
        }
        Ok(())
    }

    /// Sends `RATE` orders per second for `duration`, open loop (each request on its own task
    /// over the keep-alive pool, so a slow response never delays the next send).
    async fn paced(
        http: &reqwest::Client,
        url: &str,
        body: &[u8],
        duration: Duration,
    ) -> Vec<tokio::task::JoinHandle<Sent>> {
        let total = duration.as_millis() as u64 * RATE / 1_000;
        let interval = Duration::from_secs(1) / RATE as u32;
        let started = tokio::time::Instant::now();
        let mut requests = Vec::with_capacity(total as usize);
        let mut sent = 0;
        while sent < total {
            let due = ((started.elapsed().as_secs_f64() * RATE as f64) as u64 + 1).min(total);
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
}
