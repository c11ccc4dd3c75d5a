//! `cargo xtask kafka up --secure`: tansu with SASL SCRAM behind a TLS terminator.
//!
//! tansu 0.6 accepts `--cert/--key` but never uses them (its broker drops the TLS acceptor it
//! builds), so TLS is terminated by `cargo xtask kafka tls-proxy` (a rustls proxy, see
//! `oa_e2e::tls_proxy`), started in the background on the public port; tansu itself listens
//! on a private loopback port and advertises the proxy's address. Its `user create` tool
//! speaks plaintext only and an `--authentication` broker refuses it, so the SCRAM user and
//! oa's topics are created on a first plaintext start of the same sqlite storage, then
//! tansu is restarted with `--authentication`.

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

fn start_proxy(dir: &Path, port: u16, inner: u16, cert: &Path, key: &Path) -> anyhow::Result<()> {
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
