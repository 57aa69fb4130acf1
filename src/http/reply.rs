//! Response building shared by every surface: JSON, mapped files with single `Range` support,
//! bodies produced while they are sent, `Content-Disposition` and pagination `Link` headers.

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};

use crate::domain::{DomainError, DomainResult, Paged};
use crate::storage::mmap::Mapped;

/// A body produced while it is sent (a bundle, a source archive), chunk by chunk from its
/// producer. A producer that fails before its first chunk gets an error status: a connection
/// cut before any header reads, to a client, like an unreachable server. A later failure cuts
/// the stream, so the body stays visibly incomplete.
pub async fn streamed(
    mut chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> DomainResult<Response> {
    let first = match chunks.recv().await {
        Some(Ok(chunk)) => Some(Ok(chunk)),
        Some(Err(e)) => return Err(DomainError::Io(e)),
        None => None,
    };
    let rest =
        futures_util::stream::unfold(
            chunks,
            |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
        );
    let body = futures_util::stream::iter(first).chain(rest);
    Ok(warp::reply::stream(body).into_response())
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "serializing a response failed");
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let mut resp = Response::new(bytes::Bytes::from(body).into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(bytes::Bytes::new().into());
    *resp.status_mut() = status;
    resp
}

/// Sets a header from a string, dropping values that are not valid header text (never CR/LF).
pub fn set_header(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A page as JSON with a `Link` header (`next`, `prev`, `first`) built on `path`.
pub fn paged<T: Serialize>(p: &Paged<T>, path: &str) -> Response {
    let mut resp = json(StatusCode::OK, &p.items);
    let mut links = Vec::new();
    let limit = p.page.limit;
    if p.has_next {
        links.push(format!(
            "<{path}?page={}&limit={limit}>; rel=\"next\"",
            p.page.page + 1
        ));
    }
    if p.page.page > 1 {
        links.push(format!(
            "<{path}?page={}&limit={limit}>; rel=\"prev\"",
            p.page.page - 1
        ));
        links.push(format!("<{path}?page=1&limit={limit}>; rel=\"first\""));
    }
    if !links.is_empty() {
        set_header(&mut resp, header::LINK, &links.join(", "));
    }
    resp
}

/// What a `Range` header asks for, once judged against the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// No usable range: serve everything with 200.
    Full,
    /// One satisfiable range, inclusive bounds.
    Partial(u64, u64),
    /// The start is past the end: 416.
    Unsatisfiable,
}

/// Judges a `Range` header (RFC 9110 §14): single ranges only; malformed or multi-range
/// headers are ignored (200); the end is clamped; a suffix longer than the file means all of it.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') || size == 0 {
        return RangeSpec::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeSpec::Full,
        (true, false) => match num(b) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Partial(size.saturating_sub(n), size - 1),
            None => RangeSpec::Full,
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeSpec::Full;
            };
            let end = if b.is_empty() {
                size - 1
            } else {
                match num(b) {
                    Some(e) if e >= start => e.min(size - 1),
                    _ => return RangeSpec::Full,
                }
            };
            if start >= size {
                RangeSpec::Unsatisfiable
            } else {
                RangeSpec::Partial(start, end)
            }
        }
    }
}

/// Serves mapped bytes, honouring a single `Range`; `head` sends headers only. The body is
/// one zero-copy slice of the map.
pub fn serve_mapped(
    data: &Mapped,
    range: Option<&str>,
    head: bool,
    content_type: &str,
) -> Response {
    let size = data.len();
    let (status, start, end) = match parse_range(range, size) {
        RangeSpec::Full => (StatusCode::OK, 0, size),
        RangeSpec::Partial(s, e) => (StatusCode::PARTIAL_CONTENT, s, e + 1),
        RangeSpec::Unsatisfiable => {
            let mut resp = empty(StatusCode::RANGE_NOT_SATISFIABLE);
            set_header(&mut resp, header::CONTENT_RANGE, &format!("bytes */{size}"));
            return resp;
        }
    };
    let body = if head {
        bytes::Bytes::new()
    } else {
        data.slice(start, end)
    };
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    set_header(&mut resp, header::CONTENT_TYPE, content_type);
    set_header(
        &mut resp,
        header::CONTENT_LENGTH,
        &(end - start).to_string(),
    );
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        set_header(
            &mut resp,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    resp
}

/// `attachment; filename="<ascii>"; filename*=UTF-8''<pct>`: quoted, RFC 5987-encoded, and
/// free of anything that could end the header.
pub fn content_disposition(name: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const ATTR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR)
    )
}

/// The `Range` header of an upload session that holds `offset` bytes: `0-<last byte>` (OCI
/// distribution's form, `0-0` for an empty session).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges() {
        use RangeSpec::*;
        assert_eq!(parse_range(Some("bytes=0-99"), 1000), Partial(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 1000), Partial(100, 999));
        assert_eq!(parse_range(Some("bytes=-100"), 1000), Partial(900, 999));
        assert_eq!(parse_range(Some("bytes=-5000"), 1000), Partial(0, 999));
        assert_eq!(parse_range(Some("bytes=900-5000"), 1000), Partial(900, 999));
        assert_eq!(parse_range(Some("bytes=1000-"), 1000), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 1000), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 1000), Full);
        assert_eq!(parse_range(Some("items=0-1"), 1000), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 1000), Full);
        assert_eq!(
            parse_range(Some("bytes=0-99999999999999999999999999"), 1000),
            Full
        );
        assert_eq!(parse_range(Some("bytes=-0"), 1000), Unsatisfiable);
        assert_eq!(parse_range(None, 1000), Full);
    }

    #[test]
    fn disposition_cannot_inject() {
        let d = content_disposition("a\"b\r\nX-Evil: 1 ü.tar.gz");
        assert!(!d.contains('\r') && !d.contains('\n'));
        assert!(d.contains("filename*=UTF-8''a%22b%0D%0AX-Evil%3A%201%20%C3%BC.tar.gz"));
    }

    proptest! {
        #[test]
        fn range_never_panics_and_stays_in_bounds(h in ".{0,40}", size in 0u64..10_000) {
            if let RangeSpec::Partial(s, e) = parse_range(Some(&h), size) {
                prop_assert!(s <= e && e < size);
            }
        }
    }
}
