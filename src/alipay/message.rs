//! What a verified gateway message is, read leniently: Alipay adds fields, and the seed marks many
//! shapes as unconfirmed, so unknown fields are kept and only what we act on is required.

use super::time;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::Value;
use std::collections::BTreeMap;

pub type Params = BTreeMap<String, String>;

pub const KIND_ORDER: &str = "servicemarket_order_notify";
pub const KIND_AUTH: &str = "open_app_auth_notify";
pub const METHOD_AUTH: &str = "alipay.open.auth.appauth.notify";
pub const METHOD_AUTH_CANCELLED: &str = "alipay.open.auth.appauth.cancelled";
pub const METHOD_AUDIT_PASSED: &str = "alipay.open.mini.version.audit.passed";
pub const METHOD_AUDIT_REJECTED: &str = "alipay.open.mini.version.audit.rejected";

/// Old-style messages name themselves in `notify_type`; message-service ones in `msg_method`.
pub fn kind(params: &Params) -> String {
    non_empty(params, "notify_type")
        .or_else(|| non_empty(params, "msg_method"))
        .unwrap_or("unknown")
        .to_string()
}

/// The message's identity for deduplication: `notify_id`, else one derived from its signature
/// (Alipay's signatures are deterministic, so a redelivery carries the same one).
pub fn dedup_key(params: &Params) -> String {
    if let Some(id) = non_empty(params, "notify_id") {
        return id.to_string();
    }
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        params.get("sign").map(String::as_bytes).unwrap_or_default(),
    );
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sig:{hex}")
}

/// A parameter's value, with Alipay's literal `"null"` and empty strings read as absent.
pub fn non_empty<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "null")
}

