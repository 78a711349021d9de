-- Several ISV apps (issue 13): the third-party app an order or an authorization belongs to.
-- NULL on rows older than this column: the primary app (alipay.app_id).
ALTER TABLE orders ADD COLUMN isv_app_id TEXT;
ALTER TABLE authorizations ADD COLUMN isv_app_id TEXT;
