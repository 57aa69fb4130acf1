//! The backup directory: its layout, its manifest, how files enter it (verified while they
//! are written, temp file + fsync + rename, the manifest last) and how a whole backup is
//! verified before a restore writes anything. Shared by the server (which stages a snapshot in
//! the same layout), `pfai backup` (online and offline) and `pfai restore`.
//!
//! Layout of a backup directory (and of a server's staging directory for one snapshot):
//! - `manifest.json`: [`BackupManifest`], written last; a backup without it is unfinished.
//! - `blobs/<alg>/<2 hex>/<hex>`: registry blobs, named by digest, so they are shared by every
//!   backup written into the directory (incremental).
//! - `assets/<owner>/<repo>/<release>/<id>-<name>`: asset files (immutable per id, so also
//!   shared).
//! - `snapshots/<id>/pfai.redb` and `snapshots/<id>/repos/<owner>/<repo>.bundle`: what belongs
//!   to one snapshot. A new backup writes a new `snapshots/<id>/`, so an interrupted one never
//!   damages the previous backup; older snapshot directories are removed once the new manifest
//!   is in place.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::Digest as _;

pub use crate::api::{BackupFile, BackupFileKind, BackupManifest, BackupRepo, BackupReport};
use crate::ids::{Algorithm, Digest, RepoPath};
use crate::storage::blob::BlobStore;
use crate::storage::files::{AssetFiles, AssetKey};
use crate::storage::fsync_dir;

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The backup directory format this binary writes and reads.
pub const FORMAT: u32 = 1;
/// Where servers stage snapshots, under the data directory.
const STAGING_DIR: &str = "backups";
/// Prefix of files being written (never listed in a manifest).
const TMP_PREFIX: &str = ".tmp-";

