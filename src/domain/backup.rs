//! Online, consistent backups and their restore.
//!
//! A snapshot (`create`) is the metadata as of ONE redb read transaction
//! (`storage::snapshot::copy`), plus everything that copy refers to, staged under
//! `$DATA_DIR/backups/<id>/` in the backup layout (`crate::backup`):
//! - blobs and asset files are hard-linked there (`export`), so the snapshot pins them: GC or a
//!   delete after the snapshot unlinks the store's name, not the bytes the backup will read.
//!   The links are made while two locks hold off the only writers that remove such files:
//!   `Core::blob_gc` shared (GC's removals, exclusive, wait) and `Core::backup_gate` exclusive
//!   (release, asset and repository deletes hold it shared from their commit to their unlinks).
//!   Pushes, uploads and git pushes take neither exclusively, so they continue.
//! - each repository's refs are captured right after the transaction and bundled exactly
//!   (`git::bundle`), without the tags of releases that had not committed (see `snapshot`).
//!
//! The staged snapshot is then served file by file to `pfai backup` (`file`) until released
//! (`release`) or idle for `IDLE_TTL`; staging does not survive a restart. `offline` runs the
//! same staging on a stopped server's data directory and copies locally; `restore` verifies a
//! backup whole before building the new data directory beside its final place.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::Principal;
use crate::backup::{
    self, BackupError, BackupFile, BackupFileKind, BackupManifest, BackupRepo, BackupReport,
    Staging, Target,
};
use crate::domain::{DomainError, DomainResult, Limits};
use crate::git::GitStore;
use crate::ids::{AssetName, Digest, RepoPath};
use crate::storage::files::AssetKey;
use crate::storage::mmap::Mapped;
use crate::storage::{snapshot, Db, SCHEMA_VERSION};

use super::Core;

/// A snapshot not asked for during this long is released.
pub const IDLE_TTL: Duration = Duration::from_secs(3600);
/// Snapshots staged at once (each holds hard links and bundles on the data disk).
pub const MAX_ACTIVE: usize = 4;

struct Active {
    manifest: Arc<BackupManifest>,
    files: HashMap<String, BackupFile>,
    last_used: Instant,
}

/// The snapshots being served, and their staging area.
pub struct Backups {
    staging: Staging,
    active: Mutex<HashMap<String, Active>>,
    /// Snapshots being staged now (they count against `MAX_ACTIVE` too).
    staging_now: Arc<std::sync::atomic::AtomicUsize>,
}

/// A slot of `MAX_ACTIVE` held while a snapshot is staged.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backups {
    /// Opens the staging area of `data_dir`, removing snapshots a previous run left.
    pub fn open(data_dir: &Path, asset_base: &Path) -> std::io::Result<Backups> {
        Ok(Backups {
            staging: Staging::open(data_dir, asset_base)?,
            active: Mutex::new(HashMap::new()),
            staging_now: Arc::default(),
        })
    }

    /// Drops snapshots idle past `IDLE_TTL` (their directories are removed): called before
    /// each new snapshot and by the server's periodic jobs, so an abandoned backup does not
    /// pin deleted files for long.
    pub fn expire(&self) {
        let stale: Vec<String> = {
            let mut active = lock(&self.active);
            let stale: Vec<String> = active
                .iter()
                .filter(|(_, a)| a.last_used.elapsed() > IDLE_TTL)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &stale {
                active.remove(id);
            }
            stale
        };
        for id in stale {
            tracing::info!(id, "releasing an idle backup snapshot");
            if let Err(e) = self.staging.remove(&id) {
                tracing::warn!(id, error = %e, "removing a backup snapshot failed");
            }
        }
    }
}

fn require_admin(who: Option<&Principal>) -> DomainResult<()> {
    let p = super::account::require(who)?;
    if !p.admin {
        return Err(DomainError::Forbidden(
            "only site admins can take backups".into(),
        ));
    }
    Ok(())
}

fn internal(context: &str) -> impl FnOnce(BackupError) -> DomainError + '_ {
    move |e| DomainError::Internal {
        context: context.to_owned(),
        source: Some(Box::new(e)),
    }
}

