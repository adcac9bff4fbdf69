//! Storage through diesel, one code path for both backends: SQLite (the embedded default) and PostgreSQL
//! (production, several adapter processes on one database). The connection pool, migrations per backend,
//! the write transaction, and the amount type.

pub mod alerts;
pub mod amount;
pub mod audit;
pub mod batch;
pub mod booking;
pub mod date;
mod fixed;
pub mod inspect;
pub mod mappings;
pub mod retention;
pub mod schema;
pub mod sessions;
pub mod sortiment;
pub mod targets;
pub mod text;
pub mod transfers;

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend; every query in this module is written once, for both.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// With its causes: diesel's own text of a row that cannot be read names only the field, not why.
    #[error("database: {}", with_causes(.0))]
    Query(#[from] DieselError),
    #[error("database connection: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database connection: {0}")]
    Connect(String),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("stored data could not be read back: {0}")]
    Corrupt(String),
    #[error("another process has taken over this batch file")]
    LeaseLost,
}

impl StorageError {
    /// Another process or writer wrote the same rows at the same time (PostgreSQL), or the two waited on each
    /// other and the server broke the tie: run again, the work then sees the other's rows.
    pub fn lost_race(&self) -> bool {
        match self {
            StorageError::Query(DieselError::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure => true,
                // A row it names (debtor data, a related claim) deleted by a purge in another process meanwhile:
                // run again, the work then makes its own.
                DatabaseErrorKind::ForeignKeyViolation => true,
                // diesel has no kind of its own for PostgreSQL's 40P01.
                DatabaseErrorKind::Unknown => info.message().starts_with("deadlock detected"),
                _ => false,
            },
            _ => false,
        }
    }
}

/// An error and, after colons, each error beneath it.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        cause = inner.source();
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `postgres://` or `postgresql://` is PostgreSQL; anything else is a SQLite file (`sqlite://` optional).
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The SQLite file a URL names (`sqlite://` optional); none for PostgreSQL.
    pub fn sqlite_path(url: &str) -> Option<&str> {
        (Backend::of(url) == Backend::Sqlite).then(|| url.strip_prefix("sqlite://").unwrap_or(url))
    }
}

