//! Storage through diesel: the connection pool, migrations, and the writes of the pipeline.

pub mod alerts;
pub mod booking;
pub mod schema;
pub mod sortiment;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database connection: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("database connection: {0}")]
    Connect(String),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("stored data could not be read back: {0}")]
    Corrupt(String),
}

pub type Conn = PooledConnection<ConnectionManager<SqliteConnection>>;

#[derive(Debug)]
struct SqlitePragmas {
    busy_timeout_ms: u64,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // WAL lets readers work beside the one writer; synchronous=FULL makes a commit durable before the
        // receipt that depends on it is sent.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            self.busy_timeout_ms
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The database, shared by all requests.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<SqliteConnection>>,
}

impl Db {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(url: &str, pool_size: u32, busy_timeout: Duration) -> Result<Self, StorageError> {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if path.starts_with("postgres") {
            return Err(StorageError::Connect("PostgreSQL is not supported by this build yet".into()));
        }
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Connect(format!("{}: {e}", dir.display())))?;
        }
        let pool = Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(SqlitePragmas { busy_timeout_ms: busy_timeout.as_millis() as u64 }))
            .build(ConnectionManager::<SqliteConnection>::new(path))
            .map_err(|e| StorageError::Connect(e.to_string()))?;
        let db = Db { pool };
        db.conn()?.run_pending_migrations(MIGRATIONS).map_err(|e| StorageError::Migration(e.to_string()))?;
        Ok(db)
    }

    pub fn conn(&self) -> Result<Conn, StorageError> {
        Ok(self.pool.get()?)
    }
}
