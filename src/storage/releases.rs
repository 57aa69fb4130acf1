//! The release store: RELEASES, its per-tag index RELEASES_BY_TAG, the list-order index
//! RELEASE_ORDER and the PENDING_RELEASE_TAGS records. The keys of these tables (the
//! `"owner/repo"` string, the `(order, u64::MAX - id)` list key) are written only here, and the
//! indexes change only together with the rows they index.

use std::ops::{ControlFlow, RangeInclusive};

use redb::{ReadableTable, WriteTransaction};

use super::records::Release;
use super::{assets, codec, tables, Reads, StorageError};
use crate::ids::RepoPath;

/// The id sequence of releases in META.
const SEQUENCE: &str = "release";

/// Where a release sorts in its repository's list: `(order, u64::MAX - id)`. `order` is 0 for
/// an unpublished draft and `u64::MAX - publishedAt` otherwise, so a forward scan yields
/// unpublished drafts first, then published releases newest first (newest id first on ties).
fn list_key(r: &Release) -> (u64, u64) {
    let order = match r.published_at {
        None => 0,
        Some(t) => u64::MAX - (t.max(0) as u64),
    };
    (order, u64::MAX - r.id)
}

/// The release id a list key names.
fn id_of(key: (&str, u64, u64)) -> u64 {
    u64::MAX - key.2
}

/// The list-order range of one repository: all its releases, or only the published ones
/// (every order but 0).
fn list_range(repo: &str, published_only: bool) -> RangeInclusive<(&str, u64, u64)> {
    let first = if published_only { 1 } else { 0 };
    (repo, first, 0)..=(repo, u64::MAX, u64::MAX)
}

/// Allocates the id of a new release.
pub fn next_id(txn: &WriteTransaction) -> Result<u64, StorageError> {
    super::next_id(txn, SEQUENCE)
}

