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

#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    if let Some(token) = parts.app_auth_token {
        params.push(("app_auth_token".into(), token.into()));
    }
    if let Some(biz) = parts.biz_content {
        params.push(("biz_content".into(), biz));
    }
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
