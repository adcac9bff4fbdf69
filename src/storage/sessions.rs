//! Logins to the web page, shared by every instance on the database. Only a hash of each token is stored.

use chrono::Utc;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::schema::{admin_sessions, login_attempts};
use super::{AnyConnection, Db, StorageError};

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Db {
    /// Starts a session for a user who has logged in; returns the token for the cookie.
    pub fn create_session(&self, user: &str, lasts: chrono::Duration) -> Result<String, StorageError> {
        // 244 random bits from the operating system's generator.
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Utc::now().naive_utc();
        self.write(|conn| {
            // Expired sessions go as new ones come, so the table does not grow.
            diesel::delete(admin_sessions::table.filter(admin_sessions::expires_at.lt(now))).execute(conn)?;
            diesel::insert_into(admin_sessions::table)
                .values((
                    admin_sessions::token_hash.eq(hash(&token)),
                    admin_sessions::user_name.eq(user),
                    admin_sessions::created_at.eq(now),
                    admin_sessions::expires_at.eq(now + lasts),
                ))
                .execute(conn)?;
            Ok(())
        })?;
        Ok(token)
    }

    /// The user a token belongs to, while its session lasts.
    pub fn session_user(&self, token: &str) -> Result<Option<String>, StorageError> {
        Ok(admin_sessions::table
            .filter(admin_sessions::token_hash.eq(hash(token)))
            .filter(admin_sessions::expires_at.gt(Utc::now().naive_utc()))
            .select(admin_sessions::user_name)
            .first(&mut self.conn()?)
            .optional()?)
    }

    /// Counts a login try for `user` and returns how many there have been since the counting began, at most
    /// `window` ago (an older run starts again at one). One statement, so that tries sent at once, to this
    /// instance or another, are each counted: the limit is decided here, before any password is checked.
    pub fn count_login_attempt(&self, user: &str, window: chrono::Duration) -> Result<i32, StorageError> {
        let now = Utc::now().naive_utc();
        let cutoff = now - window;
        let sql = |p: [&str; 3]| {
            format!(
                "INSERT INTO login_attempts (user_name, window_start, attempts) VALUES ({0}, {1}, 1) \
                 ON CONFLICT (user_name) DO UPDATE SET \
                 attempts = CASE WHEN login_attempts.window_start < {2} THEN 1 ELSE login_attempts.attempts + 1 END, \
                 window_start = CASE WHEN login_attempts.window_start < {2} THEN {1} ELSE login_attempts.window_start END \
                 RETURNING attempts",
                p[0], p[1], p[2]
            )
        };
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            attempts: i32,
        }
        use diesel::sql_types::{Text, Timestamp};
        let mut conn = self.conn()?;
        let count: Count = match &mut *conn {
            AnyConnection::Sqlite(c) => diesel::sql_query(sql(["?1", "?2", "?3"]))
                .bind::<Text, _>(user)
                .bind::<Timestamp, _>(now)
                .bind::<Timestamp, _>(cutoff)
                .get_result(c)?,
            AnyConnection::Postgresql(c) => diesel::sql_query(sql(["$1", "$2", "$3"]))
                .bind::<Text, _>(user)
                .bind::<Timestamp, _>(now)
                .bind::<Timestamp, _>(cutoff)
                .get_result(c)?,
        };
        Ok(count.attempts)
    }

    /// A login succeeded: its name's tries count from nothing again.
    pub fn clear_login_attempts(&self, user: &str) -> Result<(), StorageError> {
        self.write(|conn| Ok(diesel::delete(login_attempts::table.find(user)).execute(conn).map(drop)?))
    }

    pub fn end_session(&self, token: &str) -> Result<(), StorageError> {
        self.write(|conn| {
            Ok(diesel::delete(admin_sessions::table.filter(admin_sessions::token_hash.eq(hash(token)))).execute(conn).map(drop)?)
        })
    }
}
