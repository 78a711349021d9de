-- One meaning per column: `kind` says what a row times (payment, implementation, confirmation,
-- warning, order_query); the days of an implementation warning move out of the kind text.
-- The old key goes first: two warnings of one order share the kind `warning` once converted.
ALTER TABLE deadlines DROP CONSTRAINT deadlines_one_per_kind;
ALTER TABLE deadlines ADD COLUMN warning_days INTEGER NOT NULL DEFAULT 0;
-- `warning_<digits>` only: any other text is left as it is, and reading it fails loudly.
UPDATE deadlines SET kind = 'warning', warning_days = CAST(substr(kind, 9) AS INTEGER)
    WHERE kind ~ '^warning_[0-9]+$';
UPDATE deadlines SET kind = 'order_query' WHERE kind = 'query_alipay';
ALTER TABLE deadlines ADD CONSTRAINT deadlines_one_per_kind
    UNIQUE (commodity_order_id, kind, warning_days);
