//! Verification of gateway messages, exactly as `alipay-protocol.md` "Our decisions" orders:
//! one strict form decoding of the raw bytes, RSA2 only, a strictly encoded 256-byte signature,
//! empty values kept, `sign_type` dropped (V1) and then kept (V2). The variant that matched is
//! recorded with the message.

use super::form::{self, FormError};
use super::keys::PublicKey;
use super::sign;
use std::collections::BTreeMap;

/// Which sign-content rule verified a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignVariant {
    /// `sign` and `sign_type` left out (Java `rsaCheckV1`).
    V1,
    /// only `sign` left out (Java `rsaCheckV2`).
    V2,
}

impl SignVariant {
    pub fn as_str(self) -> &'static str {
        match self {
            SignVariant::V1 => "v1",
            SignVariant::V2 => "v2",
        }
    }
}

/// Why a message was refused. Each has a short stable code for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed form body: {0}")]
    Form(#[from] FormError),
    #[error("no `sign` parameter")]
    MissingSign,
    #[error("`sign` is not canonical base64 of a 2048-bit signature")]
    SignEncoding,
    #[error("`sign_type` {0:?} is not RSA2")]
    SignType(String),
    #[error("signature does not verify under either content variant")]
    BadSignature,
    #[error("parameter `{0}` is not valid UTF-8")]
    NotUtf8(String),
    /// `charset` names an encoding we do not read (we read UTF-8, GBK, GB2312 and GB18030).
    #[error("charset {0:?} is not one we read (UTF-8, GBK, GB2312, GB18030)")]
    UnknownCharset(String),
    /// Certificate mode: the message names an Alipay certificate we do not hold (yet). Alipay
    /// retries; the certificate is learned from the next OpenAPI answer that names it.
    #[error("alipay_cert_sn {0:?} names no Alipay certificate we hold")]
    UnknownCertSn(String),
    /// A value is not valid in the message's own (non-UTF-8) charset.
    #[error("parameter `{0}` is not valid {1}")]
    NotInCharset(String, &'static str),
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Form(FormError::DuplicateKey(_)) => "duplicate_key",
            Rejection::Form(_) => "malformed_form",
            Rejection::MissingSign => "missing_sign",
            Rejection::SignEncoding => "sign_encoding",
            Rejection::SignType(_) => "sign_type",
            Rejection::BadSignature => "bad_signature",
            Rejection::NotUtf8(_) => "not_utf8",
            Rejection::UnknownCharset(_) => "unknown_charset",
            Rejection::NotInCharset(..) => "not_in_charset",
            Rejection::UnknownCertSn(_) => "unknown_cert_sn",
        }
    }
}

/// A message whose signature verified. `params` holds every received parameter (also `sign`).
#[derive(Debug, Clone)]
pub struct VerifiedMessage {
    pub params: BTreeMap<String, String>,
    pub variant: SignVariant,
}

impl VerifiedMessage {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// The encodings a message's `charset` may name. The signature covers the bytes as received;
/// values are turned into text with the message's charset only after verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    /// GBK; `GB2312` is read as GBK, its superset (as WHATWG and Java's decoders do).
    Gbk,
    Gb18030,
}

impl Charset {
    /// `charset` as sent: absent or empty means UTF-8 (Alipay's default); names are matched
    /// without regard to case. `None` for any other name.
    pub fn from_param(value: Option<&[u8]>) -> Option<Charset> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Some(Charset::Utf8);
        };
        let name = std::str::from_utf8(value).ok()?.to_ascii_lowercase();
        match name.as_str() {
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "gbk" | "gb2312" => Some(Charset::Gbk),
            "gb18030" => Some(Charset::Gb18030),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::Gbk => "GBK",
            Charset::Gb18030 => "GB18030",
        }
    }

    /// Strict: malformed input is `None`, never replaced.
    pub fn decode(self, bytes: &[u8]) -> Option<String> {
        let encoding = match self {
            Charset::Utf8 => return String::from_utf8(bytes.to_vec()).ok(),
            Charset::Gbk => encoding_rs::GBK,
            Charset::Gb18030 => encoding_rs::GB18030,
        };
        encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|text| text.into_owned())
    }

    /// Encodes text in this charset (the simulator and tests send GBK messages).
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Gbk => encoding_rs::GBK.encode(text).0.into_owned(),
            Charset::Gb18030 => encoding_rs::GB18030.encode(text).0.into_owned(),
        }
    }
}

