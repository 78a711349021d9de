-- Support desk: find orders by id, merchant PID, mini program or merchant name, newest first in
-- pages (keyset over (created_at, commodity_order_id)); an order's messages by an indexed link;
-- named operators with sessions held here (sign-out and `users disable` end them).
ALTER TABLE orders ADD COLUMN merchant_name TEXT;
CREATE INDEX orders_newest ON orders (created_at, commodity_order_id);
CREATE INDEX orders_status_newest ON orders (status, created_at, commodity_order_id);
CREATE INDEX orders_merchant_pid ON orders (merchant_pid);
-- text_pattern_ops: the name-prefix search (LIKE 'text%') uses it under any collation.
CREATE INDEX orders_merchant_name ON orders (merchant_name text_pattern_ops);

ALTER TABLE gateway_messages ADD COLUMN commodity_order_id TEXT;
UPDATE gateway_messages
   SET commodity_order_id = params::jsonb ->> 'commodity_order_id'
 WHERE kind = 'servicemarket_order_notify';
CREATE INDEX gateway_messages_order ON gateway_messages (commodity_order_id, id);

CREATE TABLE operators (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    disabled_at TIMESTAMP
);

-- A session's id is kept only as its SHA-256: the database alone does not sign anyone in.
CREATE TABLE operator_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    operator TEXT NOT NULL REFERENCES operators (name),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator);
