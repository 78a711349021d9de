//! The to_shop (到店预约, in-store booking) merchant order-sync rules for
//! `alipay.merchant.order.sync` (MERCHANT-ORDER-SYNC.md, digested from seed 004).
//!
//! The merchant back end sends us the `biz_content` it wants pushed to Alipay's order center. Two
//! layers of rules apply before we queue it:
//! - [`check_sync`]: the sync on its own (required fields for its state, formats, pairs);
//! - [`decide`]: the sync against what we hold for the order ([`OrderRecord`]): ordering by
//!   `order_modified_time`, the state machine, and the fields that may not change once sent.
//!
//! Pure functions of JSON values; no I/O and no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{NaiveDateTime, Timelike};
use serde_json::{Map, Value};

/// The booking's state as the merchant reports it in `ext_info.merchant_order_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantOrderStatus {
    BookSuccessfully,
    Pending,
    Closed,
    Delivered,
    OrderChange,
    ArrivalTime,
    WaitPay,
    Paid,
    Overdue,
}

impl MerchantOrderStatus {
    /// In the seed's order (its States table and the columns of its field table).
    pub const ALL: [Self; 9] = [
        Self::BookSuccessfully,
        Self::Pending,
        Self::Closed,
        Self::Delivered,
        Self::OrderChange,
        Self::ArrivalTime,
        Self::WaitPay,
        Self::Paid,
        Self::Overdue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookSuccessfully => "book_successfully",
            Self::Pending => "pending",
            Self::Closed => "closed",
            Self::Delivered => "delivered",
            Self::OrderChange => "order_change",
            Self::ArrivalTime => "arrival_time",
            Self::WaitPay => "wait_pay",
            Self::Paid => "paid",
            Self::Overdue => "overdue",
        }
    }

    /// Exact, case-sensitive: Alipay's order center matches these values verbatim.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether Alipay shows the user a service message for this state (the spec's States table).
    pub fn sends_service_message(self) -> bool {
        match self {
            Self::BookSuccessfully => true,
            Self::Pending => false,
            Self::Closed => true,
            Self::Delivered => false,
            Self::OrderChange => true,
            Self::ArrivalTime => true,
            Self::WaitPay => true,
            Self::Paid => false,
            Self::Overdue => true,
        }
    }
}

impl fmt::Display for MerchantOrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The seed's state-machine table exactly as published (current -> allowed next states), one row
/// per line and in the seed's order so it can be read against the spec side by side.
#[rustfmt::skip]
fn seed_table_allows(from: MerchantOrderStatus, to: MerchantOrderStatus) -> bool {
    use MerchantOrderStatus::*;
    let next: &[MerchantOrderStatus] = match from {
        BookSuccessfully => &[Delivered, Paid, Pending, ArrivalTime, Closed, BookSuccessfully, OrderChange, WaitPay],
        Pending => &[Delivered, Paid, Pending, ArrivalTime, Closed, OrderChange, Overdue, WaitPay],
        Closed => &[Closed],
        Delivered => &[Delivered, Paid, WaitPay],
        OrderChange => &[Delivered, Paid, Pending, ArrivalTime, Closed, OrderChange, Overdue, WaitPay],
        ArrivalTime => &[Delivered, Paid, ArrivalTime, Closed, OrderChange, Overdue, WaitPay],
        WaitPay => &[Delivered, Paid, Pending, ArrivalTime, Closed, OrderChange, WaitPay],
        Paid => &[Delivered, Paid, Pending, ArrivalTime, Closed, BookSuccessfully, OrderChange, Overdue],
        Overdue => &[Overdue],
    };
    next.contains(&to)
}

/// Transitions the seed's prose allows although its table omits them. The seed's prose says
/// "jumps across states are allowed, e.g. book_successfully may go straight to overdue", while the
/// table's book_successfully row lacks `overdue`. An explicit statement beats an omission, so we
/// allow it (spec: "The seed contradicts itself once"). This is the only deviation from the table.
const PROSE_OVERRIDES: &[(MerchantOrderStatus, MerchantOrderStatus)] = &[(
    MerchantOrderStatus::BookSuccessfully,
    MerchantOrderStatus::Overdue,
)];

