//! RETENTION: one registry retention policy per repository. The key is written only here.

use redb::{ReadableTable, WriteTransaction};

use super::records::RetentionPolicy;
use super::{codec, tables, Reads, StorageError};
use crate::ids::RepoPath;

/// The policy of `repo`, if it has one.
pub fn get<R: Reads>(txn: &R, repo: &RepoPath) -> Result<Option<RetentionPolicy>, StorageError> {
    txn.table(tables::RETENTION)?
        .get(repo.key().as_str())?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// Sets (replaces) the policy of `repo`.
pub fn put(
    txn: &WriteTransaction,
    repo: &RepoPath,
    p: &RetentionPolicy,
) -> Result<(), StorageError> {
    txn.open_table(tables::RETENTION)?
        .insert(repo.key().as_str(), codec::encode(p)?.as_slice())?;
    Ok(())
}

/// Removes the policy of `repo` (with the repository, or when cleared); `false` when none.
pub fn remove(txn: &WriteTransaction, repo: &RepoPath) -> Result<bool, StorageError> {
    Ok(txn
        .open_table(tables::RETENTION)?
        .remove(repo.key().as_str())?
        .is_some())
}

/// Every repository key with its policy.
pub fn all<R: Reads>(txn: &R) -> Result<Vec<(String, RetentionPolicy)>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::RETENTION)?.iter()? {
        let (k, v) = row?;
        out.push((k.value().to_owned(), codec::decode(v.value())?));
    }
    Ok(out)
}