/// Why a backup or a restore failed; every message names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file of the backup does not match the manifest.
    #[error("the backup is corrupt: {path} {why}")]
    Corrupt {
        /// The file, relative to the backup directory.
        path: String,
        /// What does not match.
        why: String,
    },
    /// A file the manifest lists is absent.
    #[error("the backup is incomplete: {path} is missing")]
    Missing {
        /// The file, relative to the backup directory.
        path: String,
    },
    /// The manifest is absent or unusable, or an argument is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The restore target already holds something.
    #[error("{} is not empty: restore only into a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// Something else failed (the database, git, the server).
    #[error("{context}: {source}")]
    Failed {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl BackupError {
    /// Wraps another layer's error with what was being done.
    pub fn failed(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        BackupError::Failed {
            context: context.into(),
            source: source.into(),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The path of a blob in a backup.
pub fn blob_path(d: &Digest) -> String {
    format!("blobs/{}", BlobStore::name(d))
}

/// The path of an asset file in a backup.
pub fn asset_path(key: &AssetKey) -> String {
    format!("assets/{}", AssetFiles::name(key))
}

/// The path of an attestation key file in a backup (shared by every backup in the directory:
/// a key file never changes under its name).
pub fn attestation_key_path(name: &str) -> String {
    format!("attestation/{name}")
}

/// The path of a snapshot's database.
pub fn database_path(id: &str) -> String {
    format!("snapshots/{id}/pfai.redb")
}

/// The path of a repository's bundle in a snapshot.
pub fn bundle_path(id: &str, repo: &RepoPath) -> String {
    format!(
        "snapshots/{id}/repos/{}/{}.bundle",
        repo.owner.as_str(),
        repo.name.as_str()
    )
}

/// The store-relative name of a blob or asset entry (its path without `blobs/` or `assets/`).
pub fn stored_name(f: &BackupFile) -> Option<&str> {
    match f.kind {
        BackupFileKind::Blob => f.path.strip_prefix("blobs/"),
        BackupFileKind::Asset => f.path.strip_prefix("assets/"),
        BackupFileKind::AttestationKey => f
            .path
            .strip_prefix("attestation/")
            .filter(|n| crate::storage::attest_keys::is_key_file(n)),
        _ => None,
    }
}

/// A path from a manifest, checked: relative, `/`-separated plain names only (no `..`, `.`,
/// empty or hidden temp segments), so neither a damaged backup nor a hostile server can make
/// us read or write outside the directory.
pub fn rel_path(p: &str) -> Result<PathBuf, BackupError> {
    let bad = || BackupError::Invalid(format!("the manifest lists an invalid path {p:?}"));
    if p.is_empty() || p.len() > 4096 || p.contains('\0') || p.contains('\\') {
        return Err(bad());
    }
    let mut out = PathBuf::new();
    for seg in p.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." || seg.starts_with(TMP_PREFIX) {
            return Err(bad());
        }
        out.push(seg);
    }
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    Ok(out)
}

/// Hex SHA-256 and length of a file.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            return Ok((hex::encode(h.finalize()), n));
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
}

/// The SHA-256 a blob file must have: its digest for sha256 blobs (no re-hash), else hashed.
pub fn blob_sha256(d: &Digest, file: &Path) -> io::Result<String> {
    match d.algorithm() {
        Algorithm::Sha256 => Ok(d.hex().to_owned()),
        _ => Ok(hash_file(file)?.0),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    crate::util::fill_random(&mut b);
    hex::encode(b)
}

/// A new snapshot id.
pub fn new_id() -> String {
    random_hex(8)
}

/// Where a server stages its snapshots (`$DATA_DIR/backups/<id>/`, the backup layout).
#[derive(Debug, Clone)]
pub struct Staging {
    root: PathBuf,
}

impl Staging {
    /// Opens the staging area, removing what a previous run left (a snapshot does not outlive
    /// the process that serves it).
    /// `asset_base` may not lie inside it (it would be wiped here).
    pub fn open(data_dir: &Path, asset_base: &Path) -> io::Result<Staging> {
        let root = data_dir.join(STAGING_DIR);
        let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        if canon(asset_base).starts_with(canon(&root)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the asset storage path {} must not lie inside {} (backup staging)",
                    asset_base.display(),
                    root.display()
                ),
            ));
        }
        match fs::remove_dir_all(&root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(Staging { root })
    }

    /// The file of snapshot `id` at manifest path `rel` (validated).
    pub fn file(&self, id: &str, rel: &str) -> Result<PathBuf, BackupError> {
        Ok(self.root.join(id).join(rel_path(rel)?))
    }

    /// Creates the directory of a new snapshot.
    pub fn create(&self, id: &str) -> io::Result<PathBuf> {
        let dir = self.root.join(id);
        fs::create_dir_all(dir.join("snapshots").join(id))?;
        Ok(dir)
    }

    /// Removes a snapshot's directory (its hard links release the files they pinned).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.root.join(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A backup directory being written. It holds `DIR/.lock` (an advisory lock) while it
/// lives: two backups committing into one directory would each remove the other's snapshot.
pub struct Target {
    dir: PathBuf,
    previous: HashMap<String, (String, u64)>,
    _lock: File,
}

impl Target {
    /// Opens (creating) `dir`, remembering the files its current manifest vouches for.
    pub fn open(dir: &Path) -> Result<Target, BackupError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock_path = dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        use rustix::fs::{flock, FlockOperation};
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(BackupError::Invalid(format!(
                "another pfai backup is writing to {}",
                dir.display()
            )));
        }
        let previous = read_manifest(dir)
            .map(|m| {
                m.files
                    .into_iter()
                    .map(|f| (f.path, (f.sha256, f.size)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Target {
            dir: dir.to_owned(),
            previous,
            _lock: lock,
        })
    }

    /// Whether `f` is already in the directory from an earlier backup, so it is not copied
    /// again: a content-addressed sha256 blob of the right size, or a file the previous
    /// manifest listed with the same hash and size. (Restore verifies every file anyway.)
    pub fn has(&self, f: &BackupFile) -> Result<bool, BackupError> {
        let path = self.dir.join(rel_path(&f.path)?);
        let Ok(meta) = fs::metadata(&path) else {
            return Ok(false);
        };
        if !meta.is_file() || meta.len() != f.size {
            return Ok(false);
        }
        let addressed = f.kind == BackupFileKind::Blob
            && f.path.starts_with("blobs/sha256/")
            && f.path.ends_with(&f.sha256);
        let vouched = self
            .previous
            .get(&f.path)
            .is_some_and(|(sha, size)| *sha == f.sha256 && *size == f.size);
        Ok(addressed || vouched)
    }

    /// A writer for `f`: bytes go to a temp file beside its place and are hashed on the way;
    /// `finish` checks them against the manifest entry before the file takes its name.
    pub fn writer(&self, f: &BackupFile) -> Result<FileWriter, BackupError> {
        FileWriter::create(self.dir.join(rel_path(&f.path)?), f)
    }

    /// Writes the manifest (temp + fsync + rename): from here on the backup is complete. Then
    /// removes the snapshot directories of earlier backups.
    pub fn commit(&self, m: &BackupManifest) -> Result<(), BackupError> {
        let path = self.dir.join(MANIFEST);
        let text = serde_json::to_vec_pretty(m)
            .map_err(|e| BackupError::failed("encoding the manifest", e))?;
        write_atomic(&path, &text)?;
        let snaps = self.dir.join("snapshots");
        if let Ok(rd) = fs::read_dir(&snaps) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy() != m.id {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{TMP_PREFIX}{}", random_hex(6)));
    let result = (|| {
        let mut f = File::create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_at(path))
}

/// One file being written into a backup (or a restored data directory), verified against
/// its manifest entry; the temp file is removed if it is dropped unfinished.
pub struct FileWriter {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    hasher: sha2::Sha256,
    written: u64,
    expect: BackupFile,
}

impl FileWriter {
    /// Starts writing `dest`, expected to match `f`.
    pub fn create(dest: PathBuf, f: &BackupFile) -> Result<FileWriter, BackupError> {
        let dir = dest.parent().unwrap_or(Path::new(".")).to_owned();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}", random_hex(6)));
        // A private attestation key is never readable by others, in a backup or restored.
        let mode = if f.kind == BackupFileKind::AttestationKey {
            0o600
        } else {
            0o666
        };
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .map_err(io_at(&tmp))?
        };
        Ok(FileWriter {
            dest,
            tmp,
            file: Some(file),
            hasher: sha2::Sha256::new(),
            written: 0,
            expect: f.clone(),
        })
    }

    /// Appends bytes; more than the manifest's size is refused at once.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        self.written += chunk.len() as u64;
        if self.written > self.expect.size {
            return Err(BackupError::Corrupt {
                path: self.expect.path.clone(),
                why: format!("is longer than the {} bytes listed", self.expect.size),
            });
        }
        self.hasher.update(chunk);
        match self.file.as_mut() {
            Some(f) => f.write_all(chunk).map_err(io_at(&self.tmp)),
            None => Ok(()),
        }
    }

    /// Checks size and SHA-256, then fsyncs and renames into place (directory fsynced).
    pub fn finish(mut self) -> Result<(), BackupError> {
        let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
        check(&self.expect, &sha, self.written)?;
        let file = self.file.take();
        if let Some(f) = file {
            f.sync_all().map_err(io_at(&self.tmp))?;
        }
        fs::rename(&self.tmp, &self.dest).map_err(io_at(&self.dest))?;
        let dir = self.dest.parent().unwrap_or(Path::new("."));
        fsync_dir(dir).map_err(io_at(dir))
    }

    /// Copies a whole local file through the writer.
    pub fn copy_from(mut self, src: &Path) -> Result<(), BackupError> {
        let mut f = File::open(src).map_err(io_at(src))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io_at(src))?;
            if n == 0 {
                break;
            }
            self.write(&buf[..n])?;
        }
        self.finish()
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.tmp.exists() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn check(f: &BackupFile, sha: &str, size: u64) -> Result<(), BackupError> {
    if size != f.size {
        return Err(BackupError::Corrupt {
            path: f.path.clone(),
            why: format!("has {size} bytes, the manifest lists {}", f.size),
        });
    }
    if sha != f.sha256 {
        return Err(BackupError::Corrupt {
            path: f.path.clone(),
            why: format!("has SHA-256 {sha}, the manifest lists {}", f.sha256),
        });
    }
    Ok(())
}

/// Reads and checks `dir/manifest.json` (format, paths, one database, bundles listed).
pub fn read_manifest(dir: &Path) -> Result<BackupManifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackupError::Invalid(format!(
                "{} has no {MANIFEST}: not a backup, or an unfinished one",
                dir.display()
            )))
        }
        Err(e) => return Err(io_at(&path)(e)),
    };
    let m: BackupManifest = serde_json::from_slice(&text).map_err(|e| BackupError::Corrupt {
        path: MANIFEST.into(),
        why: format!("is not a valid manifest: {e}"),
    })?;
    if m.format != FORMAT {
        return Err(BackupError::Invalid(format!(
            "the backup has format {}, this pfai reads format {FORMAT}",
            m.format
        )));
    }
    let mut seen = HashSet::new();
    for f in &m.files {
        rel_path(&f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(BackupError::Invalid(format!(
                "the manifest lists {} twice",
                f.path
            )));
        }
        if matches!(
            f.kind,
            BackupFileKind::Blob | BackupFileKind::Asset | BackupFileKind::AttestationKey
        ) && stored_name(f).is_none()
        {
            return Err(BackupError::Invalid(format!(
                "the manifest lists {} in the wrong place",
                f.path
            )));
        }
    }
    let databases = m
        .files
        .iter()
        .filter(|f| f.kind == BackupFileKind::Database)
        .count();
    if databases != 1 {
        return Err(BackupError::Invalid(format!(
            "the manifest lists {databases} databases, not one"
        )));
    }
    for r in &m.repos {
        RepoPath::parse_key(&r.repo)
            .map_err(|_| BackupError::Invalid(format!("invalid repository {:?}", r.repo)))?;
        if let Some(b) = &r.bundle {
            if !m
                .files
                .iter()
                .any(|f| f.kind == BackupFileKind::Bundle && &f.path == b)
            {
                return Err(BackupError::Invalid(format!(
                    "the bundle {b} of {} is not among the files",
                    r.repo
                )));
            }
        }
    }
    Ok(m)
}

