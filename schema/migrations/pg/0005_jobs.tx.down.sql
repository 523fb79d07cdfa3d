DROP TABLE job_hosts;
DROP TABLE jobs;
