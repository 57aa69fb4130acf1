//! Releases and their assets. A release is anchored on a git tag; the tag is created (at the
//! resolved `targetCommit`) when it did not exist — for drafts, only when they are published, so
//! that a draft does not leak through `git ls-remote`. Drafts and everything under them are
//! visible only to `write` and above, on every route.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{git_tag, Core, DomainError, DomainResult, Page, Paged};
use crate::auth::Principal;
use crate::ids::{AssetName, GitTagName, RepoPath, Role};
use crate::storage::blob::{Hasher, Sink};
use crate::storage::mmap::Mapped;
use crate::storage::records::{Asset, Release};
use crate::storage::{codec, next_id, tables};
use crate::util::{now_unix, rfc3339};

/// The author of a release (the seed's ForgeUser).
#[derive(Debug, Clone, Serialize)]
pub struct ForgeUser {
    /// Username.
    pub username: String,
}

/// An asset as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetView {
    /// Id.
    pub id: u64,
    /// File name.
    pub name: String,
    /// Label.
    pub label: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// The canonical download link.
    pub download_url: String,
    /// Full downloads.
    pub download_count: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A release as the API shows it: the seed's schema plus `createdAt`, `latest`, `tagExists`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// Id.
    pub id: u64,
    /// Tag.
    pub tag_name: String,
    /// Title.
    pub name: String,
    /// Markdown notes.
    pub body: String,
    /// Draft.
    pub draft: bool,
    /// Pre-release.
    pub prerelease: bool,
    /// Creator.
    pub author: ForgeUser,
    /// The commit SHA the release was anchored at.
    pub target_commit: String,
    /// RFC 3339 or null.
    pub published_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The release the UI marks Latest.
    pub latest: bool,
    /// False once the tag was deleted (the release is unanchored).
    pub tag_exists: bool,
    /// The commit the tag points at now, when it differs from `targetCommit` the tag was moved.
    pub tag_commit: Option<String>,
    /// Assets, by name.
    pub assets: Vec<AssetView>,
}

/// The JSON body of `POST /releases`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRelease {
    /// Tag to anchor on.
    pub tag_name: String,
    /// Branch or SHA, needed when the tag does not exist.
    #[serde(default)]
    pub target_commit: Option<String>,
    /// Title (defaults to the tag).
    #[serde(default)]
    pub name: Option<String>,
    /// Notes.
    #[serde(default)]
    pub body: Option<String>,
    /// Draft.
    #[serde(default)]
    pub draft: bool,
    /// Pre-release.
    #[serde(default)]
    pub prerelease: bool,
}

/// The JSON body of `PATCH /releases/{tag}`: absent or null fields are unchanged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRelease {
    /// Title.
    #[serde(default)]
    pub name: Option<String>,
    /// Notes.
    #[serde(default)]
    pub body: Option<String>,
    /// Draft.
    #[serde(default)]
    pub draft: Option<bool>,
    /// Pre-release.
    #[serde(default)]
    pub prerelease: Option<bool>,
}

const MAX_BODY: usize = 1 << 20;
const MAX_TITLE: usize = 1024;

fn order_key(r: &Release) -> u64 {
    match r.published_at {
        None => 0,
        Some(t) => u64::MAX - (t.max(0) as u64),
    }
}

fn is_latest_candidate(r: &Release) -> bool {
    !r.draft && !r.prerelease && r.published_at.is_some()
}

fn visible(r: &Release, role: Role) -> bool {
    !r.draft || role >= Role::Write
}

