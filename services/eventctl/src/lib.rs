//! The operator CLI. Commands print their results on stdout (for scripts:
//! `keys create` prints only the key) and everything meant for a human on
//! stderr.
//!
//! - `eventctl migrate`: apply the migrations, create the coming days' partitions;
//! - `eventctl keys create --name N --scopes ingest,query,admin`: a new key, shown once;
//! - `eventctl keys list [--json]`;
//! - `eventctl keys revoke <id or prefix>`.

use std::io::Write;

use chrono::{Days, Utc};
use clap::{Parser, Subcommand};
use eventline_shared::api_key::{self, ApiKeyError, ApiKeyRecord, KeyPepper, Scopes};
use eventline_shared::config::DatabaseArgs;
use eventline_shared::pg_pool::{self, PgSetupError};
use eventline_shared::schema;

#[derive(Debug, Parser)]
#[command(name = "eventctl", version, about = "Operate an eventline deployment")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations and create the partitions of the coming days.
    Migrate {
        /// Daily partitions to create ahead of today.
        #[arg(long, env = "PRECREATE_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
        precreate_days: u32,
    },
    /// Create, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (only the key, on stdout). It is shown this once.
    Create {
        /// Who or what the key is for.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: ingest, query, admin.
        #[arg(long, value_parser = parse_scopes)]
        scopes: Scopes,
        /// The server-side secret keys are hashed with; the services must use the same.
        #[arg(long, env = "KEY_PEPPER", hide_env_values = true)]
        key_pepper: KeyPepper,
    },
    /// List keys (never their secrets).
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id or its prefix.
    Revoke {
        /// The key's id (UUID) or its 12-character prefix.
        key: String,
    },
}

fn parse_scopes(s: &str) -> Result<Scopes, String> {
    Scopes::parse_list(s).map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(transparent)]
    Setup(#[from] PgSetupError),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating partitions failed: {0}")]
    Partitions(#[source] sqlx::Error),
    #[error(transparent)]
    Keys(#[from] ApiKeyError),
    #[error("no API key has the id or prefix {0:?}")]
    NoSuchKey(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The name in `pg_stat_activity`.
pub const COMPONENT: &str = "eventctl";

/// Runs one command, writing its results to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), CtlError> {
    let pool = pg_pool::connect(&cli.db, COMPONENT).await?;
    match cli.command {
        Command::Migrate { precreate_days } => {
            schema::migrate(&pool).await?;
            let today = Utc::now().date_naive();
            let first = today - Days::new(1);
            let last = today + Days::new(u64::from(precreate_days));
            let created = schema::ensure_partitions(&pool, first, last)
                .await
                .map_err(CtlError::Partitions)?;
            eprintln!(
                "migrations applied; partitions {first} .. {last} exist ({} created)",
                created.len()
            );
            for name in created {
                writeln!(out, "created {name}")?;
            }
        }
        Command::Keys { command } => keys(&pool, command, out).await?,
    }
    Ok(())
}

async fn keys(
    pool: &sqlx::PgPool,
    command: KeysCommand,
    out: &mut impl Write,
) -> Result<(), CtlError> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            key_pepper,
        } => {
            let (record, key) = api_key::create(pool, &key_pepper, &name, scopes).await?;
            eprintln!(
                "created key {} ({}) with scopes {}; it is shown only now:",
                record.prefix, record.name, record.scopes
            );
            writeln!(out, "{key}")?;
        }
        KeysCommand::List { json } => {
            let records = api_key::list(pool).await?;
            if json {
                for record in &records {
                    writeln!(out, "{}", record_json(record))?;
                }
            } else {
                writeln!(
                    out,
                    "{:<36}  {:<12}  {:<20}  {:<18}  {:<20}  STATUS",
                    "ID", "PREFIX", "NAME", "SCOPES", "CREATED"
                )?;
                for r in &records {
                    writeln!(
                        out,
                        "{:<36}  {:<12}  {:<20}  {:<18}  {:<20}  {}",
                        r.id,
                        r.prefix,
                        r.name,
                        r.scopes.to_string(),
                        r.created_at.format("%Y-%m-%d %H:%M:%S"),
                        if r.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    )?;
                }
            }
        }
        KeysCommand::Revoke { key } => match api_key::revoke(pool, &key).await? {
            Some(record) => {
                eprintln!("revoked key {} ({})", record.prefix, record.name);
                writeln!(out, "{}", record.id)?;
            }
            None => return Err(CtlError::NoSuchKey(key)),
        },
    }
    Ok(())
}

fn record_json(r: &ApiKeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "name": r.name,
        "prefix": r.prefix,
        "scopes": r.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "created_at": r.created_at,
        "revoked_at": r.revoked_at,
        "last_used_at": r.last_used_at,
    })
}
