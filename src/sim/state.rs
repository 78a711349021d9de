//! The simulator's world: marketplace orders, merchants' authorizations, mini-program versions,
//! merchant-order syncs and the calls log. Pure data and rules; the HTTP shells lock it, call one
//! method, and send whatever gateway messages the method returns.
//!
//! Time-driven transitions (3 days unpaid, 30 days implementing, 7 days awaiting confirmation) are
//! applied lazily by `settle`, which every entry point calls first with the sim clock's `now`.

use chrono::{DateTime, Duration, Utc};
use rand::Rng as _;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

pub const PAYMENT_WINDOW: Duration = Duration::days(3);
pub const IMPLEMENTATION_WINDOW: Duration = Duration::days(30);
pub const CONFIRMATION_WINDOW: Duration = Duration::days(7);

/// Where an order stands in Alipay's eyes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Ordered, not paid.
    Unpaid,
    /// Paid: the ISV is implementing (building the merchant's mini program).
    Implementing,
    /// Our build passed audit: the merchant has 7 days to confirm.
    AwaitingConfirmation,
    /// The merchant confirmed.
    Confirmed,
    /// Nobody confirmed within 7 days: completed automatically.
    AutoConfirmed,
    /// The merchant asked for a refund (implementing or awaiting confirmation).
    Refunded,
    /// Not paid within 3 days.
    Closed,
    /// Not awaiting confirmation after 30 days of implementation: cancelled and refunded.
    ImplementationTimeout,
}

