-- Jump hosts (bastions) are credentials too: an address to reach, the
-- login there, and optionally the host key to expect. Any credential may
-- name a jump host through which its hosts are reached; a jump host may
-- itself sit behind another. The built-in credential of kind local runs
-- scripts on the SSH worker itself.
--
-- SQLite cannot change a CHECK constraint, so the table is rebuilt (see
-- sqliteRebuild: foreign keys are off meanwhile). The new table keeps the
-- ids, so the jobs' references to "credentials" hold.
CREATE TABLE credentials_new (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	name         TEXT NOT NULL UNIQUE,
	kind         TEXT NOT NULL CHECK (kind IN ('ssh_key', 'password', 'jump_host', 'local')),
	auth         TEXT NOT NULL CHECK (auth IN ('ssh_key', 'password', 'none')),
	username     TEXT NOT NULL,
	secret       TEXT NOT NULL,
	passphrase   TEXT NOT NULL DEFAULT '',
	fingerprint  TEXT NOT NULL DEFAULT '',
	address      TEXT NOT NULL DEFAULT '',
	host_key     TEXT NOT NULL DEFAULT '',
	jump_host_id BIGINT REFERENCES credentials_new (id),
	description  TEXT NOT NULL DEFAULT '',
	created_by   TEXT NOT NULL DEFAULT '',
	created_at   TIMESTAMP NOT NULL,
	updated_at   TIMESTAMP NOT NULL
);
INSERT INTO credentials_new (id, name, kind, auth, username, secret, passphrase, fingerprint, description, created_by, created_at, updated_at)
	SELECT id, name, kind, kind, username, secret, passphrase, fingerprint, description, created_by, created_at, updated_at FROM credentials;
DROP TABLE credentials;
ALTER TABLE credentials_new RENAME TO credentials;
