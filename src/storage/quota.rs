//! Storage quotas per owner: the limits (QUOTAS), the usage counters (OWNER_USAGE) and the
//! per-owner blob membership (OWNER_BLOBS). Usage is asset bytes plus the bytes of every distinct
//! blob linked in one of the owner's OCI repositories: a blob linked by two owners counts for
//! both, by two repositories of one owner once. The counters change only through the hooks
//! below, which `storage::assets` and `storage::blob_refs` call in the transactions that change
//! the rows they count, so the counters can never disagree with a committed state; `recount`
//! rebuilds them from the rows (schema upgrade, fsck).

use std::collections::BTreeMap;

use redb::{ReadableTable, WriteTransaction};

use super::records::{Asset, BlobMeta};
use super::{codec, tables, Reads, StorageError};

/// The owner of an `owner/repo` or OCI `owner/repo[/path…]` name: its first component.
pub fn owner_of(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// The quota of `owner` in bytes, `None` when unlimited.
pub fn limit<R: Reads>(txn: &R, owner: &str) -> Result<Option<u64>, StorageError> {
    Ok(txn.table(tables::QUOTAS)?.get(owner)?.map(|v| v.value()))
}

/// Bytes `owner` uses now.
pub fn usage<R: Reads>(txn: &R, owner: &str) -> Result<u64, StorageError> {
    Ok(txn
        .table(tables::OWNER_USAGE)?
        .get(owner)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Every owner with a quota or a non-zero usage: `(owner, limit, usage)`.
pub fn all<R: Reads>(txn: &R) -> Result<Vec<(String, Option<u64>, u64)>, StorageError> {
    let mut out: BTreeMap<String, (Option<u64>, u64)> = BTreeMap::new();
    for row in txn.table(tables::QUOTAS)?.iter()? {
        let (k, v) = row?;
        out.entry(k.value().to_owned()).or_default().0 = Some(v.value());
    }
    for row in txn.table(tables::OWNER_USAGE)?.iter()? {
        let (k, v) = row?;
        out.entry(k.value().to_owned()).or_default().1 = v.value();
    }
    Ok(out.into_iter().map(|(o, (l, u))| (o, l, u)).collect())
}

/// Sets (`Some`) or removes (`None`) the quota of `owner`.
pub fn set_limit(
    txn: &WriteTransaction,
    owner: &str,
    limit: Option<u64>,
) -> Result<(), StorageError> {
    let mut t = txn.open_table(tables::QUOTAS)?;
    match limit {
        Some(l) => {
            t.insert(owner, l)?;
        }
        None => {
            t.remove(owner)?;
        }
    }
    Ok(())
}

/// Whether `digest` already counts for `owner` (linked in one of its repositories).
pub fn owner_has_blob<R: Reads>(txn: &R, owner: &str, digest: &str) -> Result<bool, StorageError> {
    Ok(txn
        .table(tables::OWNER_BLOBS)?
        .get((owner, digest))?
        .is_some())
}

fn add_usage(txn: &WriteTransaction, owner: &str, delta: i128) -> Result<(), StorageError> {
    let mut t = txn.open_table(tables::OWNER_USAGE)?;
    let cur = t.get(owner)?.map(|v| v.value()).unwrap_or(0) as i128;
    let new = (cur + delta).max(0) as u64;
    if new == 0 {
        t.remove(owner)?;
    } else {
        t.insert(owner, new)?;
    }
    Ok(())
}

/// Hook: an asset row was inserted.
pub(super) fn asset_added(txn: &WriteTransaction, a: &Asset) -> Result<(), StorageError> {
    add_usage(txn, owner_of(&a.repo), i128::from(a.size))
}

/// Hook: an asset row was removed.
pub(super) fn asset_removed(txn: &WriteTransaction, a: &Asset) -> Result<(), StorageError> {
    add_usage(txn, owner_of(&a.repo), -i128::from(a.size))
}

/// Hook: a new REPO_BLOBS row `(name, digest)` of a blob of `size` bytes.
pub(super) fn blob_linked(
    txn: &WriteTransaction,
    name: &str,
    digest: &str,
    size: u64,
) -> Result<(), StorageError> {
    let owner = owner_of(name);
    let n = {
        let mut t = txn.open_table(tables::OWNER_BLOBS)?;
        let n = t.get((owner, digest))?.map(|v| v.value()).unwrap_or(0) + 1;
        t.insert((owner, digest), n)?;
        n
    };
    if n == 1 {
        add_usage(txn, owner, i128::from(size))?;
    }
    Ok(())
}

/// Hook: the REPO_BLOBS row `(name, digest)` of a blob of `size` bytes was removed.
pub(super) fn blob_unlinked(
    txn: &WriteTransaction,
    name: &str,
    digest: &str,
    size: u64,
) -> Result<(), StorageError> {
    let owner = owner_of(name);
    let gone = {
        let mut t = txn.open_table(tables::OWNER_BLOBS)?;
        let n = t.get((owner, digest))?.map(|v| v.value());
        match n {
            Some(n) if n > 1 => {
                t.insert((owner, digest), n - 1)?;
                false
            }
            Some(_) => {
                t.remove((owner, digest))?;
                true
            }
            None => false,
        }
    };
    if gone {
        add_usage(txn, owner, -i128::from(size))?;
    }
    Ok(())
}

/// The counters recomputed from the rows they count.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recount {
    /// owner -> bytes.
    pub usage: BTreeMap<String, u64>,
    /// (owner, digest) -> links.
    pub owner_blobs: BTreeMap<(String, String), u64>,
}

/// Recomputes usage and blob membership from ASSETS, REPO_BLOBS and BLOBS.
pub fn recount<R: Reads>(txn: &R) -> Result<Recount, StorageError> {
    let mut r = Recount::default();
    for row in txn.table(tables::ASSETS)?.iter()? {
        let (_, v) = row?;
        let a = super::assets::decode_head(v.value())?;
        *r.usage.entry(owner_of(&a.repo).to_owned()).or_default() += a.size;
    }
    let blobs = txn.table(tables::BLOBS)?;
    for row in txn.table(tables::REPO_BLOBS)?.iter()? {
        let (k, _) = row?;
        let (name, digest) = k.value();
        let owner = owner_of(name).to_owned();
        let n = r
            .owner_blobs
            .entry((owner.clone(), digest.to_owned()))
            .or_default();
        *n += 1;
        if *n == 1 {
            if let Some(v) = blobs.get(digest)? {
                let m: BlobMeta = codec::decode(v.value())?;
                *r.usage.entry(owner).or_default() += m.size;
            }
        }
    }
    r.usage.retain(|_, v| *v > 0);
    Ok(r)
}

/// The stored counters, in the shape of `recount`.
pub fn stored<R: Reads>(txn: &R) -> Result<Recount, StorageError> {
    let mut r = Recount::default();
    for row in txn.table(tables::OWNER_USAGE)?.iter()? {
        let (k, v) = row?;
        r.usage.insert(k.value().to_owned(), v.value());
    }
    for row in txn.table(tables::OWNER_BLOBS)?.iter()? {
        let (k, v) = row?;
        let (o, d) = k.value();
        r.owner_blobs
            .insert((o.to_owned(), d.to_owned()), v.value());
    }
    Ok(r)
}

/// Replaces the counters with a recount (schema upgrade to 2, `fsck --repair`).
pub fn rebuild(txn: &WriteTransaction) -> Result<(), StorageError> {
    let fresh = recount(txn)?;
    let old = stored(txn)?;
    {
        let mut t = txn.open_table(tables::OWNER_USAGE)?;
        for k in old.usage.keys() {
            t.remove(k.as_str())?;
        }
        for (k, v) in &fresh.usage {
            t.insert(k.as_str(), *v)?;
        }
    }
    let mut t = txn.open_table(tables::OWNER_BLOBS)?;
    for (o, d) in old.owner_blobs.keys() {
        t.remove((o.as_str(), d.as_str()))?;
    }
    for ((o, d), v) in &fresh.owner_blobs {
        t.insert((o.as_str(), d.as_str()), *v)?;
    }
    Ok(())
}
