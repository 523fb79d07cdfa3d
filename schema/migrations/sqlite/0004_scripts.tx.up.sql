CREATE TABLE scripts (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	name           TEXT NOT NULL UNIQUE,
	description    TEXT NOT NULL DEFAULT '',
	tags           TEXT NOT NULL DEFAULT '[]',
	latest_version BIGINT NOT NULL DEFAULT 0,
	created_by     TEXT NOT NULL DEFAULT '',
	created_at     TIMESTAMP NOT NULL,
	updated_at     TIMESTAMP NOT NULL
);

-- Versions are immutable: a change is a new version.
CREATE TABLE script_versions (
	script_id    BIGINT NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
	version      BIGINT NOT NULL,
	content      TEXT NOT NULL,
	interpreter  TEXT NOT NULL CHECK (interpreter IN ('bash', 'sh', 'python3')),
	parameters   TEXT NOT NULL DEFAULT '[]',
	risk         TEXT NOT NULL DEFAULT 'none' CHECK (risk IN ('none', 'approval', 'blocked')),
	risk_matches TEXT NOT NULL DEFAULT '[]',
	comment      TEXT NOT NULL DEFAULT '',
	author       TEXT NOT NULL DEFAULT '',
	created_at   TIMESTAMP NOT NULL,
	PRIMARY KEY (script_id, version)
);

-- High-risk command patterns (regular expressions) checked against every
-- new script version.
CREATE TABLE risk_rules (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	pattern     TEXT NOT NULL UNIQUE,
	action      TEXT NOT NULL CHECK (action IN ('block', 'approval')),
	description TEXT NOT NULL DEFAULT '',
	builtin     BOOLEAN NOT NULL DEFAULT FALSE,
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  TIMESTAMP NOT NULL
);
