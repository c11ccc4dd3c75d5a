//! Helpers for oa's end-to-end tests: locate the workspace, the real peers (Python, Node)
//! installed by `cargo xtask setup`, and the `oa-server` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub mod events;
pub mod kafka_topic;
pub mod net;
mod peer;
pub mod pki;
pub mod postgres;
mod server;
pub mod socketio;
pub mod tansu;
pub mod ticks;
pub mod tls_proxy;
pub use events::suite_event_mode;
pub use peer::{PeerProcess, peer_events};
pub use server::{TestServer, run_binary_to_exit, run_to_exit, server_binary};
pub use ticks::depth_tick;

/// Calls `attempt` every `interval` until it succeeds and returns its value; after `timeout`
/// the last error is returned, prefixed with `what` (for example "slots were not freed").
pub async fn retry_until_ok<T, E, F, Fut>(
    timeout: std::time::Duration,
    interval: std::time::Duration,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(interval).await,
            Err(error) => bail!("{what}: {error}"),
        }
    }
}

/// POSTs `body` to `url` with the `Idempotency-Key` header `key`; returns the HTTP status,
/// the `Idempotent-Replayed` header (if any) and the JSON body.
pub async fn post_with_idempotency_key(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, Option<String>, serde_json::Value)> {
    let response = client
        .post(url)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status().as_u16();
    let replayed = match response.headers().get("idempotent-replayed") {
        Some(value) => Some(value.to_str().context("Idempotent-Replayed")?.to_string()),
        None => None,
    };
    let body = response
        .json()
        .await
        .with_context(|| format!("POST {url}: response is not JSON"))?;
    Ok((status, replayed, body))
}

/// The workspace root (the folder holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Python interpreter of the project's virtual environment (`OA_PYTHON` overrides).
/// Fails with a hint when `cargo xtask setup` has not been run.
pub fn python() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OA_PYTHON") {
        return Ok(PathBuf::from(path));
    }
    installed(
        workspace_root().join(".venv/bin/python"),
        "installs the Python test peers from tests/python/requirements.txt",
    )
}

/// `path` if it exists, else an error naming it and what `cargo xtask setup` does about it.
fn installed(path: PathBuf, setup_step: &str) -> anyhow::Result<PathBuf> {
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo xtask setup` ({setup_step})",
            path.display()
        );
    }
    Ok(path)
}

/// `node_modules` of the Node test peers (`tests/node`), installed by `cargo xtask setup`.
pub fn node_modules() -> anyhow::Result<PathBuf> {
    installed(
        workspace_root().join("tests/node/node_modules"),
        "npm install in tests/node",
    )
}

/// The system's Chromium for the browser tests (`OA_CHROMIUM` overrides), installed with
/// Debian's `chromium` package by `cargo xtask setup`.
pub fn chromium() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("OA_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    installed(path, "apt-get install chromium")
}

/// CPU time (user + system) this process has used, in seconds, from `/proc/self/stat`
/// (Linux; 0 elsewhere), for benchmarks to report the CPU cost of what they timed.
pub fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name, which is in parentheses and may contain spaces.
    let Some((_, after)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime (fields 14 and 15 of the line, 11 and 12 after the name), in clock
    // ticks of 1/100 s on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg` ("unknown" elsewhere), for
/// benchmarks to print beside their figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A TCP port that was free on 127.0.0.1 a moment ago (for a server that must keep its port
/// across a restart).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Runs a Python test script from `tests/python` with the given environment, returning its
/// standard output; fails with the script's output when it exits non-zero.
pub fn run_python_script(script: &str, env: &[(&str, String)]) -> anyhow::Result<String> {
    let output = run_python_script_with_status(script, env)?;
    if !output.status.success() {
        bail!(
            "{script} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            output.stdout,
            output.stderr
        );
    }
    Ok(output.stdout)
}

/// What a finished Python script left behind.
#[derive(Debug)]
pub struct ScriptOutput {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs a Python test script from `tests/python` and returns its output whatever its exit
/// status.
pub fn run_python_script_with_status(
    script: &str,
    env: &[(&str, String)],
) -> anyhow::Result<ScriptOutput> {
    let script_path = workspace_root().join("tests/python").join(script);
    let output = Command::new(python()?)
        .arg(&script_path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .with_context(|| format!("starting {}", script_path.display()))?;
    Ok(ScriptOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// The executable of the example `example` of the workspace package `package` (in
/// `crates/<package>/examples`), next to the test executables' profile. Built (with
/// `--workspace` features, as `cargo test --workspace` resolves them) when missing or older
/// than its source; `cargo xtask test` builds every example before the tests.
pub fn example_binary(package: &str, example: &str) -> anyhow::Result<PathBuf> {
    // Test executables live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("unexpected test executable location")?;
    let binary = profile_dir.join("examples").join(example);
    let source = workspace_root()
        .join("crates")
        .join(package)
        .join("examples")
        .join(format!("{example}.rs"));
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&binary), modified(&source)) {
        (Some(built), Some(written)) => built >= written,
        _ => false,
    };
    if fresh {
        return Ok(binary);
    }
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(["build", "--workspace", "--example", example])
        .current_dir(workspace_root());
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        command.arg("--release");
    }
    let status = command
        .status()
        .with_context(|| format!("building example {example} of {package}"))?;
    if !status.success() {
        bail!("cargo build --workspace --example {example} ({package}) failed");
    }
    if !binary.exists() {
        bail!("{} missing after building it", binary.display());
    }
    Ok(binary)
}
