//! Dates written to the database. On SQLite a date is its text, and diesel writes it by chrono's `format("%F")`,
//! which reads its pattern anew for every value: a batch file writes a date with every posting, and that was
//! about a fifteenth of the committer thread's work. `DbDate` writes the same text directly; PostgreSQL gets
//! chrono's binary date as before.

use chrono::{Datelike, NaiveDate};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Date;
use diesel::sqlite::Sqlite;

use super::MultiBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression)]
#[diesel(sql_type = Date)]
pub struct DbDate(pub NaiveDate);

/// The text diesel writes for a date on SQLite (`%F`, `ÅÅÅÅ-MM-DD`), made without a pattern for the years of four
/// digits; any other year is left to chrono.
fn sqlite_text(date: NaiveDate) -> String {
    let year = date.year();
    if !(0..=9999).contains(&year) {
        return date.format("%F").to_string();
    }
    format!("{year:04}-{:02}-{:02}", date.month(), date.day())
}

impl ToSql<Date, Sqlite> for DbDate {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_text(self.0));
        Ok(IsNull::No)
    }
}

impl ToSql<Date, Pg> for DbDate {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <NaiveDate as ToSql<Date, Pg>>::to_sql(&self.0, &mut out.reborrow())
    }
}

impl ToSql<Date, MultiBackend> for DbDate {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Date, self));
        Ok(IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_is_the_text_chrono_makes() {
        let mut dates: Vec<NaiveDate> = [(0, 1, 1), (1, 2, 3), (999, 12, 31), (1970, 1, 1), (2024, 2, 29), (2026, 11, 27), (9999, 12, 31)]
            .iter()
            .map(|&(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap())
            .collect();
        dates.extend([(-1, 1, 1), (10000, 1, 1), (-262143, 1, 1)].iter().map(|&(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap()));
        let mut day = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        while day.year() < 2025 {
            dates.push(day);
            day = day.succ_opt().unwrap();
        }
        for date in dates {
            assert_eq!(sqlite_text(date), date.format("%F").to_string(), "{date:?}");
        }
    }
}
