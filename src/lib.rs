//! fkoeko-adapter: the ERP's receiving end of the FK-ØKO integrations on Serviceplatformen.

// A rejection finding is the error type of the XML edge; it is built on a cold path, once per bad delivery,
// so its size does not matter and boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod alerts;
pub mod app;
pub mod batch;
pub mod config;
pub mod domain;
pub mod files;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod retention;
pub mod startup;
pub mod storage;
pub mod target_files;
pub mod target_forward;
pub mod task;
pub mod telemetry;
pub mod terminal;
pub mod web;
pub mod wire;
pub mod xml;
