//! Storage: the redb database (all metadata) and the files on disk (blobs, assets, uploads).
//! Knows nothing of HTTP, OCI rules or git; `domain` gives it meaning.

pub(crate) mod accounts;
pub(crate) mod assets;
pub mod attest_keys;
pub(crate) mod attestations;
pub(crate) mod audit;
pub(crate) mod backend;
pub mod blob;
pub(crate) mod blob_refs;
pub(crate) mod bytes;
pub mod codec;
pub(crate) mod files;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
pub(crate) mod immutable;
pub(crate) mod manifests;
pub(crate) mod migrate;
pub(crate) mod mirrors;
#[allow(unsafe_code)]
pub mod mmap;
pub(crate) mod quota;
pub mod records;
pub(crate) mod releases;
pub(crate) mod retention;
pub(crate) mod rules;
pub mod s3;
pub(crate) mod sessions;
pub mod snapshot;
pub mod tables;
pub(crate) mod tiered;
pub mod totals;
pub(crate) mod txn;
pub(crate) mod uploads;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};

pub use backend::FaultSwitch;
use backend::{IoLog, WatchedBackend};
pub use txn::Reads;

/// The schema version of the redb file. A file with a newer version is refused at open.
pub const SCHEMA_VERSION: u32 = 3;

/// Errors of the storage layer. Domain code maps them to `DomainError::Storage` (or to a
/// specific outcome where one is meaningful, like a full disk), keeping them as the cause.
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
    #[error("record codec")]
    Codec(#[source] postcard::Error),
    /// A stored value has a shape no version of pfai writes (unknown record version, empty
    /// record, a counter of the wrong width).
    #[error("malformed record: {0}")]
    Malformed(String),
    /// The data directory was written by a newer pfai.
    #[error("{0}")]
    Schema(String),
    /// The database cannot run transactions now (it is being reopened after an I/O error, or
    /// the reopen failed); the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
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

/// How long a reopen waits for the old handle to close (in-flight transactions end and drop
/// it; redb refuses a second open of the file meanwhile) before reporting the database busy.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// While writes are failing, health checks re-try one small write at most this often.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The metadata database. Cheap to clone. Every transaction runs on the blocking pool through
/// `read`/`write`, so no async task ever blocks on disk and no write transaction can span a
/// network await (the closure is synchronous).
///
/// It survives a failed disk write: redb answers every transaction with "previous I/O error"
/// after one, until the file is closed and reopened. When that happens the current handle is
/// retired (new transactions no longer get it; the ones in flight finish and drop it, which
/// closes the file) and the next transaction reopens the file, waiting up to `REOPEN_WAIT` for
/// the old handle to close. Until a write commits again, `write_failure` says why, and health
/// reports it.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    faults: Option<FaultSwitch>,
    /// The handle transactions use; `None` between a retirement and a successful reopen.
    current: Mutex<Option<Handle>>,
    /// Counts opens, so a stale failure cannot retire a newer handle.
    generation: AtomicU64,
    /// Serializes reopen attempts.
    reopening: Mutex<()>,
    /// Why writes cannot succeed now; cleared by the next commit that succeeds.
    failure: Mutex<Option<String>>,
    /// When a write was last tried on behalf of a health check (`recheck`).
    last_probe: Mutex<Option<Instant>>,
}

/// One open of the file.
#[derive(Clone)]
struct Handle {
    db: Arc<Database>,
    io: Arc<IoLog>,
    generation: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether redb has latched its failed state (every transaction would fail until a reopen).
fn is_poisoned(db: &Database) -> bool {
    use redb::{StorageError as S, TransactionError as T};
    matches!(
        db.try_begin_write(),
        Err(T::Storage(S::PreviousIo | S::DatabaseClosed))
    )
}

fn poisoned_begin(e: &redb::TransactionError) -> bool {
    use redb::{StorageError as S, TransactionError as T};
    matches!(e, T::Storage(S::PreviousIo | S::DatabaseClosed))
}

impl Db {
    /// Opens (or creates) `pfai.redb`, creating every table and checking the schema version.
    pub fn open(path: &Path) -> Result<Db, StorageError> {
        Db::open_with(path, None)
    }

