//! The OCI Distribution API at `/v2/`. One filter captures the path tail; `parse_route` turns it
//! into a typed route (names are validated here, before any authorization or lookup, so
//! `%2F`, `..` or `//` tricks are `NAME_INVALID` and never reach a check); `dispatch` is the
//! routing table from (method, route) to one function per endpoint, each calling
//! `domain::registry` and returning an `Answer`, whose common headers
//! (`Docker-Content-Digest`, `ETag`, `Location`, `Docker-Distribution-API-Version`) are written
//! in one place; errors use the spec's JSON through `error::oci`.

use crate::http::DRAIN_ON_ERROR;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::edge::{edge, Caller, Edge};
use super::error::oci_reply;
use super::{
    body_stream, drain, query_get, query_pairs, raw_query, read_limited, reply, BodyStream, Ctx,
};
use crate::auth::Principal;
use crate::domain::registry::{self, upload, MAX_PAGE};
use crate::domain::{DomainError, DomainResult};
use crate::ids::{Algorithm, Digest, OciName, OciTag, Reference, UploadId};

mod releases;

/// A `/v2/` request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciRoute {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(OciName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(OciName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(OciName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(OciName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(OciName, UploadId),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(OciName, Digest),
}

impl OciRoute {
    /// The image name the route addresses (none for `/v2/` and the catalog).
    fn name(&self) -> Option<&OciName> {
        use OciRoute::*;
        match self {
            Base | Catalog => None,
            Tags(n)
            | Manifest(n, _)
            | Blob(n, _)
            | UploadStart(n)
            | Upload(n, _)
            | Referrers(n, _) => Some(n),
        }
    }
}

fn name(s: &str) -> DomainResult<OciName> {
    OciName::parse(s).map_err(|e| DomainError::NameInvalid(e.to_string()))
}

fn digest(s: &str) -> DomainResult<Digest> {
    Digest::parse(s).map_err(|e| DomainError::DigestInvalid(e.to_string()))
}

/// Parses the path after `/v2/`.
pub fn parse_route(tail: &str) -> DomainResult<OciRoute> {
    let tail = tail.strip_prefix('/').unwrap_or(tail);
    if tail.is_empty() {
        return Ok(OciRoute::Base);
    }
    if tail == "_catalog" {
        return Ok(OciRoute::Catalog);
    }
    if let Some(n) = tail.strip_suffix("/tags/list") {
        return Ok(OciRoute::Tags(name(n)?));
    }
    if let Some(n) = tail
        .strip_suffix("/blobs/uploads/")
        .or_else(|| tail.strip_suffix("/blobs/uploads"))
    {
        return Ok(OciRoute::UploadStart(name(n)?));
    }
    if let Some((n, id)) = tail.rsplit_once("/blobs/uploads/") {
        let id = UploadId::parse(id).map_err(|_| DomainError::BlobUploadUnknown)?;
        return Ok(OciRoute::Upload(name(n)?, id));
    }
    if let Some((n, r)) = tail.rsplit_once("/manifests/") {
        let n = name(n)?;
        let r = Reference::parse(r).map_err(|e| {
            if r.contains(':') {
                DomainError::DigestInvalid(e.to_string())
            } else {
                DomainError::TagInvalid(e.to_string())
            }
        })?;
        return Ok(OciRoute::Manifest(n, r));
    }
    if let Some((n, d)) = tail.rsplit_once("/blobs/") {
        let n = name(n)?;
        return Ok(OciRoute::Blob(n, digest(d)?));
    }
    if let Some((n, d)) = tail.rsplit_once("/referrers/") {
        let n = name(n)?;
        return Ok(OciRoute::Referrers(n, digest(d)?));
    }
    Err(DomainError::NotFound("no such registry endpoint".into()))
}

fn upload_location(n: &OciName, id: &UploadId) -> String {
    format!("/v2/{n}/blobs/uploads/{id}")
}

/// Gives an upload's `RangeNotSatisfiable` the session's URL, for its `Location` header.
fn at_session(e: DomainError, n: &OciName, id: &UploadId) -> DomainError {
    match e {
        DomainError::RangeNotSatisfiable {
            location: None,
            offset,
        } => DomainError::RangeNotSatisfiable {
            location: Some(upload_location(n, id)),
            offset,
        },
        e => e,
    }
}

