//! Shared by the test binaries: vectors, keys, databases for both backends, signed messages.
#![allow(dead_code)]

pub mod fake_alipay;

use isv_lifecycle::alipay::{PrivateKey, PublicKey, notify};
use serde_json::Value;
use std::path::PathBuf;

pub const APP_ID: &str = "2021004100000001";
pub const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const API_TOKEN: &str = "test-api-token-0123456789";
/// Tokens that appear in the vectors; none may ever be stored or shown in clear.
pub const VECTOR_SECRETS: &[&str] = &[
    "202406BBd4f3a7c9e2b84a5f9c1e6d7a8b9c0X51",
    "202406BB8e1f2a3b4c5d6e7f8091a2b3c4d5eX51",
];

pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

pub fn vector_key_path(name: &str) -> PathBuf {
    shared_dir().join("vectors/keys").join(name)
}

pub fn platform_private_key() -> PrivateKey {
    PrivateKey::parse(
        &std::fs::read_to_string(vector_key_path("alipay_platform_private_pkcs8.pem")).unwrap(),
    )
    .unwrap()
}

pub fn platform_public_key() -> PublicKey {
    PublicKey::parse(
        &std::fs::read_to_string(vector_key_path("alipay_platform_public_spki.pem")).unwrap(),
    )
    .unwrap()
}

