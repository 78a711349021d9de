ALTER TABLE authorizations DROP COLUMN attention;
DROP TABLE merchant_order_syncs;
DROP TABLE merchant_orders;
