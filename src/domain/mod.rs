//! Business rules. Knows storage, git and auth; never warp, never a status code. Every public
//! function takes the caller (`Option<&Principal>`) and decides visibility itself, so that the
//! REST API, git, the registry and the UI share one authorization path.

pub(crate) mod account;
pub(crate) mod archive;
pub mod attestation;
pub mod backup;
pub mod bundle;
pub mod changelog;
pub mod error;
pub(crate) mod fsck;
pub(crate) mod git_tag;
pub(crate) mod immutable;
pub mod latest;
pub mod mirror;
pub mod notes;
pub(crate) mod protection;
pub mod quota;
pub(crate) mod readme;
pub mod registry;
pub mod release;
pub mod release_artifact;
pub(crate) mod retention;
pub(crate) mod session;
pub mod storage;
pub(crate) mod throttle;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use error::{DomainError, DomainResult};

use crate::auth::{self, Principal};
use crate::git::GitStore;
use crate::ids::{RepoPath, Role};
use crate::storage::blob::BlobStore;
use crate::storage::bytes::LocalFs;
use crate::storage::files::AssetFiles;
use crate::storage::records::Repo;
use crate::storage::{accounts, Db, FaultSwitch, Reads, StorageError};

/// Size limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON request body.
    pub json_body: u64,
    /// Largest release asset.
    pub asset_max: u64,
    /// Largest manifest (the OCI spec suggests 4 MiB).
    pub manifest_max: u64,
    /// Largest blob.
    pub blob_max: u64,
    /// Upload sessions idle this long are purged.
    pub upload_ttl_secs: i64,
    /// Unreferenced blobs younger than this (since last upload, mount or link) survive GC.
    pub gc_grace_secs: i64,
    /// Backoff after failed password sign-ins.
    pub sign_in: throttle::ThrottleSettings,
    /// Largest bundle `pfai bundle import` may send (its blobs are staged on disk first).
    pub bundle_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            json_body: 1 << 20,
            asset_max: 10 << 30,
            manifest_max: 4 << 20,
            blob_max: 100 << 30,
            upload_ttl_secs: 24 * 3600,
            gc_grace_secs: 3600,
            sign_in: throttle::ThrottleSettings::default(),
            bundle_max: 256 << 30,
        }
    }
}

/// Everything the domain needs, shared by all requests.
pub struct Core {
    /// Metadata.
    pub db: Db,
    /// Git repositories.
    pub git: GitStore,
    /// OCI blobs and upload sessions.
    pub blobs: BlobStore,
    /// Release asset files.
    pub assets: AssetFiles,
    /// Size limits.
    pub limits: Limits,
    /// Download counts not yet written (asset id -> count); flushed by `release::flush_downloads`.
    pub pending_downloads: Mutex<HashMap<u64, u64>>,
    /// OCI upload sessions in progress (locks and running hashes).
    pub uploads: registry::upload::Sessions,
    /// Held shared by every write that puts a file or a git tag in place before the row that
    /// owns it commits (asset publish, upload session start, a release's tag); held exclusively
    /// by `fsck` while it judges orphans, so an in-flight write is never taken for one.
    pub fsck_gate: Arc<tokio::sync::RwLock<()>>,
    /// Failed password sign-ins per account and per client address (backoff).
    pub sign_in: throttle::Throttle,
    /// Set when a graceful shutdown begins: readiness turns 503 so a balancer stops sending.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// Orders blob publishing against GC's removals: a blob upload holds it shared from
    /// publishing its file until its link is committed, GC holds it exclusively from its
    /// transaction until the files of the blobs it dropped are unlinked. Without it a re-push
    /// that found the file still there (and kept it) could link the blob just before GC
    /// unlinked that file, leaving a row without its file.
    pub blob_gc: Arc<tokio::sync::RwLock<()>>,
    /// Backup snapshots being served (`backup`), and their staging area.
    pub backups: backup::Backups,
    /// Held shared by every delete of asset files or repositories from its commit until its
    /// files are gone; held exclusively by a backup while it links the files of its snapshot,
    /// so a file its snapshot still refers to cannot vanish before it is pinned.
    pub backup_gate: Arc<tokio::sync::RwLock<()>>,
    /// Counters for `/metrics` (requests, bytes, GC and fsck runs).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The release attestation keys: the current signer and every public key listed.
    pub attest: crate::storage::attest_keys::AttestKeys,
    /// Upstream mirrors running now: one run per mirror at a time.
    pub mirror_runs: mirror::Runs,
}

/// Free space below which health reports `degraded`: blob and asset streams (and soon the
/// database) cannot succeed, even while the database still commits into its own free pages.
pub const LOW_SPACE_BYTES: u64 = 1 << 20;

