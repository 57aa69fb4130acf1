//! Online backups (site admin): take a snapshot, fetch its files, release it. The snapshot
//! and what may be read from it are `domain::backup`'s; here are only the routes.

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::domain::{backup, DomainResult};
use crate::http::edge::{edge, name_segment, Caller, Edge};
use crate::http::{decode_component, reply, Ctx};

async fn create(c: Caller) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::CREATED,
        &backup::create(&c.core, c.who()).await?,
    ))
}

async fn manifest(c: Caller, id: String) -> DomainResult<Response> {
    Ok(reply::json(
        StatusCode::OK,
        &backup::manifest(&c.core, c.who(), &id)?,
    ))
}

async fn file(c: Caller, id: String, path: String) -> DomainResult<Response> {
    let data = backup::file(&c.core, c.who(), &id, &path).await?;
    Ok(reply::serve_mapped(
        &data,
        None,
        false,
        "application/octet-stream",
    ))
}

async fn release(c: Caller, id: String) -> DomainResult<Response> {
    backup::release(&c.core, c.who(), &id).await?;
    Ok(reply::empty(StatusCode::NO_CONTENT))
}

/// `POST /api/v1/admin/backups`, `GET|DELETE /api/v1/admin/backups/{id}`,
/// `GET /api/v1/admin/backups/{id}/files/{path…}`.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let base = || warp::path!("api" / "v1" / "admin" / "backups" / ..);
    let create = base()
        .and(warp::path::end())
        .and(warp::post())
        .and(e())
        .then(|e: Edge| e.rest((), |c, ()| create(c)));
    let manifest = base()
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::get())
        .and(e())
        .then(|id, e: Edge| e.rest((), |c, ()| manifest(c, id)));
    let release = base()
        .and(name_segment())
        .and(warp::path::end())
        .and(warp::delete())
        .and(e())
        .then(|id, e: Edge| e.rest((), |c, ()| release(c, id)));
    // The path is matched against the snapshot's manifest, never used as given.
    let file = base()
        .and(name_segment())
        .and(warp::path("files"))
        .and(warp::path::tail())
        .and(warp::get())
        .and(e())
        .then(|id, tail: warp::path::Tail, e: Edge| {
            let path = decode_component(tail.as_str());
            e.rest((), |c, ()| file(c, id, path))
        });
    create
        .or(manifest)
        .unify()
        .or(release)
        .unify()
        .or(file)
        .unify()
        .boxed()
}
