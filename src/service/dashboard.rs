//! What support's web page shows, as plain values.

use super::Services;
use super::views::ViewError;
use crate::domain::OrderId;
use crate::store::{
    authorizations::AuthorizationRow, dashboard, from_db_time, merchant_orders::MerchantOrderRow,
};
use chrono::{DateTime, Utc};

pub struct Overview {
    pub counts: Vec<(String, i64)>,
    /// (order, deadline kind, due at, order status), soonest first.
    pub at_risk: Vec<(String, String, DateTime<Utc>, String)>,
}

/// A stored gateway message about an order, parameters masked.
pub struct MessageAbout {
    pub app_id: String,
    pub notify_id: String,
    pub kind: String,
    pub state: String,
    pub received_at: DateTime<Utc>,
    pub params: String,
}

impl Services {
    fn dashboard_conn(&self) -> Result<crate::store::PooledConn, ViewError> {
        self.pool.get().map_err(|e| ViewError::Store(e.into()))
    }

    pub async fn overview(&self) -> Result<Overview, ViewError> {
        self.off_executor(move |s| {
            let mut conn = s.dashboard_conn()?;
            Ok(Overview {
                counts: dashboard::status_counts(&mut conn)?,
                at_risk: dashboard::deadlines_at_risk(&mut conn, 50)?
                    .into_iter()
                    .map(|(id, kind, due, status)| (id, kind, from_db_time(due), status))
                    .collect(),
            })
        })
        .await
    }

    pub async fn messages_about(
        &self,
        commodity_order_id: &OrderId,
    ) -> Result<Vec<MessageAbout>, ViewError> {
        let commodity_order_id = commodity_order_id.to_owned();
        self.off_executor(move |s| {
            let commodity_order_id = commodity_order_id.as_str();
            let mut conn = s.dashboard_conn()?;
            Ok(
                dashboard::messages_about(&mut conn, commodity_order_id, 100)?
                    .into_iter()
                    .map(
                        |(app_id, notify_id, kind, state, received_at, params)| MessageAbout {
                            app_id,
                            notify_id,
                            kind,
                            state,
                            received_at: from_db_time(received_at),
                            params,
                        },
                    )
                    .collect(),
            )
        })
        .await
    }

    pub async fn authorization_list(&self) -> Result<Vec<AuthorizationRow>, ViewError> {
        self.off_executor(move |s| {
            let mut conn = s.dashboard_conn()?;
            Ok(dashboard::authorizations(&mut conn, 200)?)
        })
        .await
    }

    pub async fn failed_deliveries(&self) -> Result<Vec<MerchantOrderRow>, ViewError> {
        self.off_executor(move |s| {
            let mut conn = s.dashboard_conn()?;
            Ok(dashboard::failed_deliveries(&mut conn, 200)?)
        })
        .await
    }
}

/// One outbound Alipay call about an order.
pub struct CallAbout {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub method: String,
    pub result: String,
}

impl Services {
    /// The outbound Alipay calls made about an order, newest first, older than call `before`
    /// when given (the next page).
    pub async fn calls_about(
        &self,
        commodity_order_id: &OrderId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CallAbout>, ViewError> {
        let commodity_order_id = commodity_order_id.to_owned();
        self.off_executor(move |s| {
            let commodity_order_id = commodity_order_id.as_str();
            let mut conn = s.dashboard_conn()?;
            Ok(
                dashboard::calls_about(&mut conn, commodity_order_id, before, limit)?
                    .into_iter()
                    .map(|(id, at, method, result)| CallAbout {
                        id,
                        at: from_db_time(at),
                        method,
                        result,
                    })
                    .collect(),
            )
        })
        .await
    }
}