impl Core {
    /// What keeps the server from taking writes now, each named (empty: ready): a graceful
    /// shutdown under way, database writes failing, the blob or asset filesystem nearly full.
    pub async fn readiness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            problems.push("shutting down".to_owned());
        }
        if let Some(r) = self.db.recheck().await {
            problems.push(format!("database: {r}"));
        }
        if let Some(r) = self.low_space() {
            problems.push(format!("disk: {r}"));
        }
        problems
    }

    /// What the stores hold now, for `/metrics`: running totals from the database (no scan),
    /// the open upload sessions, the database file's size and the free space.
    pub async fn holdings(&self) -> DomainResult<crate::metrics::Holdings> {
        let (totals, upload_sessions) = self
            .db
            .read(|txn| {
                Ok::<_, DomainError>((
                    crate::storage::totals::read(txn)?,
                    crate::storage::uploads::count(txn)?,
                ))
            })
            .await?;
        Ok(crate::metrics::Holdings {
            blob_count: totals.blob_count,
            blob_bytes: totals.blob_bytes,
            asset_count: totals.asset_count,
            asset_bytes: totals.asset_bytes,
            upload_sessions,
            database_bytes: self.db.file_size(),
            disk_free_bytes: self.blobs.free_bytes().unwrap_or(0),
            asset_disk_free_bytes: self.assets.free_bytes().unwrap_or(0),
        })
    }

    /// Why writes cannot succeed now, for `/api/v1/health` (`degraded`): failing database
    /// writes first, else a nearly full disk.
    pub async fn write_problem(&self) -> Option<String> {
        match self.db.recheck().await {
            Some(reason) => Some(reason),
            None => self.low_space(),
        }
    }

    /// Why writes of files cannot succeed now (a filesystem of blobs or assets with less than
    /// `LOW_SPACE_BYTES` free), for the health endpoint; `None` when there is room.
    pub fn low_space(&self) -> Option<String> {
        // The reason is public (health needs no sign-in): it names the store, not its path.
        let free = [
            ("blobs", self.blobs.free_bytes()),
            ("assets", self.assets.free_bytes()),
        ];
        for (what, free) in free {
            match free {
                Ok(free) if free < LOW_SPACE_BYTES => {
                    return Some(format!("only {free} bytes free for {what}"))
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(store = what, error = %e, "cannot read free space");
                    return Some(format!("cannot read the free space for {what}"));
                }
            }
        }
        None
    }

    /// Opens every store under `data_dir` (assets under `asset_base`).
    pub fn open(
        data_dir: &Path,
        asset_base: &Path,
        limits: Limits,
    ) -> Result<Arc<Core>, StorageError> {
        Core::open_with(data_dir, asset_base, limits, None)
    }

    /// `open`, with a fault switch on the database file (tests drive a full disk with it).
    #[doc(hidden)]
    pub fn open_with(
        data_dir: &Path,
        asset_base: &Path,
        limits: Limits,
        db_faults: Option<FaultSwitch>,
    ) -> Result<Arc<Core>, StorageError> {
        Core::open_on(data_dir, asset_base, limits, db_faults, None)
    }

    /// `open_with`, with blob and asset bytes in the bucket of `s3` when given (else local
    /// files under `data_dir` and `asset_base`).
    pub fn open_on(
        data_dir: &Path,
        asset_base: &Path,
        limits: Limits,
        db_faults: Option<FaultSwitch>,
        s3: Option<&crate::storage::s3::S3Settings>,
    ) -> Result<Arc<Core>, StorageError> {
        std::fs::create_dir_all(data_dir)?;
        let db = Db::open_with(&data_dir.join("pfai.redb"), db_faults)?;
        let git = GitStore::open(data_dir)?;
        let (blobs, assets) = match s3 {
            None => (BlobStore::open(data_dir)?, AssetFiles::open(asset_base)?),
            Some(settings) => {
                use crate::storage::bytes::ByteStore;
                use crate::storage::tiered::ReadThrough;
                let client = crate::storage::s3::S3Client::open(settings.clone(), data_dir)?;
                client.check()?;
                let local_blobs: Arc<dyn ByteStore> =
                    Arc::new(LocalFs::open(&data_dir.join("blobs"), 0)?);
                let local_assets: Arc<dyn ByteStore> = Arc::new(LocalFs::open(asset_base, 3)?);
                let s3_blobs: Arc<dyn ByteStore> = Arc::new(client.namespace("blobs"));
                let s3_assets: Arc<dyn ByteStore> = Arc::new(client.namespace("assets"));
                // During a move the previous backend is read through until `pfai storage
                // migrate` has moved its objects (an empty one costs a lookup on a miss).
                let (blobs, assets) = if settings.previous {
                    (
                        ReadThrough::new(local_blobs, s3_blobs),
                        ReadThrough::new(local_assets, s3_assets),
                    )
                } else {
                    (
                        ReadThrough::new(s3_blobs, local_blobs),
                        ReadThrough::new(s3_assets, local_assets),
                    )
                };
                (
                    BlobStore::with_objects(Arc::new(blobs), data_dir)?,
                    AssetFiles::with_objects(Arc::new(assets)),
                )
            }
        };
        let sign_in = throttle::Throttle::new(limits.sign_in.clone());
        let backups = backup::Backups::open(data_dir, asset_base)?;
        Ok(Arc::new(Core {
            db,
            git,
            blobs,
            assets,
            limits,
            pending_downloads: Mutex::new(HashMap::new()),
            uploads: registry::upload::Sessions::default(),
            fsck_gate: Arc::default(),
            sign_in,
            shutting_down: Default::default(),
            blob_gc: Arc::default(),
            backups,
            backup_gate: Arc::default(),
            metrics: Arc::default(),
            attest: crate::storage::attest_keys::AttestKeys::open(data_dir)?,
            mirror_runs: mirror::Runs::default(),
        }))
    }

    /// Runs blocking git work on the blocking pool.
    pub async fn git<T, F>(&self, f: F) -> DomainResult<T>
    where
        F: FnOnce(&GitStore) -> Result<T, crate::git::GitError> + Send + 'static,
        T: Send + 'static,
    {
        let git = self.git.clone();
        tokio::task::spawn_blocking(move || f(&git))
            .await?
            .map_err(DomainError::from)
    }

    /// Loads a repository and the caller's role, requiring at least `need`. A caller who cannot
    /// read gets `NotFound` (existence does not leak); one who can read but lacks `need` gets
    /// `Forbidden`.
    pub async fn repo_access(
        &self,
        who: Option<&Principal>,
        path: &RepoPath,
        need: Role,
    ) -> DomainResult<(Repo, Role)> {
        let who = who.cloned();
        let key = path.key();
        self.db
            .read(move |txn| repo_access_txn(txn, who.as_ref(), &key, need))
            .await
    }
}

