//! Revisions people type: the default branch a release falls back to, and abbreviated commit
//! SHAs (`gh release create --target 1a2b3c4`), resolved in-process with gix.

use super::{peel_to_commit, read_err, GitError, GitStore};
use crate::ids::RepoPath;

/// What an abbreviated SHA names in one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShortSha {
    /// No object starts with it (or the object is not a commit).
    None,
    /// Exactly one commit: its full SHA.
    One(String),
    /// More than one object starts with it.
    Ambiguous,
}

/// Shortest abbreviation accepted, like git's `core.abbrev` minimum.
pub const MIN_SHORT_SHA: usize = 4;

impl GitStore {
    /// The branch `HEAD` points at (`main` after `init`), when it exists and has a commit:
    /// where a release for a new tag is made when no target is given, like `gh`.
    pub fn default_branch(&self, repo: &RepoPath) -> Result<Option<String>, GitError> {
        let r = self.open_repo(repo)?;
        let Some(head) = r.head_name().map_err(read_err)? else {
            return Ok(None);
        };
        let Some(branch) = head.as_bstr().strip_prefix(b"refs/heads/") else {
            return Ok(None);
        };
        let branch = String::from_utf8_lossy(branch).into_owned();
        if r.try_find_reference(head.as_bstr())
            .map_err(read_err)?
            .is_none()
        {
            return Ok(None);
        }
        Ok(Some(branch))
    }

    /// Resolves an abbreviated commit SHA (4 to 39 hex digits) by object-prefix lookup.
    pub fn resolve_short_sha(&self, repo: &RepoPath, short: &str) -> Result<ShortSha, GitError> {
        if short.len() < MIN_SHORT_SHA
            || short.len() >= 40
            || !short.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(ShortSha::None);
        }
        let r = self.open_repo(repo)?;
        let prefix = gix::hash::Prefix::from_hex(&short.to_ascii_lowercase()).map_err(read_err)?;
        match r.objects.lookup_prefix(prefix, None).map_err(read_err)? {
            None => Ok(ShortSha::None),
            Some(Err(())) => Ok(ShortSha::Ambiguous),
            Some(Ok(id)) => Ok(match peel_to_commit(&r, id)? {
                Some(c) => ShortSha::One(c),
                None => ShortSha::None,
            }),
        }
    }
}
