//! Small helpers shared by the tasks: paths, running commands, progress lines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs one named step, printing its start, duration and outcome.
pub fn step(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    println!("==> {name}");
    let started = Instant::now();
    let result = run();
    match &result {
        Ok(()) => println!("<== {name}: ok ({:.1?})", started.elapsed()),
        Err(error) => println!("<== {name}: FAILED ({:.1?}): {error:#}", started.elapsed()),
    }
    result.with_context(|| format!("step {name:?} failed"))
}

/// A command running cargo (the one that runs xtask, else `cargo` on the PATH) in the
/// workspace root.
pub fn cargo_command() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command.current_dir(root());
    command
}

/// Runs `cargo` with the given arguments in the workspace root.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    run(cargo_command().args(args))
}

/// Runs cargo in the workspace root with `OA_SERVER_BIN` set to the debug `oa-server` built
/// before, so that tests run that binary instead of building it again from inside the test
/// process (a nested build has other fingerprints and rebuilds).
pub fn cargo_with_server(args: &[&str]) -> anyhow::Result<()> {
    run(cargo_command()
        .args(args)
        .env("OA_SERVER_BIN", debug_binary("oa-server")))
}

/// Where `cargo build -p <name>` puts a binary of this workspace (`CARGO_TARGET_DIR` or
/// `target/`, debug profile).
pub fn debug_binary(name: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("debug")
        .join(name)
}

/// Runs a command, inheriting output; fails when it exits non-zero.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let description = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {description}"))?;
    if !status.success() {
        bail!("{description} exited with {status}");
    }
    Ok(())
}

/// Opens `path` for appending a child process's output, creating it when missing.
pub fn append_log(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Stops the `name` process `up` recorded in `dir/<name>.pid` with `stop` when `pid` (its
/// live pid) is known, says that none runs otherwise, and forgets the pid file.
pub fn stop_recorded(dir: &Path, name: &str, pid: Option<u32>, stop: impl FnOnce(u32)) {
    match pid {
        Some(pid) => stop(pid),
        None => println!(
            "{name}: not running (no live pid recorded in {})",
            dir.display()
        ),
    }
    let _ = std::fs::remove_file(dir.join(format!("{name}.pid")));
}