/// The release with this id.
pub fn get<R: Reads>(txn: &R, id: u64) -> Result<Option<Release>, StorageError> {
    txn.table(tables::RELEASES)?
        .get(id)?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// The release anchored on `tag` in `repo` (at most one exists).
pub fn by_tag<R: Reads>(
    txn: &R,
    repo: &RepoPath,
    tag: &str,
) -> Result<Option<Release>, StorageError> {
    let key = repo.key();
    let id = txn
        .table(tables::RELEASES_BY_TAG)?
        .get((key.as_str(), tag))?
        .map(|v| v.value());
    match id {
        Some(id) => get(txn, id),
        None => Ok(None),
    }
}

/// Ids of a repository's releases in list order.
fn ids_in_order<R: Reads>(
    txn: &R,
    repo: &str,
    published_only: bool,
    mut visit: impl FnMut(u64) -> Result<ControlFlow<()>, StorageError>,
) -> Result<(), StorageError> {
    let order = txn.table(tables::RELEASE_ORDER)?;
    for row in order.range(list_range(repo, published_only))? {
        if visit(id_of(row?.0.value()))?.is_break() {
            break;
        }
    }
    Ok(())
}

/// Hands a repository's releases to `visit` in list order (unpublished drafts first, then by
/// `publishedAt`, newest first) until it breaks.
pub fn scan<R: Reads>(
    txn: &R,
    repo: &RepoPath,
    mut visit: impl FnMut(Release) -> ControlFlow<()>,
) -> Result<(), StorageError> {
    let releases = txn.table(tables::RELEASES)?;
    ids_in_order(txn, &repo.key(), false, |id| match releases.get(id)? {
        Some(v) => Ok(visit(codec::decode(v.value())?)),
        None => Ok(ControlFlow::Continue(())),
    })
}

/// Records a new release (its id from `next_id`): the row, its tag index and its place in the
/// list. The caller has checked that no release is anchored on its tag yet.
pub fn insert(txn: &WriteTransaction, r: &Release) -> Result<(), StorageError> {
    let (order, rid) = list_key(r);
    txn.open_table(tables::RELEASES_BY_TAG)?
        .insert((r.repo.as_str(), r.tag_name.as_str()), r.id)?;
    txn.open_table(tables::RELEASES)?
        .insert(r.id, codec::encode(r)?.as_slice())?;
    txn.open_table(tables::RELEASE_ORDER)?
        .insert((r.repo.as_str(), order, rid), ())?;
    Ok(())
}

/// Applies `change` to a stored release, moves it in the list when its `publishedAt` changed
/// and re-indexes it when its tag changed (the caller has checked that no other release is
/// anchored on the new tag). `None` when the release no longer exists. `change` must not alter
/// the id or the repository (they are keys).
pub fn update(
    txn: &WriteTransaction,
    id: u64,
    change: impl FnOnce(&mut Release),
) -> Result<Option<Release>, StorageError> {
    let Some(old) = get(txn, id)? else {
        return Ok(None);
    };
    let mut r = old.clone();
    change(&mut r);
    {
        let mut order = txn.open_table(tables::RELEASE_ORDER)?;
        let (o, rid) = list_key(&old);
        order.remove((old.repo.as_str(), o, rid))?;
        let (o, rid) = list_key(&r);
        order.insert((r.repo.as_str(), o, rid), ())?;
    }
    if r.tag_name != old.tag_name {
        let mut by_tag = txn.open_table(tables::RELEASES_BY_TAG)?;
        by_tag.remove((old.repo.as_str(), old.tag_name.as_str()))?;
        by_tag.insert((r.repo.as_str(), r.tag_name.as_str()), id)?;
    }
    txn.open_table(tables::RELEASES)?
        .insert(id, codec::encode(&r)?.as_slice())?;
    Ok(Some(r))
}

/// Removes a release with its asset rows and index entries; returns what was removed (`None`
/// when it was already gone). The asset files are the caller's to delete after the commit.
pub fn remove(txn: &WriteTransaction, id: u64) -> Result<Option<Release>, StorageError> {
    let Some(r) = get(txn, id)? else {
        return Ok(None);
    };
    assets::remove_all_of_release(txn, r.id)?;
    super::attestations::remove(txn, r.id)?;
    super::immutable::remove_mark(txn, r.id)?;
    txn.open_table(tables::RELEASES_BY_TAG)?
        .remove((r.repo.as_str(), r.tag_name.as_str()))?;
    txn.open_table(tables::RELEASES)?.remove(r.id)?;
    let (o, rid) = list_key(&r);
    txn.open_table(tables::RELEASE_ORDER)?
        .remove((r.repo.as_str(), o, rid))?;
    Ok(Some(r))
}

/// Removes every release of a repository (with their assets); returns their ids so the caller
/// can delete the files after the commit. Used when the repository itself is deleted.
pub fn remove_all_of_repo(
    txn: &WriteTransaction,
    repo: &RepoPath,
) -> Result<Vec<u64>, StorageError> {
    let mut ids = Vec::new();
    ids_in_order(txn, &repo.key(), false, |id| {
        ids.push(id);
        Ok(ControlFlow::Continue(()))
    })?;
    for id in &ids {
        remove(txn, *id)?;
    }
    clear_latest_pointer(txn, repo)?;
    Ok(ids)
}

/// Records that a release is about to create the lightweight tag `tag` at `commit` (see
/// PENDING_RELEASE_TAGS). `false` when a record for the tag is already there (a concurrent
/// create of the same tag, or a crash); it is left as it is.
pub fn mark_pending_tag(
    txn: &WriteTransaction,
    repo: &RepoPath,
    tag: &str,
    commit: &str,
) -> Result<bool, StorageError> {
    let key = repo.key();
    let mut pending = txn.open_table(tables::PENDING_RELEASE_TAGS)?;
    if pending.get((key.as_str(), tag))?.is_some() {
        return Ok(false);
    }
    pending.insert((key.as_str(), tag), commit)?;
    Ok(true)
}

/// Withdraws the pending record of `tag`: its release was recorded, or the tag rolled back.
pub fn clear_pending_tag(
    txn: &WriteTransaction,
    repo: &RepoPath,
    tag: &str,
) -> Result<(), StorageError> {
    let key = repo.key();
    txn.open_table(tables::PENDING_RELEASE_TAGS)?
        .remove((key.as_str(), tag))?;
    Ok(())
}

/// Every published release of a repository (drafts never published are not read), newest
/// publication first: the candidates the computed Latest is chosen among.
pub fn published<R: Reads>(txn: &R, repo: &RepoPath) -> Result<Vec<Release>, StorageError> {
    let releases = txn.table(tables::RELEASES)?;
    let mut out = Vec::new();
    ids_in_order(txn, &repo.key(), true, |id| {
        if let Some(v) = releases.get(id)? {
            out.push(codec::decode(v.value())?);
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

/// The release id a repository's Latest was explicitly set to (see LATEST_RELEASE; 0 means
/// "none"), `None` when the Latest is computed.
pub fn latest_pointer<R: Reads>(txn: &R, repo: &RepoPath) -> Result<Option<u64>, StorageError> {
    let key = repo.key();
    Ok(txn
        .table(tables::LATEST_RELEASE)?
        .get(key.as_str())?
        .map(|v| v.value()))
}

/// Sets a repository's explicit Latest to release `id` (0: no release is Latest).
pub fn set_latest_pointer(
    txn: &WriteTransaction,
    repo: &RepoPath,
    id: u64,
) -> Result<(), StorageError> {
    let key = repo.key();
    txn.open_table(tables::LATEST_RELEASE)?
        .insert(key.as_str(), id)?;
    Ok(())
}

/// Drops a repository's explicit Latest: from now on it is computed (`makeLatest: "legacy"`).
pub fn clear_latest_pointer(txn: &WriteTransaction, repo: &RepoPath) -> Result<(), StorageError> {
    let key = repo.key();
    txn.open_table(tables::LATEST_RELEASE)?
        .remove(key.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    fn release(id: u64, tag: &str, published_at: Option<i64>) -> Release {
        Release {
            id,
            repo: "o/r".into(),
            tag_name: tag.into(),
            name: tag.into(),
            body: String::new(),
            draft: published_at.is_none(),
            prerelease: false,
            author: "u".into(),
            target_commit: String::new(),
            commit_sha: String::new(),
            created_at: 0,
            published_at,
        }
    }

    fn tags<R: Reads>(txn: &R, repo: &RepoPath) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        scan(txn, repo, |r| {
            out.push(r.tag_name);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// The list order is the API's: unpublished drafts first, then newest published first,
    /// and an update that publishes a draft moves it.
    #[tokio::test]
    async fn list_order_follows_publication() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("pfai.redb")).unwrap();
        let repo = RepoPath::new("o", "r").unwrap();
        let r2 = repo.clone();
        let order = db
            .write(move |txn| {
                insert(txn, &release(1, "old", Some(10)))?;
                insert(txn, &release(2, "new", Some(20)))?;
                insert(txn, &release(3, "draft", None))?;
                let before = tags(txn, &r2)?;
                update(txn, 3, |r| {
                    r.draft = false;
                    r.published_at = Some(15);
                })?;
                Ok::<_, StorageError>((before, tags(txn, &r2)?))
            })
            .await
            .unwrap();
        assert_eq!(order.0, ["draft", "new", "old"]);
        assert_eq!(order.1, ["new", "draft", "old"]);
        let r3 = repo.clone();
        let (newest, removed, left) = db
            .write(move |txn| {
                let newest = published(txn, &r3)?
                    .into_iter()
                    .find(|r| r.tag_name != "draft");
                let removed = remove_all_of_repo(txn, &r3)?;
                Ok::<_, StorageError>((newest, removed, tags(txn, &r3)?))
            })
            .await
            .unwrap();
        assert_eq!(newest.map(|r| r.tag_name).as_deref(), Some("new"));
        assert_eq!(removed.len(), 3);
        assert!(left.is_empty());
    }
}
