//! The README shown on a repository's overview page, read from the default branch with the same
//! visibility rule as every other read of the repository.

pub use crate::git::readme::{Readme, README_MAX};

use super::{Core, DomainResult};
use crate::auth::Principal;
use crate::ids::{RepoPath, Role};

/// The README at the root of the default branch, if there is one and the caller may read it.
pub async fn get(
    core: &Core,
    who: Option<&Principal>,
    repo: &RepoPath,
) -> DomainResult<Option<Readme>> {
    core.repo_access(who, repo, Role::Read).await?;
    let r = repo.clone();
    core.git(move |g| g.readme(&r)).await
}