/// Why an `encrypt_type` message could not be read. Retrying cannot help until the key is fixed;
/// the message is kept and can be replayed then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("encrypt_type {0:?} is not AES")]
    UnknownEncryptType(String),
    #[error(
        "biz_content is AES-encrypted and no AES key is configured for this app (alipay.aes_key)"
    )]
    NoKey,
    #[error("biz_content cannot be decrypted: {0} (check alipay.aes_key, then replay)")]
    Aes(#[from] super::aes::AesError),
    #[error("decrypted biz_content is not valid {0} text (wrong alipay.aes_key?)")]
    NotText(&'static str),
}

/// Decrypts an `encrypt_type=AES` message's `biz_content` in place, after its signature (over the
/// ciphertext) verified: AES-CBC, zero IV, PKCS#7, the plaintext in the message's charset. A
/// message without `encrypt_type` is left as it is.
pub fn decrypt_biz_content(
    params: &mut Params,
    key: Option<&super::aes::AesKey>,
) -> Result<(), DecryptError> {
    let Some(kind) = non_empty(params, "encrypt_type") else {
        return Ok(());
    };
    if !kind.eq_ignore_ascii_case("AES") {
        return Err(DecryptError::UnknownEncryptType(kind.to_string()));
    }
    let Some(ciphertext) = non_empty(params, "biz_content") else {
        return Ok(());
    };
    let key = key.ok_or(DecryptError::NoKey)?;
    let plain = key.decrypt_base64(ciphertext)?;
    // The charset was checked when the message was decoded; UTF-8 when absent.
    let charset = super::notify::Charset::from_param(params.get("charset").map(String::as_bytes))
        .unwrap_or(super::notify::Charset::Utf8);
    let text = charset
        .decode(&plain)
        .ok_or(DecryptError::NotText(charset.name()))?;
    params.insert("biz_content".into(), text);
    Ok(())
}

#[derive(Debug)]
pub enum GatewayMessage {
    Order(OrderNotification),
    Authorization(AuthorizationNotification),
    AuthorizationCancelled {
        auth_app_id: String,
        /// The token it cancels, when the message names one (`app_auth_token`): it ends that
        /// grant only. Redacted in `Debug`.
        token: Option<SecretString>,
        /// The cancellation's own time: the message's `utc_timestamp` (epoch ms, when Alipay sent
        /// it), else `cancel_time` in `biz_content`, else `notify_time` (Beijing time); `None`
        /// when it carries none (the caller uses the time it applies it).
        at: Option<DateTime<Utc>>,
    },
    /// `alipay.open.mini.version.audit.passed`: our build of the merchant's mini program passed.
    AuditPassed {
        mini_app_id: String,
        app_version: Option<String>,
        at: DateTime<Utc>,
    },
    /// `alipay.open.mini.version.audit.rejected`, with Alipay's reason.
    AuditRejected {
        mini_app_id: String,
        app_version: Option<String>,
        reason: String,
    },
    Other {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderNotification {
    pub commodity_order_id: String,
    pub merchant_pid: Option<String>,
    /// The merchant's name (`name`).
    pub merchant_name: Option<String>,
    /// The merchant's mini program (`consumer_miniAppId`): ties order, authorization and service.
    pub mini_app_id: Option<String>,
    pub item_code: Option<String>,
    pub title: Option<String>,
    pub total_price: Option<String>,
    pub ordered_at: DateTime<Utc>,
    /// The subscription period in days (`period_day`), as sent: the period's length when
    /// `order.query` gives no item dates.
    pub period_day: Option<String>,
}

pub struct AuthorizationNotification {
    pub auth_app_id: String,
    pub user_id: Option<String>,
    pub app_auth_token: SecretString,
    pub app_refresh_token: Option<SecretString>,
    pub auth_time_ms: i64,
}

impl std::fmt::Debug for AuthorizationNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationNotification")
            .field("auth_app_id", &self.auth_app_id)
            .field("user_id", &self.user_id)
            .field("auth_time_ms", &self.auth_time_ms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} message: {problem}")]
pub struct MessageError {
    pub kind: String,
    pub problem: String,
}

fn problem(kind: &str, problem: impl Into<String>) -> MessageError {
    MessageError {
        kind: kind.to_string(),
        problem: problem.into(),
    }
}

pub fn parse(params: &Params) -> Result<GatewayMessage, MessageError> {
    let kind = kind(params);
    let method = non_empty(params, "msg_method");
    if kind == KIND_ORDER {
        return parse_order(params).map(GatewayMessage::Order);
    }
    if kind == KIND_AUTH || method == Some(METHOD_AUTH) {
        return parse_authorization(params, &kind).map(GatewayMessage::Authorization);
    }
    if method == Some(METHOD_AUTH_CANCELLED) {
        let biz = biz_content(params, &kind)?;
        let auth_app_id = biz
            .get("auth_app_id")
            .and_then(Value::as_str)
            .or_else(|| non_empty(params, "auth_app_id"))
            .ok_or_else(|| problem(&kind, "biz_content has no auth_app_id"))?;
        let token = biz
            .get("app_auth_token")
            .and_then(json_text)
            .filter(|t| !t.is_empty())
            .map(SecretString::from);
        // The send time is documented for every message-service message; `cancel_time` is seen
        // in some bodies but not published, so it only stands in when the send time is missing.
        let at = non_empty(params, "utc_timestamp")
            .and_then(|t| t.parse().ok())
            .and_then(time::from_epoch_millis)
            .or_else(|| {
                biz.get("cancel_time")
                    .and_then(Value::as_str)
                    .and_then(time::parse_beijing)
            })
            .or_else(|| non_empty(params, "notify_time").and_then(time::parse_beijing));
        return Ok(GatewayMessage::AuthorizationCancelled {
            auth_app_id: auth_app_id.to_string(),
            token,
            at,
        });
    }
    if method == Some(METHOD_AUDIT_PASSED) || method == Some(METHOD_AUDIT_REJECTED) {
        let biz = biz_content(params, &kind)?;
        let mini_app_id = biz
            .get("mini_app_id")
            .and_then(Value::as_str)
            .or_else(|| non_empty(params, "msg_app_id"))
            .ok_or_else(|| problem(&kind, "biz_content has no mini_app_id"))?
            .to_string();
        let app_version = biz
            .get("mini_app_version")
            .and_then(Value::as_str)
            .map(str::to_string);
        if method == Some(METHOD_AUDIT_REJECTED) {
            let reason = biz
                .get("audit_reason")
                .and_then(json_text)
                .unwrap_or_else(|| "no reason given".into());
            return Ok(GatewayMessage::AuditRejected {
                mini_app_id,
                app_version,
                reason,
            });
        }
        // Message-service messages carry their send time as epoch milliseconds.
        let at = non_empty(params, "utc_timestamp")
            .and_then(|t| t.parse().ok())
            .and_then(time::from_epoch_millis)
            .or_else(|| non_empty(params, "notify_time").and_then(time::parse_beijing))
            .ok_or_else(|| problem(&kind, "no utc_timestamp"))?;
        return Ok(GatewayMessage::AuditPassed {
            mini_app_id,
            app_version,
            at,
        });
    }
    Ok(GatewayMessage::Other { kind })
}

fn parse_order(params: &Params) -> Result<OrderNotification, MessageError> {
    let get = |k: &str| non_empty(params, k).map(str::to_string);
    let commodity_order_id =
        get("commodity_order_id").ok_or_else(|| problem(KIND_ORDER, "no commodity_order_id"))?;
    let order_time = non_empty(params, "order_time")
        .or_else(|| non_empty(params, "notify_time"))
        .ok_or_else(|| problem(KIND_ORDER, "no order_time"))?;
    let ordered_at = time::parse_beijing(order_time).ok_or_else(|| {
        problem(
            KIND_ORDER,
            format!("order_time {order_time:?} is not yyyy-MM-dd HH:mm:ss"),
        )
    })?;
    Ok(OrderNotification {
        commodity_order_id,
        merchant_pid: get("merchant_pid"),
        merchant_name: get("name"),
        mini_app_id: get("consumer_miniAppId").or_else(|| get("mini_app_id")),
        item_code: get("item_code"),
        title: get("title"),
        total_price: get("total_price"),
        ordered_at,
        period_day: get("period_day"),
    })
}

fn biz_content(
    params: &Params,
    kind: &str,
) -> Result<serde_json::Map<String, Value>, MessageError> {
    let text = non_empty(params, "biz_content").ok_or_else(|| problem(kind, "no biz_content"))?;
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(problem(kind, "biz_content is not a JSON object")),
    }
}

fn parse_authorization(
    params: &Params,
    kind: &str,
) -> Result<AuthorizationNotification, MessageError> {
    let biz = biz_content(params, kind)?;
    // The authorization's fields sit in `detail`; some senders put them at the top of biz_content.
    let detail = biz.get("detail").and_then(Value::as_object).unwrap_or(&biz);
    let text = |k: &str| detail.get(k).and_then(json_text).filter(|v| !v.is_empty());
    let auth_app_id = text("auth_app_id")
        .or_else(|| non_empty(params, "auth_app_id").map(str::to_string))
        .ok_or_else(|| problem(kind, "no auth_app_id"))?;
    let token = text("app_auth_token").ok_or_else(|| problem(kind, "no app_auth_token"))?;
    let auth_time_ms = detail
        .get("auth_time")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .ok_or_else(|| problem(kind, "no auth_time in epoch milliseconds"))?;
    Ok(AuthorizationNotification {
        auth_app_id,
        user_id: text("user_id"),
        app_auth_token: SecretString::from(token),
        app_refresh_token: text("app_refresh_token").map(SecretString::from),
        auth_time_ms,
    })
}

/// Strings as they are, numbers as their decimal text ("number or string" fields).
fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Names whose values are secrets wherever they appear (top level or inside a JSON value).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("token")
        || n.contains("secret")
        || n.contains("password")
        || n == "app_auth_code"
        || n == "auth_code"
}

pub const MASK: &str = "***";

/// A copy of the parameters safe to store in clear and show to support: secret-named values
/// masked, also inside JSON-valued parameters such as `biz_content`.
///
/// Fails closed: a structured value (`biz_content`, or any value that starts like JSON) that does
/// not parse cannot be searched for secrets, so it is replaced by a placeholder naming its size.
/// An AES-encrypted `biz_content` (`encrypt_type=AES`) is ciphertext and kept as it is.
pub fn masked(params: &Params) -> Params {
    let encrypted = params
        .get("encrypt_type")
        .is_some_and(|t| t.eq_ignore_ascii_case("AES"));
    params
        .iter()
        .map(|(k, v)| {
            let value = if is_secret_name(k) {
                MASK.to_string()
            } else if k == "biz_content" && encrypted {
                v.clone()
            } else if k == "biz_content" && !v.is_empty() || looks_structured(v) {
                mask_json_text(v)
            } else {
                v.clone()
            };
            (k.clone(), value)
        })
        .collect()
}

fn looks_structured(text: &str) -> bool {
    matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['))
}

/// What is stored instead of a structured value that could not be read.
pub fn unreadable_placeholder(len: usize) -> String {
    format!("{MASK} (not valid JSON, {len} bytes, withheld)")
}

fn mask_json_text(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) => {
            if mask_value(&mut value) {
                value.to_string()
            } else {
                text.to_string()
            }
        }
        Err(_) => unreadable_placeholder(text.len()),
    }
}

