//! The blob store's rows: BLOBS (blobs present in the content-addressed store), the
//! per-repository links REPO_BLOBS and their reverse BLOB_LINKS (which change together), and
//! BLOB_REFS, the count of stored manifests that reference each blob. The reference counts
//! change in one function, `change_refs`, and the links only here. Digests are their text form
//! (`sha256:<hex>`), as the manifest records carry them. The bytes themselves live in
//! `storage::blob`.

use redb::{ReadableTable, WriteTransaction};

use super::records::BlobMeta;
use super::totals;
use super::{codec, tables, Reads, StorageError};
use crate::ids::OciName;

/// The blob row of `digest`, if the blob is in the store.
pub fn get<R: Reads>(txn: &R, digest: &str) -> Result<Option<BlobMeta>, StorageError> {
    txn.table(tables::BLOBS)?
        .get(digest)?
        .map(|v| codec::decode(v.value()))
        .transpose()
}

/// Every digest with a blob row, for checks that compare rows with files.
pub fn digests<R: Reads>(txn: &R) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    for row in txn.table(tables::BLOBS)?.iter()? {
        out.push(row?.0.value().to_owned());
    }
    Ok(out)
}

/// Records that `name` holds `digest` (creating the blob row with `size` if it is new) and
/// refreshes the blob's `touched_at` to `now`, which restarts its GC grace period.
pub fn link(
    txn: &WriteTransaction,
    name: &OciName,
    digest: &str,
    size: u64,
    now: i64,
) -> Result<(), StorageError> {
    let mut blobs = txn.open_table(tables::BLOBS)?;
    let (meta, new) = match blobs.get(digest)? {
        Some(v) => {
            let mut m: BlobMeta = codec::decode(v.value())?;
            m.touched_at = now;
            (m, false)
        }
        None => (
            BlobMeta {
                size,
                created_at: now,
                touched_at: now,
            },
            true,
        ),
    };
    blobs.insert(digest, codec::encode(&meta)?.as_slice())?;
    drop(blobs);
    if new {
        totals::count(txn, totals::Kind::Blob, size, true)?;
    }
    let was_linked = txn
        .open_table(tables::REPO_BLOBS)?
        .insert((name.as_str(), digest), now)?
        .is_some();
    txn.open_table(tables::BLOB_LINKS)?
        .insert((digest, name.as_str()), ())?;
    if !was_linked {
        super::quota::blob_linked(txn, name.as_str(), digest, meta.size)?;
    }
    Ok(())
}

/// Whether `digest` is linked in `name` (readable there).
pub fn is_linked<R: Reads>(txn: &R, name: &OciName, digest: &str) -> Result<bool, StorageError> {
    Ok(txn
        .table(tables::REPO_BLOBS)?
        .get((name.as_str(), digest))?
        .is_some())
}

/// The size of `digest` if it is linked in `name` and its row exists.
pub fn linked_size<R: Reads>(
    txn: &R,
    name: &OciName,
    digest: &str,
) -> Result<Option<u64>, StorageError> {
    if !is_linked(txn, name, digest)? {
        return Ok(None);
    }
    Ok(get(txn, digest)?.map(|m| m.size))
}

/// Whether any blob is linked in `name`.
pub fn any_linked<R: Reads>(txn: &R, name: &OciName) -> Result<bool, StorageError> {
    let links = txn.table(tables::REPO_BLOBS)?;
    let first = links.range((name.as_str(), "")..)?.next();
    Ok(match first {
        Some(row) => row?.0.value().0 == name.as_str(),
        None => false,
    })
}

/// Removes the link of `digest` in `name`; `false` when there was none. The blob row stays
/// (GC decides about it).
pub fn unlink(txn: &WriteTransaction, name: &OciName, digest: &str) -> Result<bool, StorageError> {
    let removed = txn
        .open_table(tables::REPO_BLOBS)?
        .remove((name.as_str(), digest))?
        .is_some();
    if removed {
        txn.open_table(tables::BLOB_LINKS)?
            .remove((digest, name.as_str()))?;
        let size = get(txn, digest)?.map(|m| m.size).unwrap_or(0);
        super::quota::blob_unlinked(txn, name.as_str(), digest, size)?;
    }
    Ok(removed)
}

/// Which way a manifest changes the reference counts of the blobs it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefChange {
    /// A manifest listing the blobs was stored.
    Add,
    /// A manifest listing the blobs was removed.
    Remove,
}

/// Adds or removes one reference to each of `digests` (a blob listed twice counts twice). The
/// only writer of BLOB_REFS: a count that reaches zero is removed, so "no row" means
/// "unreferenced".
pub fn change_refs(
    txn: &WriteTransaction,
    digests: &[String],
    change: RefChange,
) -> Result<(), StorageError> {
    let mut refs = txn.open_table(tables::BLOB_REFS)?;
    for d in digests {
        let current = refs.get(d.as_str())?.map(|v| v.value()).unwrap_or(0);
        match change {
            RefChange::Add => {
                refs.insert(d.as_str(), current + 1)?;
            }
            RefChange::Remove if current <= 1 => {
                refs.remove(d.as_str())?;
            }
            RefChange::Remove => {
                refs.insert(d.as_str(), current - 1)?;
            }
        }
    }
    Ok(())
}

/// The blobs no stored manifest references, with their rows.
pub fn unreferenced<R: Reads>(txn: &R) -> Result<Vec<(String, BlobMeta)>, StorageError> {
    let blobs = txn.table(tables::BLOBS)?;
    let refs = txn.table(tables::BLOB_REFS)?;
    let mut out = Vec::new();
    for row in blobs.iter()? {
        let (k, v) = row?;
        if refs.get(k.value())?.is_some_and(|c| c.value() > 0) {
            continue;
        }
        out.push((k.value().to_owned(), codec::decode(v.value())?));
    }
    Ok(out)
}

/// Removes the row of `digest` and its links in every repository (the file is the caller's to
/// unlink after the commit). The caller has checked that no manifest references it.
pub fn remove(txn: &WriteTransaction, digest: &str) -> Result<(), StorageError> {
    let size = get(txn, digest)?.map(|m| m.size);
    txn.open_table(tables::BLOBS)?.remove(digest)?;
    if let Some(size) = size {
        totals::count(txn, totals::Kind::Blob, size, false)?;
    }
    let size = size.unwrap_or(0);
    let names: Vec<String> = {
        let links = txn.open_table(tables::BLOB_LINKS)?;
        let mut names = Vec::new();
        for row in links.range((digest, "")..)? {
            let (k, _) = row?;
            if k.value().0 != digest {
                break;
            }
            names.push(k.value().1.to_owned());
        }
        names
    };
    let mut links = txn.open_table(tables::BLOB_LINKS)?;
    let mut repo_blobs = txn.open_table(tables::REPO_BLOBS)?;
    for n in &names {
        links.remove((digest, n.as_str()))?;
        repo_blobs.remove((n.as_str(), digest))?;
    }
    drop((links, repo_blobs));
    for n in &names {
        super::quota::blob_unlinked(txn, n, digest, size)?;
    }
    Ok(())
}
