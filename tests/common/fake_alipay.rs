//! A local Alipay OpenAPI endpoint for tests: verifies our request signatures with our public key
//! (answering `40002 isv.invalid-signature` like Alipay when they are wrong), records every call,
//! and answers with bodies signed by the platform test key. Scripted replies inject faults.
#![allow(dead_code)]

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use isv_lifecycle::alipay::{PrivateKey, PublicKey, form, response, sign};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The `app_id` the request was sent as.
    pub app_id: Option<String>,
    pub app_auth_token: Option<String>,
    pub biz_content: Option<String>,
    pub signature_ok: bool,
    /// Certificate mode's request parameters, as received.
    pub app_cert_sn: Option<String>,
    pub alipay_root_cert_sn: Option<String>,
}

/// Certificate mode: answers are signed with `key` and name `sn`; `published` is what
/// `alipay.open.app.alipaycert.download` hands out, by SN (PEM text).
pub struct FakeCerts {
    pub key: PrivateKey,
    pub sn: String,
    pub published: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum Reply {
    /// Business fields merged into a `10000` answer.
    Success(serde_json::Value),
    Error {
        code: &'static str,
        sub_code: &'static str,
    },
    Http(u16),
    /// A success whose signature is made with the wrong key (a forged or corrupted answer).
    BadSignature,
    /// An error answer with no signature at all (what a proxy, a forger or a gateway-level
    /// failure may send): never to be believed.
    Unsigned {
        code: &'static str,
        sub_code: &'static str,
    },
    /// No answer for this many milliseconds (longer than the client's timeout), then the
    /// default one.
    Delay(u64),
}

#[derive(Clone, Default)]
struct Shared {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Bodies POSTed to `/alerts` (it doubles as the service's alert webhook in tests).
    alerts: Arc<Mutex<Vec<serde_json::Value>>>,
    /// What `alipay.open.servicemarket.order.query` answers per commodity_order_id:
    /// (order-level status, item order_status values). Unknown orders: MERCHANT_ORDED / TO_DO.
    orders: Arc<Mutex<BTreeMap<String, (String, Vec<String>)>>>,
    /// The items' `service_effect_date` / `service_expire_date` per commodity_order_id, sent as
    /// given (Beijing time text, or anything else a test wants to see handled).
    dates: Arc<Mutex<BTreeMap<String, (String, String)>>>,
    /// Orders answered with whole item objects (`set_order_items`), checked first.
    order_items: Arc<Mutex<BTreeMap<String, (String, Vec<serde_json::Value>)>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// What `alipay.open.mini.version.list.query` answers in `app_versions` (default: none).
    app_versions: Arc<Mutex<Vec<String>>>,
    /// What `alipay.open.mini.version.detail.query` answers: (`status`, `reject_reason`);
    /// default `AUDITING`.
    version_detail: Arc<Mutex<Option<(String, Option<String>)>>>,
    /// `alipay.open.auth.token.app.query`'s `status` by token (default `valid`).
    token_status: Arc<Mutex<BTreeMap<String, String>>>,
    certs: Arc<Mutex<Option<FakeCerts>>>,
    /// Further ISV apps' public keys by app id: a request naming one is verified with its key
    /// (any other with the primary app's).
    apps: Arc<Mutex<BTreeMap<String, PublicKey>>>,
    /// Benchmarks: answer every successful call with one signed body, signed once, so that the
    /// stand-in's RSA signing does not eat the CPU of the service being measured.
    constant_reply: Option<Arc<String>>,
}

pub struct FakeAlipay {
    pub url: String,
    shared: Shared,
    handle: actix_web::dev::ServerHandle,
}

struct Keys {
    isv_public: PublicKey,
    platform: PrivateKey,
}

impl FakeAlipay {
    pub async fn start() -> FakeAlipay {
        Self::start_with(Shared::default()).await
    }

    /// Like `start`, but every unscripted call gets the same body, signed once as `method`'s
    /// answer (benchmarks: the stand-in's signing must not take the measured service's CPU).
    pub async fn start_constant(method: &str, content: serde_json::Value) -> FakeAlipay {
        let body =
            response::sign_response(method, &content.to_string(), &super::platform_private_key());
        Self::start_with(Shared {
            constant_reply: Some(Arc::new(body)),
            ..Shared::default()
        })
        .await
    }

