//! Upstream registry mirrors of a repository: `GET`/`POST /api/v1/forge/{owner}/{repo}/mirrors`,
//! `DELETE …/mirrors/{id}`, `POST …/mirrors/{id}/run` (waits for the run; the report).

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::api::CreateMirror;
use crate::domain::{mirror, DomainResult};
use crate::http::edge::{edge, Caller, Edge};
use crate::http::{body_stream, read_json, reply, BodyStream, Ctx};
use crate::ids::RepoPath;

async fn list(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &mirror::list(&c.core, c.who(), &repo).await?,
    ))
}

async fn create(c: Caller, repo: RepoPath, body: BodyStream) -> DomainResult<Response> {
    let spec: CreateMirror = read_json(&c.core, body).await?;
    Ok(reply::json(
        StatusCode::CREATED,
        &mirror::add(&c.core, c.who(), &repo, spec).await?,
    ))
}

async fn delete(c: Caller, repo: RepoPath, id: u64) -> DomainResult<Response> {
    mirror::remove(&c.core, c.who(), &repo, id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

async fn run(c: Caller, repo: RepoPath, id: u64) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &mirror::run(&c.core, c.who(), &repo, id).await?,
    ))
}

/// The mirror routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let list = forge_repo()
        .and(warp::path!("mirrors"))
        .and(warp::get())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, list));
    let create = forge_repo()
        .and(warp::path!("mirrors"))
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|repo, e: Edge, body| e.rest(repo, |c, repo| create(c, repo, body)));
    let delete = forge_repo()
        .and(warp::path!("mirrors" / u64))
        .and(warp::delete())
        .and(e())
        .then(|repo, id: u64, e: Edge| e.rest(repo, move |c, repo| delete(c, repo, id)));
    let run = forge_repo()
        .and(warp::path!("mirrors" / u64 / "run"))
        .and(warp::post())
        .and(e())
        .then(|repo, id: u64, e: Edge| e.rest(repo, move |c, repo| run(c, repo, id)));
    list.or(create)
        .unify()
        .or(delete)
        .unify()
        .or(run)
        .unify()
        .boxed()
}
