//! `sim` and `sim trigger`.

use super::{SimArgs, TriggerEvent};
use crate::config::Prepared;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

pub(super) fn sim(prepared: Prepared, args: SimArgs) -> anyhow::Result<()> {
    use crate::alipay::PrivateKey;
    super::serve::announce_sandbox(&prepared);
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
    config.other_apps = prepared
        .apps
        .iter()
        .map(|a| (a.app_id.clone(), a.app_key.public_key()))
        .collect();
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

pub(super) fn sim_trigger(sim_url: &str, event: &TriggerEvent) -> anyhow::Result<()> {
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
            app_id,
        } => (
            false,
            "/orders".to_string(),
            json!({"price": price, "mini_app_id": mini_app_id,
                "commodity_order_id": commodity_order_id, "authorize": !no_authorize,
                "app_id": app_id}),
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
