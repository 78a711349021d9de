use super::*;
use MerchantOrderStatus::*;
use ViolationCode::*;
use serde_json::json;

const LINK: &str = "/pages/index/index?orderid=10190608609185";
const MODIFIED: &str = "2024-06-10 10:05:00.123";

/// A complete, valid to_shop sync in `state`, with the optional fields a merchant would send.
fn sample(state: MerchantOrderStatus) -> Value {
    let mut business = json!({
        "book_item": "Wash and cut",
        "address": "1 West Lake Road, Hangzhou",
        "booking_name": "Tony",
        "start_time": "2024-06-12 14:00:00",
        "end_time": "2024-06-12 15:00:00",
        "shop_name": "Demo Salon",
        "shop_phone": "0571-88888888",
    });
    if state == OrderChange {
        business["change_time"] = json!("2024-06-13 14:00:00");
    }
    let mut biz = json!({
        "out_biz_no": "BK20240610001",
        "buyer_id": "2088102177846880",
        "order_type": "service_order",
        "order_create_time": "2024-06-10 10:00:00",
        "order_modified_time": MODIFIED,
        "service_code": "2024061000000001",
        "source_app": "alipay",
        "amount": "88.00",
        "discount_amount": "8.00",
        "item_order_list": [{
            "item_name": "Demo Salon Wash and cut",
            "quantity": 1,
            "unit_price": "88.00",
            "ext_info": [{"ext_key": "image_material_id", "ext_value": "A*7GmXSZfNYtAAAAAAAAAAAAAAAQAAAQ"}],
        }],
        "ext_info": [
            {"ext_key": "merchant_order_status", "ext_value": state.as_str()},
            {"ext_key": "merchant_biz_type", "ext_value": "to_shop"},
            {"ext_key": "merchant_order_link_page", "ext_value": LINK},
            {"ext_key": "tiny_app_id", "ext_value": "2021004100000000"},
            {"ext_key": "business_info", "ext_value": business.to_string()},
        ],
    });
    // Payment facts come with payment; before it `amount` stands alone (opt*, so sent).
    if state == Paid {
        biz["trade_no"] = json!("2024061022001400000000000001");
        biz["pay_amount"] = json!("80.00");
    }
    biz
}

/// Edits `biz` at a violation-style path: `None` removes, `Some` sets (adding when absent).
/// Returns whether the path was there before.
fn edit(biz: &mut Value, path: &str, new: Option<Value>) -> bool {
    if let Some(field) = path.strip_prefix("ext_info.business_info.") {
        let entries = biz["ext_info"].as_array_mut().unwrap();
        let entry = entries
            .iter_mut()
            .find(|e| e["ext_key"] == "business_info")
            .unwrap();
        let mut info: Value = serde_json::from_str(entry["ext_value"].as_str().unwrap()).unwrap();
        let found = set_key(&mut info, field, new);
        entry["ext_value"] = json!(info.to_string());
        found
    } else if let Some(key) = path.strip_prefix("ext_info.") {
        set_ext(&mut biz["ext_info"], key, new)
    } else if let Some(rest) = path.strip_prefix("item_order_list[") {
        let (index, field) = rest.split_once("].").unwrap();
        let item = &mut biz["item_order_list"][index.parse::<usize>().unwrap()];
        match field.strip_prefix("ext_info.") {
            Some(key) => set_ext(&mut item["ext_info"], key, new),
            None => set_key(item, field, new),
        }
    } else {
        set_key(biz, path, new)
    }
}

fn set_key(object: &mut Value, key: &str, new: Option<Value>) -> bool {
    let object = object.as_object_mut().unwrap();
    match new {
        None => object.remove(key).is_some(),
        Some(value) => object.insert(key.to_string(), value).is_some(),
    }
}

fn set_ext(list: &mut Value, key: &str, new: Option<Value>) -> bool {
    let list = list.as_array_mut().unwrap();
    let position = list.iter().position(|e| e["ext_key"] == key);
    match (new, position) {
        (None, Some(i)) => {
            list.remove(i);
        }
        (Some(value), Some(i)) => list[i]["ext_value"] = value,
        (Some(value), None) => list.push(json!({"ext_key": key, "ext_value": value})),
        (None, None) => {}
    }
    position.is_some()
}

fn with(state: MerchantOrderStatus, edits: &[(&str, Option<Value>)]) -> Value {
    let mut biz = sample(state);
    for (path, new) in edits {
        edit(&mut biz, path, new.clone());
    }
    biz
}

/// (code, field) of each violation, in order; empty when the sync passes.
fn found(biz: &Value) -> Vec<(ViolationCode, String)> {
    match check_sync(biz) {
        Ok(_) => vec![],
        Err(violations) => {
            assert!(violations.iter().all(|v| !v.message.is_empty()));
            violations.into_iter().map(|v| (v.code, v.field)).collect()
        }
    }
}

fn one(code: ViolationCode, field: &str) -> Vec<(ViolationCode, String)> {
    vec![(code, field.to_string())]
}

fn time(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f").unwrap()
}

// --- states and transitions --------------------------------------------------------------

