//! Logins to the web page, shared by every instance on the database. Only a hash of each token is stored.

use chrono::Utc;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::schema::admin_sessions;
use super::{Db, StorageError};

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

    pub fn end_session(&self, token: &str) -> Result<(), StorageError> {
        self.write(|conn| {
            Ok(diesel::delete(admin_sessions::table.filter(admin_sessions::token_hash.eq(hash(token)))).execute(conn).map(drop)?)
        })
    }
}
