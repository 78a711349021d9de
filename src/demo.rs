//! `isv-lifecycle demo`: the whole lifecycle in one process, against the local Alipay simulator,
//! on one manual clock shared by both, over a temporary SQLite database. Two ISV apps (the
//! primary and `alipay.apps.second`, both with sandbox keys). Seven scenarios, each its own
//! merchant mini program: paid through build, audit, confirmation and completion (placed with the
//! second app, so every call for it is made as that app); unpaid and cancelled at 3 days; an
//! implementation timeout at 30 days; a refund; an authorization cancelled; a renewal (续订) that
//! is refunded while the service stays live; a re-order (再次订购) after a refund that reopens the
//! service. It prints a timeline per order and a summary table with each service's periods and
//! status, and fails when an order or its service does not end where Alipay's rules say it must.

use crate::clock::Clock as _;
use crate::config::{Prepared, Settings};
use crate::domain::{MiniAppId, OrderId};
use crate::service::Services;
use crate::sim::{NewOrder, RunningSim, SimConfig, SimFaults, Simulator};
use anyhow::Context as _;
use chrono::Duration;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One scenario's expected end.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: &'static str,
    pub commodity_order_id: String,
    pub mini_app_id: String,
    /// The ISV app the order was placed with, as the service recorded it.
    pub isv_app_id: Option<String>,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub service: Option<String>,
    pub build: Option<String>,
    pub timeline: Vec<String>,
    /// The service's periods, oldest first: `order state` each.
    pub periods: Vec<String>,
    pub expected: (&'static str, Option<&'static str>),
    /// The service's expected status (with its cause), when the scenario is about it.
    pub expected_service: Option<&'static str>,
}

impl Outcome {
    pub fn as_expected(&self) -> bool {
        self.status == self.expected.0
            && self.cancel_reason.as_deref() == self.expected.1
            && self
                .expected_service
                .is_none_or(|s| self.service.as_deref() == Some(s))
    }

    fn expecting_service(mut self, service: &'static str) -> Self {
        self.expected_service = Some(service);
        self
    }
}

/// The demo's second ISV app (`alipay.apps.second`).
pub const SECOND_APP_ID: &str = "2021000000000002";

