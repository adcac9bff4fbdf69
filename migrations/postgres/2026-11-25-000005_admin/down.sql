DROP TABLE admin_sessions;
DROP TABLE mapping_versions;
