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

-- Orders paid before periods were kept: one period each with no known end (their dates were never
-- stored; such a period never expires by itself), from the time they entered their state, closed
-- when their service has already ended. Without them, refunding a later renewal would end a service
-- these orders still feed.
INSERT INTO service_periods (commodity_order_id, service_key, starts_at, ends_at, state, closed_at,
                             created_at, updated_at)
SELECT o.commodity_order_id,
       COALESCE(o.mini_app_id, 'order:' || o.commodity_order_id),
       o.status_since,
       NULL,
       CASE WHEN s.status IN ('terminated', 'expired') THEN 'cancelled' ELSE 'active' END,
       CASE WHEN s.status IN ('terminated', 'expired') THEN s.since ELSE NULL END,
       o.updated_at,
       o.updated_at
FROM orders o
LEFT JOIN services s ON s.service_key = COALESCE(o.mini_app_id, 'order:' || o.commodity_order_id)
WHERE o.status IN ('implementing', 'awaiting_confirmation', 'completed');

-- Where a period's dates come from: the notice's `period_day`, and order.query's item dates kept
-- verbatim (Beijing time text, as Alipay sent it: an unparsable value is support's to see).
ALTER TABLE orders ADD COLUMN period_day INTEGER;
ALTER TABLE orders ADD COLUMN service_effect_date TEXT;
ALTER TABLE orders ADD COLUMN service_expire_date TEXT;
