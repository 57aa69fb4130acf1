//! The byte store: where blob and asset contents live, behind one interface.
//!
//! A `ByteStore` is one namespace of immutable objects named by `/`-separated relative names
//! (`sha256/ab/ab12…` for blobs, `owner/repo/<release>/<asset>-<file>` for assets). The typed
//! facades (`blob::BlobStore`, `files::AssetFiles`) turn digests and asset ids into names; only
//! they, and this module's backends, know the layout. Callers never build paths.
//!
//! The contract every backend keeps:
//! - **Writes are local first.** A stream is written, hashed and fsynced into a local scratch
//!   file (`stage`, or an OCI upload session file), then `put` publishes it under its name in one
//!   step: after `put` returns, the object is durable and complete; before, readers see nothing.
//!   An object is never rewritten in place (`put` over an existing name replaces it whole), so a
//!   reader holding it keeps a consistent view. The local backend renames (same filesystem);
//!   an object-store backend would upload the finished file and remove it.
//! - **Reads serve whole objects or ranges as `Bytes`** through `Mapped`; the local backend maps
//!   the file (zero copy). An object-store backend would fetch ranges into memory or, for big
//!   objects, a local cache file it maps the same way; the trait is synchronous because every
//!   caller already runs it on the blocking pool.
//! - `delete` of a missing object succeeds (the database row is what counts); `scan` lists the
//!   names that have the namespace's layout and nothing else (foreign files are not ours).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::blob::TempGuard;
use super::fsync_dir;
use super::mmap::Mapped;

/// One namespace of immutable objects (blobs or assets). See the module doc for the contract.
pub trait ByteStore: Send + Sync {
    /// A local scratch file for writing the object to be called `name`, removed on drop unless
    /// published. It lives where `put` can publish it cheaply (for local files: beside it).
    fn stage(&self, name: &str) -> io::Result<(File, TempGuard)>;

    /// Publishes the fsynced local file `src` as `name` (replacing any object of that name)
    /// and makes it durable. `src` is consumed.
    fn put(&self, src: &Path, name: &str) -> io::Result<()>;

    /// The object's bytes for reading whole or by range; `hot` asks to load it all at once
    /// (blobs, served repeatedly) rather than on demand (assets).
    fn open(&self, name: &str, hot: bool) -> io::Result<Mapped>;

    /// The object's size, `None` if it does not exist.
    fn len(&self, name: &str) -> io::Result<Option<u64>>;

    /// Removes the object (a missing one is fine).
    fn delete(&self, name: &str) -> io::Result<()>;

    /// Removes every object whose name starts with `prefix/`.
    fn delete_prefix(&self, prefix: &str) -> io::Result<()>;

    /// The names of every stored object for which `ours` holds (given the name's segments),
    /// at most `depth` segments deep; scratch files are never listed.
    fn scan(&self, depth: usize, ours: &dyn Fn(&[String]) -> bool) -> Vec<String>;

    /// Bytes an unprivileged writer can still store (health turns degraded when low).
    fn free_bytes(&self) -> io::Result<u64>;

    /// Puts the object's bytes at the local path `dest` (which must not exist), as cheaply as
    /// the backend can: a backup pins what its snapshot refers to this way, so a later delete
    /// or GC of the object cannot take the bytes from under it.
    fn export(&self, name: &str, dest: &Path) -> io::Result<()>;

    /// The object's bytes as the store holds them, past any local cache: fsck re-hashes
    /// these, so that damage in the backing store itself is found.
    fn open_fresh(&self, name: &str) -> io::Result<Mapped> {
        self.open(name, false)
    }

    /// A short-lived URL a client can download the object from directly, when the backend
    /// offers one and is configured to (`--s3-redirect`); `None` means serve the bytes.
    fn presign(&self, _name: &str) -> io::Result<Option<String>> {
        Ok(None)
    }

    /// Whether downloads are redirected (`presign` gives URLs): a cheap check before the
    /// lookups a redirect needs.
    fn redirects(&self) -> bool {
        false
    }

    /// Which backend new objects go to (`local`, `s3`), as `--storage` names it.
    fn kind(&self) -> &'static str {
        "local"
    }

    /// Moves every object of the store this one replaces (`tiered::ReadThrough`) into it:
    /// copy, verify, then remove the original. Only names `ours` accepts, at most `depth`
    /// segments deep. `None`: no move is under way (a plain backend).
    fn absorb_previous(
        &self,
        _depth: usize,
        _ours: &dyn Fn(&[String]) -> bool,
    ) -> io::Result<Option<Moved>> {
        Ok(None)
    }
}

/// What `absorb_previous` moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Objects copied, verified and removed locally.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Scratch files start with this prefix; `scan` skips them and `LocalFs::open` purges them.
const SCRATCH_PREFIX: &str = ".tmp-";

/// The local filesystem backend: an object is the file `root/<name>`, published by rename
/// (read-only, fsynced, directory fsynced) and read through a memory map.
pub struct LocalFs {
    root: PathBuf,
}

