//! Certificate mode's shared cache: downloaded Alipay certificates in the database (so every
//! replica uses what one downloaded), and an alert to support for a refused one.

use super::alerts::{Alert, Alerter};
use super::blocking;
use crate::alipay::cert_mode::{CacheError, CertCache};
use crate::clock::SharedClock;
use crate::store::{Pool, StoreError, alipay_certs, to_db_time};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

pub struct DbCertCache {
    pub pool: Pool,
    pub alerts: Alerter,
    pub clock: SharedClock,
}

impl CertCache for DbCertCache {
    fn load<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Result<Option<String>, CacheError>> {
        Box::pin(async move {
            let pool = self.pool.clone();
            let sn = sn.to_string();
            let found = blocking(move || -> Result<_, StoreError> {
                let mut conn = pool.get()?;
                Ok(alipay_certs::find(&mut conn, &sn)?)
            })
            .await
            .map_err(StoreError::from)
            .and_then(|r| r);
            found.map_err(cache_error)
        })
    }

    fn store<'a>(
        &'a self,
        sn: &'a str,
        pem: &'a str,
        not_after: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let pool = self.pool.clone();
            let (sn, pem) = (sn.to_string(), pem.to_string());
            let now = to_db_time(self.clock.now());
            let stored = blocking(move || -> Result<(), StoreError> {
                let mut conn = pool.get()?;
                let _writer = pool.write_guard();
                alipay_certs::insert_if_absent(&mut conn, &sn, &pem, to_db_time(not_after), now)?;
                Ok(())
            })
            .await
            .map_err(StoreError::from)
            .and_then(|r| r);
            stored.map_err(cache_error)
        })
    }

    fn refused<'a>(&'a self, sn: &'a str, reason: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::error!(alipay_cert_sn = sn, reason, "Alipay certificate refused");
            self.alerts
                .raise(Alert {
                    kind: "alipay_certificate_refused".into(),
                    subject: sn.to_string(),
                    message: format!(
                        "a response named Alipay certificate {sn}; the downloaded certificate was refused: {reason}. Nothing signed under it is believed."
                    ),
                })
                .await;
        })
    }
}

fn cache_error(e: StoreError) -> CacheError {
    CacheError(e.to_string())
}