/// The seed's table, plus the one documented deviation in [`PROSE_OVERRIDES`].
pub fn transition_allowed(from: MerchantOrderStatus, to: MerchantOrderStatus) -> bool {
    seed_table_allows(from, to) || PROSE_OVERRIDES.contains(&(from, to))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationCode {
    MissingField,
    InvalidField,
    InvalidTransition,
    ImmutableField,
}

impl ViolationCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::InvalidTransition => "invalid_transition",
            Self::ImmutableField => "immutable_field",
        }
    }
}

/// One broken rule. `field` is a path into the biz_content: `out_biz_no`,
/// `ext_info.merchant_order_link_page`, `ext_info.business_info.start_time`,
/// `item_order_list[1].unit_price`, `item_order_list[0].ext_info.image_material_id`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: ViolationCode,
    pub field: String,
    pub message: String,
}

impl Violation {
    fn new(code: ViolationCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code.as_str(), self.field, self.message)
    }
}

/// A sync that passed every per-sync rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSync {
    pub out_biz_no: String,
    pub tiny_app_id: String,
    pub status: MerchantOrderStatus,
    /// Millisecond precision, as sent.
    pub order_modified_time: NaiveDateTime,
    pub trade_no: Option<String>,
    pub link_page: String,
    /// Fields that may not change once sent for an order (top-level and ext_info fields without ·U
    /// in the spec's table), path -> value as sent. Present only when sent.
    pub fixed_fields: BTreeMap<String, Value>,
}

/// What we hold for an order after its accepted syncs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderRecord {
    pub status: MerchantOrderStatus,
    pub order_modified_time: NaiveDateTime,
    pub first_link_page: String,
    pub trade_no: Option<String>,
    pub fixed_fields: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncDecision {
    /// No record yet: this sync starts the order (any state may come first).
    First,
    /// Same `order_modified_time` as held: idempotent, nothing to do.
    Duplicate,
    /// Older than what we hold: never overwrites it.
    Stale,
    /// Newer, and consistent with what we hold.
    Accept,
}

// ---------------------------------------------------------------------------------------------
// The spec's "Fields per state" table, as data. Only `Y` marks matter here; `opt*` and `N` are
// optional. The conditional rules (pairs, `amount` after `trade_no`/`pay_amount`,
// `discount_amount` after `discount_info_list`) are in `check_sync`.

/// When a field is required.
#[derive(Debug, Clone, Copy)]
enum Need {
    Always,
    Never,
    Only(MerchantOrderStatus),
    Except(MerchantOrderStatus),
}

impl Need {
    /// Why the field is required in `status`, or `None` when it is not. With the status unknown
    /// (absent or invalid), only fields required in every state are: for the others we cannot tell.
    fn reason(self, status: Option<MerchantOrderStatus>) -> Option<String> {
        match (self, status) {
            (Need::Always, _) => Some("is required".into()),
            (Need::Never, _) | (_, None) => None,
            (Need::Only(only), Some(s)) if s == only => Some(format!("is required in state {s}")),
            (Need::Except(except), Some(s)) if s != except => {
                Some(format!("is required in state {s}"))
            }
            _ => None,
        }
    }
}

/// What a present string field must look like.
#[derive(Debug, Clone, Copy)]
enum Format {
    Text,
    ServiceOrder,
    /// `yyyy-MM-dd HH:mm:ss`
    Seconds,
    /// `yyyy-MM-dd HH:mm:ss.SSS`
    Millis,
    Yuan,
    Status,
    ToShop,
    LinkPage,
}

/// Top-level fields after `out_biz_no` and the buyer pair (which have their own code), in the
/// table's order.
const TOP_FIELDS: [(&str, Need, Format); 9] = [
    ("order_type", Need::Always, Format::ServiceOrder),
    ("order_create_time", Need::Always, Format::Seconds),
    ("order_modified_time", Need::Always, Format::Millis),
    ("service_code", Need::Never, Format::Text),
    ("source_app", Need::Never, Format::Text),
    (
        "trade_no",
        Need::Only(MerchantOrderStatus::Paid),
        Format::Text,
    ),
    (
        "amount",
        Need::Only(MerchantOrderStatus::Paid),
        Format::Yuan,
    ),
    ("pay_amount", Need::Never, Format::Yuan),
    ("discount_amount", Need::Never, Format::Yuan),
];

