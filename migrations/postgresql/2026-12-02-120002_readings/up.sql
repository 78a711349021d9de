-- Readings we trust (issue 12): when the order was paid and from what we know it; when an
-- inferred transition was made (reconciliation re-checks it for 7 days); a fingerprint of the
-- current grant's token (tokens are only stored sealed), so a cancellation naming a token ends
-- that grant only; and every cancellation we received, so one that arrives before its grant
-- keeps the late grant cancelled.
ALTER TABLE orders ADD COLUMN paid_at TIMESTAMP;
ALTER TABLE orders ADD COLUMN paid_at_source TEXT;
ALTER TABLE orders ADD COLUMN inferred_at TIMESTAMP;
ALTER TABLE authorizations ADD COLUMN token_fingerprint TEXT;

CREATE TABLE authorization_cancellations (
    id BIGSERIAL PRIMARY KEY,
    auth_app_id TEXT NOT NULL,
    token_fingerprint TEXT,
    cancelled_at TIMESTAMP NOT NULL,
    source TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
CREATE INDEX authorization_cancellations_app ON authorization_cancellations (auth_app_id);
