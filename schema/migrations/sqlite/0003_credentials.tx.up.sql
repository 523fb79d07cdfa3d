-- Secrets are sealed (AES-GCM, see internal/secret) before they reach this
-- table; only their fingerprints are readable.
CREATE TABLE credentials (
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
