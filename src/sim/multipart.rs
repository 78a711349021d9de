//! Just enough `multipart/form-data` for upload APIs: the text parts (signed by the caller) by
//! name; file parts (those with a `filename`) are counted and otherwise ignored (never signed).

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Multipart {
    pub text: Vec<(String, String)>,
    pub files: Vec<String>,
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// `name="..."` / `filename="..."` from a Content-Disposition value.
fn disposition_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

pub fn parse(body: &[u8], boundary: &str) -> Result<Multipart, String> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut pos = find(body, delimiter, 0).ok_or("no multipart boundary in the body")?;
    let mut out = Multipart::default();
    loop {
        pos += delimiter.len();
        if body[pos..].starts_with(b"--") {
            return Ok(out);
        }
        if body[pos..].starts_with(b"\r\n") {
            pos += 2;
        } else {
            return Err("malformed part delimiter".into());
        }
        let headers_end = find(body, b"\r\n\r\n", pos).ok_or("part without a header end")?;
        let headers = std::str::from_utf8(&body[pos..headers_end])
            .map_err(|_| "part headers are not UTF-8")?;
        let content_start = headers_end + 4;
        let mut next_delim = Vec::with_capacity(delimiter.len() + 2);
        next_delim.extend_from_slice(b"\r\n");
        next_delim.extend_from_slice(delimiter);
        let content_end = find(body, &next_delim, content_start).ok_or("unterminated part")?;
        let content = &body[content_start..content_end];
        let disposition = headers
            .split("\r\n")
            .find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then(|| v.trim().to_string())
            })
            .ok_or("part without Content-Disposition")?;
        let name = disposition_param(&disposition, "name").ok_or("part without a name")?;
        if disposition_param(&disposition, "filename").is_some() {
            out.files.push(name);
        } else {
            let value = String::from_utf8(content.to_vec())
                .map_err(|_| format!("text part {name:?} is not UTF-8"))?;
            out.text.push((name, value));
        }
        pos = content_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_skips_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"app_version\"\r\n\r\n0.0.1\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"app_logo\"; filename=\"l.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--x\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"version_desc\"\r\n\r\n\xe4\xb8\xad a=b&c\r\n--XyZ--\r\n";
        assert_eq!(
            boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        let m = parse(body, "XyZ").unwrap();
        assert_eq!(
            m.text,
            vec![
                ("app_version".to_string(), "0.0.1".to_string()),
                ("version_desc".to_string(), "中 a=b&c".to_string())
            ]
        );
        assert_eq!(m.files, vec!["app_logo".to_string()]);
        assert!(parse(b"garbage", "XyZ").is_err());
    }
}
