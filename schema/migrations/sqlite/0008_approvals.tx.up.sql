-- Approval policies: levels decided in order, each with its approvers, its
-- rule (any, all, quorum N) and a timeout action. The spec is JSON.
CREATE TABLE approval_policies (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	spec        TEXT NOT NULL,
	created_by  TEXT NOT NULL DEFAULT '',
	created_at  TIMESTAMP NOT NULL,
	updated_at  TIMESTAMP NOT NULL
);

-- Tickets are the read model of Approval workflows; the workflow decides.
-- The policy is a snapshot taken when the ticket opened.
CREATE TABLE approval_tickets (
	id                INTEGER PRIMARY KEY AUTOINCREMENT,
	workflow_id       TEXT NOT NULL UNIQUE,
	title             TEXT NOT NULL,
	description       TEXT NOT NULL DEFAULT '',
	requester         TEXT NOT NULL,
	gated_workflow_id TEXT NOT NULL DEFAULT '',
	risk              TEXT NOT NULL DEFAULT '',
	policy_name       TEXT NOT NULL,
	policy            TEXT NOT NULL,
	status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'withdrawn')),
	level             INTEGER NOT NULL DEFAULT 0,
	reason            TEXT NOT NULL DEFAULT '',
	created_at        TIMESTAMP NOT NULL,
	decided_at        TIMESTAMP
);
CREATE INDEX approval_tickets_status_idx ON approval_tickets (status, id);
CREATE INDEX approval_tickets_requester_idx ON approval_tickets (requester, id);

-- Who may decide a ticket's current level (the inbox's "waiting for me").
CREATE TABLE approval_ticket_approvers (
	ticket_id BIGINT NOT NULL REFERENCES approval_tickets (id) ON DELETE CASCADE,
	username  TEXT NOT NULL,
	PRIMARY KEY (ticket_id, username)
);
CREATE INDEX approval_ticket_approvers_user_idx ON approval_ticket_approvers (username, ticket_id);

-- Every decision, from every channel, in order (seq is the workflow's).
CREATE TABLE approval_decisions (
	ticket_id    BIGINT NOT NULL REFERENCES approval_tickets (id) ON DELETE CASCADE,
	seq          INTEGER NOT NULL,
	level        INTEGER NOT NULL,
	voter        TEXT NOT NULL,
	on_behalf_of TEXT NOT NULL DEFAULT '',
	decision     TEXT NOT NULL,
	channel      TEXT NOT NULL DEFAULT '',
	comment      TEXT NOT NULL DEFAULT '',
	at           TIMESTAMP NOT NULL,
	PRIMARY KEY (ticket_id, seq)
);

-- An approver away lets another decide for them for a period.
CREATE TABLE approval_delegations (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	from_user  TEXT NOT NULL,
	to_user    TEXT NOT NULL,
	starts_at  TIMESTAMP NOT NULL,
	ends_at    TIMESTAMP NOT NULL,
	created_at TIMESTAMP NOT NULL,
	CHECK (from_user <> to_user),
	CHECK (ends_at > starts_at)
);
CREATE INDEX approval_delegations_to_idx ON approval_delegations (to_user, ends_at);

-- Chat accounts linked to opsflow users (Slack user IDs, DingTalk staff
-- IDs); without a link, Slack users are matched by email.
CREATE TABLE chat_identities (
	provider    TEXT NOT NULL,
	external_id TEXT NOT NULL,
	username    TEXT NOT NULL,
	created_at  TIMESTAMP NOT NULL,
	PRIMARY KEY (provider, external_id)
);
CREATE INDEX chat_identities_user_idx ON chat_identities (username, provider);

-- Single-use, expiring decision links sent in chat messages (DingTalk
-- ActionCards); only the hash of the token is kept.
CREATE TABLE approval_links (
	token_hash TEXT PRIMARY KEY,
	ticket_id  BIGINT NOT NULL REFERENCES approval_tickets (id) ON DELETE CASCADE,
	decision   TEXT NOT NULL,
	expires_at TIMESTAMP NOT NULL,
	used_at    TIMESTAMP,
	used_by    TEXT NOT NULL DEFAULT ''
);

-- Groups of users (teams, on-call rotations) that policies name as
-- approvers.
CREATE TABLE user_groups (
	name       TEXT NOT NULL,
	username   TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	PRIMARY KEY (name, username)
);
CREATE INDEX user_groups_user_idx ON user_groups (username);
