CREATE TABLE users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	username      TEXT NOT NULL UNIQUE,
	display_name  TEXT NOT NULL DEFAULT '',
	email         TEXT NOT NULL DEFAULT '',
	role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
	password_hash TEXT NOT NULL DEFAULT '',
	disabled      BOOLEAN NOT NULL DEFAULT FALSE,
	created_at    TIMESTAMP NOT NULL,
	updated_at    TIMESTAMP NOT NULL
);

CREATE TABLE api_tokens (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	prefix       TEXT NOT NULL,
	token_hash   TEXT NOT NULL UNIQUE,
	expires_at   TIMESTAMP,
	revoked_at   TIMESTAMP,
	last_used_at TIMESTAMP,
	created_at   TIMESTAMP NOT NULL
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	csrf_token TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE audit_log (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	at         TIMESTAMP NOT NULL,
	actor      TEXT NOT NULL,
	actor_id   BIGINT,
	action     TEXT NOT NULL,
	target     TEXT NOT NULL DEFAULT '',
	source_ip  TEXT NOT NULL DEFAULT '',
	request_id TEXT NOT NULL DEFAULT '',
	status     INTEGER NOT NULL DEFAULT 0,
	detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
	SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE runs (
	workflow_id     TEXT PRIMARY KEY,
	run_id          TEXT NOT NULL DEFAULT '',
	kind            TEXT NOT NULL,
	status          TEXT NOT NULL,
	started_by      TEXT NOT NULL DEFAULT '',
	target          TEXT NOT NULL DEFAULT '',
	started_at      TIMESTAMP NOT NULL,
	ended_at        TIMESTAMP,
	summary         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX runs_started_at_idx ON runs (started_at DESC, workflow_id DESC);
CREATE INDEX runs_kind_idx ON runs (kind, started_at DESC);
CREATE INDEX runs_status_idx ON runs (status, started_at DESC);
