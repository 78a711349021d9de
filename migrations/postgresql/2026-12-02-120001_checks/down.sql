DROP TABLE job_leases;
DROP INDEX template_builds_due;
CREATE INDEX template_builds_due ON template_builds (next_attempt_at, id) WHERE step IN ('upload', 'build_query', 'audit_apply', 'online');
ALTER TABLE template_builds DROP COLUMN alipay_status;
ALTER TABLE authorizations DROP COLUMN token_check_result;
ALTER TABLE authorizations DROP COLUMN token_checked_at;
