DROP TABLE run_steps;
DROP TABLE runbook_runs;