#[test]
fn all_81_transitions_match_the_seed_table_plus_the_documented_deviation() {
    // Rows: from; columns: to, in ALL order. Copied from the seed's table by hand.
    #[rustfmt::skip]
    let expected: [(MerchantOrderStatus, [u8; 9]); 9] = [
        //                  bs pe cl de oc at wp pa ov
        (BookSuccessfully, [1, 1, 1, 1, 1, 1, 1, 1, 1]), // ov: the documented deviation
        (Pending,          [0, 1, 1, 1, 1, 1, 1, 1, 1]),
        (Closed,           [0, 0, 1, 0, 0, 0, 0, 0, 0]),
        (Delivered,        [0, 0, 0, 1, 0, 0, 1, 1, 0]),
        (OrderChange,      [0, 1, 1, 1, 1, 1, 1, 1, 1]),
        (ArrivalTime,      [0, 0, 1, 1, 1, 1, 1, 1, 1]),
        (WaitPay,          [0, 1, 1, 1, 1, 1, 1, 1, 0]),
        (Paid,             [1, 1, 1, 1, 1, 1, 0, 1, 1]),
        (Overdue,          [0, 0, 0, 0, 0, 0, 0, 0, 1]),
    ];
    let mut checked = 0;
    for (row, (from, allowed)) in expected.into_iter().enumerate() {
        assert_eq!(from, MerchantOrderStatus::ALL[row]);
        for (to, allowed) in MerchantOrderStatus::ALL.into_iter().zip(allowed) {
            assert_eq!(transition_allowed(from, to), allowed == 1, "{from} -> {to}");
            checked += 1;
        }
    }
    assert_eq!(checked, 81);
}

#[test]
fn book_successfully_to_overdue_is_the_only_deviation_from_the_table() {
    assert!(!seed_table_allows(BookSuccessfully, Overdue));
    assert!(transition_allowed(BookSuccessfully, Overdue));
    let deviations: Vec<_> = MerchantOrderStatus::ALL
        .into_iter()
        .flat_map(|from| MerchantOrderStatus::ALL.map(|to| (from, to)))
        .filter(|&(from, to)| transition_allowed(from, to) != seed_table_allows(from, to))
        .collect();
    assert_eq!(deviations, vec![(BookSuccessfully, Overdue)]);
}

#[test]
fn status_names_round_trip_and_match_serde() {
    let names = [
        "book_successfully",
        "pending",
        "closed",
        "delivered",
        "order_change",
        "arrival_time",
        "wait_pay",
        "paid",
        "overdue",
    ];
    for (status, name) in MerchantOrderStatus::ALL.into_iter().zip(names) {
        assert_eq!(status.as_str(), name);
        assert_eq!(MerchantOrderStatus::parse(name), Some(status));
        assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
        assert_eq!(
            serde_json::from_value::<MerchantOrderStatus>(json!(name)).unwrap(),
            status
        );
    }
    for unknown in ["", "PAID", "Paid", " paid", "create", "canceled"] {
        assert_eq!(MerchantOrderStatus::parse(unknown), None, "{unknown:?}");
    }
}

#[test]
fn service_messages_follow_the_states_table() {
    let expected = [
        (BookSuccessfully, true),
        (Pending, false),
        (Closed, true),
        (Delivered, false),
        (OrderChange, true),
        (ArrivalTime, true),
        (WaitPay, true),
        (Paid, false),
        (Overdue, true),
    ];
    for (status, sends) in expected {
        assert_eq!(status.sends_service_message(), sends, "{status}");
    }
}

#[test]
fn violation_codes_have_wire_names() {
    assert_eq!(MissingField.as_str(), "missing_field");
    assert_eq!(InvalidField.as_str(), "invalid_field");
    assert_eq!(InvalidTransition.as_str(), "invalid_transition");
    assert_eq!(ImmutableField.as_str(), "immutable_field");
}

// --- one sync on its own -----------------------------------------------------------------

#[test]
fn a_complete_sync_passes_in_every_state() {
    for state in MerchantOrderStatus::ALL {
        let checked = check_sync(&sample(state)).unwrap_or_else(|v| panic!("{state}: {v:?}"));
        assert_eq!(checked.status, state);
        assert_eq!(checked.out_biz_no, "BK20240610001");
        assert_eq!(checked.tiny_app_id, "2021004100000000");
        assert_eq!(checked.link_page, LINK);
        assert_eq!(checked.order_modified_time, time(MODIFIED));
        assert_eq!(checked.order_modified_time.nanosecond(), 123_000_000);
        assert_eq!(
            checked.trade_no.as_deref(),
            (state == Paid).then_some("2024061022001400000000000001")
        );
    }
}

#[test]
fn fixed_fields_are_the_non_updatable_fields_as_sent() {
    let biz = sample(Paid);
    let checked = check_sync(&biz).unwrap();
    let keys: Vec<_> = checked.fixed_fields.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "buyer_id",
            "discount_amount",
            "ext_info.merchant_biz_type",
            "ext_info.merchant_order_link_page",
            "ext_info.tiny_app_id",
            "item_order_list",
            "order_create_time",
            "order_type",
            "out_biz_no",
            "pay_amount",
            "service_code",
            "source_app",
            "trade_no",
        ]
    );
    assert_eq!(
        checked.fixed_fields["item_order_list"],
        biz["item_order_list"]
    );
    assert_eq!(
        checked.fixed_fields["ext_info.merchant_order_link_page"],
        json!(LINK)
    );
    // Left out (or null, or blank) means not sent, so nothing is fixed.
    let biz = with(
        BookSuccessfully,
        &[
            ("service_code", None),
            ("source_app", Some(Value::Null)),
            ("discount_amount", Some(json!(""))),
        ],
    );
    let fixed = check_sync(&biz).unwrap().fixed_fields;
    for absent in [
        "service_code",
        "source_app",
        "discount_amount",
        "trade_no",
        "buyer_open_id",
    ] {
        assert!(!fixed.contains_key(absent), "{absent}");
    }
}

