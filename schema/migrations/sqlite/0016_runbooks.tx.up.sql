-- A runbook is a name over immutable versions of its document. Deleting a
-- runbook marks it deleted: its versions stay, for the runs that used
-- them and for the audit log; a new runbook may then take the name.
CREATE TABLE runbooks (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	name           TEXT NOT NULL,
	description    TEXT NOT NULL DEFAULT '',
	labels         TEXT NOT NULL DEFAULT '{}',
	latest_version BIGINT NOT NULL DEFAULT 0,
	created_by     TEXT NOT NULL DEFAULT '',
	created_at     TIMESTAMP NOT NULL,
	updated_at     TIMESTAMP NOT NULL,
	deleted_at     TIMESTAMP,
	deleted_by     TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX runbooks_live_name_idx ON runbooks (name) WHERE deleted_at IS NULL;
CREATE INDEX runbooks_updated_at_idx ON runbooks (updated_at, id);

-- Versions are immutable: the source is kept as submitted, with its
-- SHA-256 (hex), and a change is a new version.
CREATE TABLE runbook_versions (
	runbook_id BIGINT NOT NULL REFERENCES runbooks (id),
	version    BIGINT NOT NULL,
	source     TEXT NOT NULL,
	sha256     TEXT NOT NULL,
	comment    TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL DEFAULT '',
	created_at TIMESTAMP NOT NULL,
	PRIMARY KEY (runbook_id, version)
);

CREATE TRIGGER runbook_versions_no_update BEFORE UPDATE ON runbook_versions
BEGIN
	SELECT RAISE(ABORT, 'runbook_versions are immutable');
END;
CREATE TRIGGER runbook_versions_no_delete BEFORE DELETE ON runbook_versions
BEGIN
	SELECT RAISE(ABORT, 'runbook_versions are immutable');
END;
