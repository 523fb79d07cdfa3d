-- Credentials of kind http are secrets that runbooks' http steps send (a
-- bearer token, or basic auth with a username), only to the URL prefixes
-- of their scope.
ALTER TABLE credentials DROP CONSTRAINT credentials_kind_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_kind_check CHECK (kind IN ('ssh_key', 'password', 'jump_host', 'local', 'http'));
