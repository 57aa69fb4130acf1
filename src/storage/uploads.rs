//! The upload-session store: UPLOADS rows, keyed by upload id. The session file under
//! `uploads/` is `storage::blob`'s; the rule "file first, row second; row removed first, file
//! second" is the caller's.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::records::UploadSession;
use super::{codec, tables, Reads, StorageError};
use crate::ids::UploadId;

/// The session `id`.
pub fn get<R: Reads>(txn: &R, id: &UploadId) -> Result<Option<UploadSession>, StorageError> {
    txn.table(tables::UPLOADS)?
        .get(id.as_str())?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// How many sessions `username` has open: the number the per-user cap is checked against
/// (inside the write transaction that inserts, so parallel starts cannot pass it together).
pub fn open_by<R: Reads>(txn: &R, username: &str) -> Result<usize, StorageError> {
    let mut open = 0usize;
    for row in txn.table(tables::UPLOADS)?.iter()? {
        let (_, v) = row?;
        if codec::decode::<UploadSession>(v.value())?.username == username {
            open += 1;
        }
    }
    Ok(open)
}

/// Records the session `id`.
pub fn insert(
    txn: &WriteTransaction,
    id: &UploadId,
    session: &UploadSession,
) -> Result<(), StorageError> {
    txn.open_table(tables::UPLOADS)?
        .insert(id.as_str(), codec::encode(session)?.as_slice())?;
    Ok(())
}

/// Sets the session's `updated_at` to `now` (a chunk arrived); nothing when it is gone.
pub fn touch(txn: &WriteTransaction, id: &UploadId, now: i64) -> Result<(), StorageError> {
    if let Some(mut s) = get(txn, id)? {
        s.updated_at = now;
        insert(txn, id, &s)?;
    }
    Ok(())
}

/// Removes the session row `id` (absent is fine).
pub fn remove(txn: &WriteTransaction, id: &UploadId) -> Result<(), StorageError> {
    txn.open_table(tables::UPLOADS)?.remove(id.as_str())?;
    Ok(())
}

/// Every session row as `(id, session)`, ids as stored.
pub fn all<R: Reads>(txn: &R) -> Result<Vec<(String, UploadSession)>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::UPLOADS)?.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_owned(), codec::decode(v.value())?));
    }
    Ok(out)
}

/// How many upload sessions are open.
pub fn count<R: Reads>(txn: &R) -> Result<u64, StorageError> {
    Ok(txn.table(tables::UPLOADS)?.len()?)
}
