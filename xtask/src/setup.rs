//! `cargo xtask setup`: the real peers the tests talk to, installed from the registries.
//!
//! - `.venv/`: a Python virtual environment with tests/python/requirements.txt (the official
//!   OpenAlgo SDK, pyzmq, python-socketio, ...).
//! - `tests/node/node_modules/`: npm packages of tests/node/package.json (socket.io-client,
//!   playwright-core).
//! - tansu, the Kafka-protocol broker (`cargo xtask kafka`; cached outside the work tree).
//! - Chromium, the headless browser of the dashboard tests (Debian's `chromium` package,
//!   installed with apt-get when `/usr/bin/chromium` is missing).
//! - PostgreSQL (Debian's `postgresql` package, with apt-get when `initdb` is missing), for
//!   the PostgreSQL store's tests (`cargo xtask pg`).
//!
//! Each install is skipped when its input file has not changed since the last one (a stamp
//! file holds a copy of the input).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::util::{root, run as run_command};

/// Installs whatever is missing or out of date.
pub fn run() -> anyhow::Result<()> {
    python()?;
    node()?;
    // The Kafka-protocol broker the Kafka tests start (built once, then cached).
    crate::kafka::install()?;
    system_package("/usr/bin/chromium", "chromium")?;
    crate::pg::install()?;
    Ok(())
}

/// Installs a Debian package with apt-get when `binary` is missing (as root, as on CI; other
/// users get the command to run).
fn system_package(binary: &str, package: &str) -> anyhow::Result<()> {
    if Path::new(binary).exists() {
        println!("{package}: installed ({binary})");
        return Ok(());
    }
    println!("{package}: {binary} is missing; apt-get install {package}");
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0"));
    anyhow::ensure!(
        root_user,
        "{binary} is missing: run `sudo apt-get install -y {package}` and then `cargo xtask setup` again"
    );
    run_command(Command::new("apt-get").args(["update", "-qq"]))?;
    run_command(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    anyhow::ensure!(
        Path::new(binary).exists(),
        "apt-get installed {package} but {binary} is still missing"
    );
    Ok(())
}

/// True when `stamp` holds exactly `input`'s contents.
fn up_to_date(input: &Path, stamp: &Path) -> bool {
    match (std::fs::read(input), std::fs::read(stamp)) {
        (Ok(wanted), Ok(installed)) => wanted == installed,
        _ => false,
    }
}

fn python() -> anyhow::Result<()> {
    let root = root();
    let requirements = root.join("tests/python/requirements.txt");
    let venv = root.join(".venv");
    let stamp = venv.join(".oa-requirements.txt");
    if up_to_date(&requirements, &stamp) && venv.join("bin/python").exists() {
        println!("python test peers: up to date ({})", venv.display());
        return Ok(());
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    if !venv.join("bin/python").exists() {
        println!("python test peers: creating {}", venv.display());
        run_command(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    }
    println!(
        "python test peers: installing {} (first run takes a minute)",
        requirements.display()
    );
    run_command(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
    )?;
    std::fs::copy(&requirements, &stamp).context("writing the requirements stamp")?;
    Ok(())
}

fn node() -> anyhow::Result<()> {
    let root = root();
    let folder = root.join("tests/node");
    let manifest = folder.join("package.json");
    if !manifest.exists() {
        println!("node test peers: none (no tests/node/package.json)");
        return Ok(());
    }
    let stamp = folder.join("node_modules/.oa-package.json");
    if up_to_date(&manifest, &stamp) {
        println!("node test peers: up to date");
        return Ok(());
    }
    let lockfile = folder.join("package-lock.json").exists();
    let action = if lockfile { "ci" } else { "install" };
    println!("node test peers: npm {action} in {}", folder.display());
    run_command(
        Command::new("npm")
            .args([action, "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&folder),
    )?;
    std::fs::copy(&manifest, &stamp).context("writing the package.json stamp")?;
    Ok(())
}
