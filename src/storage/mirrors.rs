//! MIRRORS: upstream registry mirror definitions and their last run. The key and the record
//! are written only here.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{codec, tables, Reads, StorageError};

/// One mirror: where to copy from, into which image, which tags, how often, as whom.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MirrorRow {
    /// Repository key (`owner/repo`) the target image belongs to.
    pub repo: String,
    /// Upstream registry base URL (`https://registry.example`), no trailing slash.
    pub registry: String,
    /// Upstream image name (`library/alpine`).
    pub upstream_name: String,
    /// Target image (`owner/repo/image`).
    pub image: String,
    /// Glob the upstream tags must match; `None`: every tag.
    pub tags: Option<String>,
    /// Seconds between periodic runs; `None`: only on request.
    pub every_secs: Option<u64>,
    /// Upstream username (Basic, or for the Bearer token request).
    pub username: Option<String>,
    /// Upstream password or token. Stored, never returned by the API.
    pub password: Option<String>,
    /// Who created the mirror; periodic runs act as this user.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last run's start (0: never ran).
    pub last_run_at: i64,
    /// The last run's report as JSON (`api::MirrorReport`), when there was one.
    pub last_report: Option<String>,
}

/// Stores a new mirror and returns its id (one more than the highest in use).
pub fn insert(txn: &WriteTransaction, row: &MirrorRow) -> Result<u64, StorageError> {
    let mut t = txn.open_table(tables::MIRRORS)?;
    let id = match t.last()? {
        Some((k, _)) => k.value() + 1,
        None => 1,
    };
    t.insert(id, codec::encode(row)?.as_slice())?;
    Ok(id)
}

/// The mirror `id`.
pub fn get<R: Reads>(txn: &R, id: u64) -> Result<Option<MirrorRow>, StorageError> {
    txn.table(tables::MIRRORS)?
        .get(id)?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// Replaces the mirror `id` (after a run); `false` when it is gone.
pub fn update(txn: &WriteTransaction, id: u64, row: &MirrorRow) -> Result<bool, StorageError> {
    let mut t = txn.open_table(tables::MIRRORS)?;
    if t.get(id)?.is_none() {
        return Ok(false);
    }
    t.insert(id, codec::encode(row)?.as_slice())?;
    Ok(true)
}

/// Removes the mirror `id`; `false` when there was none.
pub fn remove(txn: &WriteTransaction, id: u64) -> Result<bool, StorageError> {
    Ok(txn.open_table(tables::MIRRORS)?.remove(id)?.is_some())
}

/// Every mirror, by id.
pub fn all<R: Reads>(txn: &R) -> Result<Vec<(u64, MirrorRow)>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::MIRRORS)?.iter()? {
        let (k, v) = row?;
        out.push((k.value(), codec::decode(v.value())?));
    }
    Ok(out)
}

/// The mirrors of repository `repo` (key `owner/repo`), by id.
pub fn of_repo<R: Reads>(txn: &R, repo: &str) -> Result<Vec<(u64, MirrorRow)>, StorageError> {
    Ok(all(txn)?
        .into_iter()
        .filter(|(_, m)| m.repo == repo)
        .collect())
}

/// Removes every mirror of repository `repo` (with the repository), so a repository created
/// again under the name does not inherit them.
pub fn remove_all_of_repo(txn: &WriteTransaction, repo: &str) -> Result<(), StorageError> {
    let ids: Vec<u64> = of_repo(txn, repo)?.into_iter().map(|(id, _)| id).collect();
    let mut t = txn.open_table(tables::MIRRORS)?;
    for id in ids {
        t.remove(id)?;
    }
    Ok(())
}
