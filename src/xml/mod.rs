//! XML at the edge: guarded reading, schema validation, SOAP envelopes.

pub mod guard;
pub mod schema;
pub mod soap;
pub mod stream;
pub mod tree;
