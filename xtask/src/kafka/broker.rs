//! The local broker's lifecycle: installing tansu, starting and stopping it, its run folder,
//! oa's topics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use oa_e2e::tansu::TopicCreated;
pub(crate) use oa_e2e::tansu::answers_kafka;

use super::{RETENTION_MS, Storage, TANSU_VERSION, TOPICS, secure};
use crate::util::{append_log, cargo_command, root, run as run_command, stop_recorded};

/// The cached tansu binary (what the tests look for too).
fn tansu_path() -> anyhow::Result<PathBuf> {
    oa_e2e::tansu::cached_tansu_path()
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
    run_command(
        cargo_command()
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

/// The pid recorded by `up`, when that process still runs tansu.
pub(crate) fn running_pid(port: u16) -> Option<u32> {
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

pub(super) fn up(port: u16, storage: Storage) -> anyhow::Result<()> {
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
    let log = append_log(&log_path)?;
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
        let retention = format!("retention.ms={RETENTION_MS}");
        match oa_e2e::tansu::create_topic(binary, &broker, topic, *partitions, &[retention])? {
            TopicCreated::Created => {
                println!("topic {topic}: created ({partitions} partitions, 7-day retention)");
            }
            TopicCreated::AlreadyExisted => println!("topic {topic}: exists"),
        }
    }
    Ok(())
}

pub(super) fn down(port: u16) -> anyhow::Result<()> {
    let dir = run_dir(port);
    if let Some(pid) = pid_of(&dir.join(secure::PROXY_PID_FILE), "tls-proxy") {
        stop_pid(pid, "TLS proxy");
    }
    let _ = std::fs::remove_file(dir.join(secure::PROXY_PID_FILE));
    stop_recorded(&dir, "tansu", running_pid(port), |pid| {
        stop_pid(pid, "tansu")
    });
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

pub(super) fn status(port: u16) -> anyhow::Result<()> {
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
