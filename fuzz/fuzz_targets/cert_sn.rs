//! Certificate files as strangers could hand them to us (a downloaded Alipay certificate, an
//! operator's file): parsing, SN computation, the root SN and the chain check never panic; a
//! certificate that parses round-trips through PEM with the same SN.
#![no_main]
use isv_lifecycle::alipay::cert;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn roots() -> &'static Vec<cert::Cert> {
    static ROOTS: OnceLock<Vec<cert::Cert>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/certs/alipayRootCert.crt"
        );
        cert::parse_bundle(&std::fs::read(path).unwrap(), true).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    for lenient in [false, true] {
        if let Ok(certs) = cert::parse_bundle(data, lenient) {
            let _ = cert::root_sn(&certs);
            let _ = cert::check_chain(&certs, roots(), now);
            for c in &certs {
                let _ = (c.issuer_dn(), c.subject_dn(), c.public_key(), c.validity());
                if let Ok(sn) = c.sn() {
                    let again = cert::parse_leaf(c.to_pem().as_bytes()).expect("our own PEM");
                    assert_eq!(again[0].sn().unwrap(), sn);
                }
            }
        }
    }
});
