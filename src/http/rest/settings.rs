//! Repository settings and organization defaults (`immutableReleases`):
//! `GET`/`PATCH /api/v1/forge/{owner}/{repo}/settings`, `GET`/`PATCH /api/v1/orgs/{org}/settings`.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::api::{EditRepoSettings, OrgSettings};
use crate::domain::{immutable, DomainResult};
use crate::http::edge::{edge, Caller, Edge};
use crate::http::{body_stream, read_json, reply, BodyStream, Ctx};
use crate::ids::RepoPath;

async fn get_repo(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &immutable::repo_settings(&c.core, c.who(), &repo).await?,
    ))
}

async fn patch_repo(c: Caller, repo: RepoPath, body: BodyStream) -> DomainResult<Response> {
    let edit: EditRepoSettings = read_json(&c.core, body).await?;
    Ok(reply::json(
        StatusCode::OK,
        &immutable::edit_repo_settings(&c.core, c.who(), &repo, edit).await?,
    ))
}

async fn get_org(c: Caller, org: String) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &immutable::org_settings(&c.core, c.who(), &org).await?,
    ))
}

async fn patch_org(c: Caller, org: String, body: BodyStream) -> DomainResult<Response> {
    let s: OrgSettings = read_json(&c.core, body).await?;
    Ok(reply::json(
        StatusCode::OK,
        &immutable::edit_org_settings(&c.core, c.who(), &org, s).await?,
    ))
}

/// The settings routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let get_repo = forge_repo()
        .and(warp::path!("settings"))
        .and(warp::get())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, get_repo));
    let patch_repo = forge_repo()
        .and(warp::path!("settings"))
        .and(warp::patch())
        .and(e())
        .and(body_stream())
        .then(|repo, e: Edge, body| e.rest(repo, |c, repo| patch_repo(c, repo, body)));
    let get_org = warp::path!("api" / "v1" / "orgs" / String / "settings")
        .and(warp::get())
        .and(e())
        .then(|org, e: Edge| e.rest((), |c, ()| get_org(c, org)));
    let patch_org = warp::path!("api" / "v1" / "orgs" / String / "settings")
        .and(warp::patch())
        .and(e())
        .and(body_stream())
        .then(|org, e: Edge, body| e.rest((), |c, ()| patch_org(c, org, body)));
    get_repo
        .or(patch_repo)
        .unify()
        .or(get_org)
        .unify()
        .or(patch_org)
        .unify()
        .boxed()
}
