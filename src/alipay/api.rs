//! Typed requests and responses of the OpenAPI calls the lifecycle makes (`alipay-protocol.md`
//! §3.5, §5). Requests serialise to `biz_content` without empty or absent fields. Responses are
//! read leniently: unknown fields are ignored, missing ones default, numbers and strings are
//! accepted for each other where Alipay has sent both, and enums keep unknown values verbatim in
//! an `Other` variant instead of failing.

use super::client::FilePart;
use super::time;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

pub const METHOD_ORDER_QUERY: &str = "alipay.open.servicemarket.order.query";
pub const METHOD_TOKEN_APP: &str = "alipay.open.auth.token.app";
pub const METHOD_VERSION_UPLOAD: &str = "alipay.open.mini.version.upload";
pub const METHOD_BUILD_QUERY: &str = "alipay.open.mini.version.build.query";
pub const METHOD_AUDIT_APPLY: &str = "alipay.open.mini.version.audit.apply";
pub const METHOD_VERSION_ONLINE: &str = "alipay.open.mini.version.online";
pub const METHOD_VERSION_LIST: &str = "alipay.open.mini.version.list.query";
pub const METHOD_VERSION_DETAIL: &str = "alipay.open.mini.version.detail.query";
pub const METHOD_TOKEN_QUERY: &str = "alipay.open.auth.token.app.query";
pub const METHOD_MERCHANT_ORDER_SYNC: &str = "alipay.merchant.order.sync";
pub const METHOD_CERT_DOWNLOAD: &str = "alipay.open.app.alipaycert.download";

/// A request whose business parameters travel as `biz_content` JSON.
pub trait BizRequest: Serialize + Sync {
    const METHOD: &'static str;
    type Response: DeserializeOwned + Send;
}

/// Lenient field readers, shared with the client's common-result parsing.
pub mod lenient {
    use secrecy::SecretString;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// Text of a scalar: strings as they are, numbers and booleans as their JSON text. Objects
    /// and arrays keep their JSON text too (Alipay sometimes nests JSON in string fields).
    pub fn text(value: Value) -> Option<String> {
        match value {
            Value::Null => None,
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => Some(other.to_string()),
        }
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Value>::deserialize(d)?.and_then(text))
    }

    pub fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        Ok(opt_string(d)?
            .filter(|s| !s.is_empty())
            .map(SecretString::from))
    }

    /// Integers as numbers or decimal strings. Empty or unparsable text reads as absent rather
    /// than failing the whole response.
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        })
    }

    /// Booleans as `true`/`false`, the strings `"true"`/`"false"` (any case), or 1/0.
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::Bool(b)) => Some(b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "y" | "yes" => Some(true),
                "false" | "0" | "n" | "no" => Some(false),
                _ => None,
            },
            Some(Value::Number(n)) => n.as_i64().map(|i| i != 0),
            _ => None,
        })
    }

    /// A list that may be absent or `null`.
    pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

/// Defines a string enum that keeps unknown values verbatim in `Other` and (de)serialises as the
/// wire text. Numbers are accepted as their decimal text.
macro_rules! open_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this code does not know, kept as received.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match $name::from(s.as_str()) {
                    $name::Other(_) => $name::Other(s),
                    known => known,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(d)?;
                match lenient::text(value) {
                    Some(text) => Ok($name::from(text)),
                    None => Err(serde::de::Error::custom(concat!("null is not a ", stringify!($name)))),
                }
            }
        }
    };
}

open_enum! {
    /// Order-level `status` of `order.query`. Only `MERCHANT_ORDED` is documented (§5.1).
    pub enum OrderStatus {
        /// 待服务商接单: waiting for the ISV to accept.
        MerchantOrded = "MERCHANT_ORDED",
    }
}

open_enum! {
    /// Implementation status of one order item (`OrderItem.order_status`).
    pub enum ItemOrderStatus {
        /// 未实施
        ToDo = "TO_DO",
        /// 实施中
        Doing = "DOING",
        /// 待商户确认
        ToConfirm = "TO_CONFIRM",
        /// 商户已确认
        Confirmed = "CONFIRMED",
        /// 已完成
        Done = "DONE",
        /// 商户已回绝
        MerchantRejected = "MERCHANT_REJECTED",
        /// 商户已取消
        MerchantCancelled = "MERCHANT_CANCELLED",
        /// 服务商已回绝
        IsvRejected = "ISV_REJECTED",
        /// 服务商已取消
        IsvCancelled = "ISV_CANCELLED",
    }
}