const Y: bool = true;
const N: bool = false;

/// The spec's "Fields per state" table, Y marks only, one row per required path. Columns in
/// `MerchantOrderStatus::ALL` order: bs pe cl de oc at wp pa ov. A new rule is a new row.
#[rustfmt::skip]
const REQUIRED: &[(&str, [bool; 9])] = &[
    //                                                bs pe cl de oc at wp pa ov
    ("out_biz_no",                                    [Y; 9]),
    ("buyer_id",                                      [Y; 9]),
    ("order_type",                                    [Y; 9]),
    ("order_create_time",                             [Y; 9]),
    ("order_modified_time",                           [Y; 9]),
    ("trade_no",                                      [N, N, N, N, N, N, N, Y, N]),
    ("amount",                                        [N, N, N, N, N, N, N, Y, N]),
    ("item_order_list",                               [Y; 9]),
    ("item_order_list[0].item_name",                  [Y; 9]),
    ("item_order_list[0].ext_info",                   [Y; 9]),
    ("item_order_list[0].ext_info.image_material_id", [Y; 9]),
    ("ext_info",                                      [Y; 9]),
    ("ext_info.merchant_order_status",                [Y; 9]),
    ("ext_info.merchant_biz_type",                    [Y; 9]),
    ("ext_info.merchant_order_link_page",             [Y; 9]),
    ("ext_info.tiny_app_id",                          [Y; 9]),
    ("ext_info.business_info",                        [Y; 9]),
    ("ext_info.business_info.book_item",              [Y; 9]),
    ("ext_info.business_info.end_time",               [Y, Y, Y, Y, N, Y, Y, Y, Y]),
    ("ext_info.business_info.shop_name",              [Y; 9]),
    ("ext_info.business_info.start_time",             [Y, Y, Y, Y, N, Y, Y, Y, Y]),
    ("ext_info.business_info.shop_phone",             [Y; 9]),
    ("ext_info.business_info.change_time",            [N, N, N, N, Y, N, N, N, N]),
];

/// Paths in `REQUIRED` whose value is a list, not a string.
const LISTS: [&str; 3] = ["item_order_list", "item_order_list[0].ext_info", "ext_info"];

#[test]
fn each_required_field_removed_is_exactly_one_missing_field() {
    let mut cases = 0;
    for (path, marks) in REQUIRED {
        for (state, required) in MerchantOrderStatus::ALL.into_iter().zip(marks) {
            let mut biz = sample(state);
            let was_there = edit(&mut biz, path, None);
            if *required {
                assert!(was_there, "{state}: the sample lacks {path}");
                assert_eq!(
                    found(&biz),
                    one(MissingField, path),
                    "{state} without {path}"
                );
                cases += 1;
            } else {
                // Optional here: leaving it out is fine.
                assert_eq!(found(&biz), vec![], "{state} without {path}");
            }
        }
    }
    assert_eq!(cases, 181);
}