impl LocalFs {
    /// Opens (creating) the namespace rooted at `root` and removes scratch files a crash left
    /// up to `depth` directories deep.
    pub fn open(root: &Path, depth: u32) -> io::Result<LocalFs> {
        fs::create_dir_all(root)?;
        purge_scratch(root, depth);
        Ok(LocalFs {
            root: root.to_path_buf(),
        })
    }

    /// The file of an object. Names come from the typed facades, built from validated ids
    /// only, so they never contain `..` or an absolute path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn purge_scratch(dir: &Path, depth: u32) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if depth > 0 {
                purge_scratch(&p, depth - 1);
            }
        } else if e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) {
            let _ = fs::remove_file(p);
        }
    }
}

fn missing_is_fine(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl ByteStore for LocalFs {
    fn stage(&self, name: &str) -> io::Result<(File, TempGuard)> {
        let dir = match self.path(name).parent() {
            Some(d) => d.to_path_buf(),
            None => self.root.clone(),
        };
        fs::create_dir_all(&dir)?;
        let mut rnd = [0u8; 12];
        crate::util::fill_random(&mut rnd);
        let path = dir.join(format!("{SCRATCH_PREFIX}{}", hex::encode(rnd)));
        let file = File::create_new(&path)?;
        Ok((file, TempGuard::new(path)))
    }

    fn put(&self, src: &Path, name: &str) -> io::Result<()> {
        let dst = self.path(name);
        let dir = dst.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&dir)?;
        let mut perm = fs::metadata(src)?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(src, perm)?;
        fs::rename(src, &dst)?;
        fsync_dir(&dir)
    }

    fn open(&self, name: &str, hot: bool) -> io::Result<Mapped> {
        Mapped::open_with(&self.path(name), hot)
    }

    fn len(&self, name: &str) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(name)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        missing_is_fine(fs::remove_file(self.path(name)))
    }

    fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        missing_is_fine(fs::remove_dir_all(self.path(prefix)))
    }

    fn scan(&self, depth: usize, ours: &dyn Fn(&[String]) -> bool) -> Vec<String> {
        fn walk(
            dir: &Path,
            depth: usize,
            rel: &mut Vec<String>,
            ours: &dyn Fn(&[String]) -> bool,
            out: &mut Vec<String>,
        ) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let Ok(t) = e.file_type() else { continue };
                rel.push(e.file_name().to_string_lossy().into_owned());
                if t.is_dir() {
                    if rel.len() < depth {
                        walk(&e.path(), depth, rel, ours, out);
                    }
                } else if t.is_file()
                    && !rel[rel.len() - 1].starts_with(SCRATCH_PREFIX)
                    && ours(rel)
                {
                    out.push(rel.join("/"));
                }
                rel.pop();
            }
        }
        let mut out = Vec::new();
        walk(&self.root, depth, &mut Vec::new(), ours, &mut out);
        out
    }

    fn free_bytes(&self) -> io::Result<u64> {
        super::free_bytes(&self.root)
    }

    fn export(&self, name: &str, dest: &Path) -> io::Result<()> {
        let src = self.path(name);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        // A hard link shares the immutable file; another filesystem gets a copy.
        match fs::hard_link(&src, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                fs::copy(&src, dest)?;
                File::open(dest)?.sync_all()
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_put_object_is_whole_read_only_and_listed_while_scratch_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFs::open(dir.path(), 3).unwrap();
        let (mut f, guard) = store.stage("a/b/obj").unwrap();
        f.write_all(b"hello").unwrap();
        f.sync_all().unwrap();
        // An unpublished scratch file is invisible to scan and len.
        assert!(store.scan(3, &|_| true).is_empty());
        assert_eq!(store.len("a/b/obj").unwrap(), None);
        store.put(guard.path(), "a/b/obj").unwrap();
        let _ = guard.keep();
        assert_eq!(store.len("a/b/obj").unwrap(), Some(5));
        assert_eq!(
            &store.open("a/b/obj", false).unwrap().slice(1, 4)[..],
            b"ell"
        );
        assert!(fs::metadata(store.path("a/b/obj"))
            .unwrap()
            .permissions()
            .readonly());
        assert_eq!(store.scan(3, &|_| true), vec!["a/b/obj".to_string()]);
        assert!(store.scan(3, &|rel| rel.len() == 2).is_empty());
        store.delete("a/b/obj").unwrap();
        store.delete("a/b/obj").unwrap();
        store.delete_prefix("a").unwrap();
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn scratch_files_a_crash_left_are_purged_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("x/y")).unwrap();
        fs::write(dir.path().join("x/y/.tmp-abc"), b"half").unwrap();
        fs::write(dir.path().join("x/y/keep"), b"row").unwrap();
        LocalFs::open(dir.path(), 3).unwrap();
        assert!(!dir.path().join("x/y/.tmp-abc").exists());
        assert!(dir.path().join("x/y/keep").exists());
    }
}