/// The id of the release marked Latest in a repository.
fn latest_id_txn(txn: &ReadTransaction, repo_key: &str) -> DomainResult<Option<u64>> {
    let order = txn.open_table(tables::RELEASE_ORDER)?;
    let releases = txn.open_table(tables::RELEASES)?;
    for row in order.range((repo_key, 1u64, 0u64)..=(repo_key, u64::MAX, u64::MAX))? {
        let id = u64::MAX - row?.0.value().2;
        if let Some(v) = releases.get(id)? {
            let r: Release = codec::decode(v.value())?;
            if is_latest_candidate(&r) {
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

fn assets_of_txn(txn: &ReadTransaction, release_id: u64) -> DomainResult<Vec<Asset>> {
    let idx = txn.open_table(tables::ASSETS_BY_RELEASE)?;
    let assets = txn.open_table(tables::ASSETS)?;
    let mut out = Vec::new();
    for row in idx.range((release_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != release_id {
            break;
        }
        if let Some(a) = assets.get(v.value())? {
            out.push(codec::decode::<Asset>(a.value())?);
        }
    }
    Ok(out)
}

fn release_by_tag_txn(
    txn: &ReadTransaction,
    repo_key: &str,
    tag: &str,
) -> DomainResult<Option<Release>> {
    let by_tag = txn.open_table(tables::RELEASES_BY_TAG)?;
    let Some(id) = by_tag.get((repo_key, tag))? else {
        return Ok(None);
    };
    let id = id.value();
    let releases = txn.open_table(tables::RELEASES)?;
    match releases.get(id)? {
        Some(v) => Ok(Some(codec::decode(v.value())?)),
        None => Ok(None),
    }
}

/// Context to render views: where the API lives, which tags exist, and unflushed counts.
struct Render<'a> {
    base_url: &'a str,
    repo: &'a RepoPath,
    tags: &'a HashMap<String, String>,
    pending: &'a HashMap<u64, u64>,
}

impl Render<'_> {
    fn asset(&self, r: &Release, a: &Asset) -> AssetView {
        AssetView {
            id: a.id,
            name: a.name.clone(),
            label: a.label.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            download_url: format!(
                "{}/api/v1/forge/{}/{}/releases/{}/assets/{}",
                self.base_url,
                self.repo.owner,
                self.repo.name,
                url_segment(&r.tag_name),
                a.id
            ),
            download_count: a.download_count + self.pending.get(&a.id).copied().unwrap_or(0),
            sha256: a.sha256.clone(),
            created_at: rfc3339(a.created_at),
        }
    }

    fn release(&self, r: &Release, assets: &[Asset], latest: Option<u64>) -> ReleaseView {
        let tag_commit = self.tags.get(&r.tag_name).cloned();
        ReleaseView {
            id: r.id,
            tag_name: r.tag_name.clone(),
            name: r.name.clone(),
            body: r.body.clone(),
            draft: r.draft,
            prerelease: r.prerelease,
            author: ForgeUser {
                username: r.author.clone(),
            },
            target_commit: r.commit_sha.clone(),
            published_at: r.published_at.map(rfc3339),
            created_at: rfc3339(r.created_at),
            latest: latest == Some(r.id),
            tag_exists: tag_commit.is_some(),
            tag_commit,
            assets: assets.iter().map(|a| self.asset(r, a)).collect(),
        }
    }
}

/// Percent-encodes a tag for use as one URL path segment (tags may contain `/`).
pub fn url_segment(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, KEEP).to_string()
}

/// The current commit of each given release tag that still exists (for `tagExists`/`tagCommit`).
async fn tag_map(
    core: &Core,
    repo: &RepoPath,
    names: Vec<String>,
) -> DomainResult<HashMap<String, String>> {
    let r = repo.clone();
    Ok(core
        .git(move |g| g.tag_commits(&r, &names))
        .await?
        .into_iter()
        .collect())
}

fn pending(core: &Core) -> HashMap<u64, u64> {
    core.pending_downloads
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default()
}

/// Lists releases: unpublished drafts first, then by `publishedAt` descending.
pub async fn list(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    page: Page,
    base_url: &str,
) -> DomainResult<Paged<ReleaseView>> {
    let (_, role) = core.repo_access(who, repo, Role::Read).await?;
    let key = repo.key();
    let (rows, has_next, latest) = core
        .db
        .read(move |txn| {
            let order = txn.open_table(tables::RELEASE_ORDER)?;
            let releases = txn.open_table(tables::RELEASES)?;
            let mut skipped = 0u64;
            let mut rows = Vec::new();
            let mut has_next = false;
            for row in
                order.range((key.as_str(), 0u64, 0u64)..=(key.as_str(), u64::MAX, u64::MAX))?
            {
                let id = u64::MAX - row?.0.value().2;
                let Some(v) = releases.get(id)? else { continue };
                let r: Release = codec::decode(v.value())?;
                if !visible(&r, role) {
                    continue;
                }
                if skipped < page.offset() {
                    skipped += 1;
                    continue;
                }
                if rows.len() as u64 == page.limit {
                    has_next = true;
                    break;
                }
                let assets = assets_of_txn(txn, r.id)?;
                rows.push((r, assets));
            }
            Ok::<_, DomainError>((rows, has_next, latest_id_txn(txn, &key)?))
        })
        .await?;
    let tags = tag_map(
        core,
        repo,
        rows.iter().map(|(r, _)| r.tag_name.clone()).collect(),
    )
    .await?;
    let pending = pending(core);
    let render = Render {
        base_url,
        repo,
        tags: &tags,
        pending: &pending,
    };
    Ok(Paged {
        items: rows
            .iter()
            .map(|(r, a)| render.release(r, a, latest))
            .collect(),
        page,
        has_next,
    })
}

/// A release anchored on a tag, as the Tags tab links it.
#[derive(Debug, Clone)]
pub struct AnchoredRelease {
    /// Title.
    pub name: String,
    /// Whether it is a draft (only shown to `write`+).
    pub draft: bool,
}

/// The releases anchored on the given tags that the caller may see, by tag name. O(tags given).
pub async fn anchored_on(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tags: Vec<String>,
) -> DomainResult<HashMap<String, AnchoredRelease>> {
    let (_, role) = core.repo_access(who, repo, Role::Read).await?;
    let key = repo.key();
    core.db
        .read(move |txn| {
            let mut out = HashMap::new();
            for t in tags {
                if let Some(r) = release_by_tag_txn(txn, &key, &t)? {
                    if visible(&r, role) {
                        out.insert(
                            t,
                            AnchoredRelease {
                                name: r.name,
                                draft: r.draft,
                            },
                        );
                    }
                }
            }
            Ok(out)
        })
        .await
}

/// Which release a path names: a tag, or the Latest one.
#[derive(Debug, Clone)]
pub enum Which {
    /// `releases/{tag}`.
    Tag(String),
    /// `releases/latest`.
    Latest,
}

async fn load(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    which: Which,
    need: Role,
) -> DomainResult<(Release, Vec<Asset>, Option<u64>, Role)> {
    let (_, role) = core.repo_access(who, repo, need).await?;
    let key = repo.key();
    let label = match &which {
        Which::Tag(t) => t.clone(),
        Which::Latest => "latest".into(),
    };
    let found = core
        .db
        .read(move |txn| {
            let latest = latest_id_txn(txn, &key)?;
            let r = match which {
                Which::Tag(t) => release_by_tag_txn(txn, &key, &t)?,
                Which::Latest => match latest {
                    Some(id) => txn
                        .open_table(tables::RELEASES)?
                        .get(id)?
                        .map(|v| codec::decode::<Release>(v.value()))
                        .transpose()?,
                    None => None,
                },
            };
            match r {
                Some(r) => {
                    let assets = assets_of_txn(txn, r.id)?;
                    Ok::<_, DomainError>(Some((r, assets, latest)))
                }
                None => Ok(None),
            }
        })
        .await?;
    match found {
        Some((r, a, l)) if visible(&r, role) => Ok((r, a, l, role)),
        _ => Err(DomainError::NotFound(format!(
            "release {label} not found in {repo}"
        ))),
    }
}

/// Reads one release (by tag, or the Latest).
pub async fn get(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    which: Which,
    base_url: &str,
) -> DomainResult<ReleaseView> {
    let (r, assets, latest, _) = load(core, who, repo, which, Role::Read).await?;
    let tags = tag_map(core, repo, vec![r.tag_name.clone()]).await?;
    let pending = pending(core);
    Ok(Render {
        base_url,
        repo,
        tags: &tags,
        pending: &pending,
    }
    .release(&r, &assets, latest))
}

fn check_text(name: &str, body: &str) -> DomainResult<()> {
    if name.len() > MAX_TITLE {
        return Err(DomainError::Invalid(format!(
            "name is limited to {MAX_TITLE} bytes"
        )));
    }
    if body.len() > MAX_BODY {
        return Err(DomainError::Invalid(format!(
            "body is limited to {MAX_BODY} bytes"
        )));
    }
    Ok(())
}

fn insert_order(txn: &WriteTransaction, r: &Release) -> DomainResult<()> {
    txn.open_table(tables::RELEASE_ORDER)?
        .insert((r.repo.as_str(), order_key(r), u64::MAX - r.id), ())?;
    Ok(())
}

fn remove_order(txn: &WriteTransaction, r: &Release) -> DomainResult<()> {
    txn.open_table(tables::RELEASE_ORDER)?.remove((
        r.repo.as_str(),
        order_key(r),
        u64::MAX - r.id,
    ))?;
    Ok(())
}

/// Creates a release (write). See the module doc for how the tag is found or made.
pub async fn create(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    input: CreateRelease,
    base_url: &str,
) -> DomainResult<ReleaseView> {
    core.repo_access(who, repo, Role::Write).await?;
    let tag = GitTagName::parse(&input.tag_name)?;
    let name = input.name.clone().unwrap_or_else(|| tag.to_string());
    let body = input.body.clone().unwrap_or_default();
    check_text(&name, &body)?;
    if tag.as_str() == "latest" {
        return Err(DomainError::Invalid(
            "\"latest\" is reserved for the latest-release link; pick another tag name".into(),
        ));
    }
    // Fail fast on a duplicate before touching git.
    let key = repo.key();
    let (k2, t2) = (key.clone(), tag.to_string());
    if core
        .db
        .read(move |txn| release_by_tag_txn(txn, &k2, &t2))
        .await?
        .is_some()
    {
        return Err(DomainError::Conflict(format!(
            "a release for tag {tag} already exists"
        )));
    }
    // Held from looking at the tag to the release's commit (see `Core::fsck_gate`): fsck must
    // not judge the tag an orphan (and delete it) while this release is taking it up.
    let gate = core.fsck_gate.clone().read_owned().await;
    let (r, t) = (repo.clone(), tag.clone());
    let existing = core.git(move |g| g.find_tag(&r, &t)).await?;
    let mut created_tag = false;
    let (commit, target) = match existing {
        Some(info) => (
            info.commit_sha,
            input.target_commit.clone().unwrap_or_default(),
        ),
        None => {
            let target = input.target_commit.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
                DomainError::Invalid(format!(
                    "tag {tag} does not exist; pass targetCommit (a branch or commit SHA) to create it"
                ))
            })?;
            let commit = git_tag::resolve_target(core, repo, &target).await?;
            if !input.draft {
                create_release_tag(core, who, repo, &tag, &commit).await?;
                created_tag = true;
            }
            (commit, target)
        }
    };
    let now = now_unix();
    let author = who.map(|p| p.username.clone()).unwrap_or_default();
    let draft = input.draft;
    let prerelease = input.prerelease;
    let (k3, t3) = (key.clone(), tag.to_string());
    let result = core
        .db
        .write_holding(gate, move |txn| {
            let mut by_tag = txn.open_table(tables::RELEASES_BY_TAG)?;
            if by_tag.get((k3.as_str(), t3.as_str()))?.is_some() {
                return Err(DomainError::Conflict(format!(
                    "a release for tag {t3} already exists"
                )));
            }
            let r = Release {
                id: next_id(txn, "release")?,
                repo: k3.clone(),
                tag_name: t3.clone(),
                name,
                body,
                draft,
                prerelease,
                author,
                target_commit: target,
                commit_sha: commit,
                created_at: now,
                published_at: if draft { None } else { Some(now) },
            };
            by_tag.insert((k3.as_str(), t3.as_str()), r.id)?;
            txn.open_table(tables::RELEASES)?
                .insert(r.id, codec::encode(&r)?.as_slice())?;
            insert_order(txn, &r)?;
            if created_tag {
                txn.open_table(tables::PENDING_RELEASE_TAGS)?
                    .remove((k3.as_str(), t3.as_str()))?;
            }
            Ok(r)
        })
        .await;
    match result {
        Ok(_) => get(core, who, repo, Which::Tag(tag.to_string()), base_url).await,
        Err(e) => {
            if created_tag {
                // Compensate: the tag we made for this release must not outlive its failure.
                let (r, t) = (repo.clone(), tag.clone());
                if let Ok(Some(info)) = core.git(move |g| g.find_tag(&r, &t)).await {
                    let (r, t) = (repo.clone(), tag.clone());
                    if core
                        .git(move |g| g.delete_tag(&r, &t, &info.ref_target))
                        .await
                        .is_ok()
                    {
                        let _ = forget_pending_tag(core, repo, &tag).await;
                    }
                }
            }
            Err(e)
        }
    }
}

