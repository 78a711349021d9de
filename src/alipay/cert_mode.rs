//! Certificate mode's trust store: the configured root bundle, our app certificate's SN, and the
//! Alipay certificates we hold, by SN. A certificate we do not hold is looked up in a shared cache
//! (the database, so replicas share what one of them downloaded) and otherwise downloaded with
//! `alipay.open.app.alipaycert.download` by the client; it is trusted only when it chains to the
//! configured root and is within its validity.

use super::cert::{self, Cert, CertError};
use super::keys::PublicKey;
use super::request::CertSns;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The shared cache could not be read or written (the database said why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate cache: {0}")]
pub struct CacheError(pub String);

/// Where downloaded certificates are kept and who hears about refused ones (implemented by the
/// service layer over the database and the alerter).
pub trait CertCache: Send + Sync {
    /// The PEM text stored for `sn`, if any.
    fn load<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Result<Option<String>, CacheError>>;
    /// Keeps an accepted certificate for every replica.
    fn store<'a>(
        &'a self,
        sn: &'a str,
        pem: &'a str,
        not_after: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), CacheError>>;
    /// A certificate was refused: support must look.
    fn refused<'a>(&'a self, sn: &'a str, reason: &'a str) -> BoxFuture<'a, ()>;
}

/// A cache that keeps nothing (tests of the codec, the CLI).
pub struct NoCache;

impl CertCache for NoCache {
    fn load<'a>(&'a self, _sn: &'a str) -> BoxFuture<'a, Result<Option<String>, CacheError>> {
        Box::pin(async { Ok(None) })
    }
    fn store<'a>(
        &'a self,
        _sn: &'a str,
        _pem: &'a str,
        _not_after: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async { Ok(()) })
    }
    fn refused<'a>(&'a self, sn: &'a str, reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::error!(alipay_cert_sn = sn, reason, "Alipay certificate refused");
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertModeError {
    #[error("{file}: {error}")]
    File {
        file: &'static str,
        error: CertError,
    },
    #[error("the app certificate's public key is not the app private key's (app_cert_file)")]
    AppKeyMismatch,
}

pub struct CertMode {
    sns: CertSns,
    roots: Vec<Cert>,
    default_sn: String,
    known: RwLock<HashMap<String, PublicKey>>,
    cache: RwLock<Arc<dyn CertCache>>,
    /// When a download was last asked for an SN named by a gateway message: anyone can post a
    /// message naming any SN, so each is asked for at most once per `DOWNLOAD_EVERY`, and only
    /// so many SNs are tracked.
    asked: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
}

const DOWNLOAD_EVERY_MINUTES: i64 = 10;
const MAX_TRACKED_SNS: usize = 64;

impl std::fmt::Debug for CertMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertMode")
            .field("sns", &self.sns)
            .field("default_sn", &self.default_sn)
            .finish_non_exhaustive()
    }
}