    async fn start_with(shared: Shared) -> FakeAlipay {
        let keys = web::Data::new(Keys {
            isv_public: PublicKey::parse(
                &std::fs::read_to_string(super::vector_key_path("isv_app_public_spki.pem"))
                    .unwrap(),
            )
            .unwrap(),
            platform: super::platform_private_key(),
        });
        let data = web::Data::new(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(keys.clone())
                .route("/gateway.do", web::post().to(gateway))
                .route("/alerts", web::post().to(alert))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeAlipay {
            url: format!("http://127.0.0.1:{port}/gateway.do"),
            shared,
            handle,
        }
    }

    /// Replies used, in order, before the default success.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().extend(replies);
    }

    /// Switches to certificate mode, or changes the signing certificate (a rotation).
    pub fn set_certs(&self, key: PrivateKey, sn: &str, published: BTreeMap<String, String>) {
        *self.shared.certs.lock().unwrap() = Some(FakeCerts {
            key,
            sn: sn.to_string(),
            published,
        });
    }

    /// Another ISV app: requests sent as `app_id` must be signed with the key whose public half
    /// this is.
    pub fn add_app(&self, app_id: &str, public: PublicKey) {
        self.shared
            .apps
            .lock()
            .unwrap()
            .insert(app_id.to_string(), public);
    }

    /// Sets what `order.query` answers for an order.
    pub fn set_order(&self, commodity_order_id: &str, status: &str, items: &[&str]) {
        self.shared.orders.lock().unwrap().insert(
            commodity_order_id.to_string(),
            (
                status.to_string(),
                items.iter().map(|s| s.to_string()).collect(),
            ),
        );
    }

    /// Sets the item dates `order.query` answers for an order (sent verbatim).
    pub fn set_order_dates(&self, commodity_order_id: &str, effect: &str, expire: &str) {
        self.shared.dates.lock().unwrap().insert(
            commodity_order_id.to_string(),
            (effect.to_string(), expire.to_string()),
        );
    }

    /// Sets what `order.query` answers for an order, items as whole objects (their
    /// `service_effect_date`, `mini_app_id`, ...).
    pub fn set_order_items(
        &self,
        commodity_order_id: &str,
        status: &str,
        items: Vec<serde_json::Value>,
    ) {
        self.shared
            .order_items
            .lock()
            .unwrap()
            .insert(commodity_order_id.to_string(), (status.to_string(), items));
    }

    /// Sets the versions `version.list.query` reports for the mini program.
    pub fn set_app_versions(&self, versions: &[&str]) {
        *self.shared.app_versions.lock().unwrap() =
            versions.iter().map(|v| v.to_string()).collect();
    }

    /// Sets what `version.detail.query` answers (`status`, `reject_reason`).
    pub fn set_version_detail(&self, status: &str, reject_reason: Option<&str>) {
        *self.shared.version_detail.lock().unwrap() =
            Some((status.to_string(), reject_reason.map(str::to_string)));
    }

    /// Sets what `auth.token.app.query` answers for a token (`valid`, `invalid`, ...).
    pub fn set_token_status(&self, token: &str, status: &str) {
        self.shared
            .token_status
            .lock()
            .unwrap()
            .insert(token.to_string(), status.to_string());
    }