/// Verifies a whole backup: the manifest, then every file it lists (present, size, SHA-256).
/// Nothing is written. The first bad file is named in the error.
pub fn verify(dir: &Path) -> Result<BackupManifest, BackupError> {
    let m = read_manifest(dir)?;
    for f in &m.files {
        let path = dir.join(rel_path(&f.path)?);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(BackupError::Missing {
                    path: f.path.clone(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BackupError::Missing {
                    path: f.path.clone(),
                })
            }
            Err(e) => return Err(io_at(&path)(e)),
        }
        let (sha, size) = hash_file(&path).map_err(io_at(&path))?;
        check(f, &sha, size)?;
    }
    Ok(m)
}

/// Copies a verified backup file to `dest`, checking it again on the way (it may have changed
/// since `verify`), read-only like the stores' files.
pub fn restore_file(from: &Path, f: &BackupFile, dest: PathBuf) -> Result<(), BackupError> {
    let src = from.join(rel_path(&f.path)?);
    let readonly = matches!(f.kind, BackupFileKind::Blob | BackupFileKind::Asset);
    let dest2 = dest.clone();
    FileWriter::create(dest, f)?.copy_from(&src)?;
    if readonly {
        let mut perm = fs::metadata(&dest2).map_err(io_at(&dest2))?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(&dest2, perm).map_err(io_at(&dest2))?;
    }
    Ok(())
}

