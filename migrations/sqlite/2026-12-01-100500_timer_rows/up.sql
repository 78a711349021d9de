-- One meaning per column: `kind` says what a row times (payment, implementation, confirmation,
-- warning, order_query); the days of an implementation warning move out of the kind text.
-- SQLite cannot change a table's unique key in place: the table is rebuilt (ids kept).
CREATE TABLE deadlines_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commodity_order_id TEXT NOT NULL REFERENCES orders (commodity_order_id),
    kind TEXT NOT NULL,
    due_at TIMESTAMP NOT NULL,
    state TEXT NOT NULL,
    claimed_until TIMESTAMP,
    attempts INTEGER NOT NULL DEFAULT 0,
    warning_days INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT deadlines_one_per_kind UNIQUE (commodity_order_id, kind, warning_days)
);
-- `warning_<digits>` only: any other text is left as it is, and reading it fails loudly.
INSERT INTO deadlines_new (id, commodity_order_id, kind, due_at, state, claimed_until, attempts,
                           warning_days)
SELECT id, commodity_order_id,
       CASE
           WHEN kind = 'query_alipay' THEN 'order_query'
           WHEN substr(kind, 1, 8) = 'warning_' AND length(kind) > 8
                AND substr(kind, 9) NOT GLOB '*[^0-9]*' THEN 'warning'
           ELSE kind
       END,
       due_at, state, claimed_until, attempts,
       CASE
           WHEN substr(kind, 1, 8) = 'warning_' AND length(kind) > 8
                AND substr(kind, 9) NOT GLOB '*[^0-9]*' THEN CAST(substr(kind, 9) AS INTEGER)
           ELSE 0
       END
FROM deadlines;
DROP TABLE deadlines;
ALTER TABLE deadlines_new RENAME TO deadlines;
CREATE INDEX deadlines_due ON deadlines (due_at, id) WHERE state = 'pending';