open_enum! {
    /// `build_status` / `create_status` of `version.upload` and `version.build.query`, sent as
    /// strings ("0".."6"), sometimes as numbers.
    pub enum BuildStatus {
        Queued = "0",
        Building = "1",
        Success = "2",
        Failed = "3",
        Timeout = "5",
        /// `create_status` only: the version was created.
        VersionCreated = "6",
    }
}

impl BuildStatus {
    /// Still queued or building: poll again.
    pub fn is_in_progress(&self) -> bool {
        matches!(self, BuildStatus::Queued | BuildStatus::Building)
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, BuildStatus::Failed | BuildStatus::Timeout)
    }
}

fn is_blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(str::is_empty)
}

fn expose_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_str(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

fn is_blank_secret(v: &Option<SecretString>) -> bool {
    v.as_ref().is_none_or(|s| s.expose_secret().is_empty())
}

fn page_as_text<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(page) => s.serialize_str(&page.to_string()),
        None => s.serialize_none(),
    }
}

fn beijing(text: &Option<String>) -> Option<DateTime<Utc>> {
    text.as_deref().and_then(time::parse_beijing)
}

// ---------------------------------------------------------------------------------------------
// alipay.open.servicemarket.order.query

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderQueryRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub commodity_order_id: String,
    /// 1-based page number, sent as a string as the SDKs do.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "page_as_text"
    )]
    pub start_page: Option<u32>,
}

impl OrderQueryRequest {
    pub fn new(commodity_order_id: impl Into<String>) -> Self {
        Self {
            commodity_order_id: commodity_order_id.into(),
            start_page: None,
        }
    }

    pub fn page(mut self, start_page: u32) -> Self {
        self.start_page = Some(start_page);
        self
    }
}

impl BizRequest for OrderQueryRequest {
    const METHOD: &'static str = METHOD_ORDER_QUERY;
    type Response = OrderQueryResponse;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OrderQueryResponse {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub commodity_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub current_page: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub total_size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub specifications: Option<String>,
    #[serde(default)]
    pub status: Option<OrderStatus>,
    /// Not in the documented response, but seen at the top level in samples (vector P001).
    #[serde(default)]
    pub order_status: Option<OrderStatus>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub auto_upgrade: Option<bool>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub order_items: Vec<OrderItem>,
}

impl OrderQueryResponse {
    /// The order-level status: `status`, else the undocumented top-level `order_status`.
    pub fn order_level_status(&self) -> Option<&OrderStatus> {
        self.status.as_ref().or(self.order_status.as_ref())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct OrderItem {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub commodity_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub merchant_pid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub merchant_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub mini_app_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub mini_app_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub shop_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub shop_name: Option<String>,
    #[serde(default)]
    pub order_status: Option<ItemOrderStatus>,
    /// Free text in the docs ("待服务商接单"); kept as received.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// `yyyy-MM-dd HH:mm:ss`, Beijing time; see the `*_at` helpers.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub service_effect_date: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub service_expire_date: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub expire_date: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub online_time: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub open_id_model: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub contacts: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub phone_no: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub province: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub city_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub brand_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub category: Option<String>,
    /// `ONLINE`, `OFFLINE`, `AVAILABLE`, `INIT`, `EXPIRED` (Koubei shops).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub shop_status: Option<String>,
}

impl OrderItem {
    pub fn service_effect_at(&self) -> Option<DateTime<Utc>> {
        beijing(&self.service_effect_date)
    }

    pub fn service_expire_at(&self) -> Option<DateTime<Utc>> {
        beijing(&self.service_expire_date)
    }

    pub fn expire_at(&self) -> Option<DateTime<Utc>> {
        beijing(&self.expire_date)
    }

    pub fn online_at(&self) -> Option<DateTime<Utc>> {
        beijing(&self.online_time)
    }
}

// ---------------------------------------------------------------------------------------------
// alipay.open.auth.token.app

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
}

/// Exchanges an `app_auth_code` or refreshes a token. Secrets stay `SecretString` (their `Debug`
/// is redacted) and are exposed only when serialised into `biz_content`.
#[derive(Debug, Clone, Serialize)]
pub struct TokenAppRequest {
    pub grant_type: GrantType,
    #[serde(skip_serializing_if = "is_blank_secret", serialize_with = "expose_opt")]
    pub code: Option<SecretString>,
    #[serde(skip_serializing_if = "is_blank_secret", serialize_with = "expose_opt")]
    pub refresh_token: Option<SecretString>,
}

impl TokenAppRequest {
    pub fn authorization_code(app_auth_code: SecretString) -> Self {
        Self {
            grant_type: GrantType::AuthorizationCode,
            code: Some(app_auth_code),
            refresh_token: None,
        }
    }

