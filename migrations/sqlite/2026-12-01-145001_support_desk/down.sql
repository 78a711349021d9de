DROP TABLE operator_sessions;
DROP TABLE operators;
DROP INDEX gateway_messages_order;
ALTER TABLE gateway_messages DROP COLUMN commodity_order_id;
DROP INDEX orders_merchant_name;
DROP INDEX orders_merchant_pid;
DROP INDEX orders_status_newest;
DROP INDEX orders_newest;
ALTER TABLE orders DROP COLUMN merchant_name;
