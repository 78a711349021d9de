//! Public-key certificate mode (公钥证书模式): reading Alipay's certificate files, the SNs the
//! official SDKs compute, and the chain check of a downloaded Alipay certificate. Pure: no I/O,
//! `now` is passed in.
//!
//! SN (`app_cert_sn`, `alipay_cert_sn`): MD5, in lowercase hex, of the issuer's distinguished name
//! in RFC 2253 string form (last RDN first, `CN=…,OU=…,O=…,C=…`) followed by the serial number in
//! decimal. The root SN (`alipay_root_cert_sn`) joins with `_` the SNs of the bundle's
//! certificates that are RSA-signed (signature algorithm OID under `1.2.840.113549.1.1`), in file
//! order; the others (SM2, ECDSA) are skipped, and a strict parser's objection to one of them
//! does not fail the bundle.

use super::keys::PublicKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::{Decode as _, Encode as _, Tag, Tagged as _};
use md5::Digest as _;
use x509_cert::Certificate;
use x509_cert::name::Name;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("no certificate found (expected PEM `-----BEGIN CERTIFICATE-----` blocks)")]
    Empty,
    #[error("certificate {index}: {problem}")]
    Malformed { index: usize, problem: String },
    #[error("the certificate's public key is not a usable RSA-2048 key: {0}")]
    NotRsa(String),
    #[error("the root bundle holds no RSA-signed certificate")]
    NoRsaRoot,
}

/// Why a certificate is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("certificate {sn} is not valid at {now} (valid {not_before} to {not_after})")]
    OutsideValidity {
        sn: String,
        now: DateTime<Utc>,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    },
    #[error("certificate {sn} does not chain to the configured Alipay root certificate")]
    NotFromRoot { sn: String },
    #[error("certificate {sn}: {problem}")]
    Unusable { sn: String, problem: String },
}

const RSA_SIGNATURE_ARC: &str = "1.2.840.113549.1.1.";
const SHA1_WITH_RSA: &str = "1.2.840.113549.1.1.5";
const SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";

/// One certificate of a file. `parsed` is `None` only for a certificate a strict parser refused
/// (kept so that a root bundle still reads; such a certificate is never used for anything).
#[derive(Clone)]
pub struct Cert {
    der: Vec<u8>,
    parsed: Option<Certificate>,
    signature_oid: String,
}

impl std::fmt::Debug for Cert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cert")
            .field("sn", &self.sn().ok())
            .field("signature_oid", &self.signature_oid)
            .finish()
    }
}

/// Every certificate of a PEM file (or a single DER certificate), in file order. A certificate
/// that does not parse strictly is an error unless `lenient` (root bundles), where it is kept
/// as long as its signature algorithm can be read.
pub fn parse_bundle(bytes: &[u8], lenient: bool) -> Result<Vec<Cert>, CertError> {
    let ders = pem_blocks(bytes)?;
    let mut certs = Vec::with_capacity(ders.len());
    for (index, der) in ders.into_iter().enumerate() {
        match Certificate::from_der(&der) {
            Ok(parsed) => certs.push(Cert {
                signature_oid: parsed.signature_algorithm.oid.to_string(),
                parsed: Some(parsed),
                der,
            }),
            Err(e) if lenient => {
                let signature_oid =
                    outer_signature_oid(&der).ok_or_else(|| CertError::Malformed {
                        index,
                        problem: e.to_string(),
                    })?;
                certs.push(Cert {
                    der,
                    parsed: None,
                    signature_oid,
                })
            }
            Err(e) => {
                return Err(CertError::Malformed {
                    index,
                    problem: e.to_string(),
                });
            }
        }
    }
    Ok(certs)
}

/// One certificate file holding exactly the certificate we use (app or Alipay certificate); a
/// chain after it (Alipay's files sometimes carry the issuing CA) is returned too, leaf first.
pub fn parse_leaf(bytes: &[u8]) -> Result<Vec<Cert>, CertError> {
    let certs = parse_bundle(bytes, false)?;
    if certs.is_empty() {
        return Err(CertError::Empty);
    }
    Ok(certs)
}

