//! One access-log line per request (target `isv_lifecycle::access`: method, path, status,
//! latency in seconds, request id), on both backends. Its own test binary: it installs the
//! process's log subscriber.

mod common;

use common::Db;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn settings(db: &common::TestDb) -> isv_lifecycle::config::Settings {
    use secrecy::SecretString;
    let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"));
    let mut s = isv_lifecycle::config::Settings::load(file).unwrap();
    s.app.data_dir = db._dir.path().to_path_buf();
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.database.url = db.url.clone();
    s.database.pool_size = 2;
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

async fn requests_are_logged(db: Db, capture: &Capture) {
    let db = common::test_db(db);
    let prepared = isv_lifecycle::config::Prepared::from_settings(
        settings(&db),
        std::path::Path::new("config/default.toml"),
    )
    .unwrap();
    let started = isv_lifecycle::startup::build(
        &prepared,
        Arc::new(isv_lifecycle::clock::ManualClock::new(chrono::Utc::now())),
    )
    .unwrap();
    let address = format!("http://127.0.0.1:{}", started.app.port());
    let handle = started.app.server_handle();
    tokio::spawn(started.app.run_until_stopped());
    let http = reqwest::Client::new();
    let id = format!("access-{}", common::random_hex(6));
    let response = http
        .get(format!("{address}/admin/api/orders/NOPE?secret=hidden"))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("x-request-id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    handle.stop(true).await;

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "isv_lifecycle::access" && l["fields"]["request_id"] == *id)
        .collect();
    assert_eq!(lines.len(), 1, "one access line for {id}:\n{text}");
    let fields = &lines[0]["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/admin/api/orders/NOPE", "no query string");
    assert_eq!(fields["status"], 404);
    let latency = fields["latency_seconds"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 5.0, "{latency}");
    assert!(!text.contains("hidden"), "the query string is never logged");
    assert!(!text.contains(common::ADMIN_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_one_access_line() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .json()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::INFO)
        .init();
    requests_are_logged(Db::Sqlite, &capture).await;
    if common::skip_postgres() {
        eprintln!("PostgreSQL skipped (ISV_TEST_SKIP_POSTGRES=1)");
    } else {
        requests_are_logged(Db::Postgres, &capture).await;
    }
}
