//! Amounts in the database: NUMERIC on PostgreSQL; on SQLite, which has no exact decimal type, the decimal's
//! text ("1250.50"), never a float.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{HasSqlType, Numeric, SqlType, Text};
use diesel::sqlite::Sqlite;
use rust_decimal::Decimal;

use super::MultiBackend;

#[derive(Debug, Clone, Copy, SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 1700, array_oid = 1231))]
#[diesel(sqlite_type(name = "Text"))]
pub struct Amount;

#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Amount)]
pub struct DbAmount(pub Decimal);

impl ToSql<Amount, Pg> for DbAmount {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Decimal as ToSql<Numeric, Pg>>::to_sql(&self.0, &mut out.reborrow())
    }
}

impl FromSql<Amount, Pg> for DbAmount {
    fn from_sql(bytes: <Pg as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <Decimal as FromSql<Numeric, Pg>>::from_sql(bytes).map(DbAmount)
    }
}

impl ToSql<Amount, Sqlite> for DbAmount {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.to_string());
        Ok(IsNull::No)
    }
}

impl FromSql<Amount, Sqlite> for DbAmount {
    fn from_sql(bytes: <Sqlite as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Sqlite>>::from_sql(bytes)?;
        Decimal::from_str_exact(&text).map(DbAmount).map_err(|e| format!("amount '{text}': {e}").into())
    }
}

impl HasSqlType<Amount> for MultiBackend {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        Self::lookup_sql_type::<Amount>(lookup)
    }
}

impl ToSql<Amount, MultiBackend> for DbAmount {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Amount, self));
        Ok(IsNull::No)
    }
}

impl FromSql<Amount, MultiBackend> for DbAmount {
    fn from_sql(bytes: <MultiBackend as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        bytes.from_sql::<Self, Amount>()
    }
}

impl From<DbAmount> for Decimal {
    fn from(amount: DbAmount) -> Self {
        amount.0
    }
}
