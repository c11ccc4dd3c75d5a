//! `oa-server`: REST API v1, order events (Socket.IO / Kafka) and WebSocket market data in one
//! process. `oa-server` alone (or `oa-server serve`) starts everything on embedded defaults;
//! every setting comes from flags, the environment or a `.env` file (see `.sample.env`).

mod admin;
mod app;
mod backfill;
mod cli;
mod config;
mod dashboard;
mod edge;
mod esb;
mod http;
mod late_verifier;
mod leader;
mod outbox;
mod shutdown;
mod telemetry;

use clap::Parser;

use crate::cli::{ApikeyAction, Cli, Command, EsbAction};

/// An administration command (runs against the store and exits).
enum Admin {
    Apikey(ApikeyAction),
    Esb(EsbAction),
}

fn main() -> std::process::ExitCode {
    // .env first, so clap sees its values as environment variables. A missing file is fine.
    let env_file = std::env::var("OA_ENV_FILE").unwrap_or_else(|_| ".env".to_string());
    let env_file_error = match dotenvy::from_filename(&env_file) {
        Err(error) if !error.not_found() => Some(format!("cannot read {env_file}: {error}")),
        _ => None,
    };

    let cli = Cli::parse();
    let (raw, admin_action) = match cli.command {
        Some(Command::Serve(raw)) => (raw, None),
        Some(Command::Apikey { action, config }) => (config, Some(Admin::Apikey(action))),
        Some(Command::Esb { action, config }) => (config, Some(Admin::Esb(action))),
        None => (cli.serve, None),
    };
    telemetry::init_logging(raw.text("OA_LOG_FORMAT"));
    if let Some(error) = env_file_error {
        tracing::error!("{error}");
        return std::process::ExitCode::FAILURE;
    }

    let settings = match raw.validate() {
        Ok(settings) => settings,
        Err(problems) => {
            eprintln!("{problems}");
            return std::process::ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = match admin_action {
        Some(Admin::Apikey(action)) => runtime.block_on(admin::run(&settings, action)),
        Some(Admin::Esb(action)) => runtime.block_on(admin::run_esb(&settings, action)),
        None => runtime.block_on(app::run(settings)),
    };
    // Tasks and blocking calls still running (a request cut off by the shutdown deadline)
    // must not hold the process: give them a moment, then exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // {:#} prints the whole context chain on one line.
            tracing::error!("oa-server stopped: {error:#}");
            eprintln!("oa-server: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
