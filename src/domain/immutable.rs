//! Immutable releases (GitHub's 2025 model). A repository setting `immutableReleases` (set by a
//! repository admin, or inherited from its organization's default) makes every release
//! published from then on immutable: its git tag cannot be deleted or moved by anyone on any
//! path, its assets cannot be added, replaced or deleted, and it cannot be deleted or turned back
//! into a draft; only its name and notes stay editable. Drafts stay mutable (draft, attach
//! assets, publish). The tag name is tombstoned for the repository's owner/name forever, so a
//! repository deleted and created again cannot reuse it.
//!
//! The publish path calls [`on_publish`] inside its transaction (so a release is never published
//! without its mark when the setting is on) and [`published`] after the commit: the place where
//! work that follows an immutable publish (attestations) hooks in.

use std::collections::HashSet;

use redb::WriteTransaction;

use super::release::{ReleaseDetail, UpdateRelease};
use super::{Core, DomainError, DomainResult};
use crate::api::{EditRepoSettings, OrgSettings, RepoSettingsView};
use crate::auth::Principal;
use crate::git::http_backend::RefUpdate;
use crate::ids::{RepoPath, Role};
use crate::storage::records::{ImmutableMark, Release};
use crate::storage::{accounts, immutable as store, Reads};
use crate::util::now_unix;

/// The setting's name as the API and the refusals spell it.
pub const SETTING: &str = "immutableReleases";

/// Where a repository's effective `immutableReleases` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set on the repository.
    Repository,
    /// Inherited from the organization's default.
    Organization,
    /// Nothing set: off.
    Default,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Repository => "repository",
            Source::Organization => "organization",
            Source::Default => "default",
        }
    }
}

/// The effective setting of `repo` inside a transaction: its own value, else its owner's default.
pub(crate) fn effective<R: Reads>(txn: &R, repo: &RepoPath) -> DomainResult<(bool, Source)> {
    if let Some(v) = store::repo_settings(txn, repo)?.immutable_releases {
        return Ok((v, Source::Repository));
    }
    if store::owner_settings(txn, repo.owner.as_str())?.immutable_releases {
        return Ok((true, Source::Organization));
    }
    Ok((false, Source::Default))
}

/// Called inside the transaction that publishes `release` (created published, or a draft being
/// published; `release.id` is its final id): when the repository's setting is on, marks it
/// immutable and tombstones its tag. Returns whether the release just became immutable.
pub(crate) fn on_publish(
    txn: &WriteTransaction,
    repo: &RepoPath,
    release: &Release,
    publisher: Option<&Principal>,
) -> DomainResult<bool> {
    if !effective(txn, repo)?.0 || store::mark(txn, release.id)?.is_some() {
        return Ok(false);
    }
    let mark = ImmutableMark {
        since: now_unix(),
        publisher: publisher.map(|p| p.username.clone()).unwrap_or_default(),
    };
    store::mark_immutable(txn, repo, release.id, &release.tag_name, &mark)?;
    Ok(true)
}

/// Runs after the commit that made `detail`'s release immutable (see [`on_publish`]). The hook
/// point for what an immutable publish brings with it (the release attestation); a failure here
/// is reported to the publisher but does not undo the publish.
pub async fn published(
    _core: &Core,
    _who: Option<&Principal>,
    _repo: &RepoPath,
    _detail: &ReleaseDetail,
) -> DomainResult<()> {
    Ok(())
}

/// The refusal for a change to an immutable release; `what` completes "release X is immutable
/// (…): …".
pub(crate) fn refusal(tag: &str, what: &str) -> DomainError {
    DomainError::Conflict(format!(
        "release {tag} is immutable (repository setting {SETTING}): {what}"
    ))
}

/// Whether a release is immutable.
pub(crate) fn is_immutable<R: Reads>(txn: &R, release_id: u64) -> DomainResult<bool> {
    Ok(store::mark(txn, release_id)?.is_some())
}

/// Refuses (409) a change to the release when it is immutable.
pub(crate) fn refuse_change<R: Reads>(txn: &R, release: &Release, what: &str) -> DomainResult<()> {
    if is_immutable(txn, release.id)? {
        return Err(refusal(&release.tag_name, what));
    }
    Ok(())
}

