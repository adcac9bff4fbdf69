//! The wire model: from a checked XML tree to domain types. This is the only code that knows element names,
//! so the official SF1590 schemas can replace ours by changing this layer alone.

pub mod sf1590a;

use chrono::NaiveDate;

use crate::domain::rejection::{Finding, Loc, Rejection};
use crate::domain::values::ValueError;
use crate::xml::tree::Element;

/// Reads the children of one element, collecting findings instead of stopping at the first.
pub(crate) struct Fields<'a> {
    pub element: &'a Element,
    pub path: String,
    pub findings: &'a mut Vec<Finding>,
}

impl<'a> Fields<'a> {
    pub fn loc(&self) -> Loc {
        self.element.loc(self.path.clone())
    }

    pub fn child_loc(&self, name: &str) -> Loc {
        match self.element.child(name) {
            Some(child) => child.loc(format!("{}/{name}", self.path)),
            None => self.loc(),
        }
    }

    /// A child's text; a missing required child (which the schema should have caught) is a finding.
    pub fn text(&mut self, name: &str) -> Option<&'a str> {
        match self.element.child(name) {
            Some(child) => Some(child.text()),
            None => {
                let loc = self.loc();
                self.findings.push(Finding::new(Rejection::Schema(format!("elementet {name} mangler")), &loc));
                None
            }
        }
    }

    pub fn optional(&self, name: &str) -> Option<&'a str> {
        self.element.child(name).map(|c| c.text())
    }

    /// Parses a required child with a domain constructor; a failure becomes a finding at that child.
    pub fn parse<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Option<T> {
        let raw = self.text(name)?;
        self.check(name, raw, parse)
    }

    pub fn parse_optional<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Option<T> {
        let raw = self.optional(name)?;
        self.check(name, raw, parse)
    }

    fn check<T>(&mut self, name: &str, raw: &str, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Option<T> {
        match parse(raw) {
            Ok(value) => Some(value),
            Err(e) => {
                let loc = self.child_loc(name);
                self.findings.push(Finding::new(Rejection::InvalidValue(e), &loc).with_value(raw));
                None
            }
        }
    }

    pub fn date(&mut self, name: &str) -> Option<NaiveDate> {
        self.parse(name, |raw| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| ValueError::Pattern(raw.into(), "ÅÅÅÅ-MM-DD"))
        })
    }
}