/// Creates the lightweight tag of a release at `commit`, first recording it in
/// PENDING_RELEASE_TAGS so that a crash before the release's commit leaves a tag fsck can
/// recognise as ours. The caller removes the record in the release's transaction and holds
/// `Core::fsck_gate` shared until then.
async fn create_release_tag(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &GitTagName,
    commit: &str,
) -> DomainResult<()> {
    let (k, t, c) = (repo.key(), tag.to_string(), commit.to_owned());
    // A record already there belongs to a concurrent create of the same tag (or a crash): it is
    // left as it is, and only a record this call wrote is withdrawn if the tag cannot be made.
    let inserted = core
        .db
        .write(move |txn| {
            let mut t2 = txn.open_table(tables::PENDING_RELEASE_TAGS)?;
            if t2.get((k.as_str(), t.as_str()))?.is_some() {
                return Ok::<_, DomainError>(false);
            }
            t2.insert((k.as_str(), t.as_str()), c.as_str())?;
            Ok(true)
        })
        .await?;
    let created = git_tag::create_at(core, who, repo, tag, commit, None).await;
    if created.is_err() && inserted {
        // No tag was made (or it already existed and is someone else's): not ours to track.
        let _ = forget_pending_tag(core, repo, tag).await;
    }
    created
}

/// Removes a pending-tag record (after the tag was rolled back).
async fn forget_pending_tag(core: &Core, repo: &RepoPath, tag: &GitTagName) -> DomainResult<()> {
    let (k, t) = (repo.key(), tag.to_string());
    core.db
        .write(move |txn| {
            txn.open_table(tables::PENDING_RELEASE_TAGS)?
                .remove((k.as_str(), t.as_str()))?;
            Ok::<_, DomainError>(())
        })
        .await
}

