//! Read-only sweeps of whole tables for `fsck`, and the one repair write it makes. The rules
//! (what counts as an orphan, what a repair may do) stay in `domain::fsck`; this module only
//! knows where the rows are.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, WriteTransaction};

use super::records::Asset;
use super::{codec, releases, tables, Reads, StorageError};

/// Every asset row, with the tag name of its release (`None` when the release row is gone).
pub fn assets_with_release_tags<R: Reads>(
    txn: &R,
) -> Result<Vec<(Asset, Option<String>)>, StorageError> {
    let mut tags: HashMap<u64, Option<String>> = HashMap::new();
    let mut out = Vec::new();
    for row in txn.table(tables::ASSETS)?.iter()? {
        let a: Asset = codec::decode(row?.1.value())?;
        let tag = match tags.get(&a.release_id) {
            Some(t) => t.clone(),
            None => {
                let t = releases::get(txn, a.release_id)?.map(|r| r.tag_name);
                tags.insert(a.release_id, t.clone());
                t
            }
        };
        out.push((a, tag));
    }
    Ok(out)
}

/// The ids of every upload session (their files live in `uploads/`).
pub fn upload_ids<R: Reads>(txn: &R) -> Result<HashSet<String>, StorageError> {
    let mut keys = HashSet::new();
    for row in txn.table(tables::UPLOADS)?.iter()? {
        keys.insert(row?.0.value().to_owned());
    }
    Ok(keys)
}

/// The digests of every blob row (their files live in `blobs/`).
pub fn blob_digests<R: Reads>(txn: &R) -> Result<HashSet<String>, StorageError> {
    let mut keys = HashSet::new();
    for row in txn.table(tables::BLOBS)?.iter()? {
        keys.insert(row?.0.value().to_owned());
    }
    Ok(keys)
}

/// A pending-tag record (see PENDING_RELEASE_TAGS) with whether a release names its tag.
#[derive(Debug, Clone)]
pub struct PendingTag {
    /// `owner/repo`, as recorded.
    pub repo: String,
    /// The tag name, as recorded.
    pub tag: String,
    /// The commit pfai was about to tag.
    pub commit: String,
    /// Whether a release of that tag is recorded.
    pub released: bool,
}

/// Every pending-tag record.
pub fn pending_tags<R: Reads>(txn: &R) -> Result<Vec<PendingTag>, StorageError> {
    let by_tag = txn.table(tables::RELEASES_BY_TAG)?;
    let mut v = Vec::new();
    for row in txn.table(tables::PENDING_RELEASE_TAGS)?.iter()? {
        let (k, val) = row?;
        let (repo, tag) = k.value();
        v.push(PendingTag {
            repo: repo.to_owned(),
            tag: tag.to_owned(),
            commit: val.value().to_owned(),
            released: by_tag.get((repo, tag))?.is_some(),
        });
    }
    Ok(v)
}

/// Drops a pending-tag record as `pending_tags` gave it. Its names may not even parse any more
/// (so `releases::clear_pending_tag`, which takes a `RepoPath`, cannot reach it): they are
/// taken as recorded, and no key is encoded here.
pub fn drop_pending_tag(txn: &WriteTransaction, repo: &str, tag: &str) -> Result<(), StorageError> {
    txn.open_table(tables::PENDING_RELEASE_TAGS)?
        .remove((repo, tag))?;
    Ok(())
}