impl Stage {
    /// (order-level `status`, item `order_status`) as `order.query` reports them.
    pub fn wire(self) -> (&'static str, &'static str) {
        match self {
            Stage::Unpaid => ("MERCHANT_ORDED", "TO_DO"),
            Stage::Implementing => ("MERCHANT_PAID", "DOING"),
            Stage::AwaitingConfirmation => ("MERCHANT_PAID", "TO_CONFIRM"),
            Stage::Confirmed | Stage::AutoConfirmed => ("MERCHANT_PAID", "CONFIRMED"),
            Stage::Refunded => ("MERCHANT_CANCELLED", "MERCHANT_CANCELLED"),
            Stage::Closed => ("CLOSED", "MERCHANT_CANCELLED"),
            Stage::ImplementationTimeout => ("CANCELLED", "MERCHANT_CANCELLED"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub commodity_order_id: String,
    pub mini_app_id: String,
    pub merchant_pid: String,
    pub total_price: String,
    pub item_code: String,
    pub title: String,
    pub ordered_at: DateTime<Utc>,
    pub stage: Stage,
    /// When the order entered `stage` (for deadlines: the deadline instant, not when it was
    /// noticed).
    pub stage_since: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// An order-level `status` that `order.query` reports instead of the stage's own (e.g. a
    /// value Alipay never published): the items still tell the truth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_level_status: Option<String>,
    /// Whether the order notice names the mini program (`consumer_miniAppId`); when it does
    /// not, only `order.query`'s `order_items[].mini_app_id` does.
    pub notice_names_mini_app: bool,
}

impl Order {
    pub fn summary(&self) -> serde_json::Value {
        let (status, item_status) = self.stage.wire();
        let status = self.order_level_status.as_deref().unwrap_or(status);
        serde_json::json!({
            "commodity_order_id": self.commodity_order_id,
            "mini_app_id": self.mini_app_id,
            "merchant_pid": self.merchant_pid,
            "total_price": self.total_price,
            "item_code": self.item_code,
            "ordered_at": self.ordered_at,
            "stage": self.stage,
            "stage_since": self.stage_since,
            "status": status,
            "item_status": item_status,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStatus {
    Active,
    Cancelled,
}

/// A merchant's authorization of our app for one mini program. Tokens never leave the process
/// through the control API (`summary` leaves them out).
#[derive(Debug, Clone)]
pub struct Authorization {
    pub auth_app_id: String,
    pub user_id: String,
    pub app_auth_token: String,
    pub app_refresh_token: String,
    pub auth_time: DateTime<Utc>,
    pub status: AuthStatus,
    /// Tokens handed out so far (each re-authorization or refresh issues a new one).
    pub tokens_issued: u32,
    /// The ISV app the merchant authorized: its token works for that app only.
    pub isv_app_id: String,
}

impl Authorization {
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "auth_app_id": self.auth_app_id,
            "user_id": self.user_id,
            "auth_time": self.auth_time,
            "status": self.status,
            "tokens_issued": self.tokens_issued,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatus {
    NotSubmitted,
    Passed,
    Rejected,
}

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub mini_app_id: String,
    pub app_version: String,
    pub template_id: String,
    pub template_version: Option<String>,
    pub uploaded_at: DateTime<Utc>,
    pub build_queries: u32,
    pub built: bool,
    pub audit: AuditStatus,
    pub audit_reason: Option<String>,
    pub online: bool,
}

impl Version {
    /// `build_status` as Alipay writes it: "1" building, "2" success.
    pub fn build_status(&self) -> &'static str {
        if self.built { "2" } else { "1" }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MerchantSync {
    pub auth_app_id: String,
    pub out_biz_no: Option<String>,
    pub record_id: String,
    pub order_id: String,
    pub received_at: DateTime<Utc>,
    pub biz_content: serde_json::Value,
}

/// One OpenAPI call as the sim saw it. Never the token itself.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub at: DateTime<Utc>,
    pub method: String,
    pub signature_ok: bool,
    pub token_present: bool,
    /// Result code answered (`10000`, `40002`, ...) or the fault injected (`fault_5xx`, ...).
    pub outcome: String,
}

/// A gateway message the sim sent (or is sending), for `GET /sim/state`. No parameters: the
/// authorization message carries tokens.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRecord {
    pub notify_id: String,
    pub kind: String,
    /// The ISV app the message is addressed to.
    pub app_id: String,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    /// `pending`, `delivered`, `failed` (retries exhausted) or `unsent` (no gateway URL).
    pub delivery: String,
    pub last_answer: Option<String>,
}

/// What `order.query` and the control API refuse, as (code, sub_code, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub code: &'static str,
    pub sub_code: &'static str,
    pub message: String,
    /// HTTP status for the control API.
    pub http: u16,
}

impl SimError {
    pub fn new(code: &'static str, sub_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            sub_code,
            message: message.into(),
            http: 400,
        }
    }

    pub fn not_found(sub_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            http: 404,
            ..Self::new("40004", sub_code, message)
        }
    }

    pub fn conflict(sub_code: &'static str, message: impl Into<String>) -> Self {
        Self {
            http: 409,
            ..Self::new("40004", sub_code, message)
        }
    }

    pub fn invalid_token() -> Self {
        Self {
            http: 401,
            ..Self::new(
                "20001",
                "aop.invalid-app-auth-token",
                "无效的应用授权令牌 (invalid app_auth_token)",
            )
        }
    }
}

/// A gateway message to send, before signing.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub notify_id: String,
    pub kind: String,
    /// Every parameter but `sign`.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct SimState {
    pub orders: BTreeMap<String, Order>,
    pub authorizations: BTreeMap<String, Authorization>,
    /// mini_app_id → app_version → version.
    pub versions: BTreeMap<String, BTreeMap<String, Version>>,
    pub syncs: Vec<MerchantSync>,
    pub calls: Vec<CallRecord>,
    pub messages: Vec<MessageRecord>,
    /// Single-use `app_auth_code`s → auth_app_id.
    pub auth_codes: BTreeMap<String, String>,
    /// Mini programs whose next audit is rejected, with the reason.
    pub reject_next_audit: BTreeMap<String, String>,
    /// Mini programs whose audit messages are lost: the audit is decided, no message is sent
    /// (only `version.detail.query` tells).
    pub lose_audit_messages: BTreeSet<String>,
    seq: u64,
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.r#gen::<u8>()))
        .collect()
}

pub fn new_notify_id() -> String {
    random_hex(16)
}

/// Parameters of `POST /sim/orders`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct NewOrder {
    pub commodity_order_id: Option<String>,
    pub mini_app_id: Option<String>,
    pub price: Option<String>,
    pub authorize: Option<bool>,
    pub merchant_pid: Option<String>,
    pub item_code: Option<String>,
    pub title: Option<String>,
    /// The ISV app the order is placed with (its messages carry it); default: the primary app.
    pub app_id: Option<String>,
    /// `order.query`'s order-level `status` for this order, whatever its stage (e.g. an
    /// unpublished value); default: the stage's own.
    pub order_level_status: Option<String>,
    /// `false`: the order notice leaves out `consumer_miniAppId` (default `true`).
    pub notice_names_mini_app: Option<bool>,
}

fn is_free(price: &str) -> bool {
    price.trim().parse::<f64>().is_ok_and(|p| p <= 0.0)
}

impl SimState {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Applies every deadline that has passed by `now`, each at its own instant.
    pub fn settle(&mut self, now: DateTime<Utc>) {
        for order in self.orders.values_mut() {
            loop {
                let (deadline, next) = match order.stage {
                    Stage::Unpaid => (order.stage_since + PAYMENT_WINDOW, Stage::Closed),
                    Stage::Implementing => (
                        order.stage_since + IMPLEMENTATION_WINDOW,
                        Stage::ImplementationTimeout,
                    ),
                    Stage::AwaitingConfirmation => (
                        order.stage_since + CONFIRMATION_WINDOW,
                        Stage::AutoConfirmed,
                    ),
                    _ => break,
                };
                if now < deadline {
                    break;
                }
                order.stage = next;
                order.stage_since = deadline;
            }
        }
    }

    fn new_token(&mut self, now: DateTime<Utc>, tag: &str) -> String {
        format!("{}{tag}{}", now.format("%Y%m"), random_hex(16))
    }

    /// (Re-)authorizes our app for `auth_app_id`: a fresh token replaces any earlier one.
    /// Returns the message announcing it.
    pub fn authorize(
        &mut self,
        auth_app_id: &str,
        user_id: &str,
        now: DateTime<Utc>,
        app_id: &str,
    ) -> Outgoing {
        let token = self.new_token(now, "BB");
        let refresh = self.new_token(now, "RR");
        let issued = self
            .authorizations
            .get(auth_app_id)
            .map_or(0, |a| a.tokens_issued);
        let auth = Authorization {
            auth_app_id: auth_app_id.to_string(),
            user_id: user_id.to_string(),
            app_auth_token: token,
            app_refresh_token: refresh,
            auth_time: now,
            status: AuthStatus::Active,
            tokens_issued: issued + 1,
            isv_app_id: app_id.to_string(),
        };
        let message = auth_message(&auth, now, app_id);
        self.authorizations.insert(auth_app_id.to_string(), auth);
        message
    }