#[test]
fn each_required_string_sent_blank_is_missing() {
    let mut cases = 0;
    for (path, marks) in REQUIRED.iter().filter(|(p, _)| !LISTS.contains(p)) {
        for (state, required) in MerchantOrderStatus::ALL.into_iter().zip(marks) {
            if !required {
                continue;
            }
            for blank in [json!(""), json!("  "), Value::Null] {
                let biz = with(state, &[(path, Some(blank.clone()))]);
                assert_eq!(
                    found(&biz),
                    one(MissingField, path),
                    "{state}: {path} = {blank}"
                );
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 154 * 3);
}

#[test]
fn optional_fields_may_be_left_out_in_every_state() {
    let optional = [
        "service_code",
        "source_app",
        "discount_amount",
        "ext_info.business_info.address",
        "ext_info.business_info.booking_name",
    ];
    for state in MerchantOrderStatus::ALL {
        for path in optional {
            let mut biz = sample(state);
            assert!(edit(&mut biz, path, None), "{path}");
            assert_eq!(found(&biz), vec![], "{state} without {path}");
        }
        // amount is opt* outside paid once nothing calls for it.
        if state != Paid {
            let biz = with(state, &[("amount", None)]);
            assert_eq!(found(&biz), vec![], "{state} without amount");
        }
    }
}

#[test]
fn buyer_open_id_stands_in_for_buyer_id() {
    let biz = with(
        Pending,
        &[
            ("buyer_id", None),
            (
                "buyer_open_id",
                Some(json!("074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5")),
            ),
        ],
    );
    assert_eq!(found(&biz), vec![]);
    let biz = with(Pending, &[("buyer_id", None)]);
    let violations = check_sync(&biz).unwrap_err();
    assert_eq!(violations.len(), 1);
    assert_eq!(
        (violations[0].code, violations[0].field.as_str()),
        (MissingField, "buyer_id")
    );
    assert!(
        violations[0].message.contains("buyer_open_id"),
        "{}",
        violations[0].message
    );
    // Sent in the wrong type is invalid, not also missing.
    let biz = with(Pending, &[("buyer_id", Some(json!(2088102177846880u64)))]);
    assert_eq!(found(&biz), one(InvalidField, "buyer_id"));
}

#[test]
fn without_a_status_the_fields_required_in_every_state_are_still_reported() {
    let biz = with(
        OrderChange,
        &[
            ("ext_info.merchant_order_status", None),
            ("out_biz_no", None),
            ("ext_info.business_info.shop_name", None),
            // Required in all states but order_change: unknowable without a status.
            ("ext_info.business_info.start_time", None),
            ("ext_info.business_info.change_time", None),
        ],
    );
    assert_eq!(
        found(&biz),
        vec![
            (MissingField, "out_biz_no".to_string()),
            (MissingField, "ext_info.merchant_order_status".to_string()),
            (MissingField, "ext_info.business_info.shop_name".to_string()),
        ]
    );
    let biz = with(
        Paid,
        &[
            ("ext_info.merchant_order_status", Some(json!("shipped"))),
            ("order_type", None),
        ],
    );
    assert_eq!(
        found(&biz),
        vec![
            (MissingField, "order_type".to_string()),
            (InvalidField, "ext_info.merchant_order_status".to_string()),
        ]
    );
}

#[test]
fn all_violations_come_back_in_table_order() {
    let biz = with(
        BookSuccessfully,
        &[
            ("ext_info.business_info.shop_name", None),
            (
                "ext_info.merchant_order_link_page",
                Some(json!("pages/index")),
            ),
            ("item_order_list[0].item_name", None),
            ("amount", Some(json!("88.001"))),
            ("out_biz_no", None),
        ],
    );
    let expected = vec![
        (MissingField, "out_biz_no".to_string()),
        (InvalidField, "amount".to_string()),
        (MissingField, "item_order_list[0].item_name".to_string()),
        (
            InvalidField,
            "ext_info.merchant_order_link_page".to_string(),
        ),
        (MissingField, "ext_info.business_info.shop_name".to_string()),
    ];
    assert_eq!(found(&biz), expected);
    assert_eq!(check_sync(&biz), check_sync(&biz.clone()));
}

#[test]
fn format_errors_are_invalid_fields() {
    let bs = BookSuccessfully;
    let cases: &[(MerchantOrderStatus, &str, Value)] = &[
        (bs, "out_biz_no", json!(20240610001u64)),
        (bs, "order_type", json!("goods_order")),
        (bs, "order_create_time", json!("2024-06-10T10:00:00")),
        (bs, "order_create_time", json!("2024-6-10 10:00:00")),
        (bs, "order_create_time", json!("2024-02-30 10:00:00")),
        (bs, "order_create_time", json!("2024-06-10 10:00:00.000")),
        (bs, "order_create_time", json!("2024-06-10 23:59:60")),
        (bs, "order_modified_time", json!("2024-06-10 10:05:00")),
        (bs, "order_modified_time", json!("2024-06-10 10:05:00.12")),
        (bs, "order_modified_time", json!("2024-06-10 10:05:00.1234")),
        (bs, "order_modified_time", json!("2024-06-10 10:05:00,123")),
        (bs, "order_modified_time", json!("2024-06-10 24:05:00.123")),
        (bs, "order_modified_time", json!(1718013900123u64)),
        (bs, "service_code", json!(42)),
        (bs, "source_app", json!(["alipay"])),
        (bs, "trade_no", json!(2024061022001u64)),
        (bs, "amount", json!("88.001")),
        (bs, "amount", json!("-1.00")),
        (bs, "amount", json!(88.0)),
        (bs, "amount", json!("1e2")),
        (bs, "amount", json!("88.")),
        (bs, "amount", json!(".5")),
        (bs, "amount", json!("088.00")),
        (bs, "amount", json!("¥88")),
        (bs, "pay_amount", json!("eighty")),
        (bs, "discount_amount", json!("1.234")),
        (
            bs,
            "discount_info_list",
            json!({"discount_name": "new customer"}),
        ),
        (bs, "item_order_list", json!({"item_name": "x"})),
        (bs, "item_order_list", json!([])),
        (bs, "item_order_list[0].item_name", json!(7)),
        (bs, "item_order_list[0].quantity", json!(0)),
        (bs, "item_order_list[0].quantity", json!(-1)),
        (bs, "item_order_list[0].quantity", json!(1.234)),
        (bs, "item_order_list[0].quantity", json!("abc")),
        (bs, "item_order_list[0].quantity", json!("0.00")),
        (bs, "item_order_list[0].quantity", json!(true)),
        (bs, "item_order_list[0].quantity", json!(1e20)),
        (bs, "item_order_list[0].unit_price", json!(88)),
        (bs, "item_order_list[0].unit_price", json!("8.888")),
        (
            bs,
            "item_order_list[0].ext_info",
            json!({"ext_key": "image_material_id"}),
        ),
        (
            bs,
            "item_order_list[0].ext_info.image_material_id",
            json!(5),
        ),
        (
            bs,
            "item_order_list[0].ext_info.detail_page",
            json!({"url": "/pages/item"}),
        ),
        (
            bs,
            "ext_info",
            json!({"merchant_order_status": "book_successfully"}),
        ),
        (bs, "ext_info.merchant_order_status", json!("shipped")),
        (
            bs,
            "ext_info.merchant_order_status",
            json!("BOOK_SUCCESSFULLY"),
        ),
        (bs, "ext_info.merchant_biz_type", json!("to_home")),
        (bs, "ext_info.merchant_biz_type", json!("TO_SHOP")),
        (
            bs,
            "ext_info.merchant_order_link_page",
            json!("pages/index/index"),
        ),
        (
            bs,
            "ext_info.merchant_order_link_page",
            json!("//evil.example/pages"),
        ),
        (
            bs,
            "ext_info.merchant_order_link_page",
            json!("https://evil.example/pages"),
        ),
        (
            bs,
            "ext_info.merchant_order_link_page",
            json!("/pages/x?next=alipays://platformapi"),
        ),
        (bs, "ext_info.merchant_order_link_page", json!("/pages/a b")),
        (
            bs,
            "ext_info.merchant_order_link_page",
            json!("/pages/a\tb"),
        ),
        (bs, "ext_info.tiny_app_id", json!(2021004100000000u64)),
        (bs, "ext_info.vendor_note", json!(42)),
        (
            bs,
            "ext_info.business_info",
            json!({"book_item": "Wash and cut"}),
        ),
        (bs, "ext_info.business_info", json!("not json")),
        (bs, "ext_info.business_info", json!("[1, 2]")),
        (bs, "ext_info.business_info", json!("\"a string\"")),
        (bs, "ext_info.business_info.book_item", json!(["Wash"])),
        (bs, "ext_info.business_info.shop_phone", json!(88888888)),
        (
            bs,
            "ext_info.business_info.start_time",
            json!("2024/06/12 14:00:00"),
        ),
        (
            bs,
            "ext_info.business_info.end_time",
            json!("2024-06-12 15:00:00.000"),
        ),
        (
            OrderChange,
            "ext_info.business_info.change_time",
            json!("tomorrow"),
        ),
        // Not required outside order_change, but a time when sent.
        (
            bs,
            "ext_info.business_info.change_time",
            json!("2024-06-13"),
        ),
    ];
    for (state, path, value) in cases {
        let biz = with(*state, &[(path, Some(value.clone()))]);
        assert_eq!(
            found(&biz),
            one(InvalidField, path),
            "{state}: {path} = {value}"
        );
    }
}

#[test]
fn well_formed_edge_values_pass() {
    let cases: &[(&str, Value)] = &[
        ("order_type", json!("SERVICE_ORDER")),
        ("order_create_time", json!("2024-02-29 23:59:59")),
        ("order_modified_time", json!("2024-06-10 10:05:00.000")),
        ("amount", json!("0")),
        ("amount", json!("0.5")),
        ("amount", json!("88")),
        ("amount", json!("100000.00")),
        ("item_order_list[0].quantity", json!(1.5)),
        ("item_order_list[0].quantity", json!(2.0)),
        ("item_order_list[0].quantity", json!("2")),
        ("item_order_list[0].quantity", json!("0.25")),
        ("item_order_list[0].unit_price", json!("0.01")),
        (
            "ext_info.merchant_order_link_page",
            json!("/pages/order/detail?id=1&from=msg"),
        ),
        ("ext_info.merchant_order_link_page", json!("/")),
        ("discount_info_list", json!([])),
    ];
    for (path, value) in cases {
        let biz = with(Paid, &[(path, Some(value.clone()))]);
        assert_eq!(found(&biz), vec![], "{path} = {value}");
    }
}

#[test]
fn non_object_biz_content_is_invalid() {
    for biz in [json!([]), json!("{}"), Value::Null] {
        assert_eq!(found(&biz), one(InvalidField, "biz_content"), "{biz}");
    }
}

/// Cases that need more than one edit or a structural change.
type Mutation = fn(&mut Value);
/// (what it shows, state of the sample, the change, the expected (code, field)s in order).
type MutationCase = (
    &'static str,
    MerchantOrderStatus,
    Mutation,
    &'static [(ViolationCode, &'static str)],
);

