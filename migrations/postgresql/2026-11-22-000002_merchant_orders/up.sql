-- Merchants' booking orders (to_shop) pushed to Alipay with alipay.merchant.order.sync.
CREATE TABLE merchant_orders (
    tiny_app_id TEXT NOT NULL,
    out_biz_no TEXT NOT NULL,
    status TEXT NOT NULL,
    order_modified_time TIMESTAMP NOT NULL,
    -- domain::merchant_order::OrderRecord as JSON: what later syncs are checked against
    record TEXT NOT NULL,
    delivery TEXT NOT NULL,
    delivery_lease_until TIMESTAMP,
    alipay_order_id TEXT,
    record_id TEXT,
    sub_code TEXT,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tiny_app_id, out_biz_no)
);

-- Every accepted (or stale) sync, and its delivery: the per-order outbox.
CREATE TABLE merchant_order_syncs (
    id BIGSERIAL PRIMARY KEY,
    tiny_app_id TEXT NOT NULL,
    out_biz_no TEXT NOT NULL,
    order_modified_time TIMESTAMP NOT NULL,
    status TEXT NOT NULL,
    biz_content TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP,
    sub_code TEXT,
    last_error TEXT,
    CONSTRAINT merchant_order_syncs_identity UNIQUE (tiny_app_id, out_biz_no, order_modified_time)
);
CREATE INDEX merchant_order_syncs_queued ON merchant_order_syncs (next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX merchant_order_syncs_order ON merchant_order_syncs (tiny_app_id, out_biz_no, order_modified_time);

-- Why an authorization needs support's attention (e.g. Alipay refused its token), if it does.
ALTER TABLE authorizations ADD COLUMN attention TEXT;
