DROP TABLE runs;
DROP TRIGGER audit_log_no_update ON audit_log;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE sessions;
DROP TABLE api_tokens;
DROP TABLE users;
