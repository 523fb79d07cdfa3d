-- A runbook run: which runbook version it runs and with what inputs
-- (secret inputs are not here: they travel sealed in the workflow's input
-- and are opened only inside activities). The run itself is a row of runs
-- with kind runbook; this adds what only runbook runs have.
CREATE TABLE runbook_runs (
	workflow_id        TEXT PRIMARY KEY,
	runbook            TEXT NOT NULL,
	version            BIGINT NOT NULL DEFAULT 0,
	inputs             TEXT NOT NULL DEFAULT '{}',
	parent_workflow_id TEXT NOT NULL DEFAULT '',
	-- The step the run waits on after it failed (retry or cancel), or ''.
	failed_step        TEXT NOT NULL DEFAULT '',
	created_at         TIMESTAMPTZ NOT NULL
);

-- Each step of a runbook run as the interpreter last reported it. path is
-- the step's place in the run: its id, or for a foreach body
-- <foreach id>[<index>].<id>. seq orders the reports of one step, so a
-- late write never overwrites a newer one.
CREATE TABLE run_steps (
	workflow_id       TEXT NOT NULL,
	path              TEXT NOT NULL,
	step_id           TEXT NOT NULL,
	kind              TEXT NOT NULL,
	parent_path       TEXT NOT NULL DEFAULT '',
	position          INTEGER NOT NULL DEFAULT 0,
	status            TEXT NOT NULL,
	attempts          INTEGER NOT NULL DEFAULT 0,
	started_at        TIMESTAMPTZ,
	ended_at          TIMESTAMPTZ,
	outputs           TEXT NOT NULL DEFAULT '{}',
	error             TEXT NOT NULL DEFAULT '',
	child_workflow_id TEXT NOT NULL DEFAULT '',
	seq               BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (workflow_id, path)
);
