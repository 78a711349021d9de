-- Issue 12 (checks): what the daily token check last saw, Alipay's own word on a build's audit,
-- and the lease rows that keep reconciliation and the token checks on one replica at a time.
ALTER TABLE authorizations ADD COLUMN token_checked_at TIMESTAMP;
-- `valid`, or what else `alipay.open.auth.token.app.query` answered (kept verbatim for support).
ALTER TABLE authorizations ADD COLUMN token_check_result TEXT;
-- The last `status` of `alipay.open.mini.version.detail.query` for the build, verbatim.
ALTER TABLE template_builds ADD COLUMN alipay_status TEXT;
-- Builds now start by asking Alipay's version list, and a build waiting for its audit is asked
-- about (`version.detail.query`) when no audit message comes: both are due rows too.
DROP INDEX template_builds_due;
CREATE INDEX template_builds_due ON template_builds (next_attempt_at, id) WHERE step IN ('version_list', 'upload', 'build_query', 'audit_apply', 'await_audit', 'online');
-- One holder of a named job at a time. PostgreSQL uses an advisory lock instead; the table is
-- here on both backends so the schema stays one.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until TIMESTAMP NOT NULL
);
