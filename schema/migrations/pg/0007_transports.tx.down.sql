-- Jobs that used the new kinds go with them.
DELETE FROM jobs WHERE credential_id IN (SELECT id FROM credentials WHERE kind IN ('jump_host', 'local') OR jump_host_id IS NOT NULL);
UPDATE credentials SET jump_host_id = NULL;
DELETE FROM credentials WHERE kind IN ('jump_host', 'local');
ALTER TABLE credentials DROP CONSTRAINT credentials_auth_check;
ALTER TABLE credentials DROP COLUMN jump_host_id;
ALTER TABLE credentials DROP COLUMN host_key;
ALTER TABLE credentials DROP COLUMN address;
ALTER TABLE credentials DROP COLUMN auth;
ALTER TABLE credentials DROP CONSTRAINT credentials_kind_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_kind_check CHECK (kind IN ('ssh_key', 'password'));