/// The database file of a data directory.
pub fn database_file(data_dir: &Path) -> PathBuf {
    data_dir.join("pfai.redb")
}

/// The asset base of a data directory when `--asset-storage-path` is not given.
pub fn default_asset_base(data_dir: &Path) -> PathBuf {
    data_dir.join("assets")
}

/// Where a restore puts a database, blob or asset file of the backup (`None`: a bundle,
/// which git unpacks instead): the stores' own layout under `data_dir` and `asset_base`.
pub fn restore_dest(
    data_dir: &Path,
    asset_base: &Path,
    f: &BackupFile,
) -> Result<Option<PathBuf>, BackupError> {
    let name = || {
        stored_name(f)
            .ok_or_else(|| BackupError::Invalid(format!("{} is in the wrong place", f.path)))
            .and_then(rel_path)
    };
    Ok(match f.kind {
        BackupFileKind::Database => Some(database_file(data_dir)),
        BackupFileKind::Blob => Some(data_dir.join("blobs").join(name()?)),
        BackupFileKind::Asset => Some(asset_base.join(name()?)),
        BackupFileKind::Bundle => None,
        BackupFileKind::AttestationKey => {
            Some(crate::storage::attest_keys::dir_of(data_dir).join(name()?))
        }
    })
}

/// A file of the backup in `dir`, by its (validated) manifest path.
pub fn file_in(dir: &Path, rel: &str) -> Result<PathBuf, BackupError> {
    Ok(dir.join(rel_path(rel)?))
}

