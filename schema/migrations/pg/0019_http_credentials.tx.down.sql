DELETE FROM credentials WHERE kind = 'http';
ALTER TABLE credentials DROP CONSTRAINT credentials_kind_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_kind_check CHECK (kind IN ('ssh_key', 'password', 'jump_host', 'local'));
