//! The one place where domain outcomes become HTTP: REST JSON
//! (`{"error":{"code","message"}}`) everywhere but `/v2/`, where the OCI error JSON is used.
//! Internal errors are logged here, once, and the client gets a generic message.

use warp::http::{header, StatusCode};
use warp::reply::Response;

use crate::api::{ErrorBody, ErrorDetail};
use crate::domain::DomainError;

/// Status and REST code for a domain outcome. Exhaustive on purpose: a new outcome must be
/// given its wire form here.
fn rest_parts(e: &DomainError) -> (StatusCode, &'static str) {
    use DomainError::*;
    match e {
        BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        QuotaExceeded(_) => (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"),
        InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
        DigestInvalid(_) => (StatusCode::BAD_REQUEST, "digest_invalid"),
        NameInvalid(_) => (StatusCode::BAD_REQUEST, "name_invalid"),
        NameUnknown => (StatusCode::NOT_FOUND, "not_found"),
        TagInvalid(_) => (StatusCode::BAD_REQUEST, "tag_invalid"),
        BlobUnknown => (StatusCode::NOT_FOUND, "not_found"),
        BlobUploadUnknown => (StatusCode::NOT_FOUND, "not_found"),
        RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
        BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        ManifestUnknown => (StatusCode::NOT_FOUND, "not_found"),
        ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "manifest_invalid"),
        ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "manifest_blob_unknown"),
        SizeInvalid(_) => (StatusCode::BAD_REQUEST, "size_invalid"),
        Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "unsupported"),
        Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        Storage(_) | Git(_) | Io(_) | Internal { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

fn public_message(e: &DomainError) -> String {
    use DomainError::*;
    match e {
        Storage(_) | Git(_) | Io(_) | Internal { .. } => {
            tracing::error!(error = %e.chain(), "internal error");
            "internal server error; the server log has the details".into()
        }
        InsufficientStorage(_) => {
            tracing::error!(error = %e.chain(), "disk full");
            "the server is out of disk space".into()
        }
        Unavailable(detail) => {
            tracing::warn!(error = %detail, "service unavailable");
            "the server cannot store data right now; try again shortly".into()
        }
        other => other.to_string(),
    }
}

/// `Retry-After` for outcomes that carry one (a sign-in lockout).
pub fn set_retry_after(resp: &mut Response, e: &DomainError) {
    if let DomainError::TooManyRequests { retry_after, .. } = e {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
    }
}

/// Status and client-safe message of a domain outcome, for surfaces that render their own
/// error bodies (the web UI). Internal details are logged, never returned.
pub fn status_and_message(e: &DomainError) -> (StatusCode, String) {
    (rest_parts(e).0, public_message(e))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = Response::new(body.to_string().into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A REST error response.
pub fn rest(e: DomainError) -> Response {
    let (status, code) = rest_parts(&e);
    let body = serde_json::to_value(ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: public_message(&e),
        },
    })
    .unwrap_or_default();
    let mut resp = json_response(status, &body);
    set_retry_after(&mut resp, &e);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"pfai\", Bearer realm=\"pfai\""),
        );
    }
    resp
}

/// Turns a handler result into a response, REST flavour.
pub fn rest_reply(r: Result<Response, DomainError>) -> Response {
    r.unwrap_or_else(rest)
}

/// Status and OCI code for a domain outcome under `/v2/`.
fn oci_parts(e: &DomainError) -> (StatusCode, &'static str) {
    use DomainError::*;
    match e {
        BadRequest(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        Invalid(_) => (StatusCode::BAD_REQUEST, "UNSUPPORTED"),
        Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        Forbidden(_) => (StatusCode::FORBIDDEN, "DENIED"),
        NotFound(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        Conflict(_) => (StatusCode::CONFLICT, "DENIED"),
        TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
        QuotaExceeded(_) => (StatusCode::PAYLOAD_TOO_LARGE, "DENIED"),
        InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "UNKNOWN"),
        DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
        NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
        NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        TagInvalid(_) => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
        BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
        BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
        RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
        BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
        ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
        SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
        Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
        Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
        Storage(_) | Git(_) | Io(_) | Internal { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN")
        }
    }
}

/// An OCI error response (`{"errors":[{"code","message","detail"}]}`).
pub fn oci(e: DomainError) -> Response {
    let (status, code) = oci_parts(&e);
    let errors: Vec<serde_json::Value> = match &e {
        DomainError::ManifestBlobUnknown(missing) => missing
            .iter()
            .map(|d| {
                serde_json::json!({"code": code, "message": "blob unknown to registry", "detail": {"digest": d}})
            })
            .collect(),
        other => vec![serde_json::json!({"code": code, "message": public_message(other), "detail": null})],
    };
    let mut resp = json_response(status, &serde_json::json!({ "errors": errors }));
    set_retry_after(&mut resp, &e);
    let h = resp.headers_mut();
    h.insert(
        "Docker-Distribution-API-Version",
        header::HeaderValue::from_static("registry/2.0"),
    );
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"pfai\""),
        );
    }
    if let DomainError::RangeNotSatisfiable { location, offset } = &e {
        if let Some(loc) = location
            .as_deref()
            .and_then(|l| header::HeaderValue::from_str(l).ok())
        {
            h.insert(header::LOCATION, loc);
        }
        if let Ok(v) = header::HeaderValue::from_str(&super::reply::upload_range(*offset)) {
            h.insert(header::RANGE, v);
        }
    }
    resp
}

/// Turns a handler result into a response, OCI flavour.
pub fn oci_reply(r: Result<Response, DomainError>) -> Response {
    r.unwrap_or_else(oci)
}
