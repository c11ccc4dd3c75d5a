//! `cargo xtask`: project automation.
//!
//! - `codegen [--check]`: writes docs/schema/events.schema.json and docs/asyncapi.yaml from
//!   the event catalog; `--check` fails when the checked-in files differ.
//! - `setup`: installs the real test peers (Python venv from tests/python/requirements.txt,
//!   npm packages of tests/node), tansu and PostgreSQL. Idempotent; skipped when nothing changed.
//! - `kafka up|down|status|...`: a local tansu broker; `pg up|down|status`: a local PostgreSQL.
//! - `cluster up|down|status`: broker + PostgreSQL + two cores + two edges (docs/scaling.md).
//! - `test`: everything CI runs: fmt check, clippy -D warnings, cargo doc -D warnings, dependency
//!   boundaries (`cargo tree`), codegen check, setup, all tests, the oa-api store suites again
//!   on PostgreSQL, test-both-modes.

mod cluster;
mod codegen;
mod kafka;
mod pg;
mod setup;
mod test_build;
mod util;

use clap::{Parser, Subcommand};

use test_build::TestBuild;

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
    /// Local Kafka broker (tansu) for development and tests: up, down, status, bench, bench-latency.
    Kafka {
        #[command(subcommand)]
        action: kafka::Action,
    },
    /// Local PostgreSQL server (Debian's package) for development and tests: up, down, status.
    Pg {
        #[command(subcommand)]
        action: pg::Action,
    },
    /// Local cluster: broker, PostgreSQL, two cores and two edges (docs/scaling.md): up, down,
    /// status.
    Cluster {
        #[command(subcommand)]
        action: cluster::Action,
    },
    /// Run the end-to-end suite once per event mode (SOCKETIO, KAFKA, BOTH) against a local
    /// broker it starts (and stops again, also on failure).
    TestBothModes,
    /// Run everything CI runs: fmt, clippy, doc, dependency boundaries, codegen check, setup,
    /// all tests, the oa-api store suites on PostgreSQL, test-both-modes.
    Test {
        /// Skip fmt, clippy, doc and dependency boundaries (for a quick local run).
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
        Command::Pg { action } => pg::run(action),
        Command::Cluster { action } => cluster::run(action),
        Command::Test { no_lint } => test(no_lint),
        Command::TestBothModes => {
            let build = util_step_build()?;
            test_both_modes(&build, Passes::All)
        }
    }
}

/// The plain broker port test-both-modes uses.
const BOTH_MODES_KAFKA_PORT: u16 = 9092;
/// The secure (TLS + SASL SCRAM-SHA-512) broker port of the last pass.
const BOTH_MODES_SECURE_KAFKA_PORT: u16 = 9094;

/// One run of the end-to-end suite: its mode and the broker it is given.
struct Pass {
    name: String,
    mode: &'static str,
    bootstrap: String,
    /// Client security settings (`NAME=VALUE;...`) for oa and kafka-python.
    client_env: String,
}

/// Builds the test executables, oa-server and every example from the current sources in
/// one `cargo test --workspace --no-run` (see [`test_build`]): the end-to-end tests run the
/// binaries as they are on disk (`OA_SERVER_BIN`, `oa_e2e::example_binary`).
fn util_step_build() -> anyhow::Result<TestBuild> {
    let mut build = None;
    util::step("build tests, oa-server and examples", || {
        build = Some(TestBuild::build()?);
        Ok(())
    })?;
    build.ok_or_else(|| anyhow::anyhow!("the build step ended without a build"))
}

/// Which passes of the end-to-end suite [`test_both_modes`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passes {
    /// SOCKETIO, KAFKA, BOTH, and KAFKA over TLS + SCRAM.
    All,
    /// All but SOCKETIO: `cargo xtask test` has just run the suite in that mode (its default)
    /// as part of `cargo test --workspace`.
    AfterWorkspaceRun,
}

