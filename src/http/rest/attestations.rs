//! Release attestations: the public keys (anonymous) and each release's signed envelope.

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::forge_repo;
use crate::domain::{attestation, DomainResult};
use crate::http::edge::{edge, name_segment, Caller, Edge};
use crate::http::{reply, Ctx};
use crate::ids::RepoPath;

async fn keys(c: Caller) -> DomainResult<Response> {
    Ok(reply::json(StatusCode::OK, &attestation::keys(&c.core)))
}

async fn envelope(c: Caller, repo: RepoPath, tag: String) -> DomainResult<Response> {
    let body = attestation::envelope(&c.core, c.who(), &repo, &tag).await?;
    Ok(envelope_download(&repo, &tag, body))
}

/// An envelope as a JSON download named `<repo>-<tag>.intoto.json` (the API's answer, and the
/// web page's download link, which goes through the session instead of a token).
pub(crate) fn envelope_download(repo: &RepoPath, tag: &str, body: Vec<u8>) -> Response {
    let mut resp = Response::new(bytes::Bytes::from(body).into());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // A tag may hold `/`; the file name must not.
    let file = format!("{}-{}.intoto.json", repo.name, tag.replace('/', "-"));
    reply::set_header(
        &mut resp,
        header::CONTENT_DISPOSITION,
        &reply::content_disposition(&file),
    );
    resp
}

/// The attestation routes.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    let e = || edge(core.clone());
    let keys = warp::path!("api" / "v1" / "attestation" / "keys")
        .and(warp::get())
        .and(e())
        .then(|e: Edge| e.rest((), |c, ()| keys(c)));
    let envelope = forge_repo()
        .and(warp::path("releases"))
        .and(name_segment())
        .and(warp::path!("attestation"))
        .and(warp::get())
        .and(e())
        .then(|repo, tag, e: Edge| e.rest(repo, |c, repo| envelope(c, repo, tag)));
    keys.or(envelope).unify().boxed()
}
