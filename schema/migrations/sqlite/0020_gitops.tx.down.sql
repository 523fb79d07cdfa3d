DROP TABLE managed_objects;
DROP TABLE git_syncs;
DROP TABLE git_sources;