/// Updates the fields given (write). Publishing a draft sets `publishedAt` and creates its tag.
pub async fn update(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    patch: UpdateRelease,
    base_url: &str,
) -> DomainResult<ReleaseView> {
    let (current, _, _, _) = load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write).await?;
    check_text(
        patch.name.as_deref().unwrap_or(""),
        patch.body.as_deref().unwrap_or(""),
    )?;
    let publishing = current.draft && patch.draft == Some(false);
    let mut created_tag = false;
    // Held from looking at the tag to the commit, as in `create`.
    let gate = if publishing {
        Some(core.fsck_gate.clone().read_owned().await)
    } else {
        None
    };
    if publishing {
        let name = GitTagName::parse(&current.tag_name)?;
        let (r, n) = (repo.clone(), name.clone());
        if core.git(move |g| g.find_tag(&r, &n)).await?.is_none() {
            create_release_tag(core, who, repo, &name, &current.commit_sha).await?;
            created_tag = true;
        }
    }
    let id = current.id;
    let (k, t) = (repo.key(), current.tag_name.clone());
    core.db
        .write_holding(gate, move |txn| {
            if created_tag {
                txn.open_table(tables::PENDING_RELEASE_TAGS)?
                    .remove((k.as_str(), t.as_str()))?;
            }
            let mut releases = txn.open_table(tables::RELEASES)?;
            let Some(v) = releases.get(id)?.map(|v| v.value().to_vec()) else {
                return Err(DomainError::NotFound("release was deleted".into()));
            };
            let old: Release = codec::decode(&v)?;
            let mut r = old.clone();
            if let Some(n) = patch.name {
                r.name = n;
            }
            if let Some(b) = patch.body {
                r.body = b;
            }
            if let Some(p) = patch.prerelease {
                r.prerelease = p;
            }
            if let Some(d) = patch.draft {
                if r.draft && !d && r.published_at.is_none() {
                    r.published_at = Some(now_unix());
                }
                r.draft = d;
            }
            remove_order(txn, &old)?;
            insert_order(txn, &r)?;
            releases.insert(id, codec::encode(&r)?.as_slice())?;
            Ok(())
        })
        .await?;
    get(core, who, repo, Which::Tag(tag.to_owned()), base_url).await
}

