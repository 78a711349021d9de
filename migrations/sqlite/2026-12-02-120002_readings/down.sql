DROP TABLE authorization_cancellations;
ALTER TABLE authorizations DROP COLUMN token_fingerprint;
ALTER TABLE orders DROP COLUMN inferred_at;
ALTER TABLE orders DROP COLUMN paid_at_source;
ALTER TABLE orders DROP COLUMN paid_at;
