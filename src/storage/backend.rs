//! The redb storage backend the database is opened with: redb's own `FileBackend`, plus a
//! record of the I/O failures it returned. redb latches a failed read, write, resize or sync
//! into its "previous I/O error" state (every later transaction fails until the database is
//! closed and reopened); `Db` uses this record to notice that and reopen. Tests can also arm a
//! `FaultSwitch` that makes writes fail as a full disk would.

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// `ENOSPC` on Linux (the errno `DomainError` maps to 507 Insufficient Storage).
pub const ENOSPC: i32 = 28;

/// A switch shared between a test and the database it opened: while armed, every `write`,
/// `set_len` and `sync_data` of the database file fails with ENOSPC, as on a full disk.
/// Production never creates one (`Config::db_faults` is `None`), so the check costs one branch.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct FaultSwitch(Arc<AtomicBool>);

impl FaultSwitch {
    /// Makes the database's writes fail from now on.
    pub fn arm(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Lets the database's writes through again (the "space was freed" moment).
    pub fn disarm(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    fn armed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The I/O failures one open database has seen (one per backend instance, so a reopened
/// database starts clean).
#[derive(Debug, Default)]
pub(crate) struct IoLog {
    failures: AtomicU64,
    last_errno: AtomicI32,
}

impl IoLog {
    fn record(&self, e: &io::Error) {
        self.last_errno
            .store(e.raw_os_error().unwrap_or(0), Ordering::SeqCst);
        self.failures.fetch_add(1, Ordering::SeqCst);
    }

    /// How many backend calls have failed so far.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// The last failure, rebuilt from its errno (`io::Error` is not `Clone`).
    pub(crate) fn last_error(&self) -> io::Error {
        match self.last_errno.load(Ordering::SeqCst) {
            0 => io::Error::other("the database file could not be read or written"),
            errno => io::Error::from_raw_os_error(errno),
        }
    }
}

/// `FileBackend` with failure recording and optional fault injection. Locks are delegated, so
/// a second open of the same file (in this process or another) is still refused while the
/// first is alive, which is what makes a reopen wait for the old handle to close.
#[derive(Debug)]
pub(crate) struct WatchedBackend {
    inner: FileBackend,
    log: Arc<IoLog>,
    faults: Option<FaultSwitch>,
}

impl WatchedBackend {
    /// Opens (or creates) the file at `path`, as `redb::Builder::create` would.
    pub(crate) fn open(
        path: &Path,
        log: Arc<IoLog>,
        faults: Option<FaultSwitch>,
    ) -> Result<WatchedBackend, redb::DatabaseError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(WatchedBackend {
            inner: FileBackend::new(file)?,
            log,
            faults,
        })
    }

    fn watch<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            self.log.record(e);
        }
        r
    }

    fn injected(&self) -> io::Result<()> {
        match &self.faults {
            Some(f) if f.armed() => Err(io::Error::from_raw_os_error(ENOSPC)),
            _ => Ok(()),
        }
    }
}

impl StorageBackend for WatchedBackend {
    fn len(&self) -> io::Result<u64> {
        self.watch(self.inner.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.watch(self.inner.read(offset, out))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.watch(self.injected().and_then(|()| self.inner.set_len(len)))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.watch(self.injected().and_then(|()| self.inner.sync_data()))
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.watch(
            self.injected()
                .and_then(|()| self.inner.write(offset, data)),
        )
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
