//! The command line: `serve`, `migrate`, the simulator and demo, and support commands (`orders`,
//! `messages replay`, `reconcile`, `terminate`, `keys generate`).

mod users;

use crate::clock::SystemClock;
use crate::config::{Creation, Prepared, Settings};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod keys;
mod messages;
mod orders;
mod serve;
mod sim;
mod support;

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
    /// The local Alipay simulator: OpenAPI endpoint, control API and signed gateway messages.
    Sim(SimArgs),
    /// Run the whole lifecycle in one process against the embedded simulator, on a temporary
    /// database and a manual clock, and print a timeline per order and a summary.
    Demo,
    /// Look at orders in the configured database.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Stored gateway messages.
    #[command(subcommand)]
    Messages(MessagesCommand),
    /// RSA key pairs for Alipay's console (needs no settings or database).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Exit 0 when `/healthz` answers 200 within 3 s, else 1 (for container health checks).
    Healthcheck {
        /// What to ask (`/healthz` is added to a URL without a path); default: the configured
        /// `server.listen` (0.0.0.0 and :: are asked on the loopback address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Support staff accounts for the web page.
    #[command(subcommand)]
    Users(users::UsersCommand),
}

/// A failure with its own exit code (INTERFACE.md): 2 bad settings or usage, 3 not found, 4
/// refused by the rules. Any other error exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_REFUSED: u8 = 4;

/// Bad settings or usage (exit 2).
pub fn usage(message: impl std::fmt::Display) -> anyhow::Error {
    Exit {
        code: EXIT_USAGE,
        message: message.to_string(),
    }
    .into()
}

/// What was asked for does not exist (exit 3).
pub fn not_found(message: impl std::fmt::Display) -> anyhow::Error {
    Exit {
        code: EXIT_NOT_FOUND,
        message: message.to_string(),
    }
    .into()
}

/// The rules refuse it (exit 4).
pub fn refused(message: impl std::fmt::Display) -> anyhow::Error {
    Exit {
        code: EXIT_REFUSED,
        message: message.to_string(),
    }
    .into()
}

