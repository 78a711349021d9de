//! The OpenAPI response scanner and verifier: arbitrary bodies never panic; a response we sign
//! verifies and hands back exactly the signed bytes.
#![no_main]
use isv_lifecycle::alipay::{PrivateKey, PublicKey, response};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn keys() -> &'static (PrivateKey, PublicKey) {
    static KEYS: OnceLock<(PrivateKey, PublicKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/keys/");
        let private = PrivateKey::parse(
            &std::fs::read_to_string(format!("{dir}alipay_platform_private_pkcs8.pem")).unwrap(),
        )
        .unwrap();
        let public = private.public_key();
        (private, public)
    })
}

const METHOD: &str = "alipay.open.servicemarket.order.query";

fuzz_target!(|data: &[u8]| {
    let (private, public) = keys();
    let _ = response::check(data, METHOD, public);
    // Any JSON object as the response content: signed, it verifies byte for byte.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        {
            let content = serde_json::Value::Object(map).to_string();
            let body = response::sign_response(METHOD, &content, private);
            let checked = response::check(body.as_bytes(), METHOD, public)
                .expect("a response we signed verifies");
            assert_eq!(checked.content, content.as_bytes());
        }
    }
});
