//! Wiring: from prepared settings to running services. `main` and the tests share it.

use crate::alipay::client::{AlipayClient, ClientSettings};
use crate::clock::SharedClock;
use crate::config::Prepared;
use crate::http::{AppState, Application};
use crate::metrics::Metrics;
use crate::seal::Sealer;
use crate::service::isv_apps::{IsvApp, IsvApps};
use crate::service::{Services, apply::ApplySettings};
use crate::store::{self, Backend};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Opens the database for `serve` and `migrate`, creating an SQLite file that is missing and
/// applying pending migrations. In the local environment `app.data_dir` itself is created; no
/// other directory is.
pub fn open_database(prepared: &Prepared) -> anyhow::Result<store::Pool> {
    if prepared.settings.app.environment == crate::config::Environment::Local {
        let dir = &prepared.settings.app.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("app.data_dir: cannot create {}", dir.display()))?;
    }
    let pool = store::connect_pool(&prepared.database, prepared.settings.database.pool_size)
        .context("database.url: cannot open the database")?;
    let applied = store::migrate(&pool).context("database migrations failed")?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(pool)
}

pub fn alipay_client(prepared: &Prepared, clock: SharedClock) -> anyhow::Result<AlipayClient> {
    app_client(
        prepared,
        &prepared.settings.alipay.app_id,
        prepared.app_key.clone(),
        prepared.alipay_key.clone(),
        prepared.aes_key.clone(),
        prepared.cert_mode.clone(),
        clock,
    )
}

/// The client of one app: the shared gateway, timeouts and retries, this app's id and keys.
fn app_client(
    prepared: &Prepared,
    app_id: &str,
    app_key: Arc<crate::alipay::PrivateKey>,
    alipay_key: Arc<crate::alipay::PublicKey>,
    aes_key: Option<Arc<crate::alipay::AesKey>>,
    cert_mode: Option<Arc<crate::alipay::cert_mode::CertMode>>,
    clock: SharedClock,
) -> anyhow::Result<AlipayClient> {
    let a = &prepared.settings.alipay;
    let mut settings = ClientSettings::new(a.gateway_url.clone(), app_id.to_string());
    settings.timeout = Duration::from_secs(a.timeout_seconds);
    settings.max_attempts = a.max_attempts;
    settings.backoff_base = Duration::from_millis(a.retry_backoff_ms);
    Ok(AlipayClient::new(settings, app_key, alipay_key, clock)
        .context("alipay.gateway_url")?
        .with_aes_key(aes_key)
        .with_cert_mode(cert_mode))
}

/// Every app we serve (`alipay.*` and `alipay.apps.*`), each with its metered client.
fn isv_apps(
    prepared: &Prepared,
    pool: &store::Pool,
    alerts: &crate::service::alerts::Alerter,
    metrics: &Arc<Metrics>,
    clock: SharedClock,
) -> anyhow::Result<IsvApps> {
    let metered = |client: AlipayClient| -> Arc<dyn crate::alipay::client::AlipayApi> {
        Arc::new(crate::service::metered::MeteredAlipay::new(
            Arc::new(client),
            metrics.clone(),
        ))
    };
    let with_cache = |mode: &Option<Arc<crate::alipay::cert_mode::CertMode>>| {
        if let Some(mode) = mode {
            mode.set_cache(Arc::new(crate::service::alipay_certs::DbCertCache {
                pool: pool.clone(),
                alerts: alerts.clone(),
                clock: clock.clone(),
            }));
        }
    };
    with_cache(&prepared.cert_mode);
    let mut apps = IsvApps::new(IsvApp {
        app_id: Arc::from(prepared.settings.alipay.app_id.as_str()),
        alipay_key: prepared.alipay_key.clone(),
        cert_mode: prepared.cert_mode.clone(),
        aes_key: prepared.aes_key.clone(),
        alipay: metered(alipay_client(prepared, clock.clone())?),
    });
    for app in &prepared.apps {
        with_cache(&app.cert_mode);
        let client = app_client(
            prepared,
            &app.app_id,
            app.app_key.clone(),
            app.alipay_key.clone(),
            app.aes_key.clone(),
            app.cert_mode.clone(),
            clock.clone(),
        )
        .with_context(|| format!("alipay.apps.{}", app.name))?;
        apps.others.insert(
            app.app_id.clone(),
            IsvApp {
                app_id: Arc::from(app.app_id.as_str()),
                alipay_key: app.alipay_key.clone(),
                cert_mode: app.cert_mode.clone(),
                aes_key: app.aes_key.clone(),
                alipay: metered(client),
            },
        );
    }
    Ok(apps)
}