fn remove_release_txn(txn: &WriteTransaction, r: &Release) -> DomainResult<()> {
    let asset_ids: Vec<(String, u64)> = {
        let idx = txn.open_table(tables::ASSETS_BY_RELEASE)?;
        let mut v = Vec::new();
        for row in idx.range((r.id, "")..)? {
            let (k, val) = row?;
            if k.value().0 != r.id {
                break;
            }
            v.push((k.value().1.to_owned(), val.value()));
        }
        v
    };
    let mut idx = txn.open_table(tables::ASSETS_BY_RELEASE)?;
    let mut assets = txn.open_table(tables::ASSETS)?;
    for (name, id) in asset_ids {
        idx.remove((r.id, name.as_str()))?;
        assets.remove(id)?;
    }
    txn.open_table(tables::RELEASES_BY_TAG)?
        .remove((r.repo.as_str(), r.tag_name.as_str()))?;
    txn.open_table(tables::RELEASES)?.remove(r.id)?;
    remove_order(txn, r)
}

/// Deletes a release and its asset files (write). The git tag stays.
pub async fn delete(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
) -> DomainResult<()> {
    let (r, _, _, _) = load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write).await?;
    let r2 = r.clone();
    core.db
        .write(move |txn| remove_release_txn(txn, &r2))
        .await?;
    core.assets.remove_release(repo, r.id)?;
    Ok(())
}