/// `ext_info` entries other than `business_info` (a JSON string with its own fields, below).
const EXT_FIELDS: [(&str, Need, Format); 4] = [
    ("merchant_order_status", Need::Always, Format::Status),
    ("merchant_biz_type", Need::Always, Format::ToShop),
    ("merchant_order_link_page", Need::Always, Format::LinkPage),
    ("tiny_app_id", Need::Always, Format::Text),
];

const BUSINESS_INFO_FIELDS: [(&str, Need, Format); 8] = [
    ("book_item", Need::Always, Format::Text),
    ("address", Need::Never, Format::Text),
    ("booking_name", Need::Never, Format::Text),
    (
        "end_time",
        Need::Except(MerchantOrderStatus::OrderChange),
        Format::Seconds,
    ),
    ("shop_name", Need::Always, Format::Text),
    (
        "start_time",
        Need::Except(MerchantOrderStatus::OrderChange),
        Format::Seconds,
    ),
    ("shop_phone", Need::Always, Format::Text),
    // Only meaningful in order_change; checked for format wherever it is sent.
    (
        "change_time",
        Need::Only(MerchantOrderStatus::OrderChange),
        Format::Seconds,
    ),
];

/// Top-level fields without ·U in the table: once sent for an order they may not change.
/// `amount` and `order_modified_time` are ·U, so absent here.
const FIXED_TOP: [&str; 11] = [
    "out_biz_no",
    "buyer_id",
    "buyer_open_id",
    "order_type",
    "order_create_time",
    "service_code",
    "source_app",
    "trade_no",
    "pay_amount",
    "discount_amount",
    "item_order_list",
];

/// `ext_info` entries without ·U (`merchant_order_status` and `business_info` are ·U).
const FIXED_EXT: [&str; 3] = [
    "merchant_biz_type",
    "merchant_order_link_page",
    "tiny_app_id",
];

const LINK_PAGE: &str = "ext_info.merchant_order_link_page";
const STATUS_PATH: &str = "ext_info.merchant_order_status";

// ---------------------------------------------------------------------------------------------

/// Checks one sync on its own; returns all violations found, in a stable order: top-level fields
/// in the table's order, then each item, then `ext_info` and `business_info`.
pub fn check_sync(biz_content: &Value) -> Result<CheckedSync, Vec<Violation>> {
    let Some(top) = biz_content.as_object() else {
        return Err(vec![Violation::new(
            ViolationCode::InvalidField,
            "biz_content",
            "must be a JSON object",
        )]);
    };

    // The state decides what else is required, but ext_info comes last in the table: read it
    // first and keep its structural violations aside so they still come out in table order.
    let mut ext_checker = Checker::default();
    let ext = ext_checker.ext_entries(top.get("ext_info"), "ext_info", true);
    let status = ext
        .as_ref()
        .and_then(|ext| ext.get("merchant_order_status"))
        .and_then(|value| value.and_then(Value::as_str))
        .and_then(MerchantOrderStatus::parse);

    let mut c = Checker::default();
    let out_biz_no = c.text(
        top.get("out_biz_no"),
        "out_biz_no",
        Need::Always.reason(status),
    );
    c.buyer(top);

    let trade_no_given = given(top.get("trade_no"));
    let pay_amount_given = given(top.get("pay_amount"));
    // An empty list carries no discount, so it does not call for a discount_amount.
    let discounts_given =
        matches!(top.get("discount_info_list"), Some(Value::Array(list)) if !list.is_empty());
    let mut order_modified_time = None;
    let mut trade_no = None;
    for (name, need, format) in TOP_FIELDS {
        let conditional = match name {
            "amount" if trade_no_given || pay_amount_given => {
                Some("is required when trade_no or pay_amount is given".to_string())
            }
            "discount_amount" if discounts_given => {
                Some("is required when discount_info_list is given".to_string())
            }
            _ => None,
        };
        let required = need.reason(status).or(conditional);
        let value = c.formatted(top.get(name), name, required, format);
        match name {
            "order_modified_time" => order_modified_time = value.and_then(parse_millis),
            "trade_no" => trade_no = value.map(str::to_string),
            _ => {}
        }
    }
    // Scene-specific objects we pass through untouched; only the list's JSON type is ours to check.
    if top
        .get("discount_info_list")
        .is_some_and(|v| !v.is_null() && !v.is_array())
    {
        c.push(
            ViolationCode::InvalidField,
            "discount_info_list",
            "must be an array",
        );
    }

    c.items(top.get("item_order_list"), status);

    c.violations.append(&mut ext_checker.violations);
    let mut tiny_app_id = None;
    let mut link_page = None;
    if let Some(ext) = &ext {
        for (key, need, format) in EXT_FIELDS {
            let path = format!("ext_info.{key}");
            let value = c.formatted(lookup(ext, key), &path, need.reason(status), format);
            match key {
                "tiny_app_id" => tiny_app_id = value,
                "merchant_order_link_page" => link_page = value,
                _ => {}
            }
        }
        c.business_info(lookup(ext, "business_info"), status);
        c.unknown_ext_values(ext, "ext_info", |key| {
            key == "business_info" || EXT_FIELDS.iter().any(|(known, ..)| *known == key)
        });
    }

    match (
        out_biz_no,
        tiny_app_id,
        status,
        order_modified_time,
        link_page,
    ) {
        (Some(out_biz_no), Some(tiny_app_id), Some(status), Some(modified), Some(link_page))
            if c.violations.is_empty() =>
        {
            let mut fixed_fields = BTreeMap::new();
            for name in FIXED_TOP {
                if let Some(value) = top.get(name).filter(|v| given(Some(v))) {
                    fixed_fields.insert(name.to_string(), value.clone());
                }
            }
            for key in FIXED_EXT {
                if let Some(value) = ext.as_ref().and_then(|ext| lookup(ext, key)) {
                    fixed_fields.insert(format!("ext_info.{key}"), value.clone());
                }
            }
            Ok(CheckedSync {
                out_biz_no: out_biz_no.to_string(),
                tiny_app_id: tiny_app_id.to_string(),
                status,
                order_modified_time: modified,
                trade_no,
                link_page: link_page.to_string(),
                fixed_fields,
            })
        }
        // Every required field that did not come through left a violation behind.
        _ => {
            debug_assert!(!c.violations.is_empty());
            Err(c.violations)
        }
    }
}

