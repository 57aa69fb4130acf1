//! Releases and their assets. A release is anchored on a git tag; the tag is created (at the
//! resolved `targetCommit`) when it did not exist — for drafts, only when they are published, so
//! that a draft does not leak through `git ls-remote`. Drafts and everything under them are
//! visible only to `write` and above, on every route.

use std::collections::HashMap;
use std::ops::ControlFlow;

pub use crate::api::{AssetView, CreateRelease, ForgeUser, ReleaseView, UpdateRelease};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::OwnedRwLockReadGuard;

use super::{git_tag, immutable, Core, DomainError, DomainResult, Page, Paged};
use crate::auth::Principal;
use crate::ids::{AssetName, GitTagName, RepoPath, Role};
use crate::storage::blob::{Hasher, Sink, TempGuard};
use crate::storage::files::AssetKey;
use crate::storage::mmap::Mapped;
use crate::storage::records::{Asset, Release};
use crate::storage::{assets, releases, Reads};
use crate::util::now_unix;

const MAX_BODY: usize = 1 << 20;
const MAX_TITLE: usize = 1024;
const MAX_LABEL: usize = 255;
/// The refusal's tail for asset changes on an immutable release.
const ASSETS_LOCKED: &str = "its assets cannot change";

/// A release with everything its views show, as the domain knows it: no URLs (the HTTP layer
/// builds them from ids and the tag).
#[derive(Debug, Clone)]
pub struct ReleaseDetail {
    /// The stored release.
    pub release: Release,
    /// Its assets, by name; each `download_count` already includes the downloads counted since
    /// the last flush.
    pub assets: Vec<Asset>,
    /// Whether it is the release marked Latest in its repository.
    pub latest: bool,
    /// The commit its tag points at now, `None` once the tag was deleted.
    pub tag_commit: Option<String>,
    /// Published while `immutableReleases` was on (see `domain::immutable`).
    pub immutable: bool,
}

/// An asset with the tag of its release (its download URL names both).
#[derive(Debug, Clone)]
pub struct AssetDetail {
    /// The tag of the release the asset belongs to.
    pub tag_name: String,
    /// The stored asset; `download_count` already includes the downloads counted since the last
    /// flush.
    pub asset: Asset,
}

fn visible(r: &Release, role: Role) -> bool {
    !r.draft || role >= Role::Write
}

/// The release marked Latest (see `latest`: the explicit choice, else the highest version).
fn latest_txn<R: Reads>(txn: &R, repo: &RepoPath) -> DomainResult<Option<Release>> {
    super::latest::latest_txn(txn, repo)
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

/// Download counts not yet flushed to the database.
fn pending(core: &Core) -> HashMap<u64, u64> {
    core.pending_downloads
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default()
}

/// Adds the unflushed downloads to the stored counts.
fn with_pending(mut assets: Vec<Asset>, pending: &HashMap<u64, u64>) -> Vec<Asset> {
    for a in &mut assets {
        a.download_count += pending.get(&a.id).copied().unwrap_or(0);
    }
    assets
}

/// Completes loaded releases with what is not in their rows: whether each is Latest, where its
/// tag points now (one git lookup for all), and the unflushed download counts.
async fn details(
    core: &Core,
    repo: &RepoPath,
    rows: Vec<(Release, Vec<Asset>)>,
    latest: Option<u64>,
) -> DomainResult<Vec<ReleaseDetail>> {
    let tags = tag_map(
        core,
        repo,
        rows.iter().map(|(r, _)| r.tag_name.clone()).collect(),
    )
    .await?;
    let pending = pending(core);
    let ids: Vec<u64> = rows.iter().map(|(r, _)| r.id).collect();
    let locked = core
        .db
        .read(move |txn| immutable::immutable_ids(txn, &ids))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(release, assets)| ReleaseDetail {
            immutable: locked.contains(&release.id),
            latest: latest == Some(release.id),
            tag_commit: tags.get(&release.tag_name).cloned(),
            assets: with_pending(assets, &pending),
            release,
        })
        .collect())
}