/// Removes every release row of a repository; returns their ids (to delete the files after
/// commit). Used when the repository itself is deleted.
pub fn remove_all_releases_txn(txn: &WriteTransaction, repo_key: &str) -> DomainResult<Vec<u64>> {
    let ids: Vec<u64> = {
        let t = txn.open_table(tables::RELEASE_ORDER)?;
        let mut v = Vec::new();
        for row in t.range((repo_key, 0u64, 0u64)..=(repo_key, u64::MAX, u64::MAX))? {
            v.push(u64::MAX - row?.0.value().2);
        }
        v
    };
    for id in &ids {
        let rel = txn
            .open_table(tables::RELEASES)?
            .get(*id)?
            .map(|v| codec::decode::<Release>(v.value()))
            .transpose()?;
        if let Some(r) = rel {
            remove_release_txn(txn, &r)?;
        }
    }
    Ok(ids)
}

/// What the uploader says about the file.
#[derive(Debug, Clone, Default)]
pub struct UploadMeta {
    /// `?name=`, else the part's file name.
    pub name: Option<String>,
    /// `?label=`.
    pub label: Option<String>,
    /// The part's content type.
    pub content_type: Option<String>,
}

/// Streams an asset to disk and records it (write). A cut or failed upload leaves no row and no
/// file; a duplicate name in the release is a conflict (checked before and again at commit).
pub async fn upload_asset<S, E>(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    meta: UploadMeta,
    mut body: S,
    base_url: &str,
) -> DomainResult<AssetView>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (release, assets, _, _) =
        load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write).await?;
    let raw_name = meta.name.clone().ok_or_else(|| {
        DomainError::Invalid("the file part has no file name; pass ?name=".into())
    })?;
    let name = AssetName::parse(&raw_name)?;
    let label = meta.label.clone().unwrap_or_default();
    if label.len() > 255 || label.chars().any(char::is_control) {
        return Err(DomainError::Invalid(
            "label must be at most 255 printable bytes".into(),
        ));
    }
    if assets.iter().any(|a| a.name == name.as_str()) {
        return Err(DomainError::Conflict(format!(
            "release {tag} already has an asset named {name}"
        )));
    }
    let content_type = match meta.content_type.as_deref() {
        Some(ct) if !ct.is_empty() && ct != "application/octet-stream" && ct.len() < 200 => {
            ct.to_owned()
        }
        _ => mime_guess::from_path(name.as_str())
            .first_or_octet_stream()
            .to_string(),
    };
    let asset_id = core
        .db
        .write(|txn| next_id(txn, "asset").map_err(DomainError::from))
        .await?;
    let (file, guard) = core.assets.create_temp(repo, release.id)?;
    let mut sink = Sink::start(file, Hasher::new(crate::ids::Algorithm::Sha256));
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| DomainError::BadRequest(format!("upload interrupted: {e}")))?;
        received += chunk.len() as u64;
        if received > core.limits.asset_max {
            return Err(DomainError::TooLarge(format!(
                "assets are limited to {} bytes",
                core.limits.asset_max
            )));
        }
        if sink.push(chunk).await.is_err() {
            break;
        }
    }
    let written = sink.finish(true).await?;
    let sha256 = written.hasher.digest().hex().to_owned();
    let dst = core.assets.path(repo, release.id, asset_id, &name);
    // From the rename to the row's commit the file has no row: fsck must not judge it then.
    let gate = core.fsck_gate.clone().read_owned().await;
    core.assets.publish(guard, &dst)?;
    let asset = Asset {
        id: asset_id,
        release_id: release.id,
        repo: repo.key(),
        name: name.to_string(),
        label,
        content_type,
        size: written.bytes,
        sha256,
        uploader: who.map(|p| p.username.clone()).unwrap_or_default(),
        created_at: now_unix(),
        download_count: 0,
    };
    let a2 = asset.clone();
    let committed = core
        .db
        .write_holding(gate, move |txn| {
            if txn
                .open_table(tables::RELEASES)?
                .get(a2.release_id)?
                .is_none()
            {
                return Err(DomainError::NotFound(
                    "the release was deleted during the upload".into(),
                ));
            }
            let mut idx = txn.open_table(tables::ASSETS_BY_RELEASE)?;
            if idx.get((a2.release_id, a2.name.as_str()))?.is_some() {
                return Err(DomainError::Conflict(format!(
                    "the release already has an asset named {}",
                    a2.name
                )));
            }
            idx.insert((a2.release_id, a2.name.as_str()), a2.id)?;
            txn.open_table(tables::ASSETS)?
                .insert(a2.id, codec::encode(&a2)?.as_slice())?;
            Ok(())
        })
        .await;
    if let Err(e) = committed {
        let _ = core.assets.remove(&dst);
        return Err(e);
    }
    let tags = HashMap::new();
    let pending = HashMap::new();
    Ok(Render {
        base_url,
        repo,
        tags: &tags,
        pending: &pending,
    }
    .asset(&release, &asset))
}