/// Runs the end-to-end suite once per mode against a plain local broker, then KAFKA mode
/// again against a secure one (TLS + SCRAM), and reports every failing pass.
fn test_both_modes(build: &TestBuild, which: Passes) -> anyhow::Result<()> {
    let plain = BOTH_MODES_KAFKA_PORT;
    let secure = BOTH_MODES_SECURE_KAFKA_PORT;
    let plain_started_here = !kafka::is_running(plain);
    kafka::run(kafka::Action::Up {
        port: plain,
        storage: kafka::Storage::Sqlite,
        secure: false,
    })?;
    let secure_started_here = !kafka::is_running(secure);
    let secure_up = kafka::run(kafka::Action::Up {
        port: secure,
        storage: kafka::Storage::Sqlite,
        secure: true,
    })
    .and_then(|()| kafka::secure::client_env(secure));
    let modes: &[&'static str] = match which {
        Passes::All => &["SOCKETIO", "KAFKA", "BOTH"],
        Passes::AfterWorkspaceRun => {
            println!(
                "end-to-end suite, ORDER_EVENT_MODE=SOCKETIO: ran in the `cargo test --workspace` step"
            );
            &["KAFKA", "BOTH"]
        }
    };
    let mut passes: Vec<Pass> = modes
        .iter()
        .copied()
        .map(|mode| Pass {
            name: format!("ORDER_EVENT_MODE={mode}"),
            mode,
            bootstrap: format!("127.0.0.1:{plain}"),
            client_env: String::new(),
        })
        .collect();
    let mut failed = Vec::new();
    match &secure_up {
        Ok(client_env) => passes.push(Pass {
            name: "ORDER_EVENT_MODE=KAFKA over TLS + SASL SCRAM-SHA-512".to_string(),
            mode: "KAFKA",
            bootstrap: format!("127.0.0.1:{secure}"),
            client_env: client_env
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(";"),
        }),
        Err(error) => {
            eprintln!("the secure broker did not start: {error:#}");
            failed.push("KAFKA over TLS + SASL (broker did not start)".to_string());
        }
    }
    for pass in &passes {
        let result = util::step(&format!("end-to-end suite, {}", pass.name), || {
            let server = util::debug_binary("oa-server");
            let server = server.to_string_lossy();
            test_build::run_all(
                build.of_package("oa-e2e"),
                &[],
                &[
                    ("OA_SERVER_BIN", &server),
                    ("OA_E2E_EVENT_MODE", pass.mode),
                    ("OA_E2E_KAFKA_BOOTSTRAP", &pass.bootstrap),
                    ("OA_E2E_KAFKA_ENV", &pass.client_env),
                ],
            )
        });
        if result.is_err() {
            failed.push(pass.name.clone());
        }
    }
    if plain_started_here {
        kafka::run(kafka::Action::Down { port: plain })?;
    }
    if secure_started_here {
        kafka::run(kafka::Action::Down { port: secure })?;
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "the end-to-end suite failed in pass(es): {}",
            failed.join("; ")
        );
    }
    Ok(())
}

/// The store suites of oa-api (REST, engine, outbox, ESB, key store, idempotency) again, on
/// PostgreSQL: a throw-away server (Debian's package, installed by setup) for this pass, one
/// database per test (`OA_TEST_DATABASE=postgres`, `OA_TEST_POSTGRES_URL`).
fn test_on_postgres(build: &TestBuild) -> anyhow::Result<()> {
    let server = oa_e2e::postgres::Postgres::start()?;
    println!(
        "PostgreSQL for the pass: 127.0.0.1:{} (stopped afterwards)",
        server.port()
    );
    let admin_url = server.admin_url();
    test_build::run_all(
        build.of_package("oa-api"),
        &[],
        &[
            ("OA_TEST_DATABASE", "postgres"),
            ("OA_TEST_POSTGRES_URL", &admin_url),
        ],
    )
}

/// Crates (with their feature flags) that must not pull in a dependency: a feed process does
/// not build the WebSocket stack, users of the event core and the REST layer do not build
/// libzmq.
const DEPENDENCY_BOUNDARIES: &[(&[&str], &[&str])] = &[
    (
        &["-p", "oa-marketdata-zmq", "--no-default-features"],
        &["axum", "hyper"],
    ),
    (&["-p", "oa-marketdata-core"], &["zmq", "axum", "hyper"]),
    (&["-p", "oa-events-core"], &["zmq", "axum", "hyper"]),
    (&["-p", "oa-api"], &["zmq"]),
];