/// Opens connections of the backend the URL names, never falling back to the other one (a PostgreSQL URL
/// while the server is down must fail, not create a SQLite file of that name).
#[derive(Debug)]
pub struct Manager {
    url: String,
    backend: Backend,
    /// SQLite: how long a writer waits for the lock. PostgreSQL: lock_timeout.
    busy_timeout: Duration,
    /// Opened only to read (`fkoeko validate --database`): SQLite's mode=ro, PostgreSQL's read-only transactions.
    read_only: bool,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let ms = self.busy_timeout.as_millis();
        match self.backend {
            Backend::Sqlite if self.read_only => {
                // A URI, so that SQLite opens it read-only and never creates it. A WAL database that no process has
                // open (no -wal file) is opened as immutable: read-only alone would leave new -wal and -shm files
                // behind, and a dry run writes nothing.
                let in_use = std::path::Path::new(&format!("{}-wal", self.url)).exists();
                let uri = format!("file:{}?mode=ro{}", self.url, if in_use { "" } else { "&immutable=1" });
                let mut conn = SqliteConnection::establish(&uri).map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(&format!("PRAGMA busy_timeout = {ms};")).map_err(diesel::r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.url).map_err(diesel::r2d2::Error::ConnectionError)?;
                // WAL (set once in the database by `Db::open`) lets readers work beside the one writer;
                // synchronous=FULL makes a commit durable before the receipt that depends on it is sent.
                conn.batch_execute(&format!("PRAGMA busy_timeout = {ms}; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"))
                    .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&self.url).map_err(diesel::r2d2::Error::ConnectionError)?;
                // A writer that cannot get its lock in time gives up, and the call is answered "try again later".
                conn.batch_execute(&format!("SET lock_timeout = {ms}; SET TIME ZONE 'UTC';")).map_err(diesel::r2d2::Error::QueryError)?;
                if self.read_only {
                    conn.batch_execute("SET default_transaction_read_only = on;").map_err(diesel::r2d2::Error::QueryError)?;
                }
                Ok(AnyConnection::Postgresql(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        diesel::sql_query("SELECT 1").execute(conn).map(drop).map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        AnyConnection::is_broken_transaction_manager(conn)
    }
}

pub type Conn = PooledConnection<Manager>;

/// Runs a statement that diesel cannot run through the multi-backend connection, such as a multi-row insert,
/// on the backend's own connection.
pub(crate) fn execute_native<Q>(conn: &mut AnyConnection, query: Q) -> diesel::QueryResult<usize>
where
    Q: RunQueryDsl<SqliteConnection> + diesel::query_dsl::methods::ExecuteDsl<SqliteConnection>,
    Q: RunQueryDsl<PgConnection> + diesel::query_dsl::methods::ExecuteDsl<PgConnection>,
{
    match conn {
        AnyConnection::Sqlite(c) => diesel::query_dsl::methods::ExecuteDsl::<SqliteConnection>::execute(query, c),
        AnyConnection::Postgresql(c) => diesel::query_dsl::methods::ExecuteDsl::<PgConnection>::execute(query, c),
    }
}

/// The largest a statement journal is held in memory before SQLite writes it to a temporary file.
const STATEMENT_JOURNAL_IN_MEMORY: i32 = 8 << 20;

/// Sets SQLite up for how this process uses it, once, before SQLite is first used (later, in a test process that
/// opened a database another way first, SQLite refuses and its defaults stay):
/// - statement journals (the pages a statement changes, kept so that the statement alone can be undone) are kept
///   in memory up to `STATEMENT_JOURNAL_IN_MEMORY`: the default, 64 KB, sent most of a batch file's multi-row
///   inserts to temporary files, about three times as many bytes as the database itself got;
/// - multi-thread mode: no mutex around every call on a connection (each bound value of each row took and gave
///   one). A pooled connection, and its statements, are used by one thread at a time, which is all that mode
///   asks;
/// - no count of the memory SQLite holds (nothing here reads it), which took a global mutex at every allocation.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use libsqlite3_sys::{sqlite3_config, SQLITE_CONFIG_MEMSTATUS, SQLITE_CONFIG_MULTITHREAD, SQLITE_CONFIG_STMTJRNL_SPILL, SQLITE_OK};
        // SAFETY: each option takes the arguments given (one int, none, one int); called once, and SQLite refuses
        // them (SQLITE_MISUSE, nothing changed) if it is already initialised.
        let codes = unsafe {
            [
                sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, STATEMENT_JOURNAL_IN_MEMORY),
                sqlite3_config(SQLITE_CONFIG_MULTITHREAD),
                sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0),
            ]
        };
        if codes.iter().any(|&rc| rc != SQLITE_OK) {
            tracing::debug!(?codes, "SQLite was in use already; its defaults stay");
        }
    });
}

/// The database, shared by all requests.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    pub backend: Backend,
}

