//! `cargo xtask pg up|down|status`: a real PostgreSQL server for development and tests, from
//! Debian's `postgresql` package, on 127.0.0.1.
//!
//! - The package is installed with apt-get when `initdb` is missing ([`install`]; also run by
//!   `cargo xtask setup`).
//! - Run state lives in `target/oa-pg/<port>/`: the data folder `data/`, `postgres.pid`,
//!   `postgres.log`. The data survive `down`/`up`; delete the folder to start afresh.
//! - As root, the server runs as the `postgres` user (PostgreSQL refuses root) and the run
//!   folder belongs to that user.
//! - Authentication is `trust` on 127.0.0.1 for the superuser `oa`: a development server, not
//!   one to expose. `up` prints the `DATABASE_URL` oa needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Subcommand;
use oa_e2e::postgres::{self as pg, Durability};

use crate::kafka::{pid_of, stop_pid};
use crate::util::{root, run as run_command, stop_recorded};

/// The port `up`, `down` and `status` use unless told otherwise.
pub const DEFAULT_PORT: u16 = 5433;

/// What to do with the local PostgreSQL server.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Install PostgreSQL if missing, initialise a data folder (first time), start the server
    /// on 127.0.0.1:PORT with a database `oa`.
    Up {
        /// Port on 127.0.0.1 (5433 by default, so a system PostgreSQL on 5432 is left alone).
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
    },
    /// Stop the server started by `up` (its data stay).
    Down {
        /// Port the server listens on.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
    },
    /// Report whether PostgreSQL is installed, the server runs, and accepts connections.
    Status {
        /// Port the server listens on.
        #[arg(long, default_value_t = DEFAULT_PORT)]
        port: u16,
    },
}

/// Runs one action.
pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Up { port } => up(port),
        Action::Down { port } => down(port),
        Action::Status { port } => status(port),
    }
}

/// The run folder of the server on `port`.
pub fn run_dir(port: u16) -> PathBuf {
    root().join("target/oa-pg").join(port.to_string())
}

/// The pid recorded by `up`, when that process still runs postgres.
pub fn running_pid(port: u16) -> Option<u32> {
    pid_of(&run_dir(port).join("postgres.pid"), "postgres")
}

/// Installs Debian's `postgresql` package with apt-get when `initdb` is missing; returns the
/// folder of its binaries.
pub fn install() -> anyhow::Result<PathBuf> {
    if let Ok(bin) = pg::bin_dir() {
        println!(
            "postgresql: {} in {}",
            pg::version(&bin).unwrap_or_else(|| "installed".to_string()),
            bin.display()
        );
        return Ok(bin);
    }
    if !pg::running_as_root() {
        bail!(
            "PostgreSQL is not installed and installing it needs root: run `sudo apt-get install postgresql` \
             (or set OA_PG_BIN_DIR to the folder holding initdb)"
        );
    }
    println!("postgresql: not installed; apt-get install postgresql");
    run_command(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_command(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let bin = pg::bin_dir()?;
    println!(
        "postgresql: installed {} in {}",
        pg::version(&bin).unwrap_or_default(),
        bin.display()
    );
    Ok(bin)
}

/// Starts (initialising on first use) the server on `port`; returns its `oa` database URL.
pub fn start(port: u16) -> anyhow::Result<String> {
    let bin = install()?;
    let dir = run_dir(port);
    if let Some(pid) = running_pid(port)
        && pg::is_ready(&bin, port)
    {
        println!("postgres already running (pid {pid}) on 127.0.0.1:{port}");
        return Ok(pg::url(port, pg::DATABASE));
    }
    if pg::is_ready(&bin, port) {
        bail!(
            "something else already accepts PostgreSQL connections on 127.0.0.1:{port}; stop it or use --port"
        );
    }
    pg::prepare_run_dir(&dir)?;
    let data = dir.join("data");
    let fresh = !data.join("PG_VERSION").exists();
    if fresh {
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .with_context(|| format!("removing the incomplete {}", data.display()))?;
        }
        println!("postgres: initdb {}", data.display());
        pg::init_data_dir(&bin, &data, Durability::Durable)?;
    }
    let log = dir.join("postgres.log");
    let mut child = pg::spawn_server(&bin, &data, port, &log, Durability::Durable)?;
    let pid = child.id();
    std::fs::write(dir.join("postgres.pid"), pid.to_string()).context("writing the pid file")?;
    println!(
        "postgres: started pid {pid} on 127.0.0.1:{port} (log {})",
        log.display()
    );
    if let Err(error) = pg::wait_ready(&bin, &mut child, port, &log) {
        pg::stop_child(&mut child);
        return Err(error);
    }
    let exists = pg::psql(
        &bin,
        &pg::url(port, "postgres"),
        &format!(
            "SELECT 1 FROM pg_database WHERE datname = '{}'",
            pg::DATABASE
        ),
    )?;
    if exists.is_empty() {
        pg::psql(
            &bin,
            &pg::url(port, "postgres"),
            &format!("CREATE DATABASE {}", pg::DATABASE),
        )?;
        println!("postgres: created database {}", pg::DATABASE);
    }
    println!("postgres: accepting connections on 127.0.0.1:{port}");
    // The server keeps running after this process exits (its own process group).
    std::mem::forget(child);
    Ok(pg::url(port, pg::DATABASE))
}

fn up(port: u16) -> anyhow::Result<()> {
    let url = start(port)?;
    println!();
    println!("Start oa with (or put in .env):");
    println!("  DATABASE_URL={url}");
    Ok(())
}

/// Stops the server started by `up` on `port`.
pub fn down(port: u16) -> anyhow::Result<()> {
    let dir = run_dir(port);
    stop_recorded(&dir, "postgres", running_pid(port), |pid| {
        // SIGTERM is PostgreSQL's "smart" shutdown (waits for every client to leave); SIGINT
        // ends the sessions and stops at once, cleanly.
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        stop_pid(pid, "postgres");
    });
    Ok(())
}

fn status(port: u16) -> anyhow::Result<()> {
    let bin = match pg::bin_dir() {
        Ok(bin) => {
            println!(
                "installed: {} in {}",
                pg::version(&bin).unwrap_or_else(|| "yes".to_string()),
                bin.display()
            );
            Some(bin)
        }
        Err(_) => {
            println!("installed: no (`cargo xtask pg up` or `cargo xtask setup` installs it)");
            None
        }
    };
    let dir = run_dir(port);
    match running_pid(port) {
        Some(pid) => println!(
            "process:   pid {pid}, data {}, log {}",
            dir.join("data").display(),
            dir.join("postgres.log").display()
        ),
        None => println!("process:   not started by `cargo xtask pg up`"),
    }
    if bin
        .as_deref()
        .is_some_and(|bin: &Path| pg::is_ready(bin, port))
    {
        println!("server:    accepting connections on 127.0.0.1:{port}");
        println!("url:       {}", pg::url(port, pg::DATABASE));
        Ok(())
    } else {
        bail!(
            "no PostgreSQL server accepts connections on 127.0.0.1:{port}: run `cargo xtask pg up`"
        )
    }
}