#[test]
fn pairs_conditionals_and_ext_structure() {
    let cases: &[MutationCase] = &[
        (
            "quantity without unit_price",
            BookSuccessfully,
            |b| {
                edit(b, "item_order_list[0].unit_price", None);
            },
            &[(MissingField, "item_order_list[0].unit_price")],
        ),
        (
            "unit_price without quantity",
            BookSuccessfully,
            |b| {
                edit(b, "item_order_list[0].quantity", None);
            },
            &[(MissingField, "item_order_list[0].quantity")],
        ),
        (
            "neither quantity nor unit_price",
            BookSuccessfully,
            |b| {
                edit(b, "item_order_list[0].quantity", None);
                edit(b, "item_order_list[0].unit_price", None);
            },
            &[],
        ),
        (
            "second item with quantity only",
            Pending,
            |b| {
                b["item_order_list"].as_array_mut().unwrap().push(json!({
                    "item_name": "Demo Salon Hair wash",
                    "quantity": 2,
                    "ext_info": [{"ext_key": "image_material_id", "ext_value": "A*second"}],
                }));
            },
            &[(MissingField, "item_order_list[1].unit_price")],
        ),
        (
            "second item with unit_price only",
            Pending,
            |b| {
                b["item_order_list"].as_array_mut().unwrap().push(json!({
                    "item_name": "Demo Salon Hair wash",
                    "unit_price": "20.00",
                    "ext_info": [{"ext_key": "image_material_id", "ext_value": "A*second"}],
                }));
            },
            &[(MissingField, "item_order_list[1].quantity")],
        ),
        (
            "an invalid quantity still counts as sent",
            Pending,
            |b| {
                edit(b, "item_order_list[0].quantity", Some(json!(-2)));
                edit(b, "item_order_list[0].unit_price", None);
            },
            &[
                (InvalidField, "item_order_list[0].quantity"),
                (MissingField, "item_order_list[0].unit_price"),
            ],
        ),
        (
            "second item not an object",
            Pending,
            |b| {
                b["item_order_list"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("haircut"))
            },
            &[(InvalidField, "item_order_list[1]")],
        ),
        (
            "trade_no calls for amount",
            WaitPay,
            |b| {
                edit(b, "trade_no", Some(json!("2024061022001400000000000001")));
                edit(b, "amount", None);
            },
            &[(MissingField, "amount")],
        ),
        (
            "pay_amount calls for amount",
            Delivered,
            |b| {
                edit(b, "pay_amount", Some(json!("80.00")));
                edit(b, "amount", None);
            },
            &[(MissingField, "amount")],
        ),
        (
            "paid requires amount, reported once though trade_no also calls for it",
            Paid,
            |b| {
                edit(b, "amount", None);
            },
            &[(MissingField, "amount")],
        ),
        (
            "paid without trade_no or amounts",
            Paid,
            |b| {
                edit(b, "trade_no", None);
                edit(b, "amount", None);
                edit(b, "pay_amount", None);
            },
            &[(MissingField, "trade_no"), (MissingField, "amount")],
        ),
        (
            "discount_info_list calls for discount_amount",
            BookSuccessfully,
            |b| {
                edit(b, "discount_amount", None);
                edit(
                    b,
                    "discount_info_list",
                    Some(json!([{"discount_name": "new customer"}])),
                );
            },
            &[(MissingField, "discount_amount")],
        ),
        (
            "discount_info_list with discount_amount",
            BookSuccessfully,
            |b| {
                edit(
                    b,
                    "discount_info_list",
                    Some(json!([{"discount_name": "new customer"}])),
                );
            },
            &[],
        ),
        (
            "an empty discount_info_list calls for nothing",
            BookSuccessfully,
            |b| {
                edit(b, "discount_amount", None);
                edit(b, "discount_info_list", Some(json!([])));
            },
            &[],
        ),
        (
            "duplicate tiny_app_id",
            BookSuccessfully,
            |b| {
                b["ext_info"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"ext_key": "tiny_app_id", "ext_value": "2021004100000009"}));
            },
            &[(InvalidField, "ext_info.tiny_app_id")],
        ),
        (
            "duplicate status, same value, three times: one violation",
            BookSuccessfully,
            |b| {
                let entry =
                    json!({"ext_key": "merchant_order_status", "ext_value": "book_successfully"});
                let list = b["ext_info"].as_array_mut().unwrap();
                list.push(entry.clone());
                list.push(entry);
            },
            &[(InvalidField, "ext_info.merchant_order_status")],
        ),
        (
            "duplicate image_material_id in an item",
            BookSuccessfully,
            |b| {
                b["item_order_list"][0]["ext_info"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"ext_key": "image_material_id", "ext_value": "A*other"}));
            },
            &[(
                InvalidField,
                "item_order_list[0].ext_info.image_material_id",
            )],
        ),
        (
            "ext_info entry not an object",
            BookSuccessfully,
            |b| {
                b["ext_info"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("tiny_app_id=1"))
            },
            &[(InvalidField, "ext_info[5]")],
        ),
        (
            "ext_key not a string",
            BookSuccessfully,
            |b| {
                b["ext_info"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"ext_key": 1, "ext_value": "x"}));
            },
            &[(InvalidField, "ext_info[5].ext_key")],
        ),
        (
            "entry without ext_value for a required key",
            BookSuccessfully,
            |b| b["ext_info"][3] = json!({"ext_key": "tiny_app_id"}),
            &[(MissingField, "ext_info.tiny_app_id")],
        ),
        (
            "item ext_info entry not an object",
            BookSuccessfully,
            |b| {
                b["item_order_list"][0]["ext_info"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(null));
            },
            &[(InvalidField, "item_order_list[0].ext_info[1]")],
        ),
        (
            "unknown extra fields everywhere are ignored",
            Paid,
            |b| {
                edit(b, "order_pay_time", Some(json!("2024-06-10 10:04:00")));
                edit(b, "shop_info", Some(json!({"name": "Demo Salon"})));
                edit(b, "ext_info.vendor_note", Some(json!("vip")));
                edit(b, "ext_info.business_info.room", Some(json!({"floor": 2})));
                edit(b, "item_order_list[0].sku_id", Some(json!(77)));
                edit(
                    b,
                    "item_order_list[0].ext_info.detail_page",
                    Some(json!("/pages/item")),
                );
            },
            &[],
        ),
    ];
    for (name, state, mutate, expected) in cases {
        let mut biz = sample(*state);
        mutate(&mut biz);
        let expected: Vec<_> = expected.iter().map(|(c, f)| (*c, f.to_string())).collect();
        assert_eq!(found(&biz), expected, "{name}");
    }
}