/// Which of `ids` are immutable (for views).
pub(crate) fn immutable_ids<R: Reads>(txn: &R, ids: &[u64]) -> DomainResult<HashSet<u64>> {
    let mut out = HashSet::new();
    for id in ids {
        if is_immutable(txn, *id)? {
            out.insert(*id);
        }
    }
    Ok(out)
}

/// The refusal for a tag an immutable release uses or used.
fn tag_refusal(repo: &RepoPath, tag: &str, action: &str) -> DomainError {
    DomainError::Conflict(tag_message(repo.key().as_str(), tag, action))
}

fn tag_message(repo: &str, tag: &str, action: &str) -> String {
    format!(
        "tag {tag} belongs to an immutable release of {repo} (repository setting {SETTING}): it cannot be {action}"
    )
}

/// Refuses (409) a tag name an immutable release of this owner/name used, in this repository or
/// in one deleted before it: such a name is never reused.
pub(crate) fn refuse_tombstoned<R: Reads>(
    txn: &R,
    repo: &RepoPath,
    tag: &str,
    action: &str,
) -> DomainResult<()> {
    if store::tombstone(txn, repo, tag)?.is_some() {
        return Err(tag_refusal(repo, tag, action));
    }
    Ok(())
}

/// [`refuse_tombstoned`] in its own read transaction.
pub(crate) async fn check_tag(
    core: &Core,
    repo: &RepoPath,
    tag: &str,
    action: &'static str,
) -> DomainResult<()> {
    let (r, t) = (repo.clone(), tag.to_owned());
    core.db
        .read(move |txn| refuse_tombstoned(txn, &r, &t, action))
        .await
}

/// Refuses a patch of an immutable release that changes more than its name and notes.
pub(crate) fn check_patch(release: &Release, patch: &UpdateRelease) -> DomainResult<()> {
    if patch.draft == Some(true) {
        return Err(refusal(
            &release.tag_name,
            "it cannot be turned back into a draft",
        ));
    }
    if patch
        .tag_name
        .as_ref()
        .is_some_and(|t| *t != release.tag_name)
        || patch.target_commit.is_some()
    {
        return Err(refusal(
            &release.tag_name,
            "its tag and commit cannot change",
        ));
    }
    if patch.prerelease.is_some_and(|p| p != release.prerelease) {
        return Err(refusal(
            &release.tag_name,
            "only its name and notes can change",
        ));
    }
    Ok(())
}

/// The tag names the pre-receive hook must refuse to touch (every tombstoned name of the repo).
pub(crate) async fn hook_tags(core: &Core, repo: &RepoPath) -> DomainResult<Vec<String>> {
    let r = repo.clone();
    core.db
        .read(move |txn| Ok(store::tombstoned_tags(txn, &r)?))
        .await
}

/// Judges a push against the tombstoned tag names: any update of such a tag (create, move,
/// delete) is refused for every role, admins included. `Some(message)` refuses the whole push.
pub fn judge_push(repo: &str, tags: &HashSet<String>, updates: &[RefUpdate]) -> Option<String> {
    updates.iter().find_map(|u| {
        let tag = u.name.strip_prefix("refs/tags/")?;
        tags.contains(tag).then(|| {
            format!(
                "pfai: refusing the whole push: {}",
                tag_message(repo, tag, "created, moved or deleted")
            )
        })
    })
}

/// A repository's settings (read access).
pub async fn repo_settings(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
) -> DomainResult<RepoSettingsView> {
    core.repo_access(who, repo, Role::Read).await?;
    let r = repo.clone();
    core.db.read(move |txn| view(txn, &r)).await
}

fn view<R: Reads>(txn: &R, repo: &RepoPath) -> DomainResult<RepoSettingsView> {
    let (on, source) = effective(txn, repo)?;
    Ok(RepoSettingsView {
        immutable_releases: on,
        immutable_releases_source: source.as_str().to_owned(),
    })
}

/// Changes a repository's settings (repository admin).
pub async fn edit_repo_settings(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    edit: EditRepoSettings,
) -> DomainResult<RepoSettingsView> {
    core.repo_access(who, repo, Role::Admin).await?;
    let r = repo.clone();
    core.db
        .write(move |txn| {
            let mut s = store::repo_settings(txn, &r)?;
            if let Some(v) = edit.immutable_releases {
                s.immutable_releases = v;
            }
            store::put_repo_settings(txn, &r, &s)?;
            view(txn, &r)
        })
        .await
}

