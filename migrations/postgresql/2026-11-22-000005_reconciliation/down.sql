ALTER TABLE orders DROP COLUMN reconciled_at;
ALTER TABLE orders DROP COLUMN alipay_reading;
