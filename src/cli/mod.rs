//! The command line: `serve`, `migrate`, the simulator and demo, and support commands (`orders`,
//! `messages replay`, `reconcile`, `terminate`, `keys generate`).

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
        return match sim_trigger(sim_url, event) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("isv-lifecycle: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Generating keys needs no settings or database.
    if let Command::Keys(KeysCommand::CertSn { file, root }) = &cli.command {
        return match cert_sn(file, *root) {
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
        return match keys_generate(out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("isv-lifecycle: {e:#}");
                ExitCode::FAILURE
            }
        };
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
        Command::Sim(args) => sim(prepared, args),
        Command::Demo => unreachable!("the demo runs before settings are prepared"),
        Command::Keys(_) => unreachable!("keys are generated before settings are prepared"),
        Command::Orders(OrdersCommand::List { status, limit }) => {
            orders_list(prepared, status, limit)
        }
        Command::Orders(OrdersCommand::Show { order }) => orders_show(prepared, order),
        Command::Messages(MessagesCommand::Replay { app_id, notify_id }) => {
            messages_replay(prepared, app_id, notify_id)
        }
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

fn orders_list(prepared: Prepared, status: Option<String>, limit: i64) -> anyhow::Result<()> {
    if let Some(s) = &status
        && crate::domain::OrderStatus::parse(s).is_none()
    {
        anyhow::bail!(
            "--status {s:?} is not an order status (awaiting_payment, implementing, awaiting_confirmation, completed, cancelled)"
        );
    }
    if !(1..=100_000).contains(&limit) {
        anyhow::bail!("--limit {limit} must be between 1 and 100000");
    }
    with_services(&prepared, async |services| {
        let orders = crate::service::blocking(move || services.orders(status.as_deref(), limit))
            .await?
            .map_err(anyhow::Error::from)?;
        let rows: Vec<[String; 5]> = orders
            .into_iter()
            .map(|o| {
                [
                    o.commodity_order_id,
                    o.status,
                    o.cancel_reason.unwrap_or_else(|| "-".into()),
                    o.mini_app_id.unwrap_or_else(|| "-".into()),
                    o.ordered_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "ORDER",
                    "STATUS",
                    "CANCEL REASON",
                    "MINI PROGRAM",
                    "ORDERED AT"
                ],
                &rows
            )
        );
        Ok(())
    })
}

/// A plain, left-aligned text table, columns two spaces apart, with a header row.
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 < N {
                text.push_str(cell);
                text.push_str(&" ".repeat(w - cell.chars().count() + 2));
            } else {
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn orders_show(prepared: Prepared, order: String) -> anyhow::Result<()> {
    with_services(&prepared, async |services| {
        let lookup = order.clone();
        let view = crate::service::blocking(move || services.order(&lookup))
            .await?
            .map_err(anyhow::Error::from)?;
        match view {
            Some(view) => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                Ok(())
            }
            None => anyhow::bail!("no order {order:?}"),
        }
    })
}

fn messages_replay(prepared: Prepared, app_id: String, notify_id: String) -> anyhow::Result<()> {
    use crate::service::support::SupportError;
    let app_id = if app_id == "-" { String::new() } else { app_id };
    with_services(&prepared, async |services| {
        let (a, n) = (app_id.clone(), notify_id.clone());
        let replayed = crate::service::blocking(move || services.replay_message(&a, &n)).await?;
        match replayed {
            Ok(view) => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                eprintln!(
                    "{notify_id}: back in the apply queue; the running service applies it on its next poll"
                );
                Ok(())
            }
            Err(SupportError::NotFound) => {
                anyhow::bail!("no message with app_id {app_id:?} and notify_id {notify_id:?}")
            }
            Err(e) => Err(anyhow::Error::from(e)),
        }
    })
}

/// Writes a fresh key pair into `out`; refuses to overwrite anything.
fn cert_sn(file: &std::path::Path, root: bool) -> anyhow::Result<String> {
    use crate::alipay::cert;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let sn = if root {
        cert::root_sn(&cert::parse_bundle(&bytes, true)?)?
    } else {
        cert::parse_leaf(&bytes)?[0].sn()?
    };
    Ok(sn)
}

fn keys_generate(out: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let names = [
        ("app_private_key.pem", true),
        ("app_private_key_pkcs1.pem", true),
        ("app_private_key.b64", true),
        ("app_public_key.pem", false),
        ("app_public_key.b64", false),
    ];
    let existing: Vec<String> = names
        .iter()
        .map(|(name, _)| out.join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "refusing to overwrite existing key files: {} (choose another --out or move them away)",
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
    let pair = crate::alipay::keys::generate().map_err(anyhow::Error::msg)?;
    let with_newline = |s: &str| {
        if s.ends_with('\n') {
            s.to_string()
        } else {
            format!("{s}\n")
        }
    };
    let contents = [
        with_newline(&pair.private_pkcs8_pem),
        with_newline(&pair.private_pkcs1_pem),
        with_newline(&pair.private_pkcs8_base64),
        with_newline(&pair.public_spki_pem),
        with_newline(&pair.public_base64),
    ];
    let mut written = Vec::new();
    for ((name, private), content) in names.iter().zip(&contents) {
        let path = out.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if *private { 0o600 } else { 0o644 })
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(content.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push((path, *private));
    }
    println!(
        "App public key (paste into the console's 应用公钥 field):\n{}\n",
        pair.public_base64
    );
    for (path, private) in written {
        let note = if private { " (private, mode 0600)" } else { "" };
        println!("  {}{note}", path.display());
    }
    println!(
        "\nConfigure alipay.app_private_key_file with {}. Keep the private key files secret.",
        out.join("app_private_key.pem").display()
    );
    Ok(())
}

fn sim(prepared: Prepared, args: SimArgs) -> anyhow::Result<()> {
    use crate::alipay::PrivateKey;
    announce_sandbox(&prepared);
    let key_file = match (&args.platform_key, &prepared.sandbox) {
        (Some(file), _) => file.clone(),
        (None, Some(sandbox)) => sandbox.platform_private_key.clone(),
        (None, None) => anyhow::bail!(
            "--platform-key FILE is required: Alipay keys are configured, so there is no sandbox platform key"
        ),
    };
    let text = std::fs::read_to_string(&key_file)
        .with_context(|| format!("--platform-key {}", key_file.display()))?;
    let platform_key = PrivateKey::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--platform-key {}", key_file.display()))?;
    if !platform_key.public_key().same_key_as(&prepared.alipay_key) {
        tracing::warn!(
            "the simulator's platform key does not match alipay.alipay_public_key: the service will refuse its messages and answers"
        );
    }
    let mut config = crate::sim::SimConfig::new(
        prepared.settings.alipay.app_id.clone(),
        prepared.app_key.public_key(),
        Arc::new(platform_key),
    );
    config.listen = args.listen;
    config.gateway_url = Some(args.gateway_url.clone());
    config.retry_scale = args.retry_scale;
    config.faults = crate::sim::SimFaults {
        share_5xx: args.fault_5xx,
        share_timeout: args.fault_timeout,
        share_rate_limited: args.fault_rate_limited,
        share_bad_signature: args.fault_bad_signature,
        timeout_ms: args.fault_timeout_ms,
        seed: args.fault_seed,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
        let (running, server) = crate::sim::Simulator::bind(config)
            .with_context(|| format!("--listen {}", args.listen))?;
        eprintln!(
            "isv-lifecycle sim: OpenAPI at {} (point alipay.gateway_url here), control API at {}, messages to {}",
            running.url, running.control_url, args.gateway_url
        );
        tokio::select! {
            result = server => result.context("simulator server")?,
            _ = tokio::signal::ctrl_c() => running.stop().await,
        }
        Ok(())
    })
}

fn sim_trigger(sim_url: &str, event: &TriggerEvent) -> anyhow::Result<()> {
    use serde_json::json;
    let base = format!("{}/sim", sim_url.trim_end_matches('/'));
    let seg = |s: &str| {
        let mut out = String::new();
        crate::alipay::form::encode_component(s.as_bytes(), &mut out);
        out
    };
    let (get, path, body) = match event {
        TriggerEvent::Order {
            price,
            mini_app_id,
            commodity_order_id,
            no_authorize,
        } => (
            false,
            "/orders".to_string(),
            json!({"price": price, "mini_app_id": mini_app_id,
                "commodity_order_id": commodity_order_id, "authorize": !no_authorize}),
        ),
        TriggerEvent::Pay { order } => (false, format!("/orders/{}/pay", seg(order)), json!({})),
        TriggerEvent::Refund { order } => {
            (false, format!("/orders/{}/refund", seg(order)), json!({}))
        }
        TriggerEvent::Confirm { order } => {
            (false, format!("/orders/{}/confirm", seg(order)), json!({}))
        }
        TriggerEvent::CancelAuthorization { app } => (
            false,
            format!("/authorizations/{}/cancel", seg(app)),
            json!({}),
        ),
        TriggerEvent::RejectAudit { app, reason } => (
            false,
            format!("/audit/{}/reject", seg(app)),
            json!({"reason": reason}),
        ),
        TriggerEvent::Advance { seconds } => (
            false,
            "/clock/advance".to_string(),
            json!({"seconds": seconds}),
        ),
        TriggerEvent::State => (true, "/state".to_string(), json!(null)),
        TriggerEvent::Calls => (true, "/calls".to_string(), json!(null)),
    };
    let url = format!("{base}{path}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("HTTP client")?;
        let request = if get {
            client.get(&url)
        } else {
            client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the simulator at {sim_url}"))?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let shown = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text);
        println!("{shown}");
        if !status.is_success() {
            anyhow::bail!("the simulator answered HTTP {status}");
        }
        Ok(())
    })
}