/// What an endpoint answers: its status, body and own headers, plus the headers the registry
/// sets the same way on every endpoint, which `into_response` writes (once each).
struct Answer {
    /// Status, body and the endpoint's own headers.
    resp: Response,
    /// `Location`: an upload session, or the blob or manifest just stored.
    location: Option<String>,
    /// `Docker-Content-Digest`: the digest of the content served or stored.
    digest: Option<Digest>,
    /// Also an `ETag` of the digest (content served, which clients may revalidate).
    etag: bool,
    /// `Content-Length: 0` (answers that are only headers).
    empty: bool,
}

impl Answer {
    /// An answer with no common headers but the API version.
    fn plain(resp: Response) -> Answer {
        Answer {
            resp,
            location: None,
            digest: None,
            etag: false,
            empty: false,
        }
    }

    /// Content (a manifest or blob) served under its digest.
    fn content(resp: Response, digest: Digest) -> Answer {
        Answer {
            digest: Some(digest),
            etag: true,
            ..Answer::plain(resp)
        }
    }

    /// `201 Created` for content stored at `location` under its digest.
    fn created(location: String, digest: Digest) -> Answer {
        Answer {
            location: Some(location),
            digest: Some(digest),
            empty: true,
            ..Answer::plain(reply::empty(StatusCode::CREATED))
        }
    }

    /// A blob stored (uploaded or mounted).
    fn blob_created(n: &OciName, d: Digest) -> Answer {
        Answer::created(format!("/v2/{n}/blobs/{d}"), d)
    }

    /// An upload session's state: where to continue and how much it holds.
    fn upload(status: StatusCode, n: &OciName, id: &UploadId, offset: u64) -> Answer {
        let mut r = reply::empty(status);
        reply::set_header(&mut r, header::RANGE, &reply::upload_range(offset));
        reply::set_header(
            &mut r,
            header::HeaderName::from_static("docker-upload-uuid"),
            id.as_str(),
        );
        Answer {
            location: Some(upload_location(n, id)),
            empty: true,
            ..Answer::plain(r)
        }
    }

    /// The response, with the common headers.
    fn into_response(self) -> Response {
        let mut r = self.resp;
        if let Some(loc) = &self.location {
            reply::set_header(&mut r, header::LOCATION, loc);
        }
        if let Some(d) = &self.digest {
            reply::set_header(
                &mut r,
                header::HeaderName::from_static("docker-content-digest"),
                &d.to_string(),
            );
            if self.etag {
                reply::set_header(&mut r, header::ETAG, &format!("\"{d}\""));
            }
        }
        if self.empty {
            reply::set_header(&mut r, header::CONTENT_LENGTH, "0");
        }
        // Marks a response as coming from a registry (clients check this header).
        r.headers_mut().insert(
            "Docker-Distribution-API-Version",
            header::HeaderValue::from_static("registry/2.0"),
        );
        r
    }
}

fn content_range(headers: &HeaderMap) -> DomainResult<Option<upload::ChunkRange>> {
    match headers.get(header::CONTENT_RANGE) {
        None => Ok(None),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| DomainError::BlobUploadInvalid("Content-Range is not text".into()))?;
            upload::parse_content_range(s).map(Some).ok_or_else(|| {
                DomainError::BlobUploadInvalid(format!("malformed Content-Range {s:?}"))
            })
        }
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn page_params(pairs: &[(String, String)]) -> DomainResult<(Option<usize>, Option<String>)> {
    let n = match query_get(pairs, "n") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| DomainError::BadRequest("n must be a non-negative integer".into()))?
                .min(MAX_PAGE as u64) as usize,
        ),
    };
    Ok((n, query_get(pairs, "last").map(str::to_owned)))
}

fn list_link(path: &str, n: Option<usize>, items: &[String]) -> Option<String> {
    let last = items.last()?;
    let n = n.unwrap_or(MAX_PAGE);
    Some(format!(
        "<{path}?n={n}&last={}>; rel=\"next\"",
        percent_encoding::utf8_percent_encode(last, percent_encoding::NON_ALPHANUMERIC)
    ))
}

/// A `/v2/` request as its endpoint sees it: the authenticated caller, the method's flavour,
/// the query and the headers. (Endpoints that read the body take it beside.)
struct OciCall {
    caller: Caller,
    head: bool,
    query: Vec<(String, String)>,
    headers: HeaderMap,
}

impl OciCall {
    fn core(&self) -> &Ctx {
        &self.caller.core
    }

