//! The content-addressed blob store and the streaming writer shared by blobs and assets.
//!
//! Write discipline (after garage): bytes go to a temp file guarded by delete-on-drop, are hashed
//! on the way by a dedicated blocking thread (so hashing and disk writes overlap with receiving
//! the network body), then fsync, rename into place, chmod 0444, fsync of the directory. Only
//! after that may a database row point at the file. A published file is never rewritten or
//! truncated, so a memory map of it stays valid even while GC unlinks it.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::bytes::{ByteStore, LocalFs};
use super::fsync_dir;
use super::mmap::Mapped;
use crate::ids::{Digest, UploadId};

pub use crate::ids::Hasher;

/// Hashes a stored object's bytes, 1 MiB at a time so a large map is read sequentially.
pub fn hash_mapped(h: &mut Hasher, data: &Mapped) {
    let len = data.len();
    let mut at = 0;
    while at < len {
        let end = (at + (1 << 20)).min(len);
        h.update(&data.slice(at, end));
        at = end;
    }
}

/// Whether an object name has the blob layout `<alg>/<2 hex>/<hex>` of a valid digest.
fn blob_named(rel: &[String]) -> bool {
    match rel {
        [alg, prefix, hex] => Digest::parse(&format!("{alg}:{hex}"))
            .is_ok_and(|d| d.hex().get(..2) == Some(prefix.as_str())),
        _ => false,
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

    /// Whether the writer thread has stopped (a write failed; `finish` says why): more chunks
    /// would be lost.
    pub fn stopped(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
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

/// The blob store: content-addressed objects named `<alg>/<2 hex>/<hex>` in a `ByteStore`
/// (`$DATA_DIR/blobs` for the local backend), and the upload sessions, which are local scratch
/// files under `$DATA_DIR/uploads` whatever the backend.
#[derive(Clone)]
pub struct BlobStore {
    objects: Arc<dyn ByteStore>,
    uploads: PathBuf,
    maps: Arc<Mutex<VecDeque<(Digest, Mapped)>>>,
}

impl BlobStore {
    /// Opens the local store under `data_dir`, creating its directories.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let objects = LocalFs::open(&data_dir.join("blobs"), 0)?;
        Self::with_objects(Arc::new(objects), data_dir)
    }

    /// A store whose blobs live in `objects`, with upload sessions under `data_dir/uploads`.
    pub fn with_objects(objects: Arc<dyn ByteStore>, data_dir: &Path) -> io::Result<Self> {
        let uploads = data_dir.join("uploads");
        fs::create_dir_all(&uploads)?;
        Ok(BlobStore {
            objects,
            uploads,
            maps: Default::default(),
        })
    }

    /// The object name of a blob: `<alg>/<2 hex>/<hex>` (only a validated digest reaches here).
    pub fn name(d: &Digest) -> String {
        format!("{}/{}/{}", d.algorithm().name(), &d.hex()[..2], d.hex())
    }

    /// Puts the blob's bytes at the local path `dest` (a hard link when it can): a backup's
    /// pin on the blob its snapshot refers to.
    pub fn export(&self, d: &Digest, dest: &Path) -> io::Result<()> {
        self.objects.export(&Self::name(d), dest)
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

    /// Bytes still free for blobs (health turns degraded when low).
    pub fn free_bytes(&self) -> io::Result<u64> {
        self.objects.free_bytes()
    }

    /// Publishes a finished, fsynced local file whose contents hash to `d` (the caller hashed
    /// it on the way in: that is the verification). If the blob already exists the new copy is
    /// dropped (content addressing makes them equal), unless the stored one is damaged (wrong
    /// size or content), in which case the verified new one replaces it.
    pub fn publish(&self, src: &Path, d: &Digest, size: u64) -> io::Result<()> {
        let name = Self::name(d);
        if self.objects.len(&name).ok().flatten() == Some(size) && self.verify(d)? == Some(true) {
            fs::remove_file(src)?;
            return Ok(());
        }
        self.objects.put(src, &name)?;
        self.forget_map(d);
        Ok(())
    }

    /// A published blob for reading (reusing a cached map when there is one).
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
        let m = self.objects.open(&Self::name(d), true)?;
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

    /// Size of the stored blob, if present.
    pub fn file_len(&self, d: &Digest) -> Option<u64> {
        self.objects.len(&Self::name(d)).ok().flatten()
    }

    /// The digests of every stored blob (objects named like a valid digest; anything else
    /// is ignored), for fsck to find blobs no row owns.
    pub fn list(&self) -> Vec<Digest> {
        self.objects
            .scan(3, &blob_named)
            .into_iter()
            .filter_map(|name| {
                let (alg, rest) = name.split_once('/')?;
                let hex = rest.rsplit('/').next()?;
                Digest::parse(&format!("{alg}:{hex}")).ok()
            })
            .collect()
    }

    /// Removes a blob (readers holding a map keep their pages).
    pub fn remove(&self, d: &Digest) -> io::Result<()> {
        self.forget_map(d);
        self.objects.delete(&Self::name(d))
    }

    /// Moves the blobs of the store this one replaces into it (`pfai storage migrate`);
    /// `None` when no move is under way.
    pub fn absorb_previous(&self) -> io::Result<Option<super::bytes::Moved>> {
        self.objects.absorb_previous(3, &blob_named)
    }

    /// Where new blobs go (`local`, `s3`).
    pub fn kind(&self) -> &'static str {
        self.objects.kind()
    }

    /// Whether blob downloads are redirected to the object store (`--s3-redirect`).
    pub fn redirects(&self) -> bool {
        self.objects.redirects()
    }

    /// A short-lived URL of the blob on the object store, when downloads are redirected.
    pub fn presigned_url(&self, d: &Digest) -> io::Result<Option<String>> {
        self.objects.presign(&Self::name(d))
    }

    /// Re-hashes a stored blob: `Some(true)` intact, `Some(false)` damaged, `None` missing.
    pub fn verify(&self, d: &Digest) -> io::Result<Option<bool>> {
        let data = match self.objects.open_fresh(&Self::name(d)) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut h = Hasher::new(d.algorithm());
        hash_mapped(&mut h, &data);
        Ok(Some(&h.digest() == d))
    }
}
