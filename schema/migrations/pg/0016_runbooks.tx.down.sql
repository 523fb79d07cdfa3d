DROP TRIGGER runbook_versions_no_change ON runbook_versions;
DROP TABLE runbook_versions;
DROP FUNCTION runbook_versions_immutable();
DROP TABLE runbooks;
