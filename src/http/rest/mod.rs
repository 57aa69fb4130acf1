//! The REST API under `/api/v1`: one function per endpoint returning a filter, grouped by
//! resource. Each route matches its path (ids typed by `http::edge`'s segment filters) and
//! method, extracts the `Edge`, and hands its handler to `Edge::rest`, which authenticates,
//! checks the ids and turns errors into the REST reply; handlers take a `Caller` and ids.

pub mod accounts;
pub mod admin;
pub mod attestations;
pub mod backup;
pub mod bundles;
pub mod mirrors;
pub mod notes;
pub mod quotas;
pub mod releases;
pub mod retention;
pub mod settings;
pub mod tags;

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use super::edge::{repo_segments, Parsed};
use super::Ctx;
use crate::ids::RepoPath;

/// `/api/v1/forge/{owner}/{repo}`, before the endpoint's own segments.
fn forge_repo() -> impl Filter<Extract = (Parsed<RepoPath>,), Error = warp::Rejection> + Clone {
    warp::path!("api" / "v1" / "forge" / ..).and(repo_segments())
}

/// Every REST route.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    accounts::routes(core.clone())
        .or(releases::routes(core.clone()))
        .unify()
        .or(tags::routes(core.clone()))
        .unify()
        .or(admin::routes(core.clone()))
        .unify()
        .or(backup::routes(core.clone()))
        .unify()
        .or(retention::routes(core.clone()))
        .unify()
        .or(quotas::routes(core.clone()))
        .unify()
        .or(attestations::routes(core.clone()))
        .unify()
        .or(settings::routes(core.clone()))
        .unify()
        .or(notes::routes(core.clone()))
        .unify()
        .or(mirrors::routes(core.clone()))
        .unify()
        .or(bundles::routes(core))
        .unify()
        .boxed()
}
