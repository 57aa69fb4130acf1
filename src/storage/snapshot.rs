//! The metadata half of a backup: every table of `tables.rs`, as seen by ONE read
//! transaction, copied into a fresh redb file, and the list of what that snapshot refers to on
//! disk (blobs, asset files, repositories) so the byte half can be copied to match it.
//!
//! redb cannot iterate a table without its key and value types, so the copy walks one list of
//! typed definitions (`for_each_table!`). Two guards keep that list whole: `copy` refuses a
//! database holding a table the list lacks (a backup never silently drops one), and a unit
//! test compares the list with every `TableDefinition` written in `tables.rs`.
//!
//! Two tables are copied empty on purpose: UPLOADS (an upload in progress is a scratch file the
//! backup does not carry; the client restarts it) and PENDING_RELEASE_TAGS (a release that had
//! not committed when the snapshot was taken is not in it; its tag is left out of the
//! repository copy too, see `Contents::pending_tags`).

use std::collections::BTreeSet;
use std::path::Path;

use redb::{
    Database, MultimapTableHandle, ReadTransaction, ReadableTable, TableDefinition, TableHandle,
};

use super::records::{Asset, BlobMeta};
use super::{codec, tables, StorageError};

/// Calls `$m!(DEF, copy_rows)` for every table of `tables.rs` (also how `Db::open` creates
/// them, so one list serves both). Adding a table there without
/// adding it here makes `copy` refuse to back up (and the unit test fail).
macro_rules! for_each_table {
    ($m:ident) => {
        $m!(META, true);
        $m!(USERS, true);
        $m!(ORGS, true);
        $m!(ORG_MEMBERS, true);
        $m!(TOKENS, true);
        $m!(SESSIONS, true);
        $m!(REPOS, true);
        $m!(COLLABORATORS, true);
        $m!(RELEASES, true);
        $m!(RELEASES_BY_TAG, true);
        $m!(RELEASE_ORDER, true);
        $m!(ASSETS, true);
        $m!(ASSETS_BY_RELEASE, true);
        $m!(TAG_PROTECTIONS, true);
        $m!(PROTECTIONS_BY_REPO, true);
        $m!(BLOBS, true);
        $m!(REPO_BLOBS, true);
        $m!(BLOB_LINKS, true);
        $m!(BLOB_REFS, true);
        $m!(MANIFESTS, true);
        $m!(OCI_TAGS, true);
        $m!(REFERRERS, true);
        $m!(MANIFEST_REFS, true);
        $m!(PENDING_RELEASE_TAGS, false);
        $m!(UPLOADS, false);
        $m!(RETENTION, true);
        $m!(QUOTAS, true);
        $m!(OWNER_USAGE, true);
        $m!(OWNER_BLOBS, true);
        $m!(PROTECTION_SCOPES, true);
        $m!(ATTESTATIONS, true);
        $m!(REPO_SETTINGS, true);
        $m!(OWNER_SETTINGS, true);
        $m!(IMMUTABLE_RELEASES, true);
        $m!(TAG_TOMBSTONES, true);
        $m!(LATEST_RELEASE, true);
        $m!(MIRRORS, true);
    };
}
pub(super) use for_each_table;

/// The names of the tables `copy` knows (for the completeness checks).
pub fn known_tables() -> Vec<&'static str> {
    let mut names = Vec::new();
    macro_rules! name {
        ($t:ident, $rows:expr) => {
            names.push(tables::$t.name());
        };
    }
    for_each_table!(name);
    names
}

/// What a metadata snapshot refers to outside the database.
#[derive(Debug, Default, Clone)]
pub struct Contents {
    /// Every blob row: digest string (`sha256:…`) and size.
    pub blobs: Vec<(String, BlobMeta)>,
    /// Every asset row (its file is named from the row).
    pub assets: Vec<Asset>,
    /// Every repository, `owner/repo`.
    pub repos: Vec<String>,
    /// `(owner/repo, tag)` of release tags being created when the snapshot was taken (their
    /// release is not in it): the repository copy leaves these tags out.
    pub pending_tags: Vec<(String, String)>,
}

