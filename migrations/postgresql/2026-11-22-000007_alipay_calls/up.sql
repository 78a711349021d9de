-- Outbound Alipay calls made about an order (order.query, the build's mini.version.* calls),
-- with their result code, for support.
CREATE TABLE alipay_calls (
    id BIGSERIAL PRIMARY KEY,
    commodity_order_id TEXT NOT NULL,
    method TEXT NOT NULL,
    result TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX alipay_calls_order ON alipay_calls (commodity_order_id, id);
