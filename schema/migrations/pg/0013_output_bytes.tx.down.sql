-- Back to text: bytes that text cannot hold (NUL, invalid UTF-8) come
-- back escaped (\000), since the older code could not store them at all.
ALTER TABLE job_hosts ALTER COLUMN output DROP DEFAULT;
ALTER TABLE job_hosts ALTER COLUMN output TYPE TEXT USING encode(output, 'escape');
ALTER TABLE job_hosts ALTER COLUMN output SET DEFAULT '';
ALTER TABLE job_output ALTER COLUMN data TYPE TEXT USING encode(data, 'escape');
