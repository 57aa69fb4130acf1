//! Source archives of a tag (`git archive`, like GitHub's "Source code" links), cached on disk
//! by commit: `$DATA_DIR/archives/<owner>/<repo>/<commit>-<prefix hash>.<ext>`. A commit names
//! its tree exactly, so a cached file never goes stale; the prefix directory (repository and
//! tag name) is part of the key because it is part of the bytes.
//!
//! A miss runs the system `git archive` once and tees its output: every chunk goes to the
//! client as it is produced and into a scratch file, which is fsynced and renamed into place
//! when git succeeds (a client that hangs up does not stop the cache write). The cache is
//! bounded: after each new file the oldest files (by last use) are removed past
//! [`CACHE_MAX_BYTES`]; a hit refreshes its file's modification time.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{is_full_sha, GitError, GitStore};
use crate::ids::{GitTagName, RepoPath};
use crate::storage::mmap::Mapped;

/// Total size the archive cache keeps; the least recently used files go first past it.
pub const CACHE_MAX_BYTES: u64 = 1 << 30;

/// Scratch files older than this are leftovers of a crash (a live one is written in seconds).
const STALE_SCRATCH: Duration = Duration::from_secs(3600);

/// `git archive` runs at once per server; more requests wait for a slot (then 503).
const JOBS_MAX: usize = 4;

/// How long a request waits for a slot, or for the same archive another request is making.
const JOB_WAIT: Duration = Duration::from_secs(60);

/// Chunks in flight between `git archive` and a slow client before the reader waits.
const CHANNEL_CHUNKS: usize = 16;

/// What a chunk of a streamed archive is.
pub type Chunk = std::io::Result<Bytes>;

/// The two formats GitHub offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `.tar.gz`.
    TarGz,
    /// `.zip`.
    Zip,
}

impl ArchiveFormat {
    /// The file extension, which is also `git archive --format`.
    pub fn ext(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Zip => "zip",
        }
    }

    /// The media type of the file.
    pub fn content_type(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "application/gzip",
            ArchiveFormat::Zip => "application/zip",
        }
    }

    /// Splits `name.tar.gz` / `name.zip` into the name and the format.
    pub fn split(file: &str) -> Option<(&str, ArchiveFormat)> {
        if let Some(stem) = file.strip_suffix(".tar.gz") {
            Some((stem, ArchiveFormat::TarGz))
        } else {
            file.strip_suffix(".zip").map(|s| (s, ArchiveFormat::Zip))
        }
    }

    /// Parses `tar.gz` / `zip` (also `tgz`), as the CLI's `--archive` takes it.
    pub fn parse(s: &str) -> Option<ArchiveFormat> {
        match s {
            "tar.gz" | "tgz" => Some(ArchiveFormat::TarGz),
            "zip" => Some(ArchiveFormat::Zip),
            _ => None,
        }
    }
}

/// GitHub's name for a tag's archive and its top directory: `<repo>-<tag>`, a leading `v`
/// before a digit dropped (`v1.2.0` -> `pfai-1.2.0`), `/` in the tag as `-`.
pub fn archive_stem(repo_name: &str, tag: &GitTagName) -> String {
    let t = tag.as_str();
    let t = match t.strip_prefix('v') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => t,
    };
    format!("{repo_name}-{}", t.replace('/', "-"))
}

/// The archives being made now (by cache path), so that concurrent requests for one archive
/// run git once (the others wait and read the cache) and at most [`JOBS_MAX`] run at all.
#[derive(Clone, Default)]
pub struct Jobs(Arc<(Mutex<HashSet<PathBuf>>, Condvar)>);

/// A slot in [`Jobs`] for one archive, given back when dropped (the job ended either way).
struct Claim {
    jobs: Jobs,
    path: PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let (set, cv) = &*self.jobs.0;
        set.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.path);
        cv.notify_all();
    }
}