/// Per-order rules against what we hold. `None` = first sync of the order.
///
/// Same `order_modified_time` -> `Duplicate` (idempotent; nothing else is checked); older ->
/// `Stale` (never overwrites); newer -> the transition, the fixed fields, `trade_no` and the link
/// page are checked, and all violations are returned.
pub fn decide(
    previous: Option<&OrderRecord>,
    next: &CheckedSync,
) -> Result<SyncDecision, Vec<Violation>> {
    let Some(previous) = previous else {
        // The seed: the first sync need not be book_successfully.
        return Ok(SyncDecision::First);
    };
    match next.order_modified_time.cmp(&previous.order_modified_time) {
        std::cmp::Ordering::Equal => return Ok(SyncDecision::Duplicate),
        std::cmp::Ordering::Less => return Ok(SyncDecision::Stale),
        std::cmp::Ordering::Greater => {}
    }

    let mut violations = Vec::new();
    if !transition_allowed(previous.status, next.status) {
        violations.push(Violation::new(
            ViolationCode::InvalidTransition,
            STATUS_PATH,
            format!("{} may not follow {}", next.status, previous.status),
        ));
    }
    for (path, before) in &previous.fixed_fields {
        // trade_no and the link page have rules of their own below; one violation each.
        if path == "trade_no" || path == LINK_PAGE {
            continue;
        }
        // A fixed field left out later is not a change: only a different value is.
        if let Some(now) = next.fixed_fields.get(path)
            && now != before
        {
            violations.push(Violation::new(
                ViolationCode::ImmutableField,
                path.as_str(),
                changed_message(before, now),
            ));
        }
    }
    if let Some(held) = &previous.trade_no {
        match &next.trade_no {
            None => violations.push(Violation::new(
                ViolationCode::MissingField,
                "trade_no",
                format!("trade_no {held} was sent for this order; every later sync must carry it"),
            )),
            Some(now) if now != held => violations.push(Violation::new(
                ViolationCode::ImmutableField,
                "trade_no",
                format!("may not change once sent for an order: was {held:?}, now {now:?}"),
            )),
            Some(_) => {}
        }
    }
    if next.link_page != previous.first_link_page {
        violations.push(Violation::new(
            ViolationCode::ImmutableField,
            LINK_PAGE,
            format!(
                "must equal the order's first sync: {:?}, now {:?}",
                previous.first_link_page, next.link_page
            ),
        ));
    }
    if violations.is_empty() {
        Ok(SyncDecision::Accept)
    } else {
        Err(violations)
    }
}

