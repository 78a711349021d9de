//! `application/x-www-form-urlencoded` decoding and encoding, done once and strictly.
//!
//! Alipay signs the *decoded* values, so the decoder works on bytes (no lossy UTF-8 step before
//! verification) and refuses anything ambiguous: a duplicate key could let an attacker choose
//! which copy the verifier and the application each see.

use std::fmt;

/// The decoded pairs of one form body, in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPairs {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the body is empty")]
    Empty,
    #[error("malformed percent-escape at byte {0}")]
    BadEscape(usize),
    #[error("duplicate parameter `{0}`")]
    DuplicateKey(String),
    #[error("a parameter has an empty name")]
    EmptyKey,
}

impl FormPairs {
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k.as_slice() == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Decodes a form body: pairs split on `&`, name and value on the first `=`, `+` is a space and
/// `%XX` a byte. Empty segments (`a=1&&b=2`) are skipped; a segment without `=` is a name with an
/// empty value, as browsers and every SDK read it.
pub fn decode(body: &[u8]) -> Result<FormPairs, FormError> {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(24);
    let mut offset = 0;
    for segment in body.split(|b| *b == b'&') {
        let start = offset;
        offset += segment.len() + 1;
        if segment.is_empty() {
            continue;
        }
        let (raw_key, raw_value, value_start) = match segment.iter().position(|b| *b == b'=') {
            Some(i) => (&segment[..i], &segment[i + 1..], start + i + 1),
            None => (segment, &segment[segment.len()..], start + segment.len()),
        };
        let key = percent_decode(raw_key, start)?;
        if key.is_empty() {
            return Err(FormError::EmptyKey);
        }
        let value = percent_decode(raw_value, value_start)?;
        pairs.push((key, value));
    }
    if pairs.is_empty() {
        return Err(FormError::Empty);
    }
    // Messages hold a few dozen parameters: a sorted copy of the names finds duplicates without
    // hashing them.
    let mut names: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_slice()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(FormError::DuplicateKey(
            String::from_utf8_lossy(w[0]).into_owned(),
        ));
    }
    Ok(FormPairs { pairs })
}

fn percent_decode(input: &[u8], at: usize) -> Result<Vec<u8>, FormError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = input.get(i + 1).and_then(|b| hex_value(*b));
                let lo = input.get(i + 2).and_then(|b| hex_value(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(FormError::BadEscape(at + i)),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encodes pairs the way `java.net.URLEncoder` does (what Alipay's senders use): `[A-Za-z0-9.*_-]`
/// kept, space as `+`, everything else `%XX` in upper case.
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, V)>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k.as_ref(), &mut out);
        out.push('=');
        encode_component(v.as_ref(), &mut out);
    }
    out
}

pub fn encode_component(input: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'*' | b'_' | b'-' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

impl fmt::Display for FormPairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} form parameters", self.pairs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_keeps_empty_values() {
        let f = decode(b"a=1+2&b=%E4%B8%AD&c=&d").unwrap();
        assert_eq!(f.get("a"), Some(&b"1 2"[..]));
        assert_eq!(f.get("b"), Some("中".as_bytes()));
        assert_eq!(f.get("c"), Some(&b""[..]));
        assert_eq!(f.get("d"), Some(&b""[..]));
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn rejects_duplicates_bad_escapes_and_empty_names() {
        assert_eq!(
            decode(b"a=1&b=2&a=3"),
            Err(FormError::DuplicateKey("a".into()))
        );
        assert_eq!(decode(b"a=%zz"), Err(FormError::BadEscape(2)));
        assert_eq!(decode(b"a=%4"), Err(FormError::BadEscape(2)));
        assert_eq!(decode(b"=x"), Err(FormError::EmptyKey));
        assert_eq!(decode(b""), Err(FormError::Empty));
        assert_eq!(decode(b"&&"), Err(FormError::Empty));
    }

    #[test]
    fn encoding_round_trips() {
        let pairs = vec![("k y".to_string(), "a+b/=中 %".to_string())];
        let body = encode(pairs.iter().map(|(k, v)| (k, v)));
        assert_eq!(body, "k+y=a%2Bb%2F%3D%E4%B8%AD+%25");
        let back = decode(body.as_bytes()).unwrap();
        assert_eq!(back.get("k y"), Some("a+b/=中 %".as_bytes()));
    }
}