    fn who(&self) -> Option<&Principal> {
        self.caller.who()
    }

    fn param(&self, key: &str) -> Option<&str> {
        query_get(&self.query, key)
    }
}

/// The raw request the `/v2/` filter extracts.
struct OciRequest {
    tail: String,
    method: Method,
    query: String,
    headers: HeaderMap,
}

async fn handle(edge: Edge, rq: OciRequest, body: BodyStream) -> DomainResult<Response> {
    let mut body = body;
    let result = route_and_dispatch(edge, rq, &mut body).await;
    if result.is_err() {
        drain(&mut body, DRAIN_ON_ERROR).await;
    }
    result.map(Answer::into_response)
}

/// Parses the route, authenticates the caller, then dispatches.
async fn route_and_dispatch(
    edge: Edge,
    rq: OciRequest,
    body: &mut BodyStream,
) -> DomainResult<Answer> {
    let route = match parse_route(&rq.tail) {
        // No manifest can exist under a name that is not a valid tag: reading one is "unknown"
        // (as the conformance suites expect); only pushing one is TAG_INVALID.
        Err(DomainError::TagInvalid(_))
            if rq.method == Method::GET || rq.method == Method::HEAD =>
        {
            return Err(DomainError::ManifestUnknown)
        }
        r => r?,
    };
    let caller = edge.authenticate().await?;
    let call = OciCall {
        caller,
        head: rq.method == Method::HEAD,
        query: query_pairs(&rq.query),
        headers: rq.headers,
    };
    dispatch(&call, rq.method, route, body).await
}

/// The routing table: one endpoint function per (method, route).
async fn dispatch(
    c: &OciCall,
    method: Method,
    route: OciRoute,
    body: &mut BodyStream,
) -> DomainResult<Answer> {
    use OciRoute::*;
    if route.name().is_some_and(releases::serves) {
        return releases::dispatch(c, method, route).await;
    }
    match (method.as_str(), route) {
        ("GET" | "HEAD", Base) => base(c),
        ("GET", Catalog) => catalog(c).await,
        ("GET", Tags(n)) => tags(c, n).await,
        ("GET" | "HEAD", Manifest(n, r)) => get_manifest(c, n, r).await,
        ("PUT", Manifest(n, r)) => put_manifest(c, n, r, body).await,
        ("DELETE", Manifest(n, r)) => delete_manifest(c, n, r).await,
        ("GET" | "HEAD", Blob(n, d)) => get_blob(c, n, d).await,
        ("DELETE", Blob(n, d)) => delete_blob(c, n, d).await,
        ("POST", UploadStart(n)) => start_upload(c, n, body).await,
        ("GET", Upload(n, id)) => upload_status(c, n, id).await,
        ("PATCH", Upload(n, id)) => patch_upload(c, n, id, body).await,
        ("PUT", Upload(n, id)) => finish_upload(c, n, id, body).await,
        ("DELETE", Upload(n, id)) => cancel_upload(c, n, id).await,
        ("GET", Referrers(n, d)) => referrers(c, n, d).await,
        (m, _) => Err(DomainError::Unsupported(format!(
            "{m} is not supported on this endpoint"
        ))),
    }
}

/// `/v2/`: the API exists, for signed-in callers (clients probe it to find out how to sign in).
fn base(c: &OciCall) -> DomainResult<Answer> {
    if c.who().is_none() {
        return Err(DomainError::Unauthenticated(
            "authentication required".into(),
        ));
    }
    Ok(Answer::plain(reply::json(StatusCode::OK, &json!({}))))
}

async fn catalog(c: &OciCall) -> DomainResult<Answer> {
    let (n, last) = page_params(&c.query)?;
    let (repos, more) = registry::catalog(c.core(), c.who(), n, last).await?;
    let mut r = reply::json(StatusCode::OK, &json!({ "repositories": repos }));
    if more {
        if let Some(l) = list_link("/v2/_catalog", n, &repos) {
            reply::set_header(&mut r, header::LINK, &l);
        }
    }
    Ok(Answer::plain(r))
}

async fn tags(c: &OciCall, n: OciName) -> DomainResult<Answer> {
    let (count, last) = page_params(&c.query)?;
    let (tags, more) = registry::list_tags(c.core(), c.who(), &n, count, last).await?;
    let mut r = reply::json(StatusCode::OK, &json!({ "name": n.as_str(), "tags": tags }));
    if more {
        if let Some(l) = list_link(&format!("/v2/{n}/tags/list"), count, &tags) {
            reply::set_header(&mut r, header::LINK, &l);
        }
    }
    Ok(Answer::plain(r))
}

