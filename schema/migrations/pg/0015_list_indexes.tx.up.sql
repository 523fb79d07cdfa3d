-- Every list pages by keyset on (sort column, id) and filters by a few
-- columns; these keep its pages and counts index scans at any depth.
CREATE INDEX jobs_created_at_idx ON jobs (created_at, id);
CREATE INDEX jobs_status_idx ON jobs (status, id);
CREATE INDEX jobs_created_by_idx ON jobs (created_by, id);
CREATE INDEX jobs_script_idx ON jobs (script_id, id);
-- "Jobs that ran on this host": by address, or by the host's CI.
CREATE INDEX job_hosts_address_idx ON job_hosts (address, job_id);
CREATE INDEX job_hosts_ci_idx ON job_hosts (ci_id, job_id);
CREATE INDEX runs_started_by_idx ON runs (started_by, started_at);
CREATE INDEX approval_tickets_created_at_idx ON approval_tickets (created_at, id);
CREATE INDEX audit_log_target_idx ON audit_log (target, id);
CREATE INDEX cis_updated_at_idx ON cis (updated_at, id);
CREATE INDEX cis_type_idx ON cis (type, id);
