CREATE TABLE deadlines_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commodity_order_id TEXT NOT NULL REFERENCES orders (commodity_order_id),
    kind TEXT NOT NULL,
    due_at TIMESTAMP NOT NULL,
    state TEXT NOT NULL,
    claimed_until TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT deadlines_one_per_kind UNIQUE (commodity_order_id, kind)
);
INSERT INTO deadlines_old (id, commodity_order_id, kind, due_at, state, claimed_until, attempts)
SELECT id, commodity_order_id,
       CASE kind
           WHEN 'warning' THEN 'warning_' || warning_days
           WHEN 'order_query' THEN 'query_alipay'
           ELSE kind
       END,
       due_at, state, claimed_until, attempts
FROM deadlines;
DROP TABLE deadlines;
ALTER TABLE deadlines_old RENAME TO deadlines;
CREATE INDEX deadlines_due ON deadlines (due_at, id) WHERE state = 'pending';
