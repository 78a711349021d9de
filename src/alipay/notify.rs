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

const SIGNATURE_LEN: usize = 256;

pub fn verify(body: &[u8], key: &PublicKey) -> Result<VerifiedMessage, Rejection> {
    let pairs = form::decode(body)?;
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
    let variant = [
        (SignVariant::V1, &["sign", "sign_type"][..]),
        (SignVariant::V2, &["sign"][..]),
    ]
    .into_iter()
    .find(|(_, exclude)| {
        let content = sign::content(pairs.iter(), exclude, false);
        sign::verify(key, &content, &signature)
    })
    .map(|(variant, _)| variant)
    .ok_or(Rejection::BadSignature)?;
    let mut params = BTreeMap::new();
    for (k, v) in pairs.iter() {
        let k = String::from_utf8(k.to_vec())
            .map_err(|_| Rejection::NotUtf8(String::from_utf8_lossy(k).into_owned()))?;
        let v = String::from_utf8(v.to_vec()).map_err(|_| Rejection::NotUtf8(k.clone()))?;
        params.insert(k, v);
    }
    Ok(VerifiedMessage { params, variant })
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
