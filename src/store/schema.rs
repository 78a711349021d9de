// One portable schema for both backends (see migrations/{postgresql,sqlite}).

diesel::table! {
    gateway_messages (id) {
        id -> BigInt,
        app_id -> Text,
        notify_id -> Text,
        kind -> Text,
        sign_variant -> Text,
        state -> Text,
        params -> Text,
        raw_body -> Binary,
        received_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        applied_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    authorizations (auth_app_id) {
        auth_app_id -> Text,
        user_id -> Nullable<Text>,
        status -> Text,
        auth_time -> Timestamp,
        auth_time_ms -> BigInt,
        app_auth_token -> Nullable<Binary>,
        app_refresh_token -> Nullable<Binary>,
        source_notify_id -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    orders (commodity_order_id) {
        commodity_order_id -> Text,
        status -> Text,
        cancel_reason -> Nullable<Text>,
        merchant_pid -> Nullable<Text>,
        mini_app_id -> Nullable<Text>,
        item_code -> Nullable<Text>,
        title -> Nullable<Text>,
        total_price -> Nullable<Text>,
        ordered_at -> Timestamp,
        status_since -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    order_history (id) {
        id -> BigInt,
        commodity_order_id -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        actor -> Text,
        cause -> Text,
        reason -> Nullable<Text>,
        inferred -> Bool,
        at -> Timestamp,
    }
}

diesel::table! {
    deadlines (id) {
        id -> BigInt,
        commodity_order_id -> Text,
        kind -> Text,
        due_at -> Timestamp,
        state -> Text,
    }
}

diesel::joinable!(order_history -> orders (commodity_order_id));
diesel::joinable!(deadlines -> orders (commodity_order_id));
diesel::allow_tables_to_appear_in_same_query!(
    gateway_messages,
    authorizations,
    orders,
    order_history,
    deadlines
);
