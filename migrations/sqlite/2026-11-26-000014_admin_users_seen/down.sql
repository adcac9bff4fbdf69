DROP TABLE admin_users_seen;
