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

/// The leading fields of an asset row, which every schema's layout shares (fields are only
/// ever appended, and postcard ignores trailing bytes): the recounts of the schema-2 upgrade
/// read rows written by schema 1 with it, before schema 3 rewrites them.
#[derive(serde::Deserialize)]
pub(super) struct AssetHead {
    _id: u64,
    _release_id: u64,
    /// `owner/repo`.
    pub repo: String,
    _name: String,
    _label: String,
    _content_type: String,
    /// Bytes.
    pub size: u64,
}

/// Decodes the leading fields of an asset row of any schema.
pub(super) fn decode_head(bytes: &[u8]) -> Result<AssetHead, StorageError> {
    codec::decode(bytes)
}

/// An asset row as schema 2 wrote it (no `blake3`), read once by the schema-3 upgrade.
#[derive(serde::Deserialize)]
struct AssetV2 {
    id: u64,
    release_id: u64,
    repo: String,
    name: String,
    label: String,
    content_type: String,
    size: u64,
    sha256: String,
    uploader: String,
    created_at: i64,
    download_count: u64,
}

/// Schema 3: rewrites every schema-2 row with an empty `blake3` (the file is not read here;
/// `fsck --repair` fills it).
pub(super) fn add_blake3_field(txn: &WriteTransaction) -> Result<(), StorageError> {
    let mut table = txn.open_table(tables::ASSETS)?;
    let mut rows = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let o: AssetV2 = codec::decode(v.value())?;
        rows.push((
            k.value(),
            Asset {
                id: o.id,
                release_id: o.release_id,
                repo: o.repo,
                name: o.name,
                label: o.label,
                content_type: o.content_type,
                size: o.size,
                sha256: o.sha256,
                uploader: o.uploader,
                created_at: o.created_at,
                download_count: o.download_count,
                blake3: None,
            },
        ));
    }
    for (id, a) in rows {
        table.insert(id, codec::encode(&a)?.as_slice())?;
    }
    Ok(())
}

/// Records the BLAKE3 of an asset stored before schema 3 (fsck, after it re-verified the
/// SHA-256 in the same pass). `false` when the asset is gone.
pub fn set_blake3(txn: &WriteTransaction, id: u64, blake3: &str) -> Result<bool, StorageError> {
    let mut assets = txn.open_table(tables::ASSETS)?;
    let Some(mut a) = assets
        .get(id)?
        .map(|v| codec::decode::<Asset>(v.value()))
        .transpose()?
    else {
        return Ok(false);
    };
    a.blake3 = Some(blake3.to_owned());
    assets.insert(id, codec::encode(&a)?.as_slice())?;
    Ok(true)
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
