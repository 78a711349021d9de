use crate::common::fake_alipay::FakeAlipay;
use crate::common::{self, Db, TestDb};
use chrono::{DateTime, Utc};
use isv_lifecycle::clock::ManualClock;
use isv_lifecycle::config::{Prepared, Settings};
use isv_lifecycle::service::Services;
use secrecy::SecretString;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

pub struct TestApp {
    pub address: String,
    /// The admin listener (`server.admin_listen`), when the test set one.
    pub admin_address: Option<String>,
    pub services: Services,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub db: TestDb,
    pub server: actix_web::dev::ServerHandle,
    /// The local Alipay OpenAPI the service calls.
    pub alipay: FakeAlipay,
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-06-10T05:30:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

pub fn settings(database_url: &str, data_dir: &Path) -> Settings {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let mut s = Settings::load(&file).unwrap();
    s.app.data_dir = data_dir.to_path_buf();
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.database.url = database_url.into();
    s.database.pool_size = 4;
    s.alipay.app_id = common::APP_ID.into();
    s.alipay.app_private_key_file = common::vector_key_path("isv_app_private_pkcs8.pem")
        .display()
        .to_string();
    s.alipay.alipay_public_key_file = common::vector_key_path("alipay_platform_public_spki.pem")
        .display()
        .to_string();
    s.security.encryption_key = SecretString::from(common::ENCRYPTION_KEY);
    s.admin.token = SecretString::from(common::ADMIN_TOKEN);
    s.api.token = SecretString::from(common::API_TOKEN);
    s
}

impl TestApp {
    /// A server on a free port over a fresh database, with a manual clock and no background
    /// worker: tests apply messages with `run_pending_jobs`.
    pub async fn spawn(db: Db) -> TestApp {
        Self::spawn_with(db, |_| {}).await
    }

    /// `spawn`, with the settings adjusted first.
    pub async fn spawn_with(db: Db, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        if std::env::var("TEST_LOG").is_ok() {
            isv_lifecycle::telemetry::init("text", "debug");
        }
        let db = common::test_db(db);
        let alipay = FakeAlipay::start().await;
        let mut settings = settings(&db.url, db._dir.path());
        settings.alipay.gateway_url = alipay.url.clone();
        settings.alipay.retry_backoff_ms = 1;
        settings.alerts.webhook_url = alipay.alerts_url();
        adjust(&mut settings);
        let prepared = Prepared::from_settings(settings, Path::new("config/default.toml")).unwrap();
        let clock = ManualClock::new(start_time());
        let started = isv_lifecycle::startup::build(&prepared, Arc::new(clock.clone())).unwrap();
        let address = format!("http://127.0.0.1:{}", started.app.port());
        let admin_address = started
            .app
            .admin_port()
            .map(|p| format!("http://127.0.0.1:{p}"));
        let server = started.app.server_handle();
        let services = started.services.clone();
        tokio::spawn(started.app.run_until_stopped());
        TestApp {
            address,
            admin_address,
            services,
            clock,
            http: reqwest::Client::new(),
            db,
            server,
            alipay,
        }
    }

    pub async fn post_notify(&self, body: impl Into<String>) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}/alipay/gateway", self.address))
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body.into())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// One JSON request with a bearer token; the body of a non-JSON answer comes back as a string.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, common::ADMIN_TOKEN, None)
            .await
    }

    pub async fn admin_post(&self, path: &str, body: &str) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, common::ADMIN_TOKEN, Some(body))
            .await
    }

    pub async fn api_get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, common::API_TOKEN, None)
            .await
    }

    pub async fn api_post(&self, path: &str, body: &str) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, common::API_TOKEN, Some(body))
            .await
    }

    pub async fn admin_get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.address))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Applies everything due now, as the worker would.
    pub async fn run_pending_jobs(&self) -> usize {
        let mut total = 0;
        loop {
            let pass = self.services.apply_due().await.unwrap();
            total += pass.seen;
            if pass.seen == 0 {
                return total;
            }
        }
    }

    /// The merchant's authorization of [`common::TINY_APP`] (vector N035), acknowledged; applied
    /// with the next `run_pending_jobs`.
    pub async fn grant_merchant_authorization(&self) {
        let grant = common::vectors("notifications.jsonl")
            .into_iter()
            .find(|v| v["id"] == "N035")
            .unwrap();
        assert_eq!(
            self.post_notify(grant["body"].as_str().unwrap()).await.1,
            "success"
        );
    }

    pub fn message_states(&self) -> Vec<(String, String, String)> {
        let mut conn = self.services.pool.get().unwrap();
        isv_lifecycle::store::messages::identities(&mut conn).unwrap()
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
        self.alipay.stop().await;
    }

    pub fn clock_now_ms(&self) -> i64 {
        use isv_lifecycle::clock::Clock as _;
        self.clock.now().timestamp_millis()
    }

    /// One scheduler tick at the current (manual) time, as the deadline job would run it.
    pub async fn tick(&self) -> isv_lifecycle::service::lifecycle::TickReport {
        let mut total = isv_lifecycle::service::lifecycle::TickReport::default();
        loop {
            let report = self.services.fire_due_deadlines(500).await.unwrap();
            total.claimed += report.claimed;
            total.transitions += report.transitions;
            total.errors += report.errors;
            if report.claimed == 0 {
                return total;
            }
        }
    }

    /// Delivers every due merchant-order sync, as the delivery job would.
    pub async fn deliver(&self) -> usize {
        let mut total = 0;
        loop {
            let pass = self.services.deliver_merchant_orders(100).await.unwrap();
            total += pass.orders;
            if pass.orders == 0 || pass.delivered + pass.failed + pass.retried == 0 {
                return total;
            }
        }
    }
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = TestApp::spawn(Db::Sqlite).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if crate::common::skip_postgres() {
                    eprintln!("PostgreSQL skipped (ISV_TEST_SKIP_POSTGRES=1)");
                    return;
                }
                let app = TestApp::spawn(Db::Postgres).await;
                ($body)(app).await;
            }
        }
    };
}