/// Checks [`DEPENDENCY_BOUNDARIES`] with `cargo tree -e normal`, and that the feed-process
/// build of oa-marketdata-zmq compiles.
fn dependency_boundaries() -> anyhow::Result<()> {
    let mut crossed = Vec::new();
    for (package, forbidden) in DEPENDENCY_BOUNDARIES {
        let output = util::cargo_command()
            .arg("tree")
            .args(*package)
            .args(["-e", "normal", "--prefix", "none"])
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "cargo tree {} failed: {}",
            package.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        let tree = String::from_utf8_lossy(&output.stdout);
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if forbidden.contains(&name) {
                crossed.push(format!("{} depends on {name}", package.join(" ")));
            }
        }
    }
    crossed.sort();
    crossed.dedup();
    anyhow::ensure!(crossed.is_empty(), "{}", crossed.join("; "));
    util::cargo(&[
        "check",
        "-p",
        "oa-marketdata-zmq",
        "--no-default-features",
        "--lib",
    ])
}

/// The steps of one `xtask test` run: each runs even after another failed, so one run
/// reports every problem.
struct Steps {
    started: std::time::Instant,
    /// The summary names of the steps that failed.
    failed: Vec<&'static str>,
}

impl Steps {
    fn new() -> Self {
        Steps {
            started: std::time::Instant::now(),
            failed: Vec::new(),
        }
    }

    /// Runs `step`, announced as `label`; a failure is summed up as `name`.
    fn run(&mut self, name: &'static str, label: &str, step: impl FnOnce() -> anyhow::Result<()>) {
        if util::step(label, step).is_err() {
            self.failed.push(name);
        }
    }

    /// Ok when every step passed, else an error naming those that failed.
    fn finish(self) -> anyhow::Result<()> {
        if self.failed.is_empty() {
            println!(
                "xtask test: all steps passed in {:.0?}",
                self.started.elapsed()
            );
            Ok(())
        } else {
            anyhow::bail!(
                "xtask test: {} step(s) failed: {} ({:.0?})",
                self.failed.len(),
                self.failed.join(", "),
                self.started.elapsed()
            )
        }
    }
}

fn test(no_lint: bool) -> anyhow::Result<()> {
    // The tests need the set-up and the binary: those two stop the run when they fail.
    let mut steps = Steps::new();
    if !no_lint {
        steps.run("cargo fmt --check", "cargo fmt --check", || {
            util::cargo(&["fmt", "--all", "--check"])
        });
        steps.run("cargo clippy", "cargo clippy -D warnings", || {
            util::cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
        });
        steps.run("cargo doc", "cargo doc -D warnings", || {
            util::run(
                util::cargo_command()
                    // `--examples` turns on the dev-dependencies, so the dependencies are
                    // checked with clippy's feature set instead of a second one.
                    .args(["doc", "--workspace", "--no-deps", "--examples"])
                    .env("RUSTDOCFLAGS", "-D warnings"),
            )
        });
        steps.run(
            "dependency boundaries",
            "dependency boundaries",
            dependency_boundaries,
        );
    }
    steps.run("codegen --check", "codegen --check", || codegen::run(true));
    util::step("setup test peers", setup::run)?;
    let build = util_step_build()?;
    steps.run("cargo test", "cargo test --workspace", || {
        // The binary built above: the tests must not build it again with their own
        // environment (a nested cargo build would rebuild with other fingerprints).
        util::cargo_with_server(&["test", "--workspace", "--no-fail-fast"])
    });
    steps.run(
        "cargo test on PostgreSQL",
        "oa-api's tests on the PostgreSQL store",
        || test_on_postgres(&build),
    );
    steps.run("core failover", "core failover end to end (once)", || {
        let server = util::debug_binary("oa-server");
        test_build::run_all(
            [build.test("oa-e2e", "cluster")?],
            &["--ignored"],
            &[("OA_SERVER_BIN", &server.to_string_lossy())],
        )
    });
    steps.run("test-both-modes", "test-both-modes", || {
        test_both_modes(&build, Passes::AfterWorkspaceRun)
    });
    steps.finish()
}
