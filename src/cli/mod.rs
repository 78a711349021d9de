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
    /// Ask Alipay (order.query) about every open order now and repair drift, with progress.
    Reconcile {
        /// Most order.query calls per second (default: scheduler.reconcile_rate_per_second).
        #[arg(long)]
        rate: Option<u32>,
        /// Orders queried at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Terminate an order's service (cause `support`), with the reason recorded in its history.
    Terminate {
        /// The commodity_order_id.
        order: String,
        #[arg(long)]
        reason: String,
        /// Who decided (default: the USER environment variable, else `support`).
        #[arg(long)]
        actor: Option<String>,
    },
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
        Command::Reconcile { rate, concurrency } => reconcile(prepared, rate, concurrency),
        Command::Terminate {
            order,
            reason,
            actor,
        } => terminate(prepared, order, reason, actor),
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

/// Services against the configured database, without the HTTP server (support commands).
fn with_services<T>(
    prepared: &Prepared,
    f: impl AsyncFnOnce(crate::service::Services) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let pool = crate::startup::open_database(prepared)?;
        let services = crate::startup::services(prepared, pool, Arc::new(SystemClock))?;
        f(services).await
    })
}

fn reconcile(prepared: Prepared, rate: Option<u32>, concurrency: usize) -> anyhow::Result<()> {
    let rate = rate.unwrap_or(prepared.settings.scheduler.reconcile_rate_per_second);
    with_services(&prepared, async |services| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} reconciling [{bar:40}] {pos}/{len} orders ({per_sec}, eta {eta})",
            )
            .expect("a valid progress template")
            .progress_chars("=> "),
        );
        let report = services
            .reconcile_all(rate, concurrency, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .await
            .map_err(anyhow::Error::msg)?;
        bar.finish_and_clear();
        println!(
            "{} open orders reconciled: {} repaired, {} errors",
            report.orders, report.repaired, report.errors
        );
        if report.errors > 0 {
            anyhow::bail!(
                "{} orders could not be reconciled (see the log)",
                report.errors
            );
        }
        Ok(())
    })
}

fn terminate(
    prepared: Prepared,
    order: String,
    reason: String,
    actor: Option<String>,
) -> anyhow::Result<()> {
    let actor = actor
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "support".into());
    with_services(&prepared, async |services| {
        let event = crate::domain::lifecycle::OrderEvent::SupportTerminates { actor, reason };
        let transition = services
            .order_event_now(&order, event)
            .await
            .map_err(|e| anyhow::anyhow!("{order}: {e}"))?;
        match transition.ignored {
            Some(why) => println!("{order}: nothing to do ({why})"),
            None => println!(
                "{order}: service terminated (cause support); Alipay will be asked about the order on the next tick"
            ),
        }
        Ok(())
    })
}
