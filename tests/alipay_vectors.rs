//! The Alipay protocol core against the SDK-made vectors in `../shared/vectors`, and the OpenAPI
//! client against a local mock gateway that checks our signatures with the ISV public key and
//! answers with bodies signed by the platform private key.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, http::StatusCode, web};
use chrono::{TimeZone, Utc};
use isv_lifecycle::alipay::api::{
    self, AuditApplyRequest, BuildStatus, ItemOrderStatus, OrderQueryRequest, OrderStatus,
    TokenAppRequest, VersionOnlineRequest, VersionUploadRequest,
};
use isv_lifecycle::alipay::client::{
    AlipayApi, AlipayClient, AlipayError, ClientSettings, FilePart,
};
use isv_lifecycle::alipay::request::{self, RequestParts};
use isv_lifecycle::alipay::response::{self, ResponseError};
use isv_lifecycle::alipay::{PrivateKey, PublicKey, SignVariant, form, notify, sign, time};
use isv_lifecycle::clock::ManualClock;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/");
const APP_ID: &str = "2021004100000001";
const TOKEN: &str = "202406BBd4f3a7c9e2b84a5f9c1e6d7a8b9c0X51";

// ---------------------------------------------------------------------------------------------
// Vector files and keys

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(VECTORS).join(name)
}

fn records(file: &str) -> Vec<Value> {
    let path = vector_path(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let records: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{file} line {}: {e}", i + 1))
        })
        .collect();
    assert!(!records.is_empty(), "{file} has no records");
    records
}

fn key_text(name: &str) -> String {
    let path = vector_path(&format!("keys/{name}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn s<'a>(record: &'a Value, field: &str) -> &'a str {
    record[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `{field}` is not a string", record["id"]))
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .expect("an object of strings")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_string()))
        .collect()
}

struct Keys {
    isv_private: Arc<PrivateKey>,
    isv_public: PublicKey,
    platform_private: PrivateKey,
    platform_public: Arc<PublicKey>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        isv_private: Arc::new(
            PrivateKey::parse(&key_text("isv_app_private_pkcs8.pem")).expect("isv private key"),
        ),
        isv_public: PublicKey::parse(&key_text("isv_app_public_spki.pem")).expect("isv public key"),
        platform_private: PrivateKey::parse(&key_text("alipay_platform_private_pkcs8.pem"))
            .expect("platform key"),
        platform_public: Arc::new(
            PublicKey::parse(&key_text("alipay_platform_public_spki.pem"))
                .expect("platform public key"),
        ),
    })
}