/// Takes a snapshot for `pfai backup` (site admin) and returns its manifest; its files are
/// served by `file` until `release`.
pub async fn create(core: &Arc<Core>, who: Option<&Principal>) -> DomainResult<BackupManifest> {
    require_admin(who)?;
    {
        let c = core.clone();
        tokio::task::spawn_blocking(move || c.backups.expire()).await?;
    }
    let slot = {
        let active = lock(&core.backups.active);
        let counter = core.backups.staging_now.clone();
        let staging = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let slot = Slot(counter);
        if active.len() + staging >= MAX_ACTIVE {
            return Err(DomainError::Conflict(format!(
                "{MAX_ACTIVE} backups are already in progress; finish or release one first"
            )));
        }
        slot
    };
    // On its own task: a client that disconnects meanwhile leaves a registered snapshot that
    // expires, never an unregistered staging directory pinning files until the next start.
    let core = core.clone();
    tokio::spawn(async move {
        let manifest = stage(&core).await?;
        let files = manifest
            .files
            .iter()
            .map(|f| (f.path.clone(), f.clone()))
            .collect();
        lock(&core.backups.active).insert(
            manifest.id.clone(),
            Active {
                manifest: Arc::new(manifest.clone()),
                files,
                last_used: Instant::now(),
            },
        );
        drop(slot);
        tracing::info!(id = %manifest.id, files = manifest.files.len(), "backup snapshot taken");
        Ok(manifest)
    })
    .await?
}

/// One file of a snapshot (site admin): only paths its manifest lists.
pub async fn file(
    core: &Core,
    who: Option<&Principal>,
    id: &str,
    path: &str,
) -> DomainResult<Mapped> {
    require_admin(who)?;
    let gone = || DomainError::NotFound(format!("backup {id} has no file {path}"));
    {
        let mut active = lock(&core.backups.active);
        let a = active
            .get_mut(id)
            .ok_or_else(|| DomainError::NotFound(format!("no backup {id} in progress")))?;
        a.last_used = Instant::now();
        if !a.files.contains_key(path) {
            return Err(gone());
        }
    }
    let file = core.backups.staging.file(id, path).map_err(|_| gone())?;
    Ok(tokio::task::spawn_blocking(move || Mapped::open(&file)).await??)
}

/// The manifest of a snapshot in progress (site admin).
pub fn manifest(core: &Core, who: Option<&Principal>, id: &str) -> DomainResult<BackupManifest> {
    require_admin(who)?;
    let active = lock(&core.backups.active);
    active
        .get(id)
        .map(|a| (*a.manifest).clone())
        .ok_or_else(|| DomainError::NotFound(format!("no backup {id} in progress")))
}

/// Releases a snapshot (site admin): its staged files and pins go.
pub async fn release(core: &Core, who: Option<&Principal>, id: &str) -> DomainResult<()> {
    require_admin(who)?;
    if lock(&core.backups.active).remove(id).is_none() {
        return Err(DomainError::NotFound(format!("no backup {id} in progress")));
    }
    let staging = core.backups.staging.clone();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || staging.remove(&id)).await??;
    Ok(())
}

/// Stages a snapshot (no authorization: `create` and `offline` check their own caller).
async fn stage(core: &Arc<Core>) -> DomainResult<BackupManifest> {
    let id = backup::new_id();
    let staging = core.backups.staging.clone();
    {
        let (staging, id) = (staging.clone(), id.clone());
        tokio::task::spawn_blocking(move || staging.create(&id)).await??;
    }
    let result = stage_into(core, &id).await;
    if result.is_err() {
        let id2 = id.clone();
        let _ = tokio::task::spawn_blocking(move || staging.remove(&id2)).await;
    }
    result
}

