//! OpenAPI responses are verified over the raw bytes of the `<method>_response` (or
//! `error_response`) value exactly as received, before anything is parsed. A small scanner finds
//! the top-level members; it never re-serialises.

use super::keys::PublicKey;
use super::sign;
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("response body is not a JSON object: {0}")]
    Malformed(&'static str),
    #[error("response has neither `{0}` nor `error_response`")]
    MissingResponse(String),
    #[error("response is not signed")]
    Unsigned,
    #[error("response signature does not verify")]
    BadSignature,
    /// Certificate mode: the response names an Alipay certificate we do not hold and could not
    /// obtain, or one that does not chain to the configured root (refused; support alerted).
    #[error("response signed under Alipay certificate {sn}, which is not trusted: {reason}")]
    UntrustedCertificate { sn: String, reason: String },
}

/// A response whose signature verified. `content` is the JSON text of the response value that
/// the signature covers: the raw bytes as received, or, when only the `\/`-unescaped form
/// verified, exactly that unescaped text (we parse what we verified, nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedResponse<'a> {
    pub content: std::borrow::Cow<'a, [u8]>,
    pub is_error_response: bool,
    /// Always true: an unsigned response is refused (`ResponseError::Unsigned`). Kept so callers
    /// can assert it.
    pub signed: bool,
}

