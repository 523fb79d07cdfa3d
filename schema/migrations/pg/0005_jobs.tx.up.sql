-- A batch job: a script version run on a resolved set of hosts.
CREATE TABLE jobs (
	id             BIGSERIAL PRIMARY KEY,
	workflow_id    TEXT NOT NULL UNIQUE,
	script_id      BIGINT NOT NULL REFERENCES scripts (id),
	script_version BIGINT NOT NULL,
	-- Parameter values, sealed whole: some may be secrets.
	params         TEXT NOT NULL DEFAULT '',
	targets        TEXT NOT NULL DEFAULT '{}',
	credential_id  BIGINT NOT NULL REFERENCES credentials (id),
	policy         TEXT NOT NULL DEFAULT '{}',
	status         TEXT NOT NULL,
	total          INTEGER NOT NULL,
	parent_id      BIGINT REFERENCES jobs (id),
	created_by     TEXT NOT NULL DEFAULT '',
	created_at     TIMESTAMPTZ NOT NULL,
	ended_at       TIMESTAMPTZ,
	summary        TEXT NOT NULL DEFAULT ''
);

-- One row per host of a job; the bulky output lives here, never in
-- workflow history.
CREATE TABLE job_hosts (
	job_id       BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	idx          INTEGER NOT NULL,
	address      TEXT NOT NULL,
	ci_id        BIGINT,
	state        TEXT NOT NULL DEFAULT 'pending',
	exit_code    INTEGER,
	attempts     INTEGER NOT NULL DEFAULT 0,
	started_at   TIMESTAMPTZ,
	ended_at     TIMESTAMPTZ,
	output       TEXT NOT NULL DEFAULT '',
	output_bytes BIGINT NOT NULL DEFAULT 0,
	truncated    BOOLEAN NOT NULL DEFAULT FALSE,
	error        TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (job_id, idx)
);
CREATE INDEX job_hosts_state_idx ON job_hosts (job_id, state);