/// The record after accepting `next` (decided `First` or `Accept`). What was first sent stays: the
/// link page, the trade_no and each fixed field; fixed fields sent for the first time are added.
pub fn record_after(previous: Option<&OrderRecord>, next: &CheckedSync) -> OrderRecord {
    let mut fixed_fields = previous.map(|p| p.fixed_fields.clone()).unwrap_or_default();
    for (path, value) in &next.fixed_fields {
        fixed_fields
            .entry(path.clone())
            .or_insert_with(|| value.clone());
    }
    OrderRecord {
        status: next.status,
        order_modified_time: next.order_modified_time,
        first_link_page: previous
            .map_or_else(|| next.link_page.clone(), |p| p.first_link_page.clone()),
        trade_no: previous
            .and_then(|p| p.trade_no.clone())
            .or_else(|| next.trade_no.clone()),
        fixed_fields,
    }
}

// ---------------------------------------------------------------------------------------------

/// `ext_key` -> `ext_value` (None when the entry has no `ext_value`). On a duplicate key the first
/// entry's value is kept (the duplicate itself is reported).
type ExtEntries<'a> = BTreeMap<&'a str, Option<&'a Value>>;

fn lookup<'a>(ext: &ExtEntries<'a>, key: &str) -> Option<&'a Value> {
    ext.get(key).copied().flatten()
}

/// Sent: present, not null, and not a blank string. Null and "" are how senders leave a field
/// out, so they count as absent everywhere (and as missing where required).
fn given(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    }
}

/// Names both values when they are short; a changed item list is only said to differ.
fn changed_message(before: &Value, now: &Value) -> String {
    let rule = "may not change once sent for an order";
    match (before, now) {
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            format!("{rule}; it differs from the value first sent")
        }
        _ => format!("{rule}: was {before}, now {now}"),
    }
}

