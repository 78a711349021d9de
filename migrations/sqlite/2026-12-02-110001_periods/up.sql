-- Service periods (LIFECYCLE.md "Service periods"): each paid order of a mini program adds a
-- period [starts_at, ends_at) to its service; a refund or cancellation closes that order's period
-- only. `ends_at` is NULL when neither the item dates nor `period_day` say how long it runs.
CREATE TABLE service_periods (
    commodity_order_id TEXT PRIMARY KEY NOT NULL REFERENCES orders (commodity_order_id),
    service_key TEXT NOT NULL,
    starts_at TIMESTAMP NOT NULL,
    ends_at TIMESTAMP,
    state TEXT NOT NULL,
    closed_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX service_periods_service ON service_periods (service_key, starts_at);

-- Where a period's dates come from: the notice's `period_day`, and order.query's item dates kept
-- verbatim (Beijing time text, as Alipay sent it: an unparsable value is support's to see).
ALTER TABLE orders ADD COLUMN period_day INTEGER;
ALTER TABLE orders ADD COLUMN service_effect_date TEXT;
ALTER TABLE orders ADD COLUMN service_expire_date TEXT;
