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
	updated_at   TIMESTAMP NOT NULL,
	scope        TEXT NOT NULL DEFAULT '',
	allow_unlisted_hosts BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO credentials_new (id, name, kind, auth, username, secret, passphrase, fingerprint, address, host_key, jump_host_id, description, created_by, created_at, updated_at, scope, allow_unlisted_hosts)
	SELECT id, name, kind, auth, username, secret, passphrase, fingerprint, address, host_key, jump_host_id, description, created_by, created_at, updated_at, scope, allow_unlisted_hosts FROM credentials WHERE kind <> 'http';
DROP TABLE credentials;
ALTER TABLE credentials_new RENAME TO credentials;