    /// Creates an order (and, when asked, the merchant's authorization). Returns the order and
    /// the messages to send, authorization first.
    pub fn create_order(
        &mut self,
        req: NewOrder,
        now: DateTime<Utc>,
        app_id: &str,
    ) -> Result<(Order, Vec<Outgoing>), SimError> {
        let seq = self.next_seq();
        let id = req
            .commodity_order_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{}{:014}", now.format("%Y%m%d"), seq));
        if self.orders.contains_key(&id) {
            return Err(SimError::conflict(
                "ORDER_ALREADY_EXISTS",
                format!("order {id} exists"),
            ));
        }
        let mini_app_id = req
            .mini_app_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("20210041999{:05}", seq));
        let merchant_pid = req
            .merchant_pid
            .or_else(|| {
                self.authorizations
                    .get(&mini_app_id)
                    .map(|a| a.user_id.clone())
            })
            .unwrap_or_else(|| format!("2088{:012}", 102177840000u64 + seq));
        let price = req.price.unwrap_or_else(|| "99.00".into());
        let free = is_free(&price);
        let order = Order {
            commodity_order_id: id.clone(),
            mini_app_id: mini_app_id.clone(),
            merchant_pid: merchant_pid.clone(),
            total_price: price,
            item_code: req.item_code.unwrap_or_else(|| "TS0001".into()),
            title: req.title.unwrap_or_else(|| "小程序模板服务".into()),
            ordered_at: now,
            stage: if free {
                Stage::Implementing
            } else {
                Stage::Unpaid
            },
            stage_since: now,
            paid_at: free.then_some(now),
            order_level_status: req.order_level_status.filter(|s| !s.is_empty()),
            notice_names_mini_app: req.notice_names_mini_app.unwrap_or(true),
        };
        let mut messages = Vec::new();
        if req.authorize.unwrap_or(true) {
            messages.push(self.authorize(&mini_app_id, &merchant_pid, now, app_id));
        }
        messages.push(order_message(&order, now, app_id));
        self.orders.insert(id, order.clone());
        Ok((order, messages))
    }

    fn order_mut(&mut self, id: &str) -> Result<&mut Order, SimError> {
        self.orders
            .get_mut(id)
            .ok_or_else(|| SimError::not_found("ORDER_NOT_EXIST", format!("no order {id}")))
    }

    pub fn pay(&mut self, id: &str, now: DateTime<Utc>) -> Result<Order, SimError> {
        let order = self.order_mut(id)?;
        if order.stage != Stage::Unpaid {
            return Err(SimError::conflict(
                "ORDER_STATUS_INVALID",
                format!("order {id} is {:?}, not unpaid", order.stage),
            ));
        }
        order.stage = Stage::Implementing;
        order.stage_since = now;
        order.paid_at = Some(now);
        Ok(order.clone())
    }

    /// The merchant's refund: allowed while implementing or awaiting confirmation only (after
    /// completion refunds are offline).
    pub fn refund(&mut self, id: &str, now: DateTime<Utc>) -> Result<Order, SimError> {
        let order = self.order_mut(id)?;
        if !matches!(
            order.stage,
            Stage::Implementing | Stage::AwaitingConfirmation
        ) {
            return Err(SimError::conflict(
                "ORDER_STATUS_INVALID",
                format!("order {id} is {:?}: no online refund", order.stage),
            ));
        }
        order.stage = Stage::Refunded;
        order.stage_since = now;
        Ok(order.clone())
    }

    pub fn confirm(&mut self, id: &str, now: DateTime<Utc>) -> Result<Order, SimError> {
        let order = self.order_mut(id)?;
        if order.stage != Stage::AwaitingConfirmation {
            return Err(SimError::conflict(
                "ORDER_STATUS_INVALID",
                format!("order {id} is {:?}, not awaiting confirmation", order.stage),
            ));
        }
        order.stage = Stage::Confirmed;
        order.stage_since = now;
        Ok(order.clone())
    }

