//! Running totals of the byte stores (blob and asset objects and bytes), kept in `meta` by the
//! stores that add and remove their rows, in the same transaction, so `/metrics` reads four
//! numbers instead of scanning every row. Keys: `"total:blob_count"`, `"total:blob_bytes"`,
//! `"total:asset_count"`, `"total:asset_bytes"` (u64 LE). Writers: `blob_refs::{link, remove}`,
//! `assets::{insert, remove, remove_all_of_release}`, and `rebuild` (the schema-2 upgrade and
//! `fsck --repair`).

use redb::{ReadableTable, WriteTransaction};

use super::records::BlobMeta;
use super::{codec, tables, Reads, StorageError};

/// How many objects the byte stores hold, and their bytes, as the tables record them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Registry blobs.
    pub blob_count: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Release assets.
    pub asset_count: u64,
    /// Their bytes.
    pub asset_bytes: u64,
}

const KEYS: [&str; 4] = [
    "total:blob_count",
    "total:blob_bytes",
    "total:asset_count",
    "total:asset_bytes",
];

impl StoreTotals {
    fn as_array(&self) -> [u64; 4] {
        [
            self.blob_count,
            self.blob_bytes,
            self.asset_count,
            self.asset_bytes,
        ]
    }
}

/// The recorded totals.
pub fn read<R: Reads>(txn: &R) -> Result<StoreTotals, StorageError> {
    let meta = txn.table(tables::META)?;
    let mut v = [0u64; 4];
    for (slot, key) in v.iter_mut().zip(KEYS) {
        if let Some(bytes) = meta.get(key)? {
            let arr: [u8; 8] = bytes
                .value()
                .try_into()
                .map_err(|_| StorageError::Malformed(format!("bad counter {key}")))?;
            *slot = u64::from_le_bytes(arr);
        }
    }
    Ok(StoreTotals {
        blob_count: v[0],
        blob_bytes: v[1],
        asset_count: v[2],
        asset_bytes: v[3],
    })
}

fn write(txn: &WriteTransaction, t: &StoreTotals) -> Result<(), StorageError> {
    let mut meta = txn.open_table(tables::META)?;
    for (key, n) in KEYS.iter().zip(t.as_array()) {
        meta.insert(*key, n.to_le_bytes().as_slice())?;
    }
    Ok(())
}

/// Which store an object belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A registry blob.
    Blob,
    /// A release asset.
    Asset,
}

/// Counts one object of `size` bytes in (`added`) or out of a store.
pub(crate) fn count(
    txn: &WriteTransaction,
    kind: Kind,
    size: u64,
    added: bool,
) -> Result<(), StorageError> {
    let mut t = read(txn)?;
    let (n, bytes) = match kind {
        Kind::Blob => (&mut t.blob_count, &mut t.blob_bytes),
        Kind::Asset => (&mut t.asset_count, &mut t.asset_bytes),
    };
    if added {
        *n += 1;
        *bytes += size;
    } else {
        *n = n.saturating_sub(1);
        *bytes = bytes.saturating_sub(size);
    }
    write(txn, &t)
}

/// The totals recounted from the rows.
pub fn recount<R: Reads>(txn: &R) -> Result<StoreTotals, StorageError> {
    let mut t = StoreTotals::default();
    for row in txn.table(tables::BLOBS)?.iter()? {
        let (_, v) = row?;
        let m: BlobMeta = codec::decode(v.value())?;
        t.blob_count += 1;
        t.blob_bytes += m.size;
    }
    for row in txn.table(tables::ASSETS)?.iter()? {
        let (_, v) = row?;
        let a = super::assets::decode_head(v.value())?;
        t.asset_count += 1;
        t.asset_bytes += a.size;
    }
    Ok(t)
}

/// Sets the totals to a recount of the rows; returns the recount.
pub fn rebuild(txn: &WriteTransaction) -> Result<StoreTotals, StorageError> {
    let t = recount(txn)?;
    write(txn, &t)?;
    Ok(t)
}
