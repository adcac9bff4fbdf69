//! Domain: messages, values, rules, sortiment and mapping. No transport and no storage here.

/// The line and the column (in characters, both from 1) of a byte offset in a text: how file errors say where.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
}

pub mod alert;
pub mod audit;
pub mod delivery;
pub mod finans;
pub mod fordring;
pub mod idempotency;
pub mod mapping;
pub mod receipt;
pub mod rejection;
pub mod retention;
pub mod rules;
pub mod sortiment;
pub mod target;
pub mod values;
