-- Every verified gateway message, stored before we answer `success`.
CREATE TABLE gateway_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    notify_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    sign_variant TEXT NOT NULL,
    state TEXT NOT NULL,
    -- parameters as JSON with secret values masked; the whole body is kept sealed in raw_body
    params TEXT NOT NULL,
    raw_body BLOB NOT NULL,
    received_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error TEXT,
    applied_at TIMESTAMP,
    CONSTRAINT gateway_messages_identity UNIQUE (app_id, notify_id)
);
CREATE INDEX gateway_messages_pending ON gateway_messages (next_attempt_at, id) WHERE state = 'received';

CREATE TABLE authorizations (
    auth_app_id TEXT PRIMARY KEY,
    user_id TEXT,
    status TEXT NOT NULL,
    auth_time TIMESTAMP NOT NULL,
    auth_time_ms BIGINT NOT NULL,
    app_auth_token BLOB,
    app_refresh_token BLOB,
    source_notify_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE orders (
    commodity_order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    merchant_pid TEXT,
    mini_app_id TEXT,
    item_code TEXT,
    title TEXT,
    total_price TEXT,
    ordered_at TIMESTAMP NOT NULL,
    status_since TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX orders_status ON orders (status);
CREATE INDEX orders_mini_app_id ON orders (mini_app_id);

CREATE TABLE order_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commodity_order_id TEXT NOT NULL REFERENCES orders (commodity_order_id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor TEXT NOT NULL,
    cause TEXT NOT NULL,
    reason TEXT,
    inferred BOOLEAN NOT NULL DEFAULT 0,
    at TIMESTAMP NOT NULL
);
CREATE INDEX order_history_order ON order_history (commodity_order_id, id);

CREATE TABLE deadlines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commodity_order_id TEXT NOT NULL REFERENCES orders (commodity_order_id),
    kind TEXT NOT NULL,
    due_at TIMESTAMP NOT NULL,
    state TEXT NOT NULL,
    CONSTRAINT deadlines_one_per_kind UNIQUE (commodity_order_id, kind)
);
CREATE INDEX deadlines_due ON deadlines (due_at, id) WHERE state = 'pending';
