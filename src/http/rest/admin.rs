//! Registry views and maintenance: the Packages tab's data, GC and fsck.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::domain::{registry, DomainError, DomainResult};
use crate::http::edge::{edge, name_segment, Caller, Edge};
use crate::http::{query_get, query_pairs, raw_query, reply, Ctx};
use crate::ids::RepoPath;

async fn packages(c: Caller, repo: RepoPath) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &registry::packages(&c.core, c.who(), &repo).await?,
    ))
}

async fn package_tags(c: Caller, repo: RepoPath, image: String) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &registry::package_tags(&c.core, c.who(), &repo, &image).await?,
    ))
}

async fn gc(c: Caller, q: String) -> DomainResult<Response> {
    let pairs = query_pairs(&q);
    let dry_run = matches!(query_get(&pairs, "dryRun"), Some("true" | "1"));
    let grace = match query_get(&pairs, "graceSeconds") {
        Some(g) => g
            .parse::<i64>()
            .map_err(|_| DomainError::BadRequest("graceSeconds must be an integer".into()))?
            .max(0),
        None => c.core.limits.gc_grace_secs,
    };
    Ok(reply::json(
        StatusCode::OK,
        &registry::gc(&c.core, c.who(), dry_run, grace).await?,
    ))
}

async fn fsck(c: Caller, q: String) -> DomainResult<Response> {
    let pairs = query_pairs(&q);
    let repair = matches!(query_get(&pairs, "repair"), Some("true" | "1"));
    Ok(reply::json(
        StatusCode::OK,
        &crate::domain::fsck::run(&c.core, c.who(), repair).await?,
    ))
}

async fn storage_migrate(c: Caller, q: String) -> DomainResult<Response> {
    let pairs = query_pairs(&q);
    let to = query_get(&pairs, "to").unwrap_or("");
    Ok(reply::json(
        StatusCode::OK,
        &crate::domain::storage::migrate(&c.core, c.who(), to).await?,
    ))
}

/// The packages and maintenance routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let packages = forge_repo()
        .and(warp::path!("packages"))
        .and(warp::get())
        .and(e())
        .then(|repo, e: Edge| e.rest(repo, packages));
    let package_tags = forge_repo()
        .and(warp::path("packages"))
        .and(name_segment())
        .and(warp::path!("tags"))
        .and(warp::get())
        .and(e())
        .then(|repo, image, e: Edge| e.rest(repo, |c, repo| package_tags(c, repo, image)));
    let gc = warp::path!("api" / "v1" / "admin" / "gc")
        .and(warp::post())
        .and(e())
        .and(raw_query())
        .then(|e: Edge, q| e.rest((), |c, ()| gc(c, q)));
    let fsck = warp::path!("api" / "v1" / "admin" / "fsck")
        .and(warp::post())
        .and(e())
        .and(raw_query())
        .then(|e: Edge, q| e.rest((), |c, ()| fsck(c, q)));
    let storage_migrate = warp::path!("api" / "v1" / "admin" / "storage" / "migrate")
        .and(warp::post())
        .and(e())
        .and(raw_query())
        .then(|e: Edge, q| e.rest((), |c, ()| storage_migrate(c, q)));
    packages
        .or(package_tags)
        .unify()
        .or(gc)
        .unify()
        .or(fsck)
        .unify()
        .or(storage_migrate)
        .unify()
        .boxed()
}