impl Jobs {
    /// A slot to make `path`, or `None` once it exists (made by someone else meanwhile);
    /// `Busy` when no slot frees up in time.
    fn claim(&self, path: &Path) -> Result<Option<Claim>, GitError> {
        let deadline = Instant::now() + JOB_WAIT;
        let (set, cv) = &*self.0;
        let mut running = set.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if path.exists() {
                return Ok(None);
            }
            if !running.contains(path) && running.len() < JOBS_MAX {
                running.insert(path.to_path_buf());
                return Ok(Some(Claim {
                    jobs: self.clone(),
                    path: path.to_path_buf(),
                }));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(GitError::Busy(
                    "too many source archives are being made; try again shortly".into(),
                ));
            }
            running = cv
                .wait_timeout(running, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// An archive ready to send.
pub enum Archive {
    /// A complete file from the cache (ranges and `HEAD` work on it).
    Cached(Mapped),
    /// Produced now: chunks as `git archive` writes them; an `Err` chunk means it failed
    /// midway (the response must be cut, not completed).
    Streaming(tokio::sync::mpsc::Receiver<Chunk>),
}

impl GitStore {
    /// `$DATA_DIR/archives`.
    fn archive_root(&self) -> PathBuf {
        self.root.with_file_name("archives")
    }

    /// `archives/<owner>/<repo>`.
    fn archive_dir(&self, repo: &RepoPath) -> PathBuf {
        self.archive_root()
            .join(repo.owner.as_str())
            .join(repo.name.as_str())
    }

    /// Removes a repository's cached archives (with the repository).
    pub(super) fn remove_archives(&self, repo: &RepoPath) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.archive_dir(repo)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The archive of `commit` with top directory `stem/`: from the cache, or made now. With
    /// `stream` a miss is streamed while it is written; without, it is written first and served
    /// from the cache (for `HEAD` and ranges, which need the size).
    pub fn archive(
        &self,
        repo: &RepoPath,
        commit: &str,
        format: ArchiveFormat,
        stem: &str,
        stream: bool,
    ) -> Result<Archive, GitError> {
        if !is_full_sha(commit) {
            return Err(GitError::Command("archive needs a full commit id".into()));
        }
        let dir = self.archive_dir(repo);
        let key = hex::encode(&Sha256::digest(stem.as_bytes())[..8]);
        let path = dir.join(format!("{commit}-{key}.{}", format.ext()));
        if let Some(hit) = cached(&path)? {
            return Ok(hit);
        }
        let Some(claim) = self.archive_jobs.claim(&path)? else {
            // Another request made it while this one waited.
            return cached(&path)?.ok_or_else(|| GitError::Command("archive vanished".into()));
        };
        std::fs::create_dir_all(&dir)?;
        let job = Job {
            _claim: claim,
            git: self.clone(),
            repo: repo.clone(),
            commit: commit.to_owned(),
            format,
            stem: stem.to_owned(),
            path,
        };
        if !stream {
            let path = job.path.clone();
            job.run(|_| true)?;
            return Ok(Archive::Cached(Mapped::open(&path)?));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(CHANNEL_CHUNKS);
        std::thread::Builder::new()
            .name("git-archive".into())
            .spawn(move || {
                let mut open = true;
                let out = job.run(|chunk| {
                    // A client that left stops the stream, not the cache write.
                    if open && tx.blocking_send(Ok(Bytes::copy_from_slice(chunk))).is_err() {
                        open = false;
                    }
                    true
                });
                if let Err(e) = out {
                    tracing::warn!(error = %e, "git archive failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            })?;
        Ok(Archive::Streaming(rx))
    }
}

/// The cached archive at `path`, its last use refreshed (for eviction).
fn cached(path: &Path) -> Result<Option<Archive>, GitError> {
    match std::fs::File::options().write(true).open(path) {
        Ok(file) => {
            // A failure only makes eviction less fair.
            let _ = file.set_modified(SystemTime::now());
            Ok(Some(Archive::Cached(Mapped::open(path)?)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One `git archive` run into the cache.
struct Job {
    /// Held until the run ends.
    _claim: Claim,
    git: GitStore,
    repo: RepoPath,
    commit: String,
    format: ArchiveFormat,
    stem: String,
    path: PathBuf,
}

impl Job {
    /// Runs git, handing each chunk to `sink` while writing it to a scratch file, then publishes
    /// the file atomically (fsync, rename, fsync of the directory) and trims the cache.
    fn run(self, mut sink: impl FnMut(&[u8]) -> bool) -> Result<(), GitError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = self
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let scratch = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.write(&scratch, &mut sink);
        if result.is_err() {
            let _ = std::fs::remove_file(&scratch);
            return result;
        }
        std::fs::rename(&scratch, &self.path)?;
        crate::storage::fsync_dir(&dir)?;
        if let Err(e) = evict(&self.git.archive_root(), &self.path, CACHE_MAX_BYTES) {
            tracing::warn!(error = %e, "trimming the archive cache failed");
        }
        Ok(())
    }

    fn write(&self, scratch: &Path, sink: &mut impl FnMut(&[u8]) -> bool) -> Result<(), GitError> {
        let mut file = std::fs::File::create_new(scratch)?;
        let mut c = self.git.git(&self.git.repo_dir(&self.repo));
        c.arg("archive")
            .arg(format!("--format={}", self.format.ext()))
            .arg(format!("--prefix={}/", self.stem))
            .arg("--end-of-options")
            .arg(&self.commit)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| GitError::Command("git archive has no stdout".into()))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.into());
                }
            };
            if let Err(e) = file.write_all(&buf[..n]) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
            sink(&buf[..n]);
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(GitError::Command(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        file.sync_all()?;
        Ok(())
    }
}

/// Removes the least recently used archives until the cache holds at most `max` bytes (never
/// `keep`, the file just written), and scratch files a crash left behind.
fn evict(root: &Path, keep: &Path, max: u64) -> std::io::Result<()> {
    let mut files = Vec::new();
    let now = SystemTime::now();
    for owner in std::fs::read_dir(root)? {
        let owner = owner?.path();
        if !owner.is_dir() {
            continue;
        }
        for repo in std::fs::read_dir(&owner)? {
            let repo = repo?.path();
            if !repo.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&repo)? {
                let f = f?;
                let meta = f.metadata()?;
                let used = meta.modified().unwrap_or(now);
                if f.file_name().to_string_lossy().starts_with(".tmp-") {
                    if now.duration_since(used).unwrap_or_default() > STALE_SCRATCH {
                        let _ = std::fs::remove_file(f.path());
                    }
                    continue;
                }
                files.push((used, meta.len(), f.path()));
            }
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort_by_key(|f| f.0);
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => total = total.saturating_sub(len),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_stem_drops_a_version_v_like_github() {
        let t = |s| GitTagName::parse(s).unwrap();
        assert_eq!(archive_stem("pfai", &t("v1.2.0")), "pfai-1.2.0");
        assert_eq!(archive_stem("pfai", &t("1.2.0")), "pfai-1.2.0");
        assert_eq!(archive_stem("pfai", &t("very")), "pfai-very");
        assert_eq!(archive_stem("pfai", &t("release/v2")), "pfai-release-v2");
    }

    #[test]
    fn archive_names_parse_both_formats_only() {
        assert_eq!(
            ArchiveFormat::split("v1.tar.gz"),
            Some(("v1", ArchiveFormat::TarGz))
        );
        assert_eq!(
            ArchiveFormat::split("v1.zip"),
            Some(("v1", ArchiveFormat::Zip))
        );
        assert_eq!(ArchiveFormat::split("v1.tar"), None);
    }

    #[test]
    fn eviction_keeps_the_newest_file_and_drops_the_oldest_past_the_bound() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("o").join("r");
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("a.zip");
        let new = dir.join("b.zip");
        std::fs::write(&old, [0u8; 100]).unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        std::fs::write(&new, [0u8; 100]).unwrap();
        evict(root.path(), &new, 150).unwrap();
        assert!(!old.exists());
        assert!(new.exists());
    }
}