fn pem_blocks(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let Ok(text) = std::str::from_utf8(bytes) else {
        // Not text: a single DER certificate.
        return if bytes.first() == Some(&0x30) {
            Ok(vec![bytes.to_vec()])
        } else {
            Err(CertError::Empty)
        };
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body_start = start + BEGIN.len();
        let Some(len) = rest[body_start..].find(END) else {
            return Err(CertError::Malformed {
                index: out.len(),
                problem: "PEM block without its END line".into(),
            });
        };
        let body: String = rest[body_start..body_start + len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD.decode(body).map_err(|_| CertError::Malformed {
            index: out.len(),
            problem: "PEM body is not base64".into(),
        })?;
        out.push(der);
        rest = &rest[body_start + len + END.len()..];
    }
    if out.is_empty() {
        return Err(CertError::Empty);
    }
    Ok(out)
}

/// The signature algorithm of a certificate a strict parser refused: the outer
/// `SEQUENCE { tbs, SEQUENCE { oid, params }, BIT STRING }`, read with nothing else checked.
fn outer_signature_oid(der: &[u8]) -> Option<String> {
    #[derive(der::Sequence)]
    struct Outer<'a> {
        tbs: AnyRef<'a>,
        algorithm: AlgorithmRef<'a>,
        signature: BitStringRef<'a>,
    }
    #[derive(der::Sequence)]
    struct AlgorithmRef<'a> {
        oid: ObjectIdentifier,
        params: Option<AnyRef<'a>>,
    }
    let outer = Outer::from_der(der).ok()?;
    let _ = (outer.tbs, outer.signature, outer.algorithm.params);
    Some(outer.algorithm.oid.to_string())
}