async fn stage_into(core: &Arc<Core>, id: &str) -> DomainResult<BackupManifest> {
    let staging = core.backups.staging.clone();
    // Deletes of assets and repositories wait from here until the links are made; GC waits
    // until the blobs are linked. Writers that add things go on.
    let deletes = core.backup_gate.clone().write_owned().await;
    let gc = core.blob_gc.clone().read_owned().await;
    let created_at = crate::util::rfc3339(crate::util::now_unix());
    let db_rel = backup::database_path(id);
    let db_file = staging.file(id, &db_rel).map_err(internal("staging"))?;
    let contents = core
        .db
        .read(move |txn| snapshot::copy(txn, &db_file))
        .await?;
    let core = core.clone();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut files = Vec::new();
        let file_of = |rel: &str| staging.file(&id, rel).map_err(internal("staging"));
        // Refs first, as close to the transaction as possible.
        let mut repos = Vec::new();
        for key in &contents.repos {
            let repo = RepoPath::parse_key(key)
                .map_err(|_| DomainError::Invalid(format!("stored repository {key}")))?;
            let mut refs = match core.git.capture_refs(&repo) {
                Ok(r) => r,
                Err(crate::git::GitError::RepoMissing) => {
                    tracing::warn!(repo = %key, "repository directory missing; backed up empty");
                    Default::default()
                }
                Err(e) => return Err(e.into()),
            };
            refs.refs.retain(|(name, _)| {
                !contents
                    .pending_tags
                    .iter()
                    .any(|(r, t)| r == key && name.strip_prefix("refs/tags/") == Some(t.as_str()))
            });
            repos.push((repo, refs));
        }
        for (digest, meta) in &contents.blobs {
            let d = Digest::parse(digest)
                .map_err(|_| DomainError::Invalid(format!("stored blob digest {digest}")))?;
            let rel = backup::blob_path(&d);
            let path = file_of(&rel)?;
            core.blobs.export(&d, &path)?;
            files.push(BackupFile {
                sha256: backup::blob_sha256(&d, &path)?,
                path: rel,
                kind: BackupFileKind::Blob,
                size: meta.size,
            });
        }
        drop(gc);
        for a in &contents.assets {
            let key = AssetKey {
                repo: RepoPath::parse_key(&a.repo)
                    .map_err(|_| DomainError::Invalid(format!("stored repository {}", a.repo)))?,
                release: a.release_id,
                asset: a.id,
                name: AssetName::parse(&a.name)?,
            };
            let rel = backup::asset_path(&key);
            core.assets.export(&key, &file_of(&rel)?)?;
            files.push(BackupFile {
                path: rel,
                kind: BackupFileKind::Asset,
                sha256: a.sha256.clone(),
                size: a.size,
            });
        }
        // The attestation keys, so a restored server signs with the same key and still lists
        // (and verifies against) every earlier one.
        for name in core.attest.file_names()? {
            let rel = backup::attestation_key_path(&name);
            let path = file_of(&rel)?;
            core.attest.export(&name, &path)?;
            let (sha256, size) = backup::hash_file(&path)?;
            files.push(BackupFile {
                path: rel,
                kind: BackupFileKind::AttestationKey,
                sha256,
                size,
            });
        }
        let mut repo_entries = Vec::new();
        for (repo, refs) in &repos {
            let rel = backup::bundle_path(&id, repo);
            let path = file_of(&rel)?;
            let bundle = if core.git.write_bundle(repo, refs, &path)? {
                let (sha256, size) = backup::hash_file(&path)?;
                files.push(BackupFile {
                    path: rel.clone(),
                    kind: BackupFileKind::Bundle,
                    sha256,
                    size,
                });
                Some(rel)
            } else {
                None
            };
            repo_entries.push(BackupRepo {
                repo: repo.key(),
                head: refs.head.clone(),
                bundle,
                refs: refs.refs.len() as u64,
            });
        }
        drop(deletes);
        let (sha256, size) = backup::hash_file(&file_of(&db_rel)?)?;
        files.insert(
            0,
            BackupFile {
                path: db_rel,
                kind: BackupFileKind::Database,
                sha256,
                size,
            },
        );
        Ok(BackupManifest {
            format: backup::FORMAT,
            id,
            created_at,
            schema_version: SCHEMA_VERSION,
            files,
            repos: repo_entries,
        })
    })
    .await?
}

/// `pfai backup --data-dir D --to DIR`: a snapshot of a stopped server's data directory,
/// copied locally with the same verification as the online path.
pub async fn offline(
    data_dir: &Path,
    asset_base: &Path,
    to: &Path,
) -> Result<BackupReport, BackupError> {
    if !backup::database_file(data_dir).is_file() {
        return Err(BackupError::Invalid(format!(
            "{} holds no pfai data (no pfai.redb)",
            data_dir.display()
        )));
    }
    let core = Core::open(data_dir, asset_base, Limits::default()).map_err(|e| {
        let busy = matches!(
            &e,
            crate::storage::StorageError::Db(redb::Error::DatabaseAlreadyOpen)
        );
        if busy {
            BackupError::Invalid(format!(
                "{} is in use: stop the server, or back it up online with `pfai backup --to`",
                data_dir.display()
            ))
        } else {
            BackupError::failed(format!("opening {}", data_dir.display()), e)
        }
    })?;
    let manifest = stage(&core)
        .await
        .map_err(|e| BackupError::failed("taking the snapshot", e.chain().to_string()))?;
    let staging = core.backups.staging.clone();
    let id = manifest.id.clone();
    let to = to.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let target = Target::open(&to)?;
        copy_local(&target, &staging, &manifest)
    })
    .await
    .map_err(|e| BackupError::failed("copying", e))?;
    let _ = core.backups.staging.remove(&id);
    out
}

