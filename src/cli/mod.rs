//! The command line: `serve` and `migrate` (more commands come with later work).

use crate::clock::SystemClock;
use crate::config::{Prepared, Settings};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "isv-lifecycle",
    version,
    about = "Alipay ISV application gateway and service-marketplace lifecycle"
)]
pub struct Cli {
    /// Settings file; every setting can be overridden with ISV__SECTION__KEY.
    #[arg(long, global = true, default_value = "config/default.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gateway, admin API and background jobs in one process (migrates on start).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let prepared =
        match Settings::load(&cli.config).and_then(|s| Prepared::from_settings(s, &cli.config)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("isv-lifecycle: {e}");
                return ExitCode::from(2);
            }
        };
    crate::telemetry::init(&prepared.settings.log.format, &prepared.settings.log.level);
    let result = match cli.command {
        Command::Serve => serve(prepared),
        Command::Migrate => migrate(&prepared),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isv-lifecycle: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(prepared: &Prepared) -> anyhow::Result<()> {
    let pool = crate::store::connect_pool(&prepared.database, 1)
        .map_err(anyhow::Error::msg)
        .context("database.url")?;
    let applied = crate::store::migrate(&pool).map_err(anyhow::Error::msg)?;
    println!("migrations applied: {applied}");
    Ok(())
}

fn announce_sandbox(prepared: &Prepared) {
    if let Some(files) = &prepared.sandbox {
        eprintln!(
            "\n  SANDBOX MODE: no Alipay keys are configured, so local key pairs were generated in {dir}.\n  \
             Messages from the real Alipay will NOT verify. The stand-in Alipay platform key (for the\n  \
             simulator and tests) is {platform}. Admin token: {admin} (the file holds it).\n  \
             Configure alipay.app_private_key_file and alipay.alipay_public_key_file to leave sandbox mode.\n",
            dir = files.dir.display(),
            platform = files.platform_private_key.display(),
            admin = files.admin_token_file.display(),
        );
        tracing::warn!(dir = %files.dir.display(), "sandbox mode: locally generated keys");
    }
}

fn serve(prepared: Prepared) -> anyhow::Result<()> {
    announce_sandbox(&prepared);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let started = crate::startup::build(&prepared, Arc::new(SystemClock))?;
        tracing::info!(listen = %prepared.listen, port = started.app.port(), database = ?prepared.database.backend(),
            app_id = %prepared.settings.alipay.app_id, "isv-lifecycle serving");
        let poll = Duration::from_millis(prepared.settings.inbox.apply_poll_ms);
        crate::startup::run(started, poll).await
    })
}