/// Prints the error on one line and picks the exit code from the first `Exit` in its chain.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isv-lifecycle: {e:#}");
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Exit>())
                .map(|x| x.code)
                .unwrap_or(1);
            ExitCode::from(code)
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// A table of orders, newest first: id, status, cancel reason, mini program, ordered at.
    List {
        /// Only orders in this status (awaiting_payment, implementing, awaiting_confirmation,
        /// completed, cancelled).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One order as JSON, with deadlines, service and history.
    Show {
        /// The commodity_order_id.
        order: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Put a failed or quarantined message back in the apply queue (the running service applies
    /// it on its next poll).
    Replay {
        /// The message's app_id; `-` (or "") for order notifications, which carry none.
        app_id: String,
        notify_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// A fresh RSA-2048 app key pair: PKCS#8 and PKCS#1 PEM, bare base64 for SDKs and the console.
    Generate {
        /// Where to write the files (created when missing); existing files are never overwritten.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Prints a certificate's SN as Alipay computes it (`app_cert_sn`, `alipay_cert_sn`); with
    /// `--root`, the root bundle's SN (`alipay_root_cert_sn`). The last line is the SN alone.
    CertSn {
        /// The certificate file (PEM).
        file: PathBuf,
        /// The file is Alipay's root bundle.
        #[arg(long)]
        root: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Where the simulator listens (OpenAPI at /gateway.do, control API under /sim/).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
    /// Our application gateway, where the simulator sends signed messages.
    #[arg(long, default_value = "http://127.0.0.1:8080/alipay/gateway")]
    pub gateway_url: String,
    /// The "Alipay platform" private key the simulator signs with (required outside sandbox mode).
    #[arg(long)]
    pub platform_key: Option<PathBuf>,
    /// Multiplies Alipay's message retry schedule (4m, 10m, 10m, 1h, 2h, 6h, 15h).
    #[arg(long, default_value_t = 1.0)]
    pub retry_scale: f64,
    /// Share of OpenAPI calls answered HTTP 502.
    #[arg(long, default_value_t = 0.0)]
    pub fault_5xx: f64,
    /// Share of OpenAPI calls answered only after --fault-timeout-ms.
    #[arg(long, default_value_t = 0.0)]
    pub fault_timeout: f64,
    /// Share of OpenAPI calls answered 40005 (call limit).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate_limited: f64,
    /// Share of OpenAPI calls answered with a signature that does not verify.
    #[arg(long, default_value_t = 0.0)]
    pub fault_bad_signature: f64,
    #[arg(long, default_value_t = 20_000)]
    pub fault_timeout_ms: u64,
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    #[command(subcommand)]
    pub command: Option<SimCommand>,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Drive a running simulator through its control API and print its JSON answer.
    Trigger {
        /// The running simulator's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        sim_url: String,
        #[command(subcommand)]
        event: TriggerEvent,
    },
}

#[derive(Debug, Subcommand)]
pub enum TriggerEvent {
    /// A new order (with the merchant's authorization); sends both messages.
    Order {
        #[arg(long)]
        price: Option<String>,
        #[arg(long)]
        mini_app_id: Option<String>,
        #[arg(long)]
        commodity_order_id: Option<String>,
        /// Do not authorize (no authorization message).
        #[arg(long)]
        no_authorize: bool,
        /// The ISV app the order is placed with (one of `alipay.apps.*`); default: the primary.
        #[arg(long)]
        app_id: Option<String>,
    },
    /// The merchant pays ORDER.
    Pay { order: String },
    /// The merchant is refunded for ORDER.
    Refund { order: String },
    /// The merchant confirms ORDER.
    Confirm { order: String },
    /// The merchant cancels the authorization of APP; sends appauth.cancelled.
    CancelAuthorization { app: String },
    /// The next audit of APP's mini program is rejected.
    RejectAudit {
        app: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Moves the simulator's clock forward.
    Advance { seconds: i64 },
    /// Prints the simulator's state (no tokens).
    State,
    /// Prints the OpenAPI calls log (no tokens).
    Calls,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Driving a running simulator needs no settings.
    if let Command::Sim(SimArgs {
        command: Some(SimCommand::Trigger { sim_url, event }),
        ..
    }) = &cli.command
    {
        return report(sim::sim_trigger(sim_url, event));
    }
    // The probe reads the listener from the settings at most; it never opens the database.
    if let Command::Healthcheck { url } = &cli.command {
        return report(serve::healthcheck(&cli.config, url.as_deref()));
    }
    // Generating keys needs no settings or database.
    if let Command::Keys(KeysCommand::CertSn { file, root }) = &cli.command {
        return match keys::cert_sn(file, *root) {
            Ok(sn) => {
                println!("{sn}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("isv-lifecycle: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Keys(KeysCommand::Generate { out }) = &cli.command {
        return report(keys::keys_generate(out));
    }
    // The demo makes its own settings (temporary database and keys) from the file.
    if let Command::Demo = &cli.command {
        // Alerts are part of the story, but as log lines they would break up the timeline.
        crate::telemetry::init("text", "error");
        let result = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(crate::demo::run(&cli.config)));
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("isv-lifecycle demo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Support commands work on what a deployment already has: they never generate keys or
    // secrets, and never create or migrate a database.
    let creation = match &cli.command {
        Command::Serve | Command::Migrate | Command::Sim(_) => Creation::Allowed,
        Command::Reconcile { .. }
        | Command::Terminate { .. }
        | Command::Orders(_)
        | Command::Messages(_)
        | Command::Users(_) => Creation::Forbidden,
        Command::Demo | Command::Keys(_) | Command::Healthcheck { .. } => {
            unreachable!("handled before settings are prepared")
        }
    };
    let prepared = match Settings::load(&cli.config)
        .and_then(|s| Prepared::prepare(s, &cli.config, creation))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("isv-lifecycle: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&prepared.settings.log.format, &prepared.settings.log.level);
    let result = match cli.command {
        Command::Serve => serve::serve(prepared),
        Command::Migrate => serve::migrate(&prepared),
        Command::Reconcile { rate, concurrency } => support::reconcile(prepared, rate, concurrency),
        Command::Terminate {
            order,
            reason,
            actor,
        } => support::terminate(prepared, order, reason, actor),
        Command::Sim(args) => sim::sim(prepared, args),
        Command::Demo | Command::Keys(_) | Command::Healthcheck { .. } => {
            unreachable!("handled before settings are prepared")
        }
        Command::Orders(OrdersCommand::List { status, limit }) => {
            orders::orders_list(prepared, status, limit)
        }
        Command::Orders(OrdersCommand::Show { order }) => orders::orders_show(prepared, order),
        Command::Users(command) => users::run(prepared, command),
        Command::Messages(MessagesCommand::Replay { app_id, notify_id }) => {
            messages::messages_replay(prepared, app_id, notify_id)
        }
    };
    report(result)
}

/// Services against the configured database, without the HTTP server (support commands): the
/// database must exist and be migrated; nothing is created.
fn with_services<T>(
    prepared: &Prepared,
    f: impl AsyncFnOnce(crate::service::Services) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let pool = crate::store::connect_existing(
            &prepared.database,
            prepared.settings.database.pool_size,
        )
        .map_err(|e| match e {
            crate::store::ExistingDbError::Missing(problem) => usage(format!(
                "setting database.url (from {}): {problem}",
                crate::config::source_of("database.url", &prepared.config_file)
            )),
            other => anyhow::Error::from(other).context("database.url"),
        })?;
        let services = crate::startup::services(prepared, pool, Arc::new(SystemClock))?;
        f(services).await
    })
}
