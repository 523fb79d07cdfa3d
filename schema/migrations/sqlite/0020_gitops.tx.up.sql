-- A Git repository whose declarative objects opsflow keeps in sync.
-- webhook_secret is sealed (internal/secret, context "git-source:<name>"):
-- GitHub's HMAC needs the secret itself, so it cannot be a hash.
CREATE TABLE git_sources (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	name             TEXT NOT NULL UNIQUE,
	url              TEXT NOT NULL,
	branch           TEXT NOT NULL,
	path             TEXT NOT NULL DEFAULT '',
	credential_id    BIGINT,
	prune            BOOLEAN NOT NULL DEFAULT FALSE,
	interval_seconds INTEGER NOT NULL DEFAULT 0,
	webhook_secret   TEXT NOT NULL,
	created_by       TEXT NOT NULL DEFAULT '',
	created_at       TIMESTAMP NOT NULL,
	updated_at       TIMESTAMP NOT NULL
);

-- One sync of a source: the commit it read, the plan it made and how it
-- ended (planned, applied, failed; dry runs stop at planned).
CREATE TABLE git_syncs (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	source      TEXT NOT NULL,
	run_id      TEXT NOT NULL UNIQUE,
	workflow_id TEXT NOT NULL DEFAULT '',
	trigger     TEXT NOT NULL DEFAULT '',
	dry_run     BOOLEAN NOT NULL DEFAULT FALSE,
	status      TEXT NOT NULL,
	sha         TEXT NOT NULL DEFAULT '',
	plan        TEXT NOT NULL DEFAULT '[]',
	error       TEXT NOT NULL DEFAULT '',
	started_at  TIMESTAMP NOT NULL,
	finished_at TIMESTAMP
);
CREATE INDEX git_syncs_source_idx ON git_syncs (source, id);

-- Objects a source manages: read-only everywhere but in its syncs.
-- name is the object's name (a risk rule's pattern).
CREATE TABLE managed_objects (
	kind       TEXT NOT NULL,
	name       TEXT NOT NULL,
	source     TEXT NOT NULL,
	sha        TEXT NOT NULL DEFAULT '',
	updated_at TIMESTAMP NOT NULL,
	PRIMARY KEY (kind, name)
);
CREATE INDEX managed_objects_source_idx ON managed_objects (source);