    /// `open`, with a fault switch on the file's writes when `faults` is set (tests only).
    #[doc(hidden)]
    pub fn open_with(path: &Path, faults: Option<FaultSwitch>) -> Result<Db, StorageError> {
        let this = Db {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                faults,
                current: Mutex::new(None),
                generation: AtomicU64::new(0),
                reopening: Mutex::new(()),
                failure: Mutex::new(None),
                last_probe: Mutex::new(None),
            }),
        };
        let first = this.open_file()?;
        *lock(&this.shared.current) = Some(first);
        this.init_schema()?;
        Ok(this)
    }

    fn open_file(&self) -> Result<Handle, redb::DatabaseError> {
        let io = Arc::new(IoLog::default());
        let backend =
            WatchedBackend::open(&self.shared.path, io.clone(), self.shared.faults.clone())?;
        let db = redb::Builder::new().create_with_backend(backend)?;
        Ok(Handle {
            db: Arc::new(db),
            io,
            generation: self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1,
        })
    }

    /// The handle to use, reopening the file if the last one was retired.
    fn handle(&self) -> Result<Handle, StorageError> {
        if let Some(h) = lock(&self.shared.current).clone() {
            return Ok(h);
        }
        self.reopen()
    }

    fn reopen(&self) -> Result<Handle, StorageError> {
        let _one = lock(&self.shared.reopening);
        if let Some(h) = lock(&self.shared.current).clone() {
            return Ok(h);
        }
        let deadline = Instant::now() + REOPEN_WAIT;
        loop {
            match self.open_file() {
                Ok(h) => {
                    tracing::warn!("database reopened after an I/O error");
                    *lock(&self.shared.current) = Some(h.clone());
                    return Ok(h);
                }
                // The old handle is still held by a transaction in flight.
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    let reason = format!("the database could not be reopened: {e}");
                    tracing::error!(%reason);
                    self.set_failure(reason.clone());
                    return Err(match e {
                        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
                            StorageError::Io(io)
                        }
                        _ => StorageError::Unavailable(reason),
                    });
                }
            }
        }
    }

    /// Stops handing out `h`; the file closes when its last transaction ends.
    fn retire(&self, h: Handle) {
        let generation = h.generation;
        drop(h);
        let mut cur = lock(&self.shared.current);
        if cur.as_ref().is_some_and(|c| c.generation == generation) {
            *cur = None;
            tracing::error!("the database hit an I/O error; it will be reopened");
        }
    }

    fn set_failure(&self, reason: String) {
        *lock(&self.shared.failure) = Some(reason);
    }

    /// Begins a transaction, retiring a poisoned handle and retrying once on a fresh one (so
    /// the first write after space was freed already succeeds).
    fn begin<T>(
        &self,
        begin: impl Fn(&Database) -> Result<T, redb::TransactionError>,
    ) -> Result<(T, Handle), StorageError> {
        let mut retried = false;
        loop {
            let h = self.handle()?;
            match begin(&h.db) {
                Ok(t) => return Ok((t, h)),
                Err(e) if poisoned_begin(&e) && !retried => {
                    retried = true;
                    self.retire(h);
                }
                Err(e) if poisoned_begin(&e) => {
                    self.retire(h);
                    return Err(StorageError::Unavailable(
                        "the database is recovering from an I/O error; try again".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// After a failed transaction on `h`: if its file failed (since `before` failures, or
    /// redb has latched), returns the storage error to report instead of the closure's, and
    /// retires the handle when redb has latched.
    fn after_failure(&self, h: Handle, before: u64, writing: bool) -> Option<StorageError> {
        let total = h.io.failures();
        if total == 0 {
            return None;
        }
        let poisoned = is_poisoned(&h.db);
        let io = h.io.last_error();
        if poisoned {
            self.retire(h);
        }
        if !(poisoned || total > before) {
            return None;
        }
        if writing {
            self.set_failure(format!("a database write failed: {io}"));
            Some(StorageError::Io(io))
        } else {
            Some(StorageError::Unavailable(format!(
                "the database is recovering from an I/O error ({io}); try again"
            )))
        }
    }

    /// Checks the schema version, upgrades an older file (see `migrate`) and creates every table.
    fn init_schema(&self) -> Result<(), StorageError> {
        use tables::*;
        let stored = {
            let (txn, _h) = self.begin(|db| db.begin_read())?;
            match txn.open_table(META) {
                Ok(meta) => meta
                    .get("schema_version")?
                    .map(|v| read_u32(v.value()))
                    .transpose()?,
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(v) = stored {
            if v > SCHEMA_VERSION {
                return Err(StorageError::Schema(format!(
                    "the data directory was written by a newer pfai (schema {v}, this binary \
                     understands up to {SCHEMA_VERSION}); upgrade pfai or use another --data-dir"
                )));
            }
            if v < SCHEMA_VERSION {
                // Copy the file closed, so the copy is exactly what the old binary left.
                drop(lock(&self.shared.current).take());
                let copy = migrate::keep_pre_upgrade_copy(&self.shared.path, v)?;
                *lock(&self.shared.current) = Some(self.open_file()?);
                tracing::info!(from = v, to = SCHEMA_VERSION, copy = %copy.display(),
                    "upgrading the database schema; the old file is kept");
            }
        }
        let (txn, _h) = self.begin(|db| db.begin_write())?;
        {
            for step in migrate::plan(stored.unwrap_or(SCHEMA_VERSION), SCHEMA_VERSION) {
                tracing::info!(to = step.to, "schema upgrade: {}", step.what);
                (step.run)(&txn)?;
            }
            txn.open_table(META)?
                .insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
            // Every table exists from the first open on (the backup's list, so none is missed).
            macro_rules! create {
                ($t:ident, $rows:expr) => {
                    txn.open_table($t)?;
                };
            }
            snapshot::for_each_table!(create);
        }
        txn.commit()?;
        Ok(())
    }

    /// The size of the database file (0 when it cannot be read).
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Runs `f` in a read transaction on the blocking pool.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&ReadTransaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (txn, h) = this.begin(|db| db.begin_read())?;
            let before = h.io.failures();
            let out = f(&txn);
            drop(txn);
            match out {
                Ok(v) => Ok(v),
                Err(e) => match this.after_failure(h, before, false) {
                    Some(se) => Err(E::from(se)),
                    None => Err(e),
                },
            }
        })
        .await
        .map_err(|e| E::from(StorageError::Task(e)))?
    }

    /// `write`, keeping `guard` alive until the transaction has committed or aborted, even if
    /// the caller's future is dropped meanwhile (a client that disconnects): the commit runs on
    /// to the end on its thread, and a lock that orders it against another task (fsck, GC) must
    /// be held as long.
    pub async fn write_holding<G, T, E, F>(&self, guard: G, f: F) -> Result<T, E>
    where
        G: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        self.write(move |txn| f(txn).map(|v| (v, guard)))
            .await
            .map(|(v, _released)| v)
    }

    /// Runs `f` in a write transaction on the blocking pool and commits if it returns `Ok`.
    /// Dropping the transaction on `Err` aborts it, so a failed logical change writes nothing.
    /// A failure of the file itself is reported as `StorageError::Io` (ENOSPC becomes 507),
    /// whatever the closure made of it.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&WriteTransaction) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let (mut txn, h) = this.begin(|db| db.begin_write())?;
            let before = h.io.failures();
            txn.set_quick_repair(true);
            let out = match f(&txn) {
                Ok(v) => txn
                    .commit()
                    .map(|()| v)
                    .map_err(|e| E::from(StorageError::from(e))),
                Err(e) => {
                    drop(txn);
                    Err(e)
                }
            };
            match out {
                Ok(v) => {
                    if lock(&this.shared.failure).take().is_some() {
                        tracing::warn!("database writes succeed again");
                    }
                    Ok(v)
                }
                Err(e) => match this.after_failure(h, before, true) {
                    Some(se) => Err(E::from(se)),
                    None => Err(e),
                },
            }
        })
        .await
        .map_err(|e| E::from(StorageError::Task(e)))?
    }

    /// Why writes cannot succeed right now (the last one failed on the file, or the database
    /// could not be reopened), or `None` when the last write committed.
    pub fn write_failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// `write_failure`, after re-trying one small durable write (at most once per
    /// `PROBE_INTERVAL`) when writes were failing, so health turns `ok` once space is freed
    /// even if no client writes. Healthy databases are not written to.
    pub async fn recheck(&self) -> Option<String> {
        self.write_failure()?;
        {
            let mut last = lock(&self.shared.last_probe);
            if last.is_some_and(|t| t.elapsed() < PROBE_INTERVAL) {
                return self.write_failure();
            }
            *last = Some(Instant::now());
        }
        let probe = self
            .write(|txn| {
                let mut meta = txn.open_table(tables::META)?;
                let now = jiff::Timestamp::now().as_second();
                meta.insert("write_probe", now.to_le_bytes().as_slice())?;
                Ok::<_, StorageError>(())
            })
            .await;
        if let Err(e) = probe {
            tracing::debug!(error = %e, "write probe failed");
        }
        self.write_failure()
    }
}