/// `Core::repo_access` inside an existing read transaction.
pub fn repo_access_txn<R: Reads>(
    txn: &R,
    who: Option<&Principal>,
    key: &str,
    need: Role,
) -> DomainResult<(Repo, Role)> {
    let not_found = || DomainError::NotFound(format!("repository {key} not found"));
    let Some(repo) = accounts::repo(txn, key)? else {
        return Err(not_found());
    };
    let role = auth::role_on(txn, who, &repo)?.ok_or_else(not_found)?;
    if role < need {
        return Err(match who {
            None => DomainError::Unauthenticated(format!(
                "authentication required to {} in {key}",
                describe_need(need)
            )),
            Some(_) => DomainError::Forbidden(format!(
                "you need {} access to {key} for this",
                need.as_str()
            )),
        });
    }
    Ok((repo, role))
}

fn describe_need(need: Role) -> &'static str {
    match need {
        Role::Read => "read",
        Role::Write => "write",
        Role::Admin => "administer",
    }
}

/// Pagination parameters, validated (page from 1, limit 1..=100, default 30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page.
    pub page: u64,
    /// Items per page.
    pub limit: u64,
}

impl Page {
    /// Validates raw query values.
    pub fn new(page: Option<u64>, limit: Option<u64>) -> DomainResult<Page> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(30);
        if page == 0 {
            return Err(DomainError::BadRequest("page starts at 1".into()));
        }
        if limit == 0 || limit > 100 {
            return Err(DomainError::BadRequest("limit must be 1 to 100".into()));
        }
        Ok(Page { page, limit })
    }

    /// Items to skip.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.limit)
    }
}

/// One page of a list and whether there is a next one (for the `Link` header).
#[derive(Debug, Clone)]
pub struct Paged<T> {
    /// The items.
    pub items: Vec<T>,
    /// The page asked for.
    pub page: Page,
    /// Whether another page follows.
    pub has_next: bool,
}

impl<T> Paged<T> {
    /// Cuts a page out of a full, ordered list.
    pub fn from_vec(all: Vec<T>, page: Page) -> Paged<T> {
        let start = page.offset().min(all.len() as u64) as usize;
        let end = (start as u64 + page.limit).min(all.len() as u64) as usize;
        let has_next = end < all.len();
        let items = all.into_iter().skip(start).take(end - start).collect();
        Paged {
            items,
            page,
            has_next,
        }
    }
}
