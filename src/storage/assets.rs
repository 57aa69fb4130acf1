//! The asset store: ASSETS rows and their per-release name index ASSETS_BY_RELEASE, and the
//! stored download counts. The keys of these tables are written only here, and a count changes
//! only through `add_downloads`.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};

use super::records::Asset;
use super::totals;
use super::{codec, tables, Reads, StorageError};

/// The id sequence of assets in META.
const SEQUENCE: &str = "asset";

/// Allocates the id of a new asset (before its file is written: the file name carries it).
pub fn next_id(txn: &WriteTransaction) -> Result<u64, StorageError> {
    super::next_id(txn, SEQUENCE)
}

/// `(name, id)` of every asset of a release, by name.
fn index_of_release<R: Reads>(
    txn: &R,
    release_id: u64,
) -> Result<Vec<(String, u64)>, StorageError> {
    let idx = txn.table(tables::ASSETS_BY_RELEASE)?;
    let mut out = Vec::new();
    for row in idx.range((release_id, "")..)? {
        let (k, v) = row?;
        let (rid, name) = k.value();
        if rid != release_id {
            break;
        }
        out.push((name.to_owned(), v.value()));
    }
    Ok(out)
}

/// The assets of a release, by name, with their stored download counts.
pub fn of_release<R: Reads>(txn: &R, release_id: u64) -> Result<Vec<Asset>, StorageError> {
    let ids = index_of_release(txn, release_id)?;
    let assets = txn.table(tables::ASSETS)?;
    let mut out = Vec::with_capacity(ids.len());
    for (_, id) in ids {
        if let Some(a) = assets.get(id)? {
            out.push(codec::decode(a.value())?);
        }
    }
    Ok(out)
}

/// Whether the release already has an asset called `name` (names are unique per release).
pub fn name_taken<R: Reads>(txn: &R, release_id: u64, name: &str) -> Result<bool, StorageError> {
    Ok(txn
        .table(tables::ASSETS_BY_RELEASE)?
        .get((release_id, name))?
        .is_some())
}

/// Records an asset (its id from `next_id`, its file already published). The caller has
/// checked that the name is free in its release.
pub fn insert(txn: &WriteTransaction, a: &Asset) -> Result<(), StorageError> {
    txn.open_table(tables::ASSETS_BY_RELEASE)?
        .insert((a.release_id, a.name.as_str()), a.id)?;
    let old = txn
        .open_table(tables::ASSETS)?
        .insert(a.id, codec::encode(a)?.as_slice())?
        .map(|v| codec::decode::<Asset>(v.value()))
        .transpose()?;
    if let Some(old) = old {
        totals::count(txn, totals::Kind::Asset, old.size, false)?;
        super::quota::asset_removed(txn, &old)?;
    }
    totals::count(txn, totals::Kind::Asset, a.size, true)?;
    super::quota::asset_added(txn, a)?;
    Ok(())
}

/// Removes an asset's row and name; returns what was removed (`None` when already gone).
pub fn remove(txn: &WriteTransaction, id: u64) -> Result<Option<Asset>, StorageError> {
    let Some(a) = txn
        .open_table(tables::ASSETS)?
        .remove(id)?
        .map(|v| codec::decode::<Asset>(v.value()))
        .transpose()?
    else {
        return Ok(None);
    };
    txn.open_table(tables::ASSETS_BY_RELEASE)?
        .remove((a.release_id, a.name.as_str()))?;
    totals::count(txn, totals::Kind::Asset, a.size, false)?;
    super::quota::asset_removed(txn, &a)?;
    Ok(Some(a))
}

/// Removes every asset row of a release (the release store does, when it removes the release).
pub(super) fn remove_all_of_release(
    txn: &WriteTransaction,
    release_id: u64,
) -> Result<(), StorageError> {
    let ids = index_of_release(txn, release_id)?;
    let mut removed = Vec::new();
    {
        let mut idx = txn.open_table(tables::ASSETS_BY_RELEASE)?;
        let mut assets = txn.open_table(tables::ASSETS)?;
        for (name, id) in ids {
            idx.remove((release_id, name.as_str()))?;
            if let Some(v) = assets.remove(id)? {
                removed.push(codec::decode::<Asset>(v.value())?);
            }
        }
    }
    for a in &removed {
        totals::count(txn, totals::Kind::Asset, a.size, false)?;
        super::quota::asset_removed(txn, a)?;
    }
    Ok(())
}

/// Adds batched full-download counts (asset id -> downloads) to the stored ones. Assets deleted
/// since they were counted are skipped.
pub fn add_downloads(
    txn: &WriteTransaction,
    counts: &HashMap<u64, u64>,
) -> Result<(), StorageError> {
    let mut assets = txn.open_table(tables::ASSETS)?;
    for (&id, &n) in counts {
        let Some(v) = assets.get(id)?.map(|v| v.value().to_vec()) else {
            continue;
        };
        let mut a: Asset = codec::decode(&v)?;
        a.download_count += n;
        assets.insert(id, codec::encode(&a)?.as_slice())?;
    }
    Ok(())
}
