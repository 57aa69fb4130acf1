//! Read-only memory maps of finalized files. This is the crate's only `unsafe`.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

/// A finalized file's bytes, mapped. Empty files are not mapped (mapping zero bytes fails).
#[derive(Clone)]
pub enum Mapped {
    /// A zero-length file.
    Empty,
    /// The mapped pages, shared by every response that serves them.
    Map(Arc<memmap2::Mmap>),
    /// Small content already in memory (a generated blob), served through the same range and
    /// HEAD logic as a file.
    Owned(Bytes),
}

impl Mapped {
    /// Maps `path`.
    pub fn open(path: &Path) -> io::Result<Mapped> {
        Self::open_with(path, false)
    }

    /// Maps `path`, with `populate` faulting every page in at once (one kernel call instead of
    /// a fault per 4 KiB page while the response is written).
    pub fn open_with(path: &Path, populate: bool) -> io::Result<Mapped> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(Mapped::Empty);
        }
        let mut opts = memmap2::MmapOptions::new();
        if populate {
            opts.populate();
        }
        // SAFETY: we only map files that were fully written, fsynced and made read-only before
        // being renamed into place (blob store and asset store). pfai never writes to, truncates
        // or rewrites such a file afterwards; deletion only unlinks it, which keeps the pages
        // valid for existing maps. Another process modifying our data directory is outside what
        // we can defend against.
        let map = unsafe { opts.map(&file)? };
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Mapped::Map(Arc::new(map)))
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Mapped::Empty => 0,
            Mapped::Map(m) => m.len() as u64,
            Mapped::Owned(b) => b.len() as u64,
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A zero-copy `Bytes` over `start..end` (clamped to the file).
    pub fn slice(&self, start: u64, end: u64) -> Bytes {
        match self {
            Mapped::Empty => Bytes::new(),
            Mapped::Map(m) => {
                let len = m.len();
                let s = (start as usize).min(len);
                let e = (end as usize).clamp(s, len);
                Bytes::from_owner(MapSlice {
                    map: m.clone(),
                    start: s,
                    end: e,
                })
            }
            Mapped::Owned(b) => {
                let s = (start as usize).min(b.len());
                let e = (end as usize).clamp(s, b.len());
                b.slice(s..e)
            }
        }
    }
}

struct MapSlice {
    map: Arc<memmap2::Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}