// --- against what we hold ----------------------------------------------------------------

fn checked(
    state: MerchantOrderStatus,
    modified: &str,
    edits: &[(&str, Option<Value>)],
) -> CheckedSync {
    let mut biz = with(state, edits);
    edit(&mut biz, "order_modified_time", Some(json!(modified)));
    check_sync(&biz).unwrap_or_else(|v| panic!("{state} at {modified}: {v:?}"))
}

fn held(state: MerchantOrderStatus, modified: &str) -> OrderRecord {
    record_after(None, &checked(state, modified, &[]))
}

fn fields(result: Result<SyncDecision, Vec<Violation>>) -> Vec<(ViolationCode, String)> {
    result
        .unwrap_err()
        .into_iter()
        .map(|v| (v.code, v.field))
        .collect()
}

#[test]
fn any_state_may_come_first() {
    for state in MerchantOrderStatus::ALL {
        let next = checked(state, MODIFIED, &[]);
        assert_eq!(decide(None, &next), Ok(SyncDecision::First), "{state}");
        let record = record_after(None, &next);
        assert_eq!(record.status, state);
        assert_eq!(record.order_modified_time, time(MODIFIED));
        assert_eq!(record.first_link_page, LINK);
        assert_eq!(record.fixed_fields, next.fixed_fields);
    }
}

