//! The content-addressed blob store and the streaming writer shared by blobs and assets.
//!
//! Write discipline (after garage): bytes go to a temp file guarded by delete-on-drop, are hashed
//! on the way by a dedicated blocking thread (so hashing and disk writes overlap with receiving
//! the network body), then fsync, rename into place, chmod 0444, fsync of the directory. Only
//! after that may a database row point at the file. A published file is never rewritten or
//! truncated, so a memory map of it stays valid even while GC unlinks it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::fsync_dir;
use super::mmap::Mapped;
use crate::ids::{Algorithm, Digest, UploadId};

/// An incremental hash of one of the accepted algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 (uses the CPU's SHA instructions where present).
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(alg: Algorithm) -> Self {
        use sha2::Digest as _;
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far (the hasher is not consumed).
    pub fn digest(&self) -> Digest {
        use sha2::Digest as _;
        match self {
            Hasher::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.clone().finalize()),
            Hasher::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.clone().finalize()),
        }
    }

    /// Hashes a whole file from `start` on (used to resume after a restart, and by fsck).
    pub fn feed_file(&mut self, file: &mut File, start: u64) -> io::Result<u64> {
        file.seek(io::SeekFrom::Start(start))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n_total = 0;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(n_total);
            }
            self.update(&buf[..n]);
            n_total += n as u64;
        }
    }
}

/// Removes a file when dropped unless `keep` was called: the guarantee that a failed or cut
/// write leaves nothing behind.
pub struct TempGuard {
    path: Option<PathBuf>,
}

impl TempGuard {
    /// Guards `path`.
    pub fn new(path: PathBuf) -> Self {
        TempGuard { path: Some(path) }
    }
    /// The guarded path.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }
    /// Disarms the guard.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// What a finished sink reports.
pub struct Written {
    /// The state of the hash after the last byte.
    pub hasher: Hasher,
    /// Bytes written by this sink.
    pub bytes: u64,
    /// The file, still open (fsynced when `finish(sync = true)`).
    pub file: File,
}

/// After this many bytes, the writer asks for the data written so far to reach the disk in
/// the background (see `Flusher`).
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Starts writeback while an upload is still arriving. Without it the kernel keeps a large
/// upload in dirty pages until the final fsync, which then costs the whole size at disk speed
/// after the network is done; with it, the disk works while the network does, and the final
/// fsync only flushes the tail. It syncs a clone of the file handle on its own thread, one sync
/// at a time (requests made while one runs are coalesced).
struct Flusher {
    tx: std::sync::mpsc::SyncSender<()>,
    /// Dropped unjoined, the thread still ends after its current sync (it sees the hang-up).
    join: std::thread::JoinHandle<()>,
}

impl Flusher {
    fn start(file: &File) -> Option<Flusher> {
        let clone = file.try_clone().ok()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let join = std::thread::Builder::new()
            .name("pfai-writeback".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Best effort: the final fsync before publishing is what guarantees durability.
                    let _ = clone.sync_data();
                }
            })
            .ok()?;
        Some(Flusher { tx, join })
    }

    fn request(&self) {
        // Full means a sync is pending already; it will cover these bytes too.
        let _ = self.tx.try_send(());
    }

    /// Stops after the sync in progress (so the caller's final fsync has little left to do).
    fn finish(self) {
        drop(self.tx);
        let _ = self.join.join();
    }
}

/// A streaming writer: async code pushes chunks, a blocking thread hashes and writes them.
/// The channel is bounded, so a slow disk slows the client instead of growing memory.
pub struct Sink {
    tx: Option<mpsc::Sender<Bytes>>,
    join: tokio::task::JoinHandle<io::Result<(Written, Option<Flusher>)>>,
}

