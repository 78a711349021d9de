//! The simulator (`isv-lifecycle sim`) driven in-process by the crate's own Alipay client, with
//! the official test vectors' keys.

use actix_web::{App, HttpResponse, HttpServer, web};
use isv_lifecycle::alipay::api::{self, BuildStatus};
use isv_lifecycle::alipay::client::{
    AlipayApi as _, AlipayClient, AlipayError, ClientSettings, FilePart,
};
use isv_lifecycle::alipay::message::{self, GatewayMessage};
use isv_lifecycle::alipay::{PrivateKey, PublicKey, notify};
use isv_lifecycle::sim::{RunningSim, SimConfig, SimFaults, Simulator};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const APP_ID: &str = "2021004100000001";

fn key_text(name: &str) -> String {
    let path = format!(
        "{}/../shared/vectors/keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn app_key() -> PrivateKey {
    PrivateKey::parse(&key_text("isv_app_private_pkcs8.pem")).unwrap()
}

fn platform_key() -> PrivateKey {
    PrivateKey::parse(&key_text("alipay_platform_private_pkcs8.pem")).unwrap()
}

fn platform_public() -> PublicKey {
    PublicKey::parse(&key_text("alipay_platform_public_spki.pem")).unwrap()
}

fn config() -> SimConfig {
    SimConfig::new(
        APP_ID,
        PublicKey::parse(&key_text("isv_app_public_spki.pem")).unwrap(),
        Arc::new(platform_key()),
    )
}

async fn start(faults: SimFaults, gateway_url: Option<String>) -> RunningSim {
    let mut config = config();
    config.faults = faults;
    config.gateway_url = gateway_url;
    config.retry_scale = 0.001;
    Simulator::start(config).await.unwrap()
}

fn client_with(sim: &RunningSim, key: PrivateKey) -> AlipayClient {
    let mut settings = ClientSettings::new(sim.url.clone(), APP_ID);
    settings.max_attempts = 1;
    settings.timeout = Duration::from_secs(5);
    AlipayClient::new(
        settings,
        Arc::new(key),
        Arc::new(platform_public()),
        Arc::new(sim.clock.clone()),
    )
    .unwrap()
}

fn client(sim: &RunningSim) -> AlipayClient {
    client_with(sim, app_key())
}

async fn control(sim: &RunningSim, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", sim.control_url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
    )
}

