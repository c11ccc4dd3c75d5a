//! A private, real Kafka-protocol broker (tansu) per test: its own port and data folder, so
//! tests can stop and restart it without disturbing anything else.
//!
//! The binary is the one `cargo xtask kafka up` installs (`$OA_TANSU_BIN`, else
//! `$OA_TOOLS_DIR/tansu/bin/tansu`, else `$HOME/.cache/oa/tools/tansu/bin/tansu`). When it is
//! missing the test fails and says to run `cargo xtask kafka up`: it never passes silently.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

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

/// The tansu binary installed by `cargo xtask kafka up`.
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    let path = if let Some(path) = std::env::var_os("OA_TANSU_BIN") {
        PathBuf::from(path)
    } else {
        let tools = match std::env::var_os("OA_TOOLS_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME").context("HOME is not set")?;
                PathBuf::from(home).join(".cache/oa/tools")
            }
        };
        tools.join("tansu/bin/tansu")
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
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
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
        let mut broker = Tansu {
            binary,
            child: None,
            port: free_port()?,
            storage,
            dir,
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let storage_url = match self.storage {
            Storage::Sqlite => "sqlite://tansu.db".to_string(),
            Storage::Memory => "memory://tansu/".to_string(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .context("opening the tansu log")?;
        let child = Command::new(&self.binary)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &storage_url])
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

    /// `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
