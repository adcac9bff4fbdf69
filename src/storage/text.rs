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

/// Where a receipt file sent back through Serviceplatformen is: to be sent (again), sent and waiting for the
/// platform's technical receipt, delivered, or given up after its last try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferState {
    Written,
    Sent,
    Delivered,
    Failed,
}

impl Named for TransferState {
    const WHAT: &'static str = "receipt transfer state";
    fn name(self) -> &'static str {
        match self {
            TransferState::Written => "written",
            TransferState::Sent => "sent",
            TransferState::Delivered => "delivered",
            TransferState::Failed => "failed",
        }
    }
    fn from_name(name: &str) -> Option<Self> {
        [TransferState::Written, TransferState::Sent, TransferState::Delivered, TransferState::Failed]
            .into_iter()
            .find(|s| s.name() == name)
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
unwrap_stored!(BatchState, Integration, Transport, Status, TransferState);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use diesel::RunQueryDsl;

    use super::*;
    use crate::storage::batch::{Claimed, NewBatchFile};
    use crate::storage::{Db, StorageError};

    fn claimed(db: &Db, integration: Integration) -> i32 {
        let new = NewBatchFile {
            file_key: format!("sha256:{integration:?}"),
            integration,
            file_name: "f.xml".into(),
            stored_name: format!("1-{integration:?}-f.xml"),
            content_hash: "h".into(),
            size_bytes: 1,
            metadata: None,
        };
        match db.claim_batch_file(&new, "test", chrono::Duration::seconds(60)).unwrap() {
            Claimed::Mine(file) => file.id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn enums_are_written_by_name_and_read_back_as_the_enum() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db").display().to_string(), 1, Duration::from_secs(5)).unwrap();
        let id = claimed(&db, Integration::Sf1590B);
        let file = db.batch_file(id).unwrap().unwrap();
        assert_eq!((file.integration, file.state), (Integration::Sf1590B, BatchState::Processing));
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text)]
            integration: String,
            #[diesel(sql_type = Text)]
            state: String,
        }
        let row: Row = diesel::sql_query("SELECT integration, state FROM batch_files").get_result(&mut *db.conn().unwrap()).unwrap();
        assert_eq!((row.integration.as_str(), row.state.as_str()), ("SF1590_B", "processing"), "the names on disk are kept");
    }

    #[test]
    fn an_unknown_name_in_a_row_is_an_error_not_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db").display().to_string(), 1, Duration::from_secs(5)).unwrap();
        let id = claimed(&db, Integration::Sf1590A);
        // The table's CHECK refuses it; a row from a newer version of the program (with a state this one does not
        // know) gets past it, which is what this stands in for.
        let mut conn = db.conn().unwrap();
        diesel::sql_query("PRAGMA ignore_check_constraints = ON").execute(&mut *conn).unwrap();
        diesel::sql_query("UPDATE batch_files SET state = 'halvvejs'").execute(&mut *conn).unwrap();
        diesel::sql_query("PRAGMA ignore_check_constraints = OFF").execute(&mut *conn).unwrap();
        drop(conn);
        match db.batch_file(id) {
            Err(e @ StorageError::Query(_)) => {
                // In what an operator's log shows, not only in the debug form.
                let shown = e.to_string();
                assert!(shown.contains("state") && shown.contains("unknown batch state 'halvvejs'"), "{shown}");
            }
            other => panic!("{other:?}"),
        }
    }
}
