//! The REST API under `/api/v1`: one function per endpoint returning a filter, grouped by
//! resource, each ending in `.then(handler).map(error::rest_reply)`.

pub mod accounts;
pub mod admin;
pub mod releases;
pub mod tags;

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use super::Ctx;
use crate::domain::{DomainError, DomainResult};
use crate::ids::RepoPath;

/// Parses `{owner}/{repo}` path segments; an invalid name cannot exist, so it is a 404.
pub fn repo_path(owner: &str, repo: &str) -> DomainResult<RepoPath> {
    RepoPath::new(owner, repo)
        .map_err(|_| DomainError::NotFound(format!("repository {owner}/{repo} not found")))
}

/// Every REST route.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    accounts::routes(core.clone())
        .or(releases::routes(core.clone()))
        .unify()
        .or(tags::routes(core.clone()))
        .unify()
        .or(admin::routes(core))
        .unify()
        .boxed()
}