#[test]
fn the_same_modified_time_is_a_duplicate_whatever_it_carries() {
    let previous = held(Closed, "2024-06-10 10:05:00.123");
    // closed -> paid would be refused, and the link page differs: a duplicate is not checked.
    let next = checked(
        Paid,
        "2024-06-10 10:05:00.123",
        &[(
            "ext_info.merchant_order_link_page",
            Some(json!("/pages/other")),
        )],
    );
    assert_eq!(decide(Some(&previous), &next), Ok(SyncDecision::Duplicate));
}

#[test]
fn an_older_sync_is_stale_whatever_it_carries() {
    let previous = held(Paid, "2024-06-10 10:05:00.123");
    for modified in ["2024-06-10 10:05:00.122", "2024-06-09 23:59:59.999"] {
        let next = checked(
            BookSuccessfully,
            modified,
            &[("order_create_time", Some(json!("2024-06-01 00:00:00")))],
        );
        assert_eq!(
            decide(Some(&previous), &next),
            Ok(SyncDecision::Stale),
            "{modified}"
        );
    }
}

#[test]
fn a_newer_sync_follows_the_state_machine() {
    let previous = held(Closed, "2024-06-10 10:05:00.123");
    let next = checked(Paid, "2024-06-10 10:05:00.124", &[]);
    assert_eq!(
        fields(decide(Some(&previous), &next)),
        one(InvalidTransition, "ext_info.merchant_order_status")
    );
    let previous = held(BookSuccessfully, "2024-06-10 10:05:00.123");
    let next = checked(Overdue, "2024-06-11 10:05:00.000", &[]);
    assert_eq!(decide(Some(&previous), &next), Ok(SyncDecision::Accept));
}

#[test]
fn updatable_fields_may_change() {
    let previous = held(BookSuccessfully, "2024-06-10 10:05:00.123");
    let next = checked(
        OrderChange,
        "2024-06-10 11:00:00.000",
        &[
            ("amount", Some(json!("98.00"))),
            (
                "ext_info.business_info.shop_phone",
                Some(json!("0571-66666666")),
            ),
            ("ext_info.business_info.book_item", Some(json!("Colour"))),
        ],
    );
    assert_eq!(decide(Some(&previous), &next), Ok(SyncDecision::Accept));
}

#[test]
fn fixed_fields_may_not_change() {
    let previous = held(BookSuccessfully, "2024-06-10 10:05:00.123");
    let cases: &[(&str, Value)] = &[
        ("order_create_time", json!("2024-06-10 09:00:00")),
        ("out_biz_no", json!("BK20240610002")),
        ("order_type", json!("SERVICE_ORDER")),
        ("discount_amount", json!("10.00")),
        ("ext_info.tiny_app_id", json!("2021004100000009")),
        ("item_order_list[0].item_name", json!("Demo Salon Colour")),
    ];
    for (path, value) in cases {
        let next = checked(
            Pending,
            "2024-06-10 10:06:00.000",
            &[(path, Some(value.clone()))],
        );
        let expected_field = path.split('[').next().unwrap();
        assert_eq!(
            fields(decide(Some(&previous), &next)),
            one(ImmutableField, expected_field),
            "{path}"
        );
    }
}

#[test]
fn the_link_page_must_stay_the_first_syncs() {
    let previous = held(BookSuccessfully, "2024-06-10 10:05:00.123");
    let next = checked(
        Pending,
        "2024-06-10 10:06:00.000",
        &[(
            "ext_info.merchant_order_link_page",
            Some(json!("/pages/order/detail?id=1")),
        )],
    );
    // One violation, though the link page is also a fixed field.
    assert_eq!(
        fields(decide(Some(&previous), &next)),
        one(ImmutableField, "ext_info.merchant_order_link_page")
    );
}

