-- Script output is bytes: SQLite stores BLOB values in job_hosts.output
-- and job_output.data as they are (a column's type does not bind its
-- values there), so only Postgres changes the columns' type.
SELECT 1;
