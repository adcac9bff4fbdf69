//! Domain: messages, values, rules, sortiment and mapping. No transport and no storage here.

pub mod alert;
pub mod delivery;
pub mod finans;
pub mod fordring;
pub mod idempotency;
pub mod mapping;
pub mod receipt;
pub mod rejection;
pub mod rules;
pub mod sortiment;
pub mod values;
