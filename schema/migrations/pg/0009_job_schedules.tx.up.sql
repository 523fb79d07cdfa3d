-- A job schedule's definition. The Temporal Schedule named
-- schedule:<name> carries only the name and its creator; what it runs
-- lives here, with the parameter values sealed whole (some may be
-- secrets), as jobs keep theirs.
CREATE TABLE job_schedules (
	name          TEXT PRIMARY KEY,
	script_id     BIGINT NOT NULL,
	version       BIGINT NOT NULL DEFAULT 0,
	params        TEXT NOT NULL DEFAULT '',
	targets       TEXT NOT NULL DEFAULT '{}',
	credential_id BIGINT NOT NULL DEFAULT 0,
	policy        TEXT NOT NULL DEFAULT '{}',
	created_by    TEXT NOT NULL,
	created_at    TIMESTAMPTZ NOT NULL
);
