//! Sealing secrets at rest with AES-256-GCM under `security.encryption_key`.
//!
//! Layout: version byte `1` || 12-byte random nonce || ciphertext || 16-byte tag. The associated
//! data names what the secret is (e.g. `authorization.app_auth_token`), so a sealed value copied
//! into another column does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use std::fmt;

const VERSION: u8 = 1;

pub struct Sealer {
    key: LessSafeKey,
    /// HMAC-SHA256 key for [`Sealer::fingerprint`], derived from the encryption key so that the
    /// two uses never share a key.
    fingerprint_key: aws_lc_rs::hmac::Key,
    rng: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("encryption key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("sealed value is malformed or was sealed under another key")]
    Open,
}

impl Sealer {
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError::KeyLength(key.len()))?;
        let derived = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            b"isv-lifecycle fingerprint key v1",
        );
        Ok(Self {
            key: LessSafeKey::new(unbound),
            fingerprint_key: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                derived.as_ref(),
            ),
            rng: SystemRandom::new(),
        })
    }

    /// A keyed fingerprint of a secret (hex HMAC-SHA256 bound to `context`): equal secrets give
    /// equal fingerprints, so a secret stored only sealed can still be recognised when a message
    /// names it, while the fingerprint alone reveals nothing without the encryption key.
    pub fn fingerprint(&self, context: &str, secret: &[u8]) -> String {
        let mut data = Vec::with_capacity(context.len() + 1 + secret.len());
        data.extend_from_slice(context.as_bytes());
        data.push(0);
        data.extend_from_slice(secret);
        aws_lc_rs::hmac::sign(&self.fingerprint_key, &data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut out[1 + NONCE_LEN..],
            )
            .expect("AES-GCM sealing of in-memory data cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(SealError::Open);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .map_err(|_| SealError::Open)?;
        let mut buffer = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| SealError::Open)?;
        let len = plain.len();
        buffer.truncate(len);
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_equal_secrets_only_and_depend_on_the_key() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        let a = s.fingerprint("token:A", b"T1");
        assert_eq!(a, s.fingerprint("token:A", b"T1"));
        assert_ne!(a, s.fingerprint("token:A", b"T2"));
        assert_ne!(a, s.fingerprint("token:B", b"T1"));
        assert_ne!(
            a,
            Sealer::new(&[8u8; 32])
                .unwrap()
                .fingerprint("token:A", b"T1")
        );
        assert!(!a.contains("T1") && a.len() == 64);
    }

    #[test]
    fn round_trip_and_context_binding() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = s.seal("a", b"secret-token");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open("a", &sealed).unwrap(), b"secret-token");
        assert_eq!(s.open("b", &sealed), Err(SealError::Open));
        let other = Sealer::new(&[8u8; 32]).unwrap();
        assert_eq!(other.open("a", &sealed), Err(SealError::Open));
        assert!(Sealer::new(&[0u8; 16]).is_err());
    }
}
