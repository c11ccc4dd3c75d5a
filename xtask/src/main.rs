//! `cargo xtask`: project automation.
//!
//! - `codegen [--check]`: writes docs/schema/events.schema.json and docs/asyncapi.yaml from
//!   the event catalog; `--check` fails when the checked-in files differ.
//! - `setup`: installs the real test peers (Python venv from tests/python/requirements.txt,
//!   npm packages of tests/node). Idempotent; skipped when nothing changed.
//! - `test`: everything CI runs: fmt check, clippy -D warnings, codegen check, setup, all tests.

mod codegen;
mod kafka;
mod setup;
mod util;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "oa project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the JSON Schema and AsyncAPI files from the event catalog.
    Codegen {
        /// Fail (without writing) when the checked-in files are out of date.
        #[arg(long)]
        check: bool,
    },
    /// Install the Python and Node test peers.
    Setup,
    /// Local Kafka broker (tansu) for development and tests: up, down, status, bench.
    Kafka {
        #[command(subcommand)]
        action: kafka::Action,
    },
    /// Run everything CI runs: fmt, clippy, codegen check, setup, all tests.
    Test {
        /// Skip fmt and clippy (for a quick local run).
        #[arg(long)]
        no_lint: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Codegen { check } => codegen::run(check),
        Command::Setup => setup::run(),
        Command::Kafka { action } => kafka::run(action),
        Command::Test { no_lint } => test(no_lint),
    }
}

fn test(no_lint: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Every step runs even after a failure, so one run reports every problem; the tests
    // need the set-up and the binary, so those two stop the run when they fail.
    let mut failed = Vec::new();
    let mut record = |name: &'static str, result: anyhow::Result<()>| {
        if result.is_err() {
            failed.push(name);
        }
    };
    if !no_lint {
        record(
            "cargo fmt --check",
            util::step("cargo fmt --check", || {
                util::cargo(&["fmt", "--all", "--check"])
            }),
        );
        record(
            "cargo clippy",
            util::step("cargo clippy -D warnings", || {
                util::cargo(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
            }),
        );
    }
    record(
        "codegen --check",
        util::step("codegen --check", || codegen::run(true)),
    );
    util::step("setup test peers", setup::run)?;
    util::step("build oa-server", || {
        util::cargo(&["build", "-p", "oa-server"])
    })?;
    record(
        "cargo test",
        util::step("cargo test --workspace", || {
            util::cargo(&["test", "--workspace", "--no-fail-fast"])
        }),
    );
    if failed.is_empty() {
        println!("xtask test: all steps passed in {:.0?}", started.elapsed());
        Ok(())
    } else {
        anyhow::bail!(
            "xtask test: {} step(s) failed: {} ({:.0?})",
            failed.len(),
            failed.join(", "),
            started.elapsed()
        )
    }
}
