//! `POST /gateway.do`: Alipay's OpenAPI 2.0 endpoint, answered from the sim's state.
//!
//! Parameters come from the URL query and the body (form-encoded, or the text parts of a
//! multipart body for upload APIs). Our signature is checked over all of them but `sign`, empty
//! values skipped (`sign::request_content`), with our app public key. Answers are
//! `{"<method>_response":{...},"sign":"..."}` signed with the platform private key.

use super::state::SimError;
use super::{Fault, Inner, multipart};
use crate::alipay::{api, form, response, sign};
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::BTreeMap;
use std::time::Duration;

const JSON: &str = "application/json;charset=utf-8";

fn signed(inner: &Inner, method: &str, content: &serde_json::Value) -> HttpResponse {
    let key = if method.is_empty() {
        "error_response"
    } else {
        method
    };
    HttpResponse::Ok()
        .content_type(JSON)
        .body(response::sign_response(
            key,
            &content.to_string(),
            &inner.platform_key,
        ))
}

fn error_content(code: &str, msg: &str, sub_code: &str, sub_msg: &str) -> serde_json::Value {
    serde_json::json!({"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg})
}

fn msg_for(code: &str) -> &'static str {
    match code {
        "20000" => "Service Currently Unavailable",
        "20001" => "Insufficient Token Permissions",
        "40002" => "Invalid Arguments",
        "40005" => "Call Limited",
        _ => "Business Failed",
    }
}

fn sim_error(e: &SimError) -> serde_json::Value {
    error_content(e.code, msg_for(e.code), e.sub_code, &e.message)
}

/// Reads the query and body parameters. A name given twice is refused (which copy would be
/// signed?).
fn params(req: &HttpRequest, body: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut add = |k: String, v: String| -> Result<(), String> {
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("parameter {k} given twice"));
        }
        Ok(())
    };
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| "a parameter is not UTF-8".to_string())
    };
    if !req.query_string().is_empty() {
        let pairs = form::decode(req.query_string().as_bytes()).map_err(|e| e.to_string())?;
        for (k, v) in pairs.iter() {
            add(utf8(k)?, utf8(v)?)?;
        }
    }
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(boundary) = multipart::boundary(content_type) {
        let parts = multipart::parse(body, &boundary)?;
        for (k, v) in parts.text {
            add(k, v)?;
        }
    } else if !body.is_empty() {
        match form::decode(body) {
            Ok(pairs) => {
                for (k, v) in pairs.iter() {
                    add(utf8(k)?, utf8(v)?)?;
                }
            }
            Err(form::FormError::Empty) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}

pub(super) async fn gateway(
    req: HttpRequest,
    body: web::Bytes,
    inner: web::Data<Inner>,
) -> HttpResponse {
    let inner = inner.into_inner();
    let params = match params(&req, &body) {
        Ok(p) => p,
        Err(problem) => {
            record(&inner, "", false, false, "40002");
            return signed(
                &inner,
                "",
                &error_content(
                    "40002",
                    "Invalid Arguments",
                    "isv.invalid-parameter",
                    &problem,
                ),
            );
        }
    };
    let method = params.get("method").cloned().unwrap_or_default();
    let token = params
        .get("app_auth_token")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    // Verified with the key of the app the request names (the primary app's for any other: the
    // app id is refused below).
    let caller = params.get("app_id").cloned().unwrap_or_default();
    let app_key = inner.app_key(&caller).unwrap_or(&inner.app_public_key);
    let signature_ok = params
        .get("sign")
        .and_then(|s| sign::decode_signature(s.as_bytes(), 256))
        .is_some_and(|sig| {
            app_key.verify(
                &sign::request_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                &sig,
            )
        });

    // Faults come first and return before the state is touched: a faulted call did nothing.
    // That is what lets a test assert that a client's retry never does a step twice.
    if let Some(fault) = inner.pick_fault() {
        record(
            &inner,
            &method,
            signature_ok,
            token.is_some(),
            fault.as_str(),
        );
        return fault_answer(&inner, &method, fault).await;
    }

    if !signature_ok {
        record(&inner, &method, false, token.is_some(), "40002");
        let sub_msg = if params.contains_key("sign") {
            "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配 (signature does not verify with the app public key)"
        } else {
            "缺少签名参数 (no sign parameter)"
        };
        let sub_code = if params.contains_key("sign") {
            "isv.invalid-signature"
        } else {
            "isv.missing-signature"
        };
        return signed(
            &inner,
            &method,
            &error_content("40002", "Invalid Arguments", sub_code, sub_msg),
        );
    }
    if inner.app_key(&caller).is_none() {
        record(&inner, &method, true, token.is_some(), "40002");
        return signed(
            &inner,
            &method,
            &error_content(
                "40002",
                "Invalid Arguments",
                "isv.invalid-app-id",
                "无效的AppID参数",
            ),
        );
    }

    let biz: serde_json::Value = match params.get("biz_content") {
        Some(text) => match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                record(&inner, &method, true, token.is_some(), "40002");
                return signed(
                    &inner,
                    &method,
                    &error_content(
                        "40002",
                        "Invalid Arguments",
                        "isv.invalid-parameter",
                        "biz_content is not JSON",
                    ),
                );
            }
        },
        None => serde_json::Value::Null,
    };
    let now = inner.now();
    let result = {
        let mut state = inner.lock();
        let result: Result<serde_json::Value, SimError> = match method.as_str() {
            api::METHOD_ORDER_QUERY => state.order_query(&biz),
            api::METHOD_TOKEN_APP => state.token_app(&biz, now),
            api::METHOD_VERSION_UPLOAD => state
                .auth_for_app(token, &caller)
                .and_then(|app| state.version_upload(&app, &biz, now)),
            api::METHOD_BUILD_QUERY => state
                .auth_for_app(token, &caller)
                .and_then(|app| state.build_query(&app, &biz)),
            api::METHOD_AUDIT_APPLY => {
                let version = params.get("app_version").cloned().unwrap_or_default();
                match state.auth_for_app(token, &caller).and_then(|app| {
                    let lost = state.lose_audit_messages.contains(&app);
                    state
                        .audit_apply(&app, &version, now, &caller)
                        .map(|r| (r, lost))
                }) {
                    // A lost audit message: decided, never sent.
                    Ok(((answer, _), true)) => Ok(answer),
                    Ok(((answer, message), false)) => {
                        inner.send(&mut state, vec![message]);
                        Ok(answer)
                    }
                    Err(e) => Err(e),
                }
            }
            api::METHOD_VERSION_LIST => state
                .auth_for_app(token, &caller)
                .map(|app| state.version_list(&app)),
            api::METHOD_VERSION_DETAIL => state
                .auth_for_app(token, &caller)
                .and_then(|app| state.version_detail(&app, &biz)),
            // Called as the ISV app; the token asked about is in biz_content.
            api::METHOD_TOKEN_QUERY => state.token_query(&biz),
            api::METHOD_VERSION_ONLINE => state
                .auth_for_app(token, &caller)
                .and_then(|app| state.version_online(&app, &biz)),
            api::METHOD_MERCHANT_ORDER_SYNC => state
                .auth_for_app(token, &caller)
                .and_then(|app| state.merchant_order_sync(&app, biz, now)),
            _ => Err(SimError::new(
                "40004",
                "isv.invalid-method",
                format!("不存在的方法名 (unknown method {method:?})"),
            )),
        };
        let outcome = match &result {
            Ok(_) => "10000",
            Err(e) => e.code,
        };
        state.calls.push(super::state::CallRecord {
            at: now,
            method: method.clone(),
            signature_ok: true,
            token_present: token.is_some(),
            outcome: outcome.to_string(),
        });
        result
    };
    match result {
        Ok(fields) => {
            let mut content = serde_json::json!({"code": "10000", "msg": "Success"});
            if let (Some(c), serde_json::Value::Object(f)) = (content.as_object_mut(), fields) {
                c.extend(f);
            }
            signed(&inner, &method, &content)
        }
        Err(e) => signed(&inner, &method, &sim_error(&e)),
    }
}