pub fn services(
    prepared: &Prepared,
    pool: store::Pool,
    clock: SharedClock,
) -> anyhow::Result<Services> {
    let inbox = &prepared.settings.inbox;
    // SQLite has a single writer: more writer threads would only queue on its lock.
    let writers = if prepared.database.backend() == Backend::Sqlite {
        1
    } else {
        inbox.writers
    };
    let metrics = Arc::new(Metrics::default());
    let alerts = crate::service::alerts::Alerter::new(&prepared.settings.alerts.webhook_url)
        .context("alerts.webhook_url")?;
    let apps = isv_apps(prepared, &pool, &alerts, &metrics, clock.clone())?;
    Ok(Services {
        apps: Arc::new(apps),
        delivery_wakeup: Arc::new(Notify::new()),
        pipeline: Arc::new({
            let t = &prepared.settings.templates;
            crate::service::pipeline::PipelineSettings {
                items: t.items.clone(),
                default: (!t.default_template_id.trim().is_empty()).then(|| {
                    crate::service::pipeline::TemplateRef {
                        template_id: t.default_template_id.clone(),
                        template_version: t.default_template_version.clone(),
                    }
                }),
                auto_online: t.auto_online,
                poll_seconds: t.build_poll_seconds,
                max_attempts: prepared.settings.queues.build_max_attempts,
                audit_poll_seconds: t.audit_poll_seconds,
            }
        }),
        queues: Arc::new(prepared.settings.queues.clone()),
        lifecycle: Arc::new(crate::service::lifecycle::LifecycleSettings {
            rules: crate::domain::lifecycle::LifecycleRules {
                warning_days: prepared.settings.scheduler.warning_days.clone(),
                deadline_grace: chrono::Duration::seconds(
                    prepared.settings.scheduler.deadline_grace_seconds as i64,
                ),
                service_expiry_warning: chrono::Duration::days(i64::from(
                    prepared.settings.scheduler.service_expiry_warning_days,
                )),
                ..Default::default()
            },
            tick_seconds: prepared.settings.scheduler.tick_seconds,
            concurrency: prepared.settings.scheduler.concurrency,
            reconcile_cron: prepared.settings.scheduler.reconcile_cron.clone(),
            reconcile_rate: prepared.settings.scheduler.reconcile_rate_per_second,
        }),
        alerts,
        inbox: crate::service::ingest::start_inbox(pool.clone(), writers, inbox.batch_size),
        merchant_syncs: crate::service::merchant_sync::start_sync_writer(
            pool.clone(),
            writers,
            inbox.batch_size,
        ),
        pool,
        clock,
        sealer: Arc::new(Sealer::new(&prepared.encryption_key).context("security.encryption_key")?),
        app_id: Arc::from(prepared.settings.alipay.app_id.as_str()),
        metrics,
        apply_wakeup: Arc::new(Notify::new()),
        apply: ApplySettings {
            batch: inbox.apply_batch,
            max_attempts: inbox.max_apply_attempts,
        },
    })
}

pub struct Started {
    pub app: Application,
    pub services: Services,
    pub retention: crate::config::RetentionSettings,
    /// `scheduler.authorization_check_cron`.
    pub authorization_check_cron: String,
    /// `inbox.apply_workers`: inbox runners, each claiming its own leased batches.
    pub apply_workers: usize,
}