#[derive(Default)]
struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    fn push(&mut self, code: ViolationCode, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation::new(code, field, message));
    }

    /// A string field. Reports it missing when required and not sent, invalid when sent as
    /// anything but a string; returns the text when sent.
    fn text<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &str,
        required: Option<String>,
    ) -> Option<&'a str> {
        match value {
            Some(Value::String(s)) if given(value) => Some(s.as_str()),
            Some(v) if given(Some(v)) => {
                self.push(ViolationCode::InvalidField, path, "must be a JSON string");
                None
            }
            _ => {
                if let Some(reason) = required {
                    self.push(
                        ViolationCode::MissingField,
                        path,
                        format!("{path} {reason}"),
                    );
                }
                None
            }
        }
    }

    /// [`Checker::text`] plus the field's format; the text only when both hold.
    fn formatted<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &str,
        required: Option<String>,
        format: Format,
    ) -> Option<&'a str> {
        let text = self.text(value, path, required)?;
        match format_problem(format, text) {
            None => Some(text),
            Some(problem) => {
                self.push(ViolationCode::InvalidField, path, problem);
                None
            }
        }
    }

    fn buyer(&mut self, top: &Map<String, Value>) {
        self.text(top.get("buyer_id"), "buyer_id", None);
        self.text(top.get("buyer_open_id"), "buyer_open_id", None);
        // Either identifies the user. Only when neither was sent is one missing; one sent in the
        // wrong type is already reported as invalid.
        if !given(top.get("buyer_id")) && !given(top.get("buyer_open_id")) {
            self.push(
                ViolationCode::MissingField,
                "buyer_id",
                "one of buyer_id or buyer_open_id is required",
            );
        }
    }

    /// An `ext_info`-shaped list (top level or per item) of `{ext_key, ext_value}` objects.
    fn ext_entries<'a>(
        &mut self,
        value: Option<&'a Value>,
        path: &str,
        required: bool,
    ) -> Option<ExtEntries<'a>> {
        let list = match value {
            None | Some(Value::Null) => {
                if required {
                    self.push(
                        ViolationCode::MissingField,
                        path,
                        format!("{path} is required"),
                    );
                }
                return None;
            }
            Some(Value::Array(list)) => list,
            Some(_) => {
                self.push(
                    ViolationCode::InvalidField,
                    path,
                    "must be an array of {ext_key, ext_value} objects",
                );
                return None;
            }
        };
        let mut entries = ExtEntries::new();
        let mut duplicates = BTreeSet::new();
        for (index, entry) in list.iter().enumerate() {
            let Some(entry) = entry.as_object() else {
                self.push(
                    ViolationCode::InvalidField,
                    format!("{path}[{index}]"),
                    "must be an object with ext_key and ext_value",
                );
                continue;
            };
            let key = match entry.get("ext_key") {
                Some(Value::String(key)) if !key.trim().is_empty() => key.as_str(),
                _ => {
                    self.push(
                        ViolationCode::InvalidField,
                        format!("{path}[{index}].ext_key"),
                        "must be a non-empty string",
                    );
                    continue;
                }
            };
            if entries.contains_key(key) {
                // Which of two values Alipay would keep is unknowable: refuse rather than guess.
                if duplicates.insert(key) {
                    self.push(
                        ViolationCode::InvalidField,
                        format!("{path}.{key}"),
                        format!("ext_key {key} appears more than once"),
                    );
                }
                continue;
            }
            entries.insert(key, entry.get("ext_value"));
        }
        Some(entries)
    }

    /// Entries we do not interpret are passed through, but the Alipay model types every
    /// `ext_value` as a string.
    fn unknown_ext_values(
        &mut self,
        ext: &ExtEntries<'_>,
        path: &str,
        known: impl Fn(&str) -> bool,
    ) {
        for (key, value) in ext {
            if known(key) {
                continue;
            }
            if value.is_some_and(|v| given(Some(v)) && !v.is_string()) {
                self.push(
                    ViolationCode::InvalidField,
                    format!("{path}.{key}"),
                    "ext_value must be a JSON string",
                );
            }
        }
    }

    fn items(&mut self, value: Option<&Value>, status: Option<MerchantOrderStatus>) {
        let path = "item_order_list";
        let items = match value {
            None | Some(Value::Null) => {
                self.push(
                    ViolationCode::MissingField,
                    path,
                    "item_order_list is required",
                );
                return;
            }
            Some(Value::Array(items)) if items.is_empty() => {
                self.push(
                    ViolationCode::InvalidField,
                    path,
                    "must hold at least one item",
                );
                return;
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.push(
                    ViolationCode::InvalidField,
                    path,
                    "must be an array of items",
                );
                return;
            }
        };
        for (index, item) in items.iter().enumerate() {
            let at = format!("{path}[{index}]");
            let Some(item) = item.as_object() else {
                self.push(ViolationCode::InvalidField, at, "must be an object");
                continue;
            };
            self.text(
                item.get("item_name"),
                &format!("{at}.item_name"),
                Need::Always.reason(status),
            );

            let quantity = item.get("quantity").filter(|q| given(Some(q)));
            let quantity_sent = quantity.is_some();
            if quantity.is_some_and(|q| !valid_quantity(q)) {
                self.push(
                    ViolationCode::InvalidField,
                    format!("{at}.quantity"),
                    "must be a number greater than 0 with at most 2 decimals",
                );
            }
            let unit_price = item.get("unit_price");
            self.formatted(unit_price, &format!("{at}.unit_price"), None, Format::Yuan);
            // A pair: whichever half is left out is the missing one.
            match (quantity_sent, given(unit_price)) {
                (true, false) => self.push(
                    ViolationCode::MissingField,
                    format!("{at}.unit_price"),
                    "quantity and unit_price come as a pair: unit_price is missing",
                ),
                (false, true) => self.push(
                    ViolationCode::MissingField,
                    format!("{at}.quantity"),
                    "quantity and unit_price come as a pair: quantity is missing",
                ),
                _ => {}
            }

            let ext_path = format!("{at}.ext_info");
            if let Some(ext) = self.ext_entries(item.get("ext_info"), &ext_path, true) {
                self.text(
                    lookup(&ext, "image_material_id"),
                    &format!("{ext_path}.image_material_id"),
                    Need::Always.reason(status),
                );
                self.unknown_ext_values(&ext, &ext_path, |key| key == "image_material_id");
            }
        }
    }

    /// `business_info` travels as a JSON string holding an object, not as an object.
    fn business_info(&mut self, value: Option<&Value>, status: Option<MerchantOrderStatus>) {
        let path = "ext_info.business_info";
        let Some(text) = self.text(value, path, Need::Always.reason(status)) else {
            return;
        };
        let info = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(info)) => info,
            Ok(_) => {
                self.push(
                    ViolationCode::InvalidField,
                    path,
                    "must be a JSON string holding a JSON object",
                );
                return;
            }
            Err(error) => {
                self.push(
                    ViolationCode::InvalidField,
                    path,
                    format!(
                        "must be a JSON string holding a JSON object; it does not parse: {error}"
                    ),
                );
                return;
            }
        };
        for (name, need, format) in BUSINESS_INFO_FIELDS {
            self.formatted(
                info.get(name),
                &format!("{path}.{name}"),
                need.reason(status),
                format,
            );
        }
    }
}