async fn control_get(sim: &RunningSim, path: &str) -> Value {
    let response = reqwest::get(format!("{}{path}", sim.control_url))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn query(
    client: &AlipayClient,
    id: &str,
) -> Result<(String, String, api::OrderQueryResponse), AlipayError> {
    let r = client
        .servicemarket_order_query(&api::OrderQueryRequest::new(id))
        .await?;
    let status = r.order_level_status().unwrap().as_str().to_string();
    let item = r.order_items[0]
        .order_status
        .as_ref()
        .unwrap()
        .as_str()
        .to_string();
    Ok((status, item, r))
}

async fn new_order(sim: &RunningSim, body: Value) -> String {
    let (status, order) = control(sim, "/orders", body).await;
    assert_eq!(status, 200, "{order}");
    order["commodity_order_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn order_query_follows_pay_refund_and_the_clock() {
    let sim = start(SimFaults::default(), None).await;
    let client = client(&sim);

    let a = new_order(
        &sim,
        json!({"mini_app_id": "2021004199990002", "price": "99.00"}),
    )
    .await;
    let (status, item, r) = query(&client, &a).await.unwrap();
    assert_eq!(
        (status.as_str(), item.as_str()),
        ("MERCHANT_ORDED", "TO_DO")
    );
    assert_eq!(r.total_size, Some(1));
    assert_eq!(
        r.order_items[0].mini_app_id.as_deref(),
        Some("2021004199990002")
    );

    assert_eq!(
        control(&sim, &format!("/orders/{a}/pay"), json!({}))
            .await
            .0,
        200
    );
    let (status, item, _) = query(&client, &a).await.unwrap();
    assert_eq!((status.as_str(), item.as_str()), ("MERCHANT_PAID", "DOING"));
    // Paying twice is refused and changes nothing.
    assert_eq!(
        control(&sim, &format!("/orders/{a}/pay"), json!({}))
            .await
            .0,
        409
    );

    assert_eq!(
        control(&sim, &format!("/orders/{a}/refund"), json!({}))
            .await
            .0,
        200
    );
    let (status, item, _) = query(&client, &a).await.unwrap();
    assert_eq!(
        (status.as_str(), item.as_str()),
        ("MERCHANT_CANCELLED", "MERCHANT_CANCELLED")
    );

    // Unpaid for 3 days on the sim clock: closed. Paid and implementing for 30 days: cancelled.
    let unpaid = new_order(&sim, json!({})).await;
    let implementing = new_order(&sim, json!({})).await;
    control(&sim, &format!("/orders/{implementing}/pay"), json!({})).await;
    let (_, advanced) = control(&sim, "/clock/advance", json!({"seconds": 3 * 86400 - 1})).await;
    assert!(advanced["now"].is_string());
    assert_eq!(query(&client, &unpaid).await.unwrap().1, "TO_DO");
    control(&sim, "/clock/advance", json!({"seconds": 1})).await;
    let (status, item, _) = query(&client, &unpaid).await.unwrap();
    assert_eq!(
        (status.as_str(), item.as_str()),
        ("CLOSED", "MERCHANT_CANCELLED")
    );
    assert_eq!(query(&client, &implementing).await.unwrap().1, "DOING");
    sim.state.advance(chrono::Duration::days(27));
    assert_eq!(
        query(&client, &implementing).await.unwrap().1,
        "MERCHANT_CANCELLED"
    );

    let err = query(&client, "NO_SUCH_ORDER").await.unwrap_err();
    assert_eq!(err.code(), Some("40004"));
    assert_eq!(err.sub_code(), Some("ORDER_NOT_EXIST"));

    let calls = control_get(&sim, "/calls").await;
    assert!(
        calls
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["signature_ok"] == true)
    );
    let state = control_get(&sim, "/state").await;
    assert_eq!(state["calls"][api::METHOD_ORDER_QUERY], 8);
    sim.stop().await;
}

/// A renewal (续订: another order for a mini program whose service runs) is dated from the end
/// of the running year; a re-order after a refund from its own payment.
#[tokio::test]
async fn a_renewal_is_dated_from_the_end_of_the_running_service() {
    let sim = start(SimFaults::default(), None).await;
    let client = client(&sim);
    let dates = |r: &api::OrderQueryResponse| {
        (
            r.order_items[0].service_effect_at().unwrap(),
            r.order_items[0].service_expire_at().unwrap(),
        )
    };
    let app = "2021004199990077";
    let first = new_order(&sim, json!({"mini_app_id": app, "price": "99.00"})).await;
    control(&sim, &format!("/orders/{first}/pay"), json!({})).await;
    let (first_start, first_end) = dates(&query(&client, &first).await.unwrap().2);
    assert_eq!(first_end - first_start, chrono::Duration::days(365));

    sim.state.advance(chrono::Duration::days(10));
    let renewal = new_order(
        &sim,
        json!({"mini_app_id": app, "price": "99.00", "authorize": false}),
    )
    .await;
    control(&sim, &format!("/orders/{renewal}/pay"), json!({})).await;
    let (start, end) = dates(&query(&client, &renewal).await.unwrap().2);
    assert_eq!(start, first_end);
    assert_eq!(end, first_end + chrono::Duration::days(365));

    // Both refunded: a re-order starts from its own payment.
    for id in [&first, &renewal] {
        control(&sim, &format!("/orders/{id}/refund"), json!({})).await;
    }
    sim.state.advance(chrono::Duration::days(1));
    let again = new_order(
        &sim,
        json!({"mini_app_id": app, "price": "99.00", "authorize": false}),
    )
    .await;
    control(&sim, &format!("/orders/{again}/pay"), json!({})).await;
    let (start, _) = dates(&query(&client, &again).await.unwrap().2);
    assert_eq!(start, first_start + chrono::Duration::days(11));
    sim.stop().await;
}

/// Issue 12's cases through the control API: an order-level status Alipay never published beside
/// items that tell the truth (their dates and mini program included), read as the lifecycle reads
/// them; and an order whose notice leaves out `consumer_miniAppId`.
#[tokio::test]
async fn unknown_order_statuses_item_dates_and_a_notice_without_its_mini_program() {
    let sim = start(SimFaults::default(), None).await;
    let client = client(&sim);
    let a = new_order(
        &sim,
        json!({"mini_app_id": "2021004199990055", "price": "99.00",
               "order_level_status": "SOMETHING_NEW", "notice_names_mini_app": false}),
    )
    .await;
    control(&sim, &format!("/orders/{a}/pay"), json!({})).await;
    let (status, item, r) = query(&client, &a).await.unwrap();
    assert_eq!((status.as_str(), item.as_str()), ("SOMETHING_NEW", "DOING"));
    let item = &r.order_items[0];
    assert_eq!(item.mini_app_id.as_deref(), Some("2021004199990055"));
    assert!(item.service_effect_at().is_some(), "{item:?}");
    let rules = isv_lifecycle::domain::lifecycle::LifecycleRules::default();
    assert_eq!(
        isv_lifecycle::domain::lifecycle::read_order_query(Some(&status), &["DOING"], &rules),
        isv_lifecycle::domain::lifecycle::QueryReading::Paid
    );
    let state = control_get(&sim, "/state").await;
    let order = state["orders"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            state["orders"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.values()),
        )
        .find(|o| o["commodity_order_id"] == a.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{state}"));
    assert_eq!(order["status"], "SOMETHING_NEW", "{order}");
    sim.stop().await;
}

#[tokio::test]
async fn a_request_signed_with_the_wrong_key_gets_40002() {
    let sim = start(SimFaults::default(), None).await;
    let id = new_order(&sim, json!({})).await;
    // Signed with a key that is not our app key (the platform's, here).
    let err = query(&client_with(&sim, platform_key()), &id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("40002"), "{err}");
    assert_eq!(err.sub_code(), Some("isv.invalid-signature"));
    let calls = sim.state.calls();
    assert_eq!(calls.len(), 1);
    assert!(!calls[0].signature_ok);
    // The right key works.
    assert!(query(&client(&sim), &id).await.is_ok());
    sim.stop().await;
}

/// Two ISV apps: each request is verified with the key of the app it names; an order placed with
/// the second app announces it in its messages' `app_id`, and its merchant's token works only
/// for that app.
#[tokio::test]
async fn a_second_app_calls_with_its_own_key_and_its_merchants_token() {
    const SECOND: &str = "2021004100000002";
    let second_key = isv_lifecycle::alipay::keys::generate().unwrap();
    let second_private = || PrivateKey::parse(&second_key.private_pkcs8_pem).unwrap();
    let mut config = config();
    config.other_apps = vec![(
        SECOND.into(),
        PublicKey::parse(&second_key.public_spki_pem).unwrap(),
    )];
    let sim = Simulator::start(config).await.unwrap();
    let second = |key: PrivateKey| {
        let mut settings = ClientSettings::new(sim.url.clone(), SECOND);
        settings.max_attempts = 1;
        AlipayClient::new(
            settings,
            Arc::new(key),
            Arc::new(platform_public()),
            Arc::new(sim.clock.clone()),
        )
        .unwrap()
    };
    let mini = "2021004199990007";
    let id = new_order(&sim, json!({"mini_app_id": mini, "app_id": SECOND})).await;
    let messages = sim.state.messages();
    assert!(!messages.is_empty());
    assert!(
        messages.iter().all(|m| m.app_id == SECOND),
        "the authorization and the order are announced as the second app"
    );
    assert!(query(&second(second_private()), &id).await.is_ok());
    // The second app's id signed with the primary app's key: refused.
    let err = query(&second(app_key()), &id).await.unwrap_err();
    assert_eq!(err.sub_code(), Some("isv.invalid-signature"), "{err}");

    // The merchant authorized the second app: its token works for that app only.
    let token = SecretString::from(sim.state.app_auth_token(mini).unwrap());
    let upload = api::VersionUploadRequest {
        app_version: "0.0.1".into(),
        template_id: "2021004100000099".into(),
        ..Default::default()
    };
    let err = client(&sim)
        .mini_version_upload(&token, &upload)
        .await
        .unwrap_err();
    assert!(err.is_invalid_app_auth_token(), "{err}");
    assert!(
        second(second_private())
            .mini_version_upload(&token, &upload)
            .await
            .is_ok()
    );
    // An app the simulated ISV does not have cannot place orders.
    let (status, refused) = control(&sim, "/orders", json!({"app_id": "2021004100000009"})).await;
    assert_eq!(status, 400, "{refused}");
    sim.stop().await;
}

#[tokio::test]
async fn upload_build_audit_online_and_token_exchange() {
    let sim = start(SimFaults::default(), None).await;
    let client = client(&sim);
    let mini = "2021004199990002";
    let order = new_order(&sim, json!({"mini_app_id": mini})).await;
    control(&sim, &format!("/orders/{order}/pay"), json!({})).await;
    let token = SecretString::from(sim.state.app_auth_token(mini).unwrap());

    // token.app: a code from the control API exchanges to the current token; refresh rotates it.
    let (_, code) = control(&sim, &format!("/authorizations/{mini}/code"), json!({})).await;
    let code = SecretString::from(code["app_auth_code"].as_str().unwrap().to_string());
    let r = client
        .auth_token_app(&api::TokenAppRequest::authorization_code(code.clone()))
        .await
        .unwrap();
    assert_eq!(
        r.token.app_auth_token.as_ref().unwrap().expose_secret(),
        token.expose_secret()
    );
    assert_eq!(r.token.auth_app_id.as_deref(), Some(mini));
    let again = client
        .auth_token_app(&api::TokenAppRequest::authorization_code(code))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("40002"), "a code is single-use");

    let upload = api::VersionUploadRequest {
        app_version: "0.0.1".into(),
        template_id: "2021004100000099".into(),
        ext: Some(r#"{"extEnable":true}"#.into()),
        ..Default::default()
    };
    let bogus = SecretString::from("202406BBnot-a-token");
    let err = client
        .mini_version_upload(&bogus, &upload)
        .await
        .unwrap_err();
    assert!(err.is_invalid_app_auth_token(), "{err}");
    assert_eq!(err.sub_code(), Some("aop.invalid-app-auth-token"));

    let r = client.mini_version_upload(&token, &upload).await.unwrap();
    assert!(r.build_status.unwrap().is_in_progress());
    let build = api::BuildQueryRequest {
        app_version: "0.0.1".into(),
        bundle_id: None,
    };
    let audit = api::AuditApplyRequest {
        app_version: "0.0.1".into(),
        version_desc: Some("模板实例化版本 a=b&c=d ".repeat(3)),
        files: vec![FilePart {
            name: "app_logo".into(),
            filename: "logo.png".into(),
            bytes: vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0, 1, 2],
            mime: "image/png".into(),
        }],
        ..Default::default()
    };
    // Not built yet: the audit is refused.
    assert_eq!(
        client
            .mini_version_audit_apply(&token, &audit)
            .await
            .unwrap_err()
            .code(),
        Some("40004")
    );
    let first = client
        .mini_version_build_query(&token, &build)
        .await
        .unwrap();
    assert!(first.build_status.unwrap().is_in_progress());
    let second = client
        .mini_version_build_query(&token, &build)
        .await
        .unwrap();
    assert_eq!(second.build_status, Some(BuildStatus::Success));

    client
        .mini_version_audit_apply(&token, &audit)
        .await
        .unwrap();
    assert_eq!(
        sim.state.order_status(&order),
        Some(("MERCHANT_PAID", "TO_CONFIRM"))
    );
    let messages = sim.state.messages();
    assert_eq!(messages.last().unwrap().kind, message::METHOD_AUDIT_PASSED);
    // No gateway URL configured: recorded, not sent.
    assert!(["pending", "unsent"].contains(&messages.last().unwrap().delivery.as_str()));
    client
        .mini_version_online(
            &token,
            &api::VersionOnlineRequest {
                app_version: "0.0.1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // A rejected audit: the order stays where it is, the version cannot go online.
    let second_order = new_order(&sim, json!({"mini_app_id": "2021004199990003"})).await;
    control(&sim, &format!("/orders/{second_order}/pay"), json!({})).await;
    let token2 = SecretString::from(sim.state.app_auth_token("2021004199990003").unwrap());
    let (status, _) = control(
        &sim,
        "/audit/2021004199990003/reject",
        json!({"reason": "名称不符"}),
    )
    .await;
    assert_eq!(status, 200);
    client.mini_version_upload(&token2, &upload).await.unwrap();
    client
        .mini_version_build_query(&token2, &build)
        .await
        .unwrap();
    client
        .mini_version_audit_apply(&token2, &audit)
        .await
        .unwrap();
    assert_eq!(
        sim.state.messages().last().unwrap().kind,
        message::METHOD_AUDIT_REJECTED
    );
    assert_eq!(
        sim.state.order_status(&second_order),
        Some(("MERCHANT_PAID", "DOING"))
    );
    let err = client
        .mini_version_online(
            &token2,
            &api::VersionOnlineRequest {
                app_version: "0.0.1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("40004"));

    let state = sim.state.snapshot();
    let versions = state["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(
        versions
            .iter()
            .any(|v| v["online"] == true && v["audit"] == "passed")
    );
    assert!(
        versions
            .iter()
            .any(|v| v["audit"] == "rejected" && v["audit_reason"] == "名称不符")
    );

    // Confirmation: the merchant confirms, or 7 days do.
    assert_eq!(
        control(&sim, &format!("/orders/{order}/confirm"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        sim.state.order_status(&order),
        Some(("MERCHANT_PAID", "CONFIRMED"))
    );
    sim.stop().await;
}

/// Issue 12's wire facts in the sim: `version.list.query` (our versions and ones seeded as
/// already on Alipay), `version.detail.query` through audit and release, lost audit messages,
/// and `auth.token.app.query` before and after an authorization ends with its message lost.
#[tokio::test]
async fn version_list_detail_lost_audit_messages_and_token_query() {
    let sim = start(SimFaults::default(), None).await;
    let client = client(&sim);
    let mini = "2021004199990002";
    let order = new_order(&sim, json!({"mini_app_id": mini})).await;
    control(&sim, &format!("/orders/{order}/pay"), json!({})).await;
    let token = SecretString::from(sim.state.app_auth_token(mini).unwrap());

    let empty = client
        .mini_version_list_query(&token, &api::VersionListRequest::default())
        .await
        .unwrap();
    assert!(empty.app_versions.is_empty());
    let (status, _) = control(
        &sim,
        &format!("/mini-apps/{mini}/versions"),
        json!({"app_versions": ["1.2.9", "1.2.10"]}),
    )
    .await;
    assert_eq!(status, 200);
    let list = client
        .mini_version_list_query(&token, &api::VersionListRequest::default())
        .await
        .unwrap();
    let next = list.highest().0.unwrap().next().to_string();
    assert_eq!(next, "1.2.11");

    // Audit messages lost from now on: the audit is decided, nothing is sent.
    let (status, _) = control(&sim, &format!("/audit/{mini}/lose-messages"), json!({})).await;
    assert_eq!(status, 200);
    let upload = api::VersionUploadRequest {
        app_version: next.clone(),
        template_id: "2021004100000099".into(),
        ..Default::default()
    };
    client.mini_version_upload(&token, &upload).await.unwrap();
    let detail = api::VersionDetailRequest {
        app_version: next.clone(),
        ..Default::default()
    };
    let d = client
        .mini_version_detail_query(&token, &detail)
        .await
        .unwrap();
    assert_eq!(d.status, Some(api::VersionStatus::Init));
    let build = api::BuildQueryRequest {
        app_version: next.clone(),
        bundle_id: None,
    };
    for _ in 0..2 {
        client
            .mini_version_build_query(&token, &build)
            .await
            .unwrap();
    }
    let sent = sim.state.messages().len();
    client
        .mini_version_audit_apply(
            &token,
            &api::AuditApplyRequest {
                app_version: next.clone(),
                version_desc: Some("模板实例化版本，用于测试审核消息丢失的情形。".repeat(2)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        sim.state.messages().len(),
        sent,
        "the audit message is lost"
    );
    let d = client
        .mini_version_detail_query(&token, &detail)
        .await
        .unwrap();
    assert_eq!(d.status, Some(api::VersionStatus::WaitRelease));
    assert_eq!(d.app_version.as_deref(), Some(next.as_str()));
    client
        .mini_version_online(
            &token,
            &api::VersionOnlineRequest {
                app_version: next.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let d = client
        .mini_version_detail_query(&token, &detail)
        .await
        .unwrap();
    assert_eq!(d.status, Some(api::VersionStatus::Release));

    // A rejected audit reads as AUDIT_REJECT with its reason.
    control(
        &sim,
        &format!("/audit/{mini}/reject"),
        json!({"reason": "名称不符"}),
    )
    .await;
    let upload = api::VersionUploadRequest {
        app_version: "1.2.12".into(),
        ..upload
    };
    client.mini_version_upload(&token, &upload).await.unwrap();
    let build = api::BuildQueryRequest {
        app_version: "1.2.12".into(),
        bundle_id: None,
    };
    for _ in 0..2 {
        client
            .mini_version_build_query(&token, &build)
            .await
            .unwrap();
    }
    client
        .mini_version_audit_apply(
            &token,
            &api::AuditApplyRequest {
                app_version: "1.2.12".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let d = client
        .mini_version_detail_query(
            &token,
            &api::VersionDetailRequest {
                app_version: "1.2.12".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(d.status, Some(api::VersionStatus::AuditReject));
    assert_eq!(d.reject_reason.as_deref(), Some("名称不符"));

    // The token: valid, then invalid once the authorization ends with its message lost.
    let ask = api::TokenQueryRequest {
        app_auth_token: token.clone(),
    };
    let r = client.auth_token_app_query(&ask).await.unwrap();
    assert_eq!(r.status, Some(api::TokenStatus::Valid));
    assert_eq!(r.auth_app_id.as_deref(), Some(mini));
    let sent = sim.state.messages().len();
    let (status, _) = control(
        &sim,
        &format!("/authorizations/{mini}/invalidate"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        sim.state.messages().len(),
        sent,
        "no appauth.cancelled is sent"
    );
    let r = client.auth_token_app_query(&ask).await.unwrap();
    assert_eq!(r.status, Some(api::TokenStatus::Invalid));
    let never = api::TokenQueryRequest {
        app_auth_token: SecretString::from("202406BBnever-issued"),
    };
    assert!(client.auth_token_app_query(&never).await.is_err());
    sim.stop().await;
}

#[tokio::test]
async fn merchant_order_sync_needs_a_valid_token_and_no_route_shows_one() {
    let sim = start(SimFaults::default(), None).await;
    let client = client(&sim);
    let mini = "2021004199990002";
    new_order(&sim, json!({"mini_app_id": mini})).await;
    let token = sim.state.app_auth_token(mini).unwrap();
    let biz = json!({"out_biz_no": "OB1", "order_type": "SERVICE_ORDER", "order_status": "CREATE"});

    let err = client
        .merchant_order_sync(&SecretString::from("nope"), &biz)
        .await
        .unwrap_err();
    assert!(err.is_invalid_app_auth_token(), "{err}");

    let r = client
        .merchant_order_sync(&SecretString::from(token.clone()), &biz)
        .await
        .unwrap();
    assert!(r.record_id.is_some());
    let order_id = r.order_id.clone().unwrap();
    // The same out_biz_no is the same Alipay order.
    let again = client
        .merchant_order_sync(&SecretString::from(token.clone()), &biz)
        .await
        .unwrap();
    assert_eq!(again.order_id.as_deref(), Some(order_id.as_str()));
    assert_ne!(again.record_id, r.record_id);

    // After the merchant cancels the authorization, the token is refused.
    let (status, auth) = control(&sim, &format!("/authorizations/{mini}/cancel"), json!({})).await;
    assert_eq!((status, auth["status"].as_str()), (200, Some("cancelled")));
    let err = client
        .merchant_order_sync(&SecretString::from(token.clone()), &biz)
        .await
        .unwrap_err();
    assert!(err.is_invalid_app_auth_token(), "{err}");

    let state = control_get(&sim, "/state").await;
    let calls = control_get(&sim, "/calls").await;
    assert_eq!(state["merchant_order_syncs"].as_array().unwrap().len(), 2);
    assert_eq!(state["calls"][api::METHOD_MERCHANT_ORDER_SYNC], 4);
    assert!(
        calls
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["token_present"] == true)
    );
    for text in [state.to_string(), calls.to_string()] {
        assert!(!text.contains(&token), "a token leaked: {text}");
    }
    let kinds: Vec<String> = sim.state.messages().into_iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            message::KIND_AUTH,
            message::KIND_ORDER,
            message::METHOD_AUTH_CANCELLED
        ]
    );
    sim.stop().await;
}

/// The parts of the state a call could change.
fn world(sim: &RunningSim) -> Value {
    let mut s = sim.state.snapshot();
    let o = s.as_object_mut().unwrap();
    o.remove("calls");
    o.remove("now");
    s
}

#[tokio::test]
async fn faulted_calls_change_nothing() {
    let faults = SimFaults {
        share_5xx: 1.0,
        ..Default::default()
    };
    let sim = start(faults, None).await;
    let client = client(&sim);
    let mini = "2021004199990002";
    let order = new_order(&sim, json!({"mini_app_id": mini})).await;
    control(&sim, &format!("/orders/{order}/pay"), json!({})).await;
    let token = SecretString::from(sim.state.app_auth_token(mini).unwrap());
    // Let the (unsendable) messages settle so that only the calls below could change anything.
    sim.state.wait_for_deliveries(Duration::from_secs(5)).await;
    let before = world(&sim);

    let upload = api::VersionUploadRequest {
        app_version: "0.0.1".into(),
        template_id: "T".into(),
        ..Default::default()
    };
    let errors = vec![
        query(&client, &order).await.unwrap_err(),
        client
            .mini_version_upload(&token, &upload)
            .await
            .unwrap_err(),
        client
            .merchant_order_sync(&token, &json!({"out_biz_no": "OB1"}))
            .await
            .unwrap_err(),
        client
            .auth_token_app(&api::TokenAppRequest::refresh(SecretString::from("RR")))
            .await
            .unwrap_err(),
    ];
    for e in &errors {
        assert_eq!(*e, AlipayError::Http { status: 502 });
    }
    assert_eq!(world(&sim), before, "a faulted call changed the state");
    let calls = sim.state.calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().all(|c| c.outcome == "fault_5xx"));
    sim.stop().await;
}

#[tokio::test]
async fn rate_limit_timeout_and_bad_signature_faults() {
    let sim = start(
        SimFaults {
            share_rate_limited: 1.0,
            ..Default::default()
        },
        None,
    )
    .await;
    let id = new_order(&sim, json!({})).await;
    let err = query(&client(&sim), &id).await.unwrap_err();
    assert_eq!(err.code(), Some("40005"));
    sim.stop().await;

    let sim = start(
        SimFaults {
            share_bad_signature: 1.0,
            ..Default::default()
        },
        None,
    )
    .await;
    let id = new_order(&sim, json!({})).await;
    let err = query(&client(&sim), &id).await.unwrap_err();
    assert!(matches!(err, AlipayError::Response(_)), "{err}");
    sim.stop().await;

    let sim = start(
        SimFaults {
            share_timeout: 1.0,
            timeout_ms: 1500,
            ..Default::default()
        },
        None,
    )
    .await;
    let id = new_order(&sim, json!({})).await;
    let mut settings = ClientSettings::new(sim.url.clone(), APP_ID);
    settings.max_attempts = 1;
    settings.timeout = Duration::from_millis(300);
    let impatient = AlipayClient::new(
        settings,
        Arc::new(app_key()),
        Arc::new(platform_public()),
        Arc::new(sim.clock.clone()),
    )
    .unwrap();
    let err = query(&impatient, &id).await.unwrap_err();
    assert!(matches!(err, AlipayError::Transport(_)), "{err}");
    // A patient client gets a 20000 (the call was not carried out): retryable.
    let err = query(&client(&sim), &id).await.unwrap_err();
    assert_eq!(err.code(), Some("20000"));
    assert!(err.is_retryable());
    sim.stop().await;
}

#[derive(Default)]
struct Receiver {
    attempts: Mutex<BTreeMap<String, u32>>,
    bodies: Mutex<Vec<Vec<u8>>>,
}

/// Answers `fail` to the first two deliveries of each message, then `success`.
async fn receive(body: web::Bytes, receiver: web::Data<Receiver>) -> HttpResponse {
    let pairs = isv_lifecycle::alipay::form::decode(&body).unwrap();
    let id = String::from_utf8(pairs.get("notify_id").unwrap().to_vec()).unwrap();
    let n = {
        let mut attempts = receiver.attempts.lock().unwrap();
        let n = attempts.entry(id).or_default();
        *n += 1;
        *n
    };
    if n <= 2 {
        return HttpResponse::Ok().body("fail");
    }
    receiver.bodies.lock().unwrap().push(body.to_vec());
    HttpResponse::Ok().body("success")
}

#[tokio::test]
async fn messages_are_signed_and_retried_until_success() {
    let receiver = web::Data::new(Receiver::default());
    let data = receiver.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/alipay/gateway", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let sim = start(
        SimFaults::default(),
        Some(format!("http://127.0.0.1:{port}/alipay/gateway")),
    )
    .await;
    let mini = "2021004199990002";
    let (_, order) = control(
        &sim,
        "/orders",
        json!({"mini_app_id": mini, "price": "199.00"}),
    )
    .await;
    control(&sim, &format!("/authorizations/{mini}/cancel"), json!({})).await;
    assert!(sim.state.wait_for_deliveries(Duration::from_secs(20)).await);

    let messages = sim.state.messages();
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|m| m.attempts == 3 && m.delivery == "delivered")
    );
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    let platform = platform_public();
    let mut ids = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    for body in &bodies {
        let verified = notify::verify(body, &platform).unwrap();
        assert_eq!(verified.get("app_id"), Some(APP_ID));
        ids.insert(verified.get("notify_id").unwrap().to_string());
        match message::parse(&verified.params).unwrap() {
            GatewayMessage::Order(o) => {
                assert_eq!(
                    Some(o.commodity_order_id.as_str()),
                    order["commodity_order_id"].as_str()
                );
                assert_eq!(o.mini_app_id.as_deref(), Some(mini));
                assert_eq!(o.total_price.as_deref(), Some("199.00"));
                assert_eq!(verified.get("version"), Some("1.0"));
                seen.push("order");
            }
            GatewayMessage::Authorization(a) => {
                assert_eq!(a.auth_app_id, mini);
                assert!(a.auth_time_ms > 0);
                seen.push("auth");
            }
            GatewayMessage::AuthorizationCancelled { auth_app_id, .. } => {
                assert_eq!(auth_app_id, mini);
                seen.push("cancelled");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["auth", "cancelled", "order"]);
    assert_eq!(ids.len(), 3, "notify_ids are unique");
    sim.stop().await;
    handle.stop(false).await;
}

#[tokio::test]
async fn cli_trigger_drives_a_running_sim() {
    let sim = start(SimFaults::default(), None).await;
    let base = sim.control_url.trim_end_matches("/sim").to_string();
    let run = move |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_isv-lifecycle"))
            .args(["sim", "trigger", "--sim-url", &base])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let order = tokio::task::spawn_blocking(move || {
        let order = run(vec![
            "order".into(),
            "--price".into(),
            "10.00".into(),
            "--mini-app-id".into(),
            "2021004199990009".into(),
        ]);
        let id = order["commodity_order_id"].as_str().unwrap().to_string();
        let paid = run(vec!["pay".into(), id.clone()]);
        assert_eq!(paid["item_status"], "DOING");
        let advanced = run(vec!["advance".into(), "86400".into()]);
        assert!(advanced["now"].is_string());
        let state = run(vec!["state".into()]);
        assert_eq!(state["orders"].as_array().unwrap().len(), 1);
        id
    })
    .await
    .unwrap();
    assert_eq!(
        sim.state.order_status(&order),
        Some(("MERCHANT_PAID", "DOING"))
    );
    sim.stop().await;
}