fn mask_value(value: &mut Value) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_name(k) && !v.is_null() {
                    *v = Value::String(MASK.to_string());
                    changed = true;
                } else {
                    changed |= mask_value(v);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                changed |= mask_value(v);
            }
        }
        Value::String(s) if looks_structured(s) => {
            let masked = mask_json_text(s);
            if masked != *s {
                *s = masked;
                changed = true;
            }
        }
        _ => {}
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kind_prefers_notify_type() {
        assert_eq!(
            kind(&params(&[
                ("notify_type", KIND_AUTH),
                ("msg_method", METHOD_AUTH)
            ])),
            KIND_AUTH
        );
        assert_eq!(
            kind(&params(&[("msg_method", METHOD_AUTH_CANCELLED)])),
            METHOD_AUTH_CANCELLED
        );
        assert_eq!(kind(&params(&[("x", "1")])), "unknown");
    }

    #[test]
    fn masks_tokens_at_any_depth() {
        let p = params(&[
            ("app_auth_token", "T1"),
            (
                "biz_content",
                r#"{"detail":{"app_auth_token":"T2","n":1},"list":[{"app_refresh_token":"T3"}]}"#,
            ),
            ("other", "plain"),
        ]);
        let m = masked(&p);
        let all = format!("{m:?}");
        assert!(
            !all.contains("T1") && !all.contains("T2") && !all.contains("T3"),
            "{all}"
        );
        assert_eq!(m["other"], "plain");
    }

    #[test]
    fn masking_fails_closed_on_unparsable_structured_values() {
        let p = params(&[
            // Truncated JSON: the token inside cannot be found by parsing.
            ("biz_content", r#"{"detail":{"app_auth_token":"T1","n":1}"#),
            ("extra", r#"[{"refresh_token":"T2"}"#),
            ("nested", r#"{"inner":"{\"app_auth_token\":\"T3\""}"#),
            ("title", "套餐A"),
        ]);
        let m = masked(&p);
        let all = format!("{m:?}");
        assert!(
            !all.contains("T1") && !all.contains("T2") && !all.contains("T3"),
            "{all}"
        );
        assert_eq!(
            m["biz_content"],
            unreadable_placeholder(p["biz_content"].len())
        );
        assert_eq!(m["title"], "套餐A");
        // Ciphertext is kept: it is no secret in clear.
        let enc = params(&[("encrypt_type", "AES"), ("biz_content", "c2VjcmV0")]);
        assert_eq!(masked(&enc)["biz_content"], "c2VjcmV0");
    }

    #[test]
    fn aes_biz_content_is_decrypted_in_place() {
        let key = super::super::aes::AesKey::parse("AAECAwQFBgcICQoLDA0ODw==").unwrap();
        let plain = r#"{"auth_app_id":"2021004199990002"}"#;
        let mut p = params(&[
            ("msg_method", METHOD_AUTH_CANCELLED),
            ("utc_timestamp", "1718000007919"),
            ("encrypt_type", "AES"),
            ("charset", "UTF-8"),
            ("biz_content", &key.encrypt_base64(plain.as_bytes())),
        ]);
        let original = p.clone();
        assert_eq!(
            decrypt_biz_content(&mut p.clone(), None),
            Err(DecryptError::NoKey)
        );
        decrypt_biz_content(&mut p, Some(&key)).unwrap();
        assert_eq!(p["biz_content"], plain);
        match parse(&p).unwrap() {
            GatewayMessage::AuthorizationCancelled {
                auth_app_id, at, ..
            } => {
                assert_eq!(auth_app_id, "2021004199990002");
                assert_eq!(at.map(|t| t.timestamp_millis()), Some(1718000007919));
            }
            other => panic!("{other:?}"),
        }
        // The ciphertext alone is not JSON: parsing without decrypting fails.
        assert!(parse(&original).is_err());
        let mut odd = params(&[("encrypt_type", "DES"), ("biz_content", "x")]);
        assert_eq!(
            decrypt_biz_content(&mut odd, Some(&key)),
            Err(DecryptError::UnknownEncryptType("DES".into()))
        );
    }

    #[test]
    fn a_cancellation_names_its_token_and_carries_its_own_time() {
        use secrecy::ExposeSecret;
        let p = params(&[
            ("msg_method", METHOD_AUTH_CANCELLED),
            (
                "biz_content",
                r#"{"auth_app_id":"A","app_auth_token":"T1","cancel_time":"2024-06-10 12:00:01"}"#,
            ),
        ]);
        match parse(&p).unwrap() {
            GatewayMessage::AuthorizationCancelled { token, at, .. } => {
                assert_eq!(token.as_ref().map(|t| t.expose_secret()), Some("T1"));
                // Beijing time, stored as UTC.
                assert_eq!(
                    at.map(|t| t.to_rfc3339()),
                    Some("2024-06-10T04:00:01+00:00".into())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn authorization_auth_time_may_be_a_string() {
        let p = params(&[
            ("notify_type", KIND_AUTH),
            (
                "biz_content",
                r#"{"detail":{"auth_app_id":"A","app_auth_token":"T","auth_time":"1718000000002"}}"#,
            ),
        ]);
        match parse(&p).unwrap() {
            GatewayMessage::Authorization(a) => assert_eq!(a.auth_time_ms, 1718000000002),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn derived_key_without_notify_id_is_stable() {
        let p = params(&[("sign", "abc"), ("x", "1")]);
        assert_eq!(dedup_key(&p), dedup_key(&p));
        assert!(dedup_key(&p).starts_with("sig:"));
    }
}
