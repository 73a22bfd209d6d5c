//! The PostgreSQL pool (sqlx): bounded size, a timeout on acquiring (and so on
//! connecting), and a `statement_timeout` on every session so no query holds
//! a connection for long.

use std::str::FromStr;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseArgs;

#[derive(Debug, thiserror::Error)]
pub enum PgSetupError {
    #[error("DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("PostgreSQL at {url} does not answer: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Connection options for `args`, tagged with the service's name so
/// `pg_stat_activity` shows who holds which connection.
pub fn connect_options(
    args: &DatabaseArgs,
    application_name: &str,
) -> Result<PgConnectOptions, PgSetupError> {
    let options = PgConnectOptions::from_str(args.database_url.expose())
        .map_err(PgSetupError::Url)?
        .application_name(application_name);
    let millis = args.db_statement_timeout.as_millis();
    Ok(if millis > 0 {
        options.options([("statement_timeout", millis.to_string())])
    } else {
        options
    })
}

/// Builds the pool and opens its first connection, so a wrong URL or a
/// database that is down fails start-up with a clear message.
pub async fn connect(args: &DatabaseArgs, application_name: &str) -> Result<PgPool, PgSetupError> {
    let options = connect_options(args, application_name)?;
    pool_options(args)
        .connect_with(options)
        .await
        .map_err(|source| PgSetupError::Unreachable {
            url: args.database_url.redacted(),
            source,
        })
}

/// Builds the pool without connecting: the first query connects.
pub fn connect_lazy(args: &DatabaseArgs, application_name: &str) -> Result<PgPool, PgSetupError> {
    let options = connect_options(args, application_name)?;
    Ok(pool_options(args).connect_lazy_with(options))
}

fn pool_options(args: &DatabaseArgs) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(args.db_max_connections)
        .acquire_timeout(args.db_acquire_timeout)
}