    /// The merchant cancels its authorization; the message is sent as the app it authorized.
    pub fn cancel_authorization(
        &mut self,
        auth_app_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(serde_json::Value, Outgoing), SimError> {
        let auth = self.authorizations.get_mut(auth_app_id).ok_or_else(|| {
            SimError::not_found(
                "AUTHORIZATION_NOT_EXIST",
                format!("no authorization {auth_app_id}"),
            )
        })?;
        if auth.status == AuthStatus::Cancelled {
            return Err(SimError::conflict(
                "AUTHORIZATION_CANCELLED",
                format!("authorization {auth_app_id} is already cancelled"),
            ));
        }
        auth.status = AuthStatus::Cancelled;
        let biz = serde_json::json!({
            "auth_app_id": auth.auth_app_id,
            "app_auth_token": auth.app_auth_token,
            "user_id": auth.user_id,
            "cancel_time": crate::alipay::time::format_beijing(now),
        });
        let message = message_service(
            crate::alipay::message::METHOD_AUTH_CANCELLED,
            &biz,
            now,
            &auth.isv_app_id,
            None,
        );
        Ok((auth.summary(), message))
    }

    /// A fresh single-use `app_auth_code` for `alipay.open.auth.token.app`.
    pub fn issue_auth_code(&mut self, auth_app_id: &str) -> Result<String, SimError> {
        match self.authorizations.get(auth_app_id) {
            Some(a) if a.status == AuthStatus::Active => {
                let code = format!("P{}", random_hex(12));
                self.auth_codes
                    .insert(code.clone(), auth_app_id.to_string());
                Ok(code)
            }
            _ => Err(SimError::not_found(
                "AUTHORIZATION_NOT_EXIST",
                format!("no active authorization {auth_app_id}"),
            )),
        }
    }

    /// The authorization an `app_auth_token` belongs to, if it is current and active.
    /// The authorization a token belongs to, when it was issued to ISV app `app_id` (another
    /// app's token is refused like an invalid one).
    pub fn auth_for_app(&self, token: Option<&str>, app_id: &str) -> Result<String, SimError> {
        self.auth_by_token(token)
            .ok()
            .filter(|a| a.isv_app_id == app_id)
            .map(|a| a.auth_app_id.clone())
            .ok_or_else(SimError::invalid_token)
    }

    pub fn auth_by_token(&self, token: Option<&str>) -> Result<&Authorization, SimError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(SimError::invalid_token)?;
        self.authorizations
            .values()
            .find(|a| a.status == AuthStatus::Active && a.app_auth_token == token)
            .ok_or_else(SimError::invalid_token)
    }

    /// `alipay.open.auth.token.app`: exchanges a code, or refreshes (new token and refresh token;
    /// the old token stops working).
    pub fn token_app(
        &mut self,
        biz: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, SimError> {
        let auth_app_id = match biz["grant_type"].as_str() {
            Some("authorization_code") => {
                let code = biz["code"].as_str().unwrap_or_default();
                self.auth_codes.remove(code).ok_or_else(|| {
                    SimError::new("40002", "isv.code-invalid", "授权码code无效 (unknown code)")
                })?
            }
            Some("refresh_token") => {
                let refresh = biz["refresh_token"].as_str().unwrap_or_default();
                let id = self
                    .authorizations
                    .values()
                    .find(|a| {
                        a.status == AuthStatus::Active
                            && !refresh.is_empty()
                            && a.app_refresh_token == refresh
                    })
                    .map(|a| a.auth_app_id.clone())
                    .ok_or_else(|| {
                        SimError::new(
                            "40002",
                            "isv.refresh-token-invalid",
                            "刷新令牌无效 (unknown refresh_token)",
                        )
                    })?;
                let token = self.new_token(now, "BB");
                let refresh = self.new_token(now, "RR");
                if let Some(a) = self.authorizations.get_mut(&id) {
                    a.app_auth_token = token;
                    a.app_refresh_token = refresh;
                    a.tokens_issued += 1;
                }
                id
            }
            _ => {
                return Err(SimError::new(
                    "40002",
                    "isv.grant-type-invalid",
                    "grant_type must be authorization_code or refresh_token",
                ));
            }
        };
        let a = self
            .authorizations
            .get(&auth_app_id)
            .filter(|a| a.status == AuthStatus::Active)
            .ok_or_else(SimError::invalid_token)?;
        Ok(serde_json::json!({
            "app_auth_token": a.app_auth_token,
            "app_refresh_token": a.app_refresh_token,
            "auth_app_id": a.auth_app_id,
            "user_id": a.user_id,
            "expires_in": 31536000,
            "re_expires_in": 32140800,
        }))
    }

    /// A paid order's service dates, as `order.query`'s item dates give them: a year from the
    /// payment, or, for a renewal (续订) of a mini program whose service still runs on earlier
    /// orders, a year from the end of the running one. Refunded or cancelled orders run nothing.
    fn service_dates(&self, order: &Order) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let paid = order.paid_at?;
        let runs = |stage: Stage| match stage {
            Stage::Implementing
            | Stage::AwaitingConfirmation
            | Stage::Confirmed
            | Stage::AutoConfirmed => true,
            Stage::Unpaid | Stage::Refunded | Stage::Closed | Stage::ImplementationTimeout => false,
        };
        let key = (paid, order.commodity_order_id.as_str());
        let mut earlier: Vec<(DateTime<Utc>, &str)> = self
            .orders
            .values()
            .filter(|o| o.mini_app_id == order.mini_app_id && runs(o.stage))
            .filter_map(|o| o.paid_at.map(|p| (p, o.commodity_order_id.as_str())))
            .filter(|k| *k < key)
            .collect();
        earlier.sort();
        let year = Duration::days(365);
        let running_until = earlier
            .iter()
            .fold(None, |end: Option<DateTime<Utc>>, (p, _)| {
                Some(end.map_or(*p, |e| e.max(*p)) + year)
            });
        let start = running_until.map_or(paid, |end| end.max(paid));
        Some((start, start + year))
    }