async fn get_manifest(c: &OciCall, n: OciName, reference: Reference) -> DomainResult<Answer> {
    let m = registry::get_manifest(c.core(), c.who(), &n, &reference).await?;
    let len = m.bytes.len();
    let mut r = if c.head {
        reply::empty(StatusCode::OK)
    } else {
        Response::new(m.bytes.into())
    };
    reply::set_header(&mut r, header::CONTENT_TYPE, &m.media_type);
    reply::set_header(&mut r, header::CONTENT_LENGTH, &len.to_string());
    Ok(Answer::content(r, m.digest))
}

async fn put_manifest(
    c: &OciCall,
    n: OciName,
    reference: Reference,
    body: &mut BodyStream,
) -> DomainResult<Answer> {
    let bytes = read_limited(body, c.core().limits.manifest_max).await?;
    let mut extra = Vec::new();
    for (k, v) in &c.query {
        if k == "tag" {
            extra.push(OciTag::parse(v).map_err(|e| DomainError::TagInvalid(e.to_string()))?);
        }
    }
    let ct = header_str(&c.headers, header::CONTENT_TYPE);
    let out = registry::put_manifest(c.core(), c.who(), &n, &reference, extra, ct, bytes.to_vec())
        .await?;
    let mut a = Answer::created(format!("/v2/{n}/manifests/{}", out.digest), out.digest);
    if let Some(s) = out.subject {
        reply::set_header(
            &mut a.resp,
            header::HeaderName::from_static("oci-subject"),
            &s.to_string(),
        );
    }
    Ok(a)
}

async fn delete_manifest(c: &OciCall, n: OciName, reference: Reference) -> DomainResult<Answer> {
    registry::delete_manifest(c.core(), c.who(), &n, &reference).await?;
    Ok(Answer::plain(reply::empty(StatusCode::ACCEPTED)))
}

async fn get_blob(c: &OciCall, n: OciName, d: Digest) -> DomainResult<Answer> {
    if !c.head {
        if let Some(url) = registry::blob_redirect(c.core(), c.who(), &n, &d).await? {
            let mut r = reply::empty(StatusCode::TEMPORARY_REDIRECT);
            reply::set_header(&mut r, header::LOCATION, &url);
            return Ok(Answer {
                digest: Some(d),
                ..Answer::plain(r)
            });
        }
    }
    let blob = registry::open_blob(c.core(), c.who(), &n, &d).await?;
    let range = header_str(&c.headers, header::RANGE);
    let r = reply::serve_mapped(
        &blob.data,
        range.as_deref(),
        c.head,
        "application/octet-stream",
    );
    Ok(Answer::content(r, blob.digest))
}

async fn delete_blob(c: &OciCall, n: OciName, d: Digest) -> DomainResult<Answer> {
    registry::delete_blob(c.core(), c.who(), &n, &d).await?;
    Ok(Answer::plain(reply::empty(StatusCode::ACCEPTED)))
}

/// `POST .../blobs/uploads/`: a cross-repository mount, a monolithic upload (`?digest=`), or a
/// new upload session.
async fn start_upload(c: &OciCall, n: OciName, body: &mut BodyStream) -> DomainResult<Answer> {
    let alg = match c.param("digest-algorithm") {
        Some(a) => Algorithm::parse(a).map_err(|e| DomainError::DigestInvalid(e.to_string()))?,
        None => Algorithm::Sha256,
    };
    if let Some(m) = c.param("mount") {
        let d = digest(m)?;
        let from = c.param("from").and_then(|f| OciName::parse(f).ok());
        if upload::mount(c.core(), c.who(), &n, &d, from.as_ref()).await? {
            return Ok(Answer::blob_created(&n, d));
        }
    } else if let Some(dg) = c.param("digest") {
        let d = digest(dg)?;
        upload::monolithic(c.core(), c.who(), &n, &d, content_length(&c.headers), body).await?;
        return Ok(Answer::blob_created(&n, d));
    }
    let id = upload::start(c.core(), c.who(), &n, alg).await?;
    Ok(Answer::upload(StatusCode::ACCEPTED, &n, &id, 0))
}

