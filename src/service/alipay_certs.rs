//! Certificate mode's shared cache: downloaded Alipay certificates in the database (so every
//! replica uses what one downloaded), and an alert to support for a refused one.

use super::alerts::{Alert, Alerter};
use super::{in_transaction, on_store};
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
        let sn = sn.to_string();
        Box::pin(async move {
            on_store(&self.pool, move |conn| {
                alipay_certs::find(conn, &sn).map_err(StoreError::from)
            })
            .await
            .map_err(cache_error)
        })
    }

    fn store<'a>(
        &'a self,
        sn: &'a str,
        pem: &'a str,
        not_after: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), CacheError>> {
        let (sn, pem) = (sn.to_string(), pem.to_string());
        let now = to_db_time(self.clock.now());
        Box::pin(async move {
            in_transaction(&self.pool, move |conn| {
                alipay_certs::insert_if_absent(conn, &sn, &pem, to_db_time(not_after), now)
                    .map(|_| ())
                    .map_err(StoreError::from)
            })
            .await
            .map_err(cache_error)
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
