//! The web sign-in store: SESSIONS, keyed by the hex SHA-256 of the session id (the id itself
//! lives only in the browser's cookie).

use redb::{ReadableTable, WriteTransaction};

use super::records::Session;
use super::{codec, tables, Reads, StorageError};

/// The session stored under `hash`, expired or not.
pub fn get<R: Reads>(txn: &R, hash: &str) -> Result<Option<Session>, StorageError> {
    match txn.table(tables::SESSIONS)?.get(hash)? {
        Some(v) => Ok(Some(codec::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Records a session under `hash`.
pub fn insert(txn: &WriteTransaction, hash: &str, session: &Session) -> Result<(), StorageError> {
    txn.open_table(tables::SESSIONS)?
        .insert(hash, codec::encode(session)?.as_slice())?;
    Ok(())
}

/// Drops every session expired at `now` (and any row that no longer decodes), which keeps the
/// table bounded.
pub fn purge_expired(txn: &WriteTransaction, now: i64) -> Result<(), StorageError> {
    txn.open_table(tables::SESSIONS)?.retain(|_, v| {
        codec::decode::<Session>(v)
            .map(|s| s.expires_at > now)
            .unwrap_or(false)
    })?;
    Ok(())
}

/// Removes the session stored under `hash`, if any.
pub fn remove(txn: &WriteTransaction, hash: &str) -> Result<(), StorageError> {
    txn.open_table(tables::SESSIONS)?.remove(hash)?;
    Ok(())
}

/// Ends every web session of `username` (the user was deleted or their password reset).
pub fn remove_all_of(txn: &WriteTransaction, username: &str) -> Result<(), StorageError> {
    txn.open_table(tables::SESSIONS)?.retain(|_, v| {
        codec::decode::<Session>(v)
            .map(|s| s.username != username)
            .unwrap_or(false)
    })?;
    Ok(())
}
