//! Release asset files at the seed's layout,
//! `<base>/<owner>/<repo>/<release-id>/<asset-id>-<filename>`, with the same atomic write
//! discipline as blobs: a temp file beside the final place, fsync, rename, fsync dir.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::blob::TempGuard;
use super::fsync_dir;
use crate::ids::{AssetName, RepoPath};

/// Longest file name the file systems we run on accept (`NAME_MAX`).
pub const MAX_FILE_NAME: usize = 255;

/// The on-disk name of an asset: `<asset-id>-<name>` (the seed's layout) when that fits in
/// `MAX_FILE_NAME` bytes; otherwise the name is cut at a char boundary so that it fits (the real
/// name lives in the row, and the id alone keeps the file name unique in its release). Names
/// that fit keep the old layout, so existing data dirs resolve unchanged.
pub fn file_name(asset_id: u64, name: &str) -> String {
    let prefix = format!("{asset_id}-");
    let room = MAX_FILE_NAME.saturating_sub(prefix.len());
    let mut end = name.len().min(room);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{prefix}{}", &name[..end])
}

/// The asset store rooted at `ASSET_STORAGE_PATH` (or `$DATA_DIR/assets`).
#[derive(Clone)]
pub struct AssetFiles {
    base: PathBuf,
}

impl AssetFiles {
    /// Opens the store, creating its base directory and removing temp files left by a crash.
    pub fn open(base: &Path) -> io::Result<Self> {
        fs::create_dir_all(base)?;
        let this = AssetFiles {
            base: base.to_path_buf(),
        };
        this.purge_temp(base, 0);
        Ok(this)
    }

    fn purge_temp(&self, dir: &Path, depth: u32) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if depth < 3 {
                    self.purge_temp(&p, depth + 1);
                }
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(p);
            }
        }
    }

    /// The directory of one release's assets. Both path components are validated names and
    /// the release id is a number, so the result is always under `base`.
    pub fn release_dir(&self, repo: &RepoPath, release_id: u64) -> PathBuf {
        self.base
            .join(repo.owner.as_str())
            .join(repo.name.as_str())
            .join(release_id.to_string())
    }

    /// The final path of an asset: the one function every reader, writer, deleter and fsck
    /// uses to find an asset's file, deterministic from (release, asset id, name).
    pub fn path(
        &self,
        repo: &RepoPath,
        release_id: u64,
        asset_id: u64,
        name: &AssetName,
    ) -> PathBuf {
        self.release_dir(repo, release_id)
            .join(file_name(asset_id, name.as_str()))
    }

    /// Creates a temp file in the release directory, removed on drop unless published.
    pub fn create_temp(&self, repo: &RepoPath, release_id: u64) -> io::Result<(File, TempGuard)> {
        let dir = self.release_dir(repo, release_id);
        fs::create_dir_all(&dir)?;
        let mut rnd = [0u8; 12];
        crate::util::fill_random(&mut rnd);
        let path = dir.join(format!(".tmp-{}", hex::encode(rnd)));
        let file = File::create_new(&path)?;
        Ok((file, TempGuard::new(path)))
    }

    /// Renames a fsynced temp file to its final place, read-only, and fsyncs the directory.
    pub fn publish(&self, temp: TempGuard, dst: &Path) -> io::Result<()> {
        let mut perm = fs::metadata(temp.path())?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(temp.path(), perm)?;
        fs::rename(temp.path(), dst)?;
        temp.keep();
        if let Some(dir) = dst.parent() {
            fsync_dir(dir)?;
        }
        Ok(())
    }

    /// Every file under the base (at most four levels deep: `<owner>/<repo>/<release>/<file>`)
    /// except in-flight temp files, for fsck to match against the rows.
    pub fn list_files(&self) -> Vec<PathBuf> {
        // Only paths of the asset layout: `<owner>/<repo>/<release-id>/<asset-id>[-<name>]`
        // with valid names and numeric ids. Anything else under the base (an operator's file,
        // `lost+found`, another program's data) is not ours to judge or remove.
        fn ours(rel: &[String]) -> bool {
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            match rel {
                [owner, repo, release, file] => {
                    let id = file.split_once('-').map_or(file.as_str(), |(id, _)| id);
                    crate::ids::Slug::parse(owner).is_ok()
                        && crate::ids::Slug::parse(repo).is_ok()
                        && digits(release)
                        && digits(id)
                }
                _ => false,
            }
        }
        fn walk(dir: &Path, rel: &mut Vec<String>, out: &mut Vec<PathBuf>) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(t) = e.file_type() else { continue };
                let name = e.file_name().to_string_lossy().into_owned();
                rel.push(name);
                if t.is_dir() {
                    if rel.len() < 4 {
                        walk(&p, rel, out);
                    }
                } else if t.is_file() && !rel[rel.len() - 1].starts_with(".tmp-") && ours(rel) {
                    out.push(p);
                }
                rel.pop();
            }
        }
        let mut out = Vec::new();
        walk(&self.base, &mut Vec::new(), &mut out);
        out
    }

    /// The base directory (fsck reports paths relative to it; health checks its free space).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Removes one asset file (missing is fine: the row is what counts).
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes a release's directory and everything in it.
    pub fn remove_release(&self, repo: &RepoPath, release_id: u64) -> io::Result<()> {
        match fs::remove_dir_all(self.release_dir(repo, release_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_file_names_never_exceed_name_max() {
        assert_eq!(file_name(7, "app.tar.gz"), "7-app.tar.gz");
        for len in 240..=255 {
            let ascii = "a".repeat(len);
            let f = file_name(u64::MAX, &ascii);
            assert!(f.len() <= MAX_FILE_NAME, "{len}");
            assert!(f.starts_with(&format!("{}-a", u64::MAX)));
            let multi = "\u{e9}".repeat(len);
            let f = file_name(123, &multi);
            assert!(f.len() <= MAX_FILE_NAME, "{len}");
            assert!(f.len() >= MAX_FILE_NAME - 1, "{len}: {}", f.len());
        }
    }
}
