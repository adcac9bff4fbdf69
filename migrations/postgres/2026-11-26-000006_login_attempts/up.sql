-- Login tries per user name on the web page, shared by every instance: each try is counted here before its
-- password is checked, in one statement, so that tries sent at once cannot all get past the limit.
CREATE TABLE login_attempts (
    user_name TEXT PRIMARY KEY NOT NULL,
    window_start TIMESTAMP NOT NULL,    -- when the counting of this run of tries began
    attempts INTEGER NOT NULL           -- tries since window_start; cleared by a login that succeeds
);
