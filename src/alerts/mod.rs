//! Rejection alerts: what goes into the outbox with a rejection, how a group of them reads as one mail, and
//! the task that sends the outbox.

pub mod mail;
pub mod sender;

pub use crate::domain::alert::{AlertPayload, AlertTarget};