fn verify_base64(key: &PublicKey, content: &[u8], signature: &str) -> bool {
    sign::decode_signature(signature.as_bytes(), 256)
        .is_some_and(|raw| sign::verify(key, content, &raw))
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn every_key_form_parses_to_the_same_key() {
    for who in ["isv_app", "alipay_platform"] {
        let forms = [
            "private_pkcs8.pem",
            "private_pkcs1.pem",
            "private_pkcs8.b64",
            "private_pkcs1.b64",
        ];
        let privates: Vec<PrivateKey> = forms
            .iter()
            .map(|f| {
                PrivateKey::parse(&key_text(&format!("{who}_{f}")))
                    .unwrap_or_else(|e| panic!("{who}_{f}: {e}"))
            })
            .collect();
        let pem =
            PublicKey::parse(&key_text(&format!("{who}_public_spki.pem"))).expect("public pem");
        let b64 =
            PublicKey::parse(&key_text(&format!("{who}_public_spki.b64"))).expect("public b64");
        assert!(
            pem.same_key_as(&b64),
            "{who}: PEM and bare base64 public keys differ"
        );
        for (form, private) in forms.iter().zip(&privates) {
            assert!(
                private.public_key().same_key_as(&pem),
                "{who}_{form} is not the pair of the public key"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// requests.jsonl

#[test]
fn request_vectors_sign_content_and_signatures() {
    let private_forms = [
        "isv_app_private_pkcs8.pem",
        "isv_app_private_pkcs1.pem",
        "isv_app_private_pkcs8.b64",
        "isv_app_private_pkcs1.b64",
    ];
    let privates: Vec<(&str, PrivateKey)> = private_forms
        .iter()
        .map(|f| (*f, PrivateKey::parse(&key_text(f)).expect(f)))
        .collect();
    let publics = [
        PublicKey::parse(&key_text("isv_app_public_spki.pem")).expect("pem"),
        PublicKey::parse(&key_text("isv_app_public_spki.b64")).expect("b64"),
    ];
    let all = records("requests.jsonl");
    for r in &all {
        let id = s(r, "id");
        let params = string_map(&r["signed_params"]);
        let content = sign::request_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(
            String::from_utf8_lossy(&content),
            s(r, "sign_content"),
            "{id}: sign content differs"
        );
        assert_eq!(
            content,
            s(r, "sign_content").as_bytes(),
            "{id}: sign content bytes differ"
        );
        for (form, key) in &privates {
            assert_eq!(
                key.sign_base64(&content),
                s(r, "sign"),
                "{id}: signature with {form} differs"
            );
        }
        for key in &publics {
            assert!(
                verify_base64(key, &content, s(r, "sign")),
                "{id}: SDK signature does not verify"
            );
        }
        // The platform key must not verify an ISV signature.
        assert!(
            !verify_base64(&keys().platform_public, &content, s(r, "sign")),
            "{id}: verified with the wrong key"
        );
    }
    println!("{} request vectors checked", all.len());
}

/// Our request builder puts every parameter where the Node SDK does (common parameters in the
/// query, `biz_content` in the body) and signs what it sends. The SDK vectors send `format=json`
/// where we send `JSON`, so signatures differ; the parameters otherwise match.
#[test]
fn request_builder_matches_the_sdk_placement() {
    let mut checked = 0;
    for r in &records("requests.jsonl") {
        let id = s(r, "id");
        let common = string_map(&r["common_params"]);
        if common.contains_key("notify_url") {
            continue; // the builder has no notify_url (none of our calls use one)
        }
        let now = time::parse_beijing(&common["timestamp"]).expect("timestamp");
        let parts = RequestParts {
            method: s(r, "method"),
            biz_content: Some(s(r, "biz_content").to_string()),
            text_fields: Vec::new(),
            app_auth_token: common.get("app_auth_token").map(String::as_str),
        };
        let built = request::build(&common["app_id"], &keys().isv_private, parts, now);

        let mut expected = string_map(&r["signed_params"]);
        expected.insert("format".into(), "JSON".into());
        let mut ours: BTreeMap<String, String> =
            built.query.iter().chain(&built.form).cloned().collect();
        let signature = ours.remove("sign").expect("sign");
        assert_eq!(ours, expected, "{id}: signed parameters differ");
        let content = sign::request_content(ours.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert!(
            verify_base64(&keys().isv_public, &content, &signature),
            "{id}: our signature does not verify"
        );

        let gateway_url = s(r, "gateway_url");
        let sdk_query =
            form::decode(gateway_url.split_once('?').expect("query").1.as_bytes()).expect("query");
        let mut sdk_query_keys: Vec<String> = sdk_query
            .iter()
            .map(|(k, _)| String::from_utf8(k.to_vec()).expect("utf-8"))
            .collect();
        let mut our_query_keys: Vec<String> = built.query.iter().map(|(k, _)| k.clone()).collect();
        sdk_query_keys.sort();
        our_query_keys.sort();
        assert_eq!(
            our_query_keys, sdk_query_keys,
            "{id}: query parameters differ"
        );
        let body: BTreeMap<String, String> = built.form.iter().cloned().collect();
        assert_eq!(
            body,
            string_map(&r["gateway_body_params"]),
            "{id}: body parameters differ"
        );
        checked += 1;
    }
    assert!(checked > 0);
}

// ---------------------------------------------------------------------------------------------
// responses.jsonl / responses_tampered.jsonl

#[test]
fn response_vectors_verify_over_the_raw_substring() {
    let all = records("responses.jsonl");
    for r in &all {
        let id = s(r, "id");
        let body = s(r, "http_body").as_bytes();
        let checked = response::check(body, s(r, "method"), &keys().platform_public)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            checked.content,
            s(r, "sign_content").as_bytes(),
            "{id}: content is not the signed bytes"
        );
        assert!(checked.signed, "{id}: not marked signed");
        assert_eq!(
            checked.is_error_response,
            s(r, "response_key") == "error_response",
            "{id}"
        );
        // The ISV key must not verify the platform's signature.
        assert_eq!(
            response::check(body, s(r, "method"), &keys().isv_public),
            Err(ResponseError::BadSignature),
            "{id}: verified with the wrong key"
        );
    }
    println!("{} response vectors checked", all.len());
}

#[test]
fn tampered_response_vectors_are_rejected() {
    let mut outcomes = Vec::new();
    for r in &records("responses_tampered.jsonl") {
        let id = s(r, "id");
        let result = response::check(
            s(r, "http_body").as_bytes(),
            s(r, "method"),
            &keys().platform_public,
        );
        outcomes.push(format!(
            "{id} {}: {:?}",
            s(r, "tamper"),
            result.as_ref().map(|c| c.signed)
        ));
        // Every unsigned response is refused, success or error shape alike.
        match s(r, "tamper") {
            "sign_missing" => assert_eq!(result, Err(ResponseError::Unsigned), "{id}"),
            _ => assert_eq!(result, Err(ResponseError::BadSignature), "{id}"),
        }
    }
    println!("{}", outcomes.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// notifications.jsonl / tampered.jsonl

/// Every byte of name and value as `%XX`.
fn encode_every_byte(params: &BTreeMap<String, String>) -> String {
    let enc = |t: &str| t.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Alphanumerics raw, everything else lower-case `%xx` (so spaces are `%20`, not `+`).
fn encode_lower_hex(params: &BTreeMap<String, String>) -> String {
    let enc = |t: &str| {
        t.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect::<String>()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn notification_vectors_verify_as_v1_under_any_valid_encoding() {
    let all = records("notifications.jsonl");
    for r in &all {
        let id = s(r, "id");
        let expected = string_map(&r["params"]);
        let verified = notify::verify(s(r, "body").as_bytes(), &keys().platform_public)
            .unwrap_or_else(|e| panic!("{id}: rejected ({}): {e}", e.code()));
        assert_eq!(verified.variant, SignVariant::V1, "{id}");
        assert_eq!(verified.params, expected, "{id}: verified params differ");
        for (label, body) in [
            ("every byte %XX", encode_every_byte(&expected)),
            ("lower-case hex", encode_lower_hex(&expected)),
        ] {
            let again =
                notify::verify(body.as_bytes(), &keys().platform_public).unwrap_or_else(|e| {
                    panic!("{id} re-encoded ({label}): rejected ({}): {e}", e.code())
                });
            assert_eq!(again.params, expected, "{id} re-encoded ({label})");
            assert_eq!(again.variant, SignVariant::V1, "{id} re-encoded ({label})");
        }
        // Signed by the platform, not by us.
        assert!(
            notify::verify(s(r, "body").as_bytes(), &keys().isv_public).is_err(),
            "{id}: wrong key accepted"
        );
    }
    println!("{} notification vectors checked", all.len());
}

#[test]
fn tampered_notification_vectors_are_rejected() {
    let mut outcomes = Vec::new();
    let mut accepted = Vec::new();
    let mut wrong_reason = Vec::new();
    for r in &records("tampered.jsonl") {
        let id = s(r, "id");
        let tamper = s(r, "tamper");
        match notify::verify(s(r, "body").as_bytes(), &keys().platform_public) {
            Ok(m) => accepted.push(format!("{id} {tamper}: ACCEPTED as {:?}", m.variant)),
            Err(e) => {
                outcomes.push(format!("{id} {tamper}: {}", e.code()));
                // Where the tamper says exactly what is wrong, the reason must say so too.
                let expected = match tamper {
                    "sign_missing" => Some("missing_sign"),
                    "sign_not_base64" | "sign_truncated" => Some("sign_encoding"),
                    "sign_type_changed_to_RSA" | "sign_type_empty_and_foreign_sign" => {
                        Some("sign_type")
                    }
                    _ => None,
                };
                if expected.is_some_and(|code| code != e.code()) {
                    wrong_reason.push(format!(
                        "{id} {tamper}: {} (expected {})",
                        e.code(),
                        expected.unwrap_or("")
                    ));
                }
            }
        }
    }
    let report = outcomes.join("\n");
    assert!(
        accepted.is_empty(),
        "tampered messages accepted:\n{}\n\nrejections:\n{report}",
        accepted.join("\n")
    );
    assert!(
        wrong_reason.is_empty(),
        "unexpected rejection codes:\n{}\n\nall:\n{report}",
        wrong_reason.join("\n")
    );
    println!("{report}");
}

// ---------------------------------------------------------------------------------------------
// Mock gateway

#[derive(Debug, Clone, Default)]
struct SeenFile {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// What the mock gateway received.
#[derive(Debug, Clone, Default)]
struct Seen {
    query: BTreeMap<String, String>,
    content_type: String,
    raw_body: Vec<u8>,
    /// Form body parameters, or the text parts of a multipart body.
    form: BTreeMap<String, String>,
    files: Vec<SeenFile>,
    /// Our signature verified with the ISV public key over query + form, `sign` excluded.
    signature_ok: bool,
}

impl Seen {
    fn method(&self) -> &str {
        self.query.get("method").map(String::as_str).unwrap_or("")
    }
}

type Reply = Box<dyn Fn(usize, &Seen) -> (u16, String) + Send + Sync>;

struct MockState {
    reply: Reply,
    seen: Mutex<Vec<Seen>>,
}

struct Mock {
    url: String,
    state: Arc<MockState>,
    handle: actix_web::dev::ServerHandle,
}

impl Mock {
    /// `reply(hit, seen)` answers the `hit`-th request (0-based). Requests whose signature does
    /// not verify get Alipay's `isv.invalid-signature` answer instead.
    async fn start(reply: impl Fn(usize, &Seen) -> (u16, String) + Send + Sync + 'static) -> Mock {
        let state = Arc::new(MockState {
            reply: Box::new(reply),
            seen: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind mock gateway");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Mock {
            url: format!("http://{addr}/gateway.do"),
            state,
            handle,
        }
    }

    fn hits(&self) -> usize {
        self.state.seen.lock().expect("lock").len()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<MockState>) -> HttpResponse {
    let seen = parse_request(&req, &body);
    let hit = {
        let mut all = state.seen.lock().expect("lock");
        all.push(seen.clone());
        all.len() - 1
    };
    let (status, body) = if seen.signature_ok {
        (state.reply)(hit, &seen)
    } else {
        let content = json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature",
            "sub_msg": "mock: signature does not verify"});
        (200, signed(seen.method(), &content))
    };
    HttpResponse::build(StatusCode::from_u16(status).expect("status"))
        .content_type("text/html;charset=utf-8")
        .body(body)
}

fn decode_map(bytes: &[u8]) -> BTreeMap<String, String> {
    if bytes.is_empty() {
        return BTreeMap::new();
    }
    form::decode(bytes)
        .expect("form")
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.to_vec()).expect("utf-8"),
                String::from_utf8(v.to_vec()).expect("utf-8"),
            )
        })
        .collect()
}

fn parse_request(req: &HttpRequest, body: &[u8]) -> Seen {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let query = decode_map(req.query_string().as_bytes());
    let (form, files) = if content_type.starts_with("multipart/form-data") {
        parse_multipart(&content_type, body)
    } else {
        (decode_map(body), Vec::new())
    };
    let signed_params: Vec<(&str, &str)> = query
        .iter()
        .chain(&form)
        .filter(|(k, _)| k.as_str() != "sign")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let content = sign::request_content(signed_params);
    let signature_ok = query
        .get("sign")
        .is_some_and(|sig| verify_base64(&keys().isv_public, &content, sig))
        && !form.contains_key("sign");
    Seen {
        query,
        content_type,
        raw_body: body.to_vec(),
        form,
        files,
        signature_ok,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header_param(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|p| {
        p.trim()
            .strip_prefix(&format!("{name}="))
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// A minimal multipart/form-data reader: text parts (no filename) and file parts.
fn parse_multipart(content_type: &str, body: &[u8]) -> (BTreeMap<String, String>, Vec<SeenFile>) {
    let boundary = header_param(content_type, "boundary").expect("boundary");
    let delimiter = format!("--{boundary}");
    let mut text = BTreeMap::new();
    let mut files = Vec::new();
    let mut rest =
        &body[find(body, delimiter.as_bytes()).expect("first delimiter") + delimiter.len()..];
    while !rest.starts_with(b"--") {
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after delimiter");
        let end = find(rest, format!("\r\n{delimiter}").as_bytes()).expect("part end");
        let part = &rest[..end];
        rest = &rest[end + 2 + delimiter.len()..];
        let header_end = find(part, b"\r\n\r\n").expect("part headers");
        let headers = std::str::from_utf8(&part[..header_end]).expect("headers");
        let data = part[header_end + 4..].to_vec();
        let mut disposition = "";
        let mut part_type = None;
        for line in headers.split("\r\n") {
            let (name, value) = line.split_once(':').expect("header line");
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => disposition = value.trim(),
                "content-type" => part_type = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let name = header_param(disposition, "name").expect("part name");
        match header_param(disposition, "filename") {
            None => {
                text.insert(name, String::from_utf8(data).expect("utf-8 text part"));
            }
            Some(filename) => files.push(SeenFile {
                name,
                filename: Some(filename),
                content_type: part_type,
                data,
            }),
        }
    }
    (text, files)
}

/// A response body signed by the platform key, as Alipay sends it.
fn signed(method: &str, content: &Value) -> String {
    response::sign_response(method, &content.to_string(), &keys().platform_private)
}

fn success(method: &str, fields: Value) -> String {
    let mut content = json!({"code": "10000", "msg": "Success"});
    if let (Some(all), Some(extra)) = (content.as_object_mut(), fields.as_object()) {
        all.extend(extra.clone());
    }
    signed(method, &content)
}

fn failure(method: &str, code: &str, sub_code: &str, sub_msg: &str) -> String {
    signed(
        method,
        &json!({"code": code, "msg": "Failed", "sub_code": sub_code, "sub_msg": sub_msg}),
    )
}

fn start_time() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 10, 4, 0, 0)
        .single()
        .expect("time")
}

fn client(url: &str, clock: &ManualClock) -> AlipayClient {
    client_with_attempts(url, clock, 3)
}

/// Test settings: backoff of a few milliseconds at most, so retries never wait on the wall clock.
fn client_with_attempts(url: &str, clock: &ManualClock, max_attempts: u32) -> AlipayClient {
    let mut settings = ClientSettings::new(url, APP_ID);
    settings.timeout = Duration::from_secs(10);
    settings.connect_timeout = Duration::from_secs(2);
    settings.max_attempts = max_attempts;
    settings.backoff_base = Duration::from_millis(1);
    settings.backoff_cap = Duration::from_millis(4);
    AlipayClient::new(
        settings,
        keys().isv_private.clone(),
        keys().platform_public.clone(),
        Arc::new(clock.clone()),
    )
    .expect("client")
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

// ---------------------------------------------------------------------------------------------
// Client behaviour

#[tokio::test]
async fn success_is_parsed_into_the_typed_response() {
    let mock = Mock::start(|_, seen| {
        (200, success(seen.method(), json!({
            "commodity_id": "APPMK1", "current_page": 1, "total_size": "2", "status": "MERCHANT_ORDED",
            "auto_upgrade": "false", "new_field": {"a": [1, 2]},
            "order_items": [
                {"merchant_pid": "2088000000000001", "mini_app_id": "2021000000000002", "order_status": "DOING",
                 "service_expire_date": "2025-06-10 12:00:00", "status": "待服务商接单"},
                {"merchant_pid": "2088000000000003", "order_status": "TO_CONFIRM"}
            ]})))
    })
    .await;
    let clock = ManualClock::new(start_time());
    let client = client(&mock.url, &clock);
    let r = client
        .servicemarket_order_query(&OrderQueryRequest::new("C1").page(1))
        .await
        .expect("order query");
    assert_eq!(r.commodity_id.as_deref(), Some("APPMK1"));
    assert_eq!(r.total_size, Some(2));
    assert_eq!(r.status, Some(OrderStatus::MerchantOrded));
    assert_eq!(r.auto_upgrade, Some(false));
    assert_eq!(r.order_items.len(), 2);
    assert_eq!(r.order_items[0].order_status, Some(ItemOrderStatus::Doing));
    assert_eq!(
        r.order_items[0].mini_app_id.as_deref(),
        Some("2021000000000002")
    );
    assert_eq!(
        r.order_items[0].service_expire_at(),
        time::parse_beijing("2025-06-10 12:00:00")
    );
    assert_eq!(
        r.order_items[1].order_status,
        Some(ItemOrderStatus::ToConfirm)
    );

    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert!(req.signature_ok);
    assert!(
        req.content_type
            .starts_with("application/x-www-form-urlencoded"),
        "{}",
        req.content_type
    );
    assert_eq!(req.query["app_id"], APP_ID);
    assert_eq!(req.query["method"], api::METHOD_ORDER_QUERY);
    assert_eq!(req.query["charset"], "utf-8");
    assert_eq!(req.query["sign_type"], "RSA2");
    assert_eq!(req.query["version"], "1.0");
    assert_eq!(req.query["timestamp"], "2024-06-10 12:00:00");
    assert_eq!(req.form.keys().collect::<Vec<_>>(), ["biz_content"]);
    assert_eq!(
        req.form["biz_content"],
        r#"{"commodity_order_id":"C1","start_page":"1"}"#
    );
    mock.stop().await;
}

#[tokio::test]
async fn unknown_order_status_values_are_kept_verbatim() {
    let mock = Mock::start(|_, seen| {
        (200, success(seen.method(), json!({
            "status": "MERCHANT_PAID", "order_status": "SOMETHING_ELSE",
            "order_items": [{"order_status": "MERCHANT_PAUSED"}, {"order_status": "ISV_CANCELLED"}]})))
    })
    .await;
    let clock = ManualClock::new(start_time());
    let r = client(&mock.url, &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C2"))
        .await
        .expect("query");
    assert_eq!(r.status, Some(OrderStatus::Other("MERCHANT_PAID".into())));
    assert_eq!(
        r.order_status.as_ref().map(OrderStatus::as_str),
        Some("SOMETHING_ELSE")
    );
    assert_eq!(
        r.order_items[0].order_status,
        Some(ItemOrderStatus::Other("MERCHANT_PAUSED".into()))
    );
    assert_eq!(
        r.order_items[0]
            .order_status
            .as_ref()
            .map(ItemOrderStatus::as_str),
        Some("MERCHANT_PAUSED")
    );
    assert_eq!(
        r.order_items[1].order_status,
        Some(ItemOrderStatus::IsvCancelled)
    );
    mock.stop().await;
}

#[tokio::test]
async fn business_error_is_an_api_error_with_sub_code_and_not_retried() {
    let mock = Mock::start(|_, seen| {
        (
            200,
            failure(
                seen.method(),
                "40004",
                "ACQ.INVALID_PARAMETER",
                "参数无效: out_biz_no 重复",
            ),
        )
    })
    .await;
    let clock = ManualClock::new(start_time());
    let biz = json!({"out_biz_no": "MOS0001", "buyer_id": "2088102177840000", "amount": "12.50", "order_type": "SERVICE_ORDER"});
    let err = client(&mock.url, &clock)
        .merchant_order_sync(&token(), &biz)
        .await
        .expect_err("40004");
    match &err {
        AlipayError::Api {
            code,
            sub_code,
            sub_msg,
            ..
        } => {
            assert_eq!(code, "40004");
            assert_eq!(sub_code.as_deref(), Some("ACQ.INVALID_PARAMETER"));
            assert_eq!(sub_msg.as_deref(), Some("参数无效: out_biz_no 重复"));
        }
        other => panic!("expected Api, got {other:?}"),
    }
    assert_eq!(err.code(), Some("40004"));
    assert_eq!(err.sub_code(), Some("ACQ.INVALID_PARAMETER"));
    assert!(!err.is_retryable() && !err.is_invalid_app_auth_token());
    assert_eq!(mock.hits(), 1, "a business error must not be retried");
    let seen = &mock.seen()[0];
    assert_eq!(
        seen.query.get("app_auth_token").map(String::as_str),
        Some(TOKEN)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&seen.form["biz_content"]).expect("json"),
        biz
    );
    mock.stop().await;
}

#[tokio::test]
async fn code_20000_is_retried_with_a_fresh_timestamp() {
    let clock = ManualClock::new(start_time());
    let server_clock = clock.clone();
    let mock = Mock::start(move |hit, seen| {
        if hit == 0 {
            server_clock.advance(chrono::Duration::seconds(1));
            (200, failure(seen.method(), "20000", "isp.unknow-error", "服务暂不可用"))
        } else {
            (200, success(seen.method(), json!({"build_status": "2", "create_status": "6", "need_rotation": "false", "version_created": "true"})))
        }
    })
    .await;
    let req = VersionUploadRequest {
        app_version: "0.0.2".into(),
        template_id: "2021004100000777".into(),
        ext: Some(r#"{"extEnable":true,"ext":{"name":"测试小店"}}"#.into()),
        ..Default::default()
    };
    let r = client(&mock.url, &clock)
        .mini_version_upload(&token(), &req)
        .await
        .expect("retried to success");
    assert_eq!(r.build_status, Some(BuildStatus::Success));
    assert_eq!(r.create_status, Some(BuildStatus::VersionCreated));
    assert_eq!(r.need_rotation, Some(false));
    assert_eq!(r.version_created, Some(true));
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.signature_ok));
    assert_eq!(seen[0].query["timestamp"], "2024-06-10 12:00:00");
    assert_eq!(
        seen[1].query["timestamp"], "2024-06-10 12:00:01",
        "each attempt is signed anew"
    );
    mock.stop().await;
}

#[tokio::test]
async fn http_5xx_is_retried() {
    let mock = Mock::start(|hit, seen| {
        if hit == 0 {
            (502, "<html>bad gateway</html>".into())
        } else {
            (200, success(seen.method(), json!({})))
        }
    })
    .await;
    let clock = ManualClock::new(start_time());
    let req = VersionOnlineRequest {
        app_version: "0.0.2".into(),
        ..Default::default()
    };
    client(&mock.url, &clock)
        .mini_version_online(&token(), &req)
        .await
        .expect("retried to success");
    assert_eq!(mock.hits(), 2);
    mock.stop().await;

    // Always failing: gives up after max_attempts with the last status.
    let mock = Mock::start(|_, _| (503, "busy".into())).await;
    let err = client(&mock.url, &clock)
        .mini_version_online(&token(), &req)
        .await
        .expect_err("503");
    assert_eq!(err, AlipayError::Http { status: 503 });
    assert_eq!(mock.hits(), 3);
    mock.stop().await;

    // 4xx is not retried.
    let mock = Mock::start(|_, _| (404, "no".into())).await;
    let err = client(&mock.url, &clock)
        .mini_version_online(&token(), &req)
        .await
        .expect_err("404");
    assert_eq!(err, AlipayError::Http { status: 404 });
    assert_eq!(mock.hits(), 1);
    mock.stop().await;
}

#[tokio::test]
async fn transport_errors_are_retried() {
    // A server that accepts and hangs up at once, counting connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let clock = ManualClock::new(start_time());
    let err = client(&format!("http://{addr}/gateway.do"), &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("hang-up");
    assert!(matches!(err, AlipayError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    server.abort();

    // Connection refused (nothing listens on the port any more).
    let err = client(&format!("http://{addr}/gateway.do"), &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("refused");
    assert!(matches!(err, AlipayError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn transport_error_messages_do_not_carry_the_token() {
    let clock = ManualClock::new(start_time());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = client(&format!("http://{addr}/gateway.do"), &clock)
        .mini_version_build_query(
            &token(),
            &api::BuildQueryRequest {
                app_version: "0.0.2".into(),
                bundle_id: None,
            },
        )
        .await
        .expect_err("refused");
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(TOKEN) && !text.contains("app_auth_token"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_response_signatures_are_response_errors() {
    // Signed with the wrong key.
    let mock = Mock::start(|_, seen| {
        let content = json!({"code": "10000", "msg": "Success", "commodity_id": "X"}).to_string();
        (
            200,
            response::sign_response(seen.method(), &content, &keys().isv_private),
        )
    })
    .await;
    let clock = ManualClock::new(start_time());
    let err = client(&mock.url, &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("bad sig");
    assert_eq!(err, AlipayError::Response(ResponseError::BadSignature));
    // Untrusted, so never read: transient, retried up to max_attempts.
    assert!(err.is_retryable());
    assert_eq!(mock.hits(), 3);
    mock.stop().await;

    // Content changed after signing.
    let mock = Mock::start(|_, seen| {
        (
            200,
            success(seen.method(), json!({"total_size": 0}))
                .replace("\"total_size\":0", "\"total_size\":1"),
        )
    })
    .await;
    let err = client(&mock.url, &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("tampered");
    assert_eq!(err, AlipayError::Response(ResponseError::BadSignature));
    mock.stop().await;

    // An unsigned success is never data.
    let mock = Mock::start(|_, seen| {
        (
            200,
            format!(
                "{{\"{}\":{{\"code\":\"10000\",\"msg\":\"Success\"}}}}",
                response::response_key(seen.method())
            ),
        )
    })
    .await;
    let err = client(&mock.url, &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("unsigned");
    assert_eq!(err, AlipayError::Response(ResponseError::Unsigned));
    mock.stop().await;

    // Unsigned, with a numeric success code (which `response::check` does not read as success).
    let mock = Mock::start(|_, seen| {
        let key = response::response_key(seen.method());
        (
            200,
            format!("{{\"{key}\":{{\"code\":10000,\"msg\":\"Success\"}}}}"),
        )
    })
    .await;
    let err = client(&mock.url, &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("unsigned numeric success");
    assert_eq!(err, AlipayError::Response(ResponseError::Unsigned));
    mock.stop().await;

    // Not JSON at all (an HTML error page with status 200).
    let mock = Mock::start(|_, _| (200, "<html>oops</html>".into())).await;
    let err = client(&mock.url, &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("html");
    assert!(
        matches!(err, AlipayError::Response(ResponseError::Malformed(_))),
        "{err:?}"
    );
    mock.stop().await;
}

#[tokio::test]
async fn unsigned_gateway_errors_are_transient_never_data() {
    // An unsigned error answer could come from anyone: its code and sub_code are never read. It
    // is a transient failure, retried up to max_attempts and then reported as `Unsigned`.
    for body in [
        r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}}"#,
        r#"{"alipay_open_servicemarket_order_query_response":{"code":"20001","msg":"Insufficient Token Permissions","sub_code":"aop.invalid-app-auth-token"}}"#,
    ] {
        let mock = Mock::start(move |_, _| (200, body.to_string())).await;
        let clock = ManualClock::new(start_time());
        let err = client_with_attempts(&mock.url, &clock, 3)
            .servicemarket_order_query(&OrderQueryRequest::new("C1"))
            .await
            .expect_err("unsigned");
        assert_eq!(err, AlipayError::Response(ResponseError::Unsigned));
        assert_eq!(err.code(), None);
        assert_eq!(err.sub_code(), None);
        assert!(!err.is_invalid_app_auth_token());
        assert!(err.is_retryable());
        assert_eq!(mock.hits(), 3);
        mock.stop().await;
    }
}

#[test]
fn slash_fallback_hands_back_exactly_the_verified_text() {
    // Alipay signed the unescaped text; the body carries `\/`. What we parse is what verified.
    let k = keys();
    let signed_text = r#"{"code":"10000","msg":"Success","url":"https://a/b"}"#;
    let sign = k.platform_private.sign_base64(signed_text.as_bytes());
    let body = format!(
        r#"{{"alipay_open_servicemarket_order_query_response":{},"sign":"{sign}"}}"#,
        signed_text.replace('/', "\\/")
    );
    let checked = response::check(
        body.as_bytes(),
        "alipay.open.servicemarket.order.query",
        &k.platform_public,
    )
    .unwrap();
    assert_eq!(checked.content, signed_text.as_bytes());
}

#[tokio::test]
async fn invalid_app_auth_token_is_recognised() {
    let mock = Mock::start(|_, seen| {
        (
            200,
            failure(
                seen.method(),
                "20001",
                "aop.invalid-app-auth-token",
                "无效的应用授权令牌",
            ),
        )
    })
    .await;
    let clock = ManualClock::new(start_time());
    let req = api::BuildQueryRequest {
        app_version: "0.0.2".into(),
        bundle_id: Some("com.alipay.alipaywallet".into()),
    };
    let err = client(&mock.url, &clock)
        .mini_version_build_query(&token(), &req)
        .await
        .expect_err("20001");
    assert!(err.is_invalid_app_auth_token());
    assert!(!err.is_retryable());
    assert_eq!(mock.hits(), 1);
    mock.stop().await;
}

#[tokio::test]
async fn invalid_signature_echo_is_masked() {
    let mock = Mock::start(|_, seen| {
        let echo = format!(
            "验签出错，网关生成的验签字符串为：app_auth_token={TOKEN}&amp;app_id={APP_ID}&amp;biz_content={{\"app_version\":\"0.0.2\"}}&amp;charset=utf-8"
        );
        (200, failure(seen.method(), "40002", "isv.invalid-signature", &echo))
    })
    .await;
    let clock = ManualClock::new(start_time());
    let req = api::BuildQueryRequest {
        app_version: "0.0.2".into(),
        bundle_id: None,
    };
    let err = client(&mock.url, &clock)
        .mini_version_build_query(&token(), &req)
        .await
        .expect_err("40002");
    assert_eq!(err.sub_code(), Some("isv.invalid-signature"));
    let text = format!("{err} {err:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("app_auth_token=***"), "{text}");
    assert!(text.contains("app_id=2021004100000001"), "{text}");
    mock.stop().await;
}

#[tokio::test]
async fn app_auth_token_goes_in_the_query_only_when_given() {
    let mock = Mock::start(|_, seen| {
        let fields = match seen.method() {
            m if m == api::METHOD_TOKEN_APP => json!({"app_auth_token": "NEWTOKEN", "app_refresh_token": "NEWREFRESH",
                "auth_app_id": "2021004199990002", "user_id": "2088102177846880", "expires_in": 31536000, "re_expires_in": "32140800"}),
            _ => json!({}),
        };
        (200, success(seen.method(), fields))
    })
    .await;
    let clock = ManualClock::new(start_time());
    let client = client(&mock.url, &clock);

    client
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect("order query");
    let tokens = client
        .auth_token_app(&TokenAppRequest::authorization_code(SecretString::from(
            "CODE-1",
        )))
        .await
        .expect("token.app");
    let upload = VersionUploadRequest {
        app_version: "0.0.3".into(),
        template_id: "T".into(),
        ..Default::default()
    };
    client
        .mini_version_upload(&token(), &upload)
        .await
        .expect("upload");

    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert!(s.signature_ok, "{}", s.method());
        assert!(
            !s.form.contains_key("app_auth_token"),
            "{}: token in the body",
            s.method()
        );
        assert!(
            !String::from_utf8_lossy(&s.raw_body).contains(TOKEN),
            "{}: token in the body",
            s.method()
        );
    }
    assert!(
        !seen[0].query.contains_key("app_auth_token"),
        "order.query is called as the ISV app"
    );
    assert!(
        !seen[1].query.contains_key("app_auth_token"),
        "token.app is called as the ISV app"
    );
    assert_eq!(
        seen[1].form["biz_content"],
        r#"{"grant_type":"authorization_code","code":"CODE-1"}"#
    );
    assert_eq!(
        seen[2].query.get("app_auth_token").map(String::as_str),
        Some(TOKEN)
    );

    // token.app: secrets parsed into SecretString, never in Debug output.
    assert_eq!(
        tokens
            .token
            .app_auth_token
            .as_ref()
            .map(|t| t.expose_secret()),
        Some("NEWTOKEN")
    );
    assert_eq!(tokens.token.re_expires_in, Some(32140800));
    let all = tokens.all_tokens();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].auth_app_id.as_deref(), Some("2021004199990002"));
    let debug = format!("{tokens:?}");
    assert!(
        !debug.contains("NEWTOKEN") && !debug.contains("NEWREFRESH"),
        "{debug}"
    );
    mock.stop().await;
}

#[tokio::test]
async fn multipart_audit_apply_signs_text_fields_and_not_files() {
    let mock = Mock::start(|_, seen| {
        (
            200,
            success(
                seen.method(),
                json!({"speed_up": "true", "speed_up_memo": "加急中"}),
            ),
        )
    })
    .await;
    let clock = ManualClock::new(start_time());
    let logo = FilePart {
        name: "app_logo".into(),
        filename: "logo.png".into(),
        bytes: b"\x89PNG\r\n\x1a\nnot really a png".to_vec(),
        mime: "image/png".into(),
    };
    let shot = FilePart {
        name: "first_screen_shot".into(),
        filename: "shot 1.jpg".into(),
        bytes: vec![0xff, 0xd8, 0xff, 0x00, 0x10],
        mime: "image/jpeg".into(),
    };
    let req = AuditApplyRequest {
        app_version: "0.0.3".into(),
        version_desc: Some(
            "本次更新：修复了若干问题，并优化了下单流程的体验 & 性能 (v0.0.3)".into(),
        ),
        auto_online: Some(true),
        audit_rule: Some("BASE_PROMOTE".into()),
        region_type: Some("CHINA".into()),
        service_phone: Some("0571-88888888".into()),
        memo: Some(String::new()),
        test_password: Some(SecretString::from("pw-1")),
        files: vec![logo.clone(), shot.clone()],
        ..Default::default()
    };
    let r = client(&mock.url, &clock)
        .mini_version_audit_apply(&token(), &req)
        .await
        .expect("audit.apply");
    assert_eq!(r.speed_up.as_deref(), Some("true"));
    assert_eq!(r.speed_up_memo.as_deref(), Some("加急中"));

    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert!(
        s.content_type.starts_with("multipart/form-data"),
        "{}",
        s.content_type
    );
    // The signature verified over query + text parts only: the files are not signed.
    assert!(s.signature_ok);
    let expected_text: BTreeMap<String, String> = req.text_fields().into_iter().collect();
    assert_eq!(s.form, expected_text, "text parts");
    assert!(!s.form.contains_key("memo"), "empty fields are not sent");
    assert!(!s.form.contains_key("biz_content"));
    assert_eq!(s.form["auto_online"], "true");
    assert_eq!(
        s.query.get("app_auth_token").map(String::as_str),
        Some(TOKEN)
    );
    for key in [
        "app_id",
        "method",
        "sign",
        "timestamp",
        "charset",
        "sign_type",
        "version",
        "format",
    ] {
        assert!(s.query.contains_key(key), "{key} not in the query");
        assert!(!s.form.contains_key(key), "{key} in the body");
    }
    assert_eq!(s.files.len(), 2);
    for (sent, got) in [&logo, &shot].into_iter().zip(&s.files) {
        assert_eq!(got.name, sent.name);
        assert_eq!(got.filename.as_deref(), Some(sent.filename.as_str()));
        assert_eq!(got.content_type.as_deref(), Some(sent.mime.as_str()));
        assert_eq!(got.data, sent.bytes);
    }
    // Had the files been signed, the content would differ.
    let mut with_files: Vec<(&str, &str)> = s
        .query
        .iter()
        .chain(&s.form)
        .filter(|(k, _)| k.as_str() != "sign")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    with_files.push(("app_logo", "logo.png"));
    assert!(!verify_base64(
        &keys().isv_public,
        &sign::request_content(with_files),
        &s.query["sign"]
    ));
    mock.stop().await;
}

#[tokio::test]
async fn empty_token_and_non_object_biz_content_are_refused_before_sending() {
    let mock = Mock::start(|_, seen| (200, success(seen.method(), json!({})))).await;
    let clock = ManualClock::new(start_time());
    let client = client(&mock.url, &clock);
    let err = client
        .mini_version_online(
            &SecretString::from(""),
            &VersionOnlineRequest {
                app_version: "1.0.0".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("empty token");
    assert!(matches!(err, AlipayError::Decode(_)), "{err:?}");
    let err = client
        .merchant_order_sync(&token(), &json!(["not", "an", "object"]))
        .await
        .expect_err("array");
    assert!(matches!(err, AlipayError::Decode(_)), "{err:?}");
    assert_eq!(mock.hits(), 0);
    mock.stop().await;
}

/// The SDK-signed response vectors, served verbatim, through the typed calls.
#[tokio::test]
async fn client_accepts_the_sdk_signed_response_vectors() {
    let vectors = records("responses.jsonl");
    let bodies: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let served = bodies.clone();
    let mock = Mock::start(move |hit, _| (200, served.lock().expect("lock")[hit].clone())).await;
    let clock = ManualClock::new(start_time());
    // One attempt each, so hit N answers call N.
    let client = client_with_attempts(&mock.url, &clock, 1);

    for r in &vectors {
        let id = s(r, "id");
        bodies
            .lock()
            .expect("lock")
            .push(s(r, "http_body").to_string());
        let method = s(r, "method");
        let outcome: Result<String, AlipayError> = match method {
            m if m == api::METHOD_ORDER_QUERY => client
                .servicemarket_order_query(&OrderQueryRequest::new("C"))
                .await
                .map(|r| format!("order_status={:?}", r.order_level_status())),
            m if m == api::METHOD_TOKEN_APP => client
                .auth_token_app(&TokenAppRequest::refresh(SecretString::from("R")))
                .await
                .map(|r| format!("tokens={}", r.all_tokens().len())),
            m if m == api::METHOD_MERCHANT_ORDER_SYNC => client
                .merchant_order_sync(&token(), &json!({"out_biz_no": "X"}))
                .await
                .map(|r| format!("record_id={:?}", r.record_id)),
            m if m == api::METHOD_VERSION_UPLOAD => client
                .mini_version_upload(
                    &token(),
                    &VersionUploadRequest {
                        app_version: "1.0.0".into(),
                        template_id: "T".into(),
                        ..Default::default()
                    },
                )
                .await
                .map(|r| format!("need_rotation={:?}", r.need_rotation)),
            other => panic!("{id}: no typed call for {other}"),
        };
        let content: Value = serde_json::from_str(s(r, "sign_content")).expect("content json");
        match s(r, "shape") {
            "success" => {
                let text = outcome.unwrap_or_else(|e| panic!("{id}: {e}"));
                println!("{id}: {text}");
            }
            shape => {
                let err = outcome.expect_err(id);
                assert_eq!(err.code(), content["code"].as_str(), "{id} ({shape})");
                assert_eq!(
                    err.sub_code(),
                    content["sub_code"].as_str(),
                    "{id} ({shape})"
                );
                println!("{id}: {err}");
            }
        }
    }
    assert_eq!(mock.hits(), vectors.len());
    mock.stop().await;
}

#[tokio::test]
async fn encrypted_responses_are_verified_then_decrypted() {
    use isv_lifecycle::alipay::AesKey;
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";
    let plain = json!({"code": "10000", "msg": "Success", "commodity_id": "APPMK1",
        "status": "MERCHANT_ORDED", "order_items": [{"order_status": "DOING"}]})
    .to_string();
    let ciphertext = AesKey::parse(KEY).unwrap().encrypt_base64(plain.as_bytes());
    // The value is a JSON string; the signature covers it, quotes included.
    let body_for = |c: &str| {
        response::sign_response(
            "alipay.open.servicemarket.order.query",
            &format!("\"{c}\""),
            &keys().platform_private,
        )
    };
    let good = body_for(&ciphertext);
    let mock = Mock::start(move |_, _| (200, good.clone())).await;
    let clock = ManualClock::new(start_time());
    let with_key =
        client(&mock.url, &clock).with_aes_key(Some(Arc::new(AesKey::parse(KEY).unwrap())));
    let r = with_key
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect("decrypted");
    assert_eq!(r.commodity_id.as_deref(), Some("APPMK1"));
    assert_eq!(r.order_items[0].order_status, Some(ItemOrderStatus::Doing));
    // Without a key: a clear decode error, not data.
    let err = client(&mock.url, &clock)
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("no key");
    assert!(
        matches!(&err, AlipayError::Decode(m) if m.contains("alipay.aes_key")),
        "{err:?}"
    );
    mock.stop().await;

    // Ciphertext changed after signing: refused before any decryption.
    let mut tampered = body_for(&ciphertext);
    let at = tampered.find(&ciphertext[..8]).unwrap();
    tampered.replace_range(at..at + 1, if &ciphertext[..1] == "A" { "B" } else { "A" });
    let mock = Mock::start(move |_, _| (200, tampered.clone())).await;
    let err = client(&mock.url, &clock)
        .with_aes_key(Some(Arc::new(AesKey::parse(KEY).unwrap())))
        .servicemarket_order_query(&OrderQueryRequest::new("C1"))
        .await
        .expect_err("tampered");
    assert_eq!(err, AlipayError::Response(ResponseError::BadSignature));
    mock.stop().await;
}
