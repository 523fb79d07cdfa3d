DROP TABLE runbook_schedules;
