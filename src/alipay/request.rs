//! Building a signed OpenAPI 2.0 request: common parameters, `biz_content` (or, for upload APIs,
//! top-level text fields), the merchant's `app_auth_token` when acting for one, signed over
//! everything but `sign` and the file parts. Pure: the caller passes `now`.

use super::keys::PrivateKey;
use super::sign;
use super::time;
use chrono::{DateTime, Utc};

/// Parameters the official SDKs put in the URL query; everything else travels in the body.
const QUERY_PARAMS: &[&str] = &[
    "app_id",
    "method",
    "format",
    "charset",
    "sign_type",
    "sign",
    "timestamp",
    "version",
    "notify_url",
    "return_url",
    "auth_token",
    "app_auth_token",
    "app_cert_sn",
    "alipay_root_cert_sn",
];

#[derive(Clone, Default)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// JSON text of the business parameters, when the API takes them as `biz_content`.
    pub biz_content: Option<String>,
    /// Top-level text fields (upload APIs such as `alipay.open.mini.version.audit.apply`).
    pub text_fields: Vec<(String, String)>,
    /// The merchant's token, per call, when acting on a merchant's behalf.
    pub app_auth_token: Option<&'a str>,
}

/// A request ready to send: `query` goes in the URL, `form` in the body (form-encoded, or as the
/// text parts of a multipart body).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub method: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

pub fn build(
    app_id: &str,
    key: &PrivateKey,
    parts: RequestParts<'_>,
    now: DateTime<Utc>,
) -> SignedRequest {
    build_with(app_id, key, parts, now, None)
}

/// Certificate mode's two extra common parameters, signed and sent in the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSns {
    pub app_cert_sn: String,
    pub alipay_root_cert_sn: String,
}

/// `build`, in certificate mode when `cert_sns` is given.
pub fn build_with(
    app_id: &str,
    key: &PrivateKey,
    parts: RequestParts<'_>,
    now: DateTime<Utc>,
    cert_sns: Option<&CertSns>,
) -> SignedRequest {
    let timestamp = time::format_beijing(now);
    let mut params: Vec<(String, String)> = vec![
        ("app_id".into(), app_id.into()),
        ("method".into(), parts.method.into()),
        ("format".into(), "JSON".into()),
        ("charset".into(), "utf-8".into()),
        ("sign_type".into(), "RSA2".into()),
        ("timestamp".into(), timestamp),
        ("version".into(), "1.0".into()),
    ];
    if let Some(sns) = cert_sns {
        params.push(("app_cert_sn".into(), sns.app_cert_sn.clone()));
        params.push((
            "alipay_root_cert_sn".into(),
            sns.alipay_root_cert_sn.clone(),
        ));
    }
    if let Some(token) = parts.app_auth_token {
        params.push(("app_auth_token".into(), token.into()));
    }
    if let Some(biz) = parts.biz_content {
        params.push(("biz_content".into(), biz));
    }
    // Text fields come from our typed requests, never from a stranger: one named like a common
    // parameter is a bug that would send the name twice.
    debug_assert!(
        parts
            .text_fields
            .iter()
            .all(|(k, _)| !params.iter().any(|(c, _)| c == k)),
        "a text field repeats a common parameter"
    );
    params.extend(parts.text_fields);
    // Readings of empty values differ between SDKs (Java skips, Node signs them): send none.
    params.retain(|(_, v)| !v.is_empty());
    let signature = sign::sign_request(key, params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    params.push(("sign".into(), signature));
    let (query, form) = params
        .into_iter()
        .partition(|(k, _)| QUERY_PARAMS.contains(&k.as_str()));
    SignedRequest {
        method: parts.method.to_string(),
        query,
        form,
    }
}

/// Parameter names whose values never appear in Debug output.
fn is_secret(name: &str) -> bool {
    super::message::is_secret_name(name) || name == "sign"
}

fn redacted(params: &[(String, String)]) -> Vec<(&str, &str)> {
    params
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                if is_secret(k) {
                    "[redacted]"
                } else {
                    v.as_str()
                },
            )
        })
        .collect()
}

impl std::fmt::Debug for RequestParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestParts")
            .field("method", &self.method)
            .field(
                "biz_content_len",
                &self.biz_content.as_ref().map(String::len),
            )
            .field("text_fields", &redacted(&self.text_fields))
            .field("app_auth_token", &self.app_auth_token.map(|_| "[redacted]"))
            .finish()
    }
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("method", &self.method)
            .field("query", &redacted(&self.query))
            .field("form", &redacted(&self.form))
            .finish()
    }
}
