//! Public-key certificate mode (公钥证书模式) end to end against the local Alipay: requests carry
//! both SNs, answers are verified with the certificate they name, a rotated certificate is
//! downloaded, checked against the root, cached in the database and used; a certificate from
//! another root is refused, support is alerted, and nothing it signed is applied.

use crate::common::{self, Db};
use crate::helpers::TestApp;
use chrono::{DateTime, Utc};
use isv_lifecycle::alipay::PrivateKey;
use isv_lifecycle::alipay::cert::{self, Cert, build};
use std::collections::BTreeMap;

const ROOT_DN: &str = "CN=Test Alipay Root R1,OU=Certification Authority,O=Test Ant,C=CN";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn generated() -> PrivateKey {
    PrivateKey::parse(
        &isv_lifecycle::alipay::keys::generate()
            .unwrap()
            .private_pkcs8_pem,
    )
    .unwrap()
}

fn issue(subject: &str, issuer: &str, serial: &[u8], key: &PrivateKey, by: &PrivateKey) -> Cert {
    build::certificate(
        &build::CertSpec {
            subject,
            issuer,
            serial,
            not_before: at("2024-01-01T00:00:00Z"),
            not_after: at("2030-01-01T00:00:00Z"),
            public_key: &key.public_key(),
        },
        by,
    )
}

struct Pki {
    _dir: tempfile::TempDir,
    app_cert: String,
    alipay_cert: String,
    root: String,
    app_cert_sn: String,
    root_sn: String,
    alipay_sn: String,
    rotated_key: PrivateKey,
    rotated: Cert,
    evil_key: PrivateKey,
    evil: Cert,
    second_key: PrivateKey,
    second: Cert,
}

fn pki() -> Pki {
    let root_key = generated();
    let other_root_key = generated();
    let rotated_key = generated();
    let evil_key = generated();
    let app_key = PrivateKey::parse(
        &std::fs::read_to_string(common::vector_key_path("isv_app_private_pkcs8.pem")).unwrap(),
    )
    .unwrap();
    let platform = common::platform_private_key();
    let root = issue(ROOT_DN, ROOT_DN, &[1], &root_key, &root_key);
    let app = issue(
        &format!("CN=2088102177846880-{},O=Test ISV,C=CN", common::APP_ID),
        ROOT_DN,
        &[0x20, 0x24, 0x06, 0x01],
        &app_key,
        &root_key,
    );
    let alipay = issue(
        "CN=Alipay-2088000000000001,OU=Alipay,O=Test Alipay,C=CN",
        ROOT_DN,
        &[0x20, 0x24, 0x06, 0x02],
        &platform,
        &root_key,
    );
    let rotated = issue(
        "CN=Alipay-2088000000000001,OU=Alipay,O=Test Alipay,C=CN",
        ROOT_DN,
        &[0x20, 0x24, 0x06, 0x03],
        &rotated_key,
        &root_key,
    );
    let second_key = generated();
    let second = issue(
        "CN=Alipay-2088000000000001,OU=Alipay,O=Test Alipay,C=CN",
        ROOT_DN,
        &[0x20, 0x24, 0x06, 0x05],
        &second_key,
        &root_key,
    );
    // Same issuer name, signed by another root's key.
    let evil = issue(
        "CN=Alipay-2088000000000001,OU=Alipay,O=Test Alipay,C=CN",
        ROOT_DN,
        &[0x20, 0x24, 0x06, 0x04],
        &evil_key,
        &other_root_key,
    );
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    Pki {
        app_cert: write("appCertPublicKey.crt", &app.to_pem()),
        alipay_cert: write("alipayCertPublicKey_RSA2.crt", &alipay.to_pem()),
        root: write("alipayRootCert.crt", &root.to_pem()),
        app_cert_sn: app.sn().unwrap(),
        root_sn: cert::root_sn(std::slice::from_ref(&root)).unwrap(),
        alipay_sn: alipay.sn().unwrap(),
        rotated_key,
        rotated,
        evil_key,
        evil,
        second_key,
        second,
        _dir: dir,
    }
}

