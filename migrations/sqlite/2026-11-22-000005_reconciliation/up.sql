-- The last reconciliation's reading of order.query, for support.
ALTER TABLE orders ADD COLUMN alipay_reading TEXT;
ALTER TABLE orders ADD COLUMN reconciled_at TIMESTAMP;