pub fn vectors(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(shared_dir().join("vectors").join(file)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Which databases the suite runs on. PostgreSQL is required unless ISV_TEST_SKIP_POSTGRES=1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty database: a temp SQLite file, or a new schema on the test PostgreSQL server.
pub struct TestDb {
    pub url: String,
    pub sqlite_path: Option<PathBuf>,
    pub _dir: tempfile::TempDir,
    pub pg_schema: Option<String>,
}

pub fn postgres_base_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn skip_postgres() -> bool {
    std::env::var("ISV_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

pub fn test_db(db: Db) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    match db {
        Db::Sqlite => {
            let path = dir.path().join("test.db");
            TestDb {
                url: format!("sqlite://{}", path.display()),
                sqlite_path: Some(path),
                _dir: dir,
                pg_schema: None,
            }
        }
        Db::Postgres => {
            use diesel::Connection as _;
            use diesel::connection::SimpleConnection as _;
            let base = postgres_base_url();
            let schema = format!("t_{}", random_hex(8));
            let mut conn = diesel::PgConnection::establish(&base)
                .unwrap_or_else(|e| panic!("PostgreSQL at {base} is required for the suite (ISV_TEST_SKIP_POSTGRES=1 skips it): {e}"));
            conn.batch_execute(&format!("CREATE SCHEMA {schema}"))
                .unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
            TestDb {
                url,
                sqlite_path: None,
                _dir: dir,
                pg_schema: Some(schema),
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = &self.pg_schema {
            use diesel::Connection as _;
            use diesel::connection::SimpleConnection as _;
            if let Ok(mut conn) = diesel::PgConnection::establish(&postgres_base_url()) {
                let _ = conn.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
            }
        }
    }
}

pub fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// An authorization notice (`alipay.open.auth.appauth.notify`) to ISV app `app_id` with this
/// `biz_content`, signed by the platform key.
pub fn authorization_notification(
    app_id: &str,
    notify_id: &str,
    utc_timestamp_ms: i64,
    biz: &serde_json::Value,
) -> String {
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id.to_string()),
        ("utc_timestamp", utc_timestamp_ms.to_string()),
        ("msg_method", "alipay.open.auth.appauth.notify".into()),
        ("notify_type", "open_app_auth_notify".into()),
        ("app_id", app_id.into()),
        ("version", "1.1".into()),
        ("charset", "utf-8".into()),
        ("sign_type", "RSA2".into()),
        ("biz_content", biz.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    notify::sign_message(&params, &platform_private_key())
}

/// A V2 message (`msg_method`) to ISV app `app_id` with this `biz_content`, signed by the
/// platform key: an audit result, an authorization cancellation.
pub fn platform_message(
    key: &PrivateKey,
    method: &str,
    notify_id: &str,
    utc_timestamp_ms: i64,
    biz: &str,
) -> String {
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id),
        ("msg_method", method),
        ("app_id", APP_ID),
        ("version", "1.1"),
        ("charset", "UTF-8"),
        ("sign_type", "RSA2"),
        ("utc_timestamp", &utc_timestamp_ms.to_string()),
        ("biz_content", biz),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    notify::sign_message(&params, key)
}

/// A signed order notification as Alipay's platform sends it (V1 content).
pub fn order_notification(
    key: &PrivateKey,
    commodity_order_id: &str,
    notify_id: &str,
    price: &str,
) -> String {
    order_notification_for(
        key,
        APP_ID,
        commodity_order_id,
        notify_id,
        price,
        "2021004199990002",
    )
}

/// `order_notification` addressed to ISV app `app_id`, for mini program `mini_app_id`.
pub fn order_notification_for(
    key: &PrivateKey,
    app_id: &str,
    commodity_order_id: &str,
    notify_id: &str,
    price: &str,
    mini_app_id: &str,
) -> String {
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id),
        ("notify_type", "servicemarket_order_notify"),
        ("app_id", app_id),
        ("notify_time", "2024-06-10 13:01:00"),
        ("sign_type", "RSA2"),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("commodity_order_id", commodity_order_id),
        ("order_time", "2024-06-10 13:01:00"),
        ("merchant_pid", "2088102177846880"),
        ("total_price", price),
        ("title", "小程序模板服务"),
        ("consumer_miniAppId", mini_app_id),
        ("item_code", "TS0001"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    notify::sign_message(&params, key)
}

/// The real binary, `serve`, configured through `ISV__*` variables as an operator would: the
/// vectors' keys (our key as PKCS#1 PEM, Alipay's as the console's bare base64), a database, a
/// port. The caller adds what differs and spawns it.
pub fn serve_command(
    db_url: &str,
    data_dir: &std::path::Path,
    port: u16,
    log_level: &str,
) -> tokio::process::Command {
    command(&["serve"], db_url, data_dir, port, log_level)
}

/// Any command of the binary, configured like `serve_command`.
pub fn command(
    args: &[&str],
    db_url: &str,
    data_dir: &std::path::Path,
    port: u16,
    log_level: &str,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_isv-lifecycle"));
    cmd.args(args)
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"),
        ])
        .env("ISV__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ISV__DATABASE__URL", db_url)
        .env("ISV__APP__DATA_DIR", data_dir)
        .env("ISV__ALIPAY__APP_ID", APP_ID)
        .env(
            "ISV__ALIPAY__APP_PRIVATE_KEY_FILE",
            vector_key_path("isv_app_private_pkcs1.pem"),
        )
        .env(
            "ISV__ALIPAY__ALIPAY_PUBLIC_KEY_FILE",
            vector_key_path("alipay_platform_public_spki.b64"),
        )
        .env("ISV__SECURITY__ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("ISV__ADMIN__TOKEN", ADMIN_TOKEN)
        .env("ISV__API__TOKEN", API_TOKEN)
        .env("ISV__LOG__LEVEL", log_level)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until the server at `base` answers `/healthz`.
pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "server at {base} did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Writes `orders` open orders (`O1`, `O2`, ...) awaiting payment, each with a pending payment
/// deadline, the first due at `first_due` and the next ones `step_seconds` apart: the fixture of
/// the scheduler's tests and benchmarks, written in one statement per table.
pub fn fill_orders_with_deadlines(
    conn: &mut isv_lifecycle::store::AnyConnection,
    orders: usize,
    first_due: &str,
    step_seconds: u32,
) {
    use diesel::connection::SimpleConnection as _;
    use isv_lifecycle::store::AnyConnection;
    let (series, due) = match conn {
        AnyConnection::Postgresql(_) => (
            format!("SELECT i FROM generate_series(1, {orders}) AS i"),
            format!("(TIMESTAMP '{first_due}' + (i - 1) * INTERVAL '{step_seconds} seconds')"),
        ),
        AnyConnection::Sqlite(_) => (
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {orders}) SELECT i FROM n"
            ),
            format!(
                "strftime('%Y-%m-%d %H:%M:%S', '{first_due}', '+' || ((i - 1) * {step_seconds}) || ' seconds')"
            ),
        ),
    };
    conn.batch_execute(&format!(
        "INSERT INTO orders (commodity_order_id, status, merchant_pid, mini_app_id, total_price, ordered_at, status_since, created_at, updated_at) \
         SELECT 'O' || i, 'awaiting_payment', '2088000000000001', '2021000000000002', '9.90', \
                '2024-06-10 00:00:00', '2024-06-10 00:00:00', '2024-06-10 00:00:00', '2024-06-10 00:00:00' FROM ({series}) s; \
         INSERT INTO deadlines (commodity_order_id, kind, due_at, state, attempts) \
         SELECT 'O' || i, 'payment', {due}, 'pending', 0 FROM ({series}) s; \
         ANALYZE;"
    ))
    .unwrap();
}

/// A setting of a benchmark, from the environment.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The backends a benchmark runs on: `BENCH_BACKENDS` (default `sqlite,postgres`).
pub fn bench_backends() -> Vec<Db> {
    env_or("BENCH_BACKENDS", "sqlite,postgres".to_string())
        .split(',')
        .map(|name| match name.trim() {
            "sqlite" => Db::Sqlite,
            "postgres" => Db::Postgres,
            other => panic!("unknown backend {other}"),
        })
        .collect()
}

/// One counter from a server's `/metrics`.
pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// An `encrypt_type=AES` cancellation of `mini_app_id` addressed to `app_id`, encrypted with
/// `key_b64`.
pub fn aes_cancellation(app_id: &str, key_b64: &str, notify_id: &str, mini_app_id: &str) -> String {
    let key = isv_lifecycle::alipay::AesKey::parse(key_b64).unwrap();
    let biz = format!(r#"{{"auth_app_id":"{mini_app_id}","cancel_time":"2024-06-10 12:00:01"}}"#);
    let params: Vec<(String, String)> = [
        ("notify_id", notify_id.to_string()),
        ("msg_method", "alipay.open.auth.appauth.cancelled".into()),
        ("app_id", app_id.into()),
        ("version", "1.1".into()),
        ("charset", "UTF-8".into()),
        ("sign_type", "RSA2".into()),
        ("utc_timestamp", "1718000007919".into()),
        ("encrypt_type", "AES".into()),
        ("biz_content", key.encrypt_base64(biz.as_bytes())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    notify::sign_message(&params, &platform_private_key())
}

/// The merchant's mini program of the vectors' authorization (N035) and of the merchant-order
/// syncs the tests send.
pub const TINY_APP: &str = "2021004199990002";

/// A complete, valid `to_shop` merchant-order sync for [`TINY_APP`] in `status`, modified at
/// 2024-06-10 10:05:00.000 (Beijing time).
pub fn to_shop_sync(out_biz_no: &str, status: &str) -> Value {
    let business_info = serde_json::json!({
        "book_item": "洗剪吹", "start_time": "2024-06-11 10:00:00", "end_time": "2024-06-11 11:00:00",
        "shop_name": "测试店", "shop_phone": "0571-88888888", "address": "杭州市西湖区",
        "change_time": "2024-06-11 12:00:00",
    });
    serde_json::json!({
        "out_biz_no": out_biz_no,
        "buyer_open_id": "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5",
        "order_type": "service_order",
        "order_create_time": "2024-06-10 10:00:00",
        "order_modified_time": "2024-06-10 10:05:00.000",
        "amount": "30.00",
        "item_order_list": [{"item_name": "测试店 洗剪吹", "quantity": 1, "unit_price": "30.00",
            "ext_info": [{"ext_key": "image_material_id", "ext_value": "2024060100000001"}]}],
        "ext_info": [
            {"ext_key": "merchant_order_status", "ext_value": status},
            {"ext_key": "merchant_biz_type", "ext_value": "to_shop"},
            {"ext_key": "merchant_order_link_page", "ext_value": format!("/pages/order/detail?id={out_biz_no}")},
            {"ext_key": "tiny_app_id", "ext_value": TINY_APP},
            {"ext_key": "business_info", "ext_value": business_info.to_string()},
        ],
    })
}
