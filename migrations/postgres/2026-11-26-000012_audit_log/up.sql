-- What people did, for a municipality's auditor: logins (and failed ones), mapping and sortiment changes,
-- refusals of what a role may not do. Written with the change it records, in the same transaction where there
-- is one. Nothing here is changed or deleted by the service.
CREATE TABLE audit_log (
    id SERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,                 -- a user of the web page, or what acted for nobody (the folder, a command)
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    origin TEXT                          -- where from: the web page's client address, the mapping folder, the command line
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