    pub fn order_query(&self, biz: &serde_json::Value) -> Result<serde_json::Value, SimError> {
        let id = biz["commodity_order_id"].as_str().unwrap_or_default();
        if id.is_empty() {
            return Err(SimError::new(
                "40002",
                "isv.missing-parameter",
                "commodity_order_id is required",
            ));
        }
        let order = self
            .orders
            .get(id)
            .ok_or_else(|| SimError::not_found("ORDER_NOT_EXIST", format!("订单不存在 ({id})")))?;
        let page = biz["start_page"]
            .as_str()
            .and_then(|p| p.parse::<u64>().ok())
            .or_else(|| biz["start_page"].as_u64())
            .unwrap_or(1)
            .max(1);
        let (status, item_status) = order.stage.wire();
        let status = order.order_level_status.as_deref().unwrap_or(status);
        let mut item = serde_json::json!({
            "commodity_id": "APPMK0001",
            "merchant_pid": order.merchant_pid,
            "merchant_name": "杭州测试科技有限公司",
            "mini_app_id": order.mini_app_id,
            "order_status": item_status,
        });
        if let Some((effect, expire)) = self.service_dates(order) {
            item["service_effect_date"] = crate::alipay::time::format_beijing(effect).into();
            item["service_expire_date"] = crate::alipay::time::format_beijing(expire).into();
        }
        let items = if page == 1 { vec![item] } else { vec![] };
        Ok(serde_json::json!({
            "commodity_id": "APPMK0001",
            "status": status,
            "current_page": page,
            "total_size": 1,
            "order_items": items,
        }))
    }

