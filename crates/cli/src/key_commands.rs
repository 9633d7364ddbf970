//! `cairn key`: S3 access keys. A user makes, lists and removes their own;
//! an admin anyone's. The secret is printed once, at creation: Cairn keeps
//! it only sealed under the cluster secret.

use std::process::ExitCode;

use cairn_client::MetaClient;
use clap::{Args, Subcommand};

use crate::output;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Make an access key for S3 clients (yours, or with --user anyone's
    /// for an admin); prints the secret, which is shown this once
    Create(KeyCreateArgs),
    /// List access keys: yours, --user NAME's or (admin) --all
    List(KeyListArgs),
    /// Remove an access key: requests signed with it are refused at once
    Rm(KeyRmArgs),
}

#[derive(Args)]
pub struct KeyCreateArgs {
    /// Whose key [default: yours]; another user's for admins only
    #[arg(long)]
    user: Option<String>,
    /// Print the key as JSON (access_key_id, secret_access_key, user)
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct KeyListArgs {
    /// Whose keys [default: yours]; another user's for admins only
    #[arg(long, conflicts_with = "all")]
    user: Option<String>,
    /// Every user's keys (admins only)
    #[arg(long)]
    all: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct KeyRmArgs {
    /// The access key id, as `cairn key list` shows it
    id: String,
}

pub async fn key(meta: &MetaClient, command: KeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Create(args) => {
            let key = meta.create_key(args.user.as_deref()).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&key)?);
            } else {
                println!("access key for {}", key.user);
                println!("  access key id:     {}", key.access_key_id);
                println!("  secret access key: {}", key.secret_access_key);
                println!(
                    "the secret is shown this once: keep it now (Cairn stores it only sealed)"
                );
            }
        }
        KeyCommand::List(args) => {
            let keys = meta.keys(args.user.as_deref(), args.all).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!("{:<22} {:<20} created", "access key id", "user");
                for key in &keys.keys {
                    println!(
                        "{:<22} {:<20} {}",
                        key.access_key_id,
                        key.user,
                        output::format_time(key.created_ms)
                    );
                }
            }
        }
        KeyCommand::Rm(args) => {
            let info = meta.remove_key(&args.id).await?;
            println!(
                "removed access key {} of {}; requests signed with it are refused from now on",
                info.access_key_id, info.user
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
