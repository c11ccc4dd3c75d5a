//! Command-line interface: `serve` (the default) and administration commands.

use clap::{Parser, Subcommand};

use crate::config::RawConfig;

/// oa: OpenAlgo-compatible REST API, order events and market-data streaming.
#[derive(Debug, Parser)]
#[command(
    name = "oa-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Settings for `serve` when no command is given.
    #[command(flatten)]
    pub serve: RawConfig,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(RawConfig),
}
