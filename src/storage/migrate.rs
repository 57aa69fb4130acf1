//! Schema upgrades. A data directory records the schema it was written with (`meta`
//! `"schema_version"`). Opening an older one runs every step from its version up to
//! [`SCHEMA_VERSION`](super::SCHEMA_VERSION) inside the one write transaction that also records
//! the new version, so an upgrade either happens whole or not at all (a crash mid-way leaves the
//! old schema, and the next start runs the steps again). Before the first step the file is copied
//! to `pfai.redb.schema-<old>` so an operator can go back to the old binary.
//!
//! Rules for a step: it only adds or rewrites rows (never deletes data a downgrade would need),
//! it is written against the table definitions as they are at its version, and it gets a test
//! that opens `data-fixtures/upgrade/schema-<old>.tar.gz`.

use std::path::{Path, PathBuf};

use redb::WriteTransaction;

use super::StorageError;

/// One upgrade: turns a database of schema `to - 1` into schema `to`.
pub(crate) struct Step {
    /// The schema version this step produces.
    pub to: u32,
    /// What changes, for the start-up log.
    pub what: &'static str,
    /// The rewrite, inside the upgrade's transaction.
    pub run: fn(&WriteTransaction) -> Result<(), StorageError>,
}

/// Every step, oldest first; `steps_run_in_order_up_to_the_current_schema` keeps it contiguous.
pub(crate) const STEPS: &[Step] = &[
    Step {
        to: 2,
        what: "count the blob and asset stores' objects and bytes (for /metrics) and each \
               owner's storage usage (for quotas)",
        run: |txn| {
            super::totals::rebuild(txn)?;
            super::quota::rebuild(txn)
        },
    },
    Step {
        to: 3,
        what: "give asset rows a BLAKE3 field (empty until `pfai fsck --repair` computes it)",
        run: super::assets::add_blake3_field,
    },
];

/// The steps that take `from` to `to`, in order.
pub(crate) fn plan(from: u32, to: u32) -> impl Iterator<Item = &'static Step> {
    STEPS.iter().filter(move |s| s.to > from && s.to <= to)
}

/// Where the pre-upgrade copy of the database goes.
pub(crate) fn pre_upgrade_copy(db_path: &Path, from: u32) -> PathBuf {
    let mut name = db_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".schema-{from}"));
    db_path.with_file_name(name)
}

/// Copies the database file before an upgrade (temp + fsync + rename), keeping an existing copy
/// (a second attempt after a failed upgrade must not overwrite the first, clean copy).
pub(crate) fn keep_pre_upgrade_copy(db_path: &Path, from: u32) -> Result<PathBuf, StorageError> {
    let dest = pre_upgrade_copy(db_path, from);
    if dest.exists() {
        return Ok(dest);
    }
    let tmp = dest.with_extension("tmp");
    std::fs::copy(db_path, &tmp)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &dest)?;
    if let Some(dir) = dest.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_order_up_to_the_current_schema() {
        let mut expected = 2;
        for s in STEPS {
            assert_eq!(s.to, expected, "step `{}` is out of order", s.what);
            expected += 1;
        }
        assert_eq!(
            expected - 1,
            super::super::SCHEMA_VERSION.max(1),
            "SCHEMA_VERSION has no step leading to it"
        );
    }
}