impl Cert {
    fn parsed(&self) -> Result<&Certificate, CertError> {
        self.parsed.as_ref().ok_or_else(|| CertError::Malformed {
            index: 0,
            problem: "not a certificate we can read".into(),
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as PEM text.
    pub fn to_pem(&self) -> String {
        let body = STANDARD.encode(&self.der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }

    pub fn is_rsa_signed(&self) -> bool {
        self.signature_oid.starts_with(RSA_SIGNATURE_ARC)
    }

    /// The SN Alipay computes for this certificate.
    pub fn sn(&self) -> Result<String, CertError> {
        let tbs = &self.parsed()?.tbs_certificate;
        let mut text = rfc2253(&tbs.issuer);
        text.push_str(&decimal(tbs.serial_number.as_bytes()));
        Ok(hex(&md5::Md5::digest(text.as_bytes())))
    }

    pub fn issuer_dn(&self) -> Result<String, CertError> {
        Ok(rfc2253(&self.parsed()?.tbs_certificate.issuer))
    }

    pub fn subject_dn(&self) -> Result<String, CertError> {
        Ok(rfc2253(&self.parsed()?.tbs_certificate.subject))
    }

    /// The RSA public key the certificate carries.
    pub fn public_key(&self) -> Result<PublicKey, CertError> {
        let spki = self
            .parsed()?
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| CertError::NotRsa(e.to_string()))?;
        PublicKey::parse(&STANDARD.encode(spki)).map_err(|e| CertError::NotRsa(e.to_string()))
    }

    pub fn validity(&self) -> Result<(DateTime<Utc>, DateTime<Utc>), CertError> {
        let v = &self.parsed()?.tbs_certificate.validity;
        let at = |t: x509_cert::time::Time| {
            DateTime::<Utc>::from_timestamp(t.to_unix_duration().as_secs() as i64, 0)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        Ok((at(v.not_before), at(v.not_after)))
    }

    fn issuer_is(&self, other: &Cert) -> bool {
        match (&self.parsed, &other.parsed) {
            (Some(c), Some(o)) => c.tbs_certificate.issuer == o.tbs_certificate.subject,
            _ => false,
        }
    }

    /// True when `issuer`'s key made this certificate's signature (RSA, SHA-256 or SHA-1).
    fn signed_by(&self, issuer: &Cert) -> bool {
        let (Some(cert), Some(issuer)) = (&self.parsed, &issuer.parsed) else {
            return false;
        };
        let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match self
            .signature_oid
            .as_str()
        {
            SHA256_WITH_RSA => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            SHA1_WITH_RSA => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            _ => return false,
        };
        let Ok(tbs) = cert.tbs_certificate.to_der() else {
            return false;
        };
        let Some(signature) = cert.signature.as_bytes() else {
            return false;
        };
        let key = issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, key)
            .verify(&tbs, signature)
            .is_ok()
    }
}

/// The root bundle's SN: the RSA-signed certificates' SNs joined with `_`, in file order.
pub fn root_sn(bundle: &[Cert]) -> Result<String, CertError> {
    let sns: Vec<String> = bundle
        .iter()
        .filter(|c| c.is_rsa_signed())
        .map(Cert::sn)
        .collect::<Result<_, _>>()?;
    if sns.is_empty() {
        return Err(CertError::NoRsaRoot);
    }
    Ok(sns.join("_"))
}

/// Accepts `chain` (leaf first, then any intermediates it came with) when every certificate is
/// within its validity at `now` and the chain ends in a certificate signed by one of `roots`
/// (itself within its validity). The leaf's public key must be usable.
pub fn check_chain(chain: &[Cert], roots: &[Cert], now: DateTime<Utc>) -> Result<(), ChainError> {
    let leaf = chain.first().ok_or(ChainError::Unusable {
        sn: "-".into(),
        problem: "empty certificate".into(),
    })?;
    let sn = leaf.sn().map_err(|e| ChainError::Unusable {
        sn: "-".into(),
        problem: e.to_string(),
    })?;
    leaf.public_key().map_err(|e| ChainError::Unusable {
        sn: sn.clone(),
        problem: e.to_string(),
    })?;
    for cert in chain {
        within_validity(cert, now)?;
    }
    // Walk up the chain as it was given, then to a root.
    let mut current = leaf;
    let mut steps = 0;
    loop {
        if roots.iter().any(|r| {
            current.issuer_is(r) && current.signed_by(r) && within_validity(r, now).is_ok()
        }) {
            return Ok(());
        }
        let next = chain
            .iter()
            .find(|c| !std::ptr::eq(*c, current) && current.issuer_is(c) && current.signed_by(c));
        match next {
            Some(next) if steps < chain.len() => {
                current = next;
                steps += 1;
            }
            _ => return Err(ChainError::NotFromRoot { sn }),
        }
    }
}

fn within_validity(cert: &Cert, now: DateTime<Utc>) -> Result<(), ChainError> {
    let sn = cert.sn().unwrap_or_else(|_| "-".into());
    let (not_before, not_after) = cert.validity().map_err(|e| ChainError::Unusable {
        sn: sn.clone(),
        problem: e.to_string(),
    })?;
    if now < not_before || now > not_after {
        return Err(ChainError::OutsideValidity {
            sn,
            now,
            not_before,
            not_after,
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An unsigned big-endian integer in decimal (the DER serial's leading zero byte included).
fn decimal(bytes: &[u8]) -> String {
    // Little-endian limbs of base 10^9.
    let mut limbs: Vec<u32> = vec![0];
    for &byte in bytes {
        let mut carry = u64::from(byte);
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * 256 + carry;
            *limb = (v % 1_000_000_000) as u32;
            carry = v / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push((carry % 1_000_000_000) as u32);
            carry /= 1_000_000_000;
        }
    }
    let mut out = String::new();
    for (i, limb) in limbs.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&limb.to_string());
        } else {
            out.push_str(&format!("{limb:09}"));
        }
    }
    out
}

/// RFC 2253 string form, as Java's `X500Principal.getName()` writes it: RDNs last first, joined
/// with `,`; multi-valued RDNs joined with `+`; known attribute types by their keyword, others as
/// a dotted OID with the value as `#` and the hex of its DER encoding.
pub fn rfc2253(name: &Name) -> String {
    let mut rdns = Vec::with_capacity(name.0.len());
    for rdn in name.0.iter().rev() {
        let parts: Vec<String> = rdn
            .0
            .iter()
            .map(|atv| {
                let oid = atv.oid.to_string();
                match (keyword(&oid), string_value(&atv.value)) {
                    (Some(k), Some(v)) => format!("{k}={}", escape(&v)),
                    _ => format!("{oid}=#{}", hex(&atv.value.to_der().unwrap_or_default())),
                }
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.join(",")
}

fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn string_value(value: &der::Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => {
            String::from_utf8(bytes.to_vec()).ok()
        }
        // T.61 in theory; Latin-1 in practice.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Building certificates, for the simulator and tests (Alipay's CA in a box): RSA-SHA256,
/// version 3, no extensions.
pub mod build {
    use super::*;
    use der::asn1::{BitString, UtcTime};
    use std::str::FromStr as _;
    use x509_cert::certificate::{TbsCertificate, Version};
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
    use x509_cert::time::{Time, Validity};

    pub struct CertSpec<'a> {
        pub subject: &'a str,
        pub issuer: &'a str,
        pub serial: &'a [u8],
        pub not_before: DateTime<Utc>,
        pub not_after: DateTime<Utc>,
        /// Bare base64 SPKI (`PublicKey::to_bare_base64`).
        pub public_key: &'a PublicKey,
    }

    fn time(t: DateTime<Utc>) -> Time {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        Time::UtcTime(
            UtcTime::from_unix_duration(std::time::Duration::from_secs(secs))
                .expect("a time between 1970 and 2049"),
        )
    }

    /// A certificate for `spec`, signed with `issuer_key`.
    pub fn certificate(spec: &CertSpec<'_>, issuer_key: &super::super::PrivateKey) -> Cert {
        let algorithm = AlgorithmIdentifierOwned {
            oid: ObjectIdentifier::new_unwrap(SHA256_WITH_RSA),
            parameters: Some(der::Any::null()),
        };
        let spki_der = STANDARD
            .decode(spec.public_key.to_bare_base64())
            .expect("our own base64");
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(spec.serial).expect("a short positive serial"),
            signature: algorithm.clone(),
            issuer: Name::from_str(spec.issuer).expect("a valid issuer DN"),
            validity: Validity {
                not_before: time(spec.not_before),
                not_after: time(spec.not_after),
            },
            subject: Name::from_str(spec.subject).expect("a valid subject DN"),
            subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&spki_der)
                .expect("an SPKI we encoded"),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: None,
        };
        let tbs_der = tbs.to_der().expect("encodable");
        let signature = STANDARD
            .decode(issuer_key.sign_base64(&tbs_der))
            .expect("our own base64");
        let cert = Certificate {
            tbs_certificate: tbs,
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(&signature).expect("a bit string"),
        };
        let der = cert.to_der().expect("encodable");
        parse_bundle(&der, false)
            .expect("a certificate we built parses")
            .remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../shared/vectors/certs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn official_fixtures_give_the_sdk_sns() {
        let app = parse_leaf(&fixture("appCertPublicKey_2021001161683774.crt")).unwrap();
        assert_eq!(app[0].sn().unwrap(), "866efef280dec9137a87d047ac446315");
        let alipay = parse_leaf(&fixture("alipayCertPublicKey_RSA2.crt")).unwrap();
        assert_eq!(alipay[0].sn().unwrap(), "7513daaaa48aa3ba2e4018d84402479c");
        assert_eq!(
            alipay[0].issuer_dn().unwrap(),
            "CN=Ant Financial Certification Authority Class 2 R1,OU=Certification Authority,O=Ant Financial,C=CN"
        );
        let root = parse_bundle(&fixture("alipayRootCert.crt"), true).unwrap();
        assert_eq!(root.len(), 4);
        assert_eq!(
            root.iter().map(Cert::is_rsa_signed).collect::<Vec<_>>(),
            [false, true, false, true]
        );
        assert_eq!(
            root_sn(&root).unwrap(),
            "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
        );
        // The app certificate carries a usable RSA-2048 key.
        app[0].public_key().unwrap();
    }

    fn key(name: &str) -> super::super::PrivateKey {
        let text = std::fs::read_to_string(format!(
            "{}/../shared/vectors/keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        super::super::PrivateKey::parse(&text).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn built_chain_is_checked_against_the_root() {
        use build::{CertSpec, certificate};
        let root_key = key("isv_app_private_pkcs8.pem");
        let other_key = key("alipay_platform_private_pkcs8.pem");
        let leaf_key = other_key.public_key();
        let root_dn = "CN=Test Root R1,O=Test CA,C=CN";
        let spec = |subject, issuer, serial, public_key| CertSpec {
            subject,
            issuer,
            serial,
            not_before: at("2024-01-01T00:00:00Z"),
            not_after: at("2030-01-01T00:00:00Z"),
            public_key,
        };
        let root_pub = root_key.public_key();
        let root = certificate(&spec(root_dn, root_dn, &[1], &root_pub), &root_key);
        let leaf = certificate(
            &spec(
                "CN=Alipay,O=Test,C=CN",
                root_dn,
                &[0x20, 0x24, 0x01],
                &leaf_key,
            ),
            &root_key,
        );
        let now = at("2025-06-01T00:00:00Z");
        check_chain(
            std::slice::from_ref(&leaf),
            std::slice::from_ref(&root),
            now,
        )
        .unwrap();
        assert!(leaf.public_key().unwrap().same_key_as(&leaf_key));
        assert_eq!(leaf.issuer_dn().unwrap(), root_dn);
        // Round trip through PEM keeps the SN.
        let again = parse_leaf(leaf.to_pem().as_bytes()).unwrap();
        assert_eq!(again[0].sn().unwrap(), leaf.sn().unwrap());
        // Same issuer name, another key: not from our root.
        let forged = certificate(
            &spec(
                "CN=Alipay,O=Test,C=CN",
                root_dn,
                &[0x20, 0x24, 0x02],
                &leaf_key,
            ),
            &other_key,
        );
        assert!(matches!(
            check_chain(
                std::slice::from_ref(&forged),
                std::slice::from_ref(&root),
                now
            ),
            Err(ChainError::NotFromRoot { .. })
        ));
        // Outside its validity.
        assert!(matches!(
            check_chain(
                std::slice::from_ref(&leaf),
                std::slice::from_ref(&root),
                at("2031-01-01T00:00:00Z")
            ),
            Err(ChainError::OutsideValidity { .. })
        ));
        // Through an intermediate carried with the leaf.
        let mid_dn = "CN=Test Class 2 R1,O=Test CA,C=CN";
        let mid_pub = other_key.public_key();
        let mid = certificate(&spec(mid_dn, root_dn, &[7], &mid_pub), &root_key);
        let leaf2 = certificate(
            &spec("CN=Alipay 2,O=Test,C=CN", mid_dn, &[9], &root_pub),
            &other_key,
        );
        check_chain(&[leaf2.clone(), mid], std::slice::from_ref(&root), now).unwrap();
        assert!(
            check_chain(
                std::slice::from_ref(&leaf2),
                std::slice::from_ref(&root),
                now
            )
            .is_err()
        );
        // The official Alipay fixtures do not chain to a root we built.
        let alipay = parse_leaf(&fixture("alipayCertPublicKey_RSA2.crt")).unwrap();
        assert!(check_chain(&alipay, std::slice::from_ref(&root), now).is_err());
    }

    #[test]
    fn decimal_serials() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(
            decimal(&[0x69, 0xe2, 0xfe, 0xc0, 0x17, 0x0a, 0xc6, 0x7b]),
            "7629940819692799611"
        );
        // 2^64 = 18446744073709551616
        assert_eq!(
            decimal(&[1, 0, 0, 0, 0, 0, 0, 0, 0]),
            "18446744073709551616"
        );
        // 10^9 boundaries
        assert_eq!(decimal(&[0x3b, 0x9a, 0xca, 0x00]), "1000000000");
    }

    #[test]
    fn escaping_follows_rfc_2253() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape("支付宝(中国)"), "支付宝(中国)");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse_bundle(b"", true).unwrap_err(), CertError::Empty);
        assert!(
            parse_bundle(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                false
            )
            .is_err()
        );
        assert!(parse_bundle(b"-----BEGIN CERTIFICATE-----\n!!\n", true).is_err());
        assert!(parse_bundle(&[0x30, 0x03, 0x02, 0x01, 0x00], true).is_err());
    }
}
