-- Script output is bytes, not text: Postgres text refuses NUL (and bytes
-- that are not UTF-8), so a script printing one could not be recorded.
-- What was stored as text is kept as its UTF-8 bytes.
ALTER TABLE job_hosts ALTER COLUMN output DROP DEFAULT;
ALTER TABLE job_hosts ALTER COLUMN output TYPE BYTEA USING convert_to(output, 'UTF8');
ALTER TABLE job_hosts ALTER COLUMN output SET DEFAULT '\x'::bytea;
ALTER TABLE job_output ALTER COLUMN data TYPE BYTEA USING convert_to(data, 'UTF8');
