//! A byte store in the middle of a move between backends (`pfai storage migrate`): writes go
//! to the new store, reads fall through to the previous one for objects not moved yet, and
//! `absorb_previous` moves them one at a time (copy, verify, remove), so that at no moment is
//! an object in neither place and the server serves throughout.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use super::blob::{hash_mapped, TempGuard};
use super::bytes::{ByteStore, Moved};
use super::mmap::Mapped;
use crate::ids::{Algorithm, Digest, Hasher};

/// `current` backed by `previous` (see the module doc).
pub struct ReadThrough {
    current: Arc<dyn ByteStore>,
    previous: Arc<dyn ByteStore>,
}

impl ReadThrough {
    /// Writes to `current`; reads what `current` lacks from `previous`.
    pub fn new(current: Arc<dyn ByteStore>, previous: Arc<dyn ByteStore>) -> ReadThrough {
        ReadThrough { current, previous }
    }
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn sha256_of(data: &Mapped) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    hash_mapped(&mut h, data);
    h.digest()
}

impl ByteStore for ReadThrough {
    fn stage(&self, name: &str) -> io::Result<(File, TempGuard)> {
        self.current.stage(name)
    }

    fn put(&self, src: &Path, name: &str) -> io::Result<()> {
        self.current.put(src, name)
    }

    fn open(&self, name: &str, hot: bool) -> io::Result<Mapped> {
        match self.current.open(name, hot) {
            Err(e) if not_found(&e) => self.previous.open(name, hot),
            r => r,
        }
    }

    fn open_fresh(&self, name: &str) -> io::Result<Mapped> {
        match self.current.open_fresh(name) {
            Err(e) if not_found(&e) => self.previous.open_fresh(name),
            r => r,
        }
    }

    fn len(&self, name: &str) -> io::Result<Option<u64>> {
        match self.current.len(name)? {
            Some(n) => Ok(Some(n)),
            None => self.previous.len(name),
        }
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        self.previous.delete(name)?;
        self.current.delete(name)
    }

    fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        self.previous.delete_prefix(prefix)?;
        self.current.delete_prefix(prefix)
    }

    fn scan(&self, depth: usize, ours: &dyn Fn(&[String]) -> bool) -> Vec<String> {
        let mut out = self.current.scan(depth, ours);
        out.extend(self.previous.scan(depth, ours));
        out.sort();
        out.dedup();
        out
    }

    fn free_bytes(&self) -> io::Result<u64> {
        self.current.free_bytes()
    }

    fn export(&self, name: &str, dest: &Path) -> io::Result<()> {
        match self.current.export(name, dest) {
            Err(e) if not_found(&e) => self.previous.export(name, dest),
            r => r,
        }
    }

    fn presign(&self, name: &str) -> io::Result<Option<String>> {
        // Not moved yet (still in the previous store): served from there. Asked only when
        // the current store redirects, so the common case costs no lookup.
        if !self.current.redirects() || self.previous.len(name)?.is_some() {
            return Ok(None);
        }
        self.current.presign(name)
    }

    fn redirects(&self) -> bool {
        self.current.redirects()
    }

    fn kind(&self) -> &'static str {
        self.current.kind()
    }

    fn absorb_previous(
        &self,
        depth: usize,
        ours: &dyn Fn(&[String]) -> bool,
    ) -> io::Result<Option<Moved>> {
        let mut moved = Moved::default();
        for name in self.previous.scan(depth, ours) {
            let data = match self.previous.open_fresh(&name) {
                Ok(d) => d,
                // Deleted (GC, a release removed) since the scan: nothing to move.
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            let (mut file, guard) = self.current.stage(&name)?;
            let mut at = 0;
            while at < data.len() {
                let end = (at + (1 << 20)).min(data.len());
                file.write_all(&data.slice(at, end))?;
                at = end;
            }
            file.sync_all()?;
            drop(file);
            self.current.put(guard.path(), &name)?;
            guard.keep();
            // Verified: the new store's bytes hash like the previous store's.
            if sha256_of(&self.current.open_fresh(&name)?) != sha256_of(&data) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{name}: the copy differs from the original"),
                ));
            }
            self.previous.delete(&name)?;
            moved.objects += 1;
            moved.bytes += data.len();
        }
        Ok(Some(moved))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::bytes::LocalFs;

    fn put(store: &dyn ByteStore, name: &str, data: &[u8]) {
        let (mut f, guard) = store.stage(name).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
        store.put(guard.path(), name).unwrap();
        guard.keep();
    }

    #[test]
    fn reads_fall_through_until_absorb_moves_every_object_and_writes_go_to_the_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let old: Arc<dyn ByteStore> = Arc::new(LocalFs::open(&dir.path().join("old"), 3).unwrap());
        let new: Arc<dyn ByteStore> = Arc::new(LocalFs::open(&dir.path().join("new"), 3).unwrap());
        put(old.as_ref(), "a/b/one", b"first");
        let t = ReadThrough::new(new.clone(), old.clone());
        assert_eq!(&t.open("a/b/one", false).unwrap().slice(0, 5)[..], b"first");
        assert_eq!(t.len("a/b/one").unwrap(), Some(5));
        put(&t, "a/b/two", b"second");
        assert_eq!(new.len("a/b/two").unwrap(), Some(6));
        assert_eq!(old.len("a/b/two").unwrap(), None);
        assert_eq!(t.scan(3, &|_| true), vec!["a/b/one", "a/b/two"]);
        let moved = t.absorb_previous(3, &|_| true).unwrap().unwrap();
        assert_eq!((moved.objects, moved.bytes), (1, 5));
        assert_eq!(old.len("a/b/one").unwrap(), None);
        assert_eq!(
            &new.open("a/b/one", false).unwrap().slice(0, 5)[..],
            b"first"
        );
        assert_eq!(
            t.absorb_previous(3, &|_| true).unwrap().unwrap(),
            Moved::default()
        );
        t.delete("a/b/one").unwrap();
        assert_eq!(t.len("a/b/one").unwrap(), None);
    }
}
