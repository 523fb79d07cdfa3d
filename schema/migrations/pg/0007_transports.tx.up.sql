-- Jump hosts (bastions) are credentials too: an address to reach, the
-- login there, and optionally the host key to expect. Any credential may
-- name a jump host through which its hosts are reached; a jump host may
-- itself sit behind another. The built-in credential of kind local runs
-- scripts on the SSH worker itself.
ALTER TABLE credentials DROP CONSTRAINT credentials_kind_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_kind_check CHECK (kind IN ('ssh_key', 'password', 'jump_host', 'local'));
ALTER TABLE credentials ADD COLUMN auth TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN host_key TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN jump_host_id BIGINT REFERENCES credentials (id);
UPDATE credentials SET auth = kind;
ALTER TABLE credentials ADD CONSTRAINT credentials_auth_check CHECK (auth IN ('ssh_key', 'password', 'none'));
