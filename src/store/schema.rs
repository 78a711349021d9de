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
        commodity_order_id -> Nullable<Text>,
        claimed_until -> Nullable<Timestamp>,
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
        attention -> Nullable<Text>,
        isv_app_id -> Nullable<Text>,
        token_fingerprint -> Nullable<Text>,
        token_checked_at -> Nullable<Timestamp>,
        token_check_result -> Nullable<Text>,
    }
}

diesel::table! {
    authorization_cancellations (id) {
        id -> BigInt,
        auth_app_id -> Text,
        token_fingerprint -> Nullable<Text>,
        cancelled_at -> Timestamp,
        source -> Text,
        recorded_at -> Timestamp,
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
        paid -> Bool,
        audit_passed_at -> Nullable<Timestamp>,
        refund -> Nullable<Text>,
        alipay_reading -> Nullable<Text>,
        reconciled_at -> Nullable<Timestamp>,
        merchant_name -> Nullable<Text>,
        isv_app_id -> Nullable<Text>,
        period_day -> Nullable<Integer>,
        service_effect_date -> Nullable<Text>,
        service_expire_date -> Nullable<Text>,
        paid_at -> Nullable<Timestamp>,
        paid_at_source -> Nullable<Text>,
        inferred_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    service_periods (commodity_order_id) {
        commodity_order_id -> Text,
        service_key -> Text,
        starts_at -> Timestamp,
        ends_at -> Nullable<Timestamp>,
        state -> Text,
        closed_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    services (service_key) {
        service_key -> Text,
        status -> Text,
        termination_cause -> Nullable<Text>,
        terminated_by -> Nullable<Text>,
        termination_reason -> Nullable<Text>,
        since -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    support_tasks (id) {
        id -> BigInt,
        kind -> Text,
        subject -> Text,
        state -> Text,
        opened_at -> Timestamp,
        closed_at -> Nullable<Timestamp>,
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
        claimed_until -> Nullable<Timestamp>,
        attempts -> Integer,
        warning_days -> Integer,
    }
}

diesel::table! {
    merchant_orders (tiny_app_id, out_biz_no) {
        tiny_app_id -> Text,
        out_biz_no -> Text,
        status -> Text,
        order_modified_time -> Timestamp,
        record -> Text,
        delivery -> Text,
        delivery_lease_until -> Nullable<Timestamp>,
        alipay_order_id -> Nullable<Text>,
        record_id -> Nullable<Text>,
        sub_code -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    merchant_order_syncs (id) {
        id -> BigInt,
        tiny_app_id -> Text,
        out_biz_no -> Text,
        order_modified_time -> Timestamp,
        status -> Text,
        biz_content -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        received_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
        sub_code -> Nullable<Text>,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(order_history -> orders (commodity_order_id));
diesel::joinable!(deadlines -> orders (commodity_order_id));
diesel::table! {
    template_builds (id) {
        id -> BigInt,
        mini_app_id -> Text,
        commodity_order_id -> Text,
        app_version -> Text,
        version_number -> Integer,
        template_id -> Text,
        template_version -> Nullable<Text>,
        step -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        claimed_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        alipay_status -> Nullable<Text>,
    }
}

diesel::table! {
    alipay_calls (id) {
        id -> BigInt,
        commodity_order_id -> Text,
        method -> Text,
        result -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    operators (name) {
        name -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    operator_sessions (id_hash) {
        id_hash -> Text,
        operator -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(operator_sessions -> operators (operator));

diesel::table! {
    alipay_certs (sn) {
        sn -> Text,
        pem -> Text,
        not_after -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    job_leases (name) {
        name -> Text,
        holder -> Text,
        until -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    job_leases,
    operators,
    operator_sessions,
    alipay_calls,
    alipay_certs,
    template_builds,
    service_periods,
    services,
    support_tasks,
    merchant_orders,
    merchant_order_syncs,
    gateway_messages,
    authorizations,
    authorization_cancellations,
    orders,
    order_history,
    deadlines
);
