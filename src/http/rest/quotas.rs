//! Storage quotas: `GET /api/v1/admin/quotas` (site admin: every owner with a quota or usage),
//! `GET|PUT|DELETE /api/v1/admin/quotas/{owner}` (PUT/DELETE site admin only; GET also for the
//! user itself and the org's members).

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::api::QuotaSet;
use crate::domain::{quota, DomainResult};
use crate::http::edge::{edge, Caller, Edge};
use crate::http::{body_stream, read_json, reply, BodyStream, Ctx};

async fn list(c: Caller) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &quota::list(&c.core, c.who()).await?,
    ))
}

async fn get(c: Caller, owner: String) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &quota::get(&c.core, c.who(), &owner).await?,
    ))
}

async fn set(c: Caller, owner: String, body: BodyStream) -> DomainResult<Response> {
    let b: QuotaSet = read_json(&c.core, body).await?;
    Ok(reply::json(
        StatusCode::OK,
        &quota::set(&c.core, c.who(), &owner, Some(b.limit_bytes)).await?,
    ))
}

async fn remove(c: Caller, owner: String) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &quota::set(&c.core, c.who(), &owner, None).await?,
    ))
}

/// The quota routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let list = warp::path!("api" / "v1" / "admin" / "quotas")
        .and(warp::get())
        .and(e())
        .then(|e: Edge| e.rest((), |c, ()| list(c)));
    let get = warp::path!("api" / "v1" / "admin" / "quotas" / String)
        .and(warp::get())
        .and(e())
        .then(|o, e: Edge| e.rest((), |c, ()| get(c, o)));
    let set = warp::path!("api" / "v1" / "admin" / "quotas" / String)
        .and(warp::put())
        .and(e())
        .and(body_stream())
        .then(|o, e: Edge, body| e.rest((), |c, ()| set(c, o, body)));
    let remove = warp::path!("api" / "v1" / "admin" / "quotas" / String)
        .and(warp::delete())
        .and(e())
        .then(|o, e: Edge| e.rest((), |c, ()| remove(c, o)));
    list.or(get)
        .unify()
        .or(set)
        .unify()
        .or(remove)
        .unify()
        .boxed()
}