async fn upload_status(c: &OciCall, n: OciName, id: UploadId) -> DomainResult<Answer> {
    let offset = upload::status(c.core(), c.who(), &n, &id).await?;
    Ok(Answer::upload(StatusCode::NO_CONTENT, &n, &id, offset))
}

async fn patch_upload(
    c: &OciCall,
    n: OciName,
    id: UploadId,
    body: &mut BodyStream,
) -> DomainResult<Answer> {
    let range = content_range(&c.headers)?;
    let offset = upload::patch(
        c.core(),
        c.who(),
        &n,
        &id,
        range,
        content_length(&c.headers),
        body,
    )
    .await
    .map_err(|e| at_session(e, &n, &id))?;
    Ok(Answer::upload(StatusCode::ACCEPTED, &n, &id, offset))
}

async fn finish_upload(
    c: &OciCall,
    n: OciName,
    id: UploadId,
    body: &mut BodyStream,
) -> DomainResult<Answer> {
    let d = digest(c.param("digest").unwrap_or(""))?;
    let range = content_range(&c.headers)?;
    let stored = upload::finish(
        c.core(),
        c.who(),
        &n,
        &id,
        &d,
        upload::LastChunk {
            range,
            declared: content_length(&c.headers),
        },
        body,
    )
    .await
    .map_err(|e| at_session(e, &n, &id))?;
    Ok(Answer::blob_created(&n, stored))
}

async fn cancel_upload(c: &OciCall, n: OciName, id: UploadId) -> DomainResult<Answer> {
    upload::cancel(c.core(), c.who(), &n, &id).await?;
    Ok(Answer::plain(reply::empty(StatusCode::NO_CONTENT)))
}

async fn referrers(c: &OciCall, n: OciName, d: Digest) -> DomainResult<Answer> {
    let filter = c.param("artifactType").map(str::to_owned);
    let filtered = filter.is_some();
    let manifests = registry::referrers(c.core(), c.who(), &n, &d, filter).await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": registry::manifest::OCI_INDEX,
        "manifests": manifests,
    });
    let mut r = reply::json(StatusCode::OK, &index);
    reply::set_header(&mut r, header::CONTENT_TYPE, registry::manifest::OCI_INDEX);
    if filtered {
        reply::set_header(
            &mut r,
            header::HeaderName::from_static("oci-filters-applied"),
            "artifactType",
        );
    }
    Ok(Answer::plain(r))
}

/// The `/v2/` filter.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    warp::path("v2")
        .and(warp::path::tail())
        .and(warp::method())
        .and(edge(core))
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(body_stream())
        .then(|tail: warp::path::Tail, method, e, query, headers, body| {
            let rq = OciRequest {
                tail: tail.as_str().to_owned(),
                method,
                query,
                headers,
            };
            handle(e, rq, body)
        })
        .map(oci_reply)
        .boxed()
}
/// The declared `Content-Length`, if any (used to refuse an over-quota upload before reading it).
fn content_length(h: &warp::http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse_route("").unwrap(), OciRoute::Base);
        assert_eq!(parse_route("_catalog").unwrap(), OciRoute::Catalog);
        assert!(matches!(
            parse_route("a/b/tags/list").unwrap(),
            OciRoute::Tags(_)
        ));
        assert!(matches!(
            parse_route("a/b/c/manifests/latest").unwrap(),
            OciRoute::Manifest(_, Reference::Tag(_))
        ));
        assert!(matches!(
            parse_route(&format!("a/b/blobs/{d}")).unwrap(),
            OciRoute::Blob(_, _)
        ));
        assert!(matches!(
            parse_route("a/b/blobs/uploads/").unwrap(),
            OciRoute::UploadStart(_)
        ));
        assert!(matches!(
            parse_route(&format!("a/b/referrers/{d}")).unwrap(),
            OciRoute::Referrers(_, _)
        ));
        for bad in [
            "a/../c/tags/list",
            "a%2Fb/c/tags/list",
            "a//b/tags/list",
            "A/b/tags/list",
            "a/tags/list",
        ] {
            assert!(
                matches!(parse_route(bad), Err(DomainError::NameInvalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_route("a/b/blobs/sha256:../../x"),
            Err(DomainError::DigestInvalid(_))
        ));
        assert!(matches!(
            parse_route("a/b/manifests/.bad"),
            Err(DomainError::TagInvalid(_))
        ));
    }
}
