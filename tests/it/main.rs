//! The integration tests: one binary, a module per area, against the real service and real peers (SQLite and
//! PostgreSQL, an SMTP server, OpenSSH's SFTP server, a SOAP client, Chromium). `common` is the harness they share.

mod common;

mod alerts;
mod browser;
mod cli;
mod delivery_core;
mod hostile;
mod masse;
mod masse_crash;
mod postgres;
mod retention;
mod roles;
mod sf1590a_straks;
mod sf1590b_straks;
mod sftp;
mod sftp_metadata;
mod straks_crash;
mod straks_intake;
mod straks_random;
mod target_files;
mod target_forward;
mod targets;
mod tls;
mod web;
mod zeep_client;
