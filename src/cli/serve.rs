//! `serve` and `migrate`.

use crate::clock::SystemClock;
use crate::config::Prepared;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

pub(super) fn migrate(prepared: &Prepared) -> anyhow::Result<()> {
    let pool = crate::store::connect_pool(&prepared.database, 1)
        .map_err(anyhow::Error::msg)
        .context("database.url")?;
    let applied = crate::store::migrate(&pool).map_err(anyhow::Error::msg)?;
    tracing::info!(applied, "database migrations applied");
    println!("migrations applied: {applied}");
    Ok(())
}

pub(super) fn announce_sandbox(prepared: &Prepared) {
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

/// `healthcheck`: GET `/healthz` with a 3 s budget; 200 is healthy, anything else is not.
pub(super) fn healthcheck(config: &std::path::Path, url: Option<&str>) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => {
            let mut parsed = reqwest::Url::parse(url)
                .map_err(|e| super::usage(format!("--url {url:?}: {e}")))?;
            if parsed.path() == "/" || parsed.path().is_empty() {
                parsed.set_path("/healthz");
            }
            parsed
        }
        None => {
            let settings = crate::config::Settings::load(config).map_err(super::usage)?;
            let mut addr: std::net::SocketAddr = settings.server.listen.parse().map_err(|_| {
                super::usage(format!(
                    "setting server.listen (from {}): {:?} is not host:port",
                    crate::config::source_of("server.listen", config),
                    settings.server.listen
                ))
            })?;
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            reqwest::Url::parse(&format!("http://{addr}/healthz")).context("server.listen")?
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .context("HTTP client")?;
        let response = client
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("{url}: no answer within 3 s"))?;
        if response.status() != reqwest::StatusCode::OK {
            anyhow::bail!("{url}: HTTP {}", response.status());
        }
        println!("{url}: ok");
        Ok(())
    })
}

pub(super) fn serve(prepared: Prepared) -> anyhow::Result<()> {
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
