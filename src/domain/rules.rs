//! The rules of sf1590a.md that the schema cannot express.

use std::collections::{BTreeMap, HashSet};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::finans::Finansbilag;
use super::rejection::{Finding, Rejection};
use super::values::{DebetKredit, Valuta};

/// The installation's accounting settings the rules need.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    /// Open periods as (year, month); empty means "this and last month" relative to the processing date.
    pub open_periods: Vec<(i32, u32)>,
    pub currencies: Vec<Valuta>,
}

impl RuleSettings {
    fn open_periods_on(&self, today: NaiveDate) -> Vec<(i32, u32)> {
        if !self.open_periods.is_empty() {
            return self.open_periods.clone();
        }
        let this = (today.year(), today.month());
        let last = if today.month() == 1 { (today.year() - 1, 12) } else { (today.year(), today.month() - 1) };
        vec![last, this]
    }
}

fn describe_periods(periods: &[(i32, u32)]) -> String {
    periods.iter().map(|(y, m)| format!("{y}-{m:02}")).collect::<Vec<_>>().join(", ")
}

/// Every rule finding for one finansbilag, in document order.
pub fn check_finansbilag(bilag: &Finansbilag, settings: &RuleSettings, today: NaiveDate) -> Vec<Finding> {
    let mut findings = Vec::new();
    let open = settings.open_periods_on(today);
    let mut seen_ids = HashSet::new();
    // BTreeMap so that findings for several currencies come in a stable order.
    let mut sums: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();

    for posting in &bilag.postings {
        if !seen_ids.insert(posting.id.value) {
            findings.push(
                Finding::new(Rejection::RepeatedPostingId(posting.id.value), &posting.id.loc).with_value(posting.id.value.to_string()),
            );
        }
        let date = posting.date.value;
        if !open.contains(&(date.year(), date.month())) {
            findings
                .push(Finding::new(Rejection::ClosedPeriod(date, describe_periods(&open)), &posting.date.loc).with_value(date.to_string()));
        }
        let currency = &posting.currency.value;
        if !settings.currencies.contains(currency) {
            let allowed = settings.currencies.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
            findings.push(
                Finding::new(Rejection::CurrencyNotAllowed(currency.to_string(), allowed), &posting.currency.loc)
                    .with_value(currency.to_string()),
            );
        }
        let sum = sums.entry(currency.to_string()).or_default();
        match posting.side {
            DebetKredit::Debet => sum.0 += posting.amount.value(),
            DebetKredit::Kredit => sum.1 += posting.amount.value(),
        }
    }
    for (currency, (debit, credit)) in sums {
        if debit != credit {
            findings.push(Finding::new(Rejection::Unbalanced { currency, debit, credit }, &bilag.loc));
        }
    }
    findings
}
