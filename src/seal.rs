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
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
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