/// Whether `dir` is absent or an empty directory (a restore target).
pub fn is_absent_or_empty(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_at(dir)(e)),
    }
}

/// A sibling of `dir` to build a restore in (`.<name>.tmp-<random>`), renamed onto `dir` when
/// complete.
pub fn sibling_tmp(dir: &Path) -> Result<PathBuf, BackupError> {
    let name = dir
        .file_name()
        .ok_or_else(|| BackupError::Invalid(format!("{} has no name", dir.display())))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_at(&parent))?;
    Ok(parent.join(format!(
        ".{}{TMP_PREFIX}{}",
        name.to_string_lossy(),
        random_hex(6)
    )))
}

/// Moves a finished restore directory onto `dir` (absent or empty) and makes it durable.
pub fn move_into_place(tmp: &Path, dir: &Path) -> Result<(), BackupError> {
    fs::rename(tmp, dir).map_err(io_at(dir))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    fsync_dir(&parent).map_err(io_at(&parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_cannot_leave_the_directory() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "blobs/.tmp-x",
        ] {
            assert!(rel_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            rel_path("assets/o/r/1/2-a b.txt").unwrap(),
            PathBuf::from("assets/o/r/1/2-a b.txt")
        );
    }

    #[test]
    fn an_attestation_key_entry_restores_only_into_the_key_directory_and_0600() {
        let key = |path: &str| BackupFile {
            path: path.into(),
            kind: BackupFileKind::AttestationKey,
            sha256: hex::encode(sha2::Sha256::digest(b"k")),
            size: 1,
        };
        let data = Path::new("/d");
        for bad in [
            "attestation/other",
            "attestation/sub/key-ab.pk8",
            "assets/key-ab.pk8",
            "key-ab.pk8",
        ] {
            assert!(stored_name(&key(bad)).is_none(), "{bad}");
            assert!(restore_dest(data, data, &key(bad)).is_err(), "{bad}");
        }
        let dest = restore_dest(data, data, &key("attestation/key-ab.pk8"))
            .unwrap()
            .unwrap();
        assert_eq!(dest, PathBuf::from("/d/attestation/key-ab.pk8"));
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            FileWriter::create(dir.path().join("k"), &key("attestation/key-ab.pk8")).unwrap();
        w.write(b"k").unwrap();
        w.finish().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn two_backups_cannot_write_one_directory_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = Target::open(dir.path()).unwrap();
        let err = Target::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("another pfai backup"), "{err}");
        drop(first);
        assert!(Target::open(dir.path()).is_ok());
    }

    #[test]
    fn a_file_that_does_not_match_its_entry_never_takes_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = BackupFile {
            path: "x".into(),
            kind: BackupFileKind::Asset,
            sha256: hex::encode(sha2::Sha256::digest(b"hello")),
            size: 5,
        };
        let mut w = FileWriter::create(dir.path().join("x"), &f).unwrap();
        w.write(b"hellO").unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("x has SHA-256"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut w = FileWriter::create(dir.path().join("x"), &f).unwrap();
        w.write(b"hello").unwrap();
        w.finish().unwrap();
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"hello");
    }
}
