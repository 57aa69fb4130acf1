//! Release assets at the seed's layout, `<base>/<owner>/<repo>/<release-id>/<asset-id>-<filename>`,
//! as objects of a `ByteStore` (written with the same discipline as blobs: a scratch file beside
//! the final place, fsync, publish).

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::blob::{Hasher, TempGuard};
use super::bytes::{ByteStore, LocalFs};
use super::mmap::Mapped;
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

/// Whether an object name has the asset layout (`<owner>/<repo>/<release-id>/<asset-id>[-<name>]`,
/// valid names, numeric ids).
fn asset_named(rel: &[String]) -> bool {
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

/// Where one asset's bytes live: the release it belongs to, its id and its (validated) name.
#[derive(Debug, Clone)]
pub struct AssetKey {
    /// The repository of the release.
    pub repo: RepoPath,
    /// The release id.
    pub release: u64,
    /// The asset id (unique, so the name is only for people browsing the directory).
    pub asset: u64,
    /// The asset's file name.
    pub name: AssetName,
}

/// The asset store: objects named `<owner>/<repo>/<release-id>/<asset-id>-<filename>` in a
/// `ByteStore` (the local backend roots them at `ASSET_STORAGE_PATH` or `$DATA_DIR/assets`).
#[derive(Clone)]
pub struct AssetFiles {
    objects: Arc<dyn ByteStore>,
}

impl AssetFiles {
    /// Opens the local store at `base`, creating it and removing scratch files left by a crash.
    pub fn open(base: &Path) -> io::Result<Self> {
        Ok(Self::with_objects(Arc::new(LocalFs::open(base, 3)?)))
    }

    /// A store whose assets live in `objects`.
    pub fn with_objects(objects: Arc<dyn ByteStore>) -> Self {
        AssetFiles { objects }
    }

    /// The object-name prefix of one release's assets. Both path components are validated
    /// names and the release id is a number.
    fn release_prefix(repo: &RepoPath, release_id: u64) -> String {
        format!(
            "{}/{}/{release_id}",
            repo.owner.as_str(),
            repo.name.as_str()
        )
    }

    /// The object name of an asset: the one function every reader, writer, deleter and fsck
    /// uses to find an asset's bytes, deterministic from (release, asset id, name).
    pub fn name(key: &AssetKey) -> String {
        format!(
            "{}/{}",
            Self::release_prefix(&key.repo, key.release),
            file_name(key.asset, key.name.as_str())
        )
    }

    /// A scratch file to stream the asset into, removed on drop unless published.
    pub fn stage(&self, key: &AssetKey) -> io::Result<(File, TempGuard)> {
        self.objects.stage(&Self::name(key))
    }

    /// Publishes a fsynced scratch file as the asset, read-only and durable.
    pub fn publish(&self, temp: TempGuard, key: &AssetKey) -> io::Result<()> {
        self.objects.put(temp.path(), &Self::name(key))?;
        temp.keep();
        Ok(())
    }

    /// The asset's bytes, for serving whole or by range.
    pub fn open_asset(&self, key: &AssetKey) -> io::Result<Mapped> {
        self.objects.open(&Self::name(key), false)
    }

    /// The stored asset's bytes fed through `hasher` (fsck compares the digests with the row).
    pub fn hash(&self, key: &AssetKey, mut hasher: Hasher) -> io::Result<Hasher> {
        let data = self.objects.open_fresh(&Self::name(key))?;
        super::blob::hash_mapped(&mut hasher, &data);
        Ok(hasher)
    }

    /// Puts the asset's bytes at the local path `dest` (a hard link when it can): a backup's
    /// pin on the file its snapshot refers to.
    pub fn export(&self, key: &AssetKey, dest: &Path) -> io::Result<()> {
        self.objects.export(&Self::name(key), dest)
    }

    /// Removes one asset (missing is fine: the row is what counts).
    pub fn remove(&self, key: &AssetKey) -> io::Result<()> {
        self.objects.delete(&Self::name(key))
    }

    /// Removes an object by the name `list` gave (fsck's orphans).
    pub fn remove_named(&self, name: &str) -> io::Result<()> {
        self.objects.delete(name)
    }

    /// Removes all of a release's assets.
    pub fn remove_release(&self, repo: &RepoPath, release_id: u64) -> io::Result<()> {
        self.objects
            .delete_prefix(&Self::release_prefix(repo, release_id))
    }

    /// The names of every stored asset, for fsck to match against the rows. Only names of the
    /// asset layout (`<owner>/<repo>/<release-id>/<asset-id>[-<name>]`, valid names, numeric
    /// ids): anything else under the base (an operator's file, `lost+found`, another program's
    /// data) is not ours to judge or remove.
    pub fn list(&self) -> Vec<String> {
        self.objects.scan(4, &asset_named)
    }

    /// Moves the assets of the store this one replaces into it (`pfai storage
    /// migrate`); `None` when no move is under way.
    pub fn absorb_previous(&self) -> io::Result<Option<super::bytes::Moved>> {
        self.objects.absorb_previous(4, &asset_named)
    }

    /// Whether asset downloads are redirected to the object store (`--s3-redirect`).
    pub fn redirects(&self) -> bool {
        self.objects.redirects()
    }

    /// A short-lived URL of the asset on the object store, when downloads are redirected.
    pub fn presigned_url(&self, key: &AssetKey) -> io::Result<Option<String>> {
        self.objects.presign(&Self::name(key))
    }

    /// Bytes still free for assets (health turns degraded when low).
    pub fn free_bytes(&self) -> io::Result<u64> {
        self.objects.free_bytes()
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