/// The message's charset, refused when unknown.
pub fn charset_of(pairs: &form::FormPairs) -> Result<Charset, Rejection> {
    let value = pairs.get("charset");
    Charset::from_param(value).ok_or_else(|| {
        Rejection::UnknownCharset(String::from_utf8_lossy(value.unwrap_or_default()).into_owned())
    })
}

/// Decodes every name and value with the message's charset (names are ASCII in practice).
pub fn decode_params(pairs: &form::FormPairs) -> Result<BTreeMap<String, String>, Rejection> {
    let charset = charset_of(pairs)?;
    let mut params = BTreeMap::new();
    for (k, v) in pairs.iter() {
        let text = |bytes: &[u8]| charset.decode(bytes);
        let k = text(k).ok_or_else(|| undecodable(charset, String::from_utf8_lossy(k).into()))?;
        let v = text(v).ok_or_else(|| undecodable(charset, k.clone()))?;
        params.insert(k, v);
    }
    Ok(params)
}

fn undecodable(charset: Charset, param: String) -> Rejection {
    match charset {
        Charset::Utf8 => Rejection::NotUtf8(param),
        other => Rejection::NotInCharset(param, other.name()),
    }
}

const SIGNATURE_LEN: usize = 256;

/// Certificate mode: the `alipay_cert_sn` a message names, if any (read before verifying, to
/// pick the key; the signature then covers it like any other parameter).
pub fn alipay_cert_sn(body: &[u8]) -> Result<Option<String>, Rejection> {
    let pairs = form::decode(body)?;
    Ok(pairs
        .get("alipay_cert_sn")
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// The `app_id` a message names, read before verification to pick the app whose keys verify it.
pub fn app_id(body: &[u8]) -> Result<Option<String>, Rejection> {
    let pairs = form::decode(body)?;
    Ok(pairs
        .get("app_id")
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned()))
}

pub fn verify(body: &[u8], key: &PublicKey) -> Result<VerifiedMessage, Rejection> {
    let pairs = form::decode(body)?;
    // An unknown charset is refused before any RSA work: we could not read the message anyway.
    charset_of(&pairs)?;
    let signature = pairs.get("sign").ok_or(Rejection::MissingSign)?;
    match pairs.get("sign_type") {
        None | Some(b"RSA2") => {}
        Some(other) => {
            return Err(Rejection::SignType(
                String::from_utf8_lossy(other).into_owned(),
            ));
        }
    }
    let signature =
        sign::decode_signature(signature, SIGNATURE_LEN).ok_or(Rejection::SignEncoding)?;
    // Certificate mode: whether a message's `alipay_cert_sn` is signed is unconfirmed
    // (alipay-protocol.md §9.4). Java's `rsaCertCheckV1/V2` sign it like any parameter; a
    // third-party SDK leaves it out. Signed first, then left out, only when it is there.
    let has_cert_sn = pairs.get("alipay_cert_sn").is_some();
    let variant = [
        (SignVariant::V1, &["sign", "sign_type"][..]),
        (SignVariant::V2, &["sign"][..]),
        (
            SignVariant::V1,
            &["sign", "sign_type", "alipay_cert_sn"][..],
        ),
        (SignVariant::V2, &["sign", "alipay_cert_sn"][..]),
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| *i < 2 || has_cert_sn)
    .map(|(_, v)| v)
    .find(|(_, exclude)| {
        let content = sign::content(pairs.iter(), exclude, false);
        sign::verify(key, &content, &signature)
    })
    .map(|(variant, _)| variant)
    .ok_or(Rejection::BadSignature)?;
    let params = decode_params(&pairs)?;
    Ok(VerifiedMessage { params, variant })
}

/// Like `sign_message`, with names and values encoded in `charset` (signed over those bytes,
/// percent-encoded as such): what a `charset=GBK` message looks like. `params` should carry the
/// matching `charset`.
pub fn sign_message_in(
    params: &[(String, String)],
    charset: Charset,
    key: &super::keys::PrivateKey,
) -> String {
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = params
        .iter()
        .map(|(k, v)| (charset.encode(k), charset.encode(v)))
        .collect();
    let content = sign::content(
        encoded.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        &["sign", "sign_type"],
        false,
    );
    let signature = key.sign_base64(&content);
    let mut all: Vec<(&[u8], &[u8])> = encoded
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    all.push((b"sign", signature.as_bytes()));
    form::encode(all)
}

/// Builds a signed form body the way Alipay's platform does (V1 content), for the simulator and
/// tests. `params` must not contain `sign`.
pub fn sign_message(params: &[(String, String)], key: &super::keys::PrivateKey) -> String {
    let content = sign::content(
        params.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        &["sign", "sign_type"],
        false,
    );
    let signature = key.sign_base64(&content);
    let mut all: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.push(("sign", &signature));
    form::encode(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> super::super::keys::PrivateKey {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/keys/alipay_platform_private_pkcs8.pem"
        );
        super::super::keys::PrivateKey::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn gbk_message_verifies_over_its_bytes_and_decodes_to_text() {
        let key = platform();
        for (charset, label) in [
            (Charset::Gbk, "GBK"),
            (Charset::Gbk, "gb2312"),
            (Charset::Gb18030, "GB18030"),
        ] {
            let params = pairs(&[
                ("charset", label),
                ("title", "小程序模板服务"),
                ("contactor", "张三"),
            ]);
            let body = sign_message_in(&params, charset, &key);
            // The body's bytes are not UTF-8: 张 in GBK is D5 C5.
            assert!(body.contains("%D5%C5"), "{body}");
            let verified = verify(body.as_bytes(), &key.public_key()).unwrap();
            assert_eq!(verified.get("title"), Some("小程序模板服务"));
            assert_eq!(verified.get("contactor"), Some("张三"));
        }
        // The same GBK bytes labelled UTF-8 verify (same bytes) but are refused as not UTF-8.
        let params = pairs(&[("charset", "UTF-8"), ("contactor", "张三")]);
        let body = sign_message_in(&params, Charset::Gbk, &key);
        assert_eq!(
            verify(body.as_bytes(), &key.public_key())
                .unwrap_err()
                .code(),
            "not_utf8"
        );
    }

    #[test]
    fn alipay_cert_sn_signed_or_left_out_both_verify() {
        let key = platform();
        let base = pairs(&[("charset", "UTF-8"), ("x", "1"), ("alipay_cert_sn", "abc")]);
        // Signed over everything (sign_message signs every given parameter).
        let body = sign_message(&base, &key);
        assert!(verify(body.as_bytes(), &key.public_key()).is_ok());
        // Signed without it, then sent with it.
        let without: Vec<_> = base
            .iter()
            .filter(|(k, _)| k != "alipay_cert_sn")
            .cloned()
            .collect();
        let body = format!("{}&alipay_cert_sn=abc", sign_message(&without, &key));
        assert_eq!(
            verify(body.as_bytes(), &key.public_key()).unwrap().variant,
            SignVariant::V1
        );
        // Any other added parameter still breaks the signature.
        let body = format!("{}&other=abc", sign_message(&without, &key));
        assert_eq!(
            verify(body.as_bytes(), &key.public_key()).unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn unknown_charset_is_refused() {
        let key = platform();
        for label in ["latin1", "Big5", "utf-16"] {
            let params = pairs(&[("charset", label), ("x", "1")]);
            let body = sign_message(&params, &key);
            let err = verify(body.as_bytes(), &key.public_key()).unwrap_err();
            assert_eq!(err, Rejection::UnknownCharset(label.into()));
            assert_eq!(err.code(), "unknown_charset");
        }
        assert_eq!(Charset::from_param(None), Some(Charset::Utf8));
        assert_eq!(Charset::from_param(Some(b"")), Some(Charset::Utf8));
        assert_eq!(Charset::from_param(Some(b"utf-8")), Some(Charset::Utf8));
    }
}
