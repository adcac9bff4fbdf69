//! Enums kept in TEXT columns by their names, written and read as the enum: an unknown name in a row is a
//! corrupt row (an error), never a silent default. Domain enums are wrapped here, so that the domain does not
//! depend on diesel.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;

use super::MultiBackend;
use crate::domain::delivery::Transport;
use crate::domain::receipt::Status;
use crate::domain::sortiment::Integration;

/// A value stored by its name.
pub trait Named: Sized + Copy + Send + Sync + std::fmt::Debug + 'static {
    const WHAT: &'static str;
    fn name(self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

/// Where a batch file is: its items being decided, its receipt file being written, or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Processing,
    /// Every item is decided; the receipt file is being written.
    Receipt,
    Done,
}

impl Named for BatchState {
    const WHAT: &'static str = "batch state";
    fn name(self) -> &'static str {
        match self {
            BatchState::Processing => "processing",
            BatchState::Receipt => "receipt",
            BatchState::Done => "done",
        }
    }
    fn from_name(name: &str) -> Option<Self> {
        [BatchState::Processing, BatchState::Receipt, BatchState::Done].into_iter().find(|s| s.name() == name)
    }
}

impl Named for Integration {
    const WHAT: &'static str = "integration";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn from_name(name: &str) -> Option<Self> {
        [Integration::Sf1590A, Integration::Sf1590B].into_iter().find(|i| i.as_str() == name)
    }
}

impl Named for Transport {
    const WHAT: &'static str = "transport";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn from_name(name: &str) -> Option<Self> {
        Transport::parse(name)
    }
}

impl Named for Status {
    const WHAT: &'static str = "receipt status";
    fn name(self) -> &'static str {
        self.as_str()
    }
    fn from_name(name: &str) -> Option<Self> {
        [Status::Accepteret, Status::Afvist].into_iter().find(|s| s.as_str() == name)
    }
}

/// A `Named` value in a TEXT column, on either backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub struct Stored<T: Named>(pub T);

fn read<T: Named>(name: String) -> deserialize::Result<Stored<T>> {
    T::from_name(&name).map(Stored).ok_or_else(|| format!("unknown {} '{name}' in the database", T::WHAT).into())
}

impl<T: Named + std::fmt::Debug> ToSql<Text, Pg> for Stored<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.0.name(), &mut out.reborrow())
    }
}

impl<T: Named + std::fmt::Debug> ToSql<Text, Sqlite> for Stored<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.name());
        Ok(IsNull::No)
    }
}

impl<T: Named + std::fmt::Debug> ToSql<Text, MultiBackend> for Stored<T> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Text, self));
        Ok(IsNull::No)
    }
}

impl<T: Named, DB: Backend> FromSql<Text, DB> for Stored<T>
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        read(String::from_sql(bytes)?)
    }
}

// Rows read into their plain types (`#[diesel(deserialize_as = Stored<..>)]`).
macro_rules! unwrap_stored {
    ($($t:ty),*) => {$(
        impl From<Stored<$t>> for $t {
            fn from(stored: Stored<$t>) -> Self {
                stored.0
            }
        }
    )*};
}
unwrap_stored!(BatchState, Integration, Transport, Status);
