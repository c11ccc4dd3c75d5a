//! `oa-server apikey ...`: key administration against the same store the server uses.

use std::time::Duration;

use anyhow::Context;
use oa_api::KeyStore;
use oa_events_core::EventPublisher;

use crate::cli::ApikeyAction;
use crate::config::Settings;

/// Runs one key-administration action and prints its result.
pub async fn run(settings: &Settings, action: ApikeyAction) -> anyhow::Result<()> {
    let path = oa_api::config::parse_database_url(&settings.api.database_url)?;
    if let Some(parent) = path
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
        &path,
        &settings.api_key_pepper,
        "simulator",
        16,
        Duration::from_secs(1),
        publisher,
    )
    .with_context(|| format!("opening the store at {}", path.display()))?;
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
                "{:<24} {:<28} {:<28} revoked",
                "user", "created", "active key since"
            );
            for user in keys.list_users().await? {
                println!(
                    "{:<24} {:<28} {:<28} {}",
                    user.user_id,
                    user.user_created_at,
                    user.key_created_at.as_deref().unwrap_or("(none)"),
                    user.revoked_keys
                );
            }
        }
    }
    Ok(())
}
