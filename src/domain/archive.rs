//! Source archives of a tag ("Source code (zip)" / "(tar.gz)" on every release, like GitHub):
//! anyone who can read the repository (and so could clone it) may download the archive of any
//! of its tags. The bytes come from `git archive`, cached by commit in `git::archive`.

use super::{Core, DomainError, DomainResult};
use crate::auth::Principal;
use crate::git::archive::archive_stem;
pub use crate::git::archive::{Archive, ArchiveFormat};
use crate::ids::{GitTagName, RepoPath, Role};

/// An archive ready to send, with the names a client saves it under.
pub struct SourceArchive {
    /// `<repo>-<tag>.<ext>`, GitHub's file name.
    pub file_name: String,
    /// The commit archived (an archive of a commit never changes: a strong `ETag`).
    pub commit: String,
    /// The bytes, cached or streaming.
    pub body: Archive,
}

/// The archive of `tag` in `format`. A tag that is not a valid name or does not exist is a 404,
/// like a repository the caller cannot read. `stream`: a miss may be streamed as it is made
/// (a plain `GET`); otherwise it is made first (`HEAD`, ranges).
pub async fn source_archive(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
    tag: &str,
    format: ArchiveFormat,
    stream: bool,
) -> DomainResult<SourceArchive> {
    core.repo_access(who, repo, Role::Read).await?;
    let missing = || DomainError::NotFound(format!("tag {tag} not found in {repo}"));
    let tag = GitTagName::parse(tag).map_err(|_| missing())?;
    let (r, t) = (repo.clone(), tag.clone());
    let info = core.git(move |g| g.find_tag(&r, &t)).await?;
    let commit = match info {
        Some(i) if !i.commit_sha.is_empty() => i.commit_sha,
        _ => return Err(missing()),
    };
    let stem = archive_stem(repo.name.as_str(), &tag);
    let (r, c, s) = (repo.clone(), commit.clone(), stem.clone());
    let body = core
        .git(move |g| g.archive(&r, &c, format, &s, stream))
        .await?;
    Ok(SourceArchive {
        file_name: format!("{stem}.{}", format.ext()),
        commit,
        body,
    })
}