pub struct Demo {
    pub services: Services,
    pub sim: RunningSim,
    data_dir: PathBuf,
    server: actix_web::dev::ServerHandle,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Demo {
    /// Starts the service and the simulator, wired to each other, in `data_dir` (created; keys
    /// generated there as in sandbox mode).
    pub async fn start(
        config_file: &Path,
        data_dir: PathBuf,
        faults: SimFaults,
    ) -> anyhow::Result<Demo> {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let (service_port, sim_port) = (free_port()?, free_port()?);
        let mut settings = Settings::load(config_file).map_err(|e| anyhow::anyhow!("{e}"))?;
        settings.app.environment = crate::config::Environment::Local;
        settings.app.data_dir = data_dir.clone();
        settings.server.listen = format!("127.0.0.1:{service_port}");
        settings.database.url = format!("sqlite://{}", data_dir.join("demo.db").display());
        settings.alipay.app_private_key_file = String::new();
        settings.alipay.alipay_public_key_file = String::new();
        settings.alipay.gateway_url = format!("http://127.0.0.1:{sim_port}/gateway.do");
        settings.alipay.timeout_seconds = 2;
        settings.alipay.retry_backoff_ms = 1;
        settings.alerts.webhook_url = String::new();
        settings.templates.default_template_id = "2021000000000009".into();
        settings.log.level = "warn".into();
        settings.alipay.apps.insert(
            "second".into(),
            crate::config::IsvAppSettings::new(SECOND_APP_ID),
        );
        let prepared =
            Prepared::from_settings(settings, config_file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let sandbox = prepared
            .sandbox
            .clone()
            .context("the demo runs in sandbox mode")?;
        let platform = crate::alipay::PrivateKey::parse(&std::fs::read_to_string(
            &sandbox.platform_private_key,
        )?)?;
        let mut sim_config = SimConfig::new(
            prepared.settings.alipay.app_id.clone(),
            prepared.app_key.public_key(),
            Arc::new(platform),
        );
        sim_config.other_apps = prepared
            .apps
            .iter()
            .map(|a| (a.app_id.clone(), a.app_key.public_key()))
            .collect();
        sim_config.listen = format!("127.0.0.1:{sim_port}").parse()?;
        sim_config.gateway_url = Some(format!("http://127.0.0.1:{service_port}/alipay/gateway"));
        // Alipay's redelivery schedule (minutes, hours) in milliseconds.
        sim_config.retry_scale = 0.0001;
        sim_config.faults = faults;
        sim_config.start = Some(
            chrono::DateTime::parse_from_rfc3339("2026-06-01T02:00:00Z")?
                .with_timezone(&chrono::Utc),
        );
        let sim = Simulator::start(sim_config).await?;
        let started = crate::startup::build(&prepared, Arc::new(sim.clock.clone()))?;
        let services = started.services.clone();
        let server = started.app.server_handle();
        tokio::spawn(started.app.run_until_stopped());
        Ok(Demo {
            services,
            sim,
            data_dir,
            server,
        })
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
        self.sim.stop().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// Runs the background work (apply, pipeline, deadlines, deliveries) until `done` holds,
    /// moving the shared clock a minute at a time so that retries come due.
    async fn settle(
        &self,
        what: &str,
        done: impl AsyncFn(&Services) -> bool,
    ) -> anyhow::Result<()> {
        for _ in 0..600 {
            self.sim
                .state
                .wait_for_deliveries(std::time::Duration::from_secs(5))
                .await;
            self.services
                .apply_due()
                .await
                .map_err(anyhow::Error::msg)?;
            self.services
                .run_pipeline(50)
                .await
                .map_err(anyhow::Error::msg)?;
            self.services
                .fire_due_deadlines(500)
                .await
                .map_err(anyhow::Error::msg)?;
            self.services
                .apply_due()
                .await
                .map_err(anyhow::Error::msg)?;
            if done(&self.services).await {
                return Ok(());
            }
            self.sim.state.advance(Duration::minutes(1));
        }
        anyhow::bail!("gave up waiting for {what}")
    }

    async fn order(&self, id: &str) -> Option<Value> {
        self.services
            .order(&OrderId::from(id))
            .await
            .ok()
            .flatten()
            .map(|o| serde_json::to_value(o).unwrap_or_default())
    }

    fn status_is(&self, id: &str, status: &str) -> impl AsyncFn(&Services) -> bool + use<> {
        let (id, status) = (OrderId::from(id), status.to_string());
        async move |s: &Services| {
            s.order(&id)
                .await
                .ok()
                .flatten()
                .is_some_and(|o| o.status == status)
        }
    }

    async fn place(&self, mini_app_id: &str, price: &str) -> anyhow::Result<String> {
        self.place_with(None, mini_app_id, price).await
    }

    /// `place`, with the ISV app the order is placed with (`None`: the primary app).
    async fn place_with(
        &self,
        app_id: Option<&str>,
        mini_app_id: &str,
        price: &str,
    ) -> anyhow::Result<String> {
        self.place_order(app_id, mini_app_id, price, true).await
    }

    /// Another order for a mini program the merchant already authorized (a renewal or a
    /// re-order): no new authorization.
    async fn place_again(&self, mini_app_id: &str, price: &str) -> anyhow::Result<String> {
        self.place_order(None, mini_app_id, price, false).await
    }

    async fn place_order(
        &self,
        app_id: Option<&str>,
        mini_app_id: &str,
        price: &str,
        authorize: bool,
    ) -> anyhow::Result<String> {
        let created = self
            .sim
            .state
            .create_order(NewOrder {
                commodity_order_id: None,
                mini_app_id: Some(mini_app_id.into()),
                price: Some(price.into()),
                authorize: Some(authorize),
                merchant_pid: None,
                item_code: Some("TS0001".into()),
                title: Some("餐饮小程序模板".into()),
                app_id: app_id.map(str::to_string),
                ..NewOrder::default()
            })
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let id = created["commodity_order_id"]
            .as_str()
            .context("the sim names the order")?
            .to_string();
        let placed = OrderId::from(id.as_str());
        self.settle("the order notification", async move |s: &Services| {
            s.order(&placed).await.ok().flatten().is_some()
        })
        .await?;
        Ok(id)
    }

    async fn pay(&self, id: &str) -> anyhow::Result<()> {
        self.sim
            .state
            .pay(id)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        // No push tells an ISV about payment: Alipay is asked (reconciliation).
        self.reconcile(id).await?;
        self.settle("payment", self.status_is(id, "implementing"))
            .await
    }

    /// Reconciles one order, asking again when Alipay's answer is a fault.
    async fn reconcile(&self, id: &str) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..20 {
            match self.services.reconcile_order(&OrderId::from(id)).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow::anyhow!("reconcile {id}")))
    }

    async fn outcome(
        &self,
        scenario: &'static str,
        id: &str,
        app: &str,
        expected: (&'static str, Option<&'static str>),
    ) -> Outcome {
        let o = self.order(id).await.unwrap_or_default();
        let text = |v: &Value| v.as_str().map(str::to_string);
        let timeline = o["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|e| {
                        let at = e["at"]
                            .as_str()
                            .unwrap_or("")
                            .replace('T', " ")
                            .trim_end_matches('Z')
                            .to_string();
                        let moved = match (e["from_status"].as_str(), e["to_status"].as_str()) {
                            (Some(f), Some(t)) if f == t => String::new(),
                            (f, Some(t)) => format!("{} → {t}  ", f.unwrap_or("new")),
                            _ => String::new(),
                        };
                        let reason = e["reason"]
                            .as_str()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default();
                        let inferred = if e["inferred"] == true {
                            " [inferred]"
                        } else {
                            ""
                        };
                        format!(
                            "{at}  {moved}{} by {}{reason}{inferred}",
                            e["cause"].as_str().unwrap_or(""),
                            e["actor"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let periods = self
            .services
            .service(&MiniAppId::from(app))
            .await
            .ok()
            .flatten()
            .map(|s| {
                s.periods
                    .iter()
                    .map(|p| format!("{} {}", p.commodity_order_id, p.state))
                    .collect()
            })
            .unwrap_or_default();
        Outcome {
            scenario,
            commodity_order_id: id.into(),
            mini_app_id: app.into(),
            isv_app_id: text(&o["isv_app_id"]),
            status: text(&o["status"]).unwrap_or_else(|| "missing".into()),
            cancel_reason: text(&o["cancel_reason"]),
            service: o["service"]["status"].as_str().map(
                |s| match o["service"]["termination_cause"].as_str() {
                    Some(c) => format!("{s} ({c})"),
                    None => s.to_string(),
                },
            ),
            build: o["build"]["app_version"]
                .as_str()
                .map(|v| format!("{v} {}", o["build"]["step"].as_str().unwrap_or(""))),
            timeline,
            periods,
            expected,
            expected_service: None,
        }
    }

    fn service_is(
        &self,
        mini_app_id: &str,
        status: &str,
    ) -> impl AsyncFn(&Services) -> bool + use<> {
        let (app, status) = (MiniAppId::from(mini_app_id), status.to_string());
        async move |s: &Services| {
            s.service(&app)
                .await
                .ok()
                .flatten()
                .is_some_and(|v| v.status == status)
        }
    }

    /// The five scenarios, one after the other on the shared clock.
    pub async fn run_scenarios(&self) -> anyhow::Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();

        // 1. Paid; our build passes audit; the merchant does not confirm; completed after 7 days.
        //    Placed with the second ISV app: queried, built and audited as that app.
        let app = "2021000000000101";
        let id = self.place_with(Some(SECOND_APP_ID), app, "99.00").await?;
        self.pay(&id).await?;
        self.settle(
            "audit and 待商家确认",
            self.status_is(&id, "awaiting_confirmation"),
        )
        .await?;
        self.sim.state.advance(Duration::days(7));
        self.settle("auto-confirmation", self.status_is(&id, "completed"))
            .await?;
        outcomes.push(
            self.outcome(
                "paid → built → confirmed after 7 days",
                &id,
                app,
                ("completed", None),
            )
            .await,
        );

        // 2. Never paid: cancelled after 3 days.
        let app = "2021000000000102";
        let id = self.place(app, "99.00").await?;
        self.sim.state.advance(Duration::days(3));
        self.settle("the payment deadline", self.status_is(&id, "cancelled"))
            .await?;
        outcomes.push(
            self.outcome(
                "unpaid → cancelled at 3 days",
                &id,
                app,
                ("cancelled", Some("unpaid_timeout")),
            )
            .await,
        );

        // 3. Paid, but the audit is rejected and nobody retries: cancelled and refunded at 30 days.
        let app = "2021000000000103";
        self.sim.state.reject_next_audit(app, "截图与实际功能不符");
        let id = self.place(app, "199.00").await?;
        self.pay(&id).await?;
        let waiting = OrderId::from(id.as_str());
        self.settle("the rejected audit", async move |s: &Services| {
            s.order(&waiting)
                .await
                .ok()
                .flatten()
                .and_then(|o| o.build)
                .is_some_and(|b| b.step == "rejected")
        })
        .await?;
        // Warnings at 20 and 27 days, then the deadline at 30.
        for (days, warnings) in [(20, 1), (7, 2)] {
            self.sim.state.advance(Duration::days(days));
            let watched = OrderId::from(id.as_str());
            self.settle("an implementation warning", async move |s: &Services| {
                s.order(&watched)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|o| o.history)
                    .is_some_and(|h| {
                        h.iter()
                            .filter(|e| e.cause == "implementation_warning")
                            .count()
                            >= warnings
                    })
            })
            .await?;
        }
        self.sim.state.advance(Duration::days(3));
        self.settle(
            "the implementation deadline",
            self.status_is(&id, "cancelled"),
        )
        .await?;
        outcomes.push(
            self.outcome(
                "audit rejected → cancelled at 30 days",
                &id,
                app,
                ("cancelled", Some("implementation_timeout")),
            )
            .await,
        );

        // 4. Paid, then the merchant asks for a refund during implementation.
        let app = "2021000000000104";
        let id = self.place(app, "99.00").await?;
        self.pay(&id).await?;
        self.sim
            .state
            .refund(&id)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        self.reconcile(&id).await?;
        self.settle("the refund", self.status_is(&id, "cancelled"))
            .await?;
        outcomes.push(
            self.outcome(
                "refund during implementation",
                &id,
                app,
                ("cancelled", Some("merchant_refund")),
            )
            .await,
        );

        // 5. A free order; the merchant cancels our authorization: the service ends.
        let app = "2021000000000105";
        let id = self.place(app, "0.00").await?;
        self.sim
            .state
            .cancel_authorization(app)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let cancelled = MiniAppId::from(app);
        self.settle(
            "the authorization's cancellation",
            async move |s: &Services| {
                s.authorization(&cancelled)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.status == "cancelled")
            },
        )
        .await?;
        outcomes.push(
            self.outcome("authorization cancelled", &id, app, ("implementing", None))
                .await,
        );

        // 6. A live service is renewed (续订), then the renewal is refunded: only the renewal's
        //    period ends; the service stays live on the first one, and its build is left alone.
        let app = "2021000000000106";
        let first = self.place(app, "99.00").await?;
        self.pay(&first).await?;
        self.settle("the first build online", self.service_is(app, "live"))
            .await?;
        self.sim.state.advance(Duration::days(2));
        let renewal = self.place_again(app, "99.00").await?;
        self.pay(&renewal).await?;
        self.sim
            .state
            .refund(&renewal)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        self.reconcile(&renewal).await?;
        self.settle(
            "the renewal's refund",
            self.status_is(&renewal, "cancelled"),
        )
        .await?;
        // Alipay dates the renewal from the end of the running period (the simulator does too).
        let renewed = self
            .services
            .service(&MiniAppId::from(app))
            .await
            .ok()
            .flatten();
        let dates: Vec<_> = renewed
            .iter()
            .flat_map(|s| s.periods.iter().map(|p| (p.starts_at, p.ends_at)))
            .collect();
        anyhow::ensure!(
            dates.len() == 2 && dates[0].1 == Some(dates[1].0),
            "the renewal does not extend the first period: {dates:?}"
        );
        outcomes.push(
            self.outcome(
                "renewal refunded, service stays live",
                &renewal,
                app,
                ("cancelled", Some("merchant_refund")),
            )
            .await
            .expecting_service("live"),
        );

        // 7. Refunded during the build (the service ends, the build stops), then ordered again
        //    (再次订购): the service reopens, a new build goes through audit, live again.
        let app = "2021000000000107";
        let first = self.place(app, "99.00").await?;
        self.pay(&first).await?;
        self.sim
            .state
            .refund(&first)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        self.reconcile(&first).await?;
        self.settle("the refund", self.service_is(app, "terminated"))
            .await?;
        self.sim.state.advance(Duration::days(1));
        let again = self.place_again(app, "99.00").await?;
        self.pay(&again).await?;
        self.settle("the new build online", self.service_is(app, "live"))
            .await?;
        self.settle(
            "audit and 待商家确认",
            self.status_is(&again, "awaiting_confirmation"),
        )
        .await?;
        outcomes.push(
            self.outcome(
                "refund, then re-order: live again",
                &again,
                app,
                ("awaiting_confirmation", None),
            )
            .await
            .expecting_service("live"),
        );
        Ok(outcomes)
    }
}

pub fn print(outcomes: &[Outcome], clock_end: chrono::DateTime<chrono::Utc>) {
    for o in outcomes {
        println!(
            "\n{} — order {} (mini program {})",
            o.scenario, o.commodity_order_id, o.mini_app_id
        );
        for line in &o.timeline {
            println!("  {line}");
        }
    }
    println!(
        "\n| scenario | order | ISV app | status | cancel reason | service | periods | last build | as expected |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.scenario,
            o.commodity_order_id,
            o.isv_app_id.as_deref().unwrap_or("-"),
            o.status,
            o.cancel_reason.as_deref().unwrap_or("-"),
            o.service.as_deref().unwrap_or("-"),
            if o.periods.is_empty() {
                "-".to_string()
            } else {
                o.periods.join(", ")
            },
            o.build.as_deref().unwrap_or("-"),
            if o.as_expected() { "yes" } else { "NO" }
        );
    }
    println!("\nsimulated time at the end: {clock_end} (all times UTC)");
}

/// The command: start, run, print, stop; an error when any order did not end as expected.
pub async fn run(config_file: &Path) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("isv-lifecycle-demo-{}", std::process::id()));
    let demo = Demo::start(config_file, dir, SimFaults::default()).await?;
    let result = demo.run_scenarios().await;
    let end = demo.sim.clock.now();
    demo.stop().await;
    let outcomes = result?;
    print(&outcomes, end);
    let wrong: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.as_expected())
        .map(|o| o.scenario)
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("not as expected: {}", wrong.join(", "))
    }
}