impl Sink {
    /// Starts a writer appending to `file` with `hasher` (continuing its state).
    pub fn start(file: File, hasher: Hasher) -> Sink {
        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let join = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut hasher = hasher;
            let mut bytes = 0u64;
            let mut flusher: Option<Flusher> = None;
            let mut unflushed = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                unflushed += chunk.len() as u64;
                if unflushed >= WRITEBACK_EVERY {
                    unflushed = 0;
                    if flusher.is_none() {
                        flusher = Flusher::start(&file);
                    }
                    if let Some(f) = &flusher {
                        f.request();
                    }
                }
            }
            Ok((
                Written {
                    hasher,
                    bytes,
                    file,
                },
                flusher,
            ))
        });
        Sink { tx: Some(tx), join }
    }

    /// Queues a chunk. Fails when the writer thread stopped (its error comes from `finish`).
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), ()> {
        match &self.tx {
            Some(tx) => tx.send(chunk).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// Waits for every queued chunk to be written; with `sync`, fsyncs the file. Without it,
    /// background writeback started by this sink finishes on its own.
    pub async fn finish(mut self, sync: bool) -> io::Result<Written> {
        self.tx.take();
        let (w, flusher) = self
            .join
            .await
            .map_err(|e| io::Error::other(e.to_string()))??;
        if sync {
            let file = w.file;
            let file = tokio::task::spawn_blocking(move || {
                if let Some(f) = flusher {
                    f.finish();
                }
                file.sync_all().map(|_| file)
            })
            .await
            .map_err(|e| io::Error::other(e.to_string()))??;
            return Ok(Written { file, ..w });
        }
        // Dropping the flusher lets its thread finish the sync in progress on its own;
        // joining here would make the client wait for the disk.
        drop(flusher);
        Ok(w)
    }
}

/// How many recently served blob maps are kept open: repeated and concurrent pulls of a blob
/// then share one mapping whose pages are already in place.
const MAP_CACHE: usize = 32;

/// The on-disk blob store under `$DATA_DIR/blobs`, with upload sessions under `$DATA_DIR/uploads`.
#[derive(Clone)]
pub struct BlobStore {
    blobs: PathBuf,
    uploads: PathBuf,
    maps: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(Digest, Mapped)>>>,
}

impl BlobStore {
    /// Opens the store, creating its directories.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let blobs = data_dir.join("blobs");
        let uploads = data_dir.join("uploads");
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(&uploads)?;
        Ok(BlobStore {
            blobs,
            uploads,
            maps: Default::default(),
        })
    }

    /// `blobs/<alg>/<2 hex>/<hex>`: only a validated digest reaches here.
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs
            .join(d.algorithm().name())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    /// The data file of an upload session.
    pub fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.uploads.join(id.as_str())
    }

    /// The directory of upload sessions (for the purge).
    pub fn uploads_dir(&self) -> &Path {
        &self.uploads
    }

    /// Creates an empty session file.
    pub fn create_upload(&self, id: &UploadId) -> io::Result<()> {
        File::create_new(self.upload_path(id))?.sync_all()?;
        fsync_dir(&self.uploads)
    }

    /// Opens a session file for appending at its end.
    pub fn open_upload_append(&self, id: &UploadId) -> io::Result<File> {
        OpenOptions::new().append(true).open(self.upload_path(id))
    }

    /// The blobs directory (health checks the free space of its filesystem).
    pub fn dir(&self) -> &Path {
        &self.blobs
    }

    /// Publishes a finished, fsynced file under its digest. If the blob already exists the
    /// new copy is dropped (content addressing makes them equal), unless the existing file is
    /// damaged (wrong size or content), in which case the verified new one replaces it.
    pub fn publish(&self, src: &Path, d: &Digest, size: u64) -> io::Result<()> {
        let dst = self.path(d);
        let dir = dst.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&dir)?;
        if let Ok(m) = fs::metadata(&dst) {
            // Already there: keep the existing file unless it is damaged (a re-push repairs it).
            if m.len() == size && self.verify(d)? == Some(true) {
                fs::remove_file(src)?;
                return Ok(());
            }
        }
        let mut perm = fs::metadata(src)?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(src, perm)?;
        fs::rename(src, &dst)?;
        self.forget_map(d);
        fsync_dir(&dir)
    }

    /// Maps a published blob for reading (reusing a cached map when there is one).
    pub fn map(&self, d: &Digest) -> io::Result<Mapped> {
        if let Ok(mut cache) = self.maps.lock() {
            if let Some(i) = cache.iter().position(|(k, _)| k == d) {
                let hit = cache.remove(i);
                if let Some((k, m)) = hit {
                    cache.push_front((k, m.clone()));
                    return Ok(m);
                }
            }
        }
        let m = Mapped::open_with(&self.path(d), true)?;
        if let Ok(mut cache) = self.maps.lock() {
            cache.push_front((d.clone(), m.clone()));
            cache.truncate(MAP_CACHE);
        }
        Ok(m)
    }

    fn forget_map(&self, d: &Digest) {
        if let Ok(mut cache) = self.maps.lock() {
            cache.retain(|(k, _)| k != d);
        }
    }

    /// Size of the file on disk, if present.
    pub fn file_len(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.path(d)).ok().map(|m| m.len())
    }

    /// The digests of every blob file on disk (`blobs/<alg>/<2 hex>/<hex>` with a valid
    /// digest; anything else there is ignored), for fsck to find files no row owns.
    pub fn list(&self) -> Vec<Digest> {
        let mut out = Vec::new();
        let Ok(algs) = fs::read_dir(&self.blobs) else {
            return out;
        };
        for alg in algs.flatten() {
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            let Ok(prefixes) = fs::read_dir(alg.path()) else {
                continue;
            };
            for prefix in prefixes.flatten() {
                let Ok(files) = fs::read_dir(prefix.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let hex = f.file_name().to_string_lossy().into_owned();
                    if let Ok(d) = Digest::parse(&format!("{alg_name}:{hex}")) {
                        if self.path(&d) == f.path() {
                            out.push(d);
                        }
                    }
                }
            }
        }
        out
    }

    /// Unlinks a blob file (readers holding a map keep their pages).
    pub fn remove(&self, d: &Digest) -> io::Result<()> {
        self.forget_map(d);
        match fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Re-hashes a stored blob: `Some(true)` intact, `Some(false)` damaged, `None` missing.
    pub fn verify(&self, d: &Digest) -> io::Result<Option<bool>> {
        let mut f = match File::open(self.path(d)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut h = Hasher::new(d.algorithm());
        h.feed_file(&mut f, 0)?;
        Ok(Some(&h.digest() == d))
    }
}
