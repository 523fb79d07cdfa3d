DROP TABLE host_keys;
ALTER TABLE credentials DROP COLUMN allow_unlisted_hosts;
ALTER TABLE credentials DROP COLUMN scope;
