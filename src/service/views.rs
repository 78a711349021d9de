//! What support sees: orders, authorizations (never a token) and stored messages, as JSON-ready
//! values. Names follow INTERFACE.md.

use super::Services;
use crate::domain::{MiniAppId, OrderId};
use crate::store::deadlines::TimerKind;
use crate::store::{authorizations, from_db_time, messages, orders};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<diesel::result::Error> for ViewError {
    fn from(e: diesel::result::Error) -> Self {
        ViewError::Store(e.into())
    }
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    from_db_time(t)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadlineView {
    pub kind: String,
    pub due_at: DateTime<Utc>,
    pub state: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub cause: String,
    pub reason: Option<String>,
    pub inferred: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuildView {
    pub app_version: String,
    /// `version_list`, `upload`, `build_query`, `audit_apply`, `await_audit`, `online`, `done`,
    /// `rejected`, `failed`, `cancelled` (stopped because the service ended).
    pub step: String,
    pub last_error: Option<String>,
    /// What `alipay.open.mini.version.detail.query` last said of the version (asked when no
    /// audit message came), verbatim; null until asked.
    pub alipay_status: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceView {
    pub status: String,
    pub termination_cause: Option<String>,
    pub terminated_by: Option<String>,
    pub termination_reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub commodity_order_id: String,
    /// When the merchant paid: the item's `service_effect_date`, else the notice's `order_time`
    /// for an order whose first query showed it paid, else the moment a reading showed it paid
    /// (see `paid_at_source`). Null until payment is known, and for free orders. The 30-day
    /// implementation deadline counts from it.
    #[schema(required = true)]
    pub paid_at: Option<DateTime<Utc>>,
    /// What `paid_at` was taken from: `service_effect_date`, `order_time`, `reading`,
    /// `payment_seen` or `merchant_confirmed`.
    #[schema(required = true)]
    pub paid_at_source: Option<String>,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub merchant_pid: Option<String>,
    /// The merchant's name from the order notice.
    pub merchant_name: Option<String>,
    pub mini_app_id: Option<String>,
    /// The ISV app the order was placed with (its notice's `app_id`); null for orders older
    /// than this field, which are the primary app's (`alipay.app_id`).
    #[schema(required = true)]
    pub isv_app_id: Option<String>,
    pub item_code: Option<String>,
    /// The service bought (the notice's `title`).
    pub title: Option<String>,
    pub total_price: Option<String>,
    pub ordered_at: DateTime<Utc>,
    pub status_since: DateTime<Utc>,
    pub deadlines: Vec<DeadlineView>,
    /// The merchant's service (its mini program), once one exists.
    pub service: Option<ServiceView>,
    /// Support's open to-dos for this service (e.g. `merchant_must_cancel_authorization`).
    pub open_tasks: Vec<String>,
    /// `automatic` (Alipay's, during implementation or confirmation) or `offline` (after
    /// completion, between merchant and ISV), once a refund is seen.
    pub refund: Option<String>,
    /// The last reconciliation's reading of `order.query`, and when.
    pub alipay_reading: Option<String>,
    pub reconciled_at: Option<DateTime<Utc>>,
    /// The newest template build of the order's mini program.
    pub build: Option<BuildView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HistoryView>>,
}

/// One paid order's share of a service (`GET /admin/api/services/{mini_app_id}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeriodView {
    pub commodity_order_id: String,
    pub starts_at: DateTime<Utc>,
    /// Null when neither `order.query`'s item dates nor the notice's `period_day` say how long
    /// it runs (such a period never expires by itself).
    #[schema(required = true)]
    pub ends_at: Option<DateTime<Utc>>,
    /// `active`, `ended` (ran out), `refunded`, `cancelled`.
    pub state: String,
}

/// A merchant's service: one mini program, fed by its orders' periods.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceDetailView {
    pub mini_app_id: String,
    /// `provisioning`, `live`, `terminated`, `expired`.
    pub status: String,
    /// Null unless terminated or expired: `authorization_cancelled`, `order_cancelled`,
    /// `refunded`, `implementation_timeout`, `support`, `expired`.
    #[schema(required = true)]
    pub termination_cause: Option<String>,
    #[schema(required = true)]
    pub terminated_by: Option<String>,
    #[schema(required = true)]
    pub termination_reason: Option<String>,
    /// When the last remaining period ends (the service expires then unless renewed); null when
    /// none remains or one has no end.
    #[schema(required = true)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub periods: Vec<PeriodView>,
    /// The newest template build; `step` is `cancelled` for a build stopped because the service
    /// ended.
    #[schema(required = true)]
    pub build: Option<BuildView>,
    /// Support's open to-dos for this service (e.g. `merchant_must_cancel_authorization`).
    pub open_tasks: Vec<String>,
}

/// One page of the order list, newest first; follow `next_cursor` until it is null.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    /// Null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// The opaque cursor: where the next page starts, as base64url of `created_at-nanos:order-id`.
pub fn encode_cursor(key: &orders::OrderKey) -> String {
    use base64::Engine as _;
    let nanos = key
        .created_at
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap_or(i64::MAX);
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{nanos}:{}", key.commodity_order_id))
}

/// The cursor back, or `None` when it is not one we gave out.
pub fn decode_cursor(cursor: &str) -> Option<orders::OrderKey> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (nanos, id) = text.split_once(':')?;
    let nanos: i64 = nanos.parse().ok()?;
    Some(orders::OrderKey {
        created_at: DateTime::from_timestamp_nanos(nanos).naive_utc(),
        commodity_order_id: id.to_string(),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthorizationView {
    pub auth_app_id: String,
    pub user_id: Option<String>,
    pub status: String,
    pub auth_time: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when support must look at it (e.g. Alipay refused its token).
    pub attention: Option<String>,
    /// The ISV app the merchant authorized; null for authorizations older than this field,
    /// which are the primary app's (`alipay.app_id`).
    #[schema(required = true)]
    pub isv_app_id: Option<String>,
    /// When Alipay last answered the token check (`auth.token.app.query`); null until then.
    #[schema(required = true)]
    pub token_checked_at: Option<DateTime<Utc>>,
    /// What the last token check saw: `valid`, `invalid`, another status verbatim, or
    /// `not answered: CODE`; null until checked.
    #[schema(required = true)]
    pub token_check_result: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub notify_id: String,
    pub app_id: String,
    pub kind: String,
    pub received_at: DateTime<Utc>,
    pub state: String,
    pub sign_variant: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub applied_at: Option<DateTime<Utc>>,
}

/// The `kind` of a deadline as the admin API and the order page show it (INTERFACE.md):
/// `payment`, `implementation`, `confirmation`, `warning_<days>`, `query_alipay`,
/// `service_expiry`, `service_expiry_warning`.
fn timer_label(kind: TimerKind, warning_days: i32) -> String {
    match kind {
        TimerKind::Payment | TimerKind::Implementation | TimerKind::Confirmation => {
            kind.as_str().into()
        }
        TimerKind::Warning => format!("warning_{warning_days}"),
        TimerKind::OrderQuery | TimerKind::NoticeQuery => "query_alipay".into(),
        TimerKind::ServiceExpiry | TimerKind::ServiceExpiryWarning => kind.as_str().into(),
    }
}

fn order_view(
    conn: &mut crate::store::AnyConnection,
    row: orders::OrderRow,
    with_history: bool,
) -> Result<OrderView, ViewError> {
    let deadlines = orders::deadlines(conn, &row.commodity_order_id)?
        .into_iter()
        .map(|d| DeadlineView {
            kind: timer_label(d.kind, d.warning_days),
            due_at: utc(d.due_at),
            state: d.state.as_str().into(),
        })
        .collect();
    let key = row
        .mini_app_id
        .clone()
        .unwrap_or_else(|| format!("order:{}", row.commodity_order_id));
    let service = orders::find_service(conn, &key)?;
    let open_tasks = orders::open_tasks(conn, &key)?;
    let build = match &row.mini_app_id {
        Some(app) => crate::store::builds::latest(conn, app)?.map(|b| BuildView {
            app_version: b.app_version,
            step: b.step.as_str().into(),
            last_error: b.last_error,
            alipay_status: b.alipay_status,
        }),
        None => None,
    };
    let history = if with_history {
        Some(
            orders::history(conn, &row.commodity_order_id)?
                .into_iter()
                .map(|h| HistoryView {
                    from_status: h.from_status,
                    to_status: h.to_status,
                    actor: h.actor,
                    cause: h.cause,
                    reason: h.reason,
                    inferred: h.inferred,
                    at: utc(h.at),
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(OrderView {
        commodity_order_id: row.commodity_order_id,
        paid_at: row.paid_at.map(utc),
        paid_at_source: row.paid_at_source.map(|s| s.as_str().into()),
        status: row.status.as_str().into(),
        cancel_reason: row.cancel_reason.map(|r| r.as_str().into()),
        merchant_pid: row.merchant_pid,
        merchant_name: row.merchant_name,
        mini_app_id: row.mini_app_id,
        isv_app_id: row.isv_app_id,
        item_code: row.item_code,
        title: row.title,
        total_price: row.total_price,
        ordered_at: utc(row.ordered_at),
        status_since: utc(row.status_since),
        deadlines,
        service: service.map(|s| ServiceView {
            status: s.status.as_str().into(),
            termination_cause: s.termination_cause.map(|c| c.as_str().into()),
            terminated_by: s.terminated_by,
            termination_reason: s.termination_reason,
        }),
        open_tasks: open_tasks.iter().map(|t| t.as_str().into()).collect(),
        refund: row.refund.map(|r| r.as_str().into()),
        alipay_reading: row.alipay_reading,
        reconciled_at: row.reconciled_at.map(utc),
        build,
        history,
    })
}

impl Services {
    fn conn(&self) -> Result<crate::store::PooledConn, ViewError> {
        self.pool.get().map_err(|e| ViewError::Store(e.into()))
    }

    pub async fn order(&self, id: &OrderId) -> Result<Option<OrderView>, ViewError> {
        let id = id.to_owned();
        self.off_executor(move |s| {
            let id = id.as_str();
            let mut conn = s.conn()?;
            match orders::find(&mut conn, id)? {
                Some(row) => Ok(Some(order_view(&mut conn, row, true)?)),
                None => Ok(None),
            }
        })
        .await
    }

    pub async fn orders(
        &self,
        status: Option<crate::domain::OrderStatus>,
        limit: i64,
    ) -> Result<Vec<OrderView>, ViewError> {
        self.off_executor(move |s| {
            let mut conn = s.conn()?;
            let rows = orders::list(&mut conn, status, limit)?;
            rows.into_iter()
                .map(|row| order_view(&mut conn, row, false))
                .collect()
        })
        .await
    }

    /// A page of orders matching `search`, newest first, after `after` (a decoded cursor).
    pub async fn order_page(
        &self,
        search: &orders::OrderSearch,
        after: Option<&orders::OrderKey>,
        limit: i64,
    ) -> Result<OrderPage, ViewError> {
        let (search, after) = (search.clone(), after.cloned());
        self.off_executor(move |s| {
            let (search, after) = (&search, after.as_ref());
            let mut conn = s.conn()?;
            // One more than asked tells whether another page follows.
            let mut rows = orders::page(&mut conn, search, after, limit + 1)?;
            let more = rows.len() as i64 > limit;
            rows.truncate(limit as usize);
            let next_cursor = match (more, rows.last()) {
                (true, Some(last)) => Some(encode_cursor(&orders::OrderKey {
                    created_at: last.created_at,
                    commodity_order_id: last.commodity_order_id.clone(),
                })),
                _ => None,
            };
            let orders = rows
                .into_iter()
                .map(|row| order_view(&mut conn, row, false))
                .collect::<Result<_, _>>()?;
            Ok(OrderPage {
                orders,
                next_cursor,
            })
        })
        .await
    }

    /// The service of a mini program, with its periods and its newest build.
    pub async fn service(
        &self,
        mini_app_id: &MiniAppId,
    ) -> Result<Option<ServiceDetailView>, ViewError> {
        let mini_app_id = mini_app_id.clone();
        self.off_executor(move |s| {
            use crate::store::periods;
            let mini_app_id = mini_app_id.as_str();
            let mut conn = s.conn()?;
            let Some(service) = orders::find_service(&mut conn, mini_app_id)? else {
                return Ok(None);
            };
            let now = s.clock.now();
            let rows = periods::for_service(&mut conn, mini_app_id)?;
            let domain: Vec<crate::domain::lifecycle::Period> =
                rows.iter().map(periods::PeriodRow::to_domain).collect();
            let ended = service.status.has_ended();
            let build = crate::store::builds::latest(&mut conn, mini_app_id)?.map(|b| BuildView {
                app_version: b.app_version,
                step: b.step.as_str().into(),
                last_error: b.last_error,
                alipay_status: b.alipay_status,
            });
            let open_tasks = orders::open_tasks(&mut conn, mini_app_id)?;
            Ok(Some(ServiceDetailView {
                mini_app_id: mini_app_id.to_string(),
                status: service.status.as_str().into(),
                termination_cause: service.termination_cause.map(|c| c.as_str().into()),
                terminated_by: service.terminated_by,
                termination_reason: service.termination_reason,
                expires_at: if ended {
                    None
                } else {
                    crate::domain::lifecycle::last_end(&domain, now)
                },
                periods: domain
                    .iter()
                    .zip(&rows)
                    .map(|(p, row)| PeriodView {
                        commodity_order_id: p.commodity_order_id.clone(),
                        starts_at: utc(row.starts_at),
                        ends_at: p.ends_at,
                        state: p.state_at(now).as_str().into(),
                    })
                    .collect(),
                build,
                open_tasks: open_tasks.iter().map(|t| t.as_str().into()).collect(),
            }))
        })
        .await
    }

    pub async fn authorization(
        &self,
        auth_app_id: &MiniAppId,
    ) -> Result<Option<AuthorizationView>, ViewError> {
        let auth_app_id = auth_app_id.to_owned();
        self.off_executor(move |s| {
            let auth_app_id = auth_app_id.as_str();
            let mut conn = s.conn()?;
            let Some(a) = authorizations::find(&mut conn, auth_app_id)? else {
                return Ok(None);
            };
            let (checked_at, check_result) =
                crate::store::token_checks::last(&mut conn, auth_app_id)?.unwrap_or_default();
            Ok(Some(AuthorizationView {
                auth_app_id: a.auth_app_id,
                user_id: a.user_id,
                status: a.status.as_str().into(),
                auth_time: utc(a.auth_time),
                updated_at: utc(a.updated_at),
                attention: a.attention,
                isv_app_id: a.isv_app_id,
                token_checked_at: checked_at.map(utc),
                token_check_result: check_result,
            }))
        })
        .await
    }

    pub async fn messages(&self, limit: i64) -> Result<Vec<MessageView>, ViewError> {
        self.off_executor(move |s| {
            let mut conn = s.conn()?;
            Ok(messages::recent(&mut conn, limit)?
                .into_iter()
                .map(|m| MessageView {
                    notify_id: m.notify_id,
                    app_id: m.app_id,
                    kind: m.kind,
                    received_at: utc(m.received_at),
                    state: m.state.as_str().into(),
                    sign_variant: m.sign_variant,
                    attempts: m.attempts,
                    last_error: m.last_error,
                    applied_at: m.applied_at.map(utc),
                })
                .collect())
        })
        .await
    }

    /// True when the database answers.
    pub async fn database_ready(&self) -> bool {
        self.off_executor(move |s| {
            use diesel::connection::SimpleConnection as _;
            s.pool
                .get()
                .ok()
                .is_some_and(|mut c| c.batch_execute("SELECT 1").is_ok())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_labels_keep_the_documented_kinds() {
        assert_eq!(timer_label(TimerKind::Payment, 0), "payment");
        assert_eq!(timer_label(TimerKind::Implementation, 0), "implementation");
        assert_eq!(timer_label(TimerKind::Confirmation, 0), "confirmation");
        assert_eq!(timer_label(TimerKind::Warning, 20), "warning_20");
        assert_eq!(timer_label(TimerKind::Warning, 27), "warning_27");
        assert_eq!(timer_label(TimerKind::OrderQuery, 0), "query_alipay");
    }
}
