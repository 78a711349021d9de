//! `isv-lifecycle users add NAME --password-stdin | list | disable NAME`: support staff accounts
//! for the web page. Like every support command, it opens an existing, migrated database and
//! creates nothing.

use crate::clock::SystemClock;
use crate::config::Prepared;
use crate::service::operators::OperatorError;
use anyhow::Context as _;
use clap::Subcommand;
use std::io::Read as _;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a support account; the password is read from standard input and stored as an
    /// Argon2id hash.
    Add {
        /// Letters, digits, '.', '_' or '-' (shown in the history as `web:NAME`).
        name: String,
        /// Read the password from standard input (one line; the trailing newline is dropped).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Every account: name, created, disabled, live sessions.
    List,
    /// No more sign-ins for this account; its sessions end now.
    Disable { name: String },
}

pub fn run(prepared: Prepared, command: UsersCommand) -> anyhow::Result<()> {
    // Read before opening anything: a missing password changes nothing.
    let password = match &command {
        UsersCommand::Add { .. } => Some(read_password()?),
        UsersCommand::List | UsersCommand::Disable { .. } => None,
    };
    let services = existing_database_services(&prepared)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(users_command(services, command, password))
}

async fn users_command(
    services: crate::service::Services,
    command: UsersCommand,
    password: Option<String>,
) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { name, .. } => {
            let password = password.unwrap_or_default();
            services
                .add_operator(&name, &password)
                .await
                .map_err(explain)?;
            println!("added {name}");
        }
        UsersCommand::List => {
            let list = services.list_operators().await.map_err(explain)?;
            println!("NAME\tCREATED\tDISABLED\tSESSIONS");
            for o in list {
                println!(
                    "{}\t{}\t{}\t{}",
                    o.name,
                    o.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    o.disabled_at
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "-".into()),
                    o.live_sessions
                );
            }
        }
        UsersCommand::Disable { name } => {
            services.disable_operator(&name).await.map_err(explain)?;
            println!("disabled {name}; their sessions have ended");
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    if password.is_empty() {
        return Err(super::usage("no password on standard input"));
    }
    Ok(password.to_string())
}

/// The exit code follows INTERFACE.md: bad input 2, no such operator 3, refused 4.
fn explain(e: OperatorError) -> anyhow::Error {
    match e {
        OperatorError::InvalidName(_) | OperatorError::WeakPassword => super::usage(e),
        OperatorError::NotFound(_) => super::not_found(e),
        OperatorError::Exists(_) => super::refused(e),
        OperatorError::Store(_) | OperatorError::Hash(_) => anyhow::Error::from(e),
    }
}

/// Services over the configured database, which must exist and be migrated: nothing is
/// created, migrated or narrowed (the same opener as every support command).
fn existing_database_services(prepared: &Prepared) -> anyhow::Result<crate::service::Services> {
    let pool = crate::store::connect_existing(&prepared.database, 1).map_err(|e| match e {
        crate::store::ExistingDbError::Missing(problem) => super::usage(format!(
            "setting database.url (from {}): {problem}",
            crate::config::source_of("database.url", &prepared.config_file)
        )),
        other => anyhow::Error::from(other).context("database.url"),
    })?;
    let services = crate::startup::services(prepared, pool, Arc::new(SystemClock))?;
    Ok(services)
}