impl CertMode {
    /// From the three files' contents. The app certificate must carry `app_public_key` (checked
    /// at start-up: a mismatch would have every request refused). The configured Alipay
    /// certificate is trusted as configured (the operator put it there), but its SN and key are
    /// read from it.
    pub fn new(
        app_cert: &[u8],
        alipay_cert: &[u8],
        root_bundle: &[u8],
        app_public_key: &PublicKey,
    ) -> Result<Self, CertModeError> {
        let app = cert::parse_leaf(app_cert).map_err(|error| CertModeError::File {
            file: "app_cert_file",
            error,
        })?;
        let app_key = app[0].public_key().map_err(|error| CertModeError::File {
            file: "app_cert_file",
            error,
        })?;
        if !app_key.same_key_as(app_public_key) {
            return Err(CertModeError::AppKeyMismatch);
        }
        let roots = cert::parse_bundle(root_bundle, true).map_err(|error| CertModeError::File {
            file: "alipay_root_cert_file",
            error,
        })?;
        let root_sn = cert::root_sn(&roots).map_err(|error| CertModeError::File {
            file: "alipay_root_cert_file",
            error,
        })?;
        let alipay = cert::parse_leaf(alipay_cert).map_err(|error| CertModeError::File {
            file: "alipay_cert_file",
            error,
        })?;
        let file = |error| CertModeError::File {
            file: "alipay_cert_file",
            error,
        };
        let default_sn = alipay[0].sn().map_err(file)?;
        let alipay_key = alipay[0].public_key().map_err(file)?;
        let app_cert_sn = app[0].sn().map_err(|error| CertModeError::File {
            file: "app_cert_file",
            error,
        })?;
        Ok(Self {
            sns: CertSns {
                app_cert_sn,
                alipay_root_cert_sn: root_sn,
            },
            roots,
            known: RwLock::new(HashMap::from([(default_sn.clone(), alipay_key)])),
            default_sn,
            cache: RwLock::new(Arc::new(NoCache)),
            asked: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Sets where downloaded certificates are kept (the database, once it is open).
    pub fn set_cache(&self, cache: Arc<dyn CertCache>) {
        *self.cache.write().expect("cache lock") = cache;
    }

    fn cache(&self) -> Arc<dyn CertCache> {
        self.cache.read().expect("cache lock").clone()
    }

    pub fn sns(&self) -> &CertSns {
        &self.sns
    }

    /// The configured Alipay certificate's SN.
    pub fn default_sn(&self) -> &str {
        &self.default_sn
    }

    /// The key of a certificate we hold: `None` names the configured one.
    pub fn known_key(&self, sn: Option<&str>) -> Option<PublicKey> {
        let sn = sn.unwrap_or(&self.default_sn);
        self.known.read().expect("known lock").get(sn).cloned()
    }

    /// A held certificate, else one from the shared cache (checked again: its validity may have
    /// ended since it was stored).
    pub async fn key(&self, sn: Option<&str>, now: DateTime<Utc>) -> Option<PublicKey> {
        if let Some(key) = self.known_key(sn) {
            return Some(key);
        }
        let sn = sn?;
        let pem = self.cache().load(sn).await.ok().flatten()?;
        let chain = cert::parse_leaf(pem.as_bytes()).ok()?;
        self.trust(sn, &chain, now).ok()
    }

    /// Whether a gateway message naming the unknown `sn` should make us download it now.
    pub fn should_download(&self, sn: &str, now: DateTime<Utc>) -> bool {
        let mut asked = self.asked.lock().expect("asked lock");
        asked.retain(|_, at| now - *at < chrono::Duration::minutes(DOWNLOAD_EVERY_MINUTES));
        if asked.contains_key(sn) || asked.len() >= MAX_TRACKED_SNS {
            return false;
        }
        asked.insert(sn.to_string(), now);
        true
    }

    /// Accepts a downloaded certificate (PEM text, leaf first) for `sn`: it must be that SN,
    /// chain to the root and be within its validity. Accepted ones are cached; refused ones are
    /// reported to support. Returns its key.
    pub async fn accept_download(
        &self,
        sn: &str,
        pem: &str,
        now: DateTime<Utc>,
    ) -> Result<PublicKey, TrustError> {
        let checked = cert::parse_leaf(pem.as_bytes())
            .map_err(|e| TrustError(e.to_string()))
            .and_then(|chain| self.trust(sn, &chain, now).map(|key| (key, chain)));
        match checked {
            Ok((key, chain)) => {
                let not_after = chain[0].validity().map(|v| v.1).unwrap_or(now);
                if let Err(e) = self.cache().store(sn, pem, not_after).await {
                    // Still usable here; another replica will download it again.
                    tracing::warn!(alipay_cert_sn = sn, error = %e, "downloaded certificate not cached");
                }
                Ok(key)
            }
            Err(reason) => {
                self.cache().refused(sn, &reason.0).await;
                Err(reason)
            }
        }
    }

    fn trust(&self, sn: &str, chain: &[Cert], now: DateTime<Utc>) -> Result<PublicKey, TrustError> {
        let leaf_sn = chain[0].sn().map_err(|e| TrustError(e.to_string()))?;
        if leaf_sn != sn {
            return Err(TrustError(format!(
                "the certificate's SN is {leaf_sn}, not the {sn} asked for"
            )));
        }
        cert::check_chain(chain, &self.roots, now).map_err(|e| TrustError(e.to_string()))?;
        let key = chain[0]
            .public_key()
            .map_err(|e| TrustError(e.to_string()))?;
        self.known
            .write()
            .expect("known lock")
            .insert(sn.to_string(), key.clone());
        Ok(key)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TrustError(pub String);
