-- A credential is used only on the hosts it is meant for: host CIs its
-- scope (a label selector; empty: every host CI) selects, and addresses
-- that are no host in the CMDB only when an admin allows it. Existing
-- credentials keep every CMDB host and lose unlisted addresses.
ALTER TABLE credentials ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN allow_unlisted_hosts BOOLEAN NOT NULL DEFAULT FALSE;

-- Host keys recorded on first contact, by the host's canonical address
-- (see schema.CanonicalAddress) and the jump host it is reached through
-- (0: directly): the same address behind two bastions is two hosts. A
-- host CI's ssh_host_key attribute, when set, is what its address is
-- checked against instead.
CREATE TABLE host_keys (
	address    TEXT NOT NULL,
	via        BIGINT NOT NULL DEFAULT 0,
	host_key   TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	PRIMARY KEY (address, via)
);
