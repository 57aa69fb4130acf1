//! Storage: the redb database (all metadata) and the files on disk (blobs, assets, uploads).
//! Knows nothing of HTTP, OCI rules or git; `domain` gives it meaning.

pub mod blob;
pub mod codec;
pub mod files;
pub mod mmap;
pub mod records;
pub mod tables;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

/// The schema version of the redb file. A file with a newer version is refused at open.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors of the storage layer. Domain code maps them to `DomainError::Internal` (or to a
/// specific outcome where one is meaningful, like a full disk).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// redb failed.
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    /// A file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A record could not be (de)serialized.
    #[error("record codec: {0}")]
    Codec(String),
    /// The data directory was written by a newer pfai.
    #[error("{0}")]
    Schema(String),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The metadata database. Cheap to clone. Every transaction runs on the blocking pool through
/// `read`/`write`, so no async task ever blocks on disk and no write transaction can span a
/// network await (the closure is synchronous).
#[derive(Clone)]
pub struct Db {
    inner: Arc<Database>,
}

impl Db {
    /// Opens (or creates) `pfai.redb`, creating every table and checking the schema version.
    pub fn open(path: &Path) -> Result<Db, StorageError> {
        let db = Database::create(path)?;
        let this = Db {
            inner: Arc::new(db),
        };
        this.init_schema()?;
        Ok(this)
    }

    fn init_schema(&self) -> Result<(), StorageError> {
        use redb::ReadableTable;
        use tables::*;
        let txn = self.inner.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let stored = meta
                .get("schema_version")?
                .map(|v| read_u32(v.value()))
                .transpose()?;
            match stored {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StorageError::Schema(format!(
                        "the data directory was written by a newer pfai (schema {v}, this binary \
                         understands up to {SCHEMA_VERSION}); upgrade pfai or use another --data-dir"
                    )));
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                }
            }
            txn.open_table(USERS)?;
            txn.open_table(ORGS)?;
            txn.open_table(ORG_MEMBERS)?;
            txn.open_table(TOKENS)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(REPOS)?;
            txn.open_table(COLLABORATORS)?;
            txn.open_table(RELEASES)?;
            txn.open_table(RELEASES_BY_TAG)?;
            txn.open_table(RELEASE_ORDER)?;
            txn.open_table(ASSETS)?;
            txn.open_table(ASSETS_BY_RELEASE)?;
            txn.open_table(TAG_PROTECTIONS)?;
            txn.open_table(PROTECTIONS_BY_REPO)?;
            txn.open_table(BLOBS)?;
            txn.open_table(REPO_BLOBS)?;
            txn.open_table(BLOB_LINKS)?;
            txn.open_table(BLOB_REFS)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(OCI_TAGS)?;
            txn.open_table(REFERRERS)?;
            txn.open_table(MANIFEST_REFS)?;
            txn.open_table(UPLOADS)?;
            txn.open_table(PENDING_RELEASE_TAGS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Runs `f` in a read transaction on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&ReadTransaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let db = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(StorageError::from)?;
            f(&txn)
        })
        .await
        .map_err(|e| E::from(StorageError::Task(e.to_string())))?
    }

    /// Runs `f` in a write transaction on the blocking pool and commits if it returns `Ok`.
    /// Dropping the transaction on `Err` aborts it, so a failed logical change writes nothing.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&WriteTransaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let db = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(StorageError::from)?;
            txn.set_quick_repair(true);
            let out = f(&txn)?;
            txn.commit().map_err(StorageError::from)?;
            Ok(out)
        })
        .await
        .map_err(|e| E::from(StorageError::Task(e.to_string())))?
    }
}

fn read_u32(b: &[u8]) -> Result<u32, StorageError> {
    let arr: [u8; 4] = b
        .try_into()
        .map_err(|_| StorageError::Codec("bad u32".into()))?;
    Ok(u32::from_le_bytes(arr))
}

/// Allocates the next id of a sequence inside the caller's write transaction.
pub fn next_id(txn: &WriteTransaction, seq: &str) -> Result<u64, StorageError> {
    use redb::ReadableTable;
    let mut meta = txn.open_table(tables::META)?;
    let key = format!("seq:{seq}");
    let current = match meta.get(key.as_str())? {
        Some(v) => {
            let arr: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| StorageError::Codec("bad sequence".into()))?;
            u64::from_le_bytes(arr)
        }
        None => 0,
    };
    let next = current + 1;
    meta.insert(key.as_str(), next.to_le_bytes().as_slice())?;
    Ok(next)
}

/// Fsyncs a directory so that a rename or create inside it is durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pfai.redb");
        drop(Db::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(tables::META)
                .unwrap()
                .insert(
                    "schema_version",
                    (SCHEMA_VERSION + 1).to_le_bytes().as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
            let r = db.begin_read().unwrap();
            assert!(r
                .open_table(tables::META)
                .unwrap()
                .get("schema_version")
                .unwrap()
                .is_some());
        }
        let err = Db::open(&path).err().expect("refused").to_string();
        assert!(err.contains("newer pfai"), "{err}");
        // The same binary reopens its own schema.
        let dir2 = tempfile::tempdir().unwrap();
        drop(Db::open(&dir2.path().join("x.redb")).unwrap());
        assert!(Db::open(&dir2.path().join("x.redb")).is_ok());
    }
}
