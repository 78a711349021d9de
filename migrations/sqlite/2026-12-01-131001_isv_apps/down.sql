ALTER TABLE authorizations DROP COLUMN isv_app_id;
ALTER TABLE orders DROP COLUMN isv_app_id;
