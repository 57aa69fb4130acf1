//! Air-gap bundles: `POST /api/v1/bundles/export` (a JSON selection; the answer streams the
//! tar) and `POST /api/v1/bundles/import` (the tar as the body; the answer is the report once
//! everything was verified and applied). The rules are `domain::bundle`'s.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::{header, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

use crate::api::BundleExport;
use crate::domain::{bundle, DomainError, DomainResult};
use crate::http::edge::{edge, Caller, Edge};
use crate::http::{body_stream, read_limited, reply, BodyStream, Ctx};

/// Largest export selection (`--since` sends every blob digest of the earlier bundle).
const MAX_SELECTION: u64 = 64 << 20;

/// The tar chunks as a `Stream` the response body can hold (`Send + Sync`): the first chunk,
/// already taken, then the rest.
struct Chunks {
    first: Option<Bytes>,
    rest: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
}

impl futures_util::Stream for Chunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(first))),
            None => self.rest.poll_recv(cx),
        }
    }
}

async fn export(c: Caller, mut body: BodyStream) -> DomainResult<Response> {
    let bytes = read_limited(&mut body, MAX_SELECTION).await?;
    let req: BundleExport = serde_json::from_slice(&bytes)
        .map_err(|e| DomainError::BadRequest(format!("invalid JSON body: {e}")))?;
    let mut out = bundle::export(&c.core, c.who(), req).await?;
    // An export that fails before its first chunk (a small one whose asset file is gone) gets
    // an error status, not a connection cut before any header, which a client cannot tell
    // from an unreachable server. Later failures cut the stream: the tar is left incomplete.
    let first = match out.chunks.recv().await {
        Some(Ok(chunk)) => Some(chunk),
        Some(Err(e)) => return Err(DomainError::Io(e)),
        None => None,
    };
    let chunks = Chunks {
        first,
        rest: out.chunks,
    };
    let mut resp = warp::reply::stream(chunks).into_response();
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
