//! Registry views and maintenance: the Packages tab's data, GC and fsck.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::repo_path;
use crate::auth::Credentials;
use crate::domain::{registry, DomainResult};
use crate::http::error::rest_reply;
use crate::http::{
    credentials, decode_component, query_get, query_pairs, raw_query, reply, who, with_core, Ctx,
};

async fn packages(core: Ctx, o: String, r: String, creds: Credentials) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    Ok(reply::json(
        StatusCode::OK,
        &registry::packages(&core, p.as_ref(), &repo).await?,
    ))
}

async fn package_tags(
    core: Ctx,
    o: String,
    r: String,
    image: String,
    creds: Credentials,
) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let repo = repo_path(&o, &r)?;
    let image = decode_component(&image);
    Ok(reply::json(
        StatusCode::OK,
        &registry::package_tags(&core, p.as_ref(), &repo, &image).await?,
    ))
}

async fn gc(core: Ctx, creds: Credentials, q: String) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let pairs = query_pairs(&q);
    let dry_run = matches!(query_get(&pairs, "dryRun"), Some("true" | "1"));
    let grace = match query_get(&pairs, "graceSeconds") {
        Some(g) => g
            .parse::<i64>()
            .map_err(|_| {
                crate::domain::DomainError::BadRequest("graceSeconds must be an integer".into())
            })?
            .max(0),
        None => core.limits.gc_grace_secs,
    };
    Ok(reply::json(
        StatusCode::OK,
        &registry::gc(&core, p.as_ref(), dry_run, grace).await?,
    ))
}

async fn fsck(core: Ctx, creds: Credentials, q: String) -> DomainResult<Response> {
    let p = who(&core, creds, false).await?;
    let pairs = query_pairs(&q);
    let repair = matches!(query_get(&pairs, "repair"), Some("true" | "1"));
    Ok(reply::json(
        StatusCode::OK,
        &crate::domain::fsck::run(&core, p.as_ref(), repair).await?,
    ))
}

/// The packages and maintenance routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let c = || with_core(core.clone());
    let packages = warp::path!("api" / "v1" / "forge" / String / String / "packages")
        .and(warp::get())
        .and(c())
        .and(credentials())
        .then(|o, r, core, creds| packages(core, o, r, creds))
        .map(rest_reply);
    let package_tags =
        warp::path!("api" / "v1" / "forge" / String / String / "packages" / String / "tags")
            .and(warp::get())
            .and(c())
            .and(credentials())
            .then(|o, r, i, core, creds| package_tags(core, o, r, i, creds))
            .map(rest_reply);
    let gc = warp::path!("api" / "v1" / "admin" / "gc")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(raw_query())
        .then(gc)
        .map(rest_reply);
    let fsck = warp::path!("api" / "v1" / "admin" / "fsck")
        .and(warp::post())
        .and(c())
        .and(credentials())
        .and(raw_query())
        .then(fsck)
        .map(rest_reply);
    packages
        .or(package_tags)
        .unify()
        .or(gc)
        .unify()
        .or(fsck)
        .unify()
        .boxed()
}
