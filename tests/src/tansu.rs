//! A private, real Kafka-protocol broker (tansu) per test: its own port and data folder, so
//! tests can stop and restart it without disturbing anything else.
//!
//! The binary is the one `cargo xtask kafka up` installs (`$OA_TANSU_BIN`, else
//! `$OA_TOOLS_DIR/tansu/bin/tansu`, else `$HOME/.cache/oa/tools/tansu/bin/tansu`). When it is
//! missing the test fails and says to run `cargo xtask kafka up`: it never passes silently.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;
use crate::pki::Pki;
use crate::tls_proxy::TlsProxy;

/// The settings of an oa-server producing order events to the test broker at `bootstrap`:
/// the topic, created on demand, lz4 batches, quick retries and a short request timeout (a
/// stopped broker is noticed within seconds).
pub fn producer_settings<'a>(bootstrap: &'a str, topic: &'a str) -> [(&'static str, &'a str); 6] {
    [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA_ORDER_EVENTS_TOPIC", topic),
        ("KAFKA_CREATE_TOPICS", "true"),
        ("KAFKA_PRODUCER_COMPRESSION", "lz4"),
        ("KAFKA_RETRY_BACKOFF_MAX_MS", "500"),
        ("KAFKA_REQUEST_TIMEOUT_MS", "2000"),
    ]
}

/// What [`create_topic`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCreated {
    /// The topic was created.
    Created,
    /// It was there already.
    AlreadyExisted,
}

/// Creates a topic on the plaintext broker at `broker` (a `tcp://host:port` URL) with tansu's
/// own tool (`binary`), with `--config` entries such as `retention.ms=604800000`.
pub fn create_topic(
    binary: &Path,
    broker: &str,
    topic: &str,
    partitions: u32,
    configs: &[String],
) -> anyhow::Result<TopicCreated> {
    let mut command = Command::new(binary);
    command
        .args(["topic", "create", topic, "--broker", broker])
        .args(["--partitions", &partitions.to_string()]);
    for config in configs {
        command.args(["--config", config]);
    }
    let output = command.output().context("running tansu topic create")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && !text.contains("Error") {
        Ok(TopicCreated::Created)
    } else if text.contains("TopicAlreadyExists") {
        Ok(TopicCreated::AlreadyExisted)
    } else {
        bail!(
            "tansu topic create {topic} failed ({}): {text}",
            output.status
        )
    }
}

/// Where tansu keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `sqlite://` in the broker's folder: survives restarts.
    Sqlite,
    /// `memory://`: fastest, lost on stop.
    Memory,
}

impl Storage {
    pub fn name(self) -> &'static str {
        match self {
            Storage::Sqlite => "sqlite",
            Storage::Memory => "memory",
        }
    }
}

/// Where `cargo xtask kafka up` installs tansu: `$OA_TOOLS_DIR/tansu/bin/tansu` (default
/// `$HOME/.cache/oa/tools`), outside the work tree so that clean builds and fresh clones keep it.
pub fn cached_tansu_path() -> anyhow::Result<PathBuf> {
    let tools = match std::env::var_os("OA_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set; set OA_TOOLS_DIR")?;
            PathBuf::from(home).join(".cache/oa/tools")
        }
    };
    Ok(tools.join("tansu/bin/tansu"))
}

/// The tansu binary installed by `cargo xtask kafka up` (`OA_TANSU_BIN` overrides).
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("OA_TANSU_BIN") {
        Some(path) => PathBuf::from(path),
        None => cached_tansu_path()?,
    };
    if !path.exists() {
        bail!(
            "the Kafka broker for tests (tansu) is not installed at {}: run `cargo xtask kafka up` first \
             (it installs tansu once, ~15 min on 2 cores, and starts it on 127.0.0.1:9092)",
            path.display()
        );
    }
    Ok(path)
}

/// A running tansu broker owned by one test.
#[derive(Debug)]
pub struct Tansu {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    storage: Storage,
    dir: PathBuf,
    /// The port clients are told to use (the TLS proxy's, when there is one).
    advertised_port: u16,
    authentication: bool,
    pki: Option<Pki>,
    proxy: Option<TlsProxy>,
    /// More `tansu broker` arguments.
    extra_args: Vec<String>,
}

/// How [`Tansu::start_secure`] protects the broker.
#[derive(Debug, Clone)]
pub struct SecureOptions {
    /// TLS in front of the broker ([`TlsProxy`]: tansu 0.6 does not terminate TLS itself).
    pub tls: bool,
    /// Mutual TLS: the proxy requires a client certificate signed by the test CA.
    pub require_client_certificate: bool,
    /// `tansu broker --authentication`: every request needs a SASL login first.
    pub authentication: bool,
    /// SCRAM users (name, password), created for SCRAM-SHA-256 and SCRAM-SHA-512.
    pub users: Vec<(String, String)>,
}

impl SecureOptions {
    /// TLS and SASL with one user: what `cargo xtask kafka up --secure` runs.
    pub fn tls_and_sasl(user: &str, password: &str) -> SecureOptions {
        SecureOptions {
            tls: true,
            require_client_certificate: false,
            authentication: true,
            users: vec![(user.to_string(), password.to_string())],
        }
    }
}

