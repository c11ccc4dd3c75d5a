//! [`PeerProcess`]: a real client (Python, Node) running beside a test, whose JSON-line output
//! the test reads as it arrives.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{example_binary, python, workspace_root};

/// A running peer process. Killed when dropped.
#[derive(Debug)]
pub struct PeerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<serde_json::Value>,
    /// Every line read so far by [`PeerProcess::wait_for_text`].
    pub text: Vec<String>,
}

impl PeerProcess {
    /// Starts `tests/python/<script>` with the project's Python and the given environment.
    pub fn python(script: &str, env: &[(&str, String)]) -> anyhow::Result<PeerProcess> {
        let path = workspace_root().join("tests/python").join(script);
        let mut command = Command::new(python()?);
        command.arg(path);
        PeerProcess::spawn(command, env)
    }

    /// A python-socketio client (`tests/python/e2e_socketio_collect.py`) logged in to the
    /// server at `url` with `key`, once it has connected (30 s at most). Each event it
    /// receives is a line `{"type": "event", "name": ..., "data": ...}`. `options` adds the
    /// script's settings (`OA_TRANSPORTS`, `OA_STOP_EVENT`, `OA_TIMEOUT_S`, ...).
    pub fn socketio_events(
        url: &str,
        key: &str,
        options: &[(&str, &str)],
    ) -> anyhow::Result<PeerProcess> {
        let mut env = vec![("OA_URL", url.to_string()), ("OA_APIKEY", key.to_string())];
        env.extend(
            options
                .iter()
                .map(|(name, value)| (*name, value.to_string())),
        );
        let mut peer = PeerProcess::python("e2e_socketio_collect.py", &env)?;
        peer.wait_for(Duration::from_secs(30), |line| line["type"] == "connect")
            .context("the Socket.IO client did not connect")?;
        Ok(peer)
    }

    /// A python-socketio client (`tests/python/e2e_socketio_collect.py`) trying to log in to
    /// the server at `url` with `key` for 10 s; its first line is `{"type": "connect"}` or
    /// `{"type": "connect_error", ...}`.
    pub fn socketio_login_attempt(url: &str, key: &str) -> anyhow::Result<PeerProcess> {
        let env = [
            ("OA_URL", url.to_string()),
            ("OA_APIKEY", key.to_string()),
            ("OA_TIMEOUT_S", "10".to_string()),
        ];
        PeerProcess::python("e2e_socketio_collect.py", &env)
    }

    /// Starts the example `example` of workspace crate `package` (built first, see
    /// [`example_binary`]) with `args`, and only `PATH`, `HOME` and the given environment.
    pub fn example(
        package: &str,
        example: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<PeerProcess> {
        let mut command = Command::new(example_binary(package, example)?);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default());
        PeerProcess::spawn(command, env)
    }

    fn spawn(mut command: Command, env: &[(&str, String)]) -> anyhow::Result<PeerProcess> {
        let mut child = command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let stdout = child.stdout.take().context("peer stdout")?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(PeerProcess {
            child,
            lines,
            seen: Vec::new(),
            text: Vec::new(),
        })
    }

    /// Reads plain-text lines until `enough` holds for all lines read so far (kept in
    /// [`PeerProcess::text`]), failing after `timeout` with everything seen.
    pub fn wait_for_text(
        &mut self,
        timeout: Duration,
        enough: impl Fn(&[String]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !enough(&self.text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.text.push(line),
                Err(_) => bail!(
                    "peer did not print the expected lines within {timeout:?}; seen:\n{}",
                    self.text.join("\n")
                ),
            }
        }
        Ok(())
    }

    /// Reads lines until one satisfies `predicate` (returned), failing after `timeout` with
    /// everything seen.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        predicate: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let value: serde_json::Value = serde_json::from_str(&line)
                        .with_context(|| format!("peer printed a non-JSON line: {line:?}"))?;
                    self.seen.push(value.clone());
                    if predicate(&value) {
                        return Ok(value);
                    }
                }
                Err(_) => bail!(
                    "peer did not print the expected line within {timeout:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Events (`{"type":"event","name","data"}` lines) seen so far, as (name, data).
    pub fn events(&self) -> Vec<(String, serde_json::Value)> {
        peer_events(&self.seen)
    }
}

/// The `(name, data)` of every event line (`{"type":"event","name","data"}`) of a peer's
/// output.
pub fn peer_events(lines: &[serde_json::Value]) -> Vec<(String, serde_json::Value)> {
    lines
        .iter()
        .filter(|line| line["type"] == "event")
        .map(|line| {
            (
                line["name"].as_str().unwrap_or_default().to_string(),
                line["data"].clone(),
            )
        })
        .collect()
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