fn read_u32(b: &[u8]) -> Result<u32, StorageError> {
    let arr: [u8; 4] = b
        .try_into()
        .map_err(|_| StorageError::Malformed("bad u32".into()))?;
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
                .map_err(|_| StorageError::Malformed("bad sequence".into()))?;
            u64::from_le_bytes(arr)
        }
        None => 0,
    };
    let next = current + 1;
    meta.insert(key.as_str(), next.to_le_bytes().as_slice())?;
    Ok(next)
}

/// Bytes an unprivileged writer can still use on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Fsyncs a directory so that a rename or create inside it is durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(txn: &WriteTransaction, k: &str) -> Result<(), StorageError> {
        txn.open_table(tables::META)?.insert(k, b"v".as_slice())?;
        Ok(())
    }

    /// A caller that gives up on a write (its client disconnected) must not release the lock
    /// that orders the write against fsck or GC before the commit has happened: the commit
    /// goes on without it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_write_keeps_its_lock_until_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("x.redb")).unwrap();
        let lock = Arc::new(tokio::sync::RwLock::new(()));
        let guard = lock.clone().read_owned().await;
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let write = db.write_holding(guard, move |txn| {
            let _ = started_tx.send(());
            let _ = go_rx.recv();
            put(txn, "late")
        });
        // Start it, then drop the caller's future while the closure is still running.
        let mut write = Box::pin(write);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut write)
            .await
            .is_err());
        started_rx.recv().unwrap();
        drop(write);
        assert!(lock.try_write().is_err(), "released before the commit");
        go_tx.send(()).unwrap();
        let exclusive = tokio::time::timeout(Duration::from_secs(10), lock.write())
            .await
            .expect("the lock is released once the commit is done");
        drop(exclusive);
        let committed = db
            .read(|txn| Ok::<_, StorageError>(txn.open_table(tables::META)?.get("late")?.is_some()))
            .await
            .unwrap();
        assert!(committed);
    }

    /// The reopen after a failed commit must wait for a transaction that still holds the old
    /// file (redb refuses a second open meanwhile), then succeed, instead of failing the write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopen_waits_for_a_transaction_still_holding_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultSwitch::default();
        let db = Db::open_with(&dir.path().join("x.redb"), Some(faults.clone())).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let reader = tokio::spawn({
            let db = db.clone();
            async move {
                db.read(move |_txn| {
                    let _ = held_tx.send(());
                    let _ = go_rx.recv();
                    Ok::<_, StorageError>(())
                })
                .await
            }
        });
        held_rx.recv().unwrap();

        faults.arm();
        match db.write(|txn| put(txn, "during")).await {
            Err(StorageError::Io(e)) => assert_eq!(e.raw_os_error(), Some(backend::ENOSPC)),
            other => panic!("expected ENOSPC, got {other:?}"),
        }
        assert!(db.write_failure().is_some());
        faults.disarm();

        // Let the reader go only once the next write is waiting to reopen.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let _ = go_tx.send(());
        });
        db.write(|txn| put(txn, "after")).await.unwrap();
        releaser.join().unwrap();
        reader.await.unwrap().unwrap();
        assert!(db.write_failure().is_none());
        let (during, after) = db
            .read(|txn| {
                let meta = txn.open_table(tables::META)?;
                Ok::<_, StorageError>((meta.get("during")?.is_some(), meta.get("after")?.is_some()))
            })
            .await
            .unwrap();
        assert!(!during && after, "during={during} after={after}");
    }

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