fn record(inner: &Inner, method: &str, signature_ok: bool, token_present: bool, outcome: &str) {
    let now = inner.now();
    inner.lock().calls.push(super::state::CallRecord {
        at: now,
        method: method.to_string(),
        signature_ok,
        token_present,
        outcome: outcome.to_string(),
    });
}

async fn fault_answer(inner: &Inner, method: &str, fault: Fault) -> HttpResponse {
    match fault {
        Fault::Http5xx => HttpResponse::BadGateway()
            .content_type("text/html")
            .body("<html><body>502 Bad Gateway</body></html>"),
        Fault::Timeout => {
            tokio::time::sleep(Duration::from_millis(inner.faults.timeout_ms)).await;
            signed(
                inner,
                method,
                &error_content("20000", msg_for("20000"), "isp.unknow-error", "系统繁忙"),
            )
        }
        Fault::RateLimited => signed(
            inner,
            method,
            &error_content(
                "40005",
                msg_for("40005"),
                "aop.ACCESS_LIMITED",
                "调用频次超限",
            ),
        ),
        Fault::BadSignature => {
            // What a corrupted or forged answer looks like to the client: well-formed, a 256-byte
            // signature, but not over this content (signed over other bytes by the platform key,
            // which is the same to a verifier as signing with a wrong key).
            let content = serde_json::json!({"code": "10000", "msg": "Success"}).to_string();
            let wrong = inner
                .platform_key
                .sign_base64(format!("{content} ").as_bytes());
            let key = if method.is_empty() {
                "error_response".to_string()
            } else {
                response::response_key(method)
            };
            HttpResponse::Ok()
                .content_type(JSON)
                .body(format!("{{\"{key}\":{content},\"sign\":\"{wrong}\"}}"))
        }
    }
}