/// Copies every table as `src` sees it into a new redb file at `dst` (which must not exist),
/// and lists what the copy refers to. Refuses a database with a table it does not know.
pub fn copy(src: &ReadTransaction, dst: &Path) -> Result<Contents, StorageError> {
    let known: BTreeSet<&str> = known_tables().into_iter().collect();
    let mut unknown: Vec<String> = src
        .list_tables()?
        .map(|t| t.name().to_owned())
        .filter(|n| !known.contains(n.as_str()))
        .collect();
    unknown.extend(src.list_multimap_tables()?.map(|t| t.name().to_owned()));
    if !unknown.is_empty() {
        return Err(StorageError::Malformed(format!(
            "the backup does not know the table(s) {}; refusing an incomplete snapshot",
            unknown.join(", ")
        )));
    }
    let out = Database::builder().create(dst)?;
    let txn = out.begin_write()?;
    macro_rules! copy_one {
        ($t:ident, $rows:expr) => {
            copy_table(src, &txn, tables::$t, $rows)?;
        };
    }
    for_each_table!(copy_one);
    txn.commit()?;
    drop(out);
    std::fs::File::open(dst)?.sync_all()?;
    contents(src)
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
    rows: bool,
) -> Result<(), StorageError> {
    let mut to = dst.open_table(def)?;
    if !rows {
        return Ok(());
    }
    let from = match src.open_table(def) {
        Ok(t) => t,
        // A table no write has created yet: the copy has it empty.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
    }
    Ok(())
}

fn contents(src: &ReadTransaction) -> Result<Contents, StorageError> {
    let mut c = Contents::default();
    for row in src.open_table(tables::BLOBS)?.iter()? {
        let (k, v) = row?;
        c.blobs
            .push((k.value().to_owned(), codec::decode::<BlobMeta>(v.value())?));
    }
    for row in src.open_table(tables::ASSETS)?.iter()? {
        let (_, v) = row?;
        c.assets.push(codec::decode::<Asset>(v.value())?);
    }
    for row in src.open_table(tables::REPOS)?.iter()? {
        let (k, _) = row?;
        c.repos.push(k.value().to_owned());
    }
    for row in src.open_table(tables::PENDING_RELEASE_TAGS)?.iter()? {
        let (k, _) = row?;
        let (repo, tag) = k.value();
        c.pending_tags.push((repo.to_owned(), tag.to_owned()));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;
    use redb::ReadableDatabase;

    /// A table added to `tables.rs` but not to `for_each_table!` would be missing from every
    /// backup: the list must name every definition in the file.
    #[test]
    fn every_table_of_tables_rs_is_copied() {
        let source = include_str!("tables.rs");
        let mut declared = Vec::new();
        for part in source.split("TableDefinition::new(\"").skip(1) {
            if let Some((name, _)) = part.split_once('"') {
                declared.push(name.to_owned());
            }
        }
        let mut known: Vec<String> = known_tables().into_iter().map(String::from).collect();
        declared.sort();
        known.sort();
        assert_eq!(
            declared, known,
            "tables.rs and snapshot::for_each_table! differ"
        );
    }

    /// The copy holds what the read transaction saw, and a table the list does not know makes
    /// the snapshot fail instead of leaving it out.
    #[tokio::test]
    async fn the_copy_is_the_read_transaction_and_unknown_tables_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("pfai.redb")).unwrap();
        db.write(|txn| {
            txn.open_table(tables::USERS)?
                .insert("alice", b"x".as_slice())?;
            txn.open_table(tables::UPLOADS)?
                .insert("u1", b"y".as_slice())?;
            Ok::<_, StorageError>(())
        })
        .await
        .unwrap();
        let dst = dir.path().join("copy.redb");
        let dst2 = dst.clone();
        db.read(move |txn| copy(txn, &dst2)).await.unwrap();
        {
            let copy = Database::open(&dst).unwrap();
            let r = copy.begin_read().unwrap();
            assert!(r
                .open_table(tables::USERS)
                .unwrap()
                .get("alice")
                .unwrap()
                .is_some());
            assert!(r
                .open_table(tables::UPLOADS)
                .unwrap()
                .iter()
                .unwrap()
                .next()
                .is_none());
            let names: BTreeSet<String> = r
                .list_tables()
                .unwrap()
                .map(|t| t.name().to_owned())
                .collect();
            let known: BTreeSet<String> = known_tables().into_iter().map(String::from).collect();
            assert_eq!(names, known);
        }

        const EXTRA: TableDefinition<&str, u64> = TableDefinition::new("not_in_the_list");
        db.write(|txn| {
            txn.open_table(EXTRA)?.insert("k", 1)?;
            Ok::<_, StorageError>(())
        })
        .await
        .unwrap();
        let dst3 = dir.path().join("copy2.redb");
        let err = db
            .read(move |txn| copy(txn, &dst3))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not_in_the_list"), "{err}");
    }
}
