-- A run names the runbook it runs by ID (with the version): a runbook
-- deleted and created again under the same name is another runbook.
-- 0 for sub-runbook runs and runs recorded before this column.
ALTER TABLE runbook_runs ADD COLUMN runbook_id BIGINT NOT NULL DEFAULT 0;