/// Raw byte ranges of the top-level members of a JSON object: (name, value).
fn top_level_members(body: &[u8]) -> Result<Vec<(Range<usize>, Range<usize>)>, ResponseError> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return Err(ResponseError::Malformed("does not start with `{`"));
    }
    i = skip_ws(body, i + 1);
    let mut members = Vec::new();
    if body.get(i) == Some(&b'}') {
        return Ok(members);
    }
    loop {
        if body.get(i) != Some(&b'"') {
            return Err(ResponseError::Malformed("member name expected"));
        }
        let name_end = string_end(body, i).ok_or(ResponseError::Malformed("unterminated name"))?;
        let name = i + 1..name_end - 1;
        i = skip_ws(body, name_end);
        if body.get(i) != Some(&b':') {
            return Err(ResponseError::Malformed("`:` expected"));
        }
        i = skip_ws(body, i + 1);
        let value_end = value_end(body, i).ok_or(ResponseError::Malformed("unterminated value"))?;
        members.push((name, i..value_end));
        i = skip_ws(body, value_end);
        match body.get(i) {
            Some(b',') => i = skip_ws(body, i + 1),
            Some(b'}') => return Ok(members),
            _ => return Err(ResponseError::Malformed("`,` or `}` expected")),
        }
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `start` (a `"`).
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of the value starting at `start`: objects and arrays by depth, honouring strings.
fn value_end(body: &[u8], start: usize) -> Option<usize> {
    match body.get(start)? {
        b'"' => string_end(body, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < body.len() {
                match body[i] {
                    b'"' => {
                        i = string_end(body, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while i < body.len() && !matches!(body[i], b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// The `<method with _>_response` member name.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

const SIGNATURE_LEN: usize = 256;

/// A response located in its body, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<'a> {
    /// Raw JSON text of the `<method>_response` (or `error_response`) value.
    pub content: &'a [u8],
    pub is_error_response: bool,
    /// `sign`, when present.
    pub sign: Option<String>,
    /// Certificate mode: the SN of the Alipay certificate whose key signed this response.
    pub alipay_cert_sn: Option<String>,
}

/// Finds the response value, `sign` and `alipay_cert_sn` without reading anything else.
pub fn locate<'a>(body: &'a [u8], method: &str) -> Result<Located<'a>, ResponseError> {
    let members = top_level_members(body)?;
    let wanted = response_key(method);
    let find = |name: &str| {
        members
            .iter()
            .find(|(n, _)| &body[n.clone()] == name.as_bytes())
            .map(|(_, v)| v.clone())
    };
    let (content, is_error_response) = match find(&wanted) {
        Some(range) => (range, false),
        None => (
            find("error_response").ok_or(ResponseError::MissingResponse(wanted))?,
            true,
        ),
    };
    let text = |name: &str| -> Result<Option<String>, ResponseError> {
        find(name)
            .map(|r| {
                serde_json::from_slice::<String>(&body[r]).map_err(|_| {
                    ResponseError::Malformed("`sign` or `alipay_cert_sn` is not a string")
                })
            })
            .transpose()
    };
    Ok(Located {
        content: &body[content],
        is_error_response,
        sign: text("sign")?,
        alipay_cert_sn: text("alipay_cert_sn")?.filter(|s| !s.is_empty()),
    })
}

pub fn check<'a>(
    body: &'a [u8],
    method: &str,
    key: &PublicKey,
) -> Result<CheckedResponse<'a>, ResponseError> {
    verify_located(locate(body, method)?, key)
}

/// Verifies a located response with `key`.
pub fn verify_located<'a>(
    located: Located<'a>,
    key: &PublicKey,
) -> Result<CheckedResponse<'a>, ResponseError> {
    let Located {
        content,
        is_error_response,
        sign,
        ..
    } = located;
    // An unsigned answer is never data, not even an error: its `code`/`sub_code` could be
    // anyone's (an unsigned `20001` would end an authorization, an unsigned
    // `VERSION_ALREADY_EXIST` would skip an upload). The caller treats it as transient.
    let sign_text = sign.ok_or(ResponseError::Unsigned)?;
    let signature = sign::decode_signature(sign_text.as_bytes(), SIGNATURE_LEN)
        .ok_or(ResponseError::BadSignature)?;
    let content = if sign::verify(key, content, &signature) {
        std::borrow::Cow::Borrowed(content)
    } else if content.windows(2).any(|w| w == b"\\/") {
        let unescaped = unescape_slashes(content);
        if !sign::verify(key, &unescaped, &signature) {
            return Err(ResponseError::BadSignature);
        }
        std::borrow::Cow::Owned(unescaped)
    } else {
        return Err(ResponseError::BadSignature);
    };
    Ok(CheckedResponse {
        content,
        is_error_response,
        signed: true,
    })
}

/// Java's serialiser writes `/` as `\/`; Alipay may have signed either form.
fn unescape_slashes(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        if content[i] == b'\\' && content.get(i + 1) == Some(&b'/') {
            out.push(b'/');
            i += 2;
        } else {
            out.push(content[i]);
            i += 1;
        }
    }
    out
}

/// Builds a signed response body as Alipay does (for the simulator and tests).
pub fn sign_response(
    method_or_error_key: &str,
    content_json: &str,
    key: &super::keys::PrivateKey,
) -> String {
    let sign = key.sign_base64(content_json.as_bytes());
    let name = if method_or_error_key == "error_response" {
        method_or_error_key.to_string()
    } else {
        response_key(method_or_error_key)
    };
    format!("{{\"{name}\":{content_json},\"sign\":\"{sign}\"}}")
}

/// `sign_response` in certificate mode: `alipay_cert_sn` names the signing certificate.
pub fn sign_response_with_sn(
    method_or_error_key: &str,
    content_json: &str,
    key: &super::keys::PrivateKey,
    alipay_cert_sn: &str,
) -> String {
    let sign = key.sign_base64(content_json.as_bytes());
    let name = if method_or_error_key == "error_response" {
        method_or_error_key.to_string()
    } else {
        response_key(method_or_error_key)
    };
    format!(
        "{{\"{name}\":{content_json},\"alipay_cert_sn\":\"{alipay_cert_sn}\",\"sign\":\"{sign}\"}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_raw_members_with_braces_in_strings() {
        let body = br#"{ "a_response" : {"x":"}{\"","y":[1,{"z":2}]} , "sign":"abc"}"#;
        let m = top_level_members(body).unwrap();
        assert_eq!(&body[m[0].1.clone()], br#"{"x":"}{\"","y":[1,{"z":2}]}"#);
        assert_eq!(&body[m[1].1.clone()], br#""abc""#);
    }

    #[test]
    fn scanner_rejects_garbage() {
        assert!(top_level_members(b"[1]").is_err());
        assert!(top_level_members(br#"{"a":{"#).is_err());
        assert!(top_level_members(br#"{"a" 1}"#).is_err());
    }
}