/// Who may see (`need` read) or change (`need` admin) an organization's defaults: its members
/// with that role, and site admins. Unknown organizations are 404.
fn org_access<R: Reads>(
    txn: &R,
    who: Option<&Principal>,
    org: &str,
    need: Role,
) -> DomainResult<()> {
    if !accounts::org_exists(txn, org)? {
        return Err(DomainError::NotFound(format!(
            "organization {org} not found"
        )));
    }
    let Some(p) = who else {
        return Err(DomainError::Unauthenticated(
            "authentication required".into(),
        ));
    };
    if p.admin {
        return Ok(());
    }
    match accounts::org_role(txn, org, &p.username)? {
        Some(r) if r >= need => Ok(()),
        Some(_) => Err(DomainError::Forbidden(format!(
            "only admins of {org} can change its settings"
        ))),
        None => Err(DomainError::NotFound(format!(
            "organization {org} not found"
        ))),
    }
}

/// An organization's defaults (members).
pub async fn org_settings(
    core: &Core,
    who: Option<&Principal>,
    org: &str,
) -> DomainResult<OrgSettings> {
    let (who, org) = (who.cloned(), org.to_owned());
    core.db
        .read(move |txn| {
            org_access(txn, who.as_ref(), &org, Role::Read)?;
            Ok(OrgSettings {
                immutable_releases: store::owner_settings(txn, &org)?.immutable_releases,
            })
        })
        .await
}

/// An organization's defaults as the web UI shows them to `who`: `None` when `who` may not see
/// them (not a member, not signed in, or `org` is a user); else the defaults and whether `who`
/// may change them (what the page's form mirrors; the change is checked again on submit).
pub async fn org_settings_for(
    core: &Core,
    who: Option<&Principal>,
    org: &str,
) -> DomainResult<Option<(OrgSettings, bool)>> {
    let (who, org) = (who.cloned(), org.to_owned());
    core.db
        .read(move |txn| {
            match org_access(txn, who.as_ref(), &org, Role::Read) {
                Ok(()) => {}
                Err(
                    DomainError::NotFound(_)
                    | DomainError::Unauthenticated(_)
                    | DomainError::Forbidden(_),
                ) => return Ok(None),
                Err(e) => return Err(e),
            }
            let can_edit = org_access(txn, who.as_ref(), &org, Role::Admin).is_ok();
            let s = OrgSettings {
                immutable_releases: store::owner_settings(txn, &org)?.immutable_releases,
            };
            Ok(Some((s, can_edit)))
        })
        .await
}

/// Sets an organization's defaults (organization admin or site admin). Repositories that do
/// not set a value themselves follow it at once.
pub async fn edit_org_settings(
    core: &Core,
    who: Option<&Principal>,
    org: &str,
    s: OrgSettings,
) -> DomainResult<OrgSettings> {
    let (who, org) = (who.cloned(), org.to_owned());
    core.db
        .write(move |txn| {
            org_access(txn, who.as_ref(), &org, Role::Admin)?;
            let mut cur = store::owner_settings(txn, &org)?;
            cur.immutable_releases = s.immutable_releases;
            store::put_owner_settings(txn, &org, &cur)?;
            Ok(OrgSettings {
                immutable_releases: cur.immutable_releases,
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstoned_tag_is_refused_in_every_update_and_for_every_role() {
        let (a, b, z) = ("a".repeat(40), "b".repeat(40), "0".repeat(40));
        let tags: HashSet<String> = ["v1".to_owned()].into();
        let up = |old: &str, new: &str, name: &str| RefUpdate {
            old: old.to_owned(),
            new: new.to_owned(),
            name: name.to_owned(),
        };
        for u in [
            up(&a, &z, "refs/tags/v1"),
            up(&a, &b, "refs/tags/v1"),
            up(&z, &a, "refs/tags/v1"),
            up(&z, &z, "refs/tags/v1"),
        ] {
            let msg = judge_push("o/r", &tags, &[u]).expect("refused");
            assert!(msg.contains("v1") && msg.contains(SETTING), "{msg}");
        }
        assert!(judge_push("o/r", &tags, &[up(&z, &a, "refs/tags/v2")]).is_none());
        assert!(judge_push("o/r", &tags, &[up(&a, &b, "refs/heads/v1")]).is_none());
    }
}
