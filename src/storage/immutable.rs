//! Immutable releases: REPO_SETTINGS, OWNER_SETTINGS, IMMUTABLE_RELEASES and TAG_TOMBSTONES.
//! Keys are written only here. Which settings apply and what they forbid is `domain::immutable`.

use redb::{ReadableTable, WriteTransaction};

use super::records::{ImmutableMark, OwnerSettings, RepoSettings, TagTombstone};
use super::{codec, tables, Reads, StorageError};
use crate::ids::RepoPath;

/// The settings `repo` sets itself (default: none set).
pub fn repo_settings<R: Reads>(txn: &R, repo: &RepoPath) -> Result<RepoSettings, StorageError> {
    Ok(txn
        .table(tables::REPO_SETTINGS)?
        .get(repo.key().as_str())?
        .map(|v| codec::decode(v.value()))
        .transpose()?
        .unwrap_or_default())
}

/// Replaces the settings of `repo` (an all-default value removes the row).
pub fn put_repo_settings(
    txn: &WriteTransaction,
    repo: &RepoPath,
    s: &RepoSettings,
) -> Result<(), StorageError> {
    let mut t = txn.open_table(tables::REPO_SETTINGS)?;
    if *s == RepoSettings::default() {
        t.remove(repo.key().as_str())?;
    } else {
        t.insert(repo.key().as_str(), codec::encode(s)?.as_slice())?;
    }
    Ok(())
}

/// Removes the settings of a repository being deleted.
pub fn remove_repo_settings(txn: &WriteTransaction, repo: &RepoPath) -> Result<(), StorageError> {
    txn.open_table(tables::REPO_SETTINGS)?
        .remove(repo.key().as_str())?;
    Ok(())
}

/// The defaults an owner (organization) sets for its repositories.
pub fn owner_settings<R: Reads>(txn: &R, owner: &str) -> Result<OwnerSettings, StorageError> {
    Ok(txn
        .table(tables::OWNER_SETTINGS)?
        .get(owner)?
        .map(|v| codec::decode(v.value()))
        .transpose()?
        .unwrap_or_default())
}

/// Replaces an owner's defaults.
pub fn put_owner_settings(
    txn: &WriteTransaction,
    owner: &str,
    s: &OwnerSettings,
) -> Result<(), StorageError> {
    let mut t = txn.open_table(tables::OWNER_SETTINGS)?;
    if *s == OwnerSettings::default() {
        t.remove(owner)?;
    } else {
        t.insert(owner, codec::encode(s)?.as_slice())?;
    }
    Ok(())
}

/// The immutability mark of a release, if it has one.
pub fn mark<R: Reads>(txn: &R, release_id: u64) -> Result<Option<ImmutableMark>, StorageError> {
    txn.table(tables::IMMUTABLE_RELEASES)?
        .get(release_id)?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// Marks a published release immutable and tombstones its tag name in `repo`, in the caller's
/// (the publish's) transaction.
pub fn mark_immutable(
    txn: &WriteTransaction,
    repo: &RepoPath,
    release_id: u64,
    tag: &str,
    m: &ImmutableMark,
) -> Result<(), StorageError> {
    txn.open_table(tables::IMMUTABLE_RELEASES)?
        .insert(release_id, codec::encode(m)?.as_slice())?;
    let stone = TagTombstone {
        release_id,
        since: m.since,
        publisher: m.publisher.clone(),
    };
    txn.open_table(tables::TAG_TOMBSTONES)?.insert(
        (repo.key().as_str(), tag),
        codec::encode(&stone)?.as_slice(),
    )?;
    Ok(())
}

/// Removes the mark of a release being removed (with its repository). The tombstone stays.
pub fn remove_mark(txn: &WriteTransaction, release_id: u64) -> Result<(), StorageError> {
    txn.open_table(tables::IMMUTABLE_RELEASES)?
        .remove(release_id)?;
    Ok(())
}

/// The tombstone of `tag` in `repo` (any incarnation of the repository), if there is one.
pub fn tombstone<R: Reads>(
    txn: &R,
    repo: &RepoPath,
    tag: &str,
) -> Result<Option<TagTombstone>, StorageError> {
    txn.table(tables::TAG_TOMBSTONES)?
        .get((repo.key().as_str(), tag))?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// Every tombstoned tag name of `repo`, sorted (for the pre-receive hand-over).
pub fn tombstoned_tags<R: Reads>(txn: &R, repo: &RepoPath) -> Result<Vec<String>, StorageError> {
    let key = repo.key();
    let mut out = Vec::new();
    let t = txn.table(tables::TAG_TOMBSTONES)?;
    for row in t.range((key.as_str(), "")..)? {
        let (k, _) = row?;
        let (r, tag) = k.value();
        if r != key {
            break;
        }
        out.push(tag.to_owned());
    }
    Ok(out)
}
