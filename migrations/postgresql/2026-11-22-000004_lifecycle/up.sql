-- What the lifecycle state machine holds beyond status (domain::lifecycle::Order).
ALTER TABLE orders ADD COLUMN paid BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE orders ADD COLUMN audit_passed_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN refund TEXT;

-- The merchant's service: one mini program (or, without one, one order), fed by its orders.
CREATE TABLE services (
    service_key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    termination_cause TEXT,
    terminated_by TEXT,
    termination_reason TEXT,
    since TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- To-dos for support, e.g. "the merchant must cancel the authorization".
CREATE TABLE support_tasks (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP
);
CREATE INDEX support_tasks_open ON support_tasks (kind, subject) WHERE state = 'open';