/// Opens and migrates the database, binds the listener and builds the HTTP server. The caller
/// runs it and the background jobs.
pub fn build(prepared: &Prepared, clock: SharedClock) -> anyhow::Result<Started> {
    let pool = open_database(prepared)?;
    let services = services(prepared, pool, clock)?;
    let listener = std::net::TcpListener::bind(prepared.listen)
        .with_context(|| format!("server.listen: cannot listen on {}", prepared.listen))?;
    let admin = prepared
        .admin_listen
        .map(|addr| {
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("server.admin_listen: cannot listen on {addr}"))
        })
        .transpose()?;
    let state = AppState {
        services: services.clone(),
        admin_token: prepared.admin_token.clone(),
        api_token: prepared.api_token.clone(),
        max_body_bytes: prepared.settings.server.max_body_bytes,
        body_timeout: Duration::from_millis(prepared.settings.server.body_timeout_ms),
        admin_addr: None,
        reject_log: crate::http::gateway_log_limiter(),
        sign_in_throttle: Default::default(),
    };
    let app = Application::build(state, listener, admin, prepared.settings.server.workers)?;
    Ok(Started {
        app,
        services,
        retention: prepared.settings.retention.clone(),
        // SQLite has one writer: more apply workers would only queue on its lock.
        apply_workers: match prepared.database.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => prepared.settings.inbox.apply_workers,
        },
        authorization_check_cron: prepared.settings.scheduler.authorization_check_cron.clone(),
    })
}

/// Runs the server and the background jobs (inbox apply, merchant-order delivery) until the
/// server stops.
pub async fn run(started: Started, poll: Duration) -> anyhow::Result<()> {
    let services = started.services.clone();
    let supervised = |name: &'static str, job: fn(Services, Duration) -> crate::jobs::JobFuture| {
        let (s, metrics) = (services.clone(), services.metrics.clone());
        tokio::spawn(crate::jobs::supervise(name, metrics, poll, move || {
            job(s.clone(), poll)
        }))
    };
    use crate::jobs::runner::run as run_queue;
    use crate::jobs::{apply_inbox::Inbox, deliver_merchant_orders::Deliveries, pipeline::Builds};
    // Each inbox runner claims its own leased batches, so several apply side by side without
    // taking a message twice.
    let mut jobs: Vec<_> = (0..started.apply_workers.max(1))
        .map(|_| {
            supervised("apply_inbox", |s, poll| {
                let wakeup = Some(s.apply_wakeup.clone());
                Box::pin(run_queue(Inbox(s), poll, wakeup))
            })
        })
        .collect();
    jobs.extend([
        supervised("deliver_merchant_orders", |s, poll| {
            let wakeup = Some(s.delivery_wakeup.clone());
            Box::pin(run_queue(Deliveries(s), poll, wakeup))
        }),
        supervised("pipeline", |s, poll| {
            Box::pin(run_queue(Builds(s), poll, None))
        }),
    ]);
    let lifecycle = services.lifecycle.clone();
    let scheduler = crate::jobs::deadlines::start(
        services.clone(),
        Duration::from_secs(lifecycle.tick_seconds),
        &lifecycle.reconcile_cron,
        lifecycle.reconcile_rate,
    )
    .await
    .context("scheduler.reconcile_cron")?;
    crate::jobs::retention::add(&scheduler, services.clone(), &started.retention)
        .await
        .context("retention.cron")?;
    crate::jobs::authorization_checks::add(
        &scheduler,
        services.clone(),
        &started.authorization_check_cron,
    )
    .await
    .context("scheduler.authorization_check_cron")?;
    // The first tick catches up at once with whatever fell due while we were down.
    let catch_up = tokio::spawn(async move { crate::jobs::deadlines::tick(&services).await });
    let result = started.app.run_until_stopped().await;
    catch_up.abort();
    for job in jobs {
        job.abort();
    }
    drop(scheduler);
    result.context("HTTP server failed")
}