/// Why `text` does not fit `format`, or `None` when it does.
fn format_problem(format: Format, text: &str) -> Option<String> {
    let (fits, wanted) = match format {
        Format::Text => return None,
        // The protocol digest's example writes SERVICE_ORDER; the seed says service_order.
        Format::ServiceOrder => (
            text.eq_ignore_ascii_case("service_order"),
            "must be service_order".to_string(),
        ),
        Format::Seconds => (
            parse_seconds(text).is_some(),
            "must be a time as yyyy-MM-dd HH:mm:ss".to_string(),
        ),
        Format::Millis => (
            parse_millis(text).is_some(),
            "must be a time as yyyy-MM-dd HH:mm:ss.SSS (exactly 3 fractional digits)".to_string(),
        ),
        Format::Yuan => (
            is_decimal(text),
            "must be a non-negative amount in yuan with at most 2 decimals, like \"88.00\""
                .to_string(),
        ),
        Format::Status => (
            MerchantOrderStatus::parse(text).is_some(),
            format!(
                "must be one of {}",
                MerchantOrderStatus::ALL
                    .map(MerchantOrderStatus::as_str)
                    .join(", ")
            ),
        ),
        Format::ToShop => (
            text == "to_shop",
            "must be to_shop (this service handles the in-store booking scene)".to_string(),
        ),
        Format::LinkPage => (
            is_link_page(text),
            "must be a page path inside the mini program, like /pages/index/index?orderid=1 \
             (one leading /, no scheme, no whitespace)"
                .to_string(),
        ),
    };
    (!fits).then_some(wanted)
}

/// A page of the merchant's own mini program, never a web or other-app link.
fn is_link_page(text: &str) -> bool {
    text.starts_with('/')
        && !text.starts_with("//")
        && !text.contains("://")
        && !text.chars().any(char::is_whitespace)
}

/// Plain decimal: digits, optionally a point and 1-2 digits; no sign, exponent or padding zeros
/// (`0`, `0.5`, `88.00`; not `088`, `88.`, `.5`).
fn is_decimal(text: &str) -> bool {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole)
        && (whole == "0" || !whole.starts_with('0'))
        && fraction.is_none_or(|f| f.len() <= 2 && digits(f))
}

/// A JSON number (the Alipay model's type) or a numeric string, > 0, at most 2 decimals.
fn valid_quantity(value: &Value) -> bool {
    let text = match value {
        // Display of a JSON number is its shortest exact form: 1.5 -> "1.5", 2 -> "2", and
        // exponents (1e20) fall out as not plainly decimal.
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.clone(),
        _ => return false,
    };
    // JSON floats print a trailing ".0" (2.0 -> "2.0"), which is still a whole quantity.
    is_decimal(&text) && text.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

/// `yyyy-MM-dd HH:mm:ss`, exactly: chrono alone would accept single-digit fields and leap seconds.
fn parse_seconds(text: &str) -> Option<NaiveDateTime> {
    let shaped = text.len() == 19
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return None;
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .filter(|t| t.nanosecond() < 1_000_000_000)
}

/// `yyyy-MM-dd HH:mm:ss.SSS`, exactly 3 fractional digits.
fn parse_millis(text: &str) -> Option<NaiveDateTime> {
    let (seconds, millis) = text.split_once('.')?;
    if millis.len() != 3 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: u32 = millis.parse().ok()?;
    parse_seconds(seconds)?.with_nanosecond(millis * 1_000_000)
}

#[cfg(test)]
mod tests;
