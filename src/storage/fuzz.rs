//! The fuzz bodies that exercise the storage layer itself (the record codec, a redb table of
//! records against a model), kept here because only `storage` touches tables and the codec.
//! `crate::fuzzing` exposes them to the fuzz package and `cargo test` replays.

use std::collections::BTreeMap;

/// The record codec decodes arbitrary bytes into every record type without panicking, and
/// what decodes re-encodes to a decodable value.
pub(crate) fn codec(data: &[u8]) {
    use crate::storage::codec::{decode, encode};
    use crate::storage::records::*;
    macro_rules! check {
        ($($t:ty),*) => {$(
            if let Ok(v) = decode::<$t>(data) {
                let again = encode(&v).expect("encode");
                decode::<$t>(&again).expect("round trip");
            }
        )*};
    }
    check!(
        User,
        Org,
        Token,
        Repo,
        Release,
        Asset,
        ProtectionRule,
        BlobMeta,
        ManifestMeta,
        UploadSession
    );
}

/// Model-based: random operations on a redb table of codec records (insert, remove, commit,
/// abort), compared with a `BTreeMap` after every committed transaction.
pub(crate) fn storage_model(data: &[u8]) {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("model");
    let Ok(db) =
        redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())
    else {
        return;
    };
    let mut model: BTreeMap<u64, crate::storage::records::BlobMeta> = BTreeMap::new();
    for txn_ops in data.chunks(16) {
        let Ok(txn) = db.begin_write() else { return };
        let mut pending = model.clone();
        {
            let Ok(mut t) = txn.open_table(T) else { return };
            for op in txn_ops.chunks(2) {
                let key = u64::from(op.first().copied().unwrap_or(0) & 0x1f);
                let val = u64::from(op.get(1).copied().unwrap_or(0));
                if val % 3 == 0 {
                    let _ = t.remove(key);
                    pending.remove(&key);
                } else {
                    let rec = crate::storage::records::BlobMeta {
                        size: val,
                        created_at: val as i64,
                        touched_at: -(val as i64),
                    };
                    let bytes = crate::storage::codec::encode(&rec).expect("encode");
                    let _ = t.insert(key, bytes.as_slice());
                    pending.insert(key, rec);
                }
            }
        }
        // The last byte of the chunk decides: commit or abort.
        if txn_ops.last().is_some_and(|b| b & 1 == 1) {
            if txn.commit().is_ok() {
                model = pending;
            }
        } else {
            let _ = txn.abort();
        }
        let Ok(read) = db.begin_read() else { return };
        let Ok(t) = read.open_table(T) else {
            assert!(model.is_empty());
            continue;
        };
        let mut seen = BTreeMap::new();
        for row in t.iter().expect("iter") {
            let (k, v) = row.expect("row");
            let rec: crate::storage::records::BlobMeta =
                crate::storage::codec::decode(v.value()).expect("decode");
            seen.insert(k.value(), rec);
        }
        assert_eq!(seen.len(), model.len());
        for (k, v) in &model {
            let s = &seen[k];
            assert_eq!(
                (s.size, s.created_at, s.touched_at),
                (v.size, v.created_at, v.touched_at)
            );
        }
    }
}
