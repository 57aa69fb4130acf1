//! `/v2/<owner>/<repo>/releases/…`: the published releases as read-only OCI artifacts (see
//! `domain::release_artifact`). The parent's parser and `Answer` are reused; only reads are
//! routed, every other method on the reserved name is refused.

use serde_json::json;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;

use super::{header_str, list_link, page_params, reply, Answer, OciCall, OciRoute};
use crate::domain::registry::manifest::OCI_INDEX;
use crate::domain::release::count_download;
use crate::domain::release_artifact as artifact;
use crate::domain::{DomainError, DomainResult};
use crate::ids::{Digest, OciName, Reference};

/// Whether a route's name is the reserved release-artifact name (routed here).
pub(super) fn serves(name: &OciName) -> bool {
    artifact::is_release_name(name)
}

/// The routing table of the reserved name.
pub(super) async fn dispatch(c: &OciCall, method: Method, route: OciRoute) -> DomainResult<Answer> {
    use OciRoute::*;
    match (method.as_str(), route) {
        ("GET", Tags(n)) => tags(c, n).await,
        ("GET" | "HEAD", Manifest(n, r)) => manifest(c, n, r).await,
        ("GET" | "HEAD", Blob(n, d)) => blob(c, n, d).await,
        ("GET", Referrers(n, d)) => referrers(c, n, d).await,
        ("HEAD", _) => Err(DomainError::Unsupported(
            "HEAD is not supported on this endpoint".into(),
        )),
        (_, route) => match route.name() {
            Some(n) => Err(artifact::refuse_write(c.who(), n)),
            None => Err(DomainError::NameUnknown),
        },
    }
}

async fn tags(c: &OciCall, n: OciName) -> DomainResult<Answer> {
    let (count, last) = page_params(&c.query)?;
    let (tags, more) = artifact::tags(c.core(), c.who(), &n, count, last).await?;
    let mut r = reply::json(StatusCode::OK, &json!({ "name": n.as_str(), "tags": tags }));
    if more {
        if let Some(l) = list_link(&format!("/v2/{n}/tags/list"), count, &tags) {
            reply::set_header(&mut r, header::LINK, &l);
        }
    }
    Ok(Answer::plain(r))
}

async fn manifest(c: &OciCall, n: OciName, reference: Reference) -> DomainResult<Answer> {
    let m = artifact::manifest(c.core(), c.who(), &n, &reference).await?;
    let len = m.bytes.len();
    let media_type = m.media_type();
    let mut r = if c.head {
        reply::empty(StatusCode::OK)
    } else {
        Response::new(m.bytes.into())
    };
    reply::set_header(&mut r, header::CONTENT_TYPE, media_type);
    reply::set_header(&mut r, header::CONTENT_LENGTH, &len.to_string());
    Ok(Answer::content(r, m.digest))
}

async fn blob(c: &OciCall, n: OciName, d: Digest) -> DomainResult<Answer> {
    let b = artifact::open_blob(c.core(), c.who(), &n, &d).await?;
    let range = header_str(&c.headers, header::RANGE);
    let r = reply::serve_mapped(
        &b.data,
        range.as_deref(),
        c.head,
        "application/octet-stream",
    );
    if let Some(id) = b.asset_id {
        if r.status() == StatusCode::OK && !c.head {
            count_download(c.core(), id);
        }
    }
    Ok(Answer::content(r, b.digest))
}

async fn referrers(c: &OciCall, n: OciName, d: Digest) -> DomainResult<Answer> {
    let filter = c.param("artifactType").map(str::to_owned);
    let filtered = filter.is_some();
    let manifests = artifact::referrers(c.core(), c.who(), &n, &d, filter).await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let mut r = reply::json(StatusCode::OK, &index);
    reply::set_header(&mut r, header::CONTENT_TYPE, OCI_INDEX);
    if filtered {
        reply::set_header(
            &mut r,
            header::HeaderName::from_static("oci-filters-applied"),
            "artifactType",
        );
    }
    Ok(Answer::plain(r))
}