/// Which asset a download path names.
#[derive(Debug, Clone)]
pub enum AssetRef {
    /// `releases/{tag}/assets/{id}`.
    Id(u64),
    /// `releases/latest/assets/{name}`.
    Name(String),
}

/// An asset ready to serve.
pub struct AssetFile {
    /// Its row.
    pub asset: Asset,
    /// Its bytes.
    pub data: Mapped,
}

/// Opens an asset for download, after the same visibility checks as its release.
pub async fn open_asset(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    which: Which,
    asset: AssetRef,
) -> DomainResult<AssetFile> {
    let (release, assets, _, _) = load(core, who, repo, which, Role::Read).await?;
    let found = assets.into_iter().find(|a| match &asset {
        AssetRef::Id(id) => a.id == *id,
        AssetRef::Name(n) => &a.name == n,
    });
    let a = found.ok_or_else(|| DomainError::NotFound("asset not found".into()))?;
    let name = AssetName::parse(&a.name)?;
    let path = core.assets.path(repo, release.id, a.id, &name);
    let data = tokio::task::spawn_blocking(move || Mapped::open(&path))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?
        .map_err(|e| DomainError::Internal(format!("asset file unreadable: {e}")))?;
    Ok(AssetFile { asset: a, data })
}

/// Asset metadata (JSON) by id.
pub async fn asset_view(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    id: u64,
    base_url: &str,
) -> DomainResult<AssetView> {
    let (release, assets, _, _) =
        load(core, who, repo, Which::Tag(tag.to_owned()), Role::Read).await?;
    let a = assets
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| DomainError::NotFound("asset not found".into()))?;
    let tags = HashMap::new();
    let pending = pending(core);
    Ok(Render {
        base_url,
        repo,
        tags: &tags,
        pending: &pending,
    }
    .asset(&release, &a))
}