#[test]
fn a_fixed_field_left_out_later_or_added_later_is_not_a_change() {
    let previous = held(BookSuccessfully, "2024-06-10 10:05:00.123");
    let next = checked(
        Pending,
        "2024-06-10 10:06:00.000",
        &[("service_code", None), ("source_app", None)],
    );
    assert_eq!(decide(Some(&previous), &next), Ok(SyncDecision::Accept));
    let record = record_after(Some(&previous), &next);
    assert_eq!(
        record.fixed_fields["service_code"],
        json!("2024061000000001")
    );

    // What was kept still binds: a later different value is refused.
    let changed = checked(
        Pending,
        "2024-06-10 10:07:00.000",
        &[("service_code", Some(json!("other")))],
    );
    assert_eq!(
        fields(decide(Some(&record), &changed)),
        one(ImmutableField, "service_code")
    );

    // A fixed field sent for the first time later is added to the record.
    let first = record_after(
        None,
        &checked(
            BookSuccessfully,
            "2024-06-10 10:05:00.123",
            &[("service_code", None)],
        ),
    );
    let later = checked(Pending, "2024-06-10 10:06:00.000", &[]);
    assert_eq!(decide(Some(&first), &later), Ok(SyncDecision::Accept));
    assert_eq!(
        record_after(Some(&first), &later).fixed_fields["service_code"],
        json!("2024061000000001")
    );
}

#[test]
fn trade_no_once_sent_rides_on_every_later_sync() {
    let paid = held(Paid, "2024-06-10 10:05:00.123");
    assert_eq!(
        paid.trade_no.as_deref(),
        Some("2024061022001400000000000001")
    );

    let dropped = checked(Delivered, "2024-06-10 12:00:00.000", &[]);
    assert_eq!(dropped.trade_no, None);
    assert_eq!(
        fields(decide(Some(&paid), &dropped)),
        one(MissingField, "trade_no")
    );

    let other = checked(
        Delivered,
        "2024-06-10 12:00:00.000",
        &[("trade_no", Some(json!("2024061022001400000000000002")))],
    );
    // One violation, though trade_no is also a fixed field.
    assert_eq!(
        fields(decide(Some(&paid), &other)),
        one(ImmutableField, "trade_no")
    );

    let carried = checked(
        Delivered,
        "2024-06-10 12:00:00.000",
        &[("trade_no", Some(json!("2024061022001400000000000001")))],
    );
    assert_eq!(decide(Some(&paid), &carried), Ok(SyncDecision::Accept));
}

#[test]
fn all_per_order_violations_come_back_together() {
    let paid = held(Paid, "2024-06-10 10:05:00.123");
    let next = checked(
        BookSuccessfully,
        "2024-06-10 12:00:00.000",
        &[
            ("order_create_time", Some(json!("2024-06-10 09:00:00"))),
            ("ext_info.merchant_order_link_page", Some(json!("/pages/b"))),
        ],
    );
    // paid -> book_successfully is allowed by the table.
    assert_eq!(
        fields(decide(Some(&paid), &next)),
        vec![
            (ImmutableField, "order_create_time".to_string()),
            (MissingField, "trade_no".to_string()),
            (
                ImmutableField,
                "ext_info.merchant_order_link_page".to_string()
            ),
        ]
    );
    let closed = held(Closed, "2024-06-10 10:05:00.123");
    let next = checked(
        Paid,
        "2024-06-10 12:00:00.000",
        &[("order_create_time", Some(json!("2024-06-10 09:00:00")))],
    );
    assert_eq!(
        fields(decide(Some(&closed), &next)),
        vec![
            (
                InvalidTransition,
                "ext_info.merchant_order_status".to_string()
            ),
            (ImmutableField, "order_create_time".to_string()),
        ]
    );
}

#[test]
fn record_after_keeps_the_first_link_page_and_the_trade_no() {
    let first = checked(WaitPay, "2024-06-10 10:05:00.123", &[]);
    let record = record_after(None, &first);
    assert_eq!(record.trade_no, None);

    let paid = checked(Paid, "2024-06-10 10:06:00.000", &[]);
    assert_eq!(decide(Some(&record), &paid), Ok(SyncDecision::Accept));
    let record = record_after(Some(&record), &paid);
    assert_eq!(record.status, Paid);
    assert_eq!(
        record.trade_no.as_deref(),
        Some("2024061022001400000000000001")
    );
    assert_eq!(
        record.fixed_fields["trade_no"],
        json!("2024061022001400000000000001")
    );

    let delivered = checked(
        Delivered,
        "2024-06-10 11:00:00.000",
        &[("trade_no", Some(json!("2024061022001400000000000001")))],
    );
    assert_eq!(decide(Some(&record), &delivered), Ok(SyncDecision::Accept));
    let record = record_after(Some(&record), &delivered);
    assert_eq!(record.status, Delivered);
    assert_eq!(record.order_modified_time, time("2024-06-10 11:00:00.000"));
    assert_eq!(record.first_link_page, LINK);
    assert_eq!(
        record.trade_no.as_deref(),
        Some("2024061022001400000000000001")
    );

    // The stored form round-trips, with the status in its wire spelling.
    let stored = serde_json::to_value(&record).unwrap();
    assert_eq!(stored["status"], json!("delivered"));
    assert_eq!(
        serde_json::from_value::<OrderRecord>(stored).unwrap(),
        record
    );
}
