//! `oa-server apikey ...` and `oa-server esb ...`: key and ESB-consent administration
//! against the same store the server uses.

use std::time::Duration;

use anyhow::Context;
use oa_api::KeyStore;
use oa_events_core::EventPublisher;

use crate::cli::{ApikeyAction, EsbAction};
use crate::config::Settings;

/// Opens the key store of `settings` (creating the database folder if needed).
fn open_keys(settings: &Settings) -> anyhow::Result<KeyStore> {
    let location = oa_api::parse_database_url(&settings.api.database_url)?;
    if let oa_api::StoreLocation::Sqlite(path) = &location
        && let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("DATABASE_URL: cannot create {}", parent.display()))?;
    }
    // Events of key changes (password_change) need a running server to reach clients; the
    // command has no sinks, so they are only logged.
    let publisher = EventPublisher::builder().build();
    let keys = KeyStore::open(
        &location,
        &settings.api_key_pepper,
        "simulator",
        16,
        Duration::from_secs(1),
        publisher,
    )
    .with_context(|| format!("opening the store at {location}"))?;
    Ok(keys)
}

/// What `esb status` and `apikey list` print in the ESB column.
fn esb_column(user: &oa_api::UserKeyInfo) -> &'static str {
    match (user.esb_allowed, user.key_created_at.is_some()) {
        (true, true) => "allowed",
        (true, false) => "allowed (disabled: no active key)",
        (false, _) => "denied",
    }
}

/// Runs one ESB-consent action and prints its result.
pub async fn run_esb(settings: &Settings, action: EsbAction) -> anyhow::Result<()> {
    let keys = open_keys(settings)?;
    match action {
        EsbAction::Allow { user } => {
            keys.set_esb_allowed(&user, true).await?;
            eprintln!(
                "ESB commands may now act for user {user:?} (signed commands only, unless KAFKA_ESB_TRUST_UNSIGNED=true)"
            );
        }
        EsbAction::Deny { user } => {
            keys.set_esb_allowed(&user, false).await?;
            eprintln!("ESB commands for user {user:?} are now dead-lettered (unauthenticated)");
        }
        EsbAction::Status { user } => {
            let users = keys.list_users().await?;
            if let Some(wanted) = &user
                && !users.iter().any(|info| &info.user_id == wanted)
            {
                anyhow::bail!("no such user {wanted:?}");
            }
            println!("{:<24} esb", "user");
            for info in users
                .iter()
                .filter(|info| user.as_ref().is_none_or(|wanted| &info.user_id == wanted))
            {
                println!("{:<24} {}", info.user_id, esb_column(info));
            }
        }
    }
    Ok(())
}

/// Runs one key-administration action and prints its result.
pub async fn run(settings: &Settings, action: ApikeyAction) -> anyhow::Result<()> {
    let keys = open_keys(settings)?;
    match action {
        ApikeyAction::Create { user } => {
            let key = keys.create_user_key(&user).await?;
            eprintln!("created an API key for user {user:?}; it is shown once:");
            println!("{key}");
        }
        ApikeyAction::Rotate { user } => {
            let key = keys.rotate_user_key(&user).await?;
            eprintln!("rotated the API key of user {user:?}; the new key is shown once:");
            println!("{key}");
        }
        ApikeyAction::Revoke { user } => {
            keys.revoke_user_key(&user).await?;
            eprintln!("revoked the API key of user {user:?}");
        }
        ApikeyAction::List => {
            println!(
                "{:<24} {:<28} {:<28} {:<8} esb",
                "user", "created", "active key since", "revoked"
            );
            for user in keys.list_users().await? {
                println!(
                    "{:<24} {:<28} {:<28} {:<8} {}",
                    user.user_id,
                    user.user_created_at,
                    user.key_created_at.as_deref().unwrap_or("(none)"),
                    user.revoked_keys,
                    esb_column(&user)
                );
            }
        }
    }
    Ok(())
}