/// Counts one full download (batched; see `flush_downloads`).
pub fn count_download(core: &Core, asset_id: u64) {
    if let Ok(mut m) = core.pending_downloads.lock() {
        *m.entry(asset_id).or_insert(0) += 1;
    }
}

/// Writes batched download counts in one transaction.
pub async fn flush_downloads(core: &Core) -> DomainResult<()> {
    let batch: HashMap<u64, u64> = match core.pending_downloads.lock() {
        Ok(mut m) => std::mem::take(&mut *m),
        Err(_) => return Ok(()),
    };
    if batch.is_empty() {
        return Ok(());
    }
    let b2 = batch.clone();
    let res = core
        .db
        .write(move |txn| {
            let mut assets = txn.open_table(tables::ASSETS)?;
            for (id, n) in b2 {
                let Some(v) = assets.get(id)?.map(|v| v.value().to_vec()) else {
                    continue;
                };
                let mut a: Asset = codec::decode(&v)?;
                a.download_count += n;
                assets.insert(id, codec::encode(&a)?.as_slice())?;
            }
            Ok::<_, DomainError>(())
        })
        .await;
    if res.is_err() {
        // Put the counts back so a transient failure loses nothing.
        if let Ok(mut m) = core.pending_downloads.lock() {
            for (id, n) in batch {
                *m.entry(id).or_insert(0) += n;
            }
        }
    }
    res
}

/// Deletes an asset (write): row first, then the file.
pub async fn delete_asset(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    id: u64,
) -> DomainResult<()> {
    let (release, assets, _, _) =
        load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write).await?;
    let a = assets
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| DomainError::NotFound("asset not found".into()))?;
    let a2 = a.clone();
    core.db
        .write(move |txn| {
            txn.open_table(tables::ASSETS_BY_RELEASE)?
                .remove((a2.release_id, a2.name.as_str()))?;
            txn.open_table(tables::ASSETS)?.remove(a2.id)?;
            Ok::<_, DomainError>(())
        })
        .await?;
    let name = AssetName::parse(&a.name)?;
    core.assets
        .remove(&core.assets.path(repo, release.id, a.id, &name))?;
    Ok(())
}
