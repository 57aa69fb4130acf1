//! A repository's registry retention policy: `GET`/`PUT`/`DELETE
//! /api/v1/forge/{owner}/{repo}/retention`.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::api::RetentionSpec;
use crate::domain::{retention, DomainResult};
use crate::http::edge::{edge, Caller, Edge};
use crate::http::{body_stream, read_json, reply, BodyStream, Ctx};
use crate::ids::RepoPath;

async fn get(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &retention::get(&c.core, c.who(), &repo).await?,
    ))
}

async fn put(c: Caller, repo: RepoPath, body: BodyStream) -> DomainResult<Response> {
    let spec: RetentionSpec = read_json(&c.core, body).await?;
    Ok(reply::json(
        StatusCode::OK,
        &retention::set(&c.core, c.who(), &repo, spec).await?,
    ))
}

async fn delete(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    retention::clear(&c.core, c.who(), &repo).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// The retention routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let get = forge_repo()
        .and(warp::path!("retention"))
        .and(warp::get())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, get));
    let put = forge_repo()
        .and(warp::path!("retention"))
        .and(warp::put())
        .and(e())
        .and(body_stream())
        .then(|repo, e: Edge, body| e.rest(repo, |c, repo| put(c, repo, body)));
    let delete = forge_repo()
        .and(warp::path!("retention"))
        .and(warp::delete())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, delete));
    get.or(put).unify().or(delete).unify().boxed()
}