    pub fn refresh(app_refresh_token: SecretString) -> Self {
        Self {
            grant_type: GrantType::RefreshToken,
            code: None,
            refresh_token: Some(app_refresh_token),
        }
    }
}

impl BizRequest for TokenAppRequest {
    const METHOD: &'static str = METHOD_TOKEN_APP;
    type Response = TokenAppResponse;
}

/// One authorisation: the top level of the response, or an element of `tokens` (batch).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppToken {
    #[serde(default, deserialize_with = "lenient::opt_secret")]
    pub app_auth_token: Option<SecretString>,
    #[serde(default, deserialize_with = "lenient::opt_secret")]
    pub app_refresh_token: Option<SecretString>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub auth_app_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub user_id: Option<String>,
    /// Deprecated by Alipay (tokens no longer expire); number or string on the wire.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub expires_in: Option<i64>,
    /// Seconds the refresh token stays valid; number or string on the wire.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub re_expires_in: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenAppResponse {
    #[serde(flatten)]
    pub token: AppToken,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub tokens: Vec<AppToken>,
}

impl TokenAppResponse {
    /// Every authorisation granted: `tokens[]` for a batch, else the top-level fields (§5.3).
    /// Entries without a token are left out.
    pub fn all_tokens(&self) -> Vec<AppToken> {
        let list: Vec<AppToken> = self
            .tokens
            .iter()
            .filter(|t| t.app_auth_token.is_some())
            .cloned()
            .collect();
        if !list.is_empty() {
            return list;
        }
        self.token
            .app_auth_token
            .is_some()
            .then(|| self.token.clone())
            .into_iter()
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// alipay.open.mini.version.upload / build.query

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionUploadRequest {
    /// The merchant mini app's new version, `x.y.z`, higher than the previous one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    /// The template mini program's APPID.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub template_id: String,
    /// Latest on-shelf template version when absent.
    #[serde(skip_serializing_if = "is_blank")]
    pub template_version: Option<String>,
    /// ext.json as JSON text, e.g. `{"extEnable":true,"ext":{...}}`.
    #[serde(skip_serializing_if = "is_blank")]
    pub ext: Option<String>,
    /// Client, `com.alipay.alipaywallet` when absent.
    #[serde(skip_serializing_if = "is_blank")]
    pub bundle_id: Option<String>,
    #[serde(skip_serializing_if = "is_blank")]
    pub build_package_url: Option<String>,
}

impl BizRequest for VersionUploadRequest {
    const METHOD: &'static str = METHOD_VERSION_UPLOAD;
    type Response = VersionUploadResponse;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildQueryRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    #[serde(skip_serializing_if = "is_blank")]
    pub bundle_id: Option<String>,
}

impl BizRequest for BuildQueryRequest {
    const METHOD: &'static str = METHOD_BUILD_QUERY;
    type Response = BuildQueryResponse;
}

/// Build state of a template instance version (upload and build.query answer the same fields,
/// all strings in the Java SDK).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VersionBuildResponse {
    #[serde(default)]
    pub build_status: Option<BuildStatus>,
    #[serde(default)]
    pub create_status: Option<BuildStatus>,
    /// Poll `build.query` while true.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub need_rotation: Option<bool>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub version_created: Option<bool>,
}

pub type VersionUploadResponse = VersionBuildResponse;
pub type BuildQueryResponse = VersionBuildResponse;

// ---------------------------------------------------------------------------------------------
// alipay.open.mini.version.audit.apply (multipart: top-level text fields + files)

/// Text fields are signed and sent as text parts; `files` are sent, not signed. Absent and empty
/// fields are not sent. Template-instantiated mini apps may omit screenshots.
#[derive(Debug, Clone, Default)]
pub struct AuditApplyRequest {
    pub app_version: String,
    /// 30–500 characters.
    pub version_desc: Option<String>,
    /// Go online automatically once approved.
    pub auto_online: Option<bool>,
    /// `NONE` | `BASE_PROMOTE`.
    pub audit_rule: Option<String>,
    pub speed_up: Option<bool>,
    pub memo: Option<String>,
    /// `GLOBAL` | `CHINA` | `LOCATION`.
    pub region_type: Option<String>,
    /// A JSON array (`RegionInfo[]`), sent as its JSON text.
    pub service_region_info: Option<serde_json::Value>,
    pub service_phone: Option<String>,
    pub service_email: Option<String>,
    pub app_name: Option<String>,
    pub app_english_name: Option<String>,
    pub app_slogan: Option<String>,
    pub app_desc: Option<String>,
    pub mini_category_ids: Option<String>,
    pub app_category_ids: Option<String>,
    pub license_name: Option<String>,
    pub license_no: Option<String>,
    pub license_valid_date: Option<String>,
    /// Alipay's spelling (`test_accout`).
    pub test_accout: Option<String>,
    pub test_password: Option<SecretString>,
    pub bundle_id: Option<String>,
    /// `app_logo`, `first_screen_shot` .. `fifth_screen_shot`, `*_license_pic`, `out_door_pic`,
    /// `test_file_name`, ...
    pub files: Vec<FilePart>,
}

impl AuditApplyRequest {
    /// The signed top-level text fields, in a fixed order, without absent or empty values.
    pub fn text_fields(&self) -> Vec<(String, String)> {
        let bool_text = |b: &Option<bool>| b.map(|b| b.to_string());
        let fields: [(&str, Option<String>); 22] = [
            ("app_version", Some(self.app_version.clone())),
            ("version_desc", self.version_desc.clone()),
            ("auto_online", bool_text(&self.auto_online)),
            ("audit_rule", self.audit_rule.clone()),
            ("speed_up", bool_text(&self.speed_up)),
            ("memo", self.memo.clone()),
            ("region_type", self.region_type.clone()),
            (
                "service_region_info",
                self.service_region_info.as_ref().map(|v| v.to_string()),
            ),
            ("service_phone", self.service_phone.clone()),
            ("service_email", self.service_email.clone()),
            ("app_name", self.app_name.clone()),
            ("app_english_name", self.app_english_name.clone()),
            ("app_slogan", self.app_slogan.clone()),
            ("app_desc", self.app_desc.clone()),
            ("mini_category_ids", self.mini_category_ids.clone()),
            ("app_category_ids", self.app_category_ids.clone()),
            ("license_name", self.license_name.clone()),
            ("license_no", self.license_no.clone()),
            ("license_valid_date", self.license_valid_date.clone()),
            ("test_accout", self.test_accout.clone()),
            (
                "test_password",
                self.test_password
                    .as_ref()
                    .map(|s| s.expose_secret().to_string()),
            ),
            ("bundle_id", self.bundle_id.clone()),
        ];
        fields
            .into_iter()
            .filter_map(|(name, value)| {
                value
                    .filter(|v| !v.is_empty())
                    .map(|v| (name.to_string(), v))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuditApplyResponse {
    /// Whether the speed-up right was used (`"true"`/`"false"` on the wire); kept as text.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub speed_up: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub speed_up_memo: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// alipay.open.mini.version.online

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionOnlineRequest {
    /// Must be approved or in gray release.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    #[serde(skip_serializing_if = "is_blank")]
    pub bundle_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permit_registration_limit_release: Option<bool>,
}

impl BizRequest for VersionOnlineRequest {
    const METHOD: &'static str = METHOD_VERSION_ONLINE;
    type Response = VersionOnlineResponse;
}

/// No business fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VersionOnlineResponse {}

// ---------------------------------------------------------------------------------------------
// alipay.open.mini.version.list.query

/// Every version Alipay holds for the merchant's mini program (called with the merchant's token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionListRequest {
    /// Client, `com.alipay.alipaywallet` when absent.
    #[serde(skip_serializing_if = "is_blank")]
    pub bundle_id: Option<String>,
    /// Only versions in this state; absent: all of them.
    #[serde(skip_serializing_if = "is_blank")]
    pub version_status: Option<String>,
}

impl BizRequest for VersionListRequest {
    const METHOD: &'static str = METHOD_VERSION_LIST;
    type Response = VersionListResponse;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VersionListResponse {
    /// `x.y.z` texts, in no promised order.
    #[serde(default, deserialize_with = "lenient::vec")]
    pub app_versions: Vec<String>,
}

/// A mini program version `x.y.z` read as numbers, so that `1.2.10` sorts after `1.2.9`.
/// Text that is not dot-separated decimal numbers is not a version we can build on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppVersion(Vec<u64>);

impl AppVersion {
    pub fn parse(text: &str) -> Option<AppVersion> {
        let parts: Option<Vec<u64>> = text
            .trim()
            .split('.')
            .map(|p| {
                (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect();
        parts.filter(|p| !p.is_empty()).map(AppVersion)
    }

    /// The next version: the last component plus one (`1.2.10` → `1.2.11`).
    pub fn next(&self) -> AppVersion {
        let mut parts = self.0.clone();
        if let Some(last) = parts.last_mut() {
            *last = last.saturating_add(1);
        }
        AppVersion(parts)
    }

    /// The first version of a mini program Alipay holds none of.
    pub fn first() -> AppVersion {
        AppVersion(vec![0, 0, 1])
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&texts.join("."))
    }
}

impl VersionListResponse {
    /// The highest version in the list that reads as one; the texts that do not are returned
    /// too, for support (they are never guessed at).
    pub fn highest(&self) -> (Option<AppVersion>, Vec<&str>) {
        let mut unread = Vec::new();
        let mut highest: Option<AppVersion> = None;
        for text in &self.app_versions {
            match AppVersion::parse(text) {
                Some(v) => {
                    if highest.as_ref().is_none_or(|h| v > *h) {
                        highest = Some(v);
                    }
                }
                None => unread.push(text.as_str()),
            }
        }
        (highest, unread)
    }
}

// ---------------------------------------------------------------------------------------------
// alipay.open.mini.version.detail.query

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VersionDetailRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    #[serde(skip_serializing_if = "is_blank")]
    pub bundle_id: Option<String>,
}

impl BizRequest for VersionDetailRequest {
    const METHOD: &'static str = METHOD_VERSION_DETAIL;
    type Response = VersionDetailResponse;
}

open_enum! {
    /// `status` of `version.detail.query`: where the version is in audit and release.
    pub enum VersionStatus {
        /// 开发中
        Init = "INIT",
        /// 审核中
        Auditing = "AUDITING",
        /// 待上架: the audit passed.
        WaitRelease = "WAIT_RELEASE",
        /// 准入不可营销
        BaseAuditPass = "BASE_AUDIT_PASS",
        /// 审核驳回
        AuditReject = "AUDIT_REJECT",
        /// 已上架
        Release = "RELEASE",
        /// 灰度中
        Gray = "GRAY",
        /// 已下架
        Offline = "OFFLINE",
        /// 已被强制下架
        AuditOffline = "AUDIT_OFFLINE",
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VersionDetailResponse {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub app_version: Option<String>,
    #[serde(default)]
    pub status: Option<VersionStatus>,
    /// Why the audit rejected the version.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub reject_reason: Option<String>,
    /// `yyyy-MM-dd HH:mm:ss`, Beijing time.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub gmt_audit_end: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// alipay.open.auth.token.app.query

/// Asks whether a merchant's token still holds. The token travels inside `biz_content` (§5.4),
/// exposed only when serialised.
#[derive(Debug, Clone, Serialize)]
pub struct TokenQueryRequest {
    #[serde(serialize_with = "expose")]
    pub app_auth_token: SecretString,
}

fn expose<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.expose_secret())
}

impl BizRequest for TokenQueryRequest {
    const METHOD: &'static str = METHOD_TOKEN_QUERY;
    type Response = TokenQueryResponse;
}

open_enum! {
    /// `status` of `auth.token.app.query`.
    pub enum TokenStatus {
        Valid = "valid",
        Invalid = "invalid",
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenQueryResponse {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub auth_app_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient::vec")]
    pub auth_methods: Vec<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub auth_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub auth_end: Option<String>,
    #[serde(default)]
    pub status: Option<TokenStatus>,
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub is_by_app_auth: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// alipay.merchant.order.sync

/// The `biz_content` object, built and validated by the caller, sent as is.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(transparent)]
pub struct MerchantOrderSyncRequest<'a>(pub &'a serde_json::Value);

impl BizRequest for MerchantOrderSyncRequest<'_> {
    const METHOD: &'static str = METHOD_MERCHANT_ORDER_SYNC;
    type Response = MerchantOrderSyncResponse;
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MerchantOrderSyncResponse {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub record_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub order_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub order_status: Option<String>,
    /// `OrderDataDistributeInfo[]`, kept as JSON.
    #[serde(default)]
    pub distribute_result: Option<serde_json::Value>,
    /// `OrderDataSyncSuggestion[]`, kept as JSON.
    #[serde(default)]
    pub sync_suggestions: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_skip_absent_and_empty_fields() {
        let q = OrderQueryRequest::new("O1");
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"commodity_order_id":"O1"}"#
        );
        let q = OrderQueryRequest::new("O1").page(2);
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"commodity_order_id":"O1","start_page":"2"}"#
        );

        let up = VersionUploadRequest {
            app_version: "0.0.2".into(),
            template_id: "2021".into(),
            template_version: Some(String::new()),
            ext: Some(r#"{"extEnable":true}"#.into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&up).unwrap(),
            r#"{"app_version":"0.0.2","template_id":"2021","ext":"{\"extEnable\":true}"}"#
        );

        let online = VersionOnlineRequest {
            app_version: "1.0.0".into(),
            downgrade: Some(false),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&online).unwrap(),
            r#"{"app_version":"1.0.0","downgrade":false}"#
        );
    }

    #[test]
    fn token_request_exposes_secrets_only_when_serialised() {
        let req = TokenAppRequest::authorization_code(SecretString::from("CODE123"));
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"grant_type":"authorization_code","code":"CODE123"}"#
        );
        assert!(!format!("{req:?}").contains("CODE123"));
        let req = TokenAppRequest::refresh(SecretString::from("RT"));
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"grant_type":"refresh_token","refresh_token":"RT"}"#
        );
    }

    #[test]
    fn order_query_is_lenient() {
        let body = json!({
            "code": "10000", "msg": "Success", "unknown": {"x": 1},
            "current_page": "1", "total_size": 2, "auto_upgrade": "true",
            "status": "MERCHANT_PAID", "order_status": "MERCHANT_ORDED",
            "order_items": [
                {"order_status": "TO_CONFIRM", "merchant_pid": 2088, "service_expire_date": "2025-06-10 00:00:00"},
                {"order_status": "SOMETHING_NEW", "shop_id": null}
            ]
        });
        let r: OrderQueryResponse = serde_json::from_value(body).unwrap();
        assert_eq!(r.current_page, Some(1));
        assert_eq!(r.total_size, Some(2));
        assert_eq!(r.auto_upgrade, Some(true));
        assert_eq!(r.status, Some(OrderStatus::Other("MERCHANT_PAID".into())));
        assert_eq!(r.order_status, Some(OrderStatus::MerchantOrded));
        assert_eq!(
            r.order_level_status().map(OrderStatus::as_str),
            Some("MERCHANT_PAID")
        );
        assert_eq!(
            r.order_items[0].order_status,
            Some(ItemOrderStatus::ToConfirm)
        );
        assert_eq!(r.order_items[0].merchant_pid.as_deref(), Some("2088"));
        assert_eq!(
            r.order_items[0]
                .service_expire_at()
                .map(|t| t.to_rfc3339())
                .as_deref(),
            Some("2025-06-09T16:00:00+00:00")
        );
        assert_eq!(
            r.order_items[1].order_status,
            Some(ItemOrderStatus::Other("SOMETHING_NEW".into()))
        );
        assert_eq!(
            r.order_items[1].order_status.as_ref().unwrap().as_str(),
            "SOMETHING_NEW"
        );
        assert_eq!(r.order_items[1].shop_id, None);

        let empty: OrderQueryResponse =
            serde_json::from_value(json!({"code": "10000", "order_items": null})).unwrap();
        assert_eq!(empty, OrderQueryResponse::default());
    }

    #[test]
    fn enums_round_trip_their_wire_text() {
        for text in ["TO_DO", "DOING", "DONE", "ISV_CANCELLED", "NEW_ONE"] {
            let v: ItemOrderStatus = serde_json::from_value(json!(text)).unwrap();
            assert_eq!(serde_json::to_value(&v).unwrap(), json!(text));
        }
        assert_eq!(
            ItemOrderStatus::from("MERCHANT_CANCELLED"),
            ItemOrderStatus::MerchantCancelled
        );
        assert_eq!(ItemOrderStatus::from(String::from("X")).to_string(), "X");
    }

    #[test]
    fn token_response_reads_numbers_or_strings_and_hides_tokens() {
        let r: TokenAppResponse = serde_json::from_value(json!({
            "code": "10000", "app_auth_token": "TOP", "auth_app_id": "A1", "user_id": 2088,
            "expires_in": 31536000, "re_expires_in": "32140800"
        }))
        .unwrap();
        assert_eq!(r.token.expires_in, Some(31536000));
        assert_eq!(r.token.re_expires_in, Some(32140800));
        assert_eq!(r.token.user_id.as_deref(), Some("2088"));
        let all = r.all_tokens();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].app_auth_token.as_ref().map(|t| t.expose_secret()),
            Some("TOP")
        );
        assert!(!format!("{r:?}").contains("TOP"));

