//! fkoeko-adapter: the ERP's receiving end of the FK-ØKO integrations on Serviceplatformen.

pub mod app;
pub mod config;
pub mod domain;
pub mod http;
pub mod pipeline;
pub mod storage;
pub mod telemetry;
pub mod wire;
pub mod xml;
