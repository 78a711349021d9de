//! The gateway's form decoder: any bytes decode or are refused, never panic; what decodes
//! re-encodes to a body that decodes to the same pairs.
#![no_main]
use isv_lifecycle::alipay::form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = form::decode(data) {
        let encoded = form::encode(pairs.iter());
        let again = form::decode(encoded.as_bytes()).expect("our own encoding decodes");
        assert_eq!(again, pairs);
    }
});
