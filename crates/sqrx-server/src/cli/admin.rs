//! `sqrx admin`: users and API keys, offline, against the same database a server uses.

use clap::{Args, Subcommand};
use sqrx_server::tenants::{Quota, Tenants};

use crate::cli::error::CliError;

/// Where the tenant database is.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// `postgres://...` or `sqlite://PATH` [default: sqlite://<data dir>/tenants.db].
    #[arg(long, env = "SQRX_DATABASE_URL", value_name = "URL", global = true)]
    database_url: Option<String>,
}

/// Admin commands.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create the first admin user and print its key (once). Refused when any admin exists.
    Bootstrap {
        /// The admin's name.
        #[arg(long, default_value = "admin")]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCmd),
}

/// `sqrx admin user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user.
    Add {
        /// Its unique name.
        name: String,
        /// Make it an admin.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        quota: Quota,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users (JSON).
    Ls {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a user (its keys stop working; its sandboxes keep running).
    Disable {
        /// The user's id or name.
        user: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Enable a disabled user.
    Enable {
        /// The user's id or name.
        user: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Delete a user and its keys (its sandboxes keep running).
    Rm {
        /// The user's id or name.
        user: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `sqrx admin key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make a key for a user and print it (once).
    Add {
        /// The user's id or name.
        user: String,
        /// A name for the key.
        #[arg(long, default_value = "key")]
        name: String,
        /// Seconds until it expires.
        #[arg(long)]
        expires_in: Option<i64>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a user's keys (JSON).
    Ls {
        /// The user's id or name.
        user: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key (by its id, the 16 hex digits after `sqrx_`).
    Revoke {
        /// The key id.
        key_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn err(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

async fn open(db: &DbArgs, data_dir: &std::path::Path) -> Result<Tenants, CliError> {
    let url = db
        .database_url
        .clone()
        .unwrap_or_else(|| Tenants::default_url(data_dir));
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(data_dir).map_err(err)?;
    }
    Tenants::open(&url).await.map_err(err)
}

async fn user_id(t: &Tenants, given: &str) -> Result<String, CliError> {
    if let Some(u) = t.store().user_by_name(given).await.map_err(err)? {
        return Ok(u.id);
    }
    Ok(t.store().user(given).await.map_err(err)?.id)
}

fn print_json(v: &impl serde::Serialize) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(v).map_err(err)?);
    Ok(())
}

async fn set_disabled(
    db: &DbArgs,
    data_dir: &std::path::Path,
    user: &str,
    disabled: bool,
) -> Result<(), CliError> {
    let t = open(db, data_dir).await?;
    let id = user_id(&t, user).await?;
    let old = t.store().user(&id).await.map_err(err)?;
    let u = t
        .store()
        .update_user(&id, old.admin, disabled, &old.quota)
        .await
        .map_err(err)?;
    print_json(&u)
}

/// Run an admin command.
pub fn run(cmd: AdminCmd, data_dir: &std::path::Path) -> Result<(), CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?
        .block_on(run_async(cmd, data_dir))
}

async fn run_async(cmd: AdminCmd, data_dir: &std::path::Path) -> Result<(), CliError> {
    match cmd {
        AdminCmd::Bootstrap { name, db } => {
            let t = open(&db, data_dir).await?;
            let users = t.store().users().await.map_err(err)?;
            if users.iter().any(|u| u.admin) {
                return Err(CliError(
                    "an admin exists already: use `sqrx admin key add <admin>` for another key"
                        .into(),
                ));
            }
            let user = t
                .store()
                .create_user(&name, true, &Quota::default())
                .await
                .map_err(err)?;
            let (_, key) = t
                .store()
                .create_key(&user.id, "bootstrap", None)
                .await
                .map_err(err)?;
            eprintln!(
                "admin {} ({}): its key, shown this once:",
                user.name, user.id
            );
            println!("{key}");
        }
        AdminCmd::User(UserCmd::Add {
            name,
            admin,
            quota,
            db,
        }) => {
            let t = open(&db, data_dir).await?;
            print_json(
                &t.store()
                    .create_user(&name, admin, &quota)
                    .await
                    .map_err(err)?,
            )?;
        }
        AdminCmd::User(UserCmd::Ls { db }) => {
            let t = open(&db, data_dir).await?;
            print_json(&t.store().users().await.map_err(err)?)?;
        }
        AdminCmd::User(UserCmd::Disable { user, db }) => {
            set_disabled(&db, data_dir, &user, true).await?
        }
        AdminCmd::User(UserCmd::Enable { user, db }) => {
            set_disabled(&db, data_dir, &user, false).await?
        }
        AdminCmd::User(UserCmd::Rm { user, db }) => {
            let t = open(&db, data_dir).await?;
            let id = user_id(&t, &user).await?;
            t.store().delete_user(&id).await.map_err(err)?;
            eprintln!("removed user {id}");
        }
        AdminCmd::Key(KeyCmd::Add {
            user,
            name,
            expires_in,
            db,
        }) => {
            let t = open(&db, data_dir).await?;
            let id = user_id(&t, &user).await?;
            let expires = expires_in
                .map(|s| {
                    chrono::Duration::try_seconds(s)
                        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                        .ok_or_else(|| CliError(format!("--expires-in {s} is out of range")))
                })
                .transpose()?;
            let (info, key) = t
                .store()
                .create_key(&id, &name, expires)
                .await
                .map_err(err)?;
            eprintln!("key {} for {}: shown this once:", info.id, user);
            println!("{key}");
        }
        AdminCmd::Key(KeyCmd::Ls { user, db }) => {
            let t = open(&db, data_dir).await?;
            let id = user_id(&t, &user).await?;
            print_json(&t.store().keys(&id).await.map_err(err)?)?;
        }
        AdminCmd::Key(KeyCmd::Revoke { key_id, db }) => {
            let t = open(&db, data_dir).await?;
            print_json(&t.store().revoke_key(&key_id).await.map_err(err)?)?;
        }
    }
    Ok(())
}
