DROP TRIGGER runbook_versions_no_update;
DROP TRIGGER runbook_versions_no_delete;
DROP TABLE runbook_versions;
DROP TABLE runbooks;
