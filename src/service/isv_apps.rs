//! The ISV's third-party apps served by this deployment: the primary `alipay.*` app and the
//! further `alipay.apps.<name>` ones. Each has its own verification material, AES key and
//! OpenAPI client (signing with its own key, sending its own `app_id`).

use crate::alipay::PublicKey;
use crate::alipay::client::{AlipayApi, AlipayError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One app: what verifies and decrypts its messages, and the client that calls as it.
#[derive(Clone)]
pub struct IsvApp {
    pub app_id: Arc<str>,
    /// Alipay's public key for this app (in certificate mode: its configured certificate's).
    pub alipay_key: Arc<PublicKey>,
    /// Certificate mode: messages are verified with the Alipay certificate they name.
    pub cert_mode: Option<Arc<crate::alipay::cert_mode::CertMode>>,
    /// Decrypts this app's `encrypt_type=AES` messages when they are applied.
    pub aes_key: Option<Arc<crate::alipay::AesKey>>,
    pub alipay: Arc<dyn AlipayApi>,
}

/// Every app we serve, by app id; the primary one answers for records older than this table
/// (`isv_app_id` NULL).
#[derive(Clone)]
pub struct IsvApps {
    pub primary: IsvApp,
    /// The further apps, by app id.
    pub others: BTreeMap<String, IsvApp>,
}

/// A record names an ISV app this deployment no longer serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ISV app {0} is not configured (alipay.app_id or alipay.apps.*): no call is made as another app"
)]
pub struct UnknownIsvApp(pub String);

impl From<UnknownIsvApp> for AlipayError {
    fn from(e: UnknownIsvApp) -> Self {
        // Refused before sending, like a request we will not make.
        AlipayError::Decode(e.to_string())
    }
}

impl IsvApps {
    pub fn new(primary: IsvApp) -> Self {
        Self {
            primary,
            others: BTreeMap::new(),
        }
    }

    /// The app a message's `app_id` names, when we serve it.
    pub fn get(&self, app_id: &str) -> Option<&IsvApp> {
        if *self.primary.app_id == *app_id {
            return Some(&self.primary);
        }
        self.others.get(app_id)
    }

    /// The app a stored record was made for: NULL is the primary (rows older than the column);
    /// an app id we do not serve is an error, never the primary.
    pub fn for_record(&self, isv_app_id: Option<&str>) -> Result<&IsvApp, UnknownIsvApp> {
        match isv_app_id {
            None => Ok(&self.primary),
            Some(id) => self.get(id).ok_or_else(|| UnknownIsvApp(id.to_string())),
        }
    }

    /// Every app, the primary first.
    pub fn all(&self) -> impl Iterator<Item = &IsvApp> {
        std::iter::once(&self.primary).chain(self.others.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> IsvApp {
        let pair = crate::alipay::keys::generate().unwrap();
        let private = crate::alipay::PrivateKey::parse(&pair.private_pkcs8_pem).unwrap();
        let alipay_key = Arc::new(PublicKey::parse(&pair.public_spki_pem).unwrap());
        let client = crate::alipay::client::AlipayClient::new(
            crate::alipay::client::ClientSettings::new("http://127.0.0.1:9/gateway.do", id),
            Arc::new(private),
            alipay_key.clone(),
            Arc::new(crate::clock::SystemClock),
        )
        .unwrap();
        IsvApp {
            app_id: Arc::from(id),
            alipay_key,
            cert_mode: None,
            aes_key: None,
            alipay: Arc::new(client),
        }
    }

    #[test]
    fn records_find_their_app_and_never_fall_back() {
        let mut apps = IsvApps::new(app("2021000000000001"));
        apps.others
            .insert("2021000000000002".into(), app("2021000000000002"));
        assert_eq!(&*apps.for_record(None).unwrap().app_id, "2021000000000001");
        assert_eq!(
            &*apps.for_record(Some("2021000000000002")).unwrap().app_id,
            "2021000000000002"
        );
        assert_eq!(
            &*apps.get("2021000000000001").unwrap().app_id,
            "2021000000000001"
        );
        let gone = apps.for_record(Some("2021000000000009")).err().unwrap();
        assert!(gone.to_string().contains("2021000000000009"), "{gone}");
        assert!(apps.get("2021000000000009").is_none());
        assert_eq!(apps.all().count(), 2);
    }
}