/// Creates a SCRAM user on a plaintext broker with tansu's own client (`tansu user create`),
/// for both SCRAM mechanisms.
pub fn create_scram_user(
    binary: &std::path::Path,
    broker_url: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    for mechanism in ["scram256", "scram512"] {
        let output = Command::new(binary)
            .args(["user", "create", "--broker", broker_url])
            .args(["--mechanism", mechanism])
            .args([user, password])
            .output()
            .context("running tansu user create")?;
        if !output.status.success() {
            bail!(
                "tansu user create {user} ({mechanism}) failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(())
}

/// True once the broker answers a Kafka ApiVersions request.
pub fn answers_kafka(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    // ApiVersions v0: api_key 18, version 0, correlation id 7, client id "oa-test".
    let client_id = b"oa-test";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut header = [0u8; 8];
    if stream.read_exact(&mut header).is_err() {
        return false;
    }
    i32::from_be_bytes([header[4], header[5], header[6], header[7]]) == 7
}

impl Tansu {
    /// Starts a broker on a free loopback port with the given storage.
    pub fn start(storage: Storage) -> anyhow::Result<Tansu> {
        let binary = tansu_binary()?;
        let dir = std::env::temp_dir().join(format!(
            "oa-kafka-test-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let mut broker = Tansu {
            binary,
            child: None,
            port,
            storage,
            dir,
            advertised_port: port,
            authentication: false,
            pki: None,
            proxy: None,
            extra_args: Vec::new(),
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a broker that validates records against JSON schemas (`--schema-registry`, one
    /// `<topic>.json` per (topic, schema) given, written into the broker's folder) and refuses
    /// those that do not match with `INVALID_RECORD`: tansu 0.6 enforces no message size
    /// limit, so this is how a test gets a record refused for good.
    pub fn start_with_schemas(
        storage: Storage,
        schemas: &[(&str, serde_json::Value)],
    ) -> anyhow::Result<Tansu> {
        let mut broker = Tansu::start(storage)?;
        broker.kill();
        let folder = broker.dir.join("schemas");
        std::fs::create_dir_all(&folder).context("creating the schema folder")?;
        for (topic, schema) in schemas {
            std::fs::write(folder.join(format!("{topic}.json")), schema.to_string())
                .context("writing a schema")?;
        }
        // tansu resolves the path of a file:// registry against its working folder.
        broker.extra_args = vec![
            "--schema-registry".to_string(),
            "file://./schemas".to_string(),
        ];
        broker.spawn()?;
        Ok(broker)
    }

    /// Starts a protected broker (sqlite storage): a fresh test PKI in its folder
    /// ([`Tansu::pki`]), the SCRAM users created on a first plaintext start of the same
    /// storage (tansu's client tool speaks plaintext only, and an `--authentication` broker
    /// refuses it), then the broker again with `--authentication`, behind a TLS proxy.
    pub fn start_secure(options: &SecureOptions) -> anyhow::Result<Tansu> {
        let mut broker = Tansu::start(Storage::Sqlite)?;
        let pki = Pki::generate(&broker.dir.join("pki"), "tansu")?;
        let url = format!("tcp://127.0.0.1:{}", broker.port);
        for (user, password) in &options.users {
            create_scram_user(&broker.binary, &url, user, password)?;
        }
        broker.kill();
        broker.authentication = options.authentication;
        if options.tls {
            let upstream: SocketAddr = ([127, 0, 0, 1], broker.port).into();
            let proxy = TlsProxy::start(
                ([127, 0, 0, 1], 0).into(),
                upstream,
                &pki.server_cert,
                &pki.server_key,
                options
                    .require_client_certificate
                    .then_some(pki.ca.as_path()),
            )?;
            broker.advertised_port = proxy.addr().port();
            broker.proxy = Some(proxy);
        }
        broker.pki = Some(pki);
        broker.spawn()?;
        Ok(broker)
    }

    /// Creates a topic with tansu's own tool, as `cargo xtask kafka up` does (plaintext
    /// brokers only).
    pub fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        create_topic(&self.binary, &broker, topic, partitions, &[]).map(|_| ())
    }

    /// The test PKI of a broker from [`Tansu::start_secure`].
    pub fn pki(&self) -> Option<&Pki> {
        self.pki.as_ref()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised_port);
        let storage_url = match self.storage {
            Storage::Sqlite => "sqlite://tansu.db".to_string(),
            Storage::Memory => "memory://tansu/".to_string(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .context("opening the tansu log")?;
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", &storage_url]);
        if self.authentication {
            command.arg("--authentication");
        }
        command.args(&self.extra_args);
        let child = command
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env("RUST_LOG", "warn")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if answers_kafka(addr) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("tansu exited at start-up ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "tansu did not answer on {addr} within 30 s:\n{}",
            self.log()
        )
    }

    /// `127.0.0.1:port` clients use (the TLS proxy's port for a TLS broker).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.advertised_port)
    }

    /// The broker's own plaintext listener, behind the TLS proxy of a TLS broker.
    pub fn plaintext_listener(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `sqlite://` database of a [`Storage::Sqlite`] broker.
    pub fn database(&self) -> PathBuf {
        self.dir.join("tansu.db")
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    /// Kills the broker (SIGKILL: no chance to flush anything it had not made durable).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port with the same data folder.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        // The TLS terminator goes with the broker it fronts.
        drop(self.proxy.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