impl Db {
    /// Opens the database (a SQLite file is created if needed) and applies pending migrations.
    pub fn open(url: &str, pool_size: u32, busy_timeout: Duration) -> Result<Self, StorageError> {
        let backend = Backend::of(url);
        let url = match Backend::sqlite_path(url) {
            Some(path) => {
                if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| StorageError::Connect(format!("{}: {e}", dir.display())))?;
                }
                configure_sqlite();
                // The database is put in WAL mode (kept in the file) here, by one connection, before the pool
                // opens its connections side by side: racing to change the mode, all but one were refused
                // ("database is locked"), which the pool logged as an error at every first start.
                let mut first = SqliteConnection::establish(path).map_err(|e| StorageError::Connect(e.to_string()))?;
                first.batch_execute(&format!("PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL;", busy_timeout.as_millis()))?;
                path.to_string()
            }
            None => url.to_string(),
        };
        let pool = Pool::builder()
            .max_size(pool_size)
            // A call waits this long for a connection before it is answered with a SOAP Fault.
            .connection_timeout(Duration::from_secs(5))
            // A server's connection can break between uses; a SQLite file's cannot, and the check was a statement
            // more for every group the one writer thread writes.
            .test_on_check_out(backend == Backend::Postgres)
            .build(Manager { url, backend, busy_timeout, read_only: false })
            .map_err(|e| StorageError::Connect(e.to_string()))?;
        let db = Db { pool, backend };
        let mut conn = db.conn()?;
        let migrations = match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        if backend == Backend::Postgres {
            // Several processes may start at once; one migrates while the others wait.
            diesel::sql_query("SELECT pg_advisory_lock(7714190590)").execute(&mut *conn)?;
        }
        let migrated = conn.run_pending_migrations(migrations).map(drop).map_err(|e| StorageError::Migration(e.to_string()));
        if backend == Backend::Postgres {
            diesel::sql_query("SELECT pg_advisory_unlock(7714190590)").execute(&mut *conn)?;
        }
        migrated?;
        Ok(db)
    }

    /// Opens an existing, migrated database only to read it: nothing is created, migrated or written.
    pub fn open_read_only(url: &str, busy_timeout: Duration) -> Result<Self, StorageError> {
        let backend = Backend::of(url);
        let url = Backend::sqlite_path(url).unwrap_or(url).to_string();
        let pool = Pool::builder()
            .max_size(1)
            // A command, not a service: a database that is not there is said at once.
            .connection_timeout(Duration::from_secs(2))
            .build(Manager { url, backend, busy_timeout, read_only: true })
            .map_err(|e| StorageError::Connect(e.to_string()))?;
        Ok(Db { pool, backend })
    }

    /// The most connections the pool opens.
    pub fn pool_size(&self) -> u32 {
        self.pool.max_size()
    }

    pub fn conn(&self) -> Result<Conn, StorageError> {
        Ok(self.pool.get()?)
    }

    /// Runs `work` in one transaction that may write. SQLite: `BEGIN IMMEDIATE`, so writers queue up before
    /// they read what they decide on. PostgreSQL: the unique constraints decide between two processes doing
    /// the same thing at once; the loser's transaction is rolled back and run again, and then sees the winner's
    /// rows.
    pub fn write<T>(&self, work: impl FnMut(&mut AnyConnection) -> Result<T, StorageError>) -> Result<T, StorageError> {
        self.write_tries(5, work)
    }

    /// `write`, run at most `max_tries` times: for a caller that does something else when it loses a race.
    pub fn write_tries<T>(
        &self,
        max_tries: u32,
        mut work: impl FnMut(&mut AnyConnection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn()?;
        let conn: &mut AnyConnection = &mut conn;
        let mut tries = 0;
        loop {
            tries += 1;
            match conn {
                AnyConnection::Sqlite(inner) => AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?,
                AnyConnection::Postgresql(_) => AnyConnection::begin_transaction(conn)?,
            }
            let outcome = work(conn).and_then(|value| AnyConnection::commit_transaction(conn).map(|_| value).map_err(StorageError::from));
            match outcome {
                Ok(value) => return Ok(value),
                Err(error) => {
                    // After a failed commit diesel has already rolled back; otherwise do it here.
                    if AnyConnection::transaction_manager_status_mut(conn).transaction_depth().ok().flatten().is_some() {
                        AnyConnection::rollback_transaction(conn)?;
                    }
                    if !(error.lost_race() && tries < max_tries) {
                        return Err(error);
                    }
                    tracing::debug!(tries, "another process wrote the same rows first; running the transaction again");
                }
            }
        }
    }
}
