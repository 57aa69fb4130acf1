//! ATTESTATIONS: the signed release attestation (DSSE envelope JSON) of each release that has
//! one. Written only here, in the transaction that publishes the release.

use redb::{ReadableTable, WriteTransaction};

use super::{tables, Reads, StorageError};

/// The envelope bytes of release `id`, if it was attested.
pub fn get<R: Reads>(txn: &R, id: u64) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(txn
        .table(tables::ATTESTATIONS)?
        .get(id)?
        .map(|v| v.value().to_vec()))
}

/// Stores (replaces) the envelope of release `id`.
pub fn put(txn: &WriteTransaction, id: u64, envelope: &[u8]) -> Result<(), StorageError> {
    txn.open_table(tables::ATTESTATIONS)?.insert(id, envelope)?;
    Ok(())
}

/// Removes the envelope of release `id` (with the release).
pub fn remove(txn: &WriteTransaction, id: u64) -> Result<(), StorageError> {
    txn.open_table(tables::ATTESTATIONS)?.remove(id)?;
    Ok(())
}
