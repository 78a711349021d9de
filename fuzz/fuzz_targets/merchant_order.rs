//! The merchant-order validator: any JSON is checked without a panic; what passes is decided
//! against itself as a duplicate, and a record built from it accepts the same sync again as one.
#![no_main]
use isv_lifecycle::domain::merchant_order::{self as rules, SyncDecision};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(checked) = rules::check_sync(&value) {
        assert_eq!(rules::decide(None, &checked), Ok(SyncDecision::First));
        let record = rules::record_after(None, &checked);
        assert_eq!(
            rules::decide(Some(&record), &checked),
            Ok(SyncDecision::Duplicate)
        );
    }
});
