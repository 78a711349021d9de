//! The gateway message classifier and parser, and the secret masking: any parameter map is
//! classified and parsed or refused without a panic, and no secret-named value survives masking.
#![no_main]
use isv_lifecycle::alipay::{form, message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = form::decode(data) else {
        return;
    };
    let params: message::Params = pairs
        .iter()
        .filter_map(|(k, v)| {
            Some((
                String::from_utf8(k.to_vec()).ok()?,
                String::from_utf8(v.to_vec()).ok()?,
            ))
        })
        .collect();
    let _ = message::kind(&params);
    let _ = message::dedup_key(&params);
    let _ = message::parse(&params);
    let masked = message::masked(&params);
    for (k, v) in &masked {
        if message::is_secret_name(k) {
            assert_eq!(v, message::MASK);
        }
    }
});