    pub fn version_upload(
        &mut self,
        mini_app_id: &str,
        biz: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, SimError> {
        let app_version = biz["app_version"].as_str().unwrap_or_default();
        let template_id = biz["template_id"].as_str().unwrap_or_default();
        if app_version.is_empty() || template_id.is_empty() {
            return Err(SimError::new(
                "40002",
                "isv.missing-parameter",
                "app_version and template_id are required",
            ));
        }
        let versions = self.versions.entry(mini_app_id.to_string()).or_default();
        if versions.contains_key(app_version) {
            return Err(SimError::conflict(
                "VERSION_EXISTS",
                format!("version {app_version} exists"),
            ));
        }
        let version = Version {
            mini_app_id: mini_app_id.to_string(),
            app_version: app_version.to_string(),
            template_id: template_id.to_string(),
            template_version: biz["template_version"].as_str().map(str::to_string),
            uploaded_at: now,
            build_queries: 0,
            built: false,
            audit: AuditStatus::NotSubmitted,
            audit_reason: None,
            online: false,
        };
        let answer = serde_json::json!({
            "build_status": version.build_status(),
            "need_rotation": "true",
            "version_created": "true",
        });
        versions.insert(app_version.to_string(), version);
        Ok(answer)
    }

    fn version_mut(
        &mut self,
        mini_app_id: &str,
        app_version: &str,
    ) -> Result<&mut Version, SimError> {
        self.versions
            .get_mut(mini_app_id)
            .and_then(|v| v.get_mut(app_version))
            .ok_or_else(|| {
                SimError::not_found(
                    "VERSION_NOT_EXIST",
                    format!("no version {app_version:?} of {mini_app_id}"),
                )
            })
    }

    /// The first query still sees the build running, and the build finishes right after it.
    pub fn build_query(
        &mut self,
        mini_app_id: &str,
        biz: &serde_json::Value,
    ) -> Result<serde_json::Value, SimError> {
        let app_version = biz["app_version"].as_str().unwrap_or_default();
        let version = self.version_mut(mini_app_id, app_version)?;
        let answer = serde_json::json!({
            "build_status": version.build_status(),
            "need_rotation": if version.built { "false" } else { "true" },
            "version_created": "true",
        });
        version.build_queries += 1;
        version.built = true;
        Ok(answer)
    }

    /// Submits a built version for audit. The result is decided at once: passed unless a
    /// rejection was asked for; a pass moves the mini program's implementing orders to
    /// awaiting confirmation. Returns the answer and the audit message to send.
    pub fn audit_apply(
        &mut self,
        mini_app_id: &str,
        app_version: &str,
        now: DateTime<Utc>,
        app_id: &str,
    ) -> Result<(serde_json::Value, Outgoing), SimError> {
        let reject = self.reject_next_audit.get(mini_app_id).cloned();
        let version = self.version_mut(mini_app_id, app_version)?;
        if !version.built {
            return Err(SimError::conflict(
                "VERSION_NOT_BUILT",
                format!("version {app_version} is not built yet"),
            ));
        }
        if version.audit == AuditStatus::Passed {
            return Err(SimError::conflict(
                "VERSION_ALREADY_AUDITED",
                format!("version {app_version} already passed audit"),
            ));
        }
        let mut biz = serde_json::json!({
            "mini_app_id": mini_app_id,
            "mini_app_version": app_version,
        });
        let method = match reject {
            Some(reason) => {
                version.audit = AuditStatus::Rejected;
                version.audit_reason = Some(reason.clone());
                biz["audit_reason"] = reason.into();
                self.reject_next_audit.remove(mini_app_id);
                crate::alipay::message::METHOD_AUDIT_REJECTED
            }
            None => {
                version.audit = AuditStatus::Passed;
                version.audit_reason = None;
                for order in self.orders.values_mut() {
                    if order.mini_app_id == mini_app_id && order.stage == Stage::Implementing {
                        order.stage = Stage::AwaitingConfirmation;
                        order.stage_since = now;
                    }
                }
                crate::alipay::message::METHOD_AUDIT_PASSED
            }
        };
        let message = message_service(method, &biz, now, app_id, Some(mini_app_id));
        Ok((serde_json::json!({"speed_up": "false"}), message))
    }

    /// `alipay.open.mini.version.list.query`: every version the mini program has, ours or set
    /// up with `seed_versions`.
    pub fn version_list(&self, mini_app_id: &str) -> serde_json::Value {
        let versions: Vec<&String> = self
            .versions
            .get(mini_app_id)
            .map(|v| v.keys().collect())
            .unwrap_or_default();
        serde_json::json!({ "app_versions": versions })
    }

    /// `alipay.open.mini.version.detail.query`: the version's audit and release state, as Alipay
    /// names it (`INIT`, `WAIT_RELEASE`, `RELEASE`, `AUDIT_REJECT` with `reject_reason`).
    pub fn version_detail(
        &mut self,
        mini_app_id: &str,
        biz: &serde_json::Value,
    ) -> Result<serde_json::Value, SimError> {
        let app_version = biz["app_version"].as_str().unwrap_or_default();
        let version = self.version_mut(mini_app_id, app_version)?;
        let status = match (version.audit, version.online) {
            (AuditStatus::NotSubmitted, _) => "INIT",
            (AuditStatus::Passed, false) => "WAIT_RELEASE",
            (AuditStatus::Passed, true) => "RELEASE",
            (AuditStatus::Rejected, _) => "AUDIT_REJECT",
        };
        let mut answer = serde_json::json!({
            "app_version": version.app_version,
            "status": status,
        });
        if let Some(reason) = &version.audit_reason {
            answer["reject_reason"] = reason.clone().into();
        }
        Ok(answer)
    }

    /// Versions the mini program already has on Alipay (uploaded elsewhere, released): what
    /// `version.list.query` reports before any build of ours.
    pub fn seed_versions(
        &mut self,
        mini_app_id: &str,
        app_versions: &[String],
        now: DateTime<Utc>,
    ) -> serde_json::Value {
        let versions = self.versions.entry(mini_app_id.to_string()).or_default();
        for v in app_versions {
            versions.entry(v.clone()).or_insert_with(|| Version {
                mini_app_id: mini_app_id.to_string(),
                app_version: v.clone(),
                template_id: String::new(),
                template_version: None,
                uploaded_at: now,
                build_queries: 0,
                built: true,
                audit: AuditStatus::Passed,
                audit_reason: None,
                online: true,
            });
        }
        self.version_list(mini_app_id)
    }

    /// `alipay.open.auth.token.app.query`: `valid` for an active authorization's current token,
    /// `invalid` for a token of a cancelled (or invalidated) one; a token never issued is an
    /// error, as Alipay answers it.
    pub fn token_query(&self, biz: &serde_json::Value) -> Result<serde_json::Value, SimError> {
        let token = biz["app_auth_token"].as_str().unwrap_or_default();
        let auth = self
            .authorizations
            .values()
            .find(|a| !token.is_empty() && a.app_auth_token == token)
            .ok_or_else(SimError::invalid_token)?;
        let status = match auth.status {
            AuthStatus::Active => "valid",
            AuthStatus::Cancelled => "invalid",
        };
        Ok(serde_json::json!({
            "user_id": auth.user_id,
            "auth_app_id": auth.auth_app_id,
            "status": status,
            "auth_start": crate::alipay::time::format_beijing(auth.auth_time),
            "auth_methods": ["alipay.open.mini.version.upload", "alipay.open.servicemarket.order.query"],
        }))
    }

    /// The merchant's authorization ends without the `appauth.cancelled` message (it was lost):
    /// only `auth.token.app.query` tells.
    pub fn invalidate_authorization(
        &mut self,
        auth_app_id: &str,
    ) -> Result<serde_json::Value, SimError> {
        let auth = self.authorizations.get_mut(auth_app_id).ok_or_else(|| {
            SimError::not_found(
                "AUTHORIZATION_NOT_EXIST",
                format!("no authorization {auth_app_id}"),
            )
        })?;
        auth.status = AuthStatus::Cancelled;
        Ok(auth.summary())
    }

    pub fn version_online(
        &mut self,
        mini_app_id: &str,
        biz: &serde_json::Value,
    ) -> Result<serde_json::Value, SimError> {
        let app_version = biz["app_version"].as_str().unwrap_or_default();
        let version = self.version_mut(mini_app_id, app_version)?;
        if version.audit != AuditStatus::Passed {
            return Err(SimError::conflict(
                "VERSION_NOT_AUDITED",
                format!("version {app_version} has not passed audit"),
            ));
        }
        version.online = true;
        Ok(serde_json::json!({}))
    }

    pub fn merchant_order_sync(
        &mut self,
        auth_app_id: &str,
        biz: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, SimError> {
        if !biz.is_object() {
            return Err(SimError::new(
                "40002",
                "isv.invalid-parameter",
                "biz_content must be a JSON object",
            ));
        }
        let out_biz_no = biz["out_biz_no"].as_str().map(str::to_string);
        let seq = self.next_seq();
        let record_id = format!("{}{:012}", now.format("%Y%m%d"), seq);
        // One Alipay order per (merchant app, out_biz_no): later syncs update it.
        let order_id = self
            .syncs
            .iter()
            .find(|s| {
                s.auth_app_id == auth_app_id && out_biz_no.is_some() && s.out_biz_no == out_biz_no
            })
            .map(|s| s.order_id.clone())
            .unwrap_or_else(|| format!("SIMORD{}{:010}", now.format("%Y%m%d"), seq));
        let order_status = biz["order_status"].as_str().map(str::to_string);
        self.syncs.push(MerchantSync {
            auth_app_id: auth_app_id.to_string(),
            out_biz_no,
            record_id: record_id.clone(),
            order_id: order_id.clone(),
            received_at: now,
            biz_content: biz,
        });
        Ok(serde_json::json!({
            "record_id": record_id,
            "order_id": order_id,
            "order_status": order_status,
        }))
    }

    /// The whole state as JSON, without any token.
    pub fn snapshot(&self, now: DateTime<Utc>) -> serde_json::Value {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for call in &self.calls {
            *counts.entry(call.method.as_str()).or_default() += 1;
        }
        let syncs: Vec<serde_json::Value> = self
            .syncs
            .iter()
            .map(|s| {
                serde_json::json!({
                    "auth_app_id": s.auth_app_id,
                    "out_biz_no": s.out_biz_no,
                    "record_id": s.record_id,
                    "order_id": s.order_id,
                    "received_at": s.received_at,
                })
            })
            .collect();
        let rejects: BTreeSet<&String> = self.reject_next_audit.keys().collect();
        serde_json::json!({
            "now": now,
            "orders": self.orders.values().map(Order::summary).collect::<Vec<_>>(),
            "authorizations": self.authorizations.values().map(Authorization::summary).collect::<Vec<_>>(),
            "versions": self.versions.values().flat_map(|v| v.values()).collect::<Vec<_>>(),
            "merchant_order_syncs": syncs,
            "messages": self.messages,
            "reject_next_audit": rejects,
            "lose_audit_messages": self.lose_audit_messages,
            "calls": counts,
        })
    }
}

fn auth_message(auth: &Authorization, now: DateTime<Utc>, app_id: &str) -> Outgoing {
    let biz = serde_json::json!({
        "detail": {
            "app_auth_token": auth.app_auth_token,
            "app_refresh_token": auth.app_refresh_token,
            "auth_app_id": auth.auth_app_id,
            "expires_in": 31536000,
            "re_expires_in": 32140800,
            "user_id": auth.user_id,
            "auth_time": now.timestamp_millis(),
        },
        "notify_context": {"trigger": "system", "trigger_context": {}},
    });
    let notify_id = new_notify_id();
    let params = vec![
        ("notify_id".to_string(), notify_id.clone()),
        (
            "utc_timestamp".to_string(),
            now.timestamp_millis().to_string(),
        ),
        (
            "msg_method".to_string(),
            crate::alipay::message::METHOD_AUTH.to_string(),
        ),
        (
            "notify_type".to_string(),
            crate::alipay::message::KIND_AUTH.to_string(),
        ),
        ("app_id".to_string(), app_id.to_string()),
        ("version".to_string(), "1.1".to_string()),
        ("charset".to_string(), "utf-8".to_string()),
        ("biz_content".to_string(), biz.to_string()),
        ("sign_type".to_string(), "RSA2".to_string()),
    ];
    Outgoing {
        notify_id,
        kind: crate::alipay::message::KIND_AUTH.to_string(),
        params,
    }
}

fn order_message(order: &Order, now: DateTime<Utc>, app_id: &str) -> Outgoing {
    use crate::alipay::time::format_beijing;
    let notify_id = new_notify_id();
    let mut params: Vec<(String, String)> = [
        ("notify_id", notify_id.as_str()),
        ("notify_time", &format_beijing(now)),
        ("notify_type", crate::alipay::message::KIND_ORDER),
        ("app_id", app_id),
        ("version", "1.0"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("commodity_order_id", &order.commodity_order_id),
        ("order_time", &format_beijing(order.ordered_at)),
        ("merchant_pid", &order.merchant_pid),
        // The merchant's name (required in the notice); the same one order.query answers.
        ("name", "杭州测试科技有限公司"),
        ("consumer_miniAppId", &order.mini_app_id),
        ("total_price", &order.total_price),
        ("item_code", &order.item_code),
        ("title", &order.title),
        ("order_item_num", "1"),
        ("service_code", "SERVICE_MINIAPP"),
        // A year, as order.query's item dates say (service_effect_date + 365 days).
        ("period_day", "365"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if !order.notice_names_mini_app {
        params.retain(|(k, _)| k != "consumer_miniAppId");
    }
    Outgoing {
        notify_id,
        kind: crate::alipay::message::KIND_ORDER.to_string(),
        params,
    }
}

/// A message-service message (`msg_method`, version 1.1, `biz_content`, `utc_timestamp`).
fn message_service(
    method: &str,
    biz: &serde_json::Value,
    now: DateTime<Utc>,
    app_id: &str,
    msg_app_id: Option<&str>,
) -> Outgoing {
    let notify_id = new_notify_id();
    let mut params = vec![
        ("notify_id".to_string(), notify_id.clone()),
        (
            "utc_timestamp".to_string(),
            now.timestamp_millis().to_string(),
        ),
        ("msg_method".to_string(), method.to_string()),
        ("app_id".to_string(), app_id.to_string()),
        ("version".to_string(), "1.1".to_string()),
        ("charset".to_string(), "UTF-8".to_string()),
        ("biz_content".to_string(), biz.to_string()),
        ("sign_type".to_string(), "RSA2".to_string()),
    ];
    if let Some(id) = msg_app_id {
        params.push(("msg_app_id".to_string(), id.to_string()));
    }
    Outgoing {
        notify_id,
        kind: method.to_string(),
        params,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-10T05:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn deadlines_apply_at_their_own_instant() {
        let mut s = SimState::default();
        let (a, _) = s.create_order(NewOrder::default(), t0(), "APP").unwrap();
        let (b, _) = s.create_order(NewOrder::default(), t0(), "APP").unwrap();
        s.pay(&b.commodity_order_id, t0()).unwrap();
        s.settle(t0() + Duration::days(3));
        assert_eq!(s.orders[&a.commodity_order_id].stage, Stage::Closed);
        assert_eq!(s.orders[&b.commodity_order_id].stage, Stage::Implementing);
        s.settle(t0() + Duration::days(30));
        assert_eq!(
            s.orders[&b.commodity_order_id].stage,
            Stage::ImplementationTimeout
        );
        assert_eq!(
            s.orders[&b.commodity_order_id].stage_since,
            t0() + Duration::days(30)
        );
    }

    #[test]
    fn an_order_may_hide_its_mini_program_from_the_notice_and_report_an_unknown_status() {
        let mut s = SimState::default();
        let req = NewOrder {
            mini_app_id: Some("M2".into()),
            order_level_status: Some("SOMETHING_NEW".into()),
            notice_names_mini_app: Some(false),
            ..Default::default()
        };
        let (o, msgs) = s.create_order(req, t0(), "APP").unwrap();
        let notice = &msgs[1];
        assert_eq!(notice.kind, crate::alipay::message::KIND_ORDER);
        assert!(!notice.params.iter().any(|(k, _)| k == "consumer_miniAppId"));
        s.pay(&o.commodity_order_id, t0() + Duration::hours(1))
            .unwrap();
        let answer = s
            .order_query(&serde_json::json!({"commodity_order_id": o.commodity_order_id}))
            .unwrap();
        assert_eq!(answer["status"], "SOMETHING_NEW");
        let item = &answer["order_items"][0];
        assert_eq!(
            (&item["mini_app_id"], &item["order_status"]),
            (&serde_json::json!("M2"), &serde_json::json!("DOING"))
        );
        // Paid at 06:00 UTC: 14:00 in Beijing.
        assert_eq!(item["service_effect_date"], "2024-06-10 14:00:00");
        // The cancellation names the token it ends.
        let (_, cancelled) = s
            .cancel_authorization("M2", t0() + Duration::days(1))
            .unwrap();
        let biz = &cancelled
            .params
            .iter()
            .find(|(k, _)| k == "biz_content")
            .unwrap()
            .1;
        assert!(biz.contains("app_auth_token"), "{biz}");
    }

    #[test]
    fn audit_pass_moves_paid_orders_and_auto_confirms_after_7_days() {
        let mut s = SimState::default();
        let req = NewOrder {
            mini_app_id: Some("M1".into()),
            ..Default::default()
        };
        let (o, msgs) = s.create_order(req, t0(), "APP").unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].kind, "open_app_auth_notify");
        assert_ne!(msgs[0].notify_id, msgs[1].notify_id);
        s.pay(&o.commodity_order_id, t0()).unwrap();
        s.version_upload(
            "M1",
            &serde_json::json!({"app_version": "0.0.1", "template_id": "T"}),
            t0(),
        )
        .unwrap();
        assert!(s.audit_apply("M1", "0.0.1", t0(), "APP").is_err());
        let first = s
            .build_query("M1", &serde_json::json!({"app_version": "0.0.1"}))
            .unwrap();
        assert_eq!(first["build_status"], "1");
        let (_, msg) = s.audit_apply("M1", "0.0.1", t0(), "APP").unwrap();
        assert_eq!(msg.kind, crate::alipay::message::METHOD_AUDIT_PASSED);
        assert_eq!(
            s.orders[&o.commodity_order_id].stage,
            Stage::AwaitingConfirmation
        );
        s.settle(t0() + Duration::days(7));
        assert_eq!(s.orders[&o.commodity_order_id].stage.wire().1, "CONFIRMED");
    }

    #[test]
    fn snapshot_holds_no_token() {
        let mut s = SimState::default();
        s.create_order(NewOrder::default(), t0(), "APP").unwrap();
        let token = s
            .authorizations
            .values()
            .next()
            .unwrap()
            .app_auth_token
            .clone();
        let text = s.snapshot(t0()).to_string();
        assert!(!text.contains(&token));
    }
}
