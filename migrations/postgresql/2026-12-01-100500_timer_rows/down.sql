ALTER TABLE deadlines DROP CONSTRAINT deadlines_one_per_kind;
UPDATE deadlines SET kind = 'warning_' || warning_days WHERE kind = 'warning';
UPDATE deadlines SET kind = 'query_alipay' WHERE kind = 'order_query';
ALTER TABLE deadlines DROP COLUMN warning_days;
ALTER TABLE deadlines ADD CONSTRAINT deadlines_one_per_kind UNIQUE (commodity_order_id, kind);
