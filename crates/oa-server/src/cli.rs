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
    /// Manage users' API keys in the store (DATABASE_URL, API_KEY_PEPPER).
    Apikey {
        #[command(subcommand)]
        action: ApikeyAction,
        #[command(flatten)]
        config: RawConfig,
    },
    /// Allow or deny ESB commands (Kafka, docs/esb.md) to act for a user (DATABASE_URL).
    /// Off by default; a running server sees the change with the next command.
    Esb {
        #[command(subcommand)]
        action: EsbAction,
        #[command(flatten)]
        config: RawConfig,
    },
}

/// Per-user consent to ESB control of the account.
#[derive(Debug, Clone, Subcommand)]
pub enum EsbAction {
    /// Let ESB commands act for the user (who must exist; a user without an active API key
    /// stays refused).
    Allow {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// Stop ESB commands from acting for the user (they are dead-lettered `unauthenticated`).
    Deny {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// Show whether ESB commands may act for each user (or one user).
    Status {
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
    },
}

/// API-key administration. A new key is printed once, on standard output; only its Argon2
/// hash is stored.
#[derive(Debug, Clone, Subcommand)]
pub enum ApikeyAction {
    /// Create a user (if new) with a fresh key; fails if the user already has an active key.
    Create {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// Replace a user's key with a fresh one (the old key stops working).
    Rotate {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// Revoke a user's key.
    Revoke {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// List users, whether they have an active key (never the keys) and allow the ESB.
    List,
}