    /// The alert webhook URL served by this fake.
    pub fn alerts_url(&self) -> String {
        self.url.replace("/gateway.do", "/alerts")
    }

    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.shared.alerts.lock().unwrap().clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// The text parts of a multipart body (parts with a file name are skipped).
fn multipart_text_parts(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split(&format!("--{boundary}"))
        .filter_map(|part| {
            let (headers, value) = part.split_once("\r\n\r\n")?;
            let disposition = headers
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
            if disposition.contains("filename=") {
                return None;
            }
            let name = disposition.split("name=\"").nth(1)?.split('"').next()?;
            Some((
                name.to_string(),
                value.strip_suffix("\r\n").unwrap_or(value).to_string(),
            ))
        })
        .collect()
}

async fn alert(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    shared
        .alerts
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null));
    HttpResponse::Ok().finish()
}

async fn gateway(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
    keys: web::Data<Keys>,
) -> HttpResponse {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let multipart = content_type.starts_with("multipart/");
    let form_body: &[u8] = if multipart { b"" } else { &body[..] };
    for source in [req.query_string().as_bytes(), form_body] {
        if let Ok(pairs) = form::decode(source) {
            for (k, v) in pairs.iter() {
                params.insert(
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                );
            }
        }
    }
    // Upload APIs (audit.apply) send multipart: their text parts are signed, file parts are not.
    if let Some(boundary) = content_type.split("boundary=").nth(1).filter(|_| multipart) {
        params.extend(multipart_text_parts(&body, boundary.trim_matches('"')));
    }
    let method = params.get("method").cloned().unwrap_or_default();
    let app_key = params
        .get("app_id")
        .and_then(|id| shared.apps.lock().unwrap().get(id).cloned());
    let signature_ok = params
        .get("sign")
        .and_then(|s| sign::decode_signature(s.as_bytes(), 256))
        .is_some_and(|sig| {
            app_key.as_ref().unwrap_or(&keys.isv_public).verify(
                &sign::request_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                &sig,
            )
        });
    shared.calls.lock().unwrap().push(Call {
        method: method.clone(),
        app_id: params.get("app_id").cloned(),
        app_auth_token: params.get("app_auth_token").cloned(),
        biz_content: params.get("biz_content").cloned(),
        signature_ok,
        app_cert_sn: params.get("app_cert_sn").cloned(),
        alipay_root_cert_sn: params.get("alipay_root_cert_sn").cloned(),
    });
    let certs = shared.certs.clone();
    let signed = |content: serde_json::Value| {
        let body = match &*certs.lock().unwrap() {
            Some(c) => {
                response::sign_response_with_sn(&method, &content.to_string(), &c.key, &c.sn)
            }
            None => response::sign_response(&method, &content.to_string(), &keys.platform),
        };
        HttpResponse::Ok()
            .content_type("application/json;charset=utf-8")
            .body(body)
    };
    if method == "alipay.open.app.alipaycert.download" {
        let wanted: serde_json::Value = params
            .get("biz_content")
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        let wanted = wanted["alipay_cert_sn"].as_str().unwrap_or("").to_string();
        let pem = certs
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|c| c.published.get(&wanted).cloned());
        use base64::Engine as _;
        return match pem {
            Some(pem) => signed(serde_json::json!({"code": "10000", "msg": "Success",
                "alipay_cert_content": base64::engine::general_purpose::STANDARD.encode(pem)})),
            None => signed(
                serde_json::json!({"code": "40004", "msg": "Business Failed", "sub_code": "CERT_NOT_EXIST"}),
            ),
        };
    }
    if !signature_ok {
        return signed(
            serde_json::json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}),
        );
    }
    let mut reply = shared.script.lock().unwrap().pop_front();
    if let Some(Reply::Delay(ms)) = reply {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        reply = None;
    }
    match reply {
        Some(Reply::Delay(_)) => unreachable!("a delay is served before the match"),
        Some(Reply::BadSignature) => {
            let wrong = PrivateKey::parse(
                &std::fs::read_to_string(super::vector_key_path("isv_app_private_pkcs8.pem"))
                    .unwrap(),
            )
            .unwrap();
            let content = serde_json::json!({"code": "10000", "msg": "Success", "status": "CLOSED", "order_items": [{"order_status": "MERCHANT_CANCELLED"}]});
            HttpResponse::Ok()
                .content_type("application/json;charset=utf-8")
                .body(response::sign_response(
                    &method,
                    &content.to_string(),
                    &wrong,
                ))
        }
        Some(Reply::Unsigned { code, sub_code }) => HttpResponse::Ok()
            .content_type("application/json;charset=utf-8")
            .body(format!(
                "{{\"{}\":{}}}",
                response::response_key(&method),
                serde_json::json!({"code": code, "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "unsigned"})
            )),
        Some(Reply::Http(status)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .body("error")
        }
        Some(Reply::Error { code, sub_code }) => signed(
            serde_json::json!({"code": code, "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "scripted"}),
        ),
        Some(Reply::Success(fields)) => {
            let mut content = serde_json::json!({"code": "10000", "msg": "Success"});
            if let (Some(c), Some(f)) = (content.as_object_mut(), fields.as_object()) {
                c.extend(f.clone());
            }
            signed(content)
        }
        None if shared.constant_reply.is_some() => {
            let body = shared
                .constant_reply
                .as_ref()
                .map(|b| b.as_str().to_string())
                .unwrap_or_default();
            HttpResponse::Ok()
                .content_type("application/json;charset=utf-8")
                .body(body)
        }
        None if method == "alipay.open.mini.version.list.query" => {
            let versions = shared.app_versions.lock().unwrap().clone();
            signed(serde_json::json!({"code": "10000", "msg": "Success", "app_versions": versions}))
        }
        None if method == "alipay.open.mini.version.detail.query" => {
            let biz: serde_json::Value = params
                .get("biz_content")
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_default();
            let (status, reason) = shared
                .version_detail
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| ("AUDITING".to_string(), None));
            signed(serde_json::json!({"code": "10000", "msg": "Success",
                "app_version": biz["app_version"], "status": status, "reject_reason": reason}))
        }
        None if method == "alipay.open.auth.token.app.query" => {
            let biz: serde_json::Value = params
                .get("biz_content")
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_default();
            let token = biz["app_auth_token"].as_str().unwrap_or("").to_string();
            let status = shared
                .token_status
                .lock()
                .unwrap()
                .get(&token)
                .cloned()
                .unwrap_or_else(|| "valid".to_string());
            signed(serde_json::json!({"code": "10000", "msg": "Success", "status": status,
                "auth_methods": ["alipay.open.mini.version.upload"]}))
        }
        None if method == "alipay.open.mini.version.build.query" => {
            signed(serde_json::json!({"code": "10000", "msg": "Success", "build_status": "2"}))
        }
        None if method.starts_with("alipay.open.mini.version.") => {
            signed(serde_json::json!({"code": "10000", "msg": "Success", "build_status": "0"}))
        }
        None if method == "alipay.open.servicemarket.order.query" => {
            let biz: serde_json::Value = params
                .get("biz_content")
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_default();
            let id = biz["commodity_order_id"].as_str().unwrap_or("").to_string();
            let detailed = shared.order_items.lock().unwrap().get(&id).cloned();
            if let Some((status, items)) = detailed {
                return signed(
                    serde_json::json!({"code": "10000", "msg": "Success", "commodity_id": "APPMK0001", "status": status,
                    "current_page": 1, "total_size": items.len(), "order_items": items}),
                );
            }
            let (status, items) = shared
                .orders
                .lock()
                .unwrap()
                .get(&id)
                .cloned()
                .unwrap_or_else(|| ("MERCHANT_ORDED".to_string(), vec!["TO_DO".to_string()]));
            let dates = shared.dates.lock().unwrap().get(&id).cloned();
            let items: Vec<serde_json::Value> = items
                .iter()
                .map(|s| {
                    let mut item = serde_json::json!({"commodity_id": "APPMK0001", "mini_app_id": "2021004199990002", "order_status": s});
                    if let Some((effect, expire)) = &dates {
                        item["service_effect_date"] = effect.as_str().into();
                        item["service_expire_date"] = expire.as_str().into();
                    }
                    item
                })
                .collect();
            signed(
                serde_json::json!({"code": "10000", "msg": "Success", "commodity_id": "APPMK0001", "status": status,
                "current_page": 1, "total_size": items.len(), "order_items": items}),
            )
        }
        None => {
            let biz: serde_json::Value = params
                .get("biz_content")
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or_default();
            let out = biz["out_biz_no"].as_str().unwrap_or("");
            signed(
                serde_json::json!({"code": "10000", "msg": "Success", "record_id": format!("R{out}"), "order_id": format!("A{out}")}),
            )
        }
    }
}
