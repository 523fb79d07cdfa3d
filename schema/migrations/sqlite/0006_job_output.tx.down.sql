DROP TABLE job_output;
