//! Generated release notes (`POST …/releases/generate-notes`, `generateNotes` on create, the
//! draft form's button): finds the range — from the previous release's tag (given, or the
//! nearest published release whose tag is an ancestor of the new commit) to the new tag or
//! target — reads it with `git::changelog`, and formats it with `changelog`.

pub use crate::api::{GenerateNotes, GeneratedNotes};
use crate::auth::Principal;
use crate::git::changelog::Since;
use crate::ids::{GitTagName, RepoPath, Role};
use crate::storage::releases;

use super::changelog::{self, NoteCommit, NotesInput};
use super::{git_tag, latest, Core, DomainError, DomainResult};

/// Generates the notes of a release that may not exist yet (write, like GitHub): the tag's
/// commit when it exists, else `targetCommit` resolved.
pub async fn generate(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    req: GenerateNotes,
) -> DomainResult<GeneratedNotes> {
    core.repo_access(who, repo, Role::Write).await?;
    let tag = GitTagName::parse(&req.tag_name)?;
    let (r, t) = (repo.clone(), tag.clone());
    let tip = match core.git(move |g| g.find_tag(&r, &t)).await? {
        Some(info) if !info.commit_sha.is_empty() => info.commit_sha,
        _ => {
            let target = req
                .target_commit
                .as_deref()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| {
                    DomainError::Invalid(format!(
                        "tag {tag} does not exist; pass targetCommit (a branch or commit SHA) for the notes to end at"
                    ))
                })?;
            git_tag::resolve_target(core, repo, target).await?
        }
    };
    for_commit(core, repo, &tag, &tip, req.previous_tag_name.as_deref()).await
}

/// The notes of `tag` at commit `tip` (the caller checked access). `previous` names the tag
/// the range starts after; by default the nearest published release's tag by ancestry.
pub(crate) async fn for_commit(
    core: &Core,
    repo: &RepoPath,
    tag: &GitTagName,
    tip: &str,
    previous: Option<&str>,
) -> DomainResult<GeneratedNotes> {
    let since = match previous.filter(|p| !p.trim().is_empty()) {
        Some(p) => {
            let prev = GitTagName::parse(p.trim())?;
            let (r, t) = (repo.clone(), prev.clone());
            match core.git(move |g| g.find_tag(&r, &t)).await? {
                Some(info) if !info.commit_sha.is_empty() => Since::Commit(info.commit_sha),
                _ => {
                    return Err(DomainError::Invalid(format!(
                        "previous tag {prev} does not exist in {repo}"
                    )))
                }
            }
        }
        None => Since::NearestOf(release_tags(core, repo, tag).await?),
    };
    let (r, tip2) = (repo.clone(), tip.to_owned());
    let log = core.git(move |g| g.changelog(&r, &tip2, since)).await?;
    let previous_tag = match previous.filter(|p| !p.trim().is_empty()) {
        Some(p) => Some(p.trim().to_owned()),
        None => log
            .previous_tags
            .iter()
            .max_by(|a, b| latest::cmp_tags(a, b))
            .cloned(),
    };
    let commits: Vec<NoteCommit> = log
        .commits
        .into_iter()
        .map(|c| NoteCommit {
            sha: c.sha,
            message: c.message,
            author_name: c.author_name,
            author_email: c.author_email,
        })
        .collect();
    let body = changelog::format(&NotesInput {
        commits: &commits,
        earlier_authors: &log.earlier_authors,
        previous_tag: previous_tag.as_deref(),
        tag: tag.as_str(),
    });
    Ok(GeneratedNotes {
        name: tag.to_string(),
        body,
    })
}

/// The `(tag, commit)` of every published release but `tag`'s whose tag still exists: the
/// candidates for the previous release.
async fn release_tags(
    core: &Core,
    repo: &RepoPath,
    tag: &GitTagName,
) -> DomainResult<Vec<(String, String)>> {
    let (r, own) = (repo.clone(), tag.to_string());
    let names: Vec<String> = core
        .db
        .read(move |txn| {
            Ok::<_, DomainError>(
                releases::published(txn, &r)?
                    .into_iter()
                    .filter(|rel| !rel.draft && rel.tag_name != own)
                    .map(|rel| rel.tag_name)
                    .collect(),
            )
        })
        .await?;
    let r = repo.clone();
    core.git(move |g| g.tag_commits(&r, &names)).await
}