fn copy_local(
    target: &Target,
    staging: &Staging,
    m: &BackupManifest,
) -> Result<BackupReport, BackupError> {
    let mut report = BackupReport {
        id: m.id.clone(),
        files: m.files.len() as u64,
        ..BackupReport::default()
    };
    for f in &m.files {
        if target.has(f)? {
            report.reused += 1;
            continue;
        }
        target
            .writer(f)?
            .copy_from(&staging.file(&m.id, &f.path)?)?;
        report.copied.push(f.path.clone());
        report.bytes_copied += f.size;
    }
    target.commit(m)?;
    Ok(report)
}

/// What a restore produced.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Files restored (database, blobs, assets, bundles).
    pub files: u64,
    /// Repositories rebuilt.
    pub repos: u64,
}

/// `pfai restore --from DIR --data-dir NEW [--asset-storage-path A]`: verifies every file of
/// the backup, refuses a non-empty target, then builds the data directory beside `data_dir`
/// and renames it into place (the asset directory, when separate, first).
pub fn restore(
    from: &Path,
    data_dir: &Path,
    asset_dir: Option<&Path>,
) -> Result<Restored, BackupError> {
    if let Some(a) = asset_dir {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        if abs(a).starts_with(abs(data_dir)) || abs(data_dir).starts_with(abs(a)) {
            return Err(BackupError::Invalid(format!(
                "--asset-storage-path {} must lie outside --data-dir {} (leave it out to restore \
                 the assets to {}/assets)",
                a.display(),
                data_dir.display(),
                data_dir.display()
            )));
        }
    }
    for d in std::iter::once(data_dir).chain(asset_dir) {
        if !backup::is_absent_or_empty(d)? {
            return Err(BackupError::NotEmpty(d.to_owned()));
        }
    }
    let m = backup::read_manifest(from)?;
    if m.schema_version > SCHEMA_VERSION {
        return Err(BackupError::Invalid(format!(
            "the backup was written by a newer pfai (schema {}, this binary understands up to \
             {SCHEMA_VERSION}): restore it with that version",
            m.schema_version
        )));
    }
    let m = backup::verify(from)?;
    let tmp = backup::sibling_tmp(data_dir)?;
    let tmp_assets = asset_dir.map(backup::sibling_tmp).transpose()?;
    let result = build(from, &m, &tmp, tmp_assets.as_deref());
    let result = result.and_then(|r| {
        if let (Some(t), Some(a)) = (&tmp_assets, asset_dir) {
            backup::move_into_place(t, a)?;
        }
        backup::move_into_place(&tmp, data_dir)?;
        Ok(r)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if let Some(t) = &tmp_assets {
            let _ = std::fs::remove_dir_all(t);
        }
    }
    result
}

fn build(
    from: &Path,
    m: &BackupManifest,
    data: &Path,
    assets: Option<&Path>,
) -> Result<Restored, BackupError> {
    std::fs::create_dir_all(data).map_err(|source| BackupError::Io {
        path: data.to_owned(),
        source,
    })?;
    let asset_base = assets.map_or_else(|| backup::default_asset_base(data), Path::to_path_buf);
    if m.files
        .iter()
        .any(|f| f.kind == BackupFileKind::AttestationKey)
    {
        crate::storage::attest_keys::create_dir(data).map_err(|source| BackupError::Io {
            path: crate::storage::attest_keys::dir_of(data),
            source,
        })?;
    }
    let mut restored = Restored::default();
    for f in &m.files {
        let Some(dest) = backup::restore_dest(data, &asset_base, f)? else {
            continue;
        };
        backup::restore_file(from, f, dest)?;
        restored.files += 1;
    }
    // The database opens (schema checked) before anything is moved into place.
    drop(
        Db::open(&backup::database_file(data))
            .map_err(|e| BackupError::failed("opening the restored database", e))?,
    );
    let git = GitStore::open(data).map_err(|e| BackupError::Io {
        path: data.to_owned(),
        source: e,
    })?;
    for r in &m.repos {
        let repo = RepoPath::parse_key(&r.repo)
            .map_err(|_| BackupError::Invalid(format!("invalid repository {:?}", r.repo)))?;
        let bundle = r
            .bundle
            .as_deref()
            .map(|b| backup::file_in(from, b))
            .transpose()?;
        git.restore_from_bundle(&repo, bundle.as_deref(), r.head.as_deref())
            .map_err(|e| BackupError::failed(format!("restoring repository {}", r.repo), e))?;
        if bundle.is_some() {
            restored.files += 1;
        }
        restored.repos += 1;
    }
    for d in std::iter::once(data).chain(assets) {
        crate::storage::fsync_dir(d).map_err(|source| BackupError::Io {
            path: d.to_owned(),
            source,
        })?;
    }
    Ok(restored)
}
