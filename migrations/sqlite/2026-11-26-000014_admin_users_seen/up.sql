-- The users of the web page (they live in the configuration) as the last start saw them, so that a start with
-- users added, removed, given another role or another password records the change in the audit trail. The
-- password is kept only as a digest of its hash: enough to see that it changed.
CREATE TABLE admin_users_seen (
    name TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL,
    password_digest TEXT NOT NULL
);
