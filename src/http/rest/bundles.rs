//! Air-gap bundles: `POST /api/v1/bundles/export` (a JSON selection; the answer streams the
//! tar) and `POST /api/v1/bundles/import` (the tar as the body; the answer is the report once
//! everything was verified and applied). The rules are `domain::bundle`'s.

use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::api::BundleExport;
use crate::domain::{bundle, DomainError, DomainResult};
use crate::http::edge::{edge, Caller, Edge};
use crate::http::{body_stream, read_limited, reply, BodyStream, Ctx};

/// Largest export selection (`--since` sends every blob digest of the earlier bundle).
const MAX_SELECTION: u64 = 64 << 20;

async fn export(c: Caller, mut body: BodyStream) -> DomainResult<Response> {
    let bytes = read_limited(&mut body, MAX_SELECTION).await?;
    let req: BundleExport = serde_json::from_slice(&bytes)
        .map_err(|e| DomainError::BadRequest(format!("invalid JSON body: {e}")))?;
    let out = bundle::export(&c.core, c.who(), req).await?;
    let mut resp = reply::streamed(out.chunks).await?;
    reply::set_header(&mut resp, header::CONTENT_TYPE, "application/x-tar");
    Ok(resp)
}

async fn import(c: Caller, body: BodyStream) -> DomainResult<Response> {
    let max = c.core.limits.bundle_max;
    Ok(reply::json(
        StatusCode::OK,
        &bundle::import(&c.core, c.who(), body, max).await?,
    ))
}

/// The bundle routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let export = warp::path!("api" / "v1" / "bundles" / "export")
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|e: Edge, body| e.rest((), |c, ()| export(c, body)));
    let import = warp::path!("api" / "v1" / "bundles" / "import")
        .and(warp::post())
        .and(e())
        .and(body_stream())
        .then(|e: Edge, body| e.rest((), |c, ()| import(c, body)));
    export.or(import).unify().boxed()
}