        let batch: TokenAppResponse = serde_json::from_value(json!({
            "tokens": [{"app_auth_token": "T1", "auth_app_id": "A1"}, {"app_auth_token": "T2", "auth_app_id": "A2"}]
        }))
        .unwrap();
        let ids: Vec<_> = batch
            .all_tokens()
            .into_iter()
            .filter_map(|t| t.auth_app_id)
            .collect();
        assert_eq!(ids, ["A1", "A2"]);
        assert!(TokenAppResponse::default().all_tokens().is_empty());
    }

    #[test]
    fn build_status_accepts_strings_and_numbers() {
        let r: VersionBuildResponse = serde_json::from_value(json!({
            "build_status": "2", "create_status": 6, "need_rotation": "false", "version_created": "true"
        }))
        .unwrap();
        assert_eq!(r.build_status, Some(BuildStatus::Success));
        assert_eq!(r.create_status, Some(BuildStatus::VersionCreated));
        assert_eq!(r.need_rotation, Some(false));
        assert_eq!(r.version_created, Some(true));
        let r: VersionBuildResponse = serde_json::from_value(json!({"build_status": "9"})).unwrap();
        assert_eq!(r.build_status, Some(BuildStatus::Other("9".into())));
        assert!(BuildStatus::Queued.is_in_progress() && BuildStatus::Timeout.is_failure());
    }

