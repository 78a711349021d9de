-- The template build pipeline: one row per version built for a merchant's mini program, moved
-- step by step (upload, build query, audit apply, audit, online) by the pipeline job.
CREATE TABLE template_builds (
    id BIGSERIAL PRIMARY KEY,
    mini_app_id TEXT NOT NULL,
    commodity_order_id TEXT NOT NULL,
    app_version TEXT NOT NULL,
    version_number INTEGER NOT NULL,
    template_id TEXT NOT NULL,
    template_version TEXT,
    step TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT template_builds_version UNIQUE (mini_app_id, version_number)
);
CREATE INDEX template_builds_due ON template_builds (next_attempt_at, id) WHERE step IN ('upload', 'build_query', 'audit_apply', 'online');
CREATE INDEX template_builds_order ON template_builds (commodity_order_id);
