//! The "sign content" string and RSA2 over it.

use super::keys::{PrivateKey, PublicKey};

/// `k=v&k=v` over the pairs sorted by name bytes, values verbatim (no encoding, no trimming).
/// Names in `exclude` are left out; empty values are left out only when `skip_empty`.
pub fn content<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    exclude: &[&str],
    skip_empty: bool,
) -> Vec<u8> {
    let mut kept: Vec<(&[u8], &[u8])> = pairs
        .into_iter()
        .filter(|(k, v)| {
            !exclude.iter().any(|x| x.as_bytes() == *k) && !(skip_empty && v.is_empty())
        })
        .collect();
    kept.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let len = kept.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(len);
    for (i, (k, v)) in kept.into_iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
    out
}

/// Sign content of an outbound request: every parameter but `sign`, empty values skipped
/// (Java's `getSignContent`; we never send empty values anyway).
pub fn request_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    content(
        params
            .into_iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        &["sign"],
        true,
    )
}

pub fn sign_request<'a>(
    key: &PrivateKey,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    key.sign_base64(&request_content(params))
}

/// Decodes a signature strictly: canonical standard base64 with padding, exactly `expected_len`
/// bytes once decoded.
pub fn decode_signature(text: &[u8], expected_len: usize) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    (bytes.len() == expected_len).then_some(bytes)
}

pub fn verify(key: &PublicKey, content: &[u8], signature: &[u8]) -> bool {
    key.verify(content, signature)
}
