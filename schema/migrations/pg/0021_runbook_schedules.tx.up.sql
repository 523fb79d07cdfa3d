-- A runbook schedule's definition. Its Temporal Schedule (schedule:<name>,
-- one namespace with job schedules) carries only the name and its
-- creator; the runbook, its version and its inputs live here, the inputs
-- sealed whole (some may be secrets), as job schedules keep parameters.
-- (0020 is GitOps's.)
CREATE TABLE runbook_schedules (
	name       TEXT PRIMARY KEY,
	runbook    TEXT NOT NULL,
	version    BIGINT NOT NULL DEFAULT 0,
	inputs     TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL
);