    #[test]
    fn audit_apply_text_fields() {
        let req = AuditApplyRequest {
            app_version: "0.0.3".into(),
            version_desc: Some("描述".into()),
            auto_online: Some(true),
            memo: Some(String::new()),
            service_region_info: Some(json!([{"province_code": "330000"}])),
            test_password: Some(SecretString::from("pw")),
            ..Default::default()
        };
        let fields = req.text_fields();
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "app_version",
                "version_desc",
                "auto_online",
                "service_region_info",
                "test_password"
            ]
        );
        assert_eq!(fields[2].1, "true");
        assert_eq!(fields[3].1, r#"[{"province_code":"330000"}]"#);
        assert!(!format!("{req:?}").contains("\"pw\""));
    }

    #[test]
    fn version_list_reads_the_highest_version_numerically() {
        let r: VersionListResponse = serde_json::from_value(json!({
            "code": "10000", "app_versions": ["1.2.9", "1.2.10", "0.9.99", "v2", "1.10"]
        }))
        .unwrap();
        let (highest, unread) = r.highest();
        // Component by component: 1.10 > 1.2.10 > 1.2.9 (text order would say otherwise).
        assert_eq!(
            highest.as_ref().map(ToString::to_string).as_deref(),
            Some("1.10")
        );
        assert_eq!(unread, ["v2"]);
        let r: VersionListResponse =
            serde_json::from_value(json!({"app_versions": ["1.2.9", "1.2.10"]})).unwrap();
        assert_eq!(r.highest().0.unwrap().next().to_string(), "1.2.11");
        let empty: VersionListResponse =
            serde_json::from_value(json!({"code": "10000", "app_versions": null})).unwrap();
        assert_eq!(empty.highest(), (None, Vec::<&str>::new()));
        let absent: VersionListResponse = serde_json::from_value(json!({"code": "10000"})).unwrap();
        assert!(absent.app_versions.is_empty());
        assert_eq!(AppVersion::first().to_string(), "0.0.1");
        for bad in ["", "1..2", "1.2.", "a.b.c", "1.-2", " "] {
            assert_eq!(AppVersion::parse(bad), None, "{bad:?}");
        }
        assert!(AppVersion::parse("1.2.10") > AppVersion::parse("1.2.9"));
        assert_eq!(
            serde_json::to_string(&VersionListRequest::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn version_detail_keeps_unknown_statuses() {
        let r: VersionDetailResponse = serde_json::from_value(json!({
            "code": "10000", "app_version": "1.2.11", "status": "AUDIT_REJECT",
            "reject_reason": "截图不清晰", "gmt_audit_end": "2024-06-10 12:00:00"
        }))
        .unwrap();
        assert_eq!(r.status, Some(VersionStatus::AuditReject));
        assert_eq!(r.reject_reason.as_deref(), Some("截图不清晰"));
        let r: VersionDetailResponse =
            serde_json::from_value(json!({"status": "SOMETHING_NEW"})).unwrap();
        assert_eq!(r.status, Some(VersionStatus::Other("SOMETHING_NEW".into())));
        let r: VersionDetailResponse = serde_json::from_value(json!({})).unwrap();
        assert_eq!(r.status, None);
        let q = VersionDetailRequest {
            app_version: "1.2.11".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"app_version":"1.2.11"}"#
        );
    }

    #[test]
    fn token_query_carries_the_token_in_biz_content_only_when_serialised() {
        let q = TokenQueryRequest {
            app_auth_token: SecretString::from("202406BBsecret"),
        };
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"app_auth_token":"202406BBsecret"}"#
        );
        assert!(!format!("{q:?}").contains("202406BBsecret"));
        let r: TokenQueryResponse = serde_json::from_value(json!({
            "code": "10000", "user_id": 2088, "auth_app_id": "2021", "expires_in": "31536000",
            "auth_methods": ["alipay.open.mini.version.upload"], "status": "invalid",
            "is_by_app_auth": "true"
        }))
        .unwrap();
        assert_eq!(r.status, Some(TokenStatus::Invalid));
        assert_eq!(r.user_id.as_deref(), Some("2088"));
        assert_eq!(r.expires_in, Some(31536000));
        assert_eq!(r.is_by_app_auth, Some(true));
        let r: TokenQueryResponse = serde_json::from_value(json!({"status": "valid"})).unwrap();
        assert_eq!(r.status, Some(TokenStatus::Valid));
        let r: TokenQueryResponse = serde_json::from_value(json!({"status": "paused"})).unwrap();
        assert_eq!(r.status, Some(TokenStatus::Other("paused".into())));
    }

    #[test]
    fn sync_response_keeps_json() {
        let r: MerchantOrderSyncResponse = serde_json::from_value(json!({
            "record_id": "R1", "order_status": "SUCCESS", "distribute_result": [{"scene": "x"}]
        }))
        .unwrap();
        assert_eq!(r.record_id.as_deref(), Some("R1"));
        assert_eq!(r.distribute_result, Some(json!([{"scene": "x"}])));
        assert_eq!(r.sync_suggestions, None);
    }
}
