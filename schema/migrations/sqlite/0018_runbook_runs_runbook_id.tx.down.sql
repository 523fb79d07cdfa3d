ALTER TABLE runbook_runs DROP COLUMN runbook_id;
