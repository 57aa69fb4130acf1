//! The OCI Distribution API at `/v2/`. One filter captures the path tail; `parse_route` turns it
//! into a typed route (names are validated here, before any authorization or lookup, so
//! `%2F`, `..` or `//` tricks are `NAME_INVALID` and never reach a check); handlers call
//! `domain::registry`; errors use the spec's JSON through `error::oci`.

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::oci_reply;
use super::{
    body_stream, credentials, drain, query_get, query_pairs, raw_query, read_limited, reply, who,
    with_core, BodyStream, Ctx,
};
use crate::auth::Credentials;
use crate::domain::registry::{self, upload, MAX_PAGE};
use crate::domain::{DomainError, DomainResult};
use crate::ids::{Algorithm, Digest, OciName, OciTag, Reference, UploadId};

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

/// Marks a response as coming from a registry (clients check this header).
fn api_version(mut r: Response) -> Response {
    r.headers_mut().insert(
        "Docker-Distribution-API-Version",
        header::HeaderValue::from_static("registry/2.0"),
    );
    r
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

fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn upload_accepted(status: StatusCode, n: &OciName, id: &UploadId, offset: u64) -> Response {
    let mut r = reply::empty(status);
    reply::set_header(&mut r, header::LOCATION, &upload_location(n, id));
    reply::set_header(&mut r, header::RANGE, &range_value(offset));
    reply::set_header(
        &mut r,
        header::HeaderName::from_static("docker-upload-uuid"),
        id.as_str(),
    );
    reply::set_header(&mut r, header::CONTENT_LENGTH, "0");
    r
}

fn blob_created(n: &OciName, d: &Digest) -> Response {
    let mut r = reply::empty(StatusCode::CREATED);
    reply::set_header(&mut r, header::LOCATION, &format!("/v2/{n}/blobs/{d}"));
    reply::set_header(
        &mut r,
        header::HeaderName::from_static("docker-content-digest"),
        &d.to_string(),
    );
    reply::set_header(&mut r, header::CONTENT_LENGTH, "0");
    r
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

/// Most a failed request's unread body is drained, so that the client (still sending) reads our
/// error instead of a connection reset.
const DRAIN_ON_ERROR: u64 = 16 << 20;

async fn handle(
    core: Ctx,
    tail: String,
    method: Method,
    creds: Credentials,
    query: String,
    headers: HeaderMap,
    body: BodyStream,
) -> DomainResult<Response> {
    let mut body = body;
    let result = dispatch(core, tail, method, creds, query, headers, &mut body)
        .await
        .map(api_version);
    if result.is_err() {
        drain(&mut body, DRAIN_ON_ERROR).await;
    }
    result
}

async fn dispatch(
    core: Ctx,
    tail: String,
    method: Method,
    creds: Credentials,
    query: String,
    headers: HeaderMap,
    body: &mut BodyStream,
) -> DomainResult<Response> {
    let route = match parse_route(&tail) {
        // No manifest can exist under a name that is not a valid tag: reading one is "unknown"
        // (as the conformance suites expect); only pushing one is TAG_INVALID.
        Err(DomainError::TagInvalid(_)) if method == Method::GET || method == Method::HEAD => {
            return Err(DomainError::ManifestUnknown)
        }
        r => r?,
    };
    let p = who(&core, creds, false).await?;
    let p = p.as_ref();
    let pairs = query_pairs(&query);
    let head = method == Method::HEAD;
    match (method.as_str(), route) {
        ("GET" | "HEAD", OciRoute::Base) => {
            if p.is_none() {
                return Err(DomainError::Unauthenticated(
                    "authentication required".into(),
                ));
            }
            Ok(reply::json(StatusCode::OK, &json!({})))
        }
        ("GET", OciRoute::Catalog) => {
            let (n, last) = page_params(&pairs)?;
            let (repos, more) = registry::catalog(&core, p, n, last).await?;
            let mut r = reply::json(StatusCode::OK, &json!({ "repositories": repos }));
            if more {
                if let Some(l) = list_link("/v2/_catalog", n, &repos) {
                    reply::set_header(&mut r, header::LINK, &l);
                }
            }
            Ok(r)
        }
        ("GET", OciRoute::Tags(n)) => {
            let (count, last) = page_params(&pairs)?;
            let (tags, more) = registry::list_tags(&core, p, &n, count, last).await?;
            let mut r = reply::json(StatusCode::OK, &json!({ "name": n.as_str(), "tags": tags }));
            if more {
                if let Some(l) = list_link(&format!("/v2/{n}/tags/list"), count, &tags) {
                    reply::set_header(&mut r, header::LINK, &l);
                }
            }
            Ok(r)
        }
        ("GET" | "HEAD", OciRoute::Manifest(n, reference)) => {
            let m = registry::get_manifest(&core, p, &n, &reference).await?;
            let len = m.bytes.len();
            let mut r = if head {
                reply::empty(StatusCode::OK)
            } else {
                Response::new(m.bytes.into())
            };
            reply::set_header(&mut r, header::CONTENT_TYPE, &m.media_type);
            reply::set_header(&mut r, header::CONTENT_LENGTH, &len.to_string());
            reply::set_header(
                &mut r,
                header::HeaderName::from_static("docker-content-digest"),
                &m.digest.to_string(),
            );
            reply::set_header(&mut r, header::ETAG, &format!("\"{}\"", m.digest));
            Ok(r)
        }
        ("PUT", OciRoute::Manifest(n, reference)) => {
            let bytes = read_limited(body, core.limits.manifest_max).await?;
            let mut extra = Vec::new();
            for (k, v) in &pairs {
                if k == "tag" {
                    extra.push(
                        OciTag::parse(v).map_err(|e| DomainError::TagInvalid(e.to_string()))?,
                    );
                }
            }
            let ct = header_str(&headers, header::CONTENT_TYPE);
            let out =
                registry::put_manifest(&core, p, &n, &reference, extra, ct, bytes.to_vec()).await?;
            let mut r = reply::empty(StatusCode::CREATED);
            reply::set_header(
                &mut r,
                header::LOCATION,
                &format!("/v2/{n}/manifests/{}", out.digest),
            );
            reply::set_header(
                &mut r,
                header::HeaderName::from_static("docker-content-digest"),
                &out.digest.to_string(),
            );
            reply::set_header(&mut r, header::CONTENT_LENGTH, "0");
            if let Some(s) = out.subject {
                reply::set_header(
                    &mut r,
                    header::HeaderName::from_static("oci-subject"),
                    &s.to_string(),
                );
            }
            Ok(r)
        }
        ("DELETE", OciRoute::Manifest(n, reference)) => {
            registry::delete_manifest(&core, p, &n, &reference).await?;
            Ok(reply::empty(StatusCode::ACCEPTED))
        }
        ("GET" | "HEAD", OciRoute::Blob(n, d)) => {
            let blob = registry::open_blob(&core, p, &n, &d).await?;
            let range = header_str(&headers, header::RANGE);
            let mut r = reply::serve_mapped(
                &blob.data,
                range.as_deref(),
                head,
                "application/octet-stream",
            );
            reply::set_header(
                &mut r,
                header::HeaderName::from_static("docker-content-digest"),
                &blob.digest.to_string(),
            );
            reply::set_header(&mut r, header::ETAG, &format!("\"{}\"", blob.digest));
            Ok(r)
        }
        ("DELETE", OciRoute::Blob(n, d)) => {
            registry::delete_blob(&core, p, &n, &d).await?;
            Ok(reply::empty(StatusCode::ACCEPTED))
        }
        ("POST", OciRoute::UploadStart(n)) => {
            let alg = match query_get(&pairs, "digest-algorithm") {
                Some(a) => {
                    Algorithm::parse(a).map_err(|e| DomainError::DigestInvalid(e.to_string()))?
                }
                None => Algorithm::Sha256,
            };
            if let Some(m) = query_get(&pairs, "mount") {
                let d = digest(m)?;
                let from = query_get(&pairs, "from").and_then(|f| OciName::parse(f).ok());
                if upload::mount(&core, p, &n, &d, from.as_ref()).await? {
                    return Ok(blob_created(&n, &d));
                }
            } else if let Some(dg) = query_get(&pairs, "digest") {
                let d = digest(dg)?;
                upload::monolithic(&core, p, &n, &d, body).await?;
                return Ok(blob_created(&n, &d));
            }
            let id = upload::start(&core, p, &n, alg).await?;
            Ok(upload_accepted(StatusCode::ACCEPTED, &n, &id, 0))
        }
        ("GET", OciRoute::Upload(n, id)) => {
            let offset = upload::status(&core, p, &n, &id).await?;
            Ok(upload_accepted(StatusCode::NO_CONTENT, &n, &id, offset))
        }
        ("PATCH", OciRoute::Upload(n, id)) => {
            let range = content_range(&headers)?;
            let offset = upload::patch(&core, p, &n, &id, range, body)
                .await
                .map_err(|e| at_session(e, &n, &id))?;
            Ok(upload_accepted(StatusCode::ACCEPTED, &n, &id, offset))
        }
        ("PUT", OciRoute::Upload(n, id)) => {
            let d = digest(query_get(&pairs, "digest").unwrap_or(""))?;
            let range = content_range(&headers)?;
            let stored = upload::finish(&core, p, &n, &id, &d, range, body)
                .await
                .map_err(|e| at_session(e, &n, &id))?;
            Ok(blob_created(&n, &stored))
        }
        ("DELETE", OciRoute::Upload(n, id)) => {
            upload::cancel(&core, p, &n, &id).await?;
            Ok(reply::empty(StatusCode::NO_CONTENT))
        }
        ("GET", OciRoute::Referrers(n, d)) => {
            let filter = query_get(&pairs, "artifactType").map(str::to_owned);
            let filtered = filter.is_some();
            let manifests = registry::referrers(&core, p, &n, &d, filter).await?;
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
            Ok(r)
        }
        (m, _) => Err(DomainError::Unsupported(format!(
            "{m} is not supported on this endpoint"
        ))),
    }
}

/// The `/v2/` filter.
pub fn routes(core: Ctx) -> BoxedFilter<(Response,)> {
    warp::path("v2")
        .and(warp::path::tail())
        .and(with_core(core))
        .and(warp::method())
        .and(credentials())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and(body_stream())
        .then(
            |tail: warp::path::Tail, core, method, creds, q, headers, body| {
                handle(
                    core,
                    tail.as_str().to_owned(),
                    method,
                    creds,
                    q,
                    headers,
                    body,
                )
            },
        )
        .map(oci_reply)
        .boxed()
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
