-- Output of running hosts as it arrives, for live streaming; the final
-- tail of each host's output is also kept on job_hosts.
CREATE TABLE job_output (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	idx    INTEGER NOT NULL,
	at     TIMESTAMP NOT NULL,
	data   TEXT NOT NULL
);
CREATE INDEX job_output_job_idx ON job_output (job_id, id);