/// Lists releases: unpublished drafts first, then by `publishedAt` descending.
pub async fn list(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    page: Page,
) -> DomainResult<Paged<ReleaseDetail>> {
    let (_, role) = core.repo_access(who, repo, Role::Read).await?;
    let r = repo.clone();
    let (rows, has_next, latest) = core
        .db
        .read(move |txn| {
            let mut skipped = 0u64;
            let mut shown = Vec::new();
            let mut has_next = false;
            releases::scan(txn, &r, |rel| {
                if !visible(&rel, role) {
                    return ControlFlow::Continue(());
                }
                if skipped < page.offset() {
                    skipped += 1;
                    return ControlFlow::Continue(());
                }
                if shown.len() as u64 == page.limit {
                    has_next = true;
                    return ControlFlow::Break(());
                }
                shown.push(rel);
                ControlFlow::Continue(())
            })?;
            let mut rows = Vec::with_capacity(shown.len());
            for rel in shown {
                let a = assets::of_release(txn, rel.id)?;
                rows.push((rel, a));
            }
            let latest = latest_txn(txn, &r)?.map(|l| l.id);
            Ok::<_, DomainError>((rows, has_next, latest))
        })
        .await?;
    Ok(Paged {
        items: details(core, repo, rows, latest).await?,
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
    let repo = repo.clone();
    core.db
        .read(move |txn| {
            let mut out = HashMap::new();
            for t in tags {
                if let Some(r) = releases::by_tag(txn, &repo, &t)? {
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

/// A release as loaded for one request: its row, its assets (stored counts), and the id of the
/// repository's Latest release.
struct Loaded {
    release: Release,
    assets: Vec<Asset>,
    latest: Option<u64>,
}

/// Loads the release `which` names after checking that the caller has `need` on the
/// repository and may see it (a draft is "not found" below `write`).
async fn load(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    which: Which,
    need: Role,
) -> DomainResult<Loaded> {
    let (_, role) = core.repo_access(who, repo, need).await?;
    let label = match &which {
        Which::Tag(t) => t.clone(),
        Which::Latest => "latest".into(),
    };
    let r = repo.clone();
    let found = core
        .db
        .read(move |txn| {
            let latest = latest_txn(txn, &r)?;
            let latest_id = latest.as_ref().map(|l| l.id);
            let release = match which {
                Which::Tag(t) => releases::by_tag(txn, &r, &t)?,
                Which::Latest => latest,
            };
            match release {
                Some(release) => {
                    let assets = assets::of_release(txn, release.id)?;
                    Ok::<_, DomainError>(Some(Loaded {
                        release,
                        assets,
                        latest: latest_id,
                    }))
                }
                None => Ok(None),
            }
        })
        .await?;
    match found {
        Some(l) if visible(&l.release, role) => Ok(l),
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
) -> DomainResult<ReleaseDetail> {
    let l = load(core, who, repo, which, Role::Read).await?;
    let mut one = details(core, repo, vec![(l.release, l.assets)], l.latest).await?;
    one.pop()
        .ok_or_else(|| DomainError::internal("a loaded release vanished"))
}

/// Refuses a title or notes over their limits (also for releases a bundle brings).
pub(crate) fn check_text(name: &str, body: &str) -> DomainResult<()> {
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

/// A new release's fields once checked: the tag, the title (the tag when none is given) and
/// the notes.
struct Checked {
    tag: GitTagName,
    name: String,
    body: String,
}

/// Checks what `create` was given: a valid tag name that is not the reserved `latest`, and a
/// title and notes within their limits.
fn check_new(input: &CreateRelease) -> DomainResult<Checked> {
    let tag = release_tag_name(&input.tag_name)?;
    let name = input.name.clone().unwrap_or_else(|| tag.to_string());
    let body = input.body.clone().unwrap_or_default();
    check_text(&name, &body)?;
    Ok(Checked { tag, name, body })
}

/// A tag name a release may be anchored on: a valid git tag name that is not the reserved
/// `latest` (the latest-release link would hide it).
fn release_tag_name(raw: &str) -> DomainResult<GitTagName> {
    let tag = GitTagName::parse(raw)?;
    if tag.as_str() == "latest" {
        return Err(DomainError::Invalid(
            "\"latest\" is reserved for the latest-release link; pick another tag name".into(),
        ));
    }
    Ok(tag)
}

/// The conflict of a second release on one tag.
fn tag_taken(tag: &str) -> DomainError {
    DomainError::Conflict(format!("a release for tag {tag} already exists"))
}

/// Fails fast, before git is touched, when a release is already anchored on `tag`.
async fn refuse_taken_tag(core: &Core, repo: &RepoPath, tag: &GitTagName) -> DomainResult<()> {
    let (r, t) = (repo.clone(), tag.to_string());
    let existing = core
        .db
        .read(move |txn| releases::by_tag(txn, &r, &t))
        .await?;
    match existing {
        Some(_) => Err(tag_taken(tag.as_str())),
        None => Ok(()),
    }
}

/// Where a new release is anchored: the commit and the `targetCommit` it records, and whether
/// its tag exists already.
struct Anchor {
    commit: String,
    target: String,
    tag_exists: bool,
}

/// Finds the commit of a new release: the existing tag's commit, or else `targetCommit` (a
/// branch or SHA, then required) resolved to a commit.
async fn resolve_anchor(
    core: &Core,
    repo: &RepoPath,
    tag: &GitTagName,
    target_commit: Option<&str>,
) -> DomainResult<Anchor> {
    let (r, t) = (repo.clone(), tag.clone());
    if let Some(info) = core.git(move |g| g.find_tag(&r, &t)).await? {
        return Ok(Anchor {
            commit: info.commit_sha,
            target: target_commit.unwrap_or_default().to_owned(),
            tag_exists: true,
        });
    }
    // Like GitHub: a new tag without a target is made on the default branch.
    let target = match target_commit.filter(|t| !t.trim().is_empty()) {
        Some(t) => t.to_owned(),
        None => git_tag::default_branch(core, repo).await?.ok_or_else(|| {
            DomainError::Invalid(format!(
                "tag {tag} does not exist and {repo} has no default branch to make it on; pass targetCommit (a branch or commit SHA) to create it"
            ))
        })?,
    };
    Ok(Anchor {
        commit: git_tag::resolve_target(core, repo, &target).await?,
        target,
        tag_exists: false,
    })
}

/// Records a new release in one transaction: refused if a release took the tag meanwhile (or
/// an immutable release ever used it); withdraws the pending record of a tag made for it
/// (`made_tag`); marks a published one immutable when the repository says so. Returns whether
/// it became immutable. The fsck gate is released after the commit.
async fn insert_release(
    core: &Core,
    gate: OwnedRwLockReadGuard<()>,
    who: Option<&Principal>,
    repo: &RepoPath,
    release: Release,
    made_tag: bool,
    make_latest: Option<super::latest::MakeLatest>,
) -> DomainResult<bool> {
    let repo = repo.clone();
    let who = who.cloned();
    let signer = core.attest.signer();
    core.db
        .write_holding(gate, move |txn| {
            if releases::by_tag(txn, &repo, &release.tag_name)?.is_some() {
                return Err(tag_taken(&release.tag_name));
            }
            immutable::refuse_tombstoned(txn, &repo, &release.tag_name, "reused")?;
            let release = Release {
                id: releases::next_id(txn)?,
                ..release
            };
            releases::insert(txn, &release)?;
            super::latest::apply(txn, &repo, &release, make_latest, !release.draft)?;
            if made_tag {
                releases::clear_pending_tag(txn, &repo, &release.tag_name)?;
            }
            if release.draft {
                return Ok(false);
            }
            let locked = immutable::on_publish(txn, &repo, &release, who.as_ref())?;
            // Published immutable at creation: attested in the same transaction (no assets yet).
            if locked {
                super::attestation::record(txn, &signer, &release, &release.author)?;
            }
            Ok(locked)
        })
        .await
}

/// Deletes the tag made for a release that could not be recorded, and then its pending record
/// (which stays, for fsck, if the tag cannot be deleted). Best effort: the caller reports the
/// original failure.
async fn roll_back_release_tag(core: &Core, repo: &RepoPath, tag: &GitTagName) {
    let (r, t) = (repo.clone(), tag.clone());
    if let Ok(Some(info)) = core.git(move |g| g.find_tag(&r, &t)).await {
        let (r, t) = (repo.clone(), tag.clone());
        if core
            .git(move |g| g.delete_tag(&r, &t, &info.ref_target))
            .await
            .is_ok()
        {
            let _ = forget_pending_tag(core, repo, tag).await;
        }
    }
}

/// Creates a release (write). See the module doc for how the tag is found or made.
pub async fn create(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    input: CreateRelease,
) -> DomainResult<ReleaseDetail> {
    core.repo_access(who, repo, Role::Write).await?;
    let Checked { tag, name, body } = check_new(&input)?;
    super::latest::check(input.make_latest, input.prerelease)?;
    refuse_taken_tag(core, repo, &tag).await?;
    immutable::check_tag(core, repo, tag.as_str(), "reused").await?;
    // Held from looking at the tag to the release's commit (see `Core::fsck_gate`): fsck must
    // not judge the tag an orphan (and delete it) while this release is taking it up.
    let gate = core.fsck_gate.clone().read_owned().await;
    let anchor = resolve_anchor(core, repo, &tag, input.target_commit.as_deref()).await?;
    let body = if input.generate_notes {
        let notes = super::notes::for_commit(core, repo, &tag, &anchor.commit, None).await?;
        let body = if body.trim().is_empty() {
            notes.body
        } else {
            format!("{}\n{body}", notes.body)
        };
        check_text(&name, &body)?;
        body
    } else {
        body
    };
    // A draft's tag is made only when it is published.
    let make_tag = !anchor.tag_exists && !input.draft;
    if make_tag {
        create_release_tag(core, who, repo, &tag, &anchor.commit).await?;
    }
    let now = now_unix();
    let release = Release {
        id: 0, // given by `insert_release`
        repo: repo.key(),
        tag_name: tag.to_string(),
        name,
        body,
        draft: input.draft,
        prerelease: input.prerelease,
        author: who.map(|p| p.username.clone()).unwrap_or_default(),
        target_commit: anchor.target,
        commit_sha: anchor.commit,
        created_at: now,
        published_at: if input.draft { None } else { Some(now) },
    };
    let inserted = insert_release(core, gate, who, repo, release, make_tag, input.make_latest);
    let locked = match inserted.await {
        Ok(locked) => locked,
        Err(e) => {
            if make_tag {
                // The tag made for this release must not outlive its failure.
                roll_back_release_tag(core, repo, &tag).await;
            }
            return Err(e);
        }
    };
    let detail = get(core, who, repo, Which::Tag(tag.to_string())).await?;
    if locked {
        immutable::published(core, who, repo, &detail).await?;
    }
    Ok(detail)
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
    let (r, t, c) = (repo.clone(), tag.to_string(), commit.to_owned());
    // A record already there belongs to a concurrent create of the same tag (or a crash): it is
    // left as it is, and only a record this call wrote is withdrawn if the tag cannot be made.
    let marked = core
        .db
        .write(move |txn| releases::mark_pending_tag(txn, &r, &t, &c))
        .await?;
    let created = git_tag::create_at(core, who, repo, tag, commit, None).await;
    if created.is_err() && marked {
        // No tag was made (or it already existed and is someone else's): not ours to track.
        let _ = forget_pending_tag(core, repo, tag).await;
    }
    created
}

/// Removes a pending-tag record (after the tag was rolled back).
async fn forget_pending_tag(core: &Core, repo: &RepoPath, tag: &GitTagName) -> DomainResult<()> {
    let (r, t) = (repo.clone(), tag.to_string());
    Ok(core
        .db
        .write(move |txn| releases::clear_pending_tag(txn, &r, &t))
        .await?)
}

/// Applies a patch to a release: publishing a draft stamps `publishedAt` with now, and turning
/// a release back into a draft clears it (so it is listed with the drafts again). A moved
/// release takes its new tag and commit from `anchor`.
fn apply_patch(r: &mut Release, patch: UpdateRelease, anchor: Option<Moved>) {
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
        if r.draft && !d {
            r.published_at = Some(now_unix());
        } else if d {
            r.published_at = None;
        }
        r.draft = d;
    }
    if let Some(a) = anchor {
        r.tag_name = a.tag.to_string();
        r.commit_sha = a.commit;
        r.target_commit = a.target;
    }
}

/// Where a patch with `tagName` / `targetCommit` leaves a release: its tag, commit and recorded
/// target, and whether that tag exists in git already.
#[derive(Clone)]
struct Moved {
    tag: GitTagName,
    commit: String,
    target: String,
    tag_exists: bool,
}

/// Works out where `tagName` / `targetCommit` move a release, as GitHub does: an existing tag
/// brings its own commit (a `targetCommit` naming another commit is refused, since the tag
/// would not move); a tag that does not exist yet will be made at `targetCommit`, else at the
/// release's current commit. A new tag name must be free of releases and never have been used
/// by an immutable release.
async fn moved_anchor(
    core: &Core,
    repo: &RepoPath,
    current: &Release,
    patch: &UpdateRelease,
) -> DomainResult<Moved> {
    let tag = match patch.tag_name.as_deref() {
        Some(t) => release_tag_name(t)?,
        None => GitTagName::parse(&current.tag_name)?,
    };
    if tag.as_str() != current.tag_name {
        refuse_taken_tag(core, repo, &tag).await?;
        immutable::check_tag(core, repo, tag.as_str(), "reused").await?;
    }
    let target = patch
        .target_commit
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let commit = match target {
        Some(t) => Some(git_tag::resolve_target(core, repo, t).await?),
        None => None,
    };
    let (r, t) = (repo.clone(), tag.clone());
    if let Some(info) = core.git(move |g| g.find_tag(&r, &t)).await? {
        if commit.as_ref().is_some_and(|c| *c != info.commit_sha) {
            return Err(DomainError::Invalid(format!(
                "tag {tag} already exists at {}; a target only applies to a tag that does not \
                 exist yet (move the tag itself, or pick a new tag name)",
                super::changelog::short_sha(&info.commit_sha)
            )));
        }
        return Ok(Moved {
            tag,
            commit: info.commit_sha,
            target: target.map_or_else(|| current.target_commit.clone(), str::to_owned),
            tag_exists: true,
        });
    }
    Ok(Moved {
        tag,
        commit: commit.unwrap_or_else(|| current.commit_sha.clone()),
        target: target.map_or_else(|| current.target_commit.clone(), str::to_owned),
        tag_exists: false,
    })
}

/// Refuses to move an immutable release to another tag or commit before git is touched (the
/// transaction checks again).
async fn refuse_moving_immutable(core: &Core, current: &Release) -> DomainResult<()> {
    let id = current.id;
    let locked = core
        .db
        .read(move |txn| immutable::is_immutable(txn, id))
        .await?;
    if locked {
        return Err(immutable::refusal(
            &current.tag_name,
            "its tag and commit cannot change",
        ));
    }
    Ok(())
}

/// Updates the fields given (write). Publishing a draft sets `publishedAt`; a release that is
/// published after the patch gets its tag made when the tag does not exist yet (publishing,
/// or moving to a new tag with `tagName`). The old tag of a moved release stays in git.
pub async fn update(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    patch: UpdateRelease,
) -> DomainResult<ReleaseDetail> {
    let current = load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write)
        .await?
        .release;
    check_text(
        patch.name.as_deref().unwrap_or(""),
        patch.body.as_deref().unwrap_or(""),
    )?;
    let publishing = current.draft && patch.draft == Some(false);
    let published_after = patch.draft.map_or(!current.draft, |d| !d);
    let make_latest = patch.make_latest;
    super::latest::check(make_latest, patch.prerelease.unwrap_or(current.prerelease))?;
    // Naming the release's own tag again, with no target, moves nothing (and must not re-read
    // the commit of a tag that was moved in git since).
    let moving = patch
        .tag_name
        .as_deref()
        .is_some_and(|t| t != current.tag_name)
        || patch
            .target_commit
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
    let moved = if moving {
        refuse_moving_immutable(core, &current).await?;
        Some(moved_anchor(core, repo, &current, &patch).await?)
    } else {
        None
    };
    // Held from looking at the tag to the commit, as in `create`.
    let gate = if publishing || moved.is_some() {
        Some(core.fsck_gate.clone().read_owned().await)
    } else {
        None
    };
    let final_tag = match &moved {
        Some(m) => m.tag.clone(),
        None => GitTagName::parse(&current.tag_name)?,
    };
    let mut made_tag = false;
    if published_after && (publishing || moved.is_some()) {
        immutable::check_tag(core, repo, final_tag.as_str(), "reused").await?;
        let exists = match &moved {
            Some(m) => m.tag_exists,
            None => {
                let (r, n) = (repo.clone(), final_tag.clone());
                core.git(move |g| g.find_tag(&r, &n)).await?.is_some()
            }
        };
        if !exists {
            let commit = moved
                .as_ref()
                .map_or(current.commit_sha.as_str(), |m| m.commit.as_str());
            create_release_tag(core, who, repo, &final_tag, commit).await?;
            made_tag = true;
        }
    }
    let (r, t) = (repo.clone(), final_tag.to_string());
    let publisher = who.cloned();
    let signer = core.attest.signer();
    let written = core
        .db
        .write_holding(gate, move |txn| {
            if made_tag {
                releases::clear_pending_tag(txn, &r, &t)?;
            }
            if immutable::is_immutable(txn, current.id)? {
                immutable::check_patch(&current, &patch)?;
            }
            if t != current.tag_name {
                if releases::by_tag(txn, &r, &t)?.is_some() {
                    return Err(tag_taken(&t));
                }
                immutable::refuse_tombstoned(txn, &r, &t, "reused")?;
            }
            match releases::update(txn, current.id, |rel| apply_patch(rel, patch, moved))? {
                Some(rel) => {
                    super::latest::apply(txn, &r, &rel, make_latest, publishing)?;
                    if !publishing {
                        return Ok(false);
                    }
                    let locked = immutable::on_publish(txn, &r, &rel, publisher.as_ref())?;
                    // Published immutable: attested with the assets it has now, in this
                    // transaction, so an immutable release never exists without its attestation.
                    if locked {
                        let by = publisher
                            .as_ref()
                            .map(|p| p.username.as_str())
                            .unwrap_or("");
                        super::attestation::record(txn, &signer, &rel, by)?;
                    }
                    Ok(locked)
                }
                None => Err(DomainError::NotFound("release was deleted".into())),
            }
        })
        .await;
    let locked = match written {
        Ok(locked) => locked,
        Err(e) => {
            if made_tag {
                // The tag made for this patch must not outlive its failure.
                roll_back_release_tag(core, repo, &final_tag).await;
            }
            return Err(e);
        }
    };
    let detail = get(core, who, repo, Which::Tag(final_tag.to_string())).await?;
    if locked {
        immutable::published(core, who, repo, &detail).await?;
    }
    Ok(detail)
}

/// Deletes a release and its asset files (write). The git tag stays.
pub async fn delete(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
) -> DomainResult<()> {
    let release = load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write)
        .await?
        .release;
    let id = release.id;
    // A backup links the files of its snapshot while holding this exclusively.
    let _gate = core.backup_gate.clone().read_owned().await;
    core.db
        .write(move |txn| {
            immutable::refuse_change(txn, &release, "it cannot be deleted")?;
            Ok::<_, DomainError>(releases::remove(txn, id)?)
        })
        .await?;
    core.assets.remove_release(repo, id)?;
    Ok(())
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

/// What an upload says of its asset, checked: the rules every upload path applies, and what
/// the `multipart_upload` fuzz target holds them to.
#[derive(Debug)]
pub struct CheckedMeta {
    /// A valid asset name.
    pub name: AssetName,
    /// At most `MAX_LABEL` bytes, no control characters.
    pub label: String,
    /// The uploader's content type, or a guess from the name.
    pub content_type: String,
}

impl UploadMeta {
    /// Checks the name and label and settles the content type.
    pub fn check(&self) -> DomainResult<CheckedMeta> {
        let name = asset_name(self)?;
        let label = asset_label(self)?;
        let content_type = content_type_of(self, &name);
        Ok(CheckedMeta {
            name,
            label,
            content_type,
        })
    }
}

/// The asset's name: `?name=` or the part's file name, required and valid.
fn asset_name(meta: &UploadMeta) -> DomainResult<AssetName> {
    let raw = meta.name.as_deref().ok_or_else(|| {
        DomainError::Invalid("the file part has no file name; pass ?name=".into())
    })?;
    Ok(AssetName::parse(raw)?)
}

/// The label: optional, at most `MAX_LABEL` bytes, no control characters.
fn asset_label(meta: &UploadMeta) -> DomainResult<String> {
    let label = meta.label.clone().unwrap_or_default();
    if label.len() > MAX_LABEL || label.chars().any(char::is_control) {
        return Err(DomainError::Invalid(
            "label must be at most 255 printable bytes".into(),
        ));
    }
    Ok(label)
}

/// Refuses a name the release already uses (checked again when the asset is recorded).
fn refuse_duplicate_name(assets: &[Asset], tag: &str, name: &AssetName) -> DomainResult<()> {
    if assets.iter().any(|a| a.name == name.as_str()) {
        return Err(DomainError::Conflict(format!(
            "release {tag} already has an asset named {name}"
        )));
    }
    Ok(())
}

/// The uploader's content type when it says something a header can carry back (visible ASCII,
/// under 200 bytes), else a guess from the file name.
fn content_type_of(meta: &UploadMeta, name: &AssetName) -> String {
    match meta.content_type.as_deref() {
        Some(ct)
            if !ct.is_empty()
                && ct != "application/octet-stream"
                && ct.len() < 200
                && ct.bytes().all(|b| (b' '..=b'~').contains(&b)) =>
        {
            ct.to_owned()
        }
        _ => mime_guess::from_path(name.as_str())
            .first_or_octet_stream()
            .to_string(),
    }
}

/// A fully received, fsynced upload in its temp file (removed if dropped unpublished).
struct Received {
    guard: TempGuard,
    bytes: u64,
    sha256: String,
    blake3: Option<String>,
}

/// Streams the body into a scratch file for the asset, hashing it, and refuses it past the
/// asset size limit. A cut stream is a bad request; its scratch file is removed.
async fn stream_to_temp<S, E>(
    core: &Core,
    key: &AssetKey,
    budget: &crate::domain::quota::Budget,
    mut body: S,
) -> DomainResult<Received>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (file, guard) = core.assets.stage(key)?;
    use crate::ids::Algorithm;
    let mut sink = Sink::start(file, Hasher::pair(Algorithm::Sha256, Algorithm::Blake3));
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
        budget.admit(received)?;
        if sink.push(chunk).await.is_err() {
            break;
        }
    }
    let written = sink.finish(true).await?;
    Ok(Received {
        guard,
        bytes: written.bytes,
        sha256: written.hasher.digest().hex().to_owned(),
        blake3: written.hasher.second_digest().map(|d| d.hex().to_owned()),
    })
}

/// Records an asset whose file is in place: refused if its release was deleted or its name
/// taken meanwhile. The fsck gate is released after the commit.
async fn record_asset(
    core: &Core,
    gate: OwnedRwLockReadGuard<()>,
    asset: Asset,
) -> DomainResult<()> {
    core.db
        .write_holding(gate, move |txn| {
            let Some(release) = releases::get(txn, asset.release_id)? else {
                return Err(DomainError::NotFound(
                    "the release was deleted during the upload".into(),
                ));
            };
            immutable::refuse_change(txn, &release, ASSETS_LOCKED)?;
            if assets::name_taken(txn, asset.release_id, &asset.name)? {
                return Err(DomainError::Conflict(format!(
                    "the release already has an asset named {}",
                    asset.name
                )));
            }
            crate::domain::quota::check_in(txn, repo_owner(&asset.repo), asset.size)?;
            assets::insert(txn, &asset)?;
            Ok(())
        })
        .await
}

/// Streams an asset to disk and records it (write). A cut or failed upload leaves no row and no
/// file; a duplicate name in the release is a conflict (checked before and again at commit).
pub async fn upload_asset<S, E>(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    meta: UploadMeta,
    body: S,
) -> DomainResult<AssetDetail>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let Loaded {
        release, assets, ..
    } = load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write).await?;
    let (rel, id) = (release.clone(), release.id);
    let locked = core
        .db
        .read(move |txn| immutable::is_immutable(txn, id))
        .await?;
    if locked {
        return Err(immutable::refusal(&rel.tag_name, ASSETS_LOCKED));
    }
    let CheckedMeta {
        name,
        label,
        content_type,
    } = meta.check()?;
    refuse_duplicate_name(&assets, tag, &name)?;
    let asset_id = core
        .db
        .write(|txn| assets::next_id(txn).map_err(DomainError::from))
        .await?;
    let key = AssetKey {
        repo: repo.clone(),
        release: release.id,
        asset: asset_id,
        name: name.clone(),
    };
    let budget = crate::domain::quota::Budget::of(core, &repo.owner.to_string()).await?;
    budget.admit(0)?;
    let received = stream_to_temp(core, &key, &budget, body).await?;
    // From the publish to the row's commit the file has no row: fsck must not judge it then.
    let gate = core.fsck_gate.clone().read_owned().await;
    core.assets.publish(received.guard, &key)?;
    let asset = Asset {
        id: asset_id,
        release_id: release.id,
        repo: repo.key(),
        name: name.to_string(),
        label,
        content_type,
        size: received.bytes,
        sha256: received.sha256,
        uploader: who.map(|p| p.username.clone()).unwrap_or_default(),
        created_at: now_unix(),
        download_count: 0,
        blake3: received.blake3,
    };
    if let Err(e) = record_asset(core, gate, asset.clone()).await {
        let _ = core.assets.remove(&key);
        return Err(e);
    }
    Ok(AssetDetail {
        tag_name: release.tag_name,
        asset,
    })
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

/// The asset a download names and its file's key, after the same visibility checks as its
/// release (shared by serving it and by redirecting to it).
async fn find_asset(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    which: Which,
    asset: AssetRef,
) -> DomainResult<(Asset, AssetKey)> {
    let Loaded {
        release, assets, ..
    } = load(core, who, repo, which, Role::Read).await?;
    let found = assets.into_iter().find(|a| match &asset {
        AssetRef::Id(id) => a.id == *id,
        AssetRef::Name(n) => &a.name == n,
    });
    let a = found.ok_or_else(|| DomainError::NotFound("asset not found".into()))?;
    let key = AssetKey {
        repo: repo.clone(),
        release: release.id,
        asset: a.id,
        name: AssetName::parse(&a.name)?,
    };
    Ok((a, key))
}

/// Opens an asset for download, after the same visibility checks as its release.
pub async fn open_asset(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    which: Which,
    asset: AssetRef,
) -> DomainResult<AssetFile> {
    let (a, key) = find_asset(core, who, repo, which, asset).await?;
    let files = core.assets.clone();
    let data = tokio::task::spawn_blocking(move || files.open_asset(&key))
        .await
        .map_err(DomainError::from)?
        .map_err(|e| DomainError::internal_from("asset file unreadable", e))?;
    Ok(AssetFile { asset: a, data })
}

/// Where to send a client for an asset's bytes instead of serving them (`--s3-redirect`): a
/// presigned object-store URL after the same checks as `open_asset`, counted as a download;
/// `None` when downloads are not redirected.
pub async fn asset_redirect(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    which: Which,
    asset: AssetRef,
) -> DomainResult<Option<String>> {
    if !core.assets.redirects() {
        return Ok(None);
    }
    let (a, key) = find_asset(core, who, repo, which, asset).await?;
    let files = core.assets.clone();
    let url = tokio::task::spawn_blocking(move || files.presigned_url(&key))
        .await
        .map_err(DomainError::from)?
        .map_err(|e| DomainError::internal_from("presigning an asset URL", e))?;
    if url.is_some() {
        count_download(core, a.id);
    }
    Ok(url)
}

/// One asset's metadata by id, with its unflushed downloads counted.
pub async fn asset(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    id: u64,
) -> DomainResult<AssetDetail> {
    let Loaded {
        release, assets, ..
    } = load(core, who, repo, Which::Tag(tag.to_owned()), Role::Read).await?;
    let a = assets
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| DomainError::NotFound("asset not found".into()))?;
    let asset = with_pending(vec![a], &pending(core))
        .pop()
        .ok_or_else(|| DomainError::internal("a loaded asset vanished"))?;
    Ok(AssetDetail {
        tag_name: release.tag_name,
        asset,
    })
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
        .write(move |txn| assets::add_downloads(txn, &b2))
        .await
        .map_err(DomainError::from);
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
    let Loaded {
        release, assets, ..
    } = load(core, who, repo, Which::Tag(tag.to_owned()), Role::Write).await?;
    let a = assets
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| DomainError::NotFound("asset not found".into()))?;
    let _gate = core.backup_gate.clone().read_owned().await;
    let rel = release.clone();
    core.db
        .write(move |txn| {
            immutable::refuse_change(txn, &rel, ASSETS_LOCKED)?;
            Ok::<_, DomainError>(assets::remove(txn, id)?)
        })
        .await?;
    core.assets.remove(&AssetKey {
        repo: repo.clone(),
        release: release.id,
        asset: a.id,
        name: AssetName::parse(&a.name)?,
    })?;
    Ok(())
}

/// The owner part of an `owner/repo` key.
fn repo_owner(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}
