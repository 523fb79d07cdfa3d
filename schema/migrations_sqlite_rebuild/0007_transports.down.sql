-- Jobs that used the new kinds go with them.
DELETE FROM jobs WHERE credential_id IN (SELECT id FROM credentials WHERE kind IN ('jump_host', 'local') OR jump_host_id IS NOT NULL);
CREATE TABLE credentials_old (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	name        TEXT NOT NULL UNIQUE,
	kind        TEXT NOT NULL CHECK (kind IN ('ssh_key', 'password')),
	username    TEXT NOT NULL,
	secret      TEXT NOT NULL,
	passphrase  TEXT NOT NULL DEFAULT '',
	fingerprint TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  TIMESTAMP NOT NULL,
	updated_at  TIMESTAMP NOT NULL
);
INSERT INTO credentials_old (id, name, kind, username, secret, passphrase, fingerprint, description, created_by, created_at, updated_at)
	SELECT id, name, kind, username, secret, passphrase, fingerprint, description, created_by, created_at, updated_at FROM credentials WHERE kind IN ('ssh_key', 'password');
DROP TABLE credentials;
ALTER TABLE credentials_old RENAME TO credentials;
