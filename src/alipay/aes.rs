//! Alipay's content encryption (接口内容加密): AES-CBC with a zero IV and PKCS#7 padding, the key
//! and the ciphertext in standard base64. Used for `encrypt_type=AES` gateway messages (the
//! `biz_content`) and for encrypted OpenAPI responses (the `*_response` value is a JSON string).

use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AesError {
    #[error("the AES key is not base64 of 16, 24 or 32 bytes")]
    BadKey,
    #[error("the ciphertext is not standard base64")]
    NotBase64,
    #[error("the ciphertext does not decrypt with this key (wrong key, or corrupted)")]
    Undecryptable,
}

/// The app's content-encryption key (from Alipay's console). Never printed.
#[derive(Clone)]
pub struct AesKey {
    bytes: Vec<u8>,
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AesKey({} bits, [redacted])", self.bytes.len() * 8)
    }
}

const ZERO_IV: [u8; 16] = [0; 16];

impl AesKey {
    /// The console's base64 string (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, AesError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| AesError::BadKey)?;
        if !matches!(bytes.len(), 16 | 24 | 32) {
            return Err(AesError::BadKey);
        }
        Ok(Self { bytes })
    }

    fn unbound(&self) -> UnboundCipherKey {
        let algorithm = match self.bytes.len() {
            16 => &AES_128,
            24 => &AES_192,
            _ => &AES_256,
        };
        UnboundCipherKey::new(algorithm, &self.bytes).expect("the key length was checked")
    }

    /// Decrypts base64 ciphertext to the plaintext bytes (text in the message's charset).
    pub fn decrypt_base64(&self, ciphertext: &str) -> Result<Vec<u8>, AesError> {
        let mut data = STANDARD
            .decode(ciphertext.trim())
            .map_err(|_| AesError::NotBase64)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(AesError::Undecryptable);
        }
        let key =
            PaddedBlockDecryptingKey::cbc_pkcs7(self.unbound()).map_err(|_| AesError::BadKey)?;
        let plain = key
            .decrypt(
                &mut data,
                DecryptionContext::Iv128(FixedLength::from(ZERO_IV)),
            )
            .map_err(|_| AesError::Undecryptable)?;
        Ok(plain.to_vec())
    }

    /// Encrypts to base64 ciphertext, as Alipay does (the simulator and tests).
    pub fn encrypt_base64(&self, plaintext: &[u8]) -> String {
        let key = PaddedBlockEncryptingKey::cbc_pkcs7(self.unbound()).expect("valid AES key");
        let mut data = plaintext.to_vec();
        key.less_safe_encrypt(
            &mut data,
            EncryptionContext::Iv128(FixedLength::from(ZERO_IV)),
        )
        .expect("CBC encryption with a 16-byte IV cannot fail");
        STANDARD.encode(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_answer() {
        // AES-128-CBC, zero IV, PKCS#7 (`openssl enc -aes-128-cbc -K 00..0f -iv 0 -a`).
        let key = AesKey::parse("AAECAwQFBgcICQoLDA0ODw==").unwrap();
        let ciphertext = key.encrypt_base64(b"{\"a\":1}");
        assert_eq!(ciphertext, KNOWN);
        assert_eq!(key.decrypt_base64(&ciphertext).unwrap(), b"{\"a\":1}");
        for len in [0usize, 15, 16, 17, 100] {
            let plain = vec![b'x'; len];
            assert_eq!(
                key.decrypt_base64(&key.encrypt_base64(&plain)).unwrap(),
                plain
            );
        }
    }

    const KNOWN: &str = include_str!("aes_known_answer.txt");

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(AesKey::parse("c2hvcnQ=").unwrap_err(), AesError::BadKey);
        assert_eq!(AesKey::parse("not base64!").unwrap_err(), AesError::BadKey);
        let key = AesKey::parse("AAECAwQFBgcICQoLDA0ODw==").unwrap();
        let other = AesKey::parse(&STANDARD.encode([7u8; 16])).unwrap();
        assert_eq!(key.decrypt_base64("***").unwrap_err(), AesError::NotBase64);
        assert_eq!(
            key.decrypt_base64("AAAA").unwrap_err(),
            AesError::Undecryptable
        );
        // A wrong key almost always breaks the padding; when it happens not to, the plaintext
        // is garbage, which the caller's JSON parse refuses.
        let c = key.encrypt_base64(b"{\"auth_app_id\":\"2021\"}");
        assert_ne!(
            other.decrypt_base64(&c).ok(),
            Some(b"{\"auth_app_id\":\"2021\"}".to_vec())
        );
        assert!(format!("{key:?}").contains("redacted"));
    }
}
