//! RSA keys in every form Alipay's console and key tool hand out: PEM (PKCS#1, PKCS#8, SPKI) and
//! the bare base64 body of any of those. Parsing uses the `rsa` crate; signing and verifying use
//! aws-lc-rs, which is ten times faster and constant-time for private-key operations.

use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an RSA private key in PEM (PKCS#1 or PKCS#8) or bare base64 form")]
    NotAPrivateKey,
    #[error("not an RSA public key in PEM (SPKI or PKCS#1) or bare base64 form")]
    NotAPublicKey,
    #[error("RSA key of {0} bits; Alipay's RSA2 keys are 2048 bits")]
    WrongSize(usize),
    #[error("the crypto library refused the key: {0}")]
    Rejected(String),
}

/// Our application private key ("应用私钥"): signs OpenAPI requests (and, in the simulator, the
/// platform's messages).
pub struct PrivateKey {
    pair: KeyPair,
    public: RsaPublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

/// A public key that verifies RSA2 signatures: Alipay's ("支付宝公钥"), or ours in the simulator.
#[derive(Clone)]
pub struct PublicKey {
    parsed: ParsedPublicKey,
    rsa: RsaPublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PrivateKey {
    /// Parses any of the accepted textual forms.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        Self::from_rsa(parse_private(text)?)
    }

    pub fn from_rsa(key: RsaPrivateKey) -> Result<Self, KeyError> {
        check_size(key.size() * 8)?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let pair =
            KeyPair::from_pkcs8(der.as_bytes()).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            public: key.to_public_key(),
            pair,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_rsa(self.public.clone()).expect("a key pair's own public key is valid")
    }

    /// SHA256withRSA, PKCS#1 v1.5, standard base64.
    pub fn sign_base64(&self, content: &[u8]) -> String {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                content,
                &mut signature,
            )
            .expect("signing with a validated 2048-bit key cannot fail");
        STANDARD.encode(signature)
    }
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        Self::from_rsa(parse_public(text)?)
    }

    pub fn from_rsa(key: RsaPublicKey) -> Result<Self, KeyError> {
        check_size(key.size() * 8)?;
        let der = key
            .to_public_key_der()
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let parsed = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der.as_bytes())
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self { parsed, rsa: key })
    }

    /// True when `signature` (raw bytes) is a valid RSA2 signature of `content`.
    pub fn verify(&self, content: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(content, signature).is_ok()
    }

    /// Same key material, whatever the encoding it was read from.
    pub fn same_key_as(&self, other: &PublicKey) -> bool {
        self.rsa == other.rsa
    }

    /// A short, non-secret identifier for logs: the last 8 hex digits of the modulus.
    pub fn fingerprint(&self) -> String {
        let bytes = self.rsa.n().to_bytes_be();
        let tail = &bytes[bytes.len().saturating_sub(4)..];
        tail.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn to_spki_pem(&self) -> String {
        self.rsa
            .to_public_key_pem(LineEnding::LF)
            .expect("encoding a valid public key")
    }

    /// The bare base64 SPKI body Alipay's console takes and shows.
    pub fn to_bare_base64(&self) -> String {
        STANDARD.encode(
            self.rsa
                .to_public_key_der()
                .expect("encoding a valid public key")
                .as_bytes(),
        )
    }
}

fn check_size(bits: usize) -> Result<(), KeyError> {
    if bits == 2048 {
        Ok(())
    } else {
        Err(KeyError::WrongSize(bits))
    }
}

fn bare_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).ok()
}

fn parse_private(text: &str) -> Result<RsaPrivateKey, KeyError> {
    let text = text.trim();
    let parsed = if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(text).ok()
    } else if text.contains("-----BEGIN PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs8_pem(text).ok()
    } else if text.starts_with("-----") {
        None
    } else {
        bare_base64(text).and_then(|der| {
            RsaPrivateKey::from_pkcs8_der(&der)
                .or_else(|_| RsaPrivateKey::from_pkcs1_der(&der))
                .ok()
        })
    };
    parsed.ok_or(KeyError::NotAPrivateKey)
}

fn parse_public(text: &str) -> Result<RsaPublicKey, KeyError> {
    let text = text.trim();
    let parsed = if text.contains("-----BEGIN PUBLIC KEY-----") {
        RsaPublicKey::from_public_key_pem(text).ok()
    } else if text.contains("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(text).ok()
    } else if text.starts_with("-----") {
        None
    } else {
        bare_base64(text).and_then(|der| {
            RsaPublicKey::from_public_key_der(&der)
                .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
                .ok()
        })
    };
    parsed.ok_or(KeyError::NotAPublicKey)
}

/// A fresh RSA-2048 key pair in the forms Alipay's console and key tool use.
pub struct GeneratedKeyPair {
    pub private_pkcs8_pem: String,
    pub private_pkcs1_pem: String,
    /// Bare PKCS#8 base64 body: what Java and Node SDKs take as the app private key.
    pub private_pkcs8_base64: String,
    pub public_spki_pem: String,
    /// Bare SPKI base64 body: what the console's "应用公钥" field takes.
    pub public_base64: String,
}

pub fn generate() -> Result<GeneratedKeyPair, KeyError> {
    let mut rng = rand::rngs::OsRng;
    let key = RsaPrivateKey::new(&mut rng, 2048).map_err(|e| KeyError::Rejected(e.to_string()))?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
    let public = PublicKey::from_rsa(key.to_public_key())?;
    Ok(GeneratedKeyPair {
        private_pkcs8_pem: key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Rejected(e.to_string()))?
            .to_string(),
        private_pkcs1_pem: key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| KeyError::Rejected(e.to_string()))?
            .to_string(),
        private_pkcs8_base64: STANDARD.encode(pkcs8.as_bytes()),
        public_spki_pem: public.to_spki_pem(),
        public_base64: public.to_bare_base64(),
    })
}