async fn place(app: &TestApp, id: &str, with_sn: Option<&str>) {
    let mut params: Vec<(String, String)> = [
        ("notify_id", format!("n-{id}")),
        ("notify_type", "servicemarket_order_notify".into()),
        ("app_id", common::APP_ID.into()),
        ("notify_time", "2024-06-10 13:01:00".into()),
        ("sign_type", "RSA2".into()),
        ("charset", "utf-8".into()),
        ("version", "1.0".into()),
        ("commodity_order_id", id.into()),
        ("order_time", "2024-06-10 13:01:00".into()),
        ("merchant_pid", "2088102177846880".into()),
        ("total_price", "9.90".into()),
        ("consumer_miniAppId", "2021004199990002".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(sn) = with_sn {
        params.push(("alipay_cert_sn".into(), sn.into()));
    }
    let body =
        isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key());
    assert_eq!(app.post_notify(body).await.1, "success", "{id}");
    app.run_pending_jobs().await;
}

async fn status(app: &TestApp, id: &str) -> String {
    let (_, o) = app.admin_get(&format!("/admin/api/orders/{id}")).await;
    o["status"].as_str().unwrap_or("?").to_string()
}

fn stored_certs(app: &TestApp) -> Vec<String> {
    let mut conn = app.services.pool.get().unwrap();
    isv_lifecycle::store::alipay_certs::list(&mut conn).unwrap()
}

async fn certificate_mode_end_to_end(db: Db) {
    let p = pki();
    let app = TestApp::spawn_with(db, |s| {
        s.alipay.alipay_public_key_file = String::new();
        s.alipay.app_cert_file = p.app_cert.clone();
        s.alipay.alipay_cert_file = p.alipay_cert.clone();
        s.alipay.alipay_root_cert_file = p.root.clone();
    })
    .await;
    let published = BTreeMap::from([
        (p.rotated.sn().unwrap(), p.rotated.to_pem()),
        (p.evil.sn().unwrap(), p.evil.to_pem()),
        (p.second.sn().unwrap(), p.second.to_pem()),
    ]);
    app.alipay.set_certs(
        common::platform_private_key(),
        &p.alipay_sn,
        published.clone(),
    );

    // Messages verify with the configured Alipay certificate, named or not.
    place(&app, "C1", None).await;
    place(&app, "C2", Some(&p.alipay_sn)).await;
    place(&app, "C3", None).await;
    // A message naming a certificate we do not hold is refused (Alipay retries later).
    let mut params = vec![
        ("notify_id".to_string(), "n-unknown-sn".to_string()),
        ("app_id".into(), common::APP_ID.into()),
        (
            "msg_method".into(),
            "alipay.open.mini.version.audit.passed".into(),
        ),
        (
            "alipay_cert_sn".into(),
            "0123456789abcdef0123456789abcdef".into(),
        ),
    ];
    params.push(("biz_content".into(), "{}".into()));
    let body =
        isv_lifecycle::alipay::notify::sign_message(&params, &common::platform_private_key());
    assert_eq!(app.post_notify(body).await.1, "fail");
    assert_eq!(app.services.metrics.rejected("unknown_cert_sn"), 1);

    // 1. Requests carry both SNs; the answer, signed under the configured certificate, is
    //    verified by its SN and applied.
    app.alipay.set_order("C1", "MERCHANT_PAID", &["DOING"]);
    let (code, o) = app.admin_post("/admin/api/orders/C1/reconcile", "").await;
    assert_eq!(
        (code, o["status"].as_str()),
        (200, Some("implementing")),
        "{o}"
    );
    let calls = app.alipay.calls();
    let query = calls
        .iter()
        .find(|c| c.method == "alipay.open.servicemarket.order.query")
        .unwrap();
    assert!(query.signature_ok, "signed over both SNs");
    assert_eq!(query.app_cert_sn.as_deref(), Some(p.app_cert_sn.as_str()));
    assert_eq!(
        query.alipay_root_cert_sn.as_deref(),
        Some(p.root_sn.as_str())
    );
    assert!(stored_certs(&app).is_empty(), "nothing downloaded yet");

    // 2. Alipay rotates its certificate: the unknown SN is downloaded, chains to the root, is
    //    cached in the database and verifies the answer, which is applied.
    let rotated_sn = p.rotated.sn().unwrap();
    app.alipay
        .set_certs(p.rotated_key, &rotated_sn, published.clone());
    app.alipay.set_order("C2", "MERCHANT_PAID", &["DOING"]);
    let (code, o) = app.admin_post("/admin/api/orders/C2/reconcile", "").await;
    assert_eq!(
        (code, o["status"].as_str()),
        (200, Some("implementing")),
        "{o}"
    );
    assert_eq!(stored_certs(&app), vec![rotated_sn.clone()]);
    // Downloads asked for a given SN.
    let downloads = |app: &TestApp, sn: &str| {
        app.alipay
            .calls()
            .iter()
            .filter(|c| {
                c.method == "alipay.open.app.alipaycert.download"
                    && c.biz_content.as_deref().is_some_and(|b| b.contains(sn))
            })
            .count()
    };
    assert_eq!(downloads(&app, &rotated_sn), 1);
    assert!(app.alipay.alerts().is_empty(), "{:?}", app.alipay.alerts());
    // Held now: the next answer under it needs no download.
    app.admin_post("/admin/api/orders/C2/reconcile", "").await;
    assert_eq!(downloads(&app, &rotated_sn), 1);

    // 2b. A gateway message names a certificate we do not hold: refused for now (Alipay
    //     retries), and the certificate is fetched meanwhile; the redelivery verifies.
    let second_sn = p.second.sn().unwrap();
    let params: Vec<(String, String)> = [
        ("notify_id", "n-second"),
        ("app_id", common::APP_ID),
        ("msg_method", "alipay.open.mini.version.audit.passed"),
        ("utc_timestamp", "1718000007919"),
        ("alipay_cert_sn", second_sn.as_str()),
        (
            "biz_content",
            r#"{"mini_app_id":"2021004199990002","mini_app_version":"0.0.1"}"#,
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let body = isv_lifecycle::alipay::notify::sign_message(&params, &p.second_key);
    assert_eq!(app.post_notify(body.clone()).await.1, "fail");
    // The download runs in the background: wait for its work, not for a time to pass.
    for _ in 0..500 {
        if stored_certs(&app).contains(&second_sn) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(stored_certs(&app).contains(&second_sn));
    assert_eq!(downloads(&app, &second_sn), 1);
    assert_eq!(app.post_notify(body).await.1, "success");

    // 3. A certificate from another root: refused, support alerted, nothing applied.
    let evil_sn = p.evil.sn().unwrap();
    app.alipay
        .set_certs(p.evil_key, &evil_sn, published.clone());
    app.alipay.set_order("C3", "MERCHANT_PAID", &["DOING"]);
    let (code, o) = app.admin_post("/admin/api/orders/C3/reconcile", "").await;
    assert_ne!(code, 200, "{o}");
    assert_eq!(status(&app, "C3").await, "awaiting_payment");
    assert!(!stored_certs(&app).contains(&evil_sn), "not cached");
    let alerts = app.alipay.alerts();
    assert!(
        alerts
            .iter()
            .any(|a| a["kind"] == "alipay_certificate_refused" && a["subject"] == evil_sn.as_str()),
        "{alerts:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_mode_end_to_end_sqlite() {
    certificate_mode_end_to_end(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_mode_end_to_end_postgres() {
    if common::skip_postgres() {
        return;
    }
    certificate_mode_end_to_end(Db::Postgres).await;
}

/// Start-up refuses an app certificate that does not carry our app key.
#[test]
fn app_certificate_must_match_the_app_key() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let mut s = crate::helpers::settings("sqlite://unused.db", dir.path());
    s.alipay.alipay_public_key_file = String::new();
    // Alipay's certificate where ours goes: its key is not our app key.
    s.alipay.app_cert_file = p.alipay_cert.clone();
    s.alipay.alipay_cert_file = p.alipay_cert.clone();
    s.alipay.alipay_root_cert_file = p.root.clone();
    let err = isv_lifecycle::config::Prepared::from_settings(s, std::path::Path::new("x.toml"))
        .err()
        .expect("refused");
    assert_eq!(err.name, "alipay.app_cert_file", "{err}");
    assert!(err.problem.contains("app private key"), "{err}");
}
